//! The verification harness (`shoal-loadtest verification`): the nondeterministic ML training
//! job (`programs/ml-train` on the handwritten digits) under each verification strategy —
//! `tolerance` on the claimed held-out accuracy, and the `ml-compare` comparator — with every
//! result re-executed (`always`). Per strategy, one stack of real `shoal worker` and `shoal
//! verifier` processes runs many honest jobs (are honest runs ever judged to disagree? how far
//! apart are their accuracies? what does verifying cost against running?); then, on a stack of
//! its own for each ML adversary kind ([`crate::adversary`]), that adversary is the only worker
//! and is handed jobs one at a time until it is quarantined or has told its lies: which lies
//! does the strategy catch?
//!
//! - [`options`]: what to run.
//! - [`report`]: what was found, and the verdict.

pub mod options;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cid::Cid;
use futures::TryStreamExt;
pub use options::{Strategy, VerificationOptions};
pub use report::VerificationReport;
use serde_json::{json, Value};
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::{BlockReader, FsBlockStore};
use shoal_jobs::keys::RedisRole;
use shoal_jobs::{Compared, ExecutionOutcome, Fsync, Job, JobState};
use shoal_testkit::{programs_dir, repo_root, ProcessStack, ProcessStackConfig, Role};

use crate::adversary::{adversary_id, quarantined, AdversaryKind, AdversaryLaunch};
use crate::api::{Api, JobRead, Submitted};
use crate::cli::shoal_binary;
use crate::driver::Mode;
use crate::error::{LoadtestError, Result};
use report::{AdversaryFigures, HonestFigures, JobRole, Spread, StrategyRun, Told};

/// Shard streams of every stack: few, since there are few workers.
const SHARDS: u32 = 16;
/// Workers' heartbeat: short, so a new worker owns its shards soon after it starts.
const HEARTBEAT_MS: u64 = 500;
/// The epochs ml-train trains for unless told otherwise (its README).
pub const DEFAULT_EPOCHS: u32 = 30;
/// The epochs of the job whose result a stolen-weights adversary hands in for every later one:
/// 20-epoch runs score within 0.02 of 30-epoch runs (0.950–0.967 over seeds 1–15 against
/// 0.953–0.967), so the theft shows in the claimed epochs and not in the accuracy.
pub const DONOR_EPOCHS: u32 = 20;
/// The files ml-train writes.
const WRITES: [&str; 3] = ["model.json", "weights.bin", "metrics.json"];
/// How often unfinished jobs are read.
const POLL: Duration = Duration::from_millis(500);
/// How long a failed job may wait for its verdict before it is counted without one.
const FAILED_VERDICT_GRACE_MS: u64 = 60_000;

/// What every phase of a run shares.
struct Context<'a> {
    options: &'a VerificationOptions,
    shoal: PathBuf,
    programs: PathBuf,
    data: PathBuf,
    /// Each phase's home is a directory under it.
    root: PathBuf,
    /// Makes idempotency keys unique to this run.
    nonce: u128,
}

/// One phase's stack, with ml-train, ml-compare and the digits in its block store.
struct Phase {
    stack: ProcessStack,
    api: Api,
    store: Arc<FsBlockStore>,
    train: Cid,
    compare: Cid,
    data: Cid,
    home: PathBuf,
    deadline: tokio::time::Instant,
}

impl Mode for VerificationOptions {
    type Report = VerificationReport;

    fn report_prefix(&self) -> Option<&Path> {
        self.report.as_deref()
    }

    async fn run(&self, command: String) -> Result<VerificationReport> {
        if self.strategies.is_empty() || self.workers == 0 || self.verifiers == 0 {
            return Err(LoadtestError::Invalid(
                "--strategies, --workers and --verifiers must not be empty or 0".into(),
            ));
        }
        if let Some(kind) = self.kinds.iter().find(|kind| !kind.is_ml()) {
            return Err(LoadtestError::Invalid(format!("--kinds: {} does not lie about the ML job", kind.name())));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(LoadtestError::Invalid(format!("--tolerance {} is not a finite number ≥ 0", self.tolerance)));
        }
        let started = Instant::now();
        let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let temporary;
        let root = match &self.work_dir {
            Some(dir) => dir.clone(),
            None => {
                temporary = tempfile::tempdir().map_err(|e| LoadtestError::io("creating a temporary home", e))?;
                temporary.path().to_path_buf()
            }
        };
        let data = self.data.clone().unwrap_or_else(|| repo_root().join("data/digits"));
        if !data.join("digits.csv").is_file() {
            return Err(LoadtestError::Setup(format!(
                "{}/digits.csv is missing: run scripts/fetch-data.sh",
                data.display()
            )));
        }
        let context = Context {
            options: self,
            shoal: shoal_binary(self.shoal.as_deref())?,
            programs: self.programs.clone().unwrap_or_else(programs_dir),
            data,
            root,
            nonce: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
        };
        let mut strategies = Vec::new();
        for &strategy in &self.strategies {
            eprintln!("{}: {} honest jobs on {} workers", strategy.name(), self.honest, self.workers);
            let honest = context.honest(strategy).await?;
            eprintln!(
                "{}: {} of {} agreed, {} false disagreements",
                strategy.name(),
                honest.agreed,
                honest.submitted,
                honest.false_disagreements
            );
            let mut adversaries = Vec::new();
            for &kind in &self.kinds {
                let figures = context.adversary(strategy, kind).await?;
                eprintln!(
                    "{} vs {}: {} of {} lies caught, quarantined: {}",
                    strategy.name(),
                    kind.name(),
                    figures.caught,
                    figures.lies,
                    figures.quarantined
                );
                adversaries.push(figures);
            }
            strategies.push(StrategyRun {
                strategy: strategy.name().to_string(),
                compare: strategy.compare(self.tolerance, "<ml-compare CID>", DEFAULT_EPOCHS),
                honest,
                adversaries,
            });
        }
        Ok(VerificationReport::new(self, command, started_at_unix_s, started.elapsed().as_secs_f64(), strategies))
    }
}

