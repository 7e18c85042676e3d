//! Pipelines as Shoal tracks them ([`PipelineStore`]): the spec and its state, and what the
//! driver decided for each unit of work — a stage, or one file of a stage that runs per file:
//! the job that does it, or why it is skipped.
//!
//! The gateway creates and cancels pipelines; a worker's driver (one at a time, under
//! [`keys::Lock::Pipelines`]) advances them. Every decision is written once (`HSETNX`), and the
//! jobs it names are submitted under an idempotency key made from their invocation CID, so a
//! driver that dies mid-round leaves nothing the next one would do twice.
//!
//! A job a pipeline waits for names the pipeline in its record (`pipelines`, set by
//! [`PipelineStore::submit_unit`]); the script that makes the job usable — ends it, or records
//! the verifier's verdict when its policy asks for one — leaves a notice for each pipeline named
//! ([`keys::pipeline_notices`]), so the driver reads only the jobs that changed
//! ([`PipelineStore::notices`]) and removes the notices once it recorded what they caused
//! ([`PipelineStore::forget`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::connection::{Batch, RedisConnection};
use crate::error::StoreError;
use crate::keys::{self, JobKeys, PipelineKeys};
use crate::model::{
    ContentId, ExecutionResult, Failure, FailureReason, FanOutOver, Job, JobSpec, JobState, PipelineSpec, Stage,
    StageSource, VerificationPolicy,
};
use crate::queue::ShardQueue;
use crate::store::{claim_key, now_ms, Created, Idempotency, JobStore};
use crate::tenants::Tenant;

/// How far a pipeline has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PipelineState {
    /// Its driver has work left.
    Running,
    /// Every unit ran or was skipped, and no failure stopped it.
    Succeeded,
    /// A unit of a stage whose `on_failure` is `stop` failed.
    Failed,
    /// Cancelled (`DELETE /v1/pipelines/{id}`); its unfinished jobs are cancelled too.
    Cancelled,
}

impl PipelineState {
    /// The state's name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Running => "running",
            PipelineState::Succeeded => "succeeded",
            PipelineState::Failed => "failed",
            PipelineState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for PipelineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PipelineState {
    type Err = String;

    fn from_str(s: &str) -> Result<PipelineState, String> {
        [PipelineState::Running, PipelineState::Succeeded, PipelineState::Failed, PipelineState::Cancelled]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown pipeline state {s:?}"))
    }
}

/// What the driver decided for one unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitDecision {
    /// This job does it (`{"job": "<id>"}`); an identical invocation's job, if one ran before.
    Job(String),
    /// It does not run (`{"skipped": "<why>"}`): its condition is false, or an input it needs
    /// failed or was skipped upstream.
    Skipped(String),
}

impl UnitDecision {
    /// The job, if the unit has one.
    pub fn job(&self) -> Option<&str> {
        match self {
            UnitDecision::Job(job) => Some(job),
            UnitDecision::Skipped(_) => None,
        }
    }
}

/// A pipeline as Shoal tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Its id (a ULID).
    pub id: String,
    /// Who submitted it: its jobs are that tenant's.
    pub tenant: Tenant,
    /// What it runs.
    pub spec: PipelineSpec,
    /// How far it has got.
    pub state: PipelineState,
    /// When it was submitted (ms since the epoch).
    pub created_ms: u64,
    /// When it ended.
    pub finished_ms: Option<u64>,
    /// Why it ended as it did, when that needs saying.
    pub message: Option<String>,
}

/// What [`PipelineStore::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineCreated {
    /// A new pipeline was stored.
    New(Pipeline),
    /// The idempotency key named an existing pipeline, returned unchanged.
    Existing(Pipeline),
}

impl PipelineCreated {
    /// The pipeline, new or not.
    pub fn pipeline(&self) -> &Pipeline {
        match self {
            PipelineCreated::New(pipeline) | PipelineCreated::Existing(pipeline) => pipeline,
        }
    }
}

/// Where one unit of work stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    /// Its inputs do not all exist yet (or its job is queued).
    Waiting,
    /// Its job runs (or succeeded and awaits the verifier's verdict, which it is used after).
    Running,
    /// Its job succeeded (and the verifier, if asked, decided).
    Succeeded,
    /// Its job failed.
    Failed,
    /// It does not run: its condition is false, or an input it needs is missing upstream.
    Skipped,
}

