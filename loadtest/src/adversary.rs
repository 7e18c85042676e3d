//! Byzantine workers, for the harness and its tests only: the real worker loop and the real
//! [`Executor`], wrapped so that it lies in one of several ways. Nothing here is reachable from
//! the `shoal` binary or any production flag: an adversary runs as `shoal-loadtest
//! adversary-worker`, a process of the harness.
//!
//! Each kind settles through the worker's real settle step (so its lies carry genuine receipts,
//! signed by its registered key) except the forger, which signs with a key not bound to its id.
//!
//! The kinds up to the forger lie about any job. The ML kinds ([`ml`]) lie about the ML training
//! job (`programs/ml-train`) in ways that fit it, with results in its own format that look like
//! a training run's.

mod ml;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};
use shoal_jobs::{
    now_ms, ContentId, Delivery, ExecutionOutcome, ExecutionResult, Job, JobState, PublicKey, StoreError, WorkerKey,
};
use shoal_worker::{begin, settle, Begun, Execute, Executor, Settled, WorkerConfig};

use crate::error::{LoadtestError, Result};

/// How an adversary lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdversaryKind {
    /// Runs the job, then reports a random output.
    Liar,
    /// Does not run the job: reports the output of the previous job it ran honestly.
    Lazy,
    /// Reports, without running, a wrong result derived from the job alone: every colluder
    /// reports the same one for the same job, which defeats a naive majority.
    Colluding,
    /// Honest for its first `--honest-for` jobs, then a liar.
    Sleeper,
    /// Honest but for about `--lie-percent` (1 %) of its jobs, chosen by a hash of the job id,
    /// where it lies.
    Rare,
    /// Runs the job honestly but signs its receipt with a key not registered for its id.
    Forger,
    /// ML job: runs it honestly, then raises `metrics.json`'s `held_out_accuracy` (by `--raise`,
    /// else by 0.02–0.05 drawn per job; never above 1) and reports the output directory
    /// re-imported: weights that achieve less than they claim.
    FabricatedMetrics,
    /// ML job: trains for 1 epoch instead of the ones asked for (30 unless the job's `--epochs`
    /// says otherwise) and writes the asked number into `metrics.json`'s `epochs`: weights from
    /// fewer epochs, every other claim true of them.
    FewEpochs,
    /// ML job: caches results by program and inputs, ignoring the arguments — the first job of a
    /// program and inputs is run honestly, every later one is given that job's output: another
    /// job's genuine weights and metrics. (Not the previous job's output whatever it was: among
    /// jobs of the same arguments another run's result is as valid as a new one, so that would
    /// be no lie.) The `verification` harness makes that first job ask for fewer epochs
    /// (`--epochs 20`), so every later result is another job's.
    StolenWeights,
    /// ML job: runs nothing; reports random finite weights of the shape asked for (`--hidden`,
    /// 32 by default) with a plausible `metrics.json` claiming a held-out accuracy of 0.950 to
    /// 0.967.
    RandomWeights,
}

impl AdversaryKind {
    /// The kind's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AdversaryKind::Liar => "liar",
            AdversaryKind::Lazy => "lazy",
            AdversaryKind::Colluding => "colluding",
            AdversaryKind::Sleeper => "sleeper",
            AdversaryKind::Rare => "rare",
            AdversaryKind::Forger => "forger",
            AdversaryKind::FabricatedMetrics => "fabricated-metrics",
            AdversaryKind::FewEpochs => "few-epochs",
            AdversaryKind::StolenWeights => "stolen-weights",
            AdversaryKind::RandomWeights => "random-weights",
        }
    }

    /// Whether it lies in the ML job's own format (and needs [`Adversary::forging_into`]).
    pub fn is_ml(self) -> bool {
        matches!(
            self,
            AdversaryKind::FabricatedMetrics
                | AdversaryKind::FewEpochs
                | AdversaryKind::StolenWeights
                | AdversaryKind::RandomWeights
        )
    }
}

/// A worker's executor that lies as its kind says.
pub struct Adversary {
    inner: Executor,
    kind: AdversaryKind,
    honest_for: u64,
    lie_percent: u64,
    settled: AtomicU64,
    /// The lazy worker's stock answer: the result of the first job it ran.
    last_output: Mutex<Option<ExecutionResult>>,
    /// The forger's key, registered for no one.
    forged: WorkerKey,
    /// The ML kinds' forging means.
    ml: Option<ml::MlForger>,
}

impl Adversary {
    /// Wraps `inner`; a sleeper stays honest for `honest_for` jobs, a rare liar lies on
    /// `lie_percent` % of them.
    pub fn new(inner: Executor, kind: AdversaryKind, honest_for: u64, lie_percent: u64) -> Adversary {
        Adversary {
            inner,
            kind,
            honest_for,
            lie_percent,
            settled: AtomicU64::new(0),
            last_output: Mutex::new(None),
            forged: WorkerKey::generate(),
            ml: None,
        }
    }

