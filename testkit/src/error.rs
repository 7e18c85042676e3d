//! The testkit's errors.

use std::path::PathBuf;
use std::time::Duration;

/// Why a test stack could not be started or changed.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// No `shoal` binary was found where [`crate::shoal_binary`] looks.
    #[error("no shoal binary in {candidates:?}: build it (`cargo build -p shoal-cli`)")]
    NoShoalBinary {
        /// Where it was looked for, in order.
        candidates: Vec<PathBuf>,
    },
    /// Local file or process I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The private Redis could not be started or restarted.
    #[error("redis-server: {0}")]
    Redis(#[from] shoal_jobs::ServerError),
    /// A command to the private Redis failed.
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: shoal_jobs::StoreError,
    },
    /// The HTTP client could not be built.
    #[error("{context}: {source}")]
    Http {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: reqwest::Error,
    },
    /// A blocking task (starting or restarting Redis) did not finish.
    #[error("{context}: {source}")]
    Task {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The gateway process exited while it was awaited.
    #[error("the gateway exited with {status}; see {log}")]
    GatewayExited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// Its log file.
        log: String,
    },
    /// The gateway did not answer `/healthz` in time.
    #[error("the gateway did not answer within {0:?}")]
    GatewayNotReady(Duration),
    /// A tenant name that is not one.
    #[error("{0}")]
    InvalidTenant(String),
    /// No worker of the stack has this id.
    #[error("no worker {0}")]
    NoWorker(String),
    /// `kill -SIGNAL` did not succeed.
    #[error("kill {signal} worker {id}: {status}")]
    Signal {
        /// The signal, as given to `kill` (`-STOP`, `-CONT`).
        signal: String,
        /// The worker.
        id: String,
        /// How `kill` exited.
        status: std::process::ExitStatus,
    },
}

impl TestkitError {
    /// An I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> TestkitError {
        TestkitError::Io { context: context.into(), source }
    }

    /// A failed blocking task with what was being done.
    pub(crate) fn task(context: impl Into<String>, source: tokio::task::JoinError) -> TestkitError {
        TestkitError::Task { context: context.into(), source }
    }
}