/// One unit of a stage: the stage's one job, or one file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnitStatus {
    /// The file, for a stage run per file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Where it stands.
    pub state: UnitState,
    /// Its job, once submitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Its output directory, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<ContentId>,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How many units of a stage stand where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnitCounts {
    /// Not started.
    pub waiting: u64,
    /// Running, or awaiting a verdict.
    pub running: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Skipped.
    pub skipped: u64,
}

/// One stage of a pipeline, as its status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageStatus {
    /// The stage's name.
    pub name: String,
    /// Its units' counts.
    pub counts: UnitCounts,
    /// Its units (files not yet listed are not among them).
    pub units: Vec<UnitStatus>,
}

/// A pipeline's status: its state and every stage's units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PipelineStatus {
    /// The pipeline's id.
    pub id: String,
    /// Its tenant.
    #[schema(value_type = String)]
    pub tenant: Tenant,
    /// How far it has got.
    pub state: PipelineState,
    /// When it was submitted (ms since the epoch).
    pub created_ms: u64,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why it ended as it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The stages, in the order they run.
    pub stages: Vec<StageStatus>,
}

/// A unit's key: the stage's name, or `<stage>/<file>` for a stage run per file.
pub fn unit_key(stage: &str, file: Option<&str>) -> String {
    match file {
        Some(file) => format!("{stage}/{file}"),
        None => stage.to_string(),
    }
}

/// What a job's record says of how it ended, read in a batch with others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// Not ended: `true` once it runs.
    Unfinished(bool),
    /// Succeeded with this output; `true` once the verifier decided on it.
    Succeeded(ContentId, bool),
    /// Failed (or cancelled, or gone).
    Failed(Failure),
}

impl JobEnd {
    /// How `job` ended, from its record.
    pub fn of(job: &Job) -> JobEnd {
        match (job.state, &job.result) {
            (JobState::Queued, _) => JobEnd::Unfinished(false),
            (JobState::Running, _) => JobEnd::Unfinished(true),
            (JobState::Succeeded, Some(result)) => JobEnd::Succeeded(result.output, job.verification.is_some()),
            (state, _) => JobEnd::Failed(
                job.failure
                    .clone()
                    .unwrap_or_else(|| internal(format!("job {} ended {state} without a failure", job.id))),
            ),
        }
    }
}

/// A notice that a job pipeline `pipeline` waits for may be used now, as its tag's
/// [`keys::pipeline_notices`] set holds it (`<pipeline>/<job>/<state>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineNotice {
    /// The pipeline.
    pub pipeline: String,
    /// The job.
    pub job: String,
    /// The set member, as it is.
    pub member: String,
    /// The set holding it (the job's tag's).
    pub set: String,
}

/// Adds a pipeline's notice name `<pipeline>/<job>` (`ARGV[1]`) to job `KEYS[1]`'s
/// `pipelines`, and sets its `gather_on` (`ARGV[2]`: `settle`, or `verdict` when its policy asks
/// for verification); if the job may be used already, gives the notice at once (in `KEYS[2]`, its
/// tag's [`keys::pipeline_notices`]): the scripts that end it or record its verdict give it
/// otherwise (the `STATES` prelude's `gatherable`), so no change is missed between the two.
/// Returns 0 for a job without a record.
const WATCH: &str = r#"
local job = redis.call('HMGET', KEYS[1], 'state', 'pipelines', 'verification')
if not job[1] then return 0 end
local watchers = job[2] or ''
if not string.find(' ' .. watchers .. ' ', ' ' .. ARGV[1] .. ' ', 1, true) then
  redis.call('HSET', KEYS[1], 'pipelines', watchers == '' and ARGV[1] or watchers .. ' ' .. ARGV[1])
end
redis.call('HSET', KEYS[1], 'gather_on', ARGV[2])
local state = job[1]
if state == 'failed' or state == 'cancelled' or (state == 'succeeded' and (job[3] or ARGV[2] == 'settle')) then
  redis.call('SADD', KEYS[2], ARGV[1] .. '/' .. state)
end
return 1
"#;

