//! The cloud pipeline over many small real-format Landsat scenes (`shoal-loadtest pipeline`),
//! on a stack of separate processes: a private `redis-server`, a `shoal gateway` and K
//! `shoal worker`s sharing one block store, the workers driving the pipeline.
//!
//! The scenes are cut as `shoal-loadtest scenes` cuts them ([`crate::scenes::tiles`]). The
//! three-stage pipeline — `cloud-detect` on each scene, `cloud-remove` where detect's own
//! `stats.json` puts the cloud fraction over 5 %, `cloud-summary` over both stages' outputs —
//! goes through `POST /v1/pipelines` three times, each differing in one environment variable
//! so that nothing is memoised from an earlier run: clean; the same work as separate jobs a
//! client submits stage by stage (the baseline); and again with a worker SIGKILLed and Redis
//! restarted mid-run, which must end with the same outputs ([`run`]).
//!
//! - [`PipelineOptions`]: what to run (the subcommand's command line).
//! - [`run`]: the runs and their checks (`PipelineOptions`' [`Mode`](crate::driver::Mode)).
//! - [`report`]: the [`PipelineReport`] and its JSON and Markdown forms.

pub mod report;
pub mod run;

use std::path::PathBuf;

use clap::Args;

pub use report::{PipelineReport, PipelineRun};

/// `shoal-loadtest pipeline [OPTIONS]`: the cloud pipeline over N small real-format scenes,
/// clean, as separate jobs, and through a worker kill and a Redis restart.
#[derive(Debug, Clone, Args)]
pub struct PipelineOptions {
    /// Scenes in the directory (one detect unit each).
    #[arg(long, default_value_t = 10_000)]
    pub scenes: usize,
    /// Side of a scene in 30 m pixels (B8, at 15 m, gets twice as many).
    #[arg(long, default_value_t = 32)]
    pub tile: u32,
    /// Worker processes (at least 4).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 2)]
    pub worker_concurrency: usize,
    /// Shard streams.
    #[arg(long, default_value_t = 256)]
    pub shards: u32,
    /// Seconds after which a worker takes over a dead worker's pending jobs.
    #[arg(long, default_value_t = 15)]
    pub visibility_timeout_secs: u64,
    /// Fraction of the detect units done when the third run kills a worker and restarts Redis.
    #[arg(long, default_value_t = 0.3)]
    pub fault_at: f64,
    /// The real scene the tiles are cut from (default: the repository's `data/landsat` scene).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// The `shoal` binary (default: beside this one, else target/release, else target/debug).
    #[arg(long)]
    pub shoal: Option<PathBuf>,
    /// Directory of the committed `.wasm` programs (default: the repository's `programs/wasm`).
    #[arg(long)]
    pub programs: Option<PathBuf>,
    /// Home of the stack: tiles, block store, Redis, logs (default: a temporary directory,
    /// removed afterwards).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Seconds each run may take before it counts as unfinished.
    #[arg(long, default_value_t = 3600)]
    pub deadline_secs: u64,
    /// Write the report to PREFIX.json and PREFIX.md.
    #[arg(long, value_name = "PREFIX")]
    pub report: Option<PathBuf>,
}
