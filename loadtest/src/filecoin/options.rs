//! What a Filecoin retrieval run does: the options of `shoal-loadtest filecoin`.

use std::path::PathBuf;

use clap::Args;

/// Paid retrievals under a wallet's spending limit, among a lying provider, with a worker
/// killed mid-run; then the same datasets again: `shoal-loadtest filecoin [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct FilecoinOptions {
    /// Datasets (and jobs per phase), each held only by the providers.
    #[arg(long, default_value_t = 100)]
    pub datasets: usize,
    /// Bytes of each dataset.
    #[arg(long, default_value_t = 256 * 1024)]
    pub dataset_bytes: usize,
    /// How many cold retrievals the wallet's limit pays for at least (each costs at most the
    /// liar's price and the cheapest honest one's; a worker pays the liar once and then shuns
    /// it, so more fit); `--datasets` must exceed what the limit buys at the honest price
    /// alone, so some jobs must fail `budget_exhausted`.
    #[arg(long, default_value_t = 60)]
    pub affordable: usize,
    /// Worker processes, each buying from every provider.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Paid retrievals (accepted vouchers) after which one worker is SIGKILLed and started
    /// again.
    #[arg(long, default_value_t = 20)]
    pub kill_after: usize,
    /// The `shoal` binary (default: beside this one, or the workspace's target directory).
    #[arg(long)]
    pub shoal: Option<PathBuf>,
    /// Where the stack lives (a temporary directory if not given).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Seconds each phase may take before the run gives up on its unfinished jobs.
    #[arg(long, default_value_t = 240)]
    pub deadline_secs: u64,
    /// Write PREFIX.json and PREFIX.md.
    #[arg(long)]
    pub report: Option<PathBuf>,
}
