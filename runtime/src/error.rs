//! Errors of the runtime: setting it up ([`RuntimeError`]) and running a
//! program ([`RunError`], whose guest-caused cases carry a [`GuestFailure`]).

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// A boxed error from wasmtime or the OS, kept as the `source` of our errors.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a [`Runtime`](crate::Runtime) could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A [`RuntimeConfig`](crate::RuntimeConfig) field is out of range.
    #[error("invalid runtime configuration: {0}")]
    InvalidConfig(String),
    /// wasmtime rejected the engine configuration.
    #[error("cannot create the wasmtime engine")]
    Engine(#[source] BoxError),
    /// Linking WASI preview 1 into the linker failed.
    #[error("cannot link WASI preview 1")]
    Linker(#[source] BoxError),
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker thread")]
    Thread(#[source] std::io::Error),
}

/// Why [`Runtime::compile`](crate::Runtime::compile) or
/// [`Runtime::run`](crate::Runtime::run) did not produce an
/// [`Outcome`](crate::Outcome).
///
/// Only [`RunError::Guest`] is a verdict about the program itself; the other
/// variants are about the request or the host.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The bytes are not a valid WebAssembly module, or the module cannot run
    /// here (unsupported proposal, imports other than WASI preview 1, more
    /// memories or tables than the instance pool allows).
    #[error("invalid wasm module: {reason}")]
    InvalidModule {
        /// What is wrong, as reported by the validator or linker.
        reason: String,
    },
    /// The requested entrypoint is not an exported `() -> ()` function.
    #[error("entrypoint `{name}` is not an exported function without parameters or results; exported functions: [{}]", available.join(", "))]
    MissingEntrypoint {
        /// The entrypoint that was asked for.
        name: String,
        /// Exported functions of the module, for the error message.
        available: Vec<String>,
    },
    /// The invocation is malformed (bad mount, limit above the runtime's
    /// ceiling, argument with a NUL byte...). Nothing was run.
    #[error("invalid invocation: {reason}")]
    InvalidInvocation {
        /// What is wrong with the invocation.
        reason: String,
    },
    /// The guest ran and failed; see [`GuestFailure::kind`].
    #[error(transparent)]
    Guest(Box<GuestFailure>),
    /// Something went wrong in the host (instance pool, thread spawn, I/O on
    /// the outputs directory). Not the guest's fault; retrying may succeed.
    #[error("host error while {context}")]
    Host {
        /// What the runtime was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl RunError {
    /// The guest failure, if this error is one.
    pub fn guest_failure(&self) -> Option<&GuestFailure> {
        match self {
            RunError::Guest(failure) => Some(failure),
            _ => None,
        }
    }

    pub(crate) fn host(context: &'static str, source: impl Into<BoxError>) -> Self {
        RunError::Host { context, source: source.into() }
    }
}

/// A run that started and ended in failure, with everything the guest left
/// behind so the caller can store it (e.g. a Rust panic message on stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFailure {
    /// What went wrong.
    pub kind: FailureKind,
    /// Fuel burnt before the failure (equal to the budget for
    /// [`FailureKind::FuelExhausted`]).
    pub fuel_consumed: u64,
    /// Standard output captured up to the failure (capped like an
    /// [`Outcome`](crate::Outcome)'s).
    pub stdout: Bytes,
    /// Standard error captured up to the failure.
    pub stderr: Bytes,
    /// Whether stdout exceeded its cap.
    pub stdout_truncated: bool,
    /// Whether stderr exceeded its cap.
    pub stderr_truncated: bool,
    /// Wall-clock time the run took (informative only).
    pub duration: Duration,
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest failed after {} fuel: {}", self.fuel_consumed, self.kind)
    }
}

impl StdError for GuestFailure {}

/// The ways a guest run can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureKind {
    /// The guest trapped (`unreachable`, out-of-bounds access, a Rust panic
    /// with `panic=abort`, a WASI misuse...).
    #[error("trap: {message}")]
    Trap {
        /// wasmtime's trap description with the wasm backtrace, followed by
        /// the tail of the guest's stderr.
        message: String,
    },
    /// The fuel budget ran out (the deterministic stand-in for a time limit).
    #[error("fuel exhausted (budget {fuel})")]
    FuelExhausted {
        /// The budget that was exhausted.
        fuel: u64,
    },
    /// The guest asked for more linear memory than allowed and then failed.
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    MemoryLimit {
        /// The limit that was hit.
        limit_bytes: u64,
    },
    /// The guest exceeded the maximum wasm stack (usually deep recursion).
    #[error("wasm stack overflow")]
    StackOverflow,
    /// The wall-clock safety net fired. Unlike the other kinds this depends
    /// on the machine's speed, so it is never a result to compare.
    #[error("wall-clock limit of {wall_time:?} exceeded")]
    Timeout {
        /// The wall-time limit that was exceeded.
        wall_time: Duration,
    },
    /// The guest would have written more bytes to the writable mounts than
    /// allowed (it was stopped at the call that would have crossed the limit).
    #[error("outputs would hold {written} bytes, more than the limit of {limit_bytes}")]
    OutputLimit {
        /// The limit on the total size of the writable mounts.
        limit_bytes: u64,
        /// Bytes the writable mounts would have held after the call that was
        /// refused (or held at the end of the run).
        written: u64,
    },
    /// The guest would have made more entries (files, directories, symbolic
    /// links) in the writable mounts than allowed.
    #[error("outputs would hold {files} files and directories, more than the limit of {limit_files}")]
    OutputFilesLimit {
        /// The limit on the number of entries in the writable mounts.
        limit_files: u64,
        /// Entries the writable mounts would have held after the call that
        /// was refused (or held at the end of the run).
        files: u64,
    },
}

impl FailureKind {
    /// Whether the same program and inputs fail the same way on every
    /// machine. Only [`FailureKind::Timeout`] is not: a verifier must not
    /// treat a timeout as a disagreement.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, FailureKind::Timeout { .. })
    }
}
