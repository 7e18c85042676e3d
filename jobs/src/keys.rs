//! The Redis key layout — every key Shoal uses is named here and nowhere else.
//!
//! The layout is Redis-Cluster-compatible: keys that one script or transaction touches together
//! share a `{hash tag}`, so they live in one slot. The one exception is for a single node, which
//! has no slots: there the create script also puts a new job on its shard's stream, and the
//! finish script adds a job its worker answers for to that worker's settled list, each a round
//! trip fewer per job; on a cluster each is a command of its own after the script
//! ([`crate::JobStore::finish_claimed`]).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `shoal:{jNN}:job:<id>` | hash | one job: `spec`, `state`, `invocation`, times, `shard`, `max_attempts`, `entry` (its stream entry), `result`, `failure`, `verification` |
//! | `shoal:{jNN}:execs:<id>` | hash | the job's executions, execution id → JSON |
//! | `shoal:{jNN}:changes:<id>` | list | the job's last [`CHANGES_KEPT`] changes, `<seq> <state>[ <verdict>]` each, oldest first, appended (and published on [`CHANGES_CHANNEL`]) by the script that made the change; `seq` counts them in the job's `seq` field |
//! | `shoal:{jNN}:deadlines` | sorted set | this tag's unfinished jobs, scored by their deadline (creation + `retry.total_timeout_ms`) |
//! | `shoal:{jNN}:state:<state>` | sorted set | ids of this tag's jobs in that state, scored by creation time |
//! | `shoal:{sNN}:jobs` | stream | shard NN's queue; consumer group [`WORKER_GROUP`] |
//! | `shoal:{sNN}:verify` | stream | shard NN's succeeded jobs awaiting the verifier; consumer group [`VERIFIER_GROUP`] |
//! | `shoal:{sNN}:dead` | stream | shard NN's dead letters: entries whose job could not be run, with the reason |
//! | `shoal:{w}:members` | hash | registered workers, id → what they offer (JSON) |
//! | `shoal:{w}:heartbeats` | sorted set | registered workers scored by their last heartbeat (ms) |
//! | `shoal:{w}:holders:<shard>` | set | workers that advertise holding inputs routed to that shard |
//! | `shoal:{w}:hot` | string | hot shards and the extra workers reading them (JSON, expires) |
//! | `shoal:{w}:lock:hot` | string | which worker looks for hot shards now (expires) |
//! | `shoal:{jNN}:tasks:<id>` | hash | a fanned-out job's tasks: task key (the name of its first file) → task job id |
//! | `shoal:{jNN}:task-files:<id>` | hash | task key → the names of its files, `/`-separated, for tasks of more than their key's file |
//! | `shoal:{jNN}:tasks-done:<id>` | set | keys of its tasks that have finished (been counted) |
//! | `shoal:{jNN}:gatherable` | set | notices `<fanned-out job>/<task key>` of this tag's tasks that may be counted (ended, and decided on by the verifier unless their job asks for no verification), added by the script that made them so, removed by the gatherer once counted |
//! | `shoal:{jNN}:gatherable:pipelines` | set | notices `<pipeline>/<job>/<state>` of this tag's jobs that pipelines wait for (each pipeline a job's `pipelines` field names), added when the job may be used (as for a task above), removed by the pipelines' driver once it recorded what they caused |
//! | `shoal:{jNN}:task-outputs:<id>` | hash | file name → output CID of each succeeded file |
//! | `shoal:{jNN}:task-failures:<id>` | list | the first failed files (JSON) |
//! | `shoal:{jNN}:fanout:<id>` | hash | its file counts (`total`, `succeeded`, `failed`), `tasks`, `batch`, gathered `output`, and the `execution` that fanned it out |
//! | `shoal:fanout:waiting` | sorted set | fanned-out jobs whose tasks are not all finished, scored by when they fanned out or last had a task counted (0: due for a full read at once) |
//! | `shoal:lock:fanout` | string | which worker gathers finished tasks now (expires) |
//! | `shoal:lock:requeue` | string | which worker may re-queue lost submissions now (expires) |
//! | `shoal:{w}:worker-keys` | hash | worker id → the public key it is bound to (`ed25519:<hex>`) |
//! | `shoal:{w}:refusals` | hash | worker id → how many of its receipts the verifier refused |
//! | `shoal:{w}:agreed` | hash | worker id → how many of its results re-execution agreed with |
//! | `shoal:{w}:quarantined` | hash | quarantined worker id → why, where and when (JSON) |
//! | `shoal:{w}:settled:<worker>` | list | the jobs that worker settled (a success, or a failure the verifier checks) |
//! | `shoal:{w}:tainted` | set | jobs settled by a worker caught since, awaiting re-verification |
//! | `shoal:{jNN}:replicas:<id>` | list | the replica jobs asked for a `replicated` job, in order |
//! | `shoal:replication:waiting` | sorted set | `replicated` jobs whose replicas are running, scored by when asked |
//! | `shoal:lock:replication` | string | which verifier looks at finished replicas now (expires) |
//! | `shoal:{jNN}:state:<state>:tenant:<tenant>` | sorted set | the same, for one tenant's jobs |
//! | `shoal:{jNN}:memo:<tenant>:<invocation>` | string | the job whose accepted result answers that tenant's submissions of that invocation CID (expires); `NN` from the tenant and the invocation ([`memo_tag`]), and the jobs it may name carry the same tag |
//! | `shoal:changes` | pub/sub channel | every job change, `<id> <tenant> <seq> <state>[ <verdict>]`, published by the script that made it; gateways subscribe to wake their waiters (a channel, not a key: classic PUBLISH reaches every node of a cluster) |
//! | `shoal:idem:<sha256>` | string | the job id an idempotency key created, with the spec's invocation CID; a client's key is hashed with its tenant, an internal one (fan-out tasks, replicas) in a namespace of its own |
//! | `shoal:{a}:api-keys` | hash | SHA-256 of an API key → its tenant, role and creation time (JSON) |
//! | `shoal:{a}:quotas` | hash | tenant → its quotas (JSON); tenants without use the defaults |
//! | `shoal:{a}:webhook-secrets` | hash | tenant → its webhook signing secret |
//! | `shoal:{jNN}:events` | stream | webhook events of this tag's jobs that asked for them; consumer group [`WEBHOOK_GROUP`] |
//! | `shoal:{jNN}:webhook-attempts:<id>` | list | a job's webhook delivery attempts (JSON) |
//! | `shoal:rate:<tenant>:<second>` | string | a tenant's submissions in that second (expires) |
//! | `shoal:{pay:<wallet>}:limit` | string | the wallet's spending limit, attoFIL (decimal); set by the admin only |
//! | `shoal:{pay:<wallet>}:ledger` | hash | `spent` and `reserved`, attoFIL (decimal); `refused`, what reservations refused for want of budget asked for (attoFIL, decimal), and `refusals`, how many |
//! | `shoal:{pay:<wallet>}:expiries` | sorted set | the wallet's open reservations, scored by when they expire (ms) |
//! | `shoal:{pay:<wallet>}:res:<id>` | hash | one reservation: `state`, `amount`, `holder`, `expires`, `voucher`, `voucher_amount`, `actual` (kept a while once closed, so a repeated settle is a no-op) |
//! | `shoal:{pl:<id>}:pipeline` | hash | one pipeline: `spec`, `tenant`, `state`, `created`, `finished`, `message` |
//! | `shoal:{pl:<id>}:units` | hash | what its driver decided for each unit of work — `<stage>`, or `<stage>/<file>` for a stage run per file — a job (JSON `{"job": …}`) or a skip with its reason |
//! | `shoal:{pl:<id>}:files` | hash | pipeline input name → the files of that directory a stage runs per file over (JSON `[[name, cid], …]`), listed once |
//! | `shoal:pipelines:running` | set | pipelines whose driver has work left |
//! | `shoal:lock:pipelines` | string | which worker drives pipelines now (expires) |
//! | `shoal:spending:wallets` | set | the wallets with a limit, for the expiry sweep, `shoal filecoin spent` and the gateway's `/metrics` |
//!
//! `NN` in `{jNN}` is derived from the job id ([`job_tag`]), so any gateway finds a job's keys
//! from its id alone; listing by state visits the [`JOB_TAGS`] index sets.
//!
//! A job's tenant state indexes are not passed to the scripts as keys: the scripts name them
//! from the state index they were given and the job's `tenant` field. They share the job's
//! `{jNN}` tag, so they are in the same slot, which is all Redis Cluster needs. So are a memo
//! and the jobs it may name (see [`memo_tag`]): the create script is given the memo by name,
//! the scripts recording a verdict or reopening a job read it from the job's `memo` field. Every
//! role that touches job keys (`~shoal:{j*}:*`) may touch memos.
//!
//! The ledger scripts of a wallet likewise name its limit (which a worker may only read, and
//! Redis checks a script's declared keys as written) and, in the expiry sweep, its reservation
//! records from their arguments: all share the wallet's `{pay:<wallet>}` tag.
//!
//! Keys without a tag (`shoal:lock:requeue`, `shoal:idem:<sha256>`, `shoal:rate:…`) are only
//! ever used by single-key commands on a cluster, so their slot does not matter there: an
//! idempotency key is claimed with `SET NX` on its own, and the job it names is created afterwards
//! by a script over the job's keys alone, which creates it at most once. On a single node the
//! create script claims it itself (where the shard's stream is written too).