/// Ends a running pipeline: `KEYS[1]` its record, `KEYS[2]` the running set; `ARGV` its id, the
/// end state, the time and a message. Returns 1 if it ended it, 0 if it had ended already.
const FINISH: &str = r#"
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished', ARGV[3], 'message', ARGV[4])
if ARGV[2] ~= 'cancelled' then redis.call('SREM', KEYS[2], ARGV[1]) end
return 1
"#;

/// Pipelines in Redis.
#[derive(Clone)]
pub struct PipelineStore {
    conn: RedisConnection,
}

/// Built and hashed once per process, not carried by every (cloned) store: a gateway clones its
/// stores for every request.
static FINISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FINISH));

// KEYS: the pipeline's record. ARGV: spec JSON, tenant, state, creation time in ms. Stores the
// record whole unless there is one: two requests with one idempotency key may both get to
// store its pipeline under the claimed id, and only the first may.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spec', ARGV[1], 'tenant', ARGV[2], 'state', ARGV[3], 'created', ARGV[4])
return 1
"#;

static CREATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CREATE));

/// `pipeline`, which idempotency key `key` named, as the answer to a request for `spec` with it:
/// the same pipeline, or a conflict if it was made of another spec.
fn existing_pipeline(pipeline: Pipeline, spec: &PipelineSpec, key: &str) -> Result<PipelineCreated, StoreError> {
    if pipeline.spec != *spec {
        return Err(StoreError::IdempotencyConflict { key: key.to_string(), job: pipeline.id });
    }
    Ok(PipelineCreated::Existing(pipeline))
}

impl PipelineStore {
    /// A store over `conn`.
    pub fn new(conn: impl Into<RedisConnection>) -> PipelineStore {
        PipelineStore { conn: conn.into() }
    }

    /// Stores `spec` as a new running pipeline of `tenant`, or with an idempotency key the
    /// tenant used before, returns the pipeline it created.
    pub async fn create(
        &self,
        spec: &PipelineSpec,
        tenant: &Tenant,
        idempotency_key: Option<&str>,
    ) -> Result<PipelineCreated, StoreError> {
        let mut conn = self.conn.clone();
        let mut id = ulid::Ulid::new().to_string();
        if let Some(key) = idempotency_key {
            if let Some(existing) = claim_key(&mut conn, &keys::pipeline_idempotency(tenant, key), &id).await? {
                // Claimed before: that pipeline, or if its creator died before storing it (or
                // is storing it now), this one under the claimed id, once.
                if let Some(pipeline) = self.load(&existing).await? {
                    return existing_pipeline(pipeline, spec, key);
                }
                id = existing;
            }
        }
        let spec_json = serde_json::to_string(spec).expect("a pipeline spec serialises to JSON");
        let created = now_ms();
        let keys = PipelineKeys::of(&id);
        let stored: bool = CREATE_SCRIPT
            .key(&keys.record)
            .arg(spec_json)
            .arg(tenant.as_str())
            .arg(PipelineState::Running.as_str())
            .arg(created)
            .invoke_async(&mut conn)
            .await?;
        if !stored {
            // Another request with the key stored it first.
            let pipeline = self.load(&id).await?.ok_or_else(|| StoreError::Corrupt {
                key: keys.record.clone(),
                reason: "stored by another request, yet not there to read".into(),
            })?;
            return existing_pipeline(pipeline, spec, idempotency_key.unwrap_or_default());
        }
        let () = conn.sadd(keys::running_pipelines(), &id).await?;
        Ok(PipelineCreated::New(Pipeline {
            id,
            tenant: tenant.clone(),
            spec: spec.clone(),
            state: PipelineState::Running,
            created_ms: created,
            finished_ms: None,
            message: None,
        }))
    }

