//! The harness's errors, one type for every subcommand.

use std::path::PathBuf;

/// Why a load-test run could not be carried out (faults of the system under test, jobs that fail
/// and outputs that are wrong are not errors: they are counted in the report).
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
    /// Importing or reading content, or computing an expected CID.
    #[error("{context}: {source}")]
    Content {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: Box<shoal_content::ContentError>,
    },
    /// The private Redis could not be started or restarted.
    #[error("redis-server: {0}")]
    Redis(#[from] shoal_jobs::ServerError),
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
    /// The in-process gateway (`sim`) could not be built.
    #[error("starting the gateway: {0}")]
    GatewayStart(#[from] shoal_gateway::GatewayError),
    /// The gateway could not be asked, or answered something unreadable.
    #[error("{context}: {message}")]
    Gateway {
        /// What was being asked.
        context: String,
        /// What went wrong.
        message: String,
    },
    /// A source band could not be read, or a tile band written (`scenes`).
    #[error("{path}: {source}")]
    Tiff {
        /// The band file.
        path: PathBuf,
        /// The error.
        #[source]
        source: tiff::TiffError,
    },
    /// The stack of processes could not be started, or a fault not done to it.
    #[error(transparent)]
    Stack(#[from] shoal_testkit::TestkitError),
    /// The stack could not be brought up (binary missing, gateway never answering…).
    #[error("{0}")]
    Setup(String),
    /// An option or an input is out of range.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl LoadtestError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> LoadtestError {
        LoadtestError::Io { context: context.into(), source }
    }

    /// A content-layer error with what was being done.
    pub fn content(context: impl Into<String>, source: shoal_content::ContentError) -> LoadtestError {
        LoadtestError::Content { context: context.into(), source: Box::new(source) }
    }

    /// A Redis error with what was being done.
    pub fn store(context: impl Into<String>, source: impl Into<shoal_jobs::StoreError>) -> LoadtestError {
        LoadtestError::Store { context: context.into(), source: source.into() }
    }
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, LoadtestError>;