use sha2::{Digest, Sha256};

use crate::model::JobState;
use crate::store::Idempotency;
use crate::tenants::Tenant;

/// How many tags jobs are spread over. Far more than a cluster has nodes, so slots balance.
pub const JOB_TAGS: u32 = 64;

/// The consumer group every worker reads shard streams through.
pub const WORKER_GROUP: &str = "workers";

/// The consumer group verifiers read the verification streams through.
pub const VERIFIER_GROUP: &str = "verifiers";

/// The consumer group gateways deliver webhooks through.
pub const WEBHOOK_GROUP: &str = "webhooks";

/// The pub/sub channel every job change is published on (see [`JobKeys::changes`]). The job
/// scripts spell it too, in the store's `STATES` prelude.
pub const CHANGES_CHANNEL: &str = "shoal:changes";

/// How many of its latest changes a job keeps for clients that resume following it.
pub const CHANGES_KEPT: u64 = 64;

/// The tag of a job's keys: `jNN`, from a stable hash of its id.
pub fn job_tag(job_id: &str) -> String {
    let digest = Sha256::digest(job_id.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % JOB_TAGS;
    format!("j{n:02}")
}

/// The tag of tenant `tenant`'s memo of invocation `invocation` ([`memo`]): `jNN`, from a
/// stable hash of both. A job submitted for memoisation is given an id of this tag, so the
/// memo, the job it names and the job it answers are in one slot, and one script checks the
/// one and creates the other.
pub fn memo_tag(tenant: &Tenant, invocation: &str) -> String {
    let digest = Sha256::digest(format!("{tenant}\0{invocation}").as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % JOB_TAGS;
    format!("j{n:02}")
}

/// Tenant `tenant`'s memo of invocation CID `invocation`: the id of the job whose accepted
/// result answers its identical submissions (see [`crate::JobStore::submit_memoised`]). Per
/// tenant, so a submission never learns of another tenant's jobs.
pub fn memo(tenant: &Tenant, invocation: &str) -> String {
    format!("shoal:{{{}}}:memo:{tenant}:{invocation}", memo_tag(tenant, invocation))
}

/// The keys of one job, all in one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKeys {
    /// The job's hash.
    pub job: String,
    /// The job's executions.
    pub executions: String,
    /// The state index sets of the job's tag, in [`JobState::ALL`] order.
    pub state_index: [String; 5],
    /// The deadline index of the job's tag.
    pub deadlines: String,
    /// The webhook events of the job's tag.
    pub events: String,
    /// The gatherable tasks of the job's tag (see [`gatherable`]).
    pub gatherable: String,
    /// The job's latest changes, for clients resuming after a given one (a list, oldest first).
    pub changes: String,
}

impl JobKeys {
    /// The keys of job `id`.
    pub fn of(id: &str) -> JobKeys {
        let tag = job_tag(id);
        JobKeys {
            job: format!("shoal:{{{tag}}}:job:{id}"),
            executions: format!("shoal:{{{tag}}}:execs:{id}"),
            state_index: JobState::ALL.map(|state| state_index(&tag, state)),
            deadlines: deadline_index(&tag),
            events: events_stream(&tag),
            gatherable: gatherable(&tag),
            changes: format!("shoal:{{{tag}}}:changes:{id}"),
        }
    }
}

/// The notices of tasks with tag `tag` that their fanned-out jobs may count now,
/// `<fanned-out job>/<task key>` each: added by the script that ends a task (or records its
/// verdict), in the task's own slot, and removed by the gatherer once it has counted the task.
pub fn gatherable(tag: &str) -> String {
    format!("shoal:{{{tag}}}:gatherable")
}

/// The notices of jobs with tag `tag` that pipelines wait for, `<pipeline>/<job>/<state>` each:
/// added by the script that ends a job (or records its verdict) for every pipeline its record's
/// `pipelines` field names, removed by the pipelines' driver once it has recorded what they
/// caused. The scripts name it from the gatherable set they are given ([`gatherable`] and
/// `:pipelines`), as they name tenant indexes: it shares the job's slot.
pub fn pipeline_notices(tag: &str) -> String {
    format!("{}:pipelines", gatherable(tag))
}

/// The stream of webhook events of jobs with tag `tag` (a job asking for a webhook gets an
/// entry when it ends or is verified, written by the script that changed it); consumer group
/// [`WEBHOOK_GROUP`].
pub fn events_stream(tag: &str) -> String {
    format!("shoal:{{{tag}}}:events")
}

/// The delivery attempts of job `id`'s webhooks, oldest first (JSON each).
pub fn webhook_attempts(id: &str) -> String {
    format!("shoal:{{{}}}:webhook-attempts:{id}", job_tag(id))
}

/// Tenant → its webhook signing secret (`whsec_…`).
pub fn webhook_secrets() -> String {
    "shoal:{a}:webhook-secrets".to_string()
}

/// The index set of jobs with tag `tag` in `state`.
pub fn state_index(tag: &str, state: JobState) -> String {
    format!("shoal:{{{tag}}}:state:{state}")
}

/// The unfinished jobs of tag `tag`, scored by the time they must be finished by (ms).
pub fn deadline_index(tag: &str) -> String {
    format!("shoal:{{{tag}}}:deadlines")
}

/// The index set of tenant `tenant`'s jobs with tag `tag` in `state`. The scripts name it the
/// same way (see the `STATES` prelude in the store).
pub fn tenant_state_index(tag: &str, state: JobState, tenant: &Tenant) -> String {
    format!("{}:tenant:{tenant}", state_index(tag, state))
}

/// Every job tag, for listings that visit them all.
pub fn all_job_tags() -> impl Iterator<Item = String> {
    (0..JOB_TAGS).map(|n| format!("j{n:02}"))
}

/// The stream of shard `shard`.
pub fn shard_stream(shard: u32) -> String {
    format!("shoal:{{s{shard:02}}}:jobs")
}

/// The verification stream of shard `shard`: jobs that succeeded there, for the verifier.
pub fn verify_stream(shard: u32) -> String {
    format!("shoal:{{s{shard:02}}}:verify")
}

/// The dead-letter stream of shard `shard` (same slot as its stream, so moving an entry is one
/// transaction).
pub fn dead_letter_stream(shard: u32) -> String {
    format!("shoal:{{s{shard:02}}}:dead")
}

/// The registry of workers (same slot as [`heartbeats`], so both change in one transaction).
pub fn members() -> String {
    "shoal:{w}:members".to_string()
}

/// Workers by last heartbeat.
pub fn heartbeats() -> String {
    "shoal:{w}:heartbeats".to_string()
}

/// Workers that advertise holding inputs routed to `shard` (see [`crate::Membership::advertise`]).
pub fn holders(shard: u32) -> String {
    format!("shoal:{{w}}:holders:{shard}")
}

/// Worker id → the public key it registered first (see [`crate::WorkerKey`]).
pub fn worker_keys() -> String {
    "shoal:{w}:worker-keys".to_string()
}

/// Worker id → how many of its settled executions were refused (receipt or result wrong).
pub fn refusals() -> String {
    "shoal:{w}:refusals".to_string()
}

/// Worker id → how many of its results the verifier re-executed and agreed with: its reputation.
pub fn agreed() -> String {
    "shoal:{w}:agreed".to_string()
}

/// Worker id → why it is quarantined (JSON): it gets no shards and steals nothing until an
/// operator readmits it.
pub fn quarantined() -> String {
    "shoal:{w}:quarantined".to_string()
}

/// The jobs worker `worker` settled as succeeded, newest first: what is re-verified when it is
/// caught (bounded, see [`crate::Membership::SETTLED_KEPT`]).
pub fn settled_by(worker: &str) -> String {
    format!("shoal:{{w}}:settled:{worker}")
}

/// Jobs whose results are tainted (their worker was caught): verified whatever their sampling.
pub fn tainted() -> String {
    "shoal:{w}:tainted".to_string()
}

/// The hot shards and their extra readers, as last published (see [`crate::hot`]).
pub fn hot_shards() -> String {
    "shoal:{w}:hot".to_string()
}

/// The keys of one pipeline, all in its own slot (see [`crate::PipelineStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineKeys {
    /// The record: spec, tenant, state, times.
    pub record: String,
    /// Unit of work → what the driver decided for it.
    pub units: String,
    /// Pipeline input → the files a stage runs per file over.
    pub files: String,
}