impl Context<'_> {
    /// Starts phase `name`'s stack (Redis, gateway, verifiers; no workers) with the programs
    /// and the digits in its block store.
    async fn start(&self, name: &str) -> Result<Phase> {
        let home = self.root.join(name);
        std::fs::create_dir_all(&home).map_err(|e| LoadtestError::io(format!("creating {}", home.display()), e))?;
        let blocks = home.join("blocks");
        let store = Arc::new(
            FsBlockStore::open(&blocks)
                .map_err(|e| LoadtestError::content(format!("opening {}", blocks.display()), e))?,
        );
        let data = unixfs::import_path(&self.data, &ImportOptions::default(), store.as_ref())
            .await
            .map_err(|e| LoadtestError::content(format!("adding {}", self.data.display()), e))?
            .root;
        let mut modules = Vec::new();
        for name in ["ml-train", "ml-compare"] {
            let path = self.programs.join(format!("{name}.wasm"));
            let bytes =
                std::fs::read(&path).map_err(|e| LoadtestError::io(format!("reading {}", path.display()), e))?;
            let imported = unixfs::import_reader(&bytes[..], &ImportOptions::default(), store.as_ref())
                .await
                .map_err(|e| LoadtestError::content(format!("adding {}", path.display()), e))?;
            modules.push(imported.root);
        }
        let stack = ProcessStack::start(ProcessStackConfig {
            shoal: self.shoal.clone(),
            home: home.clone(),
            shards: SHARDS,
            worker_concurrency: 1,
            visibility_timeout_secs: None,
            fsync: Fsync::EverySec,
            input_cache_bytes: None,
            heartbeat_ms: Some(HEARTBEAT_MS),
        })
        .await?;
        for n in 0..self.options.verifiers {
            stack.start_verifier(&format!("verifier-{n}"), 0.0)?;
        }
        let api = Api::new(stack.gateway_url(), stack.api_key())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.options.deadline_secs);
        Ok(Phase { stack, api, store, train: modules[0], compare: modules[1], data, home, deadline })
    }

    /// The training job's spec under `strategy`, asking for `epochs` (ml-train's default if
    /// none); no `--seed`, so each run draws its own.
    fn spec(&self, phase: &Phase, strategy: Strategy, epochs: Option<u32>) -> Value {
        let compare =
            strategy.compare(self.options.tolerance, &phase.compare.to_string(), epochs.unwrap_or(DEFAULT_EPOCHS));
        let mut spec = json!({
            "program": phase.train.to_string(),
            "determinism": "nondeterministic",
            "inputs": [{"cid": phase.data.to_string(), "path": "/inputs"}],
            "limits": {"fuel": self.options.fuel},
            "writes": WRITES,
            "verification": {"mode": "always", "compare": compare},
        });
        if let Some(epochs) = epochs {
            spec["args"] = json!(["--epochs", epochs.to_string()]);
        }
        spec
    }

    /// Submits `spec` as job `key` of this run.
    async fn submit(&self, phase: &Phase, spec: &Value, key: &str) -> Result<String> {
        match phase.api.submit(spec, &format!("{key}-{}", self.nonce), phase.deadline).await {
            Submitted::Refused { reason } => {
                Err(LoadtestError::Gateway { context: format!("submitting {key}"), message: reason })
            }
            submitted => Ok(submitted.id().expect("accepted submissions have an id").to_string()),
        }
    }

    /// The honest phase of `strategy`: `--honest` jobs on `--workers` honest workers, each
    /// verified.
    async fn honest(&self, strategy: Strategy) -> Result<HonestFigures> {
        let started = Instant::now();
        let phase = self.start(&format!("{}-honest", strategy.name())).await?;
        for _ in 0..self.options.workers {
            phase.stack.start_worker(&phase.stack.new_worker_id())?;
        }
        let spec = self.spec(&phase, strategy, None);
        let mut ids = Vec::with_capacity(self.options.honest);
        for n in 0..self.options.honest {
            ids.push(self.submit(&phase, &spec, &format!("{}-honest-{n}", strategy.name())).await?);
        }
        let jobs = wait_for_verdicts(&phase, &ids).await;
        // CPU before shutting down: the processes are read while they run.
        let cpu = phase.stack.cpu_seconds();
        let sum = |role: Role| phase.stack.running(role).iter().filter_map(|id| cpu.get(id)).sum::<f64>();
        let (worker_cpu_s, verifier_cpu_s) = (sum(Role::Worker), sum(Role::Verifier));
        let mut accuracies = Vec::new();
        for job in jobs.iter().filter(|job| job.state == JobState::Succeeded) {
            if let Some(result) = &job.result {
                accuracies.push(claimed_accuracy(&phase.store, result.output.cid()).await?);
            }
        }
        phase.stack.shutdown();
        let gaps: Vec<f64> = jobs.iter().filter_map(honest_gap).collect();
        let run_ms: Vec<f64> =
            jobs.iter().filter_map(|job| job.result.as_ref()).map(|result| result.run_ms as f64).collect();
        let verdicts = verdict_counts(&jobs);
        let agreed = verdicts.get("agreed").copied().unwrap_or(0);
        let false_disagreements = verdicts.get("disagreed").copied().unwrap_or(0);
        Ok(HonestFigures {
            submitted: ids.len(),
            succeeded: jobs.iter().filter(|job| job.state == JobState::Succeeded).count(),
            verified: jobs.iter().filter(|job| job.verification.is_some()).count(),
            agreed,
            false_disagreements,
            verdicts,
            accuracy: Spread::of(&accuracies),
            gap: Spread::of(&gaps),
            worker_run_ms: Spread::of(&run_ms),
            worker_cpu_s,
            verifier_cpu_s,
            cost_ratio: if worker_cpu_s > 0.0 { verifier_cpu_s / worker_cpu_s } else { 0.0 },
            wall_s: started.elapsed().as_secs_f64(),
            disagreements: jobs
                .iter()
                .filter(|job| verdict_of(job) == "disagreed")
                .map(|job| format!("{}: {}", job.id, told(job)))
                .collect(),
        })
    }

    /// `kind` alone against the verifiers under `strategy`: its lies, one job at a time, until
    /// it is quarantined or has told `--lies` of them.
    async fn adversary(&self, strategy: Strategy, kind: AdversaryKind) -> Result<AdversaryFigures> {
        let phase = self.start(&format!("{}-{}", strategy.name(), kind.name())).await?;
        let worker = adversary_id(0, kind);
        let launch = AdversaryLaunch {
            binary: AdversaryLaunch::binary_beside(&self.shoal),
            redis: phase.stack.redis_url_for(RedisRole::Worker),
            home: phase.home.clone(),
            shards: SHARDS,
            concurrency: 1,
            heartbeat_ms: HEARTBEAT_MS,
            honest_for: 0,
            lie_percent: 100,
            raise: self.options.raise,
        };
        phase.stack.start_process(&worker, Role::Worker, launch.command(&worker, kind))?;
        let caught = |worker: &str| {
            let url = phase.stack.redis_url().to_string();
            let worker = worker.to_string();
            async move { quarantined(&url).await.map(|all| all.get(&worker).cloned()) }
        };
        let mut told = Vec::new();
        if kind == AdversaryKind::StolenWeights {
            let spec = self.spec(&phase, strategy, Some(DONOR_EPOCHS));
            let id = self.submit(&phase, &spec, &format!("{}-{}-donor", strategy.name(), kind.name())).await?;
            told.extend(
                wait_for_verdicts(&phase, &[id]).await.iter().map(|job| Told::of(job, JobRole::Donor, &worker)),
            );
        }
        let spec = self.spec(&phase, strategy, None);
        for n in 0..self.options.lies {
            if caught(&worker).await?.is_some() {
                break;
            }
            let id = self.submit(&phase, &spec, &format!("{}-{}-lie-{n}", strategy.name(), kind.name())).await?;
            told.extend(wait_for_verdicts(&phase, &[id]).await.iter().map(|job| Told::of(job, JobRole::Lie, &worker)));
        }
        for job in told.iter_mut() {
            if let Some(output) = job.output {
                job.claimed_accuracy = claimed_accuracy(&phase.store, &output).await.ok();
            }
        }
        let quarantine = caught(&worker).await?;
        phase.stack.shutdown();
        Ok(AdversaryFigures::new(kind, worker, told, quarantine))
    }
}