    /// Pipeline `id`, if there is one.
    pub async fn load(&self, id: &str) -> Result<Option<Pipeline>, StoreError> {
        let keys = PipelineKeys::of(id);
        let mut conn = self.conn.clone();
        let fields: BTreeMap<String, String> = conn.hgetall(&keys.record).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let corrupt = |reason: String| StoreError::Corrupt { key: keys.record.clone(), reason };
        let field = |name: &str| fields.get(name).ok_or_else(|| corrupt(format!("no {name}")));
        let spec = PipelineSpec::from_json(field("spec")?.as_bytes()).map_err(|e| corrupt(format!("spec: {e}")))?;
        let number = |name: &str| -> Result<Option<u64>, StoreError> {
            fields.get(name).map(|n| n.parse().map_err(|e| corrupt(format!("{name}: {e}")))).transpose()
        };
        Ok(Some(Pipeline {
            id: id.to_string(),
            tenant: field("tenant")?.parse().map_err(|e: String| corrupt(format!("tenant: {e}")))?,
            spec,
            state: field("state")?.parse().map_err(corrupt)?,
            created_ms: number("created")?.unwrap_or_default(),
            finished_ms: number("finished")?,
            message: fields.get("message").filter(|m| !m.is_empty()).cloned(),
        }))
    }

    /// The ids of the pipelines whose driver has work left (cancelled ones included, until
    /// their jobs are cancelled).
    pub async fn running(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.smembers(keys::running_pipelines()).await?)
    }

    /// What the driver decided so far, unit → decision.
    pub async fn units(&self, id: &str) -> Result<BTreeMap<String, UnitDecision>, StoreError> {
        let keys = PipelineKeys::of(id);
        let mut conn = self.conn.clone();
        let raw: BTreeMap<String, String> = conn.hgetall(&keys.units).await?;
        raw.into_iter()
            .map(|(unit, json)| {
                let decision = serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt { key: keys.units.clone(), reason: format!("{unit}: {e}") })?;
                Ok((unit, decision))
            })
            .collect()
    }

    /// Records `decisions`; a unit decided before keeps its first decision.
    pub async fn decide(&self, id: &str, decisions: &[(String, UnitDecision)]) -> Result<(), StoreError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let keys = PipelineKeys::of(id);
        let mut pipe = redis::pipe();
        for (unit, decision) in decisions {
            let json = serde_json::to_string(decision).expect("a decision serialises to JSON");
            pipe.hset_nx(&keys.units, unit, json).ignore();
        }
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// The files of pipeline input `input` a stage runs per file over, if listed already.
    pub async fn files(&self, id: &str, input: &str) -> Result<Option<Vec<(String, ContentId)>>, StoreError> {
        let keys = PipelineKeys::of(id);
        let mut conn = self.conn.clone();
        let json: Option<String> = conn.hget(&keys.files, input).await?;
        json.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt { key: keys.files.clone(), reason: format!("{input}: {e}") })
        })
        .transpose()
    }

    /// Records the files of pipeline input `input`, once.
    pub async fn set_files(&self, id: &str, input: &str, files: &[(String, ContentId)]) -> Result<(), StoreError> {
        let keys = PipelineKeys::of(id);
        let json = serde_json::to_string(files).expect("file lists serialise to JSON");
        let mut conn = self.conn.clone();
        let _: bool = conn.hset_nx(&keys.files, input, json).await?;
        Ok(())
    }

    /// Ends running pipeline `id` as `state` (its driver stops looking at it, but for a
    /// cancelled one, until [`PipelineStore::retire`]); false if it had ended already.
    pub async fn finish(&self, id: &str, state: PipelineState, message: &str) -> Result<bool, StoreError> {
        let keys = PipelineKeys::of(id);
        let mut conn = self.conn.clone();
        let ended: i64 = FINISH_SCRIPT
            .key(&keys.record)
            .key(keys::running_pipelines())
            .arg(id)
            .arg(state.as_str())
            .arg(now_ms())
            .arg(message)
            .invoke_async(&mut conn)
            .await?;
        Ok(ended == 1)
    }

    /// Pipeline `id`'s state, if it exists (one field read: what a driver checks every round).
    pub async fn state(&self, id: &str) -> Result<Option<PipelineState>, StoreError> {
        let keys = PipelineKeys::of(id);
        let mut conn = self.conn.clone();
        let state: Option<String> = conn.hget(&keys.record, "state").await?;
        state.map(|s| s.parse().map_err(|reason| StoreError::Corrupt { key: keys.record, reason })).transpose()
    }

    /// Submits the job for a unit of pipeline `pipeline` (see [`JobStore::submit`]) under an
    /// idempotency key made of its tenant and invocation CID — an identical invocation of the
    /// tenant's, in any pipeline, is one job — and names the pipeline in its record, so it gives
    /// the pipeline notice when it may be used (at once if it may already). A job found under the
    /// key that failed or was cancelled is not reused: the next key in the chain, the key and that
    /// job's id, is tried — the same chain for every driver, so one that died before recording
    /// its decision finds the same job again.
    pub async fn submit_unit(
        &self,
        jobs: &JobStore,
        queue: &ShardQueue,
        spec: &JobSpec,
        shard: u32,
        tenant: &Tenant,
        pipeline: &str,
    ) -> Result<Job, StoreError> {
        static WATCHING: LazyLock<Script> = LazyLock::new(|| Script::new(WATCH));
        let memo = format!("pipeline\0{tenant}\0{}", spec.invocation_cid());
        let mut key = memo.clone();
        let job = loop {
            match jobs.submit(queue, spec, shard, tenant, Some(Idempotency::Internal(&key))).await? {
                Created::Existing(job) if matches!(job.state, JobState::Failed | JobState::Cancelled) => {
                    key = format!("{memo}\0after\0{}", job.id);
                }
                Created::New(job) | Created::Existing(job) => break job,
            }
        };
        let gather_on = if spec.verification == VerificationPolicy::None { "settle" } else { "verdict" };
        let mut conn = self.conn.clone();
        let _: i64 = WATCHING
            .key(JobKeys::of(&job.id).job)
            .key(keys::pipeline_notices(&keys::job_tag(&job.id)))
            .arg(format!("{pipeline}/{}", job.id))
            .arg(gather_on)
            .invoke_async(&mut conn)
            .await?;
        Ok(job)
    }

    /// Up to `per_tag` notices from each tag's [`keys::pipeline_notices`] set, read in one
    /// batch. A notice that does not parse is left where it is, for an operator to see.
    pub async fn notices(&self, per_tag: usize) -> Result<Vec<PipelineNotice>, StoreError> {
        let sets = keys::all_job_tags().map(|tag| keys::pipeline_notices(&tag)).collect();
        Ok(self
            .conn
            .sample_sets(sets, per_tag)
            .await?
            .into_iter()
            .flat_map(|(set, members)| {
                members.into_iter().filter_map(move |member| {
                    let mut parts = member.splitn(3, '/');
                    let (pipeline, job) = (parts.next()?.to_string(), parts.next()?.to_string());
                    parts.next()?;
                    Some(PipelineNotice { pipeline, job, member, set: set.clone() })
                })
            })
            .collect())
    }

    /// Removes `notices`: what they caused is recorded.
    pub async fn forget(&self, notices: &[PipelineNotice]) -> Result<(), StoreError> {
        let mut by_set: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for notice in notices {
            by_set.entry(&notice.set).or_default().push(&notice.member);
        }
        let mut batch = Batch::new();
        for (set, members) in by_set {
            batch.add(set, redis::cmd("SREM").arg(set).arg(members).clone());
        }
        let _: Vec<i64> = self.conn.query_batch(&batch).await?;
        Ok(())
    }

    /// Takes pipeline `id` off the driver's list (a cancelled pipeline whose jobs it cancelled).
    pub async fn retire(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.srem(keys::running_pipelines(), id).await?;
        Ok(())
    }
}

