//! The byzantine harness (`shoal-loadtest byzantine`): the reliability mix ([`crate::chaos`])
//! on real worker processes of which a fraction are adversaries (`shoal-loadtest
//! adversary-worker`, [`crate::adversary`]), with `shoal verifier` processes deciding on every
//! result; before it, an honest baseline run of the same command. Every accepted output is
//! checked against one computed without the runtime; the report says who was caught when.
//!
//! - [`options`]: what to run.
//! - [`report`]: what was found, and the verdict.

pub mod options;
pub mod report;

use std::path::Path;

pub use options::ByzantineOptions;
pub use report::ByzantineReport;
use shoal_testkit::Role;

use crate::adversary::AdversaryLaunch;
use crate::chaos::mix::execute;
use crate::chaos::options::VerificationMode;
use crate::chaos::setup::Setup;
use crate::chaos::Options;
use crate::driver::Mode;
use crate::error::{LoadtestError, Result};

impl Mode for ByzantineOptions {
    type Report = ByzantineReport;

    fn report_prefix(&self) -> Option<&Path> {
        self.mix.report.as_deref()
    }

    async fn run(&self, command: String) -> Result<ByzantineReport> {
        if self.mix.verifiers == 0 {
            return Err(LoadtestError::Setup("a byzantine run needs --verifiers 1 or more".into()));
        }
        let mut run = self.mix.clone();
        run.verification = Some(run.verification.unwrap_or(VerificationMode::Always));
        let baseline = if self.no_baseline {
            None
        } else {
            eprintln!("honest baseline: {} workers, no adversaries", run.workers);
            Some(
                execute(&phase(&run, "baseline", run.workers), command.clone(), setup(&run, "baseline")?, |_| Ok(()))
                    .await?,
            )
        };
        let adversaries = self.adversaries();
        eprintln!(
            "byzantine run: {} honest workers and {} adversaries",
            run.workers - adversaries.len(),
            adversaries.len()
        );
        let byzantine = phase(&run, "byzantine", run.workers - adversaries.len());
        let setup = setup(&run, "byzantine")?;
        let launch = AdversaryLaunch {
            binary: AdversaryLaunch::binary_beside(&setup.shoal),
            redis: String::new(),
            home: setup.home.clone(),
            shards: run.shards,
            concurrency: run.worker_concurrency,
            heartbeat_ms: run.heartbeat_ms.unwrap_or(shoal_jobs::Membership::DEFAULT_HEARTBEAT.as_millis() as u64),
            honest_for: self.honest_for,
            lie_percent: self.lie_percent,
        };
        let start_adversaries = |stack: &shoal_testkit::ProcessStack| {
            let launch = AdversaryLaunch { redis: stack.redis_url().to_string(), ..launch };
            for (id, kind) in &adversaries {
                stack.start_process(id, Role::Worker, launch.command(id, *kind))?;
            }
            Ok(())
        };
        let attacked = execute(&byzantine, command.clone(), setup, start_adversaries).await?;
        Ok(ByzantineReport::new(self, command, &adversaries, &attacked, baseline.as_ref()))
    }
}

/// `run` as one phase: `workers` honest workers, its own home under `--work-dir`, no report.
fn phase(run: &Options, name: &str, workers: usize) -> Options {
    Options { workers, work_dir: run.work_dir.as_ref().map(|dir| dir.join(name)), report: None, ..run.clone() }
}

/// The setup of phase `name` of `run`.
fn setup(run: &Options, name: &str) -> Result<Setup> {
    Setup::new(&phase(run, name, run.workers))
}
