//! One delivery, start to finish: record the execution, fetch, run, publish, settle.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use futures::TryStreamExt;
use shoal_content::source::{HttpGatewaySource, SourceChain};
use shoal_content::unixfs::{self, ImportOptions, ImportSource, NodeKind};
use shoal_content::{Block, BlockReader, BlockSink, BlockSource, BlockStore, Codec, ContentError, FsBlockStore};
use shoal_filecoin::RetrievalError;
use shoal_jobs::{
    now_ms, ContentId, Delivery, Determinism, Execution, ExecutionOutcome, ExecutionResult, Failure, FailureReason,
    FanOutStore, Job, JobSpec, JobState, JobStore, PublicKey, Receipt, RedisConnection, RuntimeKind, ShardQueue,
    ShardRouter, SignedReceipt, Started, StoreError, VerificationPolicy, WorkerKey, OUTPUTS_MOUNT,
};
use shoal_oci::{ContainerError, Image, ImageError, OciConfig, OciRuntime, UnpackedImage};
use shoal_runtime::{FailureKind, GuestFailure, Invocation, Mount, Outcome, Program, RunError, Runtime, RuntimeConfig};
use tracing::{info, info_span, warn, Instrument};

use crate::cache::{InputCache, MaterialisedInput, ProgramCache};
use crate::config::{WorkerConfig, WorkerError};
use crate::filecoin::{FilecoinInputs, Purchase};
use crate::phases::{observe, timed, Phase};
use crate::scratch::{RunDir, RunDirs};
use shoal_jobs::with_retries;

/// Largest program accepted: larger modules are almost certainly not programs, and compiling
/// one crafted to compile slowly could take minutes (see [`WorkerConfig::compile_timeout`]).
pub const MAX_PROGRAM_BYTES: u64 = 64 << 20;

/// Everything one worker needs to run jobs: one delivery start to finish ([`Executor::execute`]),
/// or one run of a spec touching no record ([`Executor::run_spec`], what the verifier compares).
pub struct Executor {
    /// The worker's id.
    pub(crate) worker: String,
    /// The key its receipts are signed with.
    key: Arc<WorkerKey>,
    /// Job records.
    pub(crate) jobs: JobStore,
    /// The shard streams, for handing succeeded jobs to the verifier.
    pub(crate) queue: ShardQueue,
    /// Verified blocks: the local store first, then the gateways.
    pub(crate) chain: Arc<SourceChain>,
    /// Where outputs, stdout and stderr are written.
    pub(crate) store: Arc<dyn BlockStore>,
    /// The same store, as the files it is: written on a guest's thread after a run.
    files: Arc<FsBlockStore>,
    /// The shared deterministic runtime.
    runtime: Runtime,
    /// The container runtime (its layer cache shared by every run), or why this worker has
    /// none: its container jobs are then left to another attempt, as for a failure of its host.
    containers: Result<Arc<OciRuntime>, String>,
    /// Compiled programs.
    programs: ProgramCache,
    /// Materialised inputs.
    pub(crate) inputs: InputCache,
    /// Per-run directories (outputs, joined inputs), reused.
    run_dirs: RunDirs,
    /// Time allowed for fetching the program and inputs.
    pub(crate) fetch_timeout: Duration,
    /// Time allowed for compiling the program.
    compile_timeout: Duration,
    /// Where tasks of fanned-out jobs are queued.
    pub(crate) router: ShardRouter,
    /// The records of fanned-out jobs.
    pub(crate) fanouts: FanOutStore,
    /// Where `"source": "filecoin"` inputs no free source has are bought, if this worker may.
    filecoin: Option<Arc<FilecoinInputs>>,
}

impl Executor {
    /// The executor `config` describes, over its Redis: job records, the local block store in
    /// front of the configured gateways, a runtime sized for the concurrency, and the caches.
    /// Creates the shard streams' consumer groups if missing.
    pub async fn open(config: &WorkerConfig) -> Result<Executor, WorkerError> {
        // Before any file is touched: the id names the key file and directories emptied below.
        config.check_id()?;
        let conn = RedisConnection::open(&config.redis_urls()).await?;
        let key = WorkerKey::load_or_create(&config.key_file)?;
        let queue = ShardQueue::new(conn.clone());
        queue.ensure_groups(config.shards).await?;
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|source| WorkerError::Io { context: format!("creating {}", config.work_dir.display()), source })?;
        let files = Arc::new(FsBlockStore::open(&config.store_dir)?);
        let store: Arc<dyn BlockStore> = files.clone();
        let mut sources: Vec<Arc<dyn BlockSource>> = Vec::new();
        for url in &config.gateways {
            sources.push(Arc::new(HttpGatewaySource::new(url)?));
        }
        let chain = SourceChain::new(sources).with_cache(store.clone());
        // runc is asked for its version and a killed predecessor's containers are removed:
        // blocking work, off the async threads.
        let containers = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_containers(&config))
                .await
                .unwrap_or_else(|e| Err(format!("opening the container runtime: {e}")))
        };
        let filecoin = match &config.filecoin {
            Some(filecoin) => Some(FilecoinInputs::open(filecoin, conn.clone(), &config.id).await?),
            None => None,
        };
        let runtime = Runtime::new(RuntimeConfig {
            max_concurrent_instances: config.concurrency as u32,
            ..RuntimeConfig::default()
        })?;
        Ok(Executor {
            worker: config.id.clone(),
            key: Arc::new(key),
            jobs: JobStore::new(conn.clone()),
            fanouts: FanOutStore::new(conn),
            router: ShardRouter::new(config.shards),
            queue,
            chain: Arc::new(chain),
            store,
            files,
            runtime,
            containers,
            programs: ProgramCache::new(config.program_cache_bytes),
            inputs: InputCache::new(config.work_dir.join("inputs"), config.input_cache_bytes).map_err(|source| {
                WorkerError::Io { context: format!("preparing {}", config.work_dir.display()), source }
            })?,
            run_dirs: RunDirs::new(config.runs_root()),
            fetch_timeout: config.fetch_timeout,
            compile_timeout: config.compile_timeout,
            filecoin,
        })
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.worker
    }

    /// The public half of the key its receipts are signed with, which the worker loop binds to
    /// its id when it joins.
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// The job records it settles.
    pub fn jobs(&self) -> &JobStore {
        &self.jobs
    }

    /// The shard streams it reads and acknowledges.
    pub fn queue(&self) -> &ShardQueue {
        &self.queue
    }
}

