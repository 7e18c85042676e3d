//! Shoal's deterministic WebAssembly runtime, used identically by the worker
//! (to run jobs) and the verifier (to re-run them and compare).
//!
//! A [`Runtime`] owns one wasmtime engine configured for deterministic
//! execution and a pool of instance slots (sized by [`RuntimeConfig`]). [`Runtime::compile`] turns a wasm binary into
//! a cheaply cloneable [`Program`]; [`Runtime::run`] runs it once in a fresh
//! store with WASI preview 1, described by an [`Invocation`]:
//!
//! * stdin is empty; stdout and stderr are captured in memory, each kept up to
//!   its cap and marked truncated beyond it (the guest's writes still succeed);
//! * `argv` and the environment are exactly the invocation's; nothing is
//!   inherited from the host and there is no network;
//! * the wall clock is fixed at [`GUEST_WALL_CLOCK`], the monotonic clock
//!   advances by [`GUEST_MONOTONIC_STEP_NANOS`] per reading, and random bytes
//!   come from ChaCha20 seeded with [`GUEST_RANDOM_SEED`];
//! * [`Mount`]s are preopened directories, read-only unless `writable`;
//! * unless the invocation says [`Determinism::Nondeterministic`]: then the
//!   clocks are the host's, random bytes come from generators seeded from the
//!   host's entropy for the run, and sleeps take real time (never past the
//!   wall-clock limit). The engine is the same, so such a run is still fuelled,
//!   limited and NaN-canonical; only what it reads of the host differs.
//!
//! The result is an [`Outcome`] (the entrypoint returned or the guest called
//! `proc_exit`, whatever the status) or a [`RunError`]; guest failures
//! ([`RunError::Guest`]) carry the [`FailureKind`], fuel and captured output.
//!
//! # Determinism
//!
//! The engine follows wasmtime's deterministic-execution checklist: NaN
//! canonicalisation, no threads, deterministic relaxed SIMD, fuel metering,
//! memories that never move and grow only within fixed limits, an explicit
//! wasm stack size, and epoch interruption only as a wall-clock safety net.
//!
//! For the same program, invocation and [`RuntimeConfig::max_wasm_stack_bytes`],
//! on the same wasmtime version and CPU architecture, a run produces the same
//! outcome, fuel, stdout, stderr and output files, or fails with the same
//! [`FailureKind`]; the exception is [`FailureKind::Timeout`], a wall-clock
//! safety net (see [`FailureKind::is_deterministic`]).
//!
//! # Output size
//!
//! [`Limits::output_bytes`] bounds the total size of the writable mounts and
//! [`Limits::output_files`] the number of entries in them. Both hold at the
//! WASI call that would cross them: the call is not made and the guest stops
//! with [`FailureKind::OutputLimit`] or [`FailureKind::OutputFilesLimit`], so
//! no more than the limit ever reaches the disk. Keeping count costs time
//! linear in what the guest writes.
//!
//! # Sleeping
//!
//! A guest's sleep (`poll_oneoff` on clocks only) returns at once and
//! advances its virtual monotonic clock by the time slept: in the sandbox
//! time is what the guest does, so a sleep costs neither real time nor a
//! worker's slot. A nondeterministic run sleeps for real, in slices that look
//! whether the run was stopped, and never past its wall-clock limit.

mod capture;
mod determinism;
mod engine;
mod error;
mod host;
mod invocation;
mod outputs;
mod runtime;

pub use determinism::{
    GUEST_INSECURE_RANDOM_SEED, GUEST_INSECURE_SEED, GUEST_MONOTONIC_STEP_NANOS, GUEST_RANDOM_SEED, GUEST_WALL_CLOCK,
};
pub use engine::{RuntimeConfig, HOST_STACK_HEADROOM_BYTES};
pub use error::{BoxError, FailureKind, GuestFailure, RunError, RuntimeError};
pub use invocation::{Determinism, Invocation, Limits, Mount, Outcome, DEFAULT_ENTRYPOINT, DEFAULT_OUTPUT_FILES};
pub use runtime::{Program, Runtime};
