//! The scale simulation (`shoal-loadtest sim`): hundreds to thousands of real worker loops in
//! one process over a synthetic catalogue.
//!
//! Everything but the data and the wasm is real: a private Redis, an in-process gateway taking
//! jobs over HTTP, and N workers each running `shoal_worker::serve` (membership, shard
//! assignment, stealing, claims, reclaim, sweeping) with its own identity, streams and cache.
//! What a worker would fetch and run is modelled by [`SimulatedExecutor`]: catalogue items are
//! named by real CIDs whose blocks are never stored ([`Catalogue`]), a fetch costs simulated
//! bandwidth and latency, a run costs a per-program time, all scaled to real time by a factor.
//!
//! - [`options`]: what to run ([`SimOptions`], the subcommand's command line).
//! - [`catalogue`]: the synthetic catalogue.
//! - [`executor`]: the simulated executor and its cost model.
//! - [`workload`]: users, programs and item popularity.
//! - [`run`]: the run itself (`SimOptions`' [`Mode`](crate::driver::Mode)).
//! - [`report`]: the [`SimReport`] and its JSON, Markdown and SVG forms.

pub mod catalogue;
pub mod executor;
pub mod options;
pub mod report;
pub mod run;
pub mod workload;

pub use catalogue::Catalogue;
pub use executor::{CostModel, SimulatedExecutor};
pub use options::{parse_bytes, SimOptions};
pub use report::SimReport;