/// What became of a delivery whose outcome is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The job is settled (by this execution or an earlier one): acknowledge the entry.
    Done,
    /// The job is settled and the entry acknowledged in the same step (on one Redis node,
    /// [`JobStore::finish_delivered`]): only forget the delivery.
    Acknowledged,
    /// The job may not be retried yet, or this worker's host failed it and it is left for
    /// another attempt: leave the entry pending, unacknowledged (it is taken over again after
    /// the visibility timeout).
    Later,
    /// The job had been started too often without finishing and is now failed: the entry
    /// belongs in the dead-letter stream.
    AttemptsExhausted {
        /// Executions started.
        attempts: u32,
    },
}

/// What [`begin`] found.
#[derive(Debug)]
pub enum Begun {
    /// Run the job: its record, and the execution now recorded as started.
    Run(Box<Job>, Box<Execution>),
    /// Do not run it; the delivery is settled like this.
    Settled(Settled),
}

/// Records that `worker` starts an execution of the delivered job — the one protocol every
/// executor follows, so retries, backoff, duplicates and exhausted attempts are handled alike:
/// the job to run, or how the delivery is settled without running.
pub async fn begin(jobs: &JobStore, worker: &str, delivery: &Delivery) -> Result<Begun, StoreError> {
    let job_id = delivery.job_id.as_str();
    let execution = Execution {
        id: ulid::Ulid::new().to_string(),
        worker: worker.to_string(),
        started_at_ms: now_ms(),
        finished_at_ms: None,
        outcome: None,
        receipt: None,
    };
    let started = timed(
        Phase::Begin,
        with_retries("start_execution", || jobs.start_delivered(job_id, &delivery.entry, &execution)),
    )
    .await?;
    let settled = match started {
        Started::Running(job) => return Ok(Begun::Run(job, Box::new(execution))),
        Started::AlreadyFinished(state) => {
            info!(job = job_id, %state, "already finished; skipping duplicate delivery");
            if state == JobState::Succeeded {
                // Its settle may have died between storing the result and handing it to the
                // verifier; handing it again is harmless (a verdict stands).
                let queue = ShardQueue::new(jobs.connection());
                with_retries("enqueue_verification", || queue.enqueue_verification(delivery.shard, job_id)).await?;
            }
            Settled::Done
        }
        Started::BackingOff { wait } => {
            info!(job = job_id, ?wait, "retry backing off; leaving the entry pending");
            Settled::Later
        }
        Started::Duplicate => {
            info!(job = job_id, entry = %delivery.entry, "running from another entry; skipping this duplicate");
            Settled::Done
        }
        Started::AttemptsExhausted { attempts } => {
            warn!(job = job_id, attempts, "started too often without finishing; failed as worker_lost");
            Settled::AttemptsExhausted { attempts }
        }
    };
    Ok(Begun::Settled(settled))
}

/// Signs the receipt of `execution` of `job` with `key` and stores its block in `receipts` (if
/// given: a simulated worker publishes no blocks), so users can fetch it by its CID — unless
/// the execution carries its receipt already, signed and stored where its run ended; then
/// stores the outcome with it, settling the job (once: a later settle of the same job changes
/// nothing), then hands a succeeded job, or one failed as the program would fail on any worker,
/// to the verifier unless its spec says `none` — the one settle step every executor takes, the
/// real one and the simulation's alike. An execution run from `delivery` whose outcome goes to
/// no verifier has its entry acknowledged with the outcome where the store can
/// ([`JobStore::finish_delivered`]). Returns the job's state after it, and what is left to do
/// with the delivery.
pub async fn settle(
    jobs: &JobStore,
    queue: &ShardQueue,
    receipts: Option<&dyn BlockSink>,
    key: &WorkerKey,
    job: &Job,
    mut execution: Execution,
    delivery: Option<&Delivery>,
) -> Result<(JobState, Settled), StoreError> {
    match &execution.receipt {
        None => execution.receipt = sign_receipt(&job.id, job.invocation, &execution, key, receipts).await,
        Some(signed) => {
            debug_assert_eq!(Some(&signed.receipt), Receipt::of(job, &execution, key.public()).as_ref());
        }
    }
    // A failure the program has everywhere is a claim about it too: a worker could fail jobs it
    // was given by saying so. The verifier checks it like a result.
    let claimed_failure = match &execution.outcome {
        Some(ExecutionOutcome::Completed(result)) => result.exit_code != 0,
        Some(ExecutionOutcome::Failed(failure)) => failure.reason.is_deterministic(),
        None => false,
    };
    let verified = job.spec.verification != VerificationPolicy::None;
    let succeeded = execution.outcome.as_ref().map(ExecutionOutcome::settles_as) == Some(JobState::Succeeded);
    // A success, or a failure the verifier checks, is remembered against the worker (with the
    // settle itself where Redis allows), so that if it is ever caught lying, it is re-verified.
    let claims = succeeded || (claimed_failure && verified);
    // An outcome handed to the verifier keeps its entry pending until it is: a worker dying in
    // between leaves the entry to be taken over, and `begin` then hands a success over again.
    // Only an outcome with no handoff to follow has its entry acknowledged with it.
    let handoff = verified && (succeeded || claimed_failure);
    let delivery = delivery.filter(|_| !handoff);
    let finishing = with_retries("finish_execution", || jobs.finish_delivered(&job.id, &execution, claims, delivery));
    let (state, acknowledged) = timed(Phase::Finish, finishing).await?;
    info!(job = %job.id, %state, "job settled");
    // Handed over after the result is stored (the reverse order could verify a result never
    // stored): a worker dying in between leaves the entry pending, and `begin` hands a success
    // found finished over again.
    let claimed = state == JobState::Succeeded || (state == JobState::Failed && claimed_failure);
    if claimed && verified {
        timed(
            Phase::EnqueueVerification,
            with_retries("enqueue_verification", || queue.enqueue_verification(job.shard, &job.id)),
        )
        .await?;
    }
    Ok((state, if acknowledged { Settled::Acknowledged } else { Settled::Done }))
}

