//! Pipelines' driver: one worker at a time (under [`Lock::Pipelines`]) advances every
//! running pipeline ([`shoal_jobs::PipelineStore`]) by a round.
//!
//! A round looks at each stage in order and at each of its units of work — the stage itself, or
//! one file of a stage that runs per file (`each` over a pipeline input directory, listed once).
//! A unit is decided as soon as what it needs exists: per-file inputs as soon as *that file's*
//! upstream job has succeeded (and been decided on by the verifier, when its stage asks for
//! verification), a fan-in (`<stage>.all`) once every unit upstream has ended, a condition once
//! the file it tests exists. It is then skipped (its condition is false, or an input failed or
//! was skipped upstream), or submitted as an ordinary job — placed by its first input like any
//! job, so a file's later stages land on the worker that holds it. A stage's new jobs are
//! submitted (and its conditions tested) [`AT_ONCE`] at a time.
//!
//! Every job is submitted under an idempotency key made from the tenant and the job's invocation
//! CID, before its decision is recorded: an identical invocation, in this pipeline or another
//! of the tenant's (within the key's day), is the same job — memoised — and a driver that dies
//! between submitting and recording finds the same job next round. Only a job that succeeded or
//! has not ended is reused: one that failed or was cancelled leads to a fresh job
//! ([`PipelineStore::submit_unit`]). Decisions are written once.
//!
//! The driver is notice-driven. While it holds the lock it keeps each running pipeline's units
//! in memory — the decisions and how their jobs ended — and a round reads only the jobs whose
//! notices ([`shoal_jobs::PipelineNotice`], left by the script that made the job usable) name
//! them, then removes those notices once it has recorded what they caused: a driver dying
//! midway loses nothing, since the next one (taking the lock fresh) reads every pipeline in full
//! once. So does every [`REREAD_AFTER`], the safety net. A round with notices or decisions is
//! followed by the next after [`SOON`], not the whole interval; the lock is renewed while a long
//! round goes on.
//!
//! A unit that fails in a stage whose `on_failure` is `stop` fails the pipeline and cancels its
//! unfinished jobs; with `continue`, units taking it per file are skipped and a fan-in gets the
//! files that succeeded. A pipeline whose units have all ended succeeds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use shoal_content::unixfs::{self, ImportOptions, Link};
use shoal_content::ContentError;
use shoal_jobs::keys::Lock;
use shoal_jobs::{
    per_file_input, unit_key, Comparison, Condition, ContentId, InputSpec, Job, JobEnd, JobStore, OnFailure, Pipeline,
    PipelineNotice, PipelineState, PipelineStore, Stage, StageSource, StoreError, UnitDecision, VerificationPolicy,
};
use tracing::{debug, info, warn};

use crate::execute::Executor;

/// The most bytes of a JSON file a condition reads.
const CONDITION_FILE_BYTES: u64 = 1 << 20;

/// Notices a round reads from each tag's set.
const NOTICES_PER_TAG: usize = 1024;

/// The pause before the next round after one that had notices or made decisions: a unit whose
/// input just ended is decided within it, not within the whole interval.
const SOON: Duration = Duration::from_millis(100);

/// How long a pipeline is driven from notices before it is read in full again: the safety net
/// for a job that could not give notice (submitted before jobs named their pipelines) and any
/// notice lost to a path not foreseen.
const REREAD_AFTER: Duration = Duration::from_secs(300);

/// Jobs submitted, or conditions tested, at once.
const AT_ONCE: usize = 32;

/// Decisions recorded at a time while a round goes on, so the status shows jobs as they are
/// submitted, not only when a long first round ends.
const DECISIONS_PER_WRITE: usize = 256;

/// Runs driving rounds for as long as the worker runs: every `every`, or [`SOON`] after a busy
/// one; the lock is held for four intervals and renewed.
pub(crate) async fn driver(executor: Arc<Executor>, every: Duration) {
    let mut driver = Driver::new(every * 4);
    loop {
        let busy = match driver.round(&executor).await {
            Ok(busy) => busy,
            Err(e) => {
                warn!(error = %e, "driving pipelines failed; trying again next round");
                false
            }
        };
        tokio::time::sleep(if busy { SOON.min(every) } else { every }).await;
    }
}

/// A driver and what it knows while it holds the lock.
pub(crate) struct Driver {
    /// How long a take or a renewal of the lock holds it.
    hold: Duration,
    /// Whether it held the lock at its last round (what it knows is good only then).
    held: bool,
    /// Running pipelines, by id, as it last read or changed them.
    known: HashMap<String, Known>,
}

/// A running pipeline as the driver knows it.
struct Known {
    pipeline: Pipeline,
    units: Units,
    /// When it was last read in full.
    read_at: Instant,
}

