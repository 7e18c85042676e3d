//! What a run is asked to do ([`Invocation`]) and what it produced
//! ([`Outcome`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// The WASI command entrypoint, run when no other is named.
pub const DEFAULT_ENTRYPOINT: &str = "_start";

/// [`Limits::output_files`] unless set otherwise: enough for a job tiling a
/// large image, few enough that publishing them stays a matter of seconds.
pub const DEFAULT_OUTPUT_FILES: u64 = 100_000;

/// One run of a compiled [`Program`](crate::Program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Exported function to call: [`DEFAULT_ENTRYPOINT`] or any export taking
    /// no parameters and returning nothing.
    pub entrypoint: String,
    /// The guest's `argv`, including `argv[0]` (the program name the caller
    /// chooses). Nothing is inherited from the host.
    pub args: Vec<String>,
    /// The guest's environment. A sorted map, so its order is deterministic.
    /// Nothing is inherited from the host.
    pub env: BTreeMap<String, String>,
    /// Host directories made visible to the guest as preopened directories.
    pub mounts: Vec<Mount>,
    /// Resource limits for this run.
    pub limits: Limits,
    /// What the guest may observe of the host: nothing (the default), or its clocks and
    /// entropy.
    pub determinism: Determinism,
}

/// Whether a run is pinned to give the same result everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Determinism {
    /// Clocks and random bytes are fixed functions of what the guest does (see the crate's
    /// docs): two runs of the same invocation give the same bytes.
    #[default]
    Deterministic,
    /// The guest reads the host's wall and monotonic clocks, its random bytes come from
    /// generators seeded from the host's entropy for each run, and its sleeps take real time
    /// (up to the wall-clock limit). Two runs differ; such results need a comparison other
    /// than byte equality to be checked.
    Nondeterministic,
}

impl Default for Invocation {
    fn default() -> Self {
        Self {
            entrypoint: DEFAULT_ENTRYPOINT.to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
            mounts: Vec::new(),
            limits: Limits::default(),
            determinism: Determinism::Deterministic,
        }
    }
}

/// A host directory preopened for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Existing directory on the host.
    pub host: PathBuf,
    /// Path under which the guest sees it, e.g. `/inputs`.
    pub guest: String,
    /// Whether the guest may create, modify and delete entries. Writable
    /// mounts count towards [`Limits::output_bytes`].
    pub writable: bool,
}

/// Resource limits of one run.
///
/// All but `wall_time` are enforced deterministically. `wall_time` is only a
/// safety net for hosts that are much slower than expected; set `fuel` so
/// that it, not the clock, stops a runaway guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget (roughly one unit per wasm instruction).
    pub fuel: u64,
    /// Largest linear memory the guest may grow to, in bytes. At most the
    /// runtime's [`RuntimeConfig::max_memory_bytes`](crate::RuntimeConfig::max_memory_bytes).
    pub memory_bytes: u64,
    /// Wall-clock safety net; exceeding it is a
    /// [`FailureKind::Timeout`](crate::FailureKind::Timeout).
    pub wall_time: Duration,
    /// Bytes of stdout kept; the rest is discarded and the outcome marked
    /// truncated (the guest's writes still succeed).
    pub stdout_bytes: usize,
    /// Bytes of stderr kept, like `stdout_bytes`.
    pub stderr_bytes: usize,
    /// Largest total size of the files in the writable mounts.
    pub output_bytes: u64,
    /// Largest number of entries (files, directories, symbolic links) in the
    /// writable mounts.
    pub output_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            memory_bytes: 1 << 30,
            wall_time: Duration::from_secs(60),
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 20,
            output_bytes: 1 << 30,
            output_files: DEFAULT_OUTPUT_FILES,
        }
    }
}

/// A run that completed: the entrypoint returned, or the guest called
/// `proc_exit`.
///
/// A non-zero exit code is an outcome, not an error: exiting with a status is
/// the guest's deterministic answer and is reported as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 0 when the entrypoint returned, otherwise the `proc_exit` status.
    pub exit_code: i32,
    /// Fuel burnt by the run; deterministic for the same program and inputs.
    pub fuel_consumed: u64,
    /// Captured standard output (at most `Limits::stdout_bytes`).
    pub stdout: Bytes,
    /// Captured standard error (at most `Limits::stderr_bytes`).
    pub stderr: Bytes,
    /// Whether the guest wrote more to stdout than was kept.
    pub stdout_truncated: bool,
    /// Whether the guest wrote more to stderr than was kept.
    pub stderr_truncated: bool,
    /// Wall-clock time of instantiation and execution (informative only).
    pub duration: Duration,
}