/// The receipt of finished `execution` of job `job` (invocation `invocation`) signed with
/// `key`, its block stored in `receipts` if given — before the record names it, so whoever reads
/// the record can fetch it; failing that, the record holds it all the same.
async fn sign_receipt(
    job: &str,
    invocation: ContentId,
    execution: &Execution,
    key: &WorkerKey,
    receipts: Option<&dyn BlockSink>,
) -> Option<SignedReceipt> {
    let receipt = key.sign(Receipt::of_job(job, invocation, execution, key.public())?);
    if let Some(receipts) = receipts {
        let started = Instant::now();
        let block = Block::encode(Codec::Raw, receipt.to_bytes());
        debug_assert_eq!(*block.cid(), receipt.cid());
        if let Err(e) = receipts.put(&block).await {
            warn!(job, error = %e, "could not store the receipt block; the job record holds it");
        }
        observe(Phase::Receipt, started.elapsed());
    }
    Some(receipt)
}

/// What signs an execution's receipt where a WebAssembly run ends, on the guest's thread with
/// the outputs' blocks, sparing the settle a hop to the blocking pool and back to store it: the
/// job's id and invocation, the execution as started, the key.
struct Signer {
    job: String,
    invocation: ContentId,
    execution: Execution,
    key: Arc<WorkerKey>,
}

impl Signer {
    /// The execution finished now with `result`, its receipt signed and its block stored in
    /// `receipts`.
    async fn finish(self, result: &ExecutionResult, receipts: &dyn BlockSink) -> Execution {
        let Signer { job, invocation, mut execution, key } = self;
        execution.finished_at_ms = Some(now_ms());
        execution.outcome = Some(ExecutionOutcome::Completed(result.clone()));
        execution.receipt = sign_receipt(&job, invocation, &execution, &key, Some(receipts)).await;
        execution
    }
}

/// A run that produced an outcome: its result and, if it was asked to sign, the execution
/// finished with its receipt signed and stored.
struct Ran {
    result: ExecutionResult,
    signed: Option<Execution>,
}

/// A job's program and inputs, ready to run.
struct Fetched {
    program: Runnable,
    /// Mount path and materialised input, in the spec's order.
    inputs: Vec<(String, Arc<MaterialisedInput>)>,
    /// How many inputs were in the cache already.
    cached: u32,
}

/// A job's program, ready to run in the runtime its spec names.
enum Runnable {
    /// A compiled WebAssembly module.
    Wasm(Program),
    /// An OCI image, ready for the container runtime.
    Container(Box<PreparedImage>),
}

/// An OCI image whose manifest and config were verified and whose layers are unpacked (every
/// blob checked against its digest) in the layer cache of `runtime`, which runs it.
struct PreparedImage {
    runtime: Arc<OciRuntime>,
    image: Image,
    unpacked: UnpackedImage,
}

/// Why a run produced no [`Outcome`]: the guest failed (the same in either runtime), or the run
/// stopped otherwise, with what the record should say.
enum RunFailure {
    Guest(Box<GuestFailure>),
    Stopped(Stop),
}

/// A failure before or while running, with what the record should say.
#[derive(Clone)]
struct Stop {
    failure: Failure,
    kind: StopKind,
}

/// What a [`Stop`] means for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    /// The job fails as the record says.
    Final,
    /// Content was not found (yet): worth asking again until the fetch timeout.
    Missing,
    /// This worker's host failed — out of file descriptors or disk space, an I/O error while
    /// materialising inputs or importing outputs — not the job: another attempt, here later or
    /// on another worker, may well succeed, so it is retried within `retry.max_attempts`.
    Host,
}

impl Stop {
    fn new(reason: FailureReason, message: impl Into<String>) -> Stop {
        Stop {
            failure: Failure { reason, message: message.into(), stderr: None, fuel_consumed: None },
            kind: StopKind::Final,
        }
    }

    /// A failure of this worker's host ([`StopKind::Host`]), recorded as
    /// [`FailureReason::Internal`] if no attempt is left.
    fn host(message: String) -> Stop {
        Stop { kind: StopKind::Host, ..Stop::new(FailureReason::Internal, message) }
    }

    /// Says how long content was waited for, when it never arrived.
    fn after(mut self, waited: Duration) -> Stop {
        if self.kind == StopKind::Missing {
            self.failure.message = format!("{} (gave up after {waited:?})", self.failure.message);
        }
        self
    }
}

impl Executor {
    /// Runs the delivered job once and stores the execution's outcome, settling the job.
    ///
    /// Returns an error only if the outcome could not be stored: the caller must then leave the
    /// delivery unacknowledged.
    pub async fn execute(&self, delivery: &Delivery) -> Result<Settled, StoreError> {
        let job_id = delivery.job_id.as_str();
        let (job, mut execution) = match begin(&self.jobs, &self.worker, delivery).await? {
            Begun::Run(job, execution) => (job, execution),
            Begun::Settled(settled) => return Ok(settled),
        };
        let span = info_span!("job", job = job_id, execution = %execution.id);
        if job.spec.fan_out.is_some() {
            return self.fan_out(&job, *execution).instrument(span).await;
        }
        let signer = Signer {
            job: job.id.clone(),
            invocation: job.invocation,
            execution: (*execution).clone(),
            key: Arc::clone(&self.key),
        };
        let outcome = match self.run_once(&job.spec, &execution.id, Some(signer)).instrument(span).await {
            // Finished and signed where it ran.
            Ok(Ran { signed: Some(signed), .. }) => return Ok(self.settle(&job, signed, Some(delivery)).await?.1),
            outcome => outcome,
        };
        execution.finished_at_ms = Some(now_ms());
        // Every start counts, this one included (the record was read after it was made).
        let attempts = job.executions.len() as u32;
        let max_attempts = job.spec.retry.max_attempts;
        let outcome = match outcome {
            Ok(Ran { result, .. }) => ExecutionOutcome::Completed(result),
            Err(stop) if stop.kind == StopKind::Host && attempts < max_attempts => {
                warn!(job = job_id, attempts, max_attempts, error = %stop.failure.message,
                    "this host failed the job; leaving it for another attempt");
                execution.outcome = Some(ExecutionOutcome::Failed(stop.failure));
                with_retries("abandon_execution", || self.jobs.abandon_execution(&job.id, &execution)).await?;
                return Ok(Settled::Later);
            }
            Err(mut stop) => {
                if stop.kind == StopKind::Host {
                    stop.failure.message =
                        format!("{} (the host failed on each of the {attempts} attempts)", stop.failure.message);
                }
                ExecutionOutcome::Failed(stop.failure)
            }
        };
        execution.outcome = Some(outcome);
        Ok(self.settle(&job, *execution, Some(delivery)).await?.1)
    }