    /// An ML adversary forging results into the block store at `store_dir` (its worker's); a
    /// fabricated-metrics adversary raises claims by `raise`, or by 0.02–0.05 drawn per job.
    pub fn forging_into(self, store_dir: &std::path::Path, raise: Option<f64>) -> Result<Adversary> {
        let forger = ml::MlForger::open(store_dir, raise).map_err(LoadtestError::Setup)?;
        Ok(Adversary { ml: Some(forger), ..self })
    }

    /// Whether it lies on `job`, its `n`th.
    fn lies_on(&self, job: &Job, n: u64) -> bool {
        match self.kind {
            AdversaryKind::Liar
            | AdversaryKind::Lazy
            | AdversaryKind::Colluding
            | AdversaryKind::Forger
            | AdversaryKind::FabricatedMetrics
            | AdversaryKind::FewEpochs
            | AdversaryKind::StolenWeights
            | AdversaryKind::RandomWeights => true,
            AdversaryKind::Sleeper => n >= self.honest_for,
            AdversaryKind::Rare => digest_u64(job.id.as_bytes()) % 100 < self.lie_percent,
        }
    }

    /// The result it reports for `job`: honest, or its kind of lie.
    async fn result(
        &self,
        job: &Job,
        execution_id: &str,
        lie: bool,
    ) -> std::result::Result<ExecutionResult, ExecutionOutcome> {
        let honest = || async { self.inner.run_spec(&job.spec, execution_id).await.map_err(ExecutionOutcome::Failed) };
        if !lie || self.kind == AdversaryKind::Forger {
            return honest().await;
        }
        if self.kind.is_ml() {
            let forger = self.ml.as_ref().ok_or_else(|| ExecutionOutcome::Failed(ml::unprepared(self.kind)))?;
            return forger.result(&self.inner, self.kind, job, execution_id).await.map_err(ExecutionOutcome::Failed);
        }
        match self.kind {
            AdversaryKind::Lazy => {
                let stock = self.last_output.lock().expect("never poisoned").clone();
                match stock {
                    Some(stock) => Ok(stock),
                    // Its first job is run, to have an answer to give every later one.
                    None => {
                        let result = honest().await?;
                        *self.last_output.lock().expect("never poisoned") = Some(result.clone());
                        Ok(result)
                    }
                }
            }
            AdversaryKind::Colluding => {
                let invocation = job.invocation.to_string();
                Ok(ExecutionResult {
                    exit_code: 0,
                    output: raw_cid(format!("colluding output {invocation}").as_bytes()),
                    stdout: raw_cid(format!("colluding stdout {invocation}").as_bytes()),
                    stderr: raw_cid(b""),
                    fuel_consumed: digest_u64(invocation.as_bytes()) % 1_000_000,
                    fetch_ms: 0,
                    run_ms: 0,
                    inputs_cached: 0,
                })
            }
            _ => {
                let mut result = honest().await?;
                result.output = raw_cid(format!("a lie about {} at {}", job.id, now_ms()).as_bytes());
                Ok(result)
            }
        }
    }
}

impl Execute for Adversary {
    fn public_key(&self) -> Option<PublicKey> {
        Some(self.inner.public_key())
    }

    async fn execute(&self, delivery: &Delivery) -> std::result::Result<Settled, StoreError> {
        let (job, mut execution) = match begin(self.inner.jobs(), self.inner.id(), delivery).await? {
            Begun::Run(job, execution) => (job, execution),
            Begun::Settled(settled) => return Ok(settled),
        };
        let n = self.settled.fetch_add(1, Ordering::Relaxed);
        let lie = self.lies_on(&job, n);
        let outcome = match self.result(&job, &execution.id, lie).await {
            Ok(result) => ExecutionOutcome::Completed(result),
            Err(failed) => failed,
        };
        execution.finished_at_ms = Some(now_ms());
        execution.outcome = Some(outcome);
        let (_, settled) = if self.kind == AdversaryKind::Forger {
            let inner = &self.inner;
            settle(inner.jobs(), inner.queue(), Some(inner.store()), &self.forged, &job, *execution, Some(delivery))
                .await?
        } else {
            self.inner.settle(&job, *execution, Some(delivery)).await?
        };
        Ok(settled)
    }
}

fn digest_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(Sha256::digest(bytes)[..8].try_into().expect("8 bytes"))
}

fn raw_cid(bytes: &[u8]) -> ContentId {
    ContentId(crate::sim::catalogue::raw_cid(bytes))
}