/// A pipeline's units: what was decided, how their jobs ended, the files stages run over.
#[derive(Default)]
struct Units {
    decided: BTreeMap<String, UnitDecision>,
    ends: HashMap<String, JobEnd>,
    /// Pipeline input → its files, listed (or read) once.
    files: HashMap<String, Vec<(String, ContentId)>>,
}

/// Why a pipeline's round stopped.
enum Stop {
    /// Redis failed: what the driver knows of the pipeline may be wrong, so it is read again.
    Store(StoreError),
    /// Another worker holds the lock now.
    LockLost,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Store(e)
    }
}

impl Driver {
    /// A driver that takes the lock for `hold` at a time.
    pub(crate) fn new(hold: Duration) -> Driver {
        Driver { hold, held: false, known: HashMap::new() }
    }

    /// One round over every running pipeline, if this worker holds the lock (taking it, or
    /// renewing it); whether it was busy: notices read, or decisions made.
    pub(crate) async fn round(&mut self, executor: &Executor) -> Result<bool, StoreError> {
        let store = PipelineStore::new(executor.jobs.connection());
        let running = store.running().await?;
        if running.is_empty() {
            self.known.clear();
            return Ok(false);
        }
        if !self.lock(executor).await? {
            return Ok(false);
        }
        self.known.retain(|id, _| running.contains(id));
        let notices = store.notices(NOTICES_PER_TAG).await?;
        let mut busy = !notices.is_empty();
        let mut noticed: HashMap<String, Vec<PipelineNotice>> = HashMap::new();
        let mut forget = Vec::new();
        for notice in notices {
            if running.contains(&notice.pipeline) {
                noticed.entry(notice.pipeline.clone()).or_default().push(notice);
            } else {
                // Its pipeline has ended: nothing waits for it.
                forget.push(notice);
            }
        }
        let lease = Lease::new(&executor.jobs, &executor.worker, self.hold);
        let mut ended = false;
        for id in running {
            let notices = noticed.remove(&id).unwrap_or_default();
            match self.advance(executor, &store, &lease, &id, &notices).await {
                Ok(advanced) => {
                    busy |= advanced.decided > 0;
                    ended |= advanced.ended;
                    forget.extend(notices);
                }
                Err(Stop::LockLost) => {
                    warn!(pipeline = %id, "lost the pipelines lock mid-round; another worker drives them now");
                    self.held = false;
                    self.known.clear();
                    return Ok(busy);
                }
                // One pipeline's trouble is its own: the others advance all the same, and it is
                // read in full next round, its notices kept until then.
                Err(Stop::Store(e)) => {
                    warn!(pipeline = %id, error = %e, "could not advance a pipeline; trying again next round");
                    self.known.remove(&id);
                }
            }
        }
        // A pipeline that ended cancelled its unfinished jobs, each giving notice: none is
        // needed now, and no later round might read them (with no pipeline running, none looks).
        if ended {
            let running = store.running().await?;
            let late = store.notices(NOTICES_PER_TAG).await?;
            forget.extend(late.into_iter().filter(|notice| !running.contains(&notice.pipeline)));
        }
        store.forget(&forget).await?;
        Ok(busy)
    }

    /// Renews the lock if this driver held it, else takes it (forgetting what it knew: another
    /// may have driven since); whether it holds it.
    async fn lock(&mut self, executor: &Executor) -> Result<bool, StoreError> {
        let jobs = &executor.jobs;
        if self.held && jobs.renew_lock(Lock::Pipelines, &executor.worker, self.hold).await? {
            return Ok(true);
        }
        self.known.clear();
        self.held = jobs.take_lock(Lock::Pipelines, &executor.worker, self.hold).await?;
        Ok(self.held)
    }