    /// Settles `execution` of `job`, run from `delivery` if given, through [`settle`] with this
    /// worker's key and store.
    pub async fn settle(
        &self,
        job: &Job,
        execution: Execution,
        delivery: Option<&Delivery>,
    ) -> Result<(JobState, Settled), StoreError> {
        settle(&self.jobs, &self.queue, Some(self.store.as_ref()), &self.key, job, execution, delivery).await
    }

    /// The local block store, where outputs, logs and receipts are written.
    pub fn store(&self) -> &dyn BlockStore {
        self.store.as_ref()
    }

    /// Fanned-out job `id`'s gathered output, built again from its tasks' recorded outputs;
    /// `None` if it never fanned out. What the verifier checks a fanned-out job's result with.
    pub async fn regather(&self, id: &str) -> Result<Option<ContentId>, crate::GatherError> {
        if self.fanouts.summary(id).await?.is_none() {
            return Ok(None);
        }
        crate::fanout::gathered(self, id).await.map(Some)
    }

    /// The file at `path` inside output `root`, every block verified, if it is a file of at
    /// most `max_bytes`: what the verifier reads to compare two results' numbers.
    pub async fn read_output(&self, root: &ContentId, path: &str, max_bytes: u64) -> Result<Bytes, String> {
        let reader = self.chain.as_ref();
        let cid = unixfs::resolve_path(reader, root.cid(), path).await.map_err(|e| format!("{path}: {e}"))?;
        let info = unixfs::stat(reader, &cid).await.map_err(|e| format!("{path}: {e}"))?;
        if info.kind != NodeKind::File {
            return Err(format!("{path} is a UnixFS {}, not a file", info.kind.name()));
        }
        if info.size > max_bytes {
            return Err(format!("{path} is {} bytes, more than the {max_bytes} read", info.size));
        }
        let chunks: Vec<Bytes> =
            unixfs::cat(self.chain.clone(), cid).try_collect().await.map_err(|e| format!("{path}: {e}"))?;
        Ok(chunks.concat().into())
    }

    /// Fetches, runs and publishes one execution of `spec`, touching no job record: what
    /// [`Executor::execute`] records, and what the verifier recomputes to compare.
    pub async fn run_spec(&self, spec: &JobSpec, execution_id: &str) -> Result<ExecutionResult, Failure> {
        self.run_once(spec, execution_id, None).await.map(|ran| ran.result).map_err(|stop| stop.failure)
    }

    /// Fetches, runs and publishes `spec` once; with `signer`, a WebAssembly run that produced
    /// an outcome also comes back finished, its receipt signed and stored on the guest's thread
    /// (a container run's is left to the settle).
    async fn run_once(&self, spec: &JobSpec, execution_id: &str, signer: Option<Signer>) -> Result<Ran, Stop> {
        let fetch_started = Instant::now();
        let Fetched { program, inputs, cached } = self.fetch(spec).await?;
        let fetch_ms = fetch_started.elapsed().as_millis() as u64;

        let mounts_started = Instant::now();
        let mut run_dir = self
            .run_dirs
            .take()
            .map_err(|e| Stop::host(format!("making a run directory for execution {execution_id}: {e}")))?;
        let outputs = run_dir.outputs();
        let mut mounts = input_mounts(&inputs, &run_dir.inputs()).await?;
        mounts.push(Mount { host: outputs.clone(), guest: OUTPUTS_MOUNT.to_string(), writable: true });
        observe(Phase::Mounts, mounts_started.elapsed());
        let invocation = invocation(spec, mounts);
        let run_started = Instant::now();
        let result_of = move |outcome: &Outcome, (output, stdout, stderr): Published| ExecutionResult {
            exit_code: outcome.exit_code,
            output,
            stdout,
            stderr,
            fuel_consumed: outcome.fuel_consumed,
            fetch_ms,
            run_ms: outcome.duration.as_millis() as u64,
            inputs_cached: cached,
        };
        let result: Result<(Outcome, Result<Ran, Box<Stop>>), RunFailure> = match &program {
            Runnable::Wasm(program) => {
                let publish = self.publish_on_guest_thread(spec, run_dir, result_of, signer);
                self.runtime.run_then(program, invocation, publish).await.map_err(wasm_failure)
            }
            Runnable::Container(prepared) => {
                let PreparedImage { runtime, image, unpacked } = prepared.as_ref();
                let result = runtime.run(image, unpacked, &invocation).await.map_err(container_failure);
                // A timeout may be reported while the program is still stuck in a host call,
                // able to write, and a host failure says nothing of the program: only these
                // ends mean it stopped.
                let stopped = match &result {
                    Ok(_) => true,
                    Err(RunFailure::Guest(failure)) => !matches!(failure.kind, FailureKind::Timeout { .. }),
                    Err(RunFailure::Stopped(_)) => false,
                };
                if stopped {
                    run_dir.stopped();
                }
                match result {
                    Ok(outcome) => {
                        let published = self.publish(spec, &run_dir.outputs(), &outcome).await;
                        let ran =
                            published.map(|published| Ran { result: result_of(&outcome, published), signed: None });
                        Ok((outcome, ran.map_err(Box::new)))
                    }
                    Err(failure) => Err(failure),
                }
            }
        };
        // A run that published on the guest's thread took longer than its guest: the outcome
        // says how long the guest took.
        observe(Phase::Run, result.as_ref().map_or_else(|_| run_started.elapsed(), |(outcome, _)| outcome.duration));
        drop(inputs);
        match result {
            Ok((_, ran)) => ran.map_err(|stop| *stop),
            Err(RunFailure::Guest(failure)) => {
                let (reason, message) = match &failure.kind {
                    FailureKind::Trap { message } => (FailureReason::Trap, message.clone()),
                    FailureKind::FuelExhausted { .. } => (FailureReason::FuelExhausted, failure.kind.to_string()),
                    FailureKind::MemoryLimit { .. } => (FailureReason::MemoryLimit, failure.kind.to_string()),
                    FailureKind::StackOverflow => (FailureReason::StackOverflow, failure.kind.to_string()),
                    FailureKind::Timeout { .. } => (FailureReason::Timeout, failure.kind.to_string()),
                    FailureKind::OutputLimit { .. } | FailureKind::OutputFilesLimit { .. } => {
                        (FailureReason::OutputLimit, failure.kind.to_string())
                    }
                };
                let stderr = self.import_bytes(failure.stderr.clone()).await?;
                Err(Stop {
                    failure: Failure {
                        reason,
                        message,
                        stderr: Some(stderr),
                        fuel_consumed: Some(failure.fuel_consumed),
                    },
                    kind: StopKind::Final,
                })
            }
            Err(RunFailure::Stopped(stop)) => Err(stop),
        }
    }