/// `shoal-loadtest adversary-worker`: one byzantine worker process.
#[derive(Debug, Clone, Args)]
pub struct AdversaryOptions {
    /// How it lies.
    #[arg(long, value_enum)]
    pub kind: AdversaryKind,
    /// The Redis holding jobs, logged in as a worker.
    #[arg(long, env = "SHOAL_REDIS", hide_env_values = true)]
    pub redis: String,
    /// Its worker id.
    #[arg(long)]
    pub id: String,
    /// Its home (block store, key, scratch), shared with the honest workers' block store.
    #[arg(long)]
    pub home: std::path::PathBuf,
    /// Shard streams.
    #[arg(long, default_value_t = shoal_jobs::ShardRouter::DEFAULT_SHARDS)]
    pub shards: u32,
    /// Jobs at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Milliseconds between heartbeats.
    #[arg(long, default_value_t = 5000)]
    pub heartbeat_ms: u64,
    /// A sleeper's honest jobs before it turns.
    #[arg(long, default_value_t = 20)]
    pub honest_for: u64,
    /// The percentage of its jobs a rare liar lies on.
    #[arg(long, default_value_t = 1)]
    pub lie_percent: u64,
    /// What a fabricated-metrics adversary adds to the claimed held-out accuracy; drawn per job
    /// from 0.02–0.05 if not given.
    #[arg(long)]
    pub raise: Option<f64>,
}

/// Runs the adversary worker until SIGTERM or Ctrl-C.
pub fn run_adversary(options: &AdversaryOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadtestError::io("starting the async runtime", e))?;
    runtime.block_on(async {
        let mut config = WorkerConfig::new(&options.id, &options.redis, &options.home);
        config.shards = options.shards;
        config.concurrency = options.concurrency;
        config.heartbeat = std::time::Duration::from_millis(options.heartbeat_ms.max(100));
        let setup = |e: shoal_worker::WorkerError| LoadtestError::Setup(format!("adversary {}: {e}", options.id));
        let executor = Executor::open(&config).await.map_err(setup)?;
        let (jobs, queue) = (executor.jobs().clone(), executor.queue().clone());
        let mut adversary = Adversary::new(executor, options.kind, options.honest_for, options.lie_percent);
        if options.kind.is_ml() {
            adversary = adversary.forging_into(&config.store_dir, options.raise)?;
        }
        let adversary = Arc::new(adversary);
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        shoal_worker::serve(&config, jobs, queue, adversary, shutdown).await.map_err(setup)
    })
}

/// How the harness starts adversaries: everything of an `adversary-worker` command line but the
/// kind and id.
#[derive(Debug, Clone)]
pub struct AdversaryLaunch {
    /// The `shoal-loadtest` binary (see [`AdversaryLaunch::binary_beside`]).
    pub binary: std::path::PathBuf,
    /// The Redis holding jobs.
    pub redis: String,
    /// The shared home.
    pub home: std::path::PathBuf,
    /// Shard streams.
    pub shards: u32,
    /// Jobs at once.
    pub concurrency: usize,
    /// Milliseconds between heartbeats.
    pub heartbeat_ms: u64,
    /// A sleeper's honest jobs.
    pub honest_for: u64,
    /// A rare liar's percentage.
    pub lie_percent: u64,
    /// A fabricated-metrics adversary's raise of the claimed accuracy; drawn per job if none.
    pub raise: Option<f64>,
}

impl AdversaryLaunch {
    /// The `shoal-loadtest` binary to run adversaries with: this one, or else (this is a test
    /// binary) the one built beside `shoal`.
    pub fn binary_beside(shoal: &std::path::Path) -> std::path::PathBuf {
        match std::env::current_exe() {
            Ok(me) if me.file_stem().is_some_and(|name| name == "shoal-loadtest") => me,
            _ => shoal.with_file_name("shoal-loadtest"),
        }
    }

    /// The command running adversary `id` of `kind`: `shoal-loadtest adversary-worker …`.
    pub fn command(&self, id: &str, kind: AdversaryKind) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command
            .arg("adversary-worker")
            .env("SHOAL_REDIS", &self.redis)
            .args(["--kind", kind.name(), "--id", id])
            .arg("--home")
            .arg(&self.home)
            .args(["--shards", &self.shards.to_string(), "--concurrency", &self.concurrency.to_string()])
            .args(["--heartbeat-ms", &self.heartbeat_ms.to_string()])
            .args(["--honest-for", &self.honest_for.to_string(), "--lie-percent", &self.lie_percent.to_string()]);
        if let Some(raise) = self.raise {
            command.args(["--raise", &raise.to_string()]);
        }
        command
    }
}

/// The id of a run's `n`th adversary, of `kind` (`adversary-0-liar`).
pub fn adversary_id(n: usize, kind: AdversaryKind) -> String {
    format!("adversary-{n}-{}", kind.name())
}

/// The workers quarantined in the Redis at `url`, and why.
pub async fn quarantined(url: &str) -> Result<std::collections::BTreeMap<String, shoal_jobs::Quarantine>> {
    let failed = |e: StoreError| LoadtestError::Setup(format!("reading the quarantine: {e}"));
    let conn = shoal_jobs::RedisConnection::open(&[url.to_string()]).await.map_err(failed)?;
    shoal_jobs::Membership::new(conn).quarantined().await.map_err(failed)
}

/// Whether `job` reports as accepted a result whose output is not `expected`: what must never
/// happen.
pub fn accepted_wrongly(job: &Job, expected: &ContentId) -> bool {
    job.state == JobState::Succeeded
        && job.acceptance().is_some_and(|a| a.is_accepted())
        && job.result.as_ref().is_some_and(|r| r.output != *expected)
}