    /// One round of pipeline `id`, whose jobs `notices` name changed.
    async fn advance(
        &mut self,
        executor: &Executor,
        store: &PipelineStore,
        lease: &Lease<'_>,
        id: &str,
        notices: &[PipelineNotice],
    ) -> Result<Advanced, Stop> {
        let stale = self.known.get(id).is_none_or(|known| known.read_at.elapsed() >= REREAD_AFTER);
        if stale {
            self.known.remove(id);
            let Some(pipeline) = store.load(id).await? else {
                store.retire(id).await?;
                return Ok(Advanced::ENDED);
            };
            if pipeline.state != PipelineState::Running {
                ended(executor, store, id, pipeline.state).await?;
                return Ok(Advanced::ENDED);
            }
            let decided = store.units(id).await?;
            let jobs: Vec<&str> = decided.values().filter_map(UnitDecision::job).collect();
            let ends = jobs.iter().map(|job| job.to_string()).zip(store.job_ends(&jobs).await?).collect();
            let units = Units { decided, ends, files: HashMap::new() };
            self.known.insert(id.to_string(), Known { pipeline, units, read_at: Instant::now() });
        } else {
            match store.state(id).await? {
                Some(PipelineState::Running) => {}
                state => {
                    self.known.remove(id);
                    match state {
                        Some(state) => ended(executor, store, id, state).await?,
                        None => store.retire(id).await?,
                    }
                    return Ok(Advanced::ENDED);
                }
            }
            let known = self.known.get_mut(id).expect("known: not stale");
            // A notice of a job no unit knows (its decision not recorded by a driver that died)
            // is dropped: the unit's next submission returns the job as it is.
            let mut jobs: Vec<&str> =
                notices.iter().map(|n| n.job.as_str()).filter(|job| known.units.ends.contains_key(*job)).collect();
            jobs.sort_unstable();
            jobs.dedup();
            let ends = store.job_ends(&jobs).await?;
            for (job, end) in jobs.into_iter().zip(ends) {
                known.units.ends.insert(job.to_string(), end);
            }
        }
        let known = self.known.get_mut(id).expect("known: read above");
        let Known { pipeline, units, .. } = known;
        let mut round = Round { executor, store, pipeline, lease, ended: BTreeMap::new() };
        let mut writes = Writes::default();
        let outcome = round.decide_all(units, &mut writes).await;
        store.decide(id, &writes.new).await?;
        let decided = writes.made;
        let concluded = match outcome {
            Ok(()) => round.conclude(executor).await?,
            Err(Halt::Broken(message)) => {
                fail(executor, store, id, &message).await?;
                true
            }
            Err(Halt::Retry(why)) => {
                warn!(pipeline = %id, %why, "pipeline round cut short; the next round goes on");
                false
            }
            Err(Halt::LockLost) => return Err(Stop::LockLost),
        };
        if concluded {
            self.known.remove(id);
        }
        Ok(Advanced { decided, ended: concluded })
    }
}

/// What a pipeline's round did.
struct Advanced {
    /// Units it decided.
    decided: usize,
    /// Whether the pipeline ended (or was found ended).
    ended: bool,
}

impl Advanced {
    /// Found ended: nothing decided.
    const ENDED: Advanced = Advanced { decided: 0, ended: true };
}

/// What to do about pipeline `id` that has ended as `state`: cancel its unfinished jobs if it
/// was cancelled, and take it off the driver's list.
async fn ended(executor: &Executor, store: &PipelineStore, id: &str, state: PipelineState) -> Result<(), StoreError> {
    if state == PipelineState::Cancelled {
        cancel_unfinished(executor, store, id, "its pipeline was cancelled").await?;
    }
    store.retire(id).await
}

/// The lock as a round holds it: renewed while a long round goes on.
struct Lease<'a> {
    jobs: &'a JobStore,
    holder: &'a str,
    hold: Duration,
    renewed: Mutex<Instant>,
}

impl<'a> Lease<'a> {
    fn new(jobs: &'a JobStore, holder: &'a str, hold: Duration) -> Lease<'a> {
        Lease { jobs, holder, hold, renewed: Mutex::new(Instant::now()) }
    }

    /// Renews the lock once a quarter of its hold has passed since the last renewal.
    async fn keep(&self) -> Result<(), Halt> {
        let due = self.renewed.lock().expect("never poisoned").elapsed() >= self.hold / 4;
        if !due {
            return Ok(());
        }
        if !self.jobs.renew_lock(Lock::Pipelines, self.holder, self.hold).await? {
            return Err(Halt::LockLost);
        }
        *self.renewed.lock().expect("never poisoned") = Instant::now();
        Ok(())
    }
}

/// Where a unit stands, as later units see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    /// Not ended: its inputs are missing, or its job has not ended (or awaits a verdict).
    Pending,
    /// Succeeded with this output.
    Output(ContentId),
    /// Failed, for this reason.
    Failed(String),
    /// Skipped, for this reason.
    Skipped(String),
}

/// What a unit may do now.
enum Readiness {
    /// Wait: something it needs has not ended.
    Wait,
    /// Never run, for this reason.
    Skip(String),
    /// Run over these inputs.
    Run(Vec<InputSpec>),
}

/// Why a round stopped short.
enum Halt {
    /// The pipeline cannot go on: it fails, saying this.
    Broken(String),
    /// Something that may pass — Redis, content not reachable now: the next round tries again.
    Retry(String),
    /// Another worker took the lock.
    LockLost,
}

impl From<StoreError> for Halt {
    fn from(e: StoreError) -> Halt {
        Halt::Retry(format!("Redis: {e}"))
    }
}

/// Decisions a round made: those not yet recorded, and how many in all.
#[derive(Default)]
struct Writes {
    new: Vec<(String, UnitDecision)>,
    made: usize,
}

