//! `shoal-loadtest`: the load, chaos and scale harness, one command with a subcommand per mode
//! ([`cli`]), each a [`Mode`] run by the one [`driver`] and reporting through [`RunReport`].
//!
//! - [`chaos`]: the reliability harness (`shoal-loadtest chaos`): a whole Shoal deployment as
//!   separate processes on loopback, a job mix through the HTTP API, faults injected on a
//!   schedule, every output CID checked against one computed independently.
//! - [`sim`]: the scale simulation (`shoal-loadtest sim`): many in-process workers over a
//!   synthetic catalogue, with a simulated executor.
//! - [`scenes`]: one job fanned out over a directory of many small real-format Landsat scenes
//!   (`shoal-loadtest scenes`), cold and warm, on worker processes.
//! - [`byzantine`]: the reliability mix with a fraction of the workers adversarial
//!   (`shoal-loadtest byzantine`), against an honest baseline of the same command.
//! - [`verification`]: the nondeterministic ML job under each verification strategy
//!   (`shoal-loadtest verification`): honest runs (false disagreements, the spread of their
//!   accuracies, the cost of verifying) and the ML adversaries, which lies each strategy catches.
//! - [`filecoin`]: paid retrievals (`shoal-loadtest filecoin`): jobs over datasets only
//!   storage-provider stand-ins hold, bought by worker processes under a wallet's spending
//!   limit among a lying provider, with a worker killed mid-run; then warm; the books checked.
//! - [`pipeline`]: the cloud pipeline over N real-format scenes (`shoal-loadtest pipeline`):
//!   clean, as separate jobs, and through a worker kill and a Redis restart; every output checked.
//! - [`latency`]: the latency benchmark (`shoal-loadtest latency`): open-loop submissions at
//!   given rates, each result waited for by its client, against a BullMQ no-op baseline in the
//!   same run; the highest sustainable rate and where a job's time goes.
//! - [`adversary`]: byzantine workers (`shoal-loadtest adversary-worker`): the real worker loop
//!   and executor, wrapped to lie; reachable from no production binary or flag.
//!
//! What the modes share, each depending only on the ones above it:
//!
//! - [`error`]: the one error type.
//! - [`report`]: the [`RunReport`] trait and the report plumbing (quantiles, byte sizes,
//!   Markdown tables, writing `PREFIX.json` and the documents beside it).
//! - [`locality`]: cache hits, local tasks and the time series, counted the same way everywhere.
//! - [`figures`]: the base [`figures::Report`] every mode counts its jobs into.
//! - [`api`]: the gateway client (retries, idempotency keys).
//! - [`workload`]: programs, inputs, job specs and their expected output CIDs; draws.
//! - [`driver`]: the [`Mode`] trait and [`driver::drive`], the one path from options to exit
//!   status.

#![warn(missing_docs)]

pub mod adversary;
pub mod api;
pub mod byzantine;
pub mod chaos;
pub mod cli;
pub mod driver;
pub mod error;
pub mod figures;
pub mod filecoin;
pub mod latency;
pub mod locality;
pub mod pipeline;
pub mod report;
pub mod scenes;
pub mod sim;
pub mod verification;
pub mod workload;

pub use cli::{Cli, Command};
pub use driver::Mode;
pub use error::{LoadtestError, Result};
pub use report::RunReport;