impl PipelineKeys {
    /// The keys of pipeline `id`.
    pub fn of(id: &str) -> PipelineKeys {
        PipelineKeys {
            record: format!("shoal:{{pl:{id}}}:pipeline"),
            units: format!("shoal:{{pl:{id}}}:units"),
            files: format!("shoal:{{pl:{id}}}:files"),
        }
    }
}

/// The pipelines whose driver has work left.
pub fn running_pipelines() -> String {
    "shoal:pipelines:running".to_string()
}

/// The key remembering which pipeline a client's idempotency key created: hashed with its
/// tenant in a namespace of its own, apart from jobs' keys.
pub fn pipeline_idempotency(tenant: &Tenant, key: &str) -> String {
    format!("shoal:idem:{}", hex::encode(Sha256::digest(format!("pipeline\0{tenant}\0{key}").as_bytes())))
}

/// The keys of a fanned-out job's tasks, in the job's slot (see [`crate::fanout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutKeys {
    /// Task key → task job id.
    pub tasks: String,
    /// Task key → its files' names, for tasks of several files.
    pub files: String,
    /// Keys of finished tasks.
    pub done: String,
    /// File name → output CID of succeeded files.
    pub outputs: String,
    /// The first failed files.
    pub failures: String,
    /// Counts, the batch size, the gathered output and the fan-out execution.
    pub summary: String,
}