impl Writes {
    /// Decides unit `key` of pipeline `id` as `decision`, in `units` at once and in Redis with
    /// the next [`DECISIONS_PER_WRITE`].
    async fn record(
        &mut self,
        store: &PipelineStore,
        id: &str,
        units: &mut Units,
        key: String,
        decision: UnitDecision,
    ) -> Result<(), StoreError> {
        units.decided.insert(key.clone(), decision.clone());
        self.new.push((key, decision));
        self.made += 1;
        if self.new.len() >= DECISIONS_PER_WRITE {
            store.decide(id, &self.new).await?;
            self.new.clear();
        }
        Ok(())
    }
}

/// A unit not yet decided: its key, its file (for a stage run per file), its inputs.
type Ready = (String, Option<(String, ContentId)>, Vec<InputSpec>);

/// One round's view of a pipeline: where each unit stands.
struct Round<'a> {
    executor: &'a Executor,
    store: &'a PipelineStore,
    pipeline: &'a Pipeline,
    lease: &'a Lease<'a>,
    /// Unit key → where it stands, for the stages looked at so far.
    ended: BTreeMap<String, Ended>,
}

impl Round<'_> {
    /// Looks at every unit of every stage, in order, deciding what can be.
    async fn decide_all(&mut self, units: &mut Units, writes: &mut Writes) -> Result<(), Halt> {
        let id = &self.pipeline.id;
        for stage in self.pipeline.spec.stages_in_order() {
            let files = self.units_of(stage, &mut units.files).await?;
            let keys: Vec<String> =
                files.iter().map(|file| unit_key(&stage.name, file.as_ref().map(|(name, _)| name.as_str()))).collect();
            let mut ready: Vec<Ready> = Vec::new();
            for (key, file) in keys.iter().zip(&files) {
                if units.decided.contains_key(key) {
                    continue;
                }
                match self.inputs(stage, file.as_ref()).await? {
                    Readiness::Wait => {}
                    Readiness::Skip(why) => {
                        writes.record(self.store, id, units, key.clone(), UnitDecision::Skipped(why)).await?
                    }
                    Readiness::Run(inputs) => ready.push((key.clone(), file.clone(), inputs)),
                }
            }
            let this = &*self;
            if let Some(condition) = &stage.when {
                let tested: Vec<(Ready, Readiness)> = futures::stream::iter(ready)
                    .map(|unit| async move {
                        let readiness = this.test(condition, unit.1.as_ref()).await;
                        (unit, readiness)
                    })
                    .buffered(AT_ONCE)
                    .collect()
                    .await;
                ready = Vec::new();
                for (unit, readiness) in tested {
                    match readiness {
                        Readiness::Wait => {}
                        Readiness::Skip(why) => {
                            writes.record(this.store, id, units, unit.0, UnitDecision::Skipped(why)).await?
                        }
                        Readiness::Run(_) => ready.push(unit),
                    }
                }
                this.lease.keep().await?;
            }
            {
                let mut submitting = futures::stream::iter(ready)
                    .map(|(key, file, inputs)| async move { (key, this.submit(stage, file.as_ref(), inputs).await) })
                    .buffer_unordered(AT_ONCE);
                while let Some((key, submitted)) = submitting.next().await {
                    let job = submitted?;
                    units.ends.insert(job.id.clone(), JobEnd::of(&job));
                    writes.record(this.store, id, units, key, UnitDecision::Job(job.id)).await?;
                    this.lease.keep().await?;
                }
            }
            let verdicts = stage.verification != VerificationPolicy::None;
            for key in keys {
                let ended = match units.decided.get(&key) {
                    None => Ended::Pending,
                    Some(UnitDecision::Skipped(why)) => Ended::Skipped(why.clone()),
                    Some(UnitDecision::Job(job)) => match units.ends.get(job) {
                        None | Some(JobEnd::Unfinished(_)) => Ended::Pending,
                        Some(JobEnd::Succeeded(_, false)) if verdicts => Ended::Pending,
                        Some(JobEnd::Succeeded(output, _)) => Ended::Output(*output),
                        Some(JobEnd::Failed(failure)) => {
                            Ended::Failed(format!("{}: {}", failure.reason.as_str(), failure.message))
                        }
                    },
                };
                self.ended.insert(key, ended);
            }
        }
        Ok(())
    }

    /// A stage's units: one per file it runs over (listed once, the first time, and kept in
    /// `files`), or the stage.
    async fn units_of(
        &self,
        stage: &Stage,
        files: &mut HashMap<String, Vec<(String, ContentId)>>,
    ) -> Result<Vec<Option<(String, ContentId)>>, Halt> {
        let Some(input) = per_file_input(stage) else {
            return Ok(vec![None]);
        };
        let each = stage.each.as_ref().expect("a stage run per file has `each`");
        if !files.contains_key(input) {
            let listed = self.list(input).await?;
            files.insert(input.to_string(), listed);
        }
        Ok(files[input].iter().filter(|(name, _)| each.selects(name)).cloned().map(Some).collect())
    }

    /// The files of pipeline input `input`, as recorded, or listed and recorded now.
    async fn list(&self, input: &str) -> Result<Vec<(String, ContentId)>, Halt> {
        let id = &self.pipeline.id;
        if let Some(files) = self.store.files(id, input).await? {
            return Ok(files);
        }
        let root = self.pipeline.spec.inputs()[input];
        let listed =
            tokio::time::timeout(self.executor.fetch_timeout, unixfs::list(self.executor.chain.as_ref(), root.cid()))
                .await
                .map_err(|_| Halt::Retry(format!("listing pipeline.{input} ({root}) took too long")))?
                .map_err(|e| {
                    let why = format!("listing pipeline.{input} ({root}) to run per file: {e}");
                    match e {
                        ContentError::WrongKind { .. } => Halt::Broken(why),
                        _ => Halt::Retry(why),
                    }
                })?;
        let files: Vec<(String, ContentId)> =
            listed.into_iter().map(|entry| (entry.name, ContentId(entry.cid))).collect();
        self.store.set_files(id, input, &files).await?;
        Ok(files)
    }

    /// Submits the job of a unit of `stage` (for `file`) over `inputs`: a new job, or an
    /// identical invocation's that succeeded or has not ended.
    async fn submit(
        &self,
        stage: &Stage,
        file: Option<&(String, ContentId)>,
        inputs: Vec<InputSpec>,
    ) -> Result<Job, StoreError> {
        let mut spec = stage.job_spec(inputs);
        // A stage run per file is one job per file, not a fan-out.
        spec.fan_out = None;
        let (executor, pipeline) = (self.executor, self.pipeline);
        let shard = executor.router.route(&spec);
        let job = self
            .store
            .submit_unit(&executor.jobs, &executor.queue, &spec, shard, &pipeline.tenant, &pipeline.id)
            .await?;
        debug!(pipeline = %pipeline.id, stage = %stage.name, file = ?file.map(|(name, _)| name), job = %job.id, "submitted");
        Ok(job)
    }

    /// The stage's inputs for `file` (or the stage), once they all exist.
    async fn inputs(&self, stage: &Stage, file: Option<&(String, ContentId)>) -> Result<Readiness, Halt> {
        let per_file = stage.each.as_ref().map(|each| each.input);
        let mut inputs = Vec::with_capacity(stage.inputs.len());
        for (i, input) in stage.inputs.iter().enumerate() {
            let cid = match (&input.from, file) {
                (StageSource::Pipeline(_), Some((name, cid))) if per_file == Some(i) => {
                    inputs.push(InputSpec::new(*cid, input.path.clone(), Some(name.clone())));
                    continue;
                }
                (StageSource::Pipeline(name), _) => self.pipeline.spec.inputs()[name],
                (StageSource::Stage(up), _) => {
                    let upstream = self.pipeline.spec.stage(up).expect("validated: the stage exists");
                    let file = file.filter(|_| upstream.each.is_some()).map(|(name, _)| name.as_str());
                    match self.ended.get(&unit_key(up, file)) {
                        Some(Ended::Output(output)) => *output,
                        Some(Ended::Failed(why)) => return Ok(Readiness::Skip(format!("{up} failed for it ({why})"))),
                        Some(Ended::Skipped(_)) => return Ok(Readiness::Skip(format!("{up} skipped it"))),
                        Some(Ended::Pending) => return Ok(Readiness::Wait),
                        None => return Ok(Readiness::Skip(format!("{up} has no unit for it"))),
                    }
                }
                (StageSource::All(up), _) => match self.gathered(up).await? {
                    Some(directory) => directory,
                    None => return Ok(Readiness::Wait),
                },
            };
            inputs.push(InputSpec::new(cid, input.path.clone(), input.name.clone()));
        }
        Ok(Readiness::Run(inputs))
    }

    /// Once every unit of stage `up` has ended: the directory of its succeeded units' outputs,
    /// named as their files (built into the block store, the same whoever builds it).
    async fn gathered(&self, up: &str) -> Result<Option<ContentId>, Halt> {
        let prefix = format!("{up}/");
        let mut links = Vec::new();
        for (key, ended) in self.ended.range(prefix.clone()..).take_while(|(key, _)| key.starts_with(&prefix)) {
            match ended {
                Ended::Pending => return Ok(None),
                Ended::Output(output) => {
                    let info = unixfs::stat(self.executor.chain.as_ref(), output.cid())
                        .await
                        .map_err(|e| Halt::Retry(format!("reading {up}'s output {output}: {e}")))?;
                    links.push(Link {
                        name: key[prefix.len()..].to_string(),
                        cid: *output.cid(),
                        dag_size: info.dag_size,
                    });
                }
                Ended::Failed(_) | Ended::Skipped(_) => {}
            }
        }
        let directory = unixfs::import_links(links, &ImportOptions::default(), self.executor.store.as_ref())
            .await
            .map_err(|e| Halt::Retry(format!("gathering {up}'s outputs: {e}")))?;
        Ok(Some(ContentId(directory.root)))
    }

    /// Whether `condition` holds for `file` (or the stage): [`Readiness::Run`] if it does.
    async fn test(&self, condition: &Condition, file: Option<&(String, ContentId)>) -> Readiness {
        let tested = self.pipeline.spec.stage(&condition.stage).expect("validated: the stage exists");
        let file = file.filter(|_| tested.each.is_some()).map(|(name, _)| name.as_str());
        let output = match self.ended.get(&unit_key(&condition.stage, file)) {
            Some(Ended::Output(output)) => *output,
            Some(Ended::Pending) => return Readiness::Wait,
            Some(Ended::Failed(_) | Ended::Skipped(_)) | None => {
                return Readiness::Skip(format!("{} has no output to test", condition.stage))
            }
        };
        let (path, field) = (&condition.file, &condition.field);
        let bytes = match self.executor.read_output(&output, path, CONDITION_FILE_BYTES).await {
            Ok(bytes) => bytes,
            Err(why) => return Readiness::Skip(format!("condition: cannot read {}'s {why}", condition.stage)),
        };
        let value = match serde_json::from_slice::<Value>(&bytes) {
            Ok(json) => json.pointer(&condition.pointer()).cloned(),
            Err(e) => return Readiness::Skip(format!("condition: {path} is not JSON: {e}")),
        };
        let Some(value) = value else {
            return Readiness::Skip(format!("condition: {path} has no {field}"));
        };
        match holds(&value, condition.op, &condition.value) {
            Some(true) => Readiness::Run(Vec::new()),
            Some(false) => Readiness::Skip(format!(
                "condition false: {field} {value} is not {:?} {}",
                condition.op, condition.value
            )),
            None => Readiness::Skip(format!("condition: {field} {value} cannot be compared with {}", condition.value)),
        }
    }

    /// Ends the pipeline if a stopping stage failed, or if every unit has ended; whether it did.
    async fn conclude(&self, executor: &Executor) -> Result<bool, StoreError> {
        let id = &self.pipeline.id;
        for stage in self.pipeline.spec.stages_in_order() {
            if stage.on_failure != OnFailure::Stop {
                continue;
            }
            let prefix = format!("{}/", stage.name);
            let failed = self.ended.iter().find(|(key, ended)| {
                (**key == stage.name || key.starts_with(&prefix)) && matches!(ended, Ended::Failed(_))
            });
            if let Some((unit, Ended::Failed(why))) = failed {
                fail(executor, self.store, id, &format!("{unit} failed: {why}")).await?;
                return Ok(true);
            }
        }
        if self.ended.values().any(|ended| *ended == Ended::Pending) {
            return Ok(false);
        }
        let failed = self.ended.values().filter(|ended| matches!(ended, Ended::Failed(_))).count();
        let message = match failed {
            0 => String::new(),
            n => format!("{n} units failed in stages that continue on failure"),
        };
        if self.store.finish(id, PipelineState::Succeeded, &message).await? {
            info!(pipeline = %id, "pipeline succeeded");
        }
        Ok(true)
    }
}