    /// Fetches the program and the inputs. Content that no source has yet is asked for again,
    /// with backoff, until [`Executor::fetch_timeout`]: an upload may still be on its way. Content
    /// that is malformed or fails verification fails at once.
    ///
    /// Missing content may take the whole fetch timeout to arrive, or never come: it is waited
    /// for without this delivery's execution slot ([`crate::slot::released`]), so that jobs
    /// whose content is at hand run meanwhile instead of queueing behind it.
    async fn fetch(&self, spec: &JobSpec) -> Result<Fetched, Stop> {
        let deadline = tokio::time::Instant::now() + self.fetch_timeout;
        match self.fetch_once(spec, deadline).await {
            Some(Ok(fetched)) => Ok(fetched),
            Some(Err(stop)) if stop.kind == StopKind::Missing => {
                crate::slot::released(self.fetch_until(spec, deadline, stop)).await
            }
            Some(Err(stop)) => Err(stop),
            None => Err(Stop::new(
                FailureReason::InputUnavailable,
                format!("fetching the program and inputs did not finish within {:?}", self.fetch_timeout),
            )),
        }
    }

    /// Asks again for the content `last_miss` found missing, with backoff, until `deadline`.
    async fn fetch_until(
        &self,
        spec: &JobSpec,
        deadline: tokio::time::Instant,
        mut last_miss: Stop,
    ) -> Result<Fetched, Stop> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(last_miss.after(self.fetch_timeout));
            }
            tokio::time::sleep_until((tokio::time::Instant::now() + backoff).min(deadline)).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            match self.fetch_once(spec, deadline).await {
                Some(Ok(fetched)) => return Ok(fetched),
                Some(Err(stop)) if stop.kind == StopKind::Missing => last_miss = stop,
                Some(Err(stop)) => return Err(stop),
                None => return Err(last_miss.after(self.fetch_timeout)),
            }
        }
    }

    /// One attempt at fetching the program and the inputs; `None` if `deadline` passed first.
    async fn fetch_once(&self, spec: &JobSpec, deadline: tokio::time::Instant) -> Option<Result<Fetched, Stop>> {
        let attempt = async {
            let program_started = Instant::now();
            let program = match spec.runtime {
                RuntimeKind::Wasm => Runnable::Wasm(self.program(*spec.program.cid()).await?),
                RuntimeKind::Oci => Runnable::Container(Box::new(self.image(*spec.program.cid()).await?)),
            };
            observe(Phase::Program, program_started.elapsed());
            let inputs_started = Instant::now();
            let mut inputs = Vec::with_capacity(spec.inputs.len());
            let mut cached = 0;
            for input in &spec.inputs {
                let (materialised, hit) =
                    self.input(*input.cid.cid(), input.name.as_deref(), Purchase::of(input)).await?;
                inputs.push((input.path.clone(), materialised));
                cached += u32::from(hit);
            }
            observe(Phase::Inputs, inputs_started.elapsed());
            Ok(Fetched { program, inputs, cached })
        };
        tokio::time::timeout_at(deadline, attempt).await.ok()
    }

    /// Fetches (verified) and compiles the program, through the program cache.
    async fn program(&self, cid: Cid) -> Result<Program, Stop> {
        self.programs
            .get_or_load(cid, async {
                if self.programs.is_slow(&cid) {
                    return Err(self.compile_overran(&cid, " (recently, on this worker: not compiled again)"));
                }
                let info = unixfs::stat(self.chain.as_ref(), &cid).await.map_err(|e| unavailable(&cid, e))?;
                if info.kind != NodeKind::File {
                    return Err(Stop::new(
                        FailureReason::InvalidProgram,
                        format!("program {cid} is a UnixFS {}, not a file", info.kind.name()),
                    ));
                }
                if info.size > MAX_PROGRAM_BYTES {
                    return Err(Stop::new(
                        FailureReason::InvalidProgram,
                        format!("program {cid} is {} bytes, more than the {MAX_PROGRAM_BYTES} accepted", info.size),
                    ));
                }
                let reader: Arc<dyn BlockReader> = self.chain.clone();
                let chunks: Vec<Bytes> =
                    unixfs::cat(reader, cid).try_collect().await.map_err(|e| unavailable(&cid, e))?;
                let wasm = chunks.concat();
                let size = wasm.len() as u64;
                // Compiled on a blocking thread against its own budget: Cranelift cannot be
                // interrupted, so a module crafted to compile slowly finishes in the background
                // (its result unused, the program remembered as slow so no job compiles it
                // again for a while) while the job fails now.
                let runtime = self.runtime.clone();
                let programs = self.programs.clone();
                let budget = self.compile_timeout;
                let compiling = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let compiled = runtime.compile(&wasm);
                    if started.elapsed() > budget {
                        programs.mark_slow(cid);
                    }
                    compiled
                });
                let compiled = match tokio::time::timeout(budget, compiling).await {
                    Ok(compiled) => compiled.map_err(|e| Stop::host(format!("compiling {cid}: {e}")))?,
                    Err(_overran) => {
                        self.programs.mark_slow(cid);
                        return Err(self.compile_overran(&cid, ""));
                    }
                };
                let program = compiled.map_err(|e| match e {
                    RunError::InvalidModule { reason } => Stop::new(
                        FailureReason::InvalidProgram,
                        format!("program {cid} is not a valid WebAssembly module: {reason}"),
                    ),
                    other => Stop::host(format!("compiling {cid}: {other}")),
                })?;
                Ok((program, size))
            })
            .await
            .map_err(|stop: Arc<Stop>| Stop::clone(&stop))
    }

    /// Fetches the OCI image layout `cid` (every block verified) and materialises it as a
    /// directory through the input cache, as inputs are; then, on a blocking thread, checks its
    /// manifest and config against their digests and unpacks its layers into the layer cache,
    /// each blob checked against its digest (layers already there are not unpacked again).
    async fn image(&self, cid: Cid) -> Result<PreparedImage, Stop> {
        // Checked before fetching: a host that cannot run the image need not download it.
        let runtime = match &self.containers {
            Ok(runtime) => runtime.clone(),
            Err(why) => return Err(Stop::host(format!("this worker cannot run container jobs: {why}"))),
        };
        let (layout, _) = self.input(cid, None, None).await?;
        let prepared = tokio::task::spawn_blocking(move || {
            let image = Image::open(&layout.dir)?;
            let unpacked = runtime.prepare(&image)?;
            Ok::<_, ImageError>(PreparedImage { runtime, image, unpacked })
        })
        .await
        .map_err(|e| Stop::host(format!("preparing image {cid}: {e}")))?;
        prepared.map_err(|e| {
            if e.is_invalid_image() {
                Stop::new(FailureReason::InvalidProgram, format!("program {cid} is not a usable OCI image: {e}"))
            } else {
                Stop::host(format!("preparing image {cid}: {e}"))
            }
        })
    }

    /// The failure of a job whose program did not compile within the budget: a wall-clock limit
    /// like [`FailureReason::Timeout`] (another worker may be fast enough).
    fn compile_overran(&self, cid: &Cid, when: &str) -> Stop {
        Stop::new(
            FailureReason::Timeout,
            format!("compiling program {cid} took longer than the {:?} compile budget{when}", self.compile_timeout),
        )
    }

    /// Materialises an input on disk, through the input cache; says whether it was there
    /// already (or being fetched by another job on this worker). An input that may be bought
    /// (`purchase`) and that no free source has is bought from Filecoin, then materialised
    /// from the local store.
    async fn input(
        &self,
        cid: Cid,
        name: Option<&str>,
        purchase: Option<Purchase>,
    ) -> Result<(Arc<MaterialisedInput>, bool), Stop> {
        let fetched = AtomicBool::new(false);
        let input = self
            .inputs
            .get_or_fetch(cid, name.map(str::to_string), |root| {
                fetched.store(true, Ordering::Relaxed);
                async move {
                    let tree = root.join("tree");
                    match (self.materialise(cid, name, &tree).await, purchase) {
                        (Err(missed), Some(purchase)) if missed.kind == StopKind::Missing => {
                            self.buy(cid, purchase, missed).await?;
                            // What the miss left half-written is written again whole.
                            if let Err(e) = std::fs::remove_dir_all(&tree) {
                                if e.kind() != std::io::ErrorKind::NotFound {
                                    return Err(Stop::host(format!("clearing {}: {e}", tree.display())));
                                }
                            }
                            self.materialise(cid, name, &tree).await
                        }
                        (materialised, _) => materialised,
                    }
                }
            })
            .await
            .map_err(|stop: Arc<Stop>| Stop::clone(&stop))?;
        Ok((input, !fetched.load(Ordering::Relaxed)))
    }

    /// Exports `cid` below `tree` from the local store and the free sources; the directory to
    /// mount and the bytes written.
    async fn materialise(&self, cid: Cid, name: Option<&str>, tree: &Path) -> Result<(PathBuf, u64), Stop> {
        let info = unixfs::stat(self.chain.as_ref(), &cid).await.map_err(|e| unavailable(&cid, e))?;
        // A named input appears inside the mount path under its name. Unnamed, a directory's
        // entries appear at the mount path and a single file inside it, named by its CID (WASI
        // can only preopen directories).
        let dest = match name {
            Some(name) => tree.join(name),
            None if info.kind.is_directory() => tree.to_path_buf(),
            None => tree.join(cid.to_string()),
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Stop::host(format!("creating {}: {e}", parent.display())))?;
        }
        let exported =
            unixfs::export_to_path(self.chain.as_ref(), &cid, &dest).await.map_err(|e| unavailable(&cid, e))?;
        Ok((tree.to_path_buf(), exported.bytes))
    }

    /// Buys the DAG under `cid` from Filecoin into the local block store, after the free
    /// sources `missed` it. A worker that cannot buy leaves the miss as it was (the input is
    /// waited for, another worker may buy it); an input that cannot be paid for fails
    /// `budget_exhausted`.
    async fn buy(&self, cid: Cid, purchase: Purchase, missed: Stop) -> Result<(), Stop> {
        let Some(filecoin) = &self.filecoin else {
            let message = format!(
                "{}; it may come from Filecoin, but this worker buys nothing (started without --lotus-url)",
                missed.failure.message
            );
            return Err(Stop { failure: Failure { message, ..missed.failure }, ..missed });
        };
        // Boxed: the retrieval's future is deep and large, and only this rare path needs it.
        match Box::pin(filecoin.buy(&cid, purchase, self.store.as_ref())).await {
            Ok(_) => Ok(()),
            // The reason says it; the message gives the amounts.
            Err(e) if e.is_budget_exhausted() => Err(Stop::new(FailureReason::BudgetExhausted, e.to_string())),
            // Finding providers costs nothing: asked again while the input is waited for.
            Err(e @ (RetrievalError::NoProviders { .. } | RetrievalError::Lookup { .. })) => Err(Stop {
                kind: StopKind::Missing,
                ..Stop::new(FailureReason::InputUnavailable, format!("{}; from Filecoin: {e}", missed.failure.message))
            }),
            Err(e @ RetrievalError::Ledger { .. }) => Err(Stop::host(e.to_string())),
            // Providers may have been paid: not tried again, lest a retry loop pay for ever.
            Err(e) => Err(Stop::new(FailureReason::InputUnavailable, format!("retrieving {cid} from Filecoin: {e}"))),
        }
    }

    /// Publishes a run's outputs, stdout and stderr ([`publish_run`]), after checking that the
    /// files the spec declares were written.
    async fn publish(&self, spec: &JobSpec, outputs: &Path, outcome: &Outcome) -> Result<Published, Stop> {
        if let Some(missing) = unwritten(spec.writes.as_deref(), outputs, outcome.exit_code) {
            return Err(Stop::new(FailureReason::MissingOutput, missing));
        }
        publish_run(ImportSource::Path(outputs.to_path_buf()), outcome, self.store.as_ref()).await
    }

    /// What a WebAssembly run's guest thread does once its guest exited: [`Executor::publish`]'s
    /// work, the outputs listed and read and the blocks written on that thread, the run's
    /// result made (`result_of`) and, with `signer`, its receipt signed and stored, then
    /// `run_dir` emptied there too — a thread that may block, so none of it takes a hop to the
    /// blocking pool and back (but for files too big to read while listing). Dropped unrun (the
    /// guest failed), it empties `run_dir` on that thread all the same.
    fn publish_on_guest_thread(
        &self,
        spec: &JobSpec,
        mut run_dir: RunDir,
        result_of: impl FnOnce(&Outcome, Published) -> ExecutionResult + Send + 'static,
        signer: Option<Signer>,
    ) -> impl FnOnce(&Outcome) -> Result<Ran, Box<Stop>> + Send + 'static {
        // The directory goes with this step, which the runtime drops only once the guest's
        // thread is done with the run (or before it began): whenever the directory is let go,
        // no program writes into it any more, so it may be reused.
        run_dir.stopped();
        let writes = spec.writes.clone();
        let files = Arc::clone(&self.files);
        let runtime = tokio::runtime::Handle::current();
        move |outcome| {
            let outputs = run_dir.outputs();
            if let Some(missing) = unwritten(writes.as_deref(), &outputs, outcome.exit_code) {
                return Err(Box::new(Stop::new(FailureReason::MissingOutput, missing)));
            }
            let listed = unixfs::list_tree(&outputs, true).map_err(|e| Box::new(publishing(e)))?;
            let sink = files.on_this_thread();
            let finished = runtime.block_on(async {
                let result = result_of(outcome, publish_run(ImportSource::Listed(listed), outcome, &sink).await?);
                let signed = match signer {
                    Some(signer) => Some(signer.finish(&result, &sink).await),
                    None => None,
                };
                Ok(Ran { result, signed })
            });
            // Emptied here and now, outside the runtime: see `RunDir`'s `Drop`.
            drop(run_dir);
            finished.map_err(Box::new)
        }
    }

    async fn import_bytes(&self, bytes: Bytes) -> Result<ContentId, Stop> {
        let imported = unixfs::import_reader(&bytes[..], &ImportOptions::default(), self.store.as_ref())
            .await
            .map_err(|e| Stop::host(format!("publishing logs: {e}")))?;
        Ok(ContentId(imported.root))
    }
}

