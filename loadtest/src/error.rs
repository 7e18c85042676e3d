//! The harness's errors.

/// Why a load-test run could not be carried out (faults of the system under test are not
/// errors: they are counted in the report).
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// Local file or process I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Importing content or computing an expected CID.
    #[error("{context}: {source}")]
    Content {
        /// What was being imported.
        context: String,
        /// The error.
        #[source]
        source: Box<shoal_content::ContentError>,
    },
    /// The private Redis could not be started or restarted.
    #[error("redis-server: {0}")]
    Redis(#[from] shoal_jobs::server::ServerError),
    /// The HTTP client could not be built.
    #[error("{context}: {source}")]
    Http {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: reqwest::Error,
    },
    /// The harness's own Redis connection failed (reading job records directly).
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: shoal_jobs::StoreError,
    },
    /// The stack could not be brought up (binary missing, gateway never answering…).
    #[error("{0}")]
    Setup(String),
}

impl LoadtestError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> LoadtestError {
        LoadtestError::Io { context: context.into(), source }
    }
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, LoadtestError>;