/// Reads each job of `ids` until it has a verdict (or failed without one for a while, or was
/// cancelled), or the phase's deadline passes; the last read of each.
async fn wait_for_verdicts(phase: &Phase, ids: &[String]) -> Vec<Job> {
    let mut last: BTreeMap<&str, Job> = BTreeMap::new();
    let done = |job: &Job| {
        job.verification.is_some()
            || job.state == JobState::Cancelled
            || (job.state == JobState::Failed
                && shoal_jobs::now_ms().saturating_sub(job.updated_at_ms) > FAILED_VERDICT_GRACE_MS)
    };
    loop {
        for id in ids {
            if last.get(id.as_str()).is_some_and(done) {
                continue;
            }
            if let JobRead::Found(job) = phase.api.job(id).await {
                last.insert(id, *job);
            }
        }
        if ids.iter().all(|id| last.get(id.as_str()).is_some_and(done)) || tokio::time::Instant::now() >= phase.deadline
        {
            return ids.iter().filter_map(|id| last.remove(id.as_str())).collect();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The held-out accuracy `metrics.json` claims in output `root`.
async fn claimed_accuracy(store: &Arc<FsBlockStore>, root: &Cid) -> Result<f64> {
    let failed = |e| LoadtestError::content(format!("reading {root}/metrics.json"), e);
    let cid = unixfs::resolve_path(store.as_ref(), root, "metrics.json").await.map_err(failed)?;
    let reader: Arc<dyn BlockReader> = store.clone();
    let bytes: Vec<_> = unixfs::cat(reader, cid).try_collect().await.map_err(failed)?;
    let metrics: Value = serde_json::from_slice(&bytes.concat())
        .map_err(|e| LoadtestError::Invalid(format!("{root}/metrics.json is not JSON: {e}")))?;
    metrics["held_out_accuracy"]
        .as_f64()
        .ok_or_else(|| LoadtestError::Invalid(format!("{root}/metrics.json claims no held_out_accuracy")))
}

/// How far apart the accuracies of the two honest runs compared for `job` were: the
/// tolerance check's values, or the comparator's `accuracy_gap`.
fn honest_gap(job: &Job) -> Option<f64> {
    job.verification.as_ref()?.compared.iter().find_map(|compared| match compared {
        Compared::Tolerance { checks, .. } => {
            let check = checks.iter().find(|c| c.field.ends_with("/held_out_accuracy"))?;
            Some((check.reported? - check.other?).abs())
        }
        Compared::Comparator { said, .. } => serde_json::from_str::<Value>(said).ok()?["accuracy_gap"].as_f64(),
        Compared::Exact { .. } => None,
    })
}

/// The name of `job`'s verdict (`agreed`, `disagreed`, …), `none` without one.
fn verdict_of(job: &Job) -> &'static str {
    job.verification.as_ref().map_or("none", |v| crate::byzantine::report::verdict_name(&v.outcome))
}

/// Jobs by verdict.
fn verdict_counts(jobs: &[Job]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for job in jobs {
        *counts.entry(verdict_of(job).to_string()).or_insert(0) += 1;
    }
    counts
}

/// What the comparison behind `job`'s verdict said, in a line.
fn told(job: &Job) -> String {
    let Some(verification) = &job.verification else {
        return format!("no verdict ({:?})", job.state);
    };
    let said: Vec<String> = verification
        .compared
        .iter()
        .map(|compared| match compared {
            Compared::Tolerance { checks, .. } => checks
                .iter()
                .map(|c| match (c.reported, c.other, &c.problem) {
                    (_, _, Some(problem)) => format!("{}: {problem}", c.field),
                    (Some(reported), Some(other), None) => format!(
                        "{}: reported {reported:.4}, re-execution {other:.4} ({})",
                        c.field,
                        if c.within { "within" } else { "outside" }
                    ),
                    _ => format!("{}: within {}", c.field, c.within),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Compared::Comparator { exit_code, said, .. } => format!("ml-compare exit {exit_code}: {said}"),
            Compared::Exact { differs, .. } => format!("differs: {}", differs.join(", ")),
        })
        .collect();
    if said.is_empty() {
        format!("{:?}", verification.outcome).chars().take(200).collect()
    } else {
        said.join(" | ")
    }
}

/// The output of the execution of `worker` that completed for `job`.
fn output_of(job: &Job, worker: &str) -> Option<Cid> {
    job.executions.iter().find_map(|e| match &e.outcome {
        Some(ExecutionOutcome::Completed(result)) if e.worker == worker => Some(*result.output.cid()),
        _ => None,
    })
}