/// The container runtime under `config.work_dir` (`containers/state` for runc's state and
/// per-run bundles, `containers/layers` for the layer cache), after removing whatever a killed
/// predecessor left there; or why this worker cannot run containers (no runc, not root, no
/// seccomp profile), said once here and on each container job it is given.
fn open_containers(config: &WorkerConfig) -> Result<Arc<OciRuntime>, String> {
    let dir = config.work_dir.join("containers");
    let oci_config = OciConfig { runc: config.runc.clone(), ..OciConfig::new(dir.join("state"), dir.join("layers")) };
    match OciRuntime::new(oci_config) {
        Ok(runtime) => Ok(Arc::new(runtime)),
        Err(error) => {
            info!(%error, "container jobs cannot run on this worker; they are left to other workers");
            Err(error.to_string())
        }
    }
}

/// What a WebAssembly run's error means for the job.
fn wasm_failure(error: RunError) -> RunFailure {
    let stop = match error {
        RunError::Guest(failure) => return RunFailure::Guest(failure),
        e @ RunError::MissingEntrypoint { .. } => Stop::new(FailureReason::MissingEntrypoint, e.to_string()),
        e @ RunError::InvalidModule { .. } => Stop::new(FailureReason::InvalidProgram, e.to_string()),
        e @ RunError::Host { .. } => Stop::host(e.to_string()),
        e @ RunError::InvalidInvocation { .. } => Stop::new(FailureReason::Internal, e.to_string()),
    };
    RunFailure::Stopped(stop)
}

