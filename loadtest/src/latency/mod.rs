//! The latency benchmark (`shoal-loadtest latency`, issue 15): open-loop submissions of
//! echo-hash jobs over small cached files at each offered rate, over HTTP, to a fresh process
//! stack per rate (Redis, gateway, workers; verification none), each job waited for by its
//! client; submission → result seen, the achieved rate, whether the backlog grew, the machine's
//! load and every process's CPU, and where a job's time went (the workers' and gateway's phase
//! histograms); then a BullMQ no-op baseline at the same rates in the same run. Reports a
//! [`LatencyReport`].
//!
//! - [`options`]: what to run ([`LatencyOptions`]).
//! - [`step`]: one rate's samples and figures, the same for both systems; the sustainable rate.
//! - [`phases`]: the per-phase cost breakdown read from the processes' histograms.
//! - [`shoal`]: one rate against Shoal.
//! - [`bullmq`]: the BullMQ baseline.
//! - [`report`]: the report, its Markdown and verdict.

pub mod bullmq;
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
        if self.rates.is_empty() {
            return Err(LoadtestError::Setup("--rates names no rate".into()));
        }
        let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut steps = Vec::new();
        let mut wait = None;
        for &rate in &self.rates {
            let step = shoal::run_step(self, rate, wait).await?;
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
        let baseline = if self.no_baseline { None } else { Some(bullmq::run(self).await.map_err(|e| e.to_string())) };
        Ok(LatencyReport::new(self, command, started_at_unix_s, wait.expect("at least one rate"), steps, baseline))
    }
}