impl PipelineStore {
    /// How the jobs `ids` ended, in order, read in one batch.
    pub async fn job_ends(&self, ids: &[&str]) -> Result<Vec<JobEnd>, StoreError> {
        let mut batch = Batch::new();
        for id in ids {
            let key = JobKeys::of(id).job;
            let fields = ["state", "result", "failure", "verification"];
            batch.add(&key, redis::cmd("HMGET").arg(&key).arg(&fields[..]).clone());
        }
        type Reply = (Option<String>, Option<String>, Option<String>, Option<String>);
        let replies: Vec<Reply> = self.conn.query_batch(&batch).await?;
        ids.iter()
            .zip(replies)
            .map(|(id, (state, result, failure, verification))| {
                let key = JobKeys::of(id).job;
                let corrupt = |reason: String| StoreError::Corrupt { key: key.clone(), reason };
                let Some(state) = state else {
                    return Ok(JobEnd::Failed(internal(format!("job {id} has no record"))));
                };
                Ok(match state.parse::<JobState>().map_err(corrupt)? {
                    JobState::Queued => JobEnd::Unfinished(false),
                    JobState::Running => JobEnd::Unfinished(true),
                    JobState::Succeeded => {
                        let result: ExecutionResult = serde_json::from_str(&result.unwrap_or_default())
                            .map_err(|e| corrupt(format!("result: {e}")))?;
                        JobEnd::Succeeded(result.output, verification.is_some_and(|v| !v.is_empty()))
                    }
                    other => JobEnd::Failed(match failure.filter(|f| !f.is_empty()) {
                        Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(format!("failure: {e}")))?,
                        None => internal(format!("job {id} ended {other} without a failure")),
                    }),
                })
            })
            .collect()
    }

    /// Pipeline `id`'s status: every stage's units, decided or waiting, and where their jobs
    /// stand. A stage's job counts as succeeded once the verifier decided on it, when its
    /// policy asks for verification.
    pub async fn status(&self, id: &str) -> Result<Option<PipelineStatus>, StoreError> {
        let Some(pipeline) = self.load(id).await? else {
            return Ok(None);
        };
        let decided = self.units(id).await?;
        let jobs: Vec<&str> = decided.values().filter_map(UnitDecision::job).collect();
        let ends: BTreeMap<&str, JobEnd> = jobs.iter().copied().zip(self.job_ends(&jobs).await?).collect();
        let mut stages = Vec::new();
        for stage in pipeline.spec.stages_in_order() {
            let files = match per_file_input(stage) {
                Some(input) => {
                    self.files(id, input).await?.unwrap_or_default().into_iter().map(|(f, _)| Some(f)).collect()
                }
                None => vec![None],
            };
            let verdicts = stage.verification != VerificationPolicy::None;
            let mut status = StageStatus { name: stage.name.clone(), counts: UnitCounts::default(), units: Vec::new() };
            for file in files {
                let mut unit =
                    UnitStatus { file: file.clone(), state: UnitState::Waiting, job: None, output: None, reason: None };
                match decided.get(&unit_key(&stage.name, file.as_deref())) {
                    None => {}
                    Some(UnitDecision::Skipped(why)) => {
                        unit.state = UnitState::Skipped;
                        unit.reason = Some(why.clone());
                    }
                    Some(UnitDecision::Job(job)) => {
                        unit.job = Some(job.clone());
                        match &ends[job.as_str()] {
                            JobEnd::Unfinished(false) => {}
                            JobEnd::Unfinished(true) => unit.state = UnitState::Running,
                            JobEnd::Succeeded(_, false) if verdicts => unit.state = UnitState::Running,
                            JobEnd::Succeeded(output, _) => {
                                unit.state = UnitState::Succeeded;
                                unit.output = Some(*output);
                            }
                            JobEnd::Failed(failure) => {
                                unit.state = UnitState::Failed;
                                unit.reason = Some(format!("{}: {}", failure.reason.as_str(), failure.message));
                            }
                        }
                    }
                }
                let counts = &mut status.counts;
                *match unit.state {
                    UnitState::Waiting => &mut counts.waiting,
                    UnitState::Running => &mut counts.running,
                    UnitState::Succeeded => &mut counts.succeeded,
                    UnitState::Failed => &mut counts.failed,
                    UnitState::Skipped => &mut counts.skipped,
                } += 1;
                status.units.push(unit);
            }
            stages.push(status);
        }
        Ok(Some(PipelineStatus {
            id: pipeline.id,
            tenant: pipeline.tenant,
            state: pipeline.state,
            created_ms: pipeline.created_ms,
            finished_ms: pipeline.finished_ms,
            message: pipeline.message,
            stages,
        }))
    }
}

/// The pipeline input a stage runs per file over: its `each` directory, when that is one of
/// the pipeline's inputs.
pub fn per_file_input(stage: &Stage) -> Option<&str> {
    let each = stage.each.as_ref().filter(|each| each.over == FanOutOver::Directory)?;
    match &stage.inputs.get(each.input)?.from {
        StageSource::Pipeline(input) => Some(input),
        _ => None,
    }
}

/// A failure of Shoal's own, saying `message`.
fn internal(message: String) -> Failure {
    Failure { reason: FailureReason::Internal, message, stderr: None, fuel_consumed: None }
}