/// Fails pipeline `id` with `message` and cancels its unfinished jobs.
async fn fail(executor: &Executor, store: &PipelineStore, id: &str, message: &str) -> Result<(), StoreError> {
    if store.finish(id, PipelineState::Failed, message).await? {
        warn!(pipeline = %id, %message, "pipeline failed");
    }
    cancel_unfinished(executor, store, id, "its pipeline failed").await
}

/// Cancels every job of pipeline `id` that has not ended.
async fn cancel_unfinished(executor: &Executor, store: &PipelineStore, id: &str, why: &str) -> Result<(), StoreError> {
    let units = store.units(id).await?;
    let jobs: Vec<&str> = units.values().filter_map(UnitDecision::job).collect();
    for (job, end) in jobs.iter().zip(store.job_ends(&jobs).await?) {
        if matches!(end, JobEnd::Unfinished(_)) {
            executor.jobs.cancel(job, why).await?;
        }
    }
    Ok(())
}

/// Whether `value op expected` holds; `None` if they cannot be compared that way (validation
/// allows ordering only against a number).
fn holds(value: &Value, op: Comparison, expected: &Value) -> Option<bool> {
    if let (Some(a), Some(b)) = (value.as_f64(), expected.as_f64()) {
        return Some(match op {
            Comparison::Gt => a > b,
            Comparison::Ge => a >= b,
            Comparison::Lt => a < b,
            Comparison::Le => a <= b,
            Comparison::Eq => a == b,
            Comparison::Ne => a != b,
        });
    }
    match op {
        Comparison::Eq => Some(value == expected),
        Comparison::Ne => Some(value != expected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shoal_jobs::{
        keys, now_ms, Execution, ExecutionOutcome, ExecutionResult, Failure, FailureReason, JobSpec, JobState,
        PipelineSpec, Tenant,
    };

    use super::*;
    use crate::fanout::tests::{commands, executor};

    fn tenant() -> Tenant {
        "acme".parse().unwrap()
    }

    /// A CID of a raw block of `bytes`.
    fn cid(bytes: &[u8]) -> ContentId {
        ContentId(*shoal_content::Block::encode(shoal_content::Codec::Raw, bytes.to_vec()).cid())
    }

    /// Ends job `id` as a run that exited with `exit_code` (output `out` when 0) would.
    async fn settle(executor: &Executor, id: &str, exit_code: i32) {
        let outcome = match exit_code {
            0 => ExecutionOutcome::Completed(ExecutionResult {
                exit_code,
                output: cid(id.as_bytes()),
                stdout: cid(b""),
                stderr: cid(b""),
                fuel_consumed: 1,
                fetch_ms: 0,
                run_ms: 0,
                inputs_cached: 0,
            }),
            _ => ExecutionOutcome::Failed(Failure {
                reason: FailureReason::Trap,
                message: "boom".into(),
                stderr: None,
                fuel_consumed: None,
            }),
        };
        let execution = Execution {
            id: format!("x-{id}"),
            worker: "w1".into(),
            started_at_ms: now_ms(),
            finished_at_ms: Some(now_ms()),
            outcome: Some(outcome),
            receipt: None,
        };
        executor.jobs.finish_execution(id, &execution).await.unwrap();
    }

    async fn notices_left(admin: &mut redis::aio::MultiplexedConnection) -> usize {
        let mut all = 0;
        for tag in keys::all_job_tags() {
            let n: usize = redis::AsyncCommands::scard(admin, keys::pipeline_notices(&tag)).await.unwrap();
            all += n;
        }
        all
    }

    /// The jobs stage `stage` of pipeline `id` was given, by file.
    async fn jobs_of(store: &PipelineStore, id: &str, stage: &str) -> BTreeMap<String, String> {
        let prefix = format!("{stage}/");
        store
            .units(id)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(key, decision)| Some((key.strip_prefix(&prefix)?.to_string(), decision.job()?.to_string())))
            .collect()
    }

    #[tokio::test]
    async fn rounds_read_only_noticed_jobs_and_a_new_driver_reads_in_full_with_notices_pending() {
        let dir = tempfile::tempdir().unwrap();
        let (server, executor, mut admin) = executor(dir.path()).await;
        let url = server.url_for(keys::RedisRole::Worker);
        let other = Executor::open(&crate::WorkerConfig::new("w2", &url, &dir.path().join("w2"))).await.unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        let n = 400;
        for i in 0..n {
            std::fs::write(files.join(format!("f{i:03}")), format!("file {i}")).unwrap();
        }
        let root = unixfs::import_path(&files, &ImportOptions::default(), executor.store.as_ref()).await.unwrap().root;
        let program = cid(b"a program never run").to_string();
        let none = json!({"mode": "none"});
        let spec = json!({"inputs": {"files": root.to_string()}, "stages": [
            {"name": "a", "program": program, "verification": none, "each": {"input": 0},
             "inputs": [{"from": "pipeline.files", "path": "/in"}], "on_failure": "continue"},
            {"name": "b", "program": program, "verification": none, "each": {"input": 0},
             "inputs": [{"from": "pipeline.files", "path": "/in"}, {"from": "a", "path": "/a"}]}
        ]});
        let spec = PipelineSpec::from_json(spec.to_string().as_bytes()).unwrap();
        let store = PipelineStore::new(executor.jobs.connection());
        let id = store.create(&spec, &tenant(), None).await.unwrap().pipeline().id.clone();

        let mut first = Driver::new(Duration::from_secs(60));
        assert!(first.round(&executor).await.unwrap(), "it submitted every file's first job");
        let a = jobs_of(&store, &id, "a").await;
        assert_eq!(a.len(), n);
        assert!(jobs_of(&store, &id, "b").await.is_empty());

        // Two jobs end: the next round reads those two, not the 398 still queued.
        settle(&executor, &a["f007"], 0).await;
        settle(&executor, &a["f123"], 0).await;
        let before = commands(&mut admin).await;
        assert!(first.round(&executor).await.unwrap());
        let spent = commands(&mut admin).await - before;
        let b = jobs_of(&store, &id, "b").await;
        assert_eq!(b.keys().collect::<Vec<_>>(), ["f007", "f123"]);
        assert_eq!(notices_left(&mut admin).await, 0, "notices are removed once what they caused is recorded");
        eprintln!("commands in a round deciding 2 of {n} units: {spent}");
        assert!(spent < 200, "a round read {spent} commands with {n} units decided");
        // Nothing changed: a quiet round, and not a busy one.
        assert!(!first.round(&executor).await.unwrap());

        // The driver dies (its lock lapses) with notices pending; another worker's reads the
        // pipeline in full once, and goes on from there.
        settle(&executor, &a["f200"], 0).await;
        settle(&executor, &a["f300"], 1).await;
        assert_eq!(notices_left(&mut admin).await, 2);
        let _: i64 = redis::AsyncCommands::del(&mut admin, Lock::Pipelines.key()).await.unwrap();
        let mut second = Driver::new(Duration::from_secs(60));
        assert!(second.round(&other).await.unwrap());
        let b = jobs_of(&store, &id, "b").await;
        assert_eq!(b.keys().collect::<Vec<_>>(), ["f007", "f123", "f200"]);
        let units = store.units(&id).await.unwrap();
        assert!(matches!(&units["b/f300"], UnitDecision::Skipped(why) if why.starts_with("a failed for it")));
        assert_eq!(notices_left(&mut admin).await, 0);
        // The first driver finds the lock taken, and drives nothing.
        settle(&executor, &a["f001"], 0).await;
        assert!(!first.round(&executor).await.unwrap());
        assert_eq!(jobs_of(&store, &id, "b").await.len(), 3);
        assert!(second.round(&other).await.unwrap());
        assert_eq!(jobs_of(&store, &id, "b").await.len(), 4);

        // Cancelled: its unfinished jobs are cancelled, and the notices that gives are dropped.
        assert!(store.finish(&id, PipelineState::Cancelled, "by the test").await.unwrap());
        second.round(&other).await.unwrap();
        assert!(store.running().await.unwrap().is_empty());
        assert_eq!(executor.jobs.states(&[a["f399"].clone()]).await.unwrap(), [Some(JobState::Cancelled)]);
        assert_eq!(notices_left(&mut admin).await, 0);
    }

    #[tokio::test]
    async fn a_unit_reuses_a_job_that_succeeded_or_runs_but_not_one_that_failed_or_was_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, executor, mut admin) = executor(dir.path()).await;
        let store = PipelineStore::new(executor.jobs.connection());
        let json = r#"{"program":"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4","verification":{"mode":"none"}}"#;
        let spec = JobSpec::from_json(json.as_bytes()).unwrap();
        let submit = |pipeline: &'static str| {
            let (store, executor, spec) = (&store, &executor, &spec);
            async move { store.submit_unit(&executor.jobs, &executor.queue, spec, 0, &tenant(), pipeline).await.unwrap() }
        };
        let first = submit("p1").await;
        assert_eq!(submit("p1").await.id, first.id, "queued: reused");
        settle(&executor, &first.id, 1).await;
        assert_eq!(notices_left(&mut admin).await, 1, "its pipeline is told it failed");
        let second = submit("p2").await;
        assert_ne!(second.id, first.id, "failed: run again");
        assert_eq!(second.state, JobState::Queued);
        assert_eq!(submit("p2").await.id, second.id, "the same chain of keys finds the same job again");
        executor.jobs.cancel(&second.id, "not wanted").await.unwrap();
        let third = submit("p3").await;
        assert!(third.id != first.id && third.id != second.id, "cancelled: run again");
        settle(&executor, &third.id, 0).await;
        assert_eq!(submit("p4").await.id, third.id, "succeeded: reused");
        // Each pipeline hears of the job it was given ending; p4, of one that had already.
        let mut heard: Vec<(String, String)> = store
            .notices(NOTICES_PER_TAG)
            .await
            .unwrap()
            .into_iter()
            .map(|n| (n.pipeline, n.member[n.member.rfind('/').unwrap() + 1..].to_string()))
            .collect();
        heard.sort();
        let expected = [("p1", "failed"), ("p2", "cancelled"), ("p3", "succeeded"), ("p4", "succeeded")];
        assert_eq!(heard, expected.map(|(p, s)| (p.to_string(), s.to_string())));
    }

    #[test]
    fn conditions_compare_numbers_in_order_and_anything_for_equality() {
        assert_eq!(holds(&json!(0.2), Comparison::Gt, &json!(0.05)), Some(true));
        assert_eq!(holds(&json!(0.05), Comparison::Gt, &json!(0.05)), Some(false));
        assert_eq!(holds(&json!(0.05), Comparison::Ge, &json!(0.05)), Some(true));
        assert_eq!(holds(&json!(3), Comparison::Lt, &json!(3.5)), Some(true));
        assert_eq!(holds(&json!("cloudy"), Comparison::Eq, &json!("cloudy")), Some(true));
        assert_eq!(holds(&json!(true), Comparison::Ne, &json!(false)), Some(true));
        assert_eq!(holds(&json!("0.2"), Comparison::Gt, &json!(0.05)), None, "a string is not ordered");
    }
}
