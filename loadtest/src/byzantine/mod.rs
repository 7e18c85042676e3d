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

use std::collections::BTreeMap;
use std::path::Path;

pub use options::ByzantineOptions;
pub use report::ByzantineReport;
use shoal_jobs::keys::RedisRole;
use shoal_testkit::Role;

use crate::adversary::AdversaryKind;
use crate::adversary::AdversaryLaunch;
use crate::chaos::mix::{execute, MixRun};
use crate::chaos::setup::Setup;
use crate::chaos::Options;
use crate::driver::Mode;
use crate::error::{LoadtestError, Result};
use crate::scenes::run::{run_scenes, ScenesEvidence};
use crate::scenes::{ScenesOptions, ScenesProgram, ScenesReport};
use crate::workload::PlannedJob;

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
        run.verification = Some(self.verification());
        if let Some(scenes) = self.scenes {
            return self.run_scenes(&run, scenes, command).await;
        }
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
            raise: None,
        };
        let start_adversaries = |stack: &shoal_testkit::ProcessStack| {
            let launch = AdversaryLaunch { redis: stack.redis_url_for(RedisRole::Worker), ..launch };
            for (id, kind) in &adversaries {
                stack.start_process(id, Role::Worker, launch.command(id, *kind))?;
            }
            Ok(())
        };
        let attacked = execute(&byzantine, command.clone(), setup, start_adversaries).await?;
        Ok(ByzantineReport::new(self, command, &adversaries, &attacked, baseline.as_ref()))
    }
}

impl ByzantineOptions {
    /// The scenes workload as a byzantine run: `scenes` scenes, honest first, then with the
    /// adversaries among the workers.
    async fn run_scenes(&self, run: &Options, scenes: usize, command: String) -> Result<ByzantineReport> {
        let adversaries = self.adversaries();
        let phase = |name: &str, honest: usize, adversaries: Vec<AdversaryKind>| ScenesOptions {
            scenes,
            tile: 32,
            workers: honest,
            worker_concurrency: run.worker_concurrency,
            shards: run.shards,
            input_cache_bytes: 4 << 30,
            program: ScenesProgram::CloudDetect,
            source: None,
            shoal: run.shoal.clone(),
            programs: run.programs.clone(),
            home: run.work_dir.as_ref().map(|dir| dir.join(name)),
            deadline_secs: run.deadline_secs,
            // Caught adversaries' shards move: locality is not what this run is about.
            min_local_rate: 0.0,
            verifiers: run.verifiers,
            verification: self.verification(),
            adversaries,
            reference: true,
            report: None,
            quiet: run.quiet,
        };
        let baseline = if self.no_baseline {
            None
        } else {
            eprintln!("honest baseline: {} workers, no adversaries, {scenes} scenes", run.workers);
            let (report, evidence) = run_scenes(&phase("baseline", run.workers, Vec::new()), command.clone()).await?;
            Some(of_scenes(report, evidence))
        };
        eprintln!(
            "byzantine run: {} honest workers and {} adversaries",
            run.workers - adversaries.len(),
            adversaries.len()
        );
        let kinds = adversaries.iter().map(|(_, kind)| *kind).collect();
        let (report, evidence) =
            run_scenes(&phase("byzantine", run.workers - adversaries.len(), kinds), command.clone()).await?;
        // The scenes run names its adversaries with `adversary_id` too, so the ids match.
        Ok(ByzantineReport::new(self, command, &adversaries, &of_scenes(report, evidence), baseline.as_ref()))
    }
}

/// A scenes run's cold run as a mix run: each task a planned job whose expected output is the
/// reference run's.
fn of_scenes(report: ScenesReport, evidence: ScenesEvidence) -> MixRun {
    let mut planned = Vec::new();
    let mut finished = BTreeMap::new();
    for (n, (task, should)) in evidence.tasks.into_iter().enumerate() {
        planned.push(PlannedJob {
            kind: "cloud-detect task",
            spec: serde_json::to_value(&task.spec).unwrap_or_default(),
            // Unknown (the reference run failed): never equal to an output, so counted wrong.
            expected_output: should.unwrap_or_default(),
        });
        finished.insert(n, task);
    }
    MixRun { report: report.cold.base, planned, finished, quarantined: evidence.quarantined }
}

/// `run` as one phase: `workers` honest workers, its own home under `--work-dir`, no report.
fn phase(run: &Options, name: &str, workers: usize) -> Options {
    Options { workers, work_dir: run.work_dir.as_ref().map(|dir| dir.join(name)), report: None, ..run.clone() }
}

/// The setup of phase `name` of `run`.
fn setup(run: &Options, name: &str) -> Result<Setup> {
    Setup::new(&phase(run, name, run.workers))
}