/// What a container run's error means for the job: the same reasons as a WebAssembly run's (a
/// command that cannot be run in the image is an invalid program).
fn container_failure(error: ContainerError) -> RunFailure {
    let stop = match error {
        ContainerError::Guest(failure) => return RunFailure::Guest(failure),
        e @ ContainerError::InvalidProgram { .. } => Stop::new(FailureReason::InvalidProgram, e.to_string()),
        e @ ContainerError::Host { .. } => Stop::host(e.to_string()),
        e @ ContainerError::InvalidInvocation { .. } => Stop::new(FailureReason::Internal, e.to_string()),
    };
    RunFailure::Stopped(stop)
}

/// The stop for content `cid` that could not be read: missing (asked for again), this host's
/// own I/O failing while writing it out ([`StopKind::Host`]), or bad content (final).
fn unavailable(cid: &Cid, error: ContentError) -> Stop {
    let kind = match error {
        ContentError::NotFound { .. } | ContentError::Unavailable { .. } => StopKind::Missing,
        ContentError::Io { .. } => StopKind::Host,
        _ => StopKind::Final,
    };
    let reason = if kind == StopKind::Host { FailureReason::Internal } else { FailureReason::InputUnavailable };
    Stop { kind, ..Stop::new(reason, format!("fetching {cid}: {error}")) }
}

/// The mounts of a run's inputs, one per mount path, in the spec's order. Inputs sharing a path
/// (each named, differently: a batch task's files) are joined into one directory under
/// `joined` — hard links into the input cache, copies where linking fails — so the guest can
/// list them side by side, which separate preopens below the path would not allow.
async fn input_mounts(inputs: &[(String, Arc<MaterialisedInput>)], joined: &Path) -> Result<Vec<Mount>, Stop> {
    let mut by_path: Vec<(&str, Vec<&Path>)> = Vec::new();
    for (path, input) in inputs {
        match by_path.iter_mut().find(|(there, _)| there == path) {
            Some((_, dirs)) => dirs.push(&input.dir),
            None => by_path.push((path, vec![&input.dir])),
        }
    }
    let mut mounts = Vec::with_capacity(by_path.len());
    for (n, (path, dirs)) in by_path.into_iter().enumerate() {
        let host = match dirs.as_slice() {
            [dir] => dir.to_path_buf(),
            dirs => {
                let host = joined.join(n.to_string());
                let sources: Vec<PathBuf> = dirs.iter().map(|dir| dir.to_path_buf()).collect();
                let target = host.clone();
                let path = path.to_string();
                tokio::task::spawn_blocking(move || join_dirs(&sources, &target))
                    .await
                    .map_err(|e| Stop::host(format!("joining the inputs at {path}: {e}")))?
                    .map_err(|e| Stop::host(format!("joining the inputs at {path}: {e}")))?;
                host
            }
        };
        mounts.push(Mount { host, guest: path.to_string(), writable: false });
    }
    Ok(mounts)
}

