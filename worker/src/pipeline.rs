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
//! job, so a file's later stages land on the worker that holds it.
//!
//! Every job is submitted under an idempotency key made from the tenant and the job's invocation
//! CID, before its decision is recorded: an identical invocation, in this pipeline or another
//! of the tenant's (within the key's day), is the same job — memoised — and a driver that dies
//! between submitting and recording finds the same job next round. Decisions are written once.
//!
//! A unit that fails in a stage whose `on_failure` is `stop` fails the pipeline and cancels its
//! unfinished jobs; with `continue`, units taking it per file are skipped and a fan-in gets the
//! files that succeeded. A pipeline whose units have all ended succeeds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shoal_content::unixfs::{self, ImportOptions, Link};
use shoal_content::ContentError;
use shoal_jobs::keys::Lock;
use shoal_jobs::{
    per_file_input, unit_key, Comparison, Condition, ContentId, Created, Idempotency, InputSpec, JobEnd, OnFailure,
    Pipeline, PipelineState, PipelineStore, Stage, StageSource, StoreError, UnitDecision, VerificationPolicy,
};
use tracing::{info, warn};

use crate::execute::Executor;

/// The most bytes of a JSON file a condition reads.
const CONDITION_FILE_BYTES: u64 = 1 << 20;

/// Runs driving rounds every `every` for as long as the worker runs.
pub(crate) async fn driver(executor: Arc<Executor>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = drive(&executor, every * 4).await {
            warn!(error = %e, "driving pipelines failed; trying again next round");
        }
    }
}

/// One round over every running pipeline, if this worker gets the lock (held up to `hold`).
pub(crate) async fn drive(executor: &Executor, hold: Duration) -> Result<(), StoreError> {
    let store = PipelineStore::new(executor.jobs.connection());
    let running = store.running().await?;
    if running.is_empty() || !executor.jobs.take_lock(Lock::Pipelines, &executor.worker, hold).await? {
        return Ok(());
    }
    for id in running {
        // One pipeline's trouble is its own: the others advance all the same.
        if let Err(e) = advance(executor, &store, &id).await {
            warn!(pipeline = %id, error = %e, "could not advance a pipeline; trying again next round");
        }
    }
    Ok(())
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
}

impl From<StoreError> for Halt {
    fn from(e: StoreError) -> Halt {
        Halt::Retry(format!("Redis: {e}"))
    }
}

/// Decisions recorded at a time while a round goes on, so the status shows jobs as they are
/// submitted, not only when a long first round ends.
const DECISIONS_PER_WRITE: usize = 256;

/// One round of pipeline `id`.
async fn advance(executor: &Executor, store: &PipelineStore, id: &str) -> Result<(), StoreError> {
    let Some(pipeline) = store.load(id).await? else {
        return store.retire(id).await;
    };
    match pipeline.state {
        PipelineState::Running => {}
        PipelineState::Cancelled => {
            cancel_unfinished(executor, store, id, "its pipeline was cancelled").await?;
            return store.retire(id).await;
        }
        PipelineState::Succeeded | PipelineState::Failed => return store.retire(id).await,
    }
    let mut decided = store.units(id).await?;
    let jobs: Vec<&str> = decided.values().filter_map(UnitDecision::job).collect();
    let ends: BTreeMap<String, JobEnd> =
        jobs.iter().map(|job| job.to_string()).zip(store.job_ends(&jobs).await?).collect();
    let mut round = Round { executor, store, pipeline: &pipeline, ended: BTreeMap::new(), new: Vec::new() };
    let outcome = round.decide_all(&mut decided, &ends).await;
    store.decide(id, &round.new).await?;
    match outcome {
        Ok(()) => round.conclude(executor).await,
        Err(Halt::Broken(message)) => fail(executor, store, id, &message).await,
        Err(Halt::Retry(why)) => {
            warn!(pipeline = %id, %why, "pipeline round cut short; the next round goes on");
            Ok(())
        }
    }
}

/// One round's view of a pipeline: where each unit stands, and what it decided.
struct Round<'a> {
    executor: &'a Executor,
    store: &'a PipelineStore,
    pipeline: &'a Pipeline,
    /// Unit key → where it stands, for the stages looked at so far.
    ended: BTreeMap<String, Ended>,
    /// Decisions made this round and not yet recorded.
    new: Vec<(String, UnitDecision)>,
}

