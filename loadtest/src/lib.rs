//! `shoal-loadtest`: the load and chaos harness.
//!
//! It starts a whole Shoal deployment as separate processes on loopback (a private
//! `redis-server`, a `shoal gateway`, several `shoal worker`s sharing one block store), submits
//! a mix of jobs through the HTTP API, injects faults on a schedule (SIGKILL a worker and start
//! a replacement, SIGSTOP/SIGCONT a worker, restart Redis, restart the gateway), waits for every
//! job, checks every output CID against one computed independently, and reports.
//!
//! - [`options`]: what to run ([`Options`], also the command line).
//! - [`stack`]: the processes and the faults done to them.
//! - [`workload`]: programs, inputs, job specs and their expected output CIDs.
//! - [`api`]: the gateway client (retries, idempotency keys).
//! - [`run`]: the run itself ([`run::run`]).
//! - [`report`]: the [`Report`] and its JSON, Markdown and SVG forms.
//! - [`sim`]: the scale simulation (`shoal-loadtest sim`): many in-process workers over a
//!   synthetic catalogue, with a simulated executor.
//! - [`scenes`]: one job fanned out over a directory of many small real-format Landsat scenes
//!   (`shoal-loadtest scenes`), cold and warm, on worker processes.

#![warn(missing_docs)]

pub mod api;
pub mod error;
pub mod options;
pub mod report;
pub mod run;
pub mod scenes;
pub mod sim;
pub mod stack;
pub mod workload;

pub use error::{LoadtestError, Result};
pub use options::{Options, Replace};
pub use report::Report;
pub use run::run;