impl FanOutKeys {
    /// The fan-out keys of job `id`.
    pub fn of(id: &str) -> FanOutKeys {
        let tag = job_tag(id);
        FanOutKeys {
            tasks: format!("shoal:{{{tag}}}:tasks:{id}"),
            files: format!("shoal:{{{tag}}}:task-files:{id}"),
            done: format!("shoal:{{{tag}}}:tasks-done:{id}"),
            outputs: format!("shoal:{{{tag}}}:task-outputs:{id}"),
            failures: format!("shoal:{{{tag}}}:task-failures:{id}"),
            summary: format!("shoal:{{{tag}}}:fanout:{id}"),
        }
    }
}

/// Fanned-out jobs still waiting for tasks.
pub fn fanout_waiting() -> String {
    "shoal:fanout:waiting".to_string()
}

/// The jobs of `replicated` policy whose replicas are running: a sorted set of job ids, scored
/// by when the verifier asked for them.
pub fn replicating() -> String {
    "shoal:replication:waiting".to_string()
}

/// The replica jobs asked for job `id`, in order: a list beside the job's record.
pub fn replicas(id: &str) -> String {
    format!("shoal:{{{}}}:replicas:{id}", job_tag(id))
}

/// A lock one worker at a time holds for a while, so one does a shared chore per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Held by the worker that looks for hot shards this heartbeat (see [`crate::hot`]).
    Hot,
    /// Held by the gatherer of fanned-out jobs' finished tasks.
    FanOut,
    /// Held by the re-queuer of lost submissions and expirer of overdue jobs.
    Requeue,
    /// Held by the verifier that looks at finished replicas.
    Replication,
    /// Held by the worker that drives pipelines this round.
    Pipelines,
}