impl Round<'_> {
    /// Looks at every unit of every stage, in order, deciding what can be.
    async fn decide_all(
        &mut self,
        decided: &mut BTreeMap<String, UnitDecision>,
        ends: &BTreeMap<String, JobEnd>,
    ) -> Result<(), Halt> {
        for stage in self.pipeline.spec.stages_in_order() {
            let verdicts = stage.verification != VerificationPolicy::None;
            for file in self.units_of(stage).await? {
                let key = unit_key(&stage.name, file.as_ref().map(|(name, _)| name.as_str()));
                if !decided.contains_key(&key) {
                    if let Some(decision) = self.decide(stage, file.as_ref()).await? {
                        self.new.push((key.clone(), decision.clone()));
                        decided.insert(key.clone(), decision);
                        if self.new.len() >= DECISIONS_PER_WRITE {
                            self.store.decide(&self.pipeline.id, &self.new).await?;
                            self.new.clear();
                        }
                    }
                }
                let ended = match decided.get(&key) {
                    None => Ended::Pending,
                    Some(UnitDecision::Skipped(why)) => Ended::Skipped(why.clone()),
                    Some(UnitDecision::Job(job)) => match ends.get(job) {
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

    /// A stage's units: one per file it runs over (listed once, the first time), or the stage.
    async fn units_of(&self, stage: &Stage) -> Result<Vec<Option<(String, ContentId)>>, Halt> {
        let Some(input) = per_file_input(stage) else {
            return Ok(vec![None]);
        };
        let each = stage.each.as_ref().expect("a stage run per file has `each`");
        let id = &self.pipeline.id;
        let files = match self.store.files(id, input).await? {
            Some(files) => files,
            None => {
                let root = self.pipeline.spec.inputs()[input];
                let listed = tokio::time::timeout(
                    self.executor.fetch_timeout,
                    unixfs::list(self.executor.chain.as_ref(), root.cid()),
                )
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
                files
            }
        };
        Ok(files.into_iter().filter(|(name, _)| each.selects(name)).map(Some).collect())
    }

    /// What to do with one unit now: a decision, or none yet.
    async fn decide(&self, stage: &Stage, file: Option<&(String, ContentId)>) -> Result<Option<UnitDecision>, Halt> {
        let inputs = match self.inputs(stage, file).await? {
            Readiness::Wait => return Ok(None),
            Readiness::Skip(why) => return Ok(Some(UnitDecision::Skipped(why))),
            Readiness::Run(inputs) => inputs,
        };
        if let Some(condition) = &stage.when {
            match self.test(condition, file).await {
                Readiness::Wait => return Ok(None),
                Readiness::Skip(why) => return Ok(Some(UnitDecision::Skipped(why))),
                Readiness::Run(_) => {}
            }
        }
        let mut spec = stage.job_spec(inputs);
        // A stage run per file is one job per file, not a fan-out.
        spec.fan_out = None;
        let memo = format!("pipeline\0{}\0{}", self.pipeline.tenant, spec.invocation_cid());
        let shard = self.executor.router.route(&spec);
        let created = self
            .executor
            .jobs
            .submit(&self.executor.queue, &spec, shard, &self.pipeline.tenant, Some(Idempotency::Internal(&memo)))
            .await?;
        let (Created::New(job) | Created::Existing(job)) = created;
        let job = job.id;
        info!(pipeline = %self.pipeline.id, stage = %stage.name, file = ?file.map(|(name, _)| name), %job, "submitted");
        Ok(Some(UnitDecision::Job(job)))
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

    /// Ends the pipeline if a stopping stage failed, or if every unit has ended.
    async fn conclude(&self, executor: &Executor) -> Result<(), StoreError> {
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
                return fail(executor, self.store, id, &format!("{unit} failed: {why}")).await;
            }
        }
        if self.ended.values().any(|ended| *ended == Ended::Pending) {
            return Ok(());
        }
        let failed = self.ended.values().filter(|ended| matches!(ended, Ended::Failed(_))).count();
        let message = match failed {
            0 => String::new(),
            n => format!("{n} units failed in stages that continue on failure"),
        };
        if self.store.finish(id, PipelineState::Succeeded, &message).await? {
            info!(pipeline = %id, "pipeline succeeded");
        }
        Ok(())
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

    use super::*;

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
