//! The latency benchmark (`shoal-loadtest latency`, issue 15): open-loop submissions of
//! echo-hash jobs over small cached files at each offered rate, over HTTP, to a fresh process
//! stack per rate (Redis, gateway, workers; verification none), each job waited for by its
//! client; submission → result seen, the achieved rate, whether the backlog grew, the machine's
//! load and every process's CPU, and where a job's time went (the workers' and gateway's phase
//! histograms); then a BullMQ no-op baseline at the same rates in the same run. Reports a
//! [`LatencyReport`]. With `--memoised N`, first (or alone, without `--rates`) the memoised
//! repeats: the gateway's time answering a submission identical to an accepted run.
//!
//! - [`options`]: what to run ([`LatencyOptions`]).
//! - [`step`]: one rate's samples and figures, the same for both systems; the sustainable rate.
//! - [`phases`]: the per-phase cost breakdown read from the processes' histograms.
//! - [`shoal`]: one rate against Shoal.
//! - [`bullmq`]: the BullMQ baseline.
//! - [`memoised`]: the memoised repeats.
//! - [`report`]: the report, its Markdown and verdict.

pub mod bullmq;
pub mod memoised;
pub mod options;
pub mod phases;
pub mod report;
pub mod shoal;
pub mod step;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub use options::LatencyOptions;
pub use report::LatencyReport;

use crate::driver::Mode;
use crate::error::{LoadtestError, Result};

impl Mode for LatencyOptions {
    type Report = LatencyReport;

    fn report_prefix(&self) -> Option<&Path> {
        self.report.as_deref()
    }

    async fn run(&self, command: String) -> Result<LatencyReport> {
        if self.rates.is_empty() && self.memoised.is_none() {
            return Err(LoadtestError::Setup("--rates names no rate".into()));
        }
        let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // Every stack's home is removed at the end, not after its rate: on ext4 the files a rate
        // leaves, deleted, would slow the next rate's file creation for minutes (the inode
        // allocator skips recently deleted inodes, reading each), charging it for the last one.
        let (homes, _temporary) = match &self.work_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temporary = tempfile::tempdir().map_err(|e| LoadtestError::io("creating the stacks' homes", e))?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        let mut memoised = None;
        if let Some(repeats) = self.memoised {
            let figures = memoised::run(self, &homes, repeats as usize).await?;
            eprintln!(
                "memoised ×{}: server p50 {:.3} ms, p99 {:.3} ms, mean {:.3} ms; round trip p99 {:.3} ms",
                figures.repeats,
                figures.server.p50_ms,
                figures.server.p99_ms,
                figures.server.mean_ms,
                figures.client.p99_ms
            );
            memoised = Some(figures);
        }
        let mut steps = Vec::new();
        let mut wait = None;
        for &rate in &self.rates {
            let step = shoal::run_step(self, &homes, rate, wait).await?;
            eprintln!(
                "shoal {rate}/s: p50 {:.1} ms, p99 {:.1} ms, {:.0} done/s, backlog {:+.0}/s",
                step.figures.p50_ms,
                step.figures.p99_ms,
                step.figures.completed_per_s,
                step.figures.backlog_slope_per_s
            );
            wait = Some(step.wait);
            steps.push(step.figures);
        }
        let baseline = if self.no_baseline || self.rates.is_empty() {
            None
        } else {
            Some(bullmq::run(self).await.map_err(|e| e.to_string()))
        };
        Ok(LatencyReport::new(self, command, started_at_unix_s, wait, steps, baseline, memoised))
    }
}