impl Lock {
    /// The lock's key.
    pub fn key(self) -> String {
        match self {
            Lock::Hot => "shoal:{w}:lock:hot",
            Lock::FanOut => "shoal:lock:fanout",
            Lock::Requeue => "shoal:lock:requeue",
            Lock::Replication => "shoal:lock:replication",
            Lock::Pipelines => "shoal:lock:pipelines",
        }
        .to_string()
    }
}

/// How long an idempotency key (a job's or a pipeline's) names what it created: one day, like
/// the idempotency windows of common payment APIs.
pub(crate) const IDEMPOTENCY_SECS: u64 = 86_400;

/// The key remembering which job an idempotency key created. The key is hashed (so any string is
/// a safe key of bounded length) after a prefix that keeps namespaces apart: a NUL cannot occur
/// in a tenant name, so no client key of one tenant collides with another's or with Shoal's.
pub fn idempotency(key: Idempotency<'_>) -> String {
    let scoped = match key {
        Idempotency::Client { tenant, key } => format!("client\0{tenant}\0{key}"),
        Idempotency::Internal(key) => format!("internal\0{key}"),
    };
    format!("shoal:idem:{}", hex::encode(Sha256::digest(scoped.as_bytes())))
}

/// The API keys: SHA-256 of the key → its [`crate::Principal`] (JSON).
pub fn api_keys() -> String {
    "shoal:{a}:api-keys".to_string()
}