/// Makes `target` a directory holding the entries of every directory in `sources`; two entries
/// of one name are an error.
fn join_dirs(sources: &[PathBuf], target: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(target)?;
    for source in sources {
        for entry in std::fs::read_dir(source)? {
            let entry = entry?;
            let dest = target.join(entry.file_name());
            if dest.symlink_metadata().is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("two inputs are named {:?}", entry.file_name()),
                ));
            }
            link_tree(&entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Recreates `source` at `dest`: directories made, files hard-linked (copied across
/// filesystems), symlinks copied as links.
fn link_tree(source: &Path, dest: &Path) -> std::io::Result<()> {
    let kind = source.symlink_metadata()?.file_type();
    if kind.is_dir() {
        std::fs::create_dir(dest)?;
        for entry in std::fs::read_dir(source)? {
            let entry = entry?;
            link_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
        Ok(())
    } else if kind.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(source)?, dest)
    } else {
        std::fs::hard_link(source, dest).or_else(|_| std::fs::copy(source, dest).map(drop))
    }
}

/// Why a run that exited 0 did not write what its spec declares (`writes`), if it did not: the
/// files missing from `outputs`. A run that failed is reported as its exit says instead.
fn unwritten(writes: Option<&[String]>, outputs: &Path, exit_code: i32) -> Option<String> {
    let writes = writes.filter(|_| exit_code == 0)?;
    let missing: Vec<&str> =
        writes.iter().filter(|file| !outputs.join(file.as_str()).is_file()).map(String::as_str).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the program exited 0 without writing {} of the files it declares: {}",
            missing.len(),
            missing.join(", ")
        )
    })
}

/// A run's published output directory, stdout and stderr.
type Published = (ContentId, ContentId, ContentId);

/// Imports a run's outputs (hidden files too), stdout and stderr with one importer into `sink`,
/// so a small job's blocks are written together.
async fn publish_run(outputs: ImportSource, outcome: &Outcome, sink: &dyn BlockSink) -> Result<Published, Stop> {
    let started = Instant::now();
    let options = ImportOptions { include_hidden: true, ..ImportOptions::default() };
    let sources =
        vec![outputs, ImportSource::Bytes(outcome.stdout.clone()), ImportSource::Bytes(outcome.stderr.clone())];
    let imported = unixfs::import_many(sources, &options, sink).await.map_err(publishing)?;
    let [output, stdout, stderr] = imported.try_into().expect("one result per source");
    observe(Phase::Import, started.elapsed());
    Ok((ContentId(output.root), ContentId(stdout.root), ContentId(stderr.root)))
}

/// A run's outputs or logs that could not be published: this host's failure.
fn publishing(error: ContentError) -> Stop {
    Stop::host(format!("publishing outputs and logs: {error}"))
}

/// The runtime invocation of `spec` with `mounts`: argv\[0\] is the program's CID (a
/// container job's argv is its `command`), then the spec's arguments; the spec's environment
/// and limits. The one place a job becomes a run, so workers, the verifier and a direct run all
/// invoke a program alike, in either runtime.
pub fn invocation(spec: &JobSpec, mounts: Vec<Mount>) -> Invocation {
    let limits = &spec.limits;
    let argv: Vec<String> = match (spec.runtime, &spec.command) {
        (RuntimeKind::Oci, Some(command)) => command.clone(),
        _ => vec![spec.program.to_string()],
    };
    Invocation {
        entrypoint: spec.entrypoint.clone(),
        args: argv.into_iter().chain(spec.args.iter().cloned()).collect(),
        env: spec.env.clone(),
        mounts,
        limits: shoal_runtime::Limits {
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes,
            wall_time: Duration::from_millis(limits.wall_time_ms),
            stdout_bytes: limits.log_bytes as usize,
            stderr_bytes: limits.log_bytes as usize,
            output_bytes: limits.output_bytes,
            // One value everywhere (worker and verifier must agree on the verdict) until job
            // specs carry their own.
            output_files: shoal_runtime::DEFAULT_OUTPUT_FILES,
        },
        determinism: match spec.determinism {
            Determinism::Deterministic => shoal_runtime::Determinism::Deterministic,
            Determinism::Nondeterministic => shoal_runtime::Determinism::Nondeterministic,
        },
    }
}

#[cfg(test)]
mod tests {
    use shoal_jobs::keys::RedisRole;
    use shoal_jobs::{ExecutionResult, Lane, ShardReader, Tenant};

    use super::*;
    use crate::fanout::tests::{executor, spec};

    #[tokio::test]
    async fn a_settle_acknowledges_with_the_outcome_only_what_goes_to_no_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let (server, executor, _admin) = executor(dir.path()).await;
        executor.queue.ensure_groups(1).await.unwrap();
        let urls = [server.url_for(RedisRole::Worker)];
        let mut reader = ShardReader::open(&urls, Lane::Jobs, &[0], "w1", Duration::from_millis(500)).await.unwrap();
        let tenant: Tenant = "acme".parse().unwrap();
        let cid: ContentId = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4".parse().unwrap();
        let result = ExecutionResult {
            exit_code: 0,
            output: cid,
            stdout: cid,
            stderr: cid,
            fuel_consumed: 1,
            fetch_ms: 0,
            run_ms: 0,
            inputs_cached: 0,
        };
        // A success going to the verifier keeps its entry until it is handed over: a worker dying
        // in between leaves it for whoever takes it over, whose `begin` hands the job over again.
        for (policy, expected, entries_left) in
            [(r#"{"mode":"none"}"#, Settled::Acknowledged, 0), (r#"{"mode":"always"}"#, Settled::Done, 1)]
        {
            executor.jobs.submit(&executor.queue, &spec(policy), 0, &tenant, None).await.unwrap();
            let delivery = reader.next(1).await.unwrap().remove(0);
            let Begun::Run(job, mut execution) = begin(&executor.jobs, "w1", &delivery).await.unwrap() else {
                panic!("the job runs")
            };
            execution.finished_at_ms = Some(now_ms());
            execution.outcome = Some(ExecutionOutcome::Completed(result.clone()));
            let settled = executor.settle(&job, *execution, Some(&delivery)).await.unwrap();
            assert_eq!(settled, (JobState::Succeeded, expected), "{policy}");
            assert_eq!(executor.queue.len(0).await.unwrap(), entries_left, "{policy}");
        }
    }
}
