//! Job state in Redis: creation, lookup, listing and the atomic state transitions.
//!
//! Every transition is one Lua script over keys of one slot (see [`crate::keys`]), so a job's
//! record, executions and state index never disagree, and a finished job can never be changed
//! again: a duplicate or late result is kept as an execution but does not touch the job. On a
//! single node the create and finish scripts also write the one key of another slot that goes
//! with them (the shard's stream, the worker's settled list).

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{AsyncCommands, Script, ScriptInvocation};

use crate::connection::{Batch, RedisConnection};
use crate::error::StoreError;
use crate::keys::{self, JobKeys, Lock};
use crate::membership::Membership;
use crate::memo;
use crate::model::{
    Execution, ExecutionOutcome, Failure, FailureReason, Job, JobSpec, JobState, Verification, VerificationPolicy,
};
use crate::queue::{Delivery, Lane, ShardQueue};
use crate::tenants::{count_submission, Tenant};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What [`JobStore::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new job was stored.
    New(Job),
    /// The idempotency key named an existing job, which is returned unchanged.
    Existing(Job),
}

/// An idempotency key: a client's, which only its tenant can use, or one Shoal makes for the
/// jobs it creates itself. The two never share a key, whatever the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency<'a> {
    /// An `Idempotency-Key` header, scoped to the tenant that sent it.
    Client {
        /// The sender's tenant.
        tenant: &'a Tenant,
        /// The header's value.
        key: &'a str,
    },
    /// A key Shoal made (a fan-out's task, a verifier's replica).
    Internal(&'a str),
}

impl Idempotency<'_> {
    /// The key as the client or Shoal gave it, for messages.
    pub fn as_str(&self) -> &str {
        match self {
            Idempotency::Client { key, .. } | Idempotency::Internal(key) => key,
        }
    }
}

/// The field-value pairs of a Redis hash.
type HashFields = Vec<(String, String)>;

/// A job in a listing: its creation time in ms and its id (also the listing's cursor).
pub type Listed = (u64, String);

/// What [`JobStore::start_execution`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The execution is recorded and the job is running.
    Running(Box<Job>),
    /// The job had already finished; nothing was changed and the delivery should be acked.
    AlreadyFinished(JobState),
    /// The job is running from another stream entry: this one is a duplicate, to acknowledge
    /// without running.
    Duplicate,
    /// The job's last attempt started less than its backoff ago: leave the entry pending (it is
    /// taken over again after the visibility timeout) rather than run it now.
    BackingOff {
        /// Time left until a retry is allowed.
        wait: Duration,
    },
    /// The job had been started its `max_attempts` times without finishing: it is now failed
    /// ([`crate::FailureReason::WorkerLost`]) and the delivery belongs in the dead-letter stream.
    AttemptsExhausted {
        /// Executions started.
        attempts: u32,
    },
}

// KEYS: job, executions, five state indexes (JobState::ALL order), the deadline index, the
// events stream, the gatherable set, the job's changes. Every script moves the job between
// index sets by its current state, so indexes follow it. A fan-out's task carries `fanout_task` (its notice,
// `<fanned-out job>/<task key>`) and `gather_on` (`settle`, or `verdict` when its job's policy
// asks for verification) from its creation on, so the scripts that end it need nothing else.
// ARGV[13] and [14]: a job submitted for memoisation's memo and its expiry in ms ('' and 0
// otherwise); the `ANSWER` prelude of `crate::memo` runs first and may answer from the memo.
// With KEYS[12], its shard's stream (on a single node only, see `JobStore::single_node`), a
// job it stores is also put on that stream, the entry recorded, in the same step; `CLAIM` runs
// before it all, and `COUNT` before that.
// Every answer is `CREATED`'s, `CLAIM`'s or `COUNT`'s.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return created(0) end
local fields = {'spec', ARGV[1], 'invocation', ARGV[2], 'state', 'queued', 'created_at_ms', ARGV[3],
  'updated_at_ms', ARGV[3], 'shard', ARGV[4], 'max_attempts', ARGV[6], 'backoff_ms', ARGV[8], 'tenant', ARGV[9]}
if ARGV[10] == '1' then table.insert(fields, 'notify') table.insert(fields, '1') end
if ARGV[11] ~= '' then
  for _, f in ipairs({'fanout_task', ARGV[11], 'gather_on', ARGV[12]}) do table.insert(fields, f) end
end
if ARGV[13] ~= '' then
  for _, f in ipairs({'memo', ARGV[13], 'memo_ttl_ms', ARGV[14]}) do table.insert(fields, f) end
end
redis.call('HSET', KEYS[1], unpack(fields))
changed(ARGV[5], ARGV[9], 'queued')
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[3] .. ':tenant:' .. ARGV[9], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[8], ARGV[3] + ARGV[7], ARGV[5])
if KEYS[12] then
  redis.call('HSET', KEYS[1], 'entry', redis.call('XADD', KEYS[12], '*', 'job', ARGV[5]))
end
return created(1)
"#;

// The create script's answer (before `COUNT`, `CLAIM`, `crate::memo::ANSWER` and `CREATE`): what
// it did — 0 the job existed already, 1 it was queued, 2 it was answered from its memo (3,
// `CLAIM`'s: the idempotency key was claimed before, answered with the claim; 4, `COUNT`'s: past
// the tenant's submissions a second) — with the job's record and executions as they are now, so
// a submission needs no second round trip to read its job.
const CREATED: &str = r#"
local function created(did)
  return {did, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
end
"#;

// With ARGV[15], a claim (`<id> <invocation>`) of the submission's idempotency key KEYS[13] (only
// beside KEYS[12]: on a single node), kept ARGV[16] seconds: the key is claimed in the same step
// as the job is stored, a round trip fewer than claiming it first. A key claimed before answers 3
// with its claim (as the one field of a record) and changes nothing.
const CLAIM: &str = r#"
local before = ARGV[15] ~= '' and redis.call('SET', KEYS[13], ARGV[15], 'NX', 'GET', 'EX', ARGV[16])
if before then return {3, {'claim', before}, {}} end
"#;

// With ARGV[17], the tenant's submissions a second (only beside KEYS[12]: on a single node), the
// submission is counted first, on the last key (the tenant's count for this second,
// `keys::submissions`), as `crate::tenants::count_submission` counts it: a round trip fewer than
// counting it before. Past the quota it answers 4 and stores nothing; a repeat or a conflict of an
// idempotency key counts too.
const COUNT: &str = r#"
if ARGV[17] ~= '' then
  local made = redis.call('INCR', KEYS[#KEYS])
  redis.call('EXPIRE', KEYS[#KEYS], ARGV[18])
  if made > tonumber(ARGV[17]) then return {4, {}, {}} end
end
"#;

// A job's tenant indexes are named after its state index (`keys::tenant_state_index`). A job
// that asked for a webhook announces its end (and verdicts) on the events stream, in the same
// script that changes it. Likewise a fan-out's task puts itself up for gathering on its tag's
// gatherable set once its job may count it: failed or cancelled at once (whichever path ended
// it: settle, verdict, cancel, deadline sweep, exhausted attempts), succeeded once the verifier
// has decided on it, unless its job asks for no verification. Every change (a move, or a
// verdict) counts in the job's `seq`, is kept in its changes list (the latest 64,
// keys::CHANGES_KEPT) and is published on keys::CHANGES_CHANNEL, so gateways wake whoever waits
// for it and a client resuming after change n reads what followed.
pub(crate) const STATES: &str = r#"
local states = {queued = 3, running = 4, succeeded = 5, failed = 6, cancelled = 7}
local function changed(id, tenant, what)
  local entry = redis.call('HINCRBY', KEYS[1], 'seq', 1) .. ' ' .. what
  if redis.call('RPUSH', KEYS[11], entry) > 64 then redis.call('LPOP', KEYS[11]) end
  redis.call('PUBLISH', 'shoal:changes', id .. ' ' .. (tenant or '-') .. ' ' .. entry)
end
local function terminal(s) return s == 'succeeded' or s == 'failed' or s == 'cancelled' end
local function announce(id, event)
  if redis.call('HEXISTS', KEYS[1], 'notify') == 1 then
    redis.call('XADD', KEYS[9], '*', 'job', id, 'event', event)
  end
end
local function gatherable(state, verdict)
  if not terminal(state) then return end
  local task = redis.call('HMGET', KEYS[1], 'fanout_task', 'gather_on', 'pipelines')
  if state == 'succeeded' and not verdict and task[2] ~= 'settle' then return end
  if task[1] then redis.call('SADD', KEYS[10], task[1]) end
  -- Pipelines waiting for the job (keys::pipeline_notices), by the same rule.
  for watcher in string.gmatch(task[3] or '', '%S+') do
    redis.call('SADD', KEYS[10] .. ':pipelines', watcher .. '/' .. state)
  end
end
local function move(id, from, to, created)
  redis.call('ZREM', KEYS[states[from]], id)
  redis.call('ZADD', KEYS[states[to]], created, id)
  local tenant = redis.call('HGET', KEYS[1], 'tenant')
  if tenant then
    redis.call('ZREM', KEYS[states[from]] .. ':tenant:' .. tenant, id)
    redis.call('ZADD', KEYS[states[to]] .. ':tenant:' .. tenant, created, id)
  end
  changed(id, tenant, to)
  if terminal(to) then
    redis.call('ZREM', KEYS[8], id)
    announce(id, 'job.' .. to)
    gatherable(to, false)
  end
end
"#;

// ARGV: id, execution id, execution JSON, now, stream entry ('' when not started from one),
// jitter factor (0.5 to 1.5). A retry sooner than the job's backoff after the last start is
// refused with the time left; the entry stays pending and is taken over again later.
// The job remembers the entry it was last started from: another entry for a job that is
// running is a duplicate (a re-queued job whose first entry turned up after all) and is not run.
// A job started `max_attempts` times without any execution finishing lost its workers each
// time: it fails here, atomically, instead of being started again.
const START: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if terminal(state) then return {'terminal', state} end
local entry = redis.call('HGET', KEYS[1], 'entry')
if ARGV[5] ~= '' and state == 'running' and entry and entry ~= ARGV[5] then return {'duplicate'} end
local started = redis.call('HLEN', KEYS[2])
local max = tonumber(redis.call('HGET', KEYS[1], 'max_attempts') or '0')
local backoff = tonumber(redis.call('HGET', KEYS[1], 'backoff_ms') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_started_ms') or '0')
if started > 0 and backoff > 0 and (max == 0 or started < max) then
  local wait = math.min(backoff * 2 ^ (started - 1) * tonumber(ARGV[6]), 3600000)
  if tonumber(ARGV[4]) < last + wait then return {'later', tostring(math.ceil(last + wait - ARGV[4]))} end
end
if max > 0 and started >= max then
  local failure = cjson.encode({reason = 'worker_lost', message = 'the job was started ' .. started ..
    ' times (its max_attempts) and every worker running it died or hung before finishing'})
  redis.call('HSET', KEYS[1], 'state', 'failed', 'failure', failure, 'updated_at_ms', ARGV[4])
  move(ARGV[1], state, 'failed', redis.call('HGET', KEYS[1], 'created_at_ms'))
  return {'exhausted', tostring(started)}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'running', 'updated_at_ms', ARGV[4], 'last_started_ms', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'entry', ARGV[5]) end
move(ARGV[1], state, 'running', redis.call('HGET', KEYS[1], 'created_at_ms'))
-- The job as it is now, so the worker needs no second round trip to read what it runs.
return {'running', redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"#;

// ARGV: id, execution id, execution JSON, final state, result JSON or '', failure JSON or '', now.
// With ARGV[8], the length kept of KEYS[12], the list of jobs its worker settled (on a single
// node only, see `JobStore::finish_claimed`): the job settled here is added to it in the same
// step, so a worker caught later never has a settled job unrecorded.
// With ARGV[9], the stream entry the execution was run from (on a single node only, see
// `JobStore::finish_delivered`), the last key its stream and ARGV[10] its group: the entry is
// acknowledged and deleted once the outcome is stored (or found stored before), in the same step.
const FINISH: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if ARGV[9] ~= '' then
  redis.call('XACK', KEYS[#KEYS], ARGV[10], ARGV[9])
  redis.call('XDEL', KEYS[#KEYS], ARGV[9])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if terminal(state) then return {'terminal', state} end
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'updated_at_ms', ARGV[7])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'failure', ARGV[6]) end
move(ARGV[1], state, ARGV[4], redis.call('HGET', KEYS[1], 'created_at_ms'))
if ARGV[8] ~= '' then
  redis.call('LPUSH', KEYS[12], ARGV[1])
  redis.call('LTRIM', KEYS[12], 0, ARGV[8] - 1)
end
return {ARGV[4]}
"#;

// ARGV: execution id, execution JSON. Records an execution that ended without settling the job
// (its host failed, not the program): it stays among the job's starts, which max_attempts
// counts, while the job stays running and its entry pending, to be taken over and run again.
const ABANDON: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state or terminal(state) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"#;

// ARGV: id, failure JSON, now. Fails a job that is past its deadline, unless it finished.
const EXPIRE: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then redis.call('ZREM', KEYS[8], ARGV[1]) return 0 end
if terminal(state) then redis.call('ZREM', KEYS[8], ARGV[1]) return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'failure', ARGV[2], 'updated_at_ms', ARGV[3])
move(ARGV[1], state, 'failed', redis.call('HGET', KEYS[1], 'created_at_ms'))
return 1
"#;

// ARGV: stream entry id. Records where a job was queued, unless a worker already started it.
const ENQUEUED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'entry', ARGV[1])
return 1
"#;

// ARGV: id, verification JSON, corrected result JSON or '', failure JSON or '', whether the
// verdict accepts the job's result ('1', `crate::memo::accepts`: it is memoised). Only an
// existing job: HSET alone would create a stub record. A failure moves a succeeded job to failed
// (the verifier's re-execution failed where the worker claimed success).
const VERIFY: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
local now = state
redis.call('HSET', KEYS[1], 'verification', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[3]) end
if ARGV[3] ~= '' and state == 'failed' then
  redis.call('HSET', KEYS[1], 'state', 'succeeded')
  redis.call('HDEL', KEYS[1], 'failure')
  move(ARGV[1], state, 'succeeded', redis.call('HGET', KEYS[1], 'created_at_ms'))
  now = 'succeeded'
end
if ARGV[4] ~= '' and state == 'succeeded' then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'failure', ARGV[4])
  redis.call('HDEL', KEYS[1], 'result')
  move(ARGV[1], state, 'failed', redis.call('HGET', KEYS[1], 'created_at_ms'))
  now = 'failed'
end
announce(ARGV[1], 'job.verified')
changed(ARGV[1], redis.call('HGET', KEYS[1], 'tenant'), now .. ' ' .. cjson.decode(ARGV[2]).outcome.verdict)
gatherable(now, true)
remember(ARGV[1], now, ARGV[5])
return 1
"#;

// ARGV: id, now, deadline. A finished job whose result or failure the verifier found made up
// goes back to `queued` to run again: its result, failure, verdict and memo go, its executions
// (the false one among them) stay, and it gets a deadline again.
const REOPEN: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'succeeded' and state ~= 'failed' then return 0 end
forget(ARGV[1])
redis.call('HDEL', KEYS[1], 'result', 'failure', 'verification')
redis.call('HSET', KEYS[1], 'state', 'queued', 'updated_at_ms', ARGV[2])
move(ARGV[1], state, 'queued', redis.call('HGET', KEYS[1], 'created_at_ms'))
redis.call('ZADD', KEYS[8], ARGV[3], ARGV[1])
return 1
"#;

// ARGV: id, now, failure JSON. Cancels a job that has not finished; returns the state it was in.
const CANCEL: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if terminal(state) then return {'terminal', state} end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'updated_at_ms', ARGV[2], 'failure', ARGV[3])
move(ARGV[1], state, 'cancelled', redis.call('HGET', KEYS[1], 'created_at_ms'))
return {'cancelled', state}
"#;

/// `script` with the keys every job script takes, in the order the `STATES` prelude numbers
/// them: the job (KEYS[1]), its executions (2), the state indexes (3 to 7), the deadlines (8),
/// the events stream (9), the gatherable set (10), its changes (11).
fn job_script<'a>(script: &'a Script, keys: &JobKeys) -> ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    invocation.key(&keys.job).key(&keys.executions).key(&keys.state_index[..]).key(&keys.deadlines).key(&keys.events);
    invocation.key(&keys.gatherable).key(&keys.changes);
    invocation
}

/// The finish script over job `keys`, then the keys it may also write: list `settled` (the
/// worker's settled jobs) and stream `acked` (the delivery's), each if given. The script finds
/// the list at the first key after the job's and the stream at the last, and knows from its
/// arguments which are there; the callers pass those.
fn finish_script(keys: &JobKeys, settled: Option<&str>, acked: Option<&str>) -> ScriptInvocation<'static> {
    let mut invocation = job_script(&SCRIPTS.finish, keys);
    for key in [settled, acked].into_iter().flatten() {
        invocation.key(key);
    }
    invocation
}

/// Where a fan-out's task belongs: its fanned-out job and its key there (the name of its first
/// file). Its record keeps them, so the scripts that end it put it up for gathering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOf<'a> {
    /// The fanned-out job.
    pub job: &'a str,
    /// The task's key within it.
    pub key: &'a str,
}

/// A job [`JobStore::create_job`] stores: what the create script is given besides its id.
#[derive(Clone, Copy)]
struct NewJob<'a> {
    spec: &'a JobSpec,
    shard: u32,
    tenant: &'a Tenant,
    invocation: &'a str,
    task: Option<TaskOf<'a>>,
    memo: Option<&'a (String, u64)>,
    stream: Option<&'a str>,
    /// The tenant's submissions a second, when this submission counts against them.
    per_sec: Option<u64>,
}

/// What an idempotency key records of the job it names: `<id> <invocation>` (read by
/// [`JobStore::claimed`]).
fn claim_of(id: &str, invocation: &str) -> String {
    format!("{id} {invocation}")
}

/// Claims idempotency key `key` (a job's or a pipeline's) with `claim` for
/// [`keys::IDEMPOTENCY_SECS`]: `None` if this call claimed it, else the claim there was, which
/// comes back with the refusal — no second read, which the key could have expired before.
pub(crate) async fn claim_key(
    conn: &mut RedisConnection,
    key: &str,
    claim: &str,
) -> Result<Option<String>, StoreError> {
    let before = redis::cmd("SET")
        .arg(key)
        .arg(claim)
        .arg("NX")
        .arg("GET")
        .arg("EX")
        .arg(keys::IDEMPOTENCY_SECS)
        .query_async(conn)
        .await?;
    Ok(before)
}

/// What [`JobStore::store_new`] did.
enum Stored {
    /// The create script ran as [`Created`] says.
    Created(Box<Created>),
    /// The idempotency key it was to claim was claimed before, as this says ([`claim_of`]);
    /// nothing was changed.
    ClaimedBefore(String),
    /// The submission, counted, was past its tenant's submissions a second; nothing else was
    /// changed.
    OverQuota,
}

/// What an idempotency key claimed before names.
enum Claimed {
    /// Its job, stored.
    Stored(Box<Job>),
    /// The id it was claimed for, whose job was never stored (its first request died between
    /// the two).
    Unstored(String),
}

/// How [`JobStore::submit_client`] takes a client's submission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientSubmission {
    /// Answer it from the memo of an identical accepted run, else let its own result, once
    /// accepted, answer identical submissions for this long ([`JobStore::submit_memoised`]).
    pub memo_ttl: Option<Duration>,
    /// Its tenant's submissions a second, which it counts against.
    pub submissions_per_sec: Option<u64>,
}

/// What a new job is besides a job of its spec.
#[derive(Debug, Clone, Copy, Default)]
struct Submission<'a> {
    /// A fan-out's task: its record names its job and key, so the script that ends it (or
    /// records its verdict) puts it up for gathering.
    task: Option<TaskOf<'a>>,
    /// How a client submitted it: whether a memoisable spec's memo may answer it (see
    /// [`crate::memo`]), and the quota it counts against.
    client: ClientSubmission,
}

/// The job scripts, each with its preludes, built and hashed once per process: stores are
/// cloned for every request, and a clone copying the scripts' sources (kilobytes each) made the
/// gateway spend its time in the allocator under load.
struct JobScripts {
    create: Script,
    start: Script,
    finish: Script,
    abandon: Script,
    verify: Script,
    reopen: Script,
    enqueued: Script,
    expire: Script,
    cancel: Script,
}

static SCRIPTS: LazyLock<JobScripts> = LazyLock::new(|| JobScripts {
    create: Script::new(&format!("{STATES}{CREATED}{COUNT}{CLAIM}{}{CREATE}", memo::ANSWER)),
    start: Script::new(&format!("{STATES}{START}")),
    finish: Script::new(&format!("{STATES}{FINISH}")),
    abandon: Script::new(&format!("{STATES}{ABANDON}")),
    verify: Script::new(&format!("{STATES}{}{VERIFY}", memo::REMEMBER)),
    reopen: Script::new(&format!("{STATES}{}{REOPEN}", memo::REMEMBER)),
    enqueued: Script::new(ENQUEUED),
    expire: Script::new(&format!("{STATES}{EXPIRE}")),
    cancel: Script::new(&format!("{STATES}{CANCEL}")),
});

/// Job records in Redis, on one node or a cluster. Cheap to clone: clones share one
/// auto-reconnecting connection, and the scripts are the process's.
#[derive(Clone)]
pub struct JobStore {
    conn: RedisConnection,
}

impl JobStore {
    /// A store over `conn` (a [`redis::aio::ConnectionManager`] for one node, or a
    /// [`RedisConnection`]).
    pub fn new(conn: impl Into<RedisConnection>) -> JobStore {
        JobStore { conn: conn.into() }
    }

    /// The underlying connection, for queue operations that go with job changes.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Stores a new queued job of `tenant` for `spec` placed on `shard`.
    ///
    /// With an idempotency key, a second call with the same key returns the first job instead
    /// of creating another; the same key with a different spec is a conflict.
    pub async fn create(
        &self,
        spec: &JobSpec,
        shard: u32,
        tenant: &Tenant,
        idempotency_key: Option<Idempotency<'_>>,
    ) -> Result<Created, StoreError> {
        self.create_job(spec, shard, tenant, idempotency_key, Submission::default(), None).await
    }

    /// Whether Redis is a single node, where the scripts that make a job's changes may also
    /// write keys of other slots — its shard's stream, its worker's list of settled jobs — in
    /// the same step; a cluster refuses a script over keys of several slots. One step instead
    /// of two is a round trip fewer per job, and no window between the two writes.
    fn single_node(&self) -> bool {
        !self.conn.is_cluster()
    }

    /// [`JobStore::create`] for a job that is also what `submission` says; a new job that its
    /// memo does not answer is also put on `stream` (its shard's) when one is given.
    async fn create_job(
        &self,
        spec: &JobSpec,
        shard: u32,
        tenant: &Tenant,
        idempotency_key: Option<Idempotency<'_>>,
        submission: Submission<'_>,
        stream: Option<&str>,
    ) -> Result<Created, StoreError> {
        let Submission { task, client: ClientSubmission { memo_ttl, submissions_per_sec: per_sec } } = submission;
        // Where the create script cannot count the submission (see `COUNT`), it is counted first.
        let count_here = per_sec.filter(|_| stream.is_some());
        if let (Some(max), None) = (per_sec, count_here) {
            if count_submission(&self.conn, tenant).await? > max {
                return Err(StoreError::RateLimited { tenant: tenant.to_string(), per_sec: max });
            }
        }
        let invocation = spec.invocation_cid().to_string();
        let memo = memo_ttl.filter(|_| spec.memoisable()).map(|ttl| memo::memo_of(tenant, &invocation, ttl));
        let id = match memo {
            Some(_) => memo::job_id_tagged(&keys::memo_tag(tenant, &invocation)),
            None => ulid::Ulid::new().to_string(),
        };
        let memo = memo.as_ref();
        let new = NewJob { spec, shard, tenant, invocation: &invocation, task, memo, stream, per_sec: count_here };
        // Where the create script can claim the key itself (see `CLAIM`), it does; else the key
        // is claimed first.
        let claim_here = idempotency_key.filter(|_| stream.is_some());
        let id = match idempotency_key {
            Some(key) if claim_here.is_none() => match self.claim(key, &id, &invocation).await? {
                None => id,
                Some(Claimed::Stored(job)) => return Ok(Created::Existing(*job)),
                Some(Claimed::Unstored(claimed)) => claimed,
            },
            _ => id,
        };
        match self.store_new(&new, &id, claim_here).await? {
            Stored::Created(created) => Ok(*created),
            Stored::OverQuota => {
                Err(StoreError::RateLimited { tenant: tenant.to_string(), per_sec: per_sec.unwrap_or(0) })
            }
            Stored::ClaimedBefore(before) => {
                let key = claim_here.expect("only a claim made in the script can be lost there");
                match self.claimed(key, &before, &invocation).await? {
                    Claimed::Stored(job) => Ok(Created::Existing(*job)),
                    // Counted already, with the claim's loss.
                    Claimed::Unstored(claimed) => {
                        match self.store_new(&NewJob { per_sec: None, ..new }, &claimed, None).await? {
                            Stored::Created(created) => Ok(*created),
                            Stored::ClaimedBefore(_) | Stored::OverQuota => {
                                unreachable!("neither a claim nor a count is made without a key")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Claims idempotency key `key` for job `id` of `invocation`: `None` if this call claimed it,
    /// else what the key names.
    async fn claim(&self, key: Idempotency<'_>, id: &str, invocation: &str) -> Result<Option<Claimed>, StoreError> {
        let before = claim_key(&mut self.conn.clone(), &keys::idempotency(key), &claim_of(id, invocation)).await?;
        match before {
            None => Ok(None),
            Some(before) => self.claimed(key, &before, invocation).await.map(Some),
        }
    }

    /// What idempotency key `key`, found claimed as `before` ([`claim_of`]), names; an error if
    /// it was claimed for another invocation than `invocation`.
    async fn claimed(&self, key: Idempotency<'_>, before: &str, invocation: &str) -> Result<Claimed, StoreError> {
        let (existing_id, existing_invocation) = before.split_once(' ').ok_or_else(|| StoreError::Corrupt {
            key: keys::idempotency(key),
            reason: "idempotency record without invocation".into(),
        })?;
        if existing_invocation != invocation {
            return Err(StoreError::IdempotencyConflict {
                key: key.as_str().to_string(),
                job: existing_id.to_string(),
            });
        }
        // If the first request died between claiming the key and storing its job, this one
        // stores it under the claimed id: the create script creates at most once.
        Ok(match self.get(existing_id).await? {
            Some(job) => Claimed::Stored(Box::new(job)),
            None => Claimed::Unstored(existing_id.to_string()),
        })
    }

    /// Runs the create script for `new` as job `id`, claiming idempotency key `claim` in the
    /// same step if given.
    async fn store_new(
        &self,
        new: &NewJob<'_>,
        id: &str,
        claim: Option<Idempotency<'_>>,
    ) -> Result<Stored, StoreError> {
        let NewJob { spec, shard, tenant, invocation, task, memo, stream, per_sec } = *new;
        // `CLAIM` reads the key after the stream's: without the stream it would be taken for it.
        debug_assert!(claim.is_none() || stream.is_some(), "a claim in the script needs the stream");
        debug_assert!(per_sec.is_none() || stream.is_some(), "a count in the script needs one node");
        let mut conn = self.conn.clone();
        let created_at = now_ms();
        let keys = JobKeys::of(id);
        let spec_json = serde_json::to_string(spec).expect("a JobSpec always serialises");
        let mut script = job_script(&SCRIPTS.create, &keys);
        if let Some(stream) = stream {
            script.key(stream);
        }
        if let Some(key) = claim {
            script.key(keys::idempotency(key));
        }
        if per_sec.is_some() {
            script.key(keys::submissions(tenant, created_at / 1000));
        }
        let (stored, fields, executions): (i32, HashFields, HashFields) = script
            .arg(&spec_json)
            .arg(invocation)
            .arg(created_at)
            .arg(shard)
            .arg(id)
            .arg(spec.retry.max_attempts)
            .arg(spec.retry.total_timeout_ms)
            .arg(spec.retry.backoff_ms)
            .arg(tenant.as_str())
            .arg(if spec.notify.is_some() { "1" } else { "0" })
            .arg(task.map(|task| format!("{}/{}", task.job, task.key)).unwrap_or_default())
            .arg(if spec.verification == VerificationPolicy::None { "settle" } else { "verdict" })
            .arg(memo.map(|(key, _)| key.as_str()).unwrap_or_default())
            .arg(memo.map(|&(_, ttl_ms)| ttl_ms).unwrap_or_default())
            .arg(claim.map(|_| claim_of(id, invocation)).unwrap_or_default())
            .arg(keys::IDEMPOTENCY_SECS)
            .arg(per_sec.map(|max| max.to_string()).unwrap_or_default())
            .arg(keys::SUBMISSIONS_KEPT_SECS)
            .invoke_async(&mut conn)
            .await?;
        if stored == 4 {
            return Ok(Stored::OverQuota);
        }
        if stored == 3 {
            let before = fields.into_iter().find(|(field, _)| field == "claim").map(|(_, claim)| claim);
            return before.map(Stored::ClaimedBefore).ok_or_else(|| StoreError::Corrupt {
                key: keys.job.clone(),
                reason: "the create script refused a claim without answering it".into(),
            });
        }
        if fields.is_empty() {
            return Err(StoreError::JobNotFound(id.to_string()));
        }
        let job = decode_job(id, &keys.job, fields, executions)?;
        // Two requests with one key can both reach the script; only the one that stored the
        // job reports it as new (and so queues it, unless it was answered from its memo).
        Ok(Stored::Created(Box::new(if stored == 0 { Created::Existing(job) } else { Created::New(job) })))
    }

    /// The job `id` with its executions, or `None`.
    pub async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let keys = JobKeys::of(id);
        let mut conn = self.conn.clone();
        let (fields, execs): (HashFields, HashFields) =
            redis::pipe().hgetall(&keys.job).hgetall(&keys.executions).query_async(&mut conn).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        decode_job(id, &keys.job, fields, execs).map(Some)
    }

    /// Ids of `tenant`'s jobs (every tenant's with `None`) in `state`, newest first, at most
    /// `limit`, starting after the cursor `before` (a creation time in ms and an id) for
    /// pagination. Returns the page and the next cursor.
    pub async fn list(
        &self,
        tenant: Option<&Tenant>,
        state: JobState,
        limit: usize,
        before: Option<Listed>,
    ) -> Result<(Vec<Listed>, Option<Listed>), StoreError> {
        let mut batch = Batch::new();
        for tag in keys::all_job_tags() {
            // Each tag's index is read separately: on a cluster they live in different slots.
            let index = match tenant {
                Some(tenant) => keys::tenant_state_index(&tag, state, tenant),
                None => keys::state_index(&tag, state),
            };
            let newest = match &before {
                None => "+inf".to_string(),
                // Strictly older than the cursor's millisecond; jobs of that very millisecond
                // are read whole below, since the limit would cut them before the id filter.
                Some((ms, _)) => format!("({ms}"),
            };
            let mut page = redis::cmd("ZRANGE");
            page.arg(&index).arg(newest).arg("-inf").arg("BYSCORE").arg("REV");
            page.arg("LIMIT").arg(0).arg(limit + 1).arg("WITHSCORES");
            batch.add(&index, page);
            if let Some((ms, _)) = &before {
                let mut same_ms = redis::cmd("ZRANGE");
                same_ms.arg(&index).arg(ms).arg(ms).arg("BYSCORE").arg("WITHSCORES");
                batch.add(&index, same_ms);
            }
        }
        let pages: Vec<Vec<(String, f64)>> = self.conn.query_batch(&batch).await?;
        let mut all: Vec<Listed> = pages.into_iter().flatten().map(|(id, score)| (score as u64, id)).collect();
        all.sort_by(|a, b| b.cmp(a));
        if let Some(cursor) = &before {
            all.retain(|entry| entry < cursor);
        }
        let next = (all.len() > limit).then(|| all[limit - 1].clone());
        all.truncate(limit);
        Ok((all, next))
    }

    /// How many of `tenant`'s jobs are queued or running.
    pub async fn outstanding(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        let mut batch = Batch::new();
        for tag in keys::all_job_tags() {
            for state in [JobState::Queued, JobState::Running] {
                let index = keys::tenant_state_index(&tag, state, tenant);
                batch.add(&index, redis::cmd("ZCARD").arg(&index).clone());
            }
        }
        let counts: Vec<u64> = self.conn.query_batch(&batch).await?;
        Ok(counts.into_iter().sum())
    }

    /// Cancels job `id` unless it finished, saying `why`: returns the state it was in, `None`
    /// for a job that had finished already (or does not exist). Its stream entry, when
    /// delivered, finds it finished; a worker running it stops at its next look at its jobs.
    pub async fn cancel(&self, id: &str, why: &str) -> Result<Option<JobState>, StoreError> {
        let failure =
            Failure { reason: FailureReason::Cancelled, message: why.to_string(), stderr: None, fuel_consumed: None };
        let failure = serde_json::to_string(&failure).expect("a Failure always serialises");
        let mut conn = self.conn.clone();
        let answer: Vec<String> = job_script(&SCRIPTS.cancel, &JobKeys::of(id))
            .arg(id)
            .arg(now_ms())
            .arg(failure)
            .invoke_async(&mut conn)
            .await?;
        match answer.as_slice() {
            [outcome, from] if outcome == "cancelled" => parse_state(&JobKeys::of(id).job, Some(from)).map(Some),
            _ => Ok(None),
        }
    }

    /// The states of jobs `ids`, in order (`None` for a job that does not exist).
    pub async fn states(&self, ids: &[String]) -> Result<Vec<Option<JobState>>, StoreError> {
        let mut batch = Batch::new();
        for id in ids {
            let key = JobKeys::of(id).job;
            batch.add(&key, redis::cmd("HGET").arg(&key).arg("state").clone());
        }
        let states: Vec<Option<String>> = self.conn.query_batch(&batch).await?;
        ids.iter()
            .zip(states)
            .map(|(id, state)| state.map(|s| parse_state(&JobKeys::of(id).job, Some(&s))).transpose())
            .collect()
    }

    /// Records a verifier's verdict on job `id` (replacing an earlier one), and the result it
    /// corrected the job to (a failed job so corrected succeeds), or the failure it moved the
    /// job to, if any.
    pub async fn record_verification(&self, id: &str, verification: &Verification) -> Result<(), StoreError> {
        let keys = JobKeys::of(id);
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(verification).expect("a Verification always serialises");
        let corrected = verification
            .corrected
            .as_ref()
            .map(|result| serde_json::to_string(result).expect("an ExecutionResult always serialises"))
            .unwrap_or_default();
        let failed = verification
            .failed
            .as_ref()
            .map(|failure| serde_json::to_string(failure).expect("a Failure always serialises"))
            .unwrap_or_default();
        let stored: i32 = job_script(&SCRIPTS.verify, &keys)
            .arg(id)
            .arg(json)
            .arg(corrected)
            .arg(failed)
            .arg(if memo::accepts(verification) { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        if stored == 0 {
            return Err(StoreError::JobNotFound(id.to_string()));
        }
        Ok(())
    }

    /// Takes finished job `id` back to `queued`, its result, failure and verdict dropped (its
    /// executions kept), with a deadline of its total timeout from now: the verifier found how
    /// it finished made up. Whether it had finished (and was not cancelled). The caller puts it
    /// on its stream again.
    pub async fn reopen(&self, id: &str) -> Result<bool, StoreError> {
        let Some(job) = self.get(id).await? else { return Ok(false) };
        let keys = JobKeys::of(id);
        let now = now_ms();
        let mut conn = self.conn.clone();
        let reopened: i32 = job_script(&SCRIPTS.reopen, &keys)
            .arg(id)
            .arg(now)
            .arg(now + job.spec.retry.total_timeout_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(reopened == 1)
    }

    /// Stores a job for `spec` on shard `shard` (once per `idempotency_key`, as
    /// [`JobStore::create`]) and makes sure it is on its stream: a new job is queued, and so is
    /// an existing one still `queued` whose first submission stored it but died before queueing.
    pub async fn submit(
        &self,
        queue: &ShardQueue,
        spec: &JobSpec,
        shard: u32,
        tenant: &Tenant,
        idempotency_key: Option<Idempotency<'_>>,
    ) -> Result<Created, StoreError> {
        self.submit_job(queue, spec, shard, tenant, idempotency_key, Submission::default()).await
    }

    /// [`JobStore::submit`], answered from the accepted result of the tenant's identical
    /// invocation when there is one and the spec is [`JobSpec::memoisable`]: the new job is
    /// then created `succeeded` with that result and verification, naming that job in
    /// `memoised_from`, and is not queued. Otherwise the job is queued, and once the verifier
    /// accepts its result, that result answers the tenant's identical submissions for `ttl`.
    pub async fn submit_memoised(
        &self,
        queue: &ShardQueue,
        spec: &JobSpec,
        shard: u32,
        tenant: &Tenant,
        idempotency_key: Option<Idempotency<'_>>,
        ttl: Duration,
    ) -> Result<Created, StoreError> {
        let how = ClientSubmission { memo_ttl: Some(ttl), submissions_per_sec: None };
        self.submit_client(queue, spec, shard, tenant, idempotency_key, how).await
    }

    /// [`JobStore::submit`], or [`JobStore::submit_memoised`] when `how` has a memo expiry, of a
    /// client's submission that counts against its tenant's submissions a second when `how` has
    /// them (over every gateway, [`keys::submissions`]). On one Redis node the count is made in
    /// the step that stores the job, else by a round trip first; either way before anything
    /// else, so a repeat of an idempotency key counts too. Past the quota nothing is stored:
    /// [`StoreError::RateLimited`].
    pub async fn submit_client(
        &self,
        queue: &ShardQueue,
        spec: &JobSpec,
        shard: u32,
        tenant: &Tenant,
        idempotency_key: Option<Idempotency<'_>>,
        how: ClientSubmission,
    ) -> Result<Created, StoreError> {
        self.submit_job(queue, spec, shard, tenant, idempotency_key, Submission { task: None, client: how }).await
    }

    /// [`JobStore::submit`] for task `task` of a fan-out: its record names its job and key, so
    /// the script that ends it (or records its verdict) puts it up for gathering.
    pub async fn submit_task(
        &self,
        queue: &ShardQueue,
        spec: &JobSpec,
        shard: u32,
        tenant: &Tenant,
        idempotency_key: Option<Idempotency<'_>>,
        task: TaskOf<'_>,
    ) -> Result<Created, StoreError> {
        self.submit_job(
            queue,
            spec,
            shard,
            tenant,
            idempotency_key,
            Submission { task: Some(task), ..Default::default() },
        )
        .await
    }

    async fn submit_job(
        &self,
        queue: &ShardQueue,
        spec: &JobSpec,
        shard: u32,
        tenant: &Tenant,
        idempotency_key: Option<Idempotency<'_>>,
        submission: Submission<'_>,
    ) -> Result<Created, StoreError> {
        let stream = self.single_node().then(|| keys::shard_stream(shard));
        let created = self.create_job(spec, shard, tenant, idempotency_key, submission, stream.as_deref()).await?;
        match &created {
            Created::New(job) if job.memoised_from.is_some() || stream.is_some() => {}
            Created::New(job) => {
                self.enqueue(queue, &job.id, job.shard).await?;
            }
            Created::Existing(job) => {
                if job.state == JobState::Queued && !self.is_enqueued(&job.id).await? {
                    self.enqueue(queue, &job.id, job.shard).await?;
                    tracing::info!(job = %job.id, shard = job.shard, "queued on an idempotent retry");
                }
            }
        }
        Ok(created)
    }

    /// Puts job `id` on shard `shard`'s stream and records the entry in the job, so that
    /// [`JobStore::unqueued`] can tell a job that never reached its stream.
    pub async fn enqueue(&self, queue: &ShardQueue, id: &str, shard: u32) -> Result<String, StoreError> {
        let entry = queue.enqueue(shard, id).await?;
        let mut conn = self.conn.clone();
        let _: i32 = SCRIPTS.enqueued.key(JobKeys::of(id).job).arg(&entry).invoke_async(&mut conn).await?;
        Ok(entry)
    }

    /// Fails (with [`FailureReason::DeadlineExceeded`]) up to `limit` unfinished jobs whose
    /// total timeout has passed; returns their ids. Their stream entries, when delivered, find
    /// them finished.
    pub async fn expire_overdue(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let mut batch = Batch::new();
        for tag in keys::all_job_tags() {
            let index = keys::deadline_index(&tag);
            let mut overdue = redis::cmd("ZRANGE");
            overdue.arg(&index).arg("-inf").arg(now).arg("BYSCORE").arg("LIMIT").arg(0).arg(limit);
            batch.add(&index, overdue);
        }
        let overdue: Vec<Vec<String>> = self.conn.query_batch(&batch).await?;
        let mut expired = Vec::new();
        for id in overdue.into_iter().flatten().take(limit) {
            let keys = JobKeys::of(&id);
            let failure = Failure {
                reason: FailureReason::DeadlineExceeded,
                message: "the job did not finish within its total timeout (retry.total_timeout_ms)".into(),
                stderr: None,
                fuel_consumed: None,
            };
            let done: i32 = job_script(&SCRIPTS.expire, &keys)
                .arg(&id)
                .arg(serde_json::to_string(&failure).expect("a Failure always serialises"))
                .arg(now)
                .invoke_async(&mut conn)
                .await?;
            if done == 1 {
                expired.push(id);
            }
        }
        Ok(expired)
    }

    /// Whether job `id` has a stream entry recorded (it was queued, or a worker started it).
    pub async fn is_enqueued(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hexists(JobKeys::of(id).job, "entry").await?)
    }

    /// Takes the right to re-queue lost jobs for `hold` as `holder`; false if another holds it.
    /// One requeuer at a time keeps two from queueing the same job twice.
    pub async fn take_requeue_lock(&self, holder: &str, hold: Duration) -> Result<bool, StoreError> {
        self.take_lock(Lock::Requeue, holder, hold).await
    }

    /// Takes `lock` for `holder` for `hold`, unless someone holds it.
    pub async fn take_lock(&self, lock: Lock, holder: &str, hold: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(lock.key())
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(hold.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        Ok(taken.is_some())
    }

    /// Keeps `lock` for `holder` another `hold` if `holder` still holds it; false if it does not
    /// (it expired, and perhaps another took it).
    pub async fn renew_lock(&self, lock: Lock, holder: &str, hold: Duration) -> Result<bool, StoreError> {
        static RENEW: LazyLock<Script> = LazyLock::new(|| {
            Script::new(
                "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
                 return redis.call('PEXPIRE', KEYS[1], ARGV[2])",
            )
        });
        let mut conn = self.conn.clone();
        let renewed: i64 =
            RENEW.key(lock.key()).arg(holder).arg(hold.as_millis() as u64).invoke_async(&mut conn).await?;
        Ok(renewed == 1)
    }

    /// Queued jobs created more than `grace` ago that have no stream entry recorded — their
    /// submission stored the job but failed (or Redis lost the write) before queueing it. At
    /// most `limit`, with their shards.
    pub async fn unqueued(&self, grace: Duration, limit: usize) -> Result<Vec<(String, u32)>, StoreError> {
        let before = now_ms().saturating_sub(grace.as_millis() as u64);
        let mut batch = Batch::new();
        for tag in keys::all_job_tags() {
            let index = keys::state_index(&tag, JobState::Queued);
            let mut queued = redis::cmd("ZRANGE");
            queued.arg(&index).arg("-inf").arg(before).arg("BYSCORE").arg("LIMIT").arg(0).arg(limit);
            batch.add(&index, queued);
        }
        let ids: Vec<Vec<String>> = self.conn.query_batch(&batch).await?;
        let ids: Vec<String> = ids.into_iter().flatten().take(limit).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::new();
        for id in &ids {
            let job = JobKeys::of(id).job;
            let mut fields = redis::cmd("HMGET");
            fields.arg(&job).arg("entry").arg("shard").arg("state");
            batch.add(&job, fields);
        }
        let fields: Vec<(Option<String>, Option<u32>, Option<String>)> = self.conn.query_batch(&batch).await?;
        Ok(ids
            .into_iter()
            .zip(fields)
            .filter_map(|(id, (entry, shard, state))| match (entry, shard, state.as_deref()) {
                (None, Some(shard), Some("queued")) => Some((id, shard)),
                _ => None,
            })
            .collect())
    }

    /// Records that `execution` started on job `id` and marks the job running — unless the
    /// job already finished.
    pub async fn start_execution(&self, id: &str, execution: &Execution) -> Result<Started, StoreError> {
        self.start_delivered(id, "", execution).await
    }

    /// Like [`JobStore::start_execution`], for a job delivered by stream entry `entry`: if the
    /// job is already running from another entry, nothing changes ([`Started::Duplicate`]); a
    /// retry too soon after the last start is refused ([`Started::BackingOff`]).
    pub async fn start_delivered(&self, id: &str, entry: &str, execution: &Execution) -> Result<Started, StoreError> {
        // Spreads retries of jobs that failed together, so they do not return together.
        let jitter = 0.5 + rand_unit(&execution.id);
        let keys = JobKeys::of(id);
        let mut conn = self.conn.clone();
        let reply: Vec<redis::Value> = job_script(&SCRIPTS.start, &keys)
            .arg(id)
            .arg(&execution.id)
            .arg(serde_json::to_string(execution).expect("an Execution always serialises"))
            .arg(now_ms())
            .arg(entry)
            .arg(jitter)
            .invoke_async(&mut conn)
            .await?;
        let said: Option<String> = reply_part(&reply, 0)?;
        match said.as_deref() {
            Some("duplicate") => Ok(Started::Duplicate),
            Some("later") => Ok(Started::BackingOff {
                wait: Duration::from_millis(
                    reply_part::<String>(&reply, 1)?.and_then(|ms| ms.parse().ok()).unwrap_or_default(),
                ),
            }),
            Some("running") => {
                let fields: HashFields = reply_part(&reply, 1)?.unwrap_or_default();
                let executions: HashFields = reply_part(&reply, 2)?.unwrap_or_default();
                if fields.is_empty() {
                    return Err(StoreError::JobNotFound(id.to_string()));
                }
                Ok(Started::Running(Box::new(decode_job(id, &keys.job, fields, executions)?)))
            }
            Some("terminal") => Ok(Started::AlreadyFinished(parse_state(&keys.job, reply_part(&reply, 1)?.as_ref())?)),
            Some("exhausted") => Ok(Started::AttemptsExhausted {
                attempts: reply_part::<String>(&reply, 1)?.and_then(|n| n.parse().ok()).unwrap_or_default(),
            }),
            _ => Err(StoreError::JobNotFound(id.to_string())),
        }
    }

    /// Records a finished execution and, unless the job is already final, settles the job with
    /// it in the same atomic step. Returns the job's state afterwards.
    pub async fn finish_execution(&self, id: &str, execution: &Execution) -> Result<JobState, StoreError> {
        self.finish(id, execution, None, None).await
    }

    /// [`JobStore::finish_execution`] for an outcome the worker that ran `execution` answers
    /// for (see [`crate::Membership::record_settled`]): if it settles the job, the job is also
    /// added to the jobs that worker settled — in the same script on a single node, right after
    /// it on a cluster: there whenever the job is then in the state the outcome settles it to,
    /// as a retried call finds it, so also for a late execution agreeing with the one that
    /// settled it (a record too many costs at most a needless re-verification).
    pub async fn finish_claimed(&self, id: &str, execution: &Execution) -> Result<JobState, StoreError> {
        self.finish_recording(id, execution, None).await
    }

    /// [`JobStore::finish_claimed`] when `claimed`, else [`JobStore::finish_execution`], of an
    /// execution run from `delivery` if given: on one Redis node the same script acknowledges and
    /// deletes the delivery's stream entry once the outcome is stored (or found stored before),
    /// so that takes no round trip of its own. Returns the job's state and whether the entry was
    /// acknowledged; if not (no delivery given, or on a cluster), acknowledging it is left to the
    /// caller.
    pub async fn finish_delivered(
        &self,
        id: &str,
        execution: &Execution,
        claimed: bool,
        delivery: Option<&Delivery>,
    ) -> Result<(JobState, bool), StoreError> {
        let ack = delivery.filter(|_| self.single_node());
        let state = match claimed {
            true => self.finish_recording(id, execution, ack).await?,
            false => self.finish(id, execution, None, ack).await?,
        };
        Ok((state, ack.is_some()))
    }

    /// Checks, changing nothing, that this connection's Redis user may run the finish script
    /// the way worker `worker` settles a job delivered from `shard` on one Redis node: naming
    /// its settled list and the shard's job stream. A Redis still running with an older
    /// version's ACL refuses it ([`StoreError::NotPermitted`]), which a worker had better hear
    /// when it starts than have every settle refused later, its jobs left running. The job the
    /// script is run for does not exist, so it stops before touching anything. On a cluster the
    /// script names neither list nor stream, and this checks nothing.
    pub async fn check_settle_permitted(&self, worker: &str, shard: u32) -> Result<(), StoreError> {
        if !self.single_node() {
            return Ok(());
        }
        // Not a job id: those are ULIDs.
        let probe = "settle-permission-probe";
        let stream = Lane::Jobs.stream(shard);
        let mut script = finish_script(&JobKeys::of(probe), Some(&keys::settled_by(worker)), Some(&stream));
        match script.arg(probe).invoke_async::<Vec<String>>(&mut self.conn.clone()).await {
            Ok(_) => Ok(()),
            Err(source) if source.code() == Some("NOPERM") => Err(StoreError::NotPermitted {
                what: format!("worker {worker} the finish script over its settled list and shard {shard}'s job stream"),
                source,
            }),
            Err(source) => Err(source.into()),
        }
    }

    /// [`JobStore::finish_claimed`], acknowledging `ack` in the same script if given.
    async fn finish_recording(
        &self,
        id: &str,
        execution: &Execution,
        ack: Option<&Delivery>,
    ) -> Result<JobState, StoreError> {
        if self.single_node() {
            return self.finish(id, execution, Some(&keys::settled_by(&execution.worker)), ack).await;
        }
        let state = self.finish(id, execution, None, ack).await?;
        if Some(state) == execution.outcome.as_ref().map(ExecutionOutcome::settles_as) {
            Membership::new(self.conn.clone()).record_settled(&execution.worker, id).await?;
        }
        Ok(state)
    }

    /// [`JobStore::finish_execution`], adding the job to list `settled` (its worker's settled
    /// jobs) if it settles the job and acknowledging `ack` (on a single node only) in the same
    /// script.
    async fn finish(
        &self,
        id: &str,
        execution: &Execution,
        settled: Option<&str>,
        ack: Option<&Delivery>,
    ) -> Result<JobState, StoreError> {
        let keys = JobKeys::of(id);
        let Some(outcome) = &execution.outcome else {
            return Err(StoreError::Corrupt {
                key: keys.executions,
                reason: format!("execution {} finished without an outcome", execution.id),
            });
        };
        let state = outcome.settles_as();
        let (result, failure) = match outcome {
            ExecutionOutcome::Completed(result) => {
                let failure = match state {
                    JobState::Failed => serde_json::to_string(&Failure::non_zero_exit(result)).expect("serialises"),
                    _ => String::new(),
                };
                (serde_json::to_string(result).expect("serialises"), failure)
            }
            ExecutionOutcome::Failed(failure) => (String::new(), serde_json::to_string(failure).expect("serialises")),
        };
        let mut conn = self.conn.clone();
        let acked = ack.map(|delivery| delivery.lane.stream(delivery.shard));
        let reply: Vec<String> = finish_script(&keys, settled, acked.as_deref())
            .arg(id)
            .arg(&execution.id)
            .arg(serde_json::to_string(execution).expect("an Execution always serialises"))
            .arg(state.as_str())
            .arg(result)
            .arg(failure)
            .arg(now_ms())
            .arg(settled.map(|_| Membership::SETTLED_KEPT.to_string()).unwrap_or_default())
            .arg(ack.map(|delivery| delivery.entry.as_str()).unwrap_or_default())
            .arg(ack.map(|delivery| delivery.lane.group()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await?;
        match reply.first().map(String::as_str) {
            Some("missing") | None => Err(StoreError::JobNotFound(id.to_string())),
            Some("terminal") => parse_state(&keys.job, reply.get(1)),
            Some(other) => parse_state(&keys.job, Some(&other.to_string())),
        }
    }

    /// Records `execution` of job `id`, ended by a failure of its host rather than of the
    /// program (out of file descriptors or disk space), without settling the job: the job stays
    /// running, its stream entry pending for another attempt after the visibility timeout, and
    /// the execution counts towards its `max_attempts`. Returns whether it was recorded (not
    /// for a job already final).
    pub async fn abandon_execution(&self, id: &str, execution: &Execution) -> Result<bool, StoreError> {
        let keys = JobKeys::of(id);
        let mut conn = self.conn.clone();
        let recorded: i64 = job_script(&SCRIPTS.abandon, &keys)
            .arg(&execution.id)
            .arg(serde_json::to_string(execution).expect("an Execution always serialises"))
            .invoke_async(&mut conn)
            .await?;
        Ok(recorded == 1)
    }
}

fn parse_state(key: &str, value: Option<&String>) -> Result<JobState, StoreError> {
    value
        .ok_or_else(|| StoreError::Corrupt { key: key.to_string(), reason: "no state".into() })?
        .parse()
        .map_err(|reason| StoreError::Corrupt { key: key.to_string(), reason })
}

/// Part `n` of a script's array reply, if it has one.
fn reply_part<T: redis::FromRedisValue>(reply: &[redis::Value], n: usize) -> Result<Option<T>, StoreError> {
    Ok(reply.get(n).map(redis::from_redis_value_ref).transpose().map_err(redis::RedisError::from)?)
}

fn decode_job(
    id: &str,
    key: &str,
    fields: Vec<(String, String)>,
    execs: Vec<(String, String)>,
) -> Result<Job, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: key.to_string(), reason };
    let mut get = std::collections::HashMap::<String, String>::from_iter(fields);
    let mut take = |name: &str| get.remove(name).ok_or_else(|| corrupt(format!("missing field {name}")));
    let number = |value: String, name: &str| {
        value.parse::<u64>().map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: format!("{name}: {e}") })
    };
    let spec: JobSpec = serde_json::from_str(&take("spec")?).map_err(|e| corrupt(format!("spec: {e}")))?;
    let tenant = take("tenant")?.parse().map_err(|e| corrupt(format!("tenant: {e}")))?;
    let invocation = take("invocation")?.parse().map_err(corrupt)?;
    let state = parse_state(key, Some(&take("state")?))?;
    let created_at_ms = number(take("created_at_ms")?, "created_at_ms")?;
    let updated_at_ms = number(take("updated_at_ms")?, "updated_at_ms")?;
    let shard = number(take("shard")?, "shard")? as u32;
    let result = take("result")
        .ok()
        .map(|r| serde_json::from_str(&r))
        .transpose()
        .map_err(|e| corrupt(format!("result: {e}")))?;
    let failure = take("failure")
        .ok()
        .map(|f| serde_json::from_str(&f))
        .transpose()
        .map_err(|e| corrupt(format!("failure: {e}")))?;
    let verification = take("verification")
        .ok()
        .map(|v| serde_json::from_str(&v))
        .transpose()
        .map_err(|e| corrupt(format!("verification: {e}")))?;
    let mut executions = execs
        .into_iter()
        .map(|(exec_id, json)| {
            serde_json::from_str::<Execution>(&json).map_err(|e| corrupt(format!("execution {exec_id}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    executions.sort_by(|a, b| (a.started_at_ms, &a.id).cmp(&(b.started_at_ms, &b.id)));
    Ok(Job {
        id: id.to_string(),
        invocation,
        spec,
        tenant,
        state,
        created_at_ms,
        updated_at_ms,
        shard,
        failure,
        result,
        executions,
        verification,
        memoised_from: take("memoised_from").ok(),
    })
}

/// A number in [0, 1) drawn from `seed` (an execution id, itself random): jitter without a
/// random-number crate.
fn rand_unit(seed: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(seed.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) as f64 / (u64::MAX as f64 + 1.0)
}