/// Tenant → its [`crate::Quotas`] (JSON).
pub fn quotas() -> String {
    "shoal:{a}:quotas".to_string()
}

/// Tenant `tenant`'s submissions in the Unix second `second`.
pub fn submissions(tenant: &Tenant, second: u64) -> String {
    format!("shoal:rate:{tenant}:{second}")
}

/// How long a second's count of submissions ([`submissions`]) is kept: past its second, for
/// gateways whose clocks are behind.
pub(crate) const SUBMISSIONS_KEPT_SECS: i64 = 2;

/// The keys of one wallet's spending ledger (see [`crate::SpendingLedger`]), all tagged
/// `{pay:<wallet>}` so that every ledger script touches one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletKeys {
    /// The limit (written by the admin only).
    pub limit: String,
    /// `spent` and `reserved`.
    pub ledger: String,
    /// Open reservations by expiry.
    pub expiries: String,
    /// The prefix of the wallet's reservation records: the record of `id` is the prefix and `id`.
    pub reservation_prefix: String,
}

impl WalletKeys {
    /// The keys of wallet `wallet` (an address checked by the ledger: no braces in it).
    pub fn of(wallet: &str) -> WalletKeys {
        WalletKeys {
            limit: format!("shoal:{{pay:{wallet}}}:limit"),
            ledger: format!("shoal:{{pay:{wallet}}}:ledger"),
            expiries: format!("shoal:{{pay:{wallet}}}:expiries"),
            reservation_prefix: format!("shoal:{{pay:{wallet}}}:res:"),
        }
    }

    /// The record of reservation `id`.
    pub fn reservation(&self, id: &str) -> String {
        format!("{}{id}", self.reservation_prefix)
    }
}

/// The wallets that have a spending limit, for the expiry sweep and the operators' views.
pub fn spending_wallets() -> String {
    "shoal:spending:wallets".to_string()
}

/// Who logs in to Redis: each part of Shoal has a user of its own, allowed only the keys (of the
/// layout above) and commands it needs ([`acl_rules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedisRole {
    /// Operators' tools and the tests: everything. It is Redis's `default` user, with a
    /// password: Redis replays its append-only file as `default`, and before 7.2.x/8 (redis#14541)
    /// a `default` without every permission silently drops the transactions (and so every
    /// script's effects) it replays — a restart would lose jobs.
    Admin,
    /// The HTTP API: jobs, streams, idempotency and rate keys; reads workers, API keys, quotas,
    /// and wallets' limits and books (for `/metrics`).
    Gateway,
    /// A worker: jobs, streams, its registration and locks; reads quarantine and quotas.
    /// Never API keys, never the verifier's standing of workers.
    Worker,
    /// The verifier: what a worker may touch, plus the standing of workers and replication.
    Verifier,
}

impl RedisRole {
    /// Every role.
    pub const ALL: [RedisRole; 4] = [RedisRole::Admin, RedisRole::Gateway, RedisRole::Worker, RedisRole::Verifier];

    /// The Redis user name.
    pub fn user(self) -> &'static str {
        match self {
            RedisRole::Admin => "default",
            RedisRole::Gateway => "gateway",
            RedisRole::Worker => "worker",
            RedisRole::Verifier => "verifier",
        }
    }
}

/// Key patterns of the layout, as ACL rules: `~` read and write, `%R~` read only.
const JOB_KEYS: &str = "~shoal:{j*}:*";
const SHARD_STREAMS: &str = "~shoal:{s*}:*";
const IDEMPOTENCY_KEYS: &str = "~shoal:idem:*";
const FAN_OUT_WAITING: &str = "~shoal:fanout:*";
const LOCKS: &str = "~shoal:lock:*";
/// Pipelines: the gateway creates and cancels them, the driver (a worker) advances them.
const PIPELINES: &str = "~shoal:{pl:*}:* ~shoal:pipelines:*";
const QUOTAS_READ: &str = "%R~shoal:{a}:quotas";
/// A wallet's ledger, reservations and expiries: workers reserve, record vouchers, settle and
/// release; the limit and the list of wallets only the admin writes.
const SPENDING: &str = "~shoal:{pay:*}:ledger ~shoal:{pay:*}:expiries ~shoal:{pay:*}:res:* \
    %R~shoal:{pay:*}:limit %R~shoal:spending:wallets";
/// What the gateway's `/metrics` reads of the ledgers: the wallets, their limits and books.
const SPENDING_READ: &str = "%R~shoal:{pay:*}:limit %R~shoal:{pay:*}:ledger %R~shoal:spending:wallets";
/// What a worker keeps of its own in `{w}`: registration, heartbeat, what it holds and hot
/// shards (one worker picks them).
const WORKER_OWN: &str =
    "~shoal:{w}:members ~shoal:{w}:heartbeats ~shoal:{w}:holders:* ~shoal:{w}:hot ~shoal:{w}:lock:hot";
/// What a worker may do, and only that, on keys whose contents judge it (Redis 7 selectors: a
/// command passes if the root rules or one selector allow it): bind its key once and read
/// bindings, never rebind or unbind one; add to what it settled; add to the verification
/// streams, never read, acknowledge or delete their entries. A job script may name a settled
/// list beside the job's keys (the finish script on a single node adds the job to it): Redis
/// checks each command a script runs against these rules too, so a script can do no more to
/// the list than the worker may do directly (push, and trim to the length kept). It may name its
/// shard's job stream too (the finish script on a single node acknowledges the entry the job was
/// run from), which the root rules let the worker read and acknowledge anyway.
const WORKER_SELECTORS: &str = "(~shoal:{w}:worker-keys -@all +hsetnx +hget) \
    (~shoal:{w}:settled:* -@all +lpush +ltrim) \
    (~shoal:{j*}:* ~shoal:{w}:settled:* ~shoal:{s*}:jobs -@all +evalsha) \
    (~shoal:{s*}:verify -@all +xadd +xgroup|create)";

/// The ACL rules of `role`'s user (after `on >password`): its key patterns and its commands.
/// No role but [`RedisRole::Admin`] may run administrative or dangerous commands (`CONFIG`,
/// `FLUSHALL`, `KEYS`, `ACL`, `SHUTDOWN`, …).
pub fn acl_rules(role: RedisRole) -> String {
    // Every role's scripts publish job changes; the gateway also subscribes to them. After
    // `resetchannels`: rules apply in order.
    let commands = format!("resetchannels &{CHANGES_CHANNEL} +@all -@admin -@dangerous");
    let keys = match role {
        RedisRole::Admin => return "~* &* +@all".to_string(),
        RedisRole::Gateway => format!(
            "{JOB_KEYS} {SHARD_STREAMS} {IDEMPOTENCY_KEYS} ~shoal:rate:* %R~shoal:{{w}}:* %R~shoal:{{a}}:api-keys \
             %R~shoal:{{a}}:quotas %R~shoal:{{a}}:webhook-secrets {SPENDING_READ} {PIPELINES}"
        ),
        RedisRole::Worker => format!(
            "{JOB_KEYS} ~shoal:{{s*}}:jobs ~shoal:{{s*}}:dead {IDEMPOTENCY_KEYS} {FAN_OUT_WAITING} {LOCKS} \
             {WORKER_OWN} %R~shoal:{{w}}:quarantined %R~shoal:{{w}}:tainted {QUOTAS_READ} {SPENDING} {PIPELINES}"
        ),
        RedisRole::Verifier => format!(
            "{JOB_KEYS} {SHARD_STREAMS} {IDEMPOTENCY_KEYS} {FAN_OUT_WAITING} {LOCKS} ~shoal:{{w}}:* \
             ~shoal:replication:* {QUOTAS_READ}"
        ),
    };
    let selectors = if role == RedisRole::Worker { WORKER_SELECTORS } else { "" };
    format!("{keys} {commands} {selectors}").trim_end().to_string()
}

/// A Redis ACL file (`aclfile`): a user per role with the password `password` gives it and its
/// [`acl_rules`]. Every user has a password, so a client that does not log in can do nothing.
pub fn acl_file(password: impl Fn(RedisRole) -> String) -> String {
    let mut file = String::new();
    for role in RedisRole::ALL {
        file.push_str(&format!("user {} on >{} {}\n", role.user(), password(role), acl_rules(role)));
    }
    file
}

/// The Redis Cluster hash slot of a key, as the server computes it (CRC16/XMODEM of the tag).
pub fn cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key
        .find('{')
        .and_then(|open| key[open + 1..].find('}').map(|len| (open + 1, len)))
        .filter(|&(_, len)| len > 0)
        .map_or(bytes, |(start, len)| &bytes[start..start + len]);
    crc16_xmodem(tagged) % 16384
}

// Hand-written: the slot function is eight lines; a crate for it would pull in a whole client.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_keys_share_one_slot() {
        for id in ["01JDXZ5Q8K3M2N4P6R8T0V2X4Z", "a", "another-id"] {
            let keys = JobKeys::of(id);
            let slot = cluster_slot(&keys.job);
            assert_eq!(cluster_slot(&keys.executions), slot);
            assert_eq!(cluster_slot(&keys.gatherable), slot, "a task's scripts leave its notice in its own slot");
            assert_eq!(cluster_slot(&pipeline_notices(&job_tag(id))), slot, "and a pipeline's job its notices");
            assert_eq!(cluster_slot(&keys.changes), slot, "the scripts that change a job record it beside it");
            for index in &keys.state_index {
                assert_eq!(cluster_slot(index), slot);
            }
            let tenant: Tenant = "acme".parse().unwrap();
            for state in JobState::ALL {
                assert_eq!(cluster_slot(&tenant_state_index(&job_tag(id), state, &tenant)), slot);
            }
        }
    }

    #[test]
    fn a_wallets_keys_share_one_slot() {
        let keys = WalletKeys::of("f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za");
        let slot = cluster_slot(&keys.ledger);
        for key in [&keys.limit, &keys.expiries, &keys.reservation("r-1"), &keys.reservation("{x}")] {
            assert_eq!(cluster_slot(key), slot, "{key}");
        }
        assert_ne!(slot, cluster_slot(&WalletKeys::of("f1other").ledger));
    }

    #[test]
    fn client_and_internal_idempotency_keys_never_meet() {
        let (a, b): (Tenant, Tenant) = ("a".parse().unwrap(), "b".parse().unwrap());
        let key = "fanout:01JDXZ5Q8K3M2N4P6R8T0V2X4Z:scene-1";
        let all = [
            idempotency(Idempotency::Client { tenant: &a, key }),
            idempotency(Idempotency::Client { tenant: &b, key }),
            idempotency(Idempotency::Internal(key)),
        ];
        assert_ne!(all[0], all[1]);
        assert_ne!(all[0], all[2]);
        assert_ne!(all[1], all[2]);
    }

    #[test]
    fn slot_function_matches_redis_reference_values() {
        // CRC16/XMODEM's check value, and slots printed by `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(cluster_slot("foo"), 12182);
        assert_eq!(cluster_slot("123456789"), 12739);
        assert_eq!(cluster_slot("{user1000}.following"), 3443);
        assert_eq!(cluster_slot("foo{}{bar}"), 8363);
        assert_eq!(cluster_slot("shoal:{j07}:job:x"), 8075);
    }

    #[test]
    fn jobs_spread_over_all_tags() {
        let tags: std::collections::BTreeSet<String> = (0..5000).map(|i| job_tag(&format!("job-{i}"))).collect();
        assert_eq!(tags.len(), JOB_TAGS as usize);
    }
}
