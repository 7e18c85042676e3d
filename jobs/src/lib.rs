//! Shoal's job model and its Redis layout.
//!
//! Everything public is re-exported at the crate root, the one path to it; only [`keys`] is a
//! public module, since the key layout is read as a whole (tests and tools name its keys).
//!
//! - `model`: what a user asks ([`JobSpec`], or a [`PipelineSpec`] of stages), the job Shoal
//!   tracks ([`Job`]) and each attempt to run it ([`Execution`]).
//! - [`keys`]: every Redis key, cluster-compatible, in one place.
//! - `connection`: one connection type for a single Redis node or a Redis Cluster, built in one
//!   place ([`RedisConnection::open_with`]).
//! - `receipt`: worker keys and signed receipts ([`WorkerKey`], [`SignedReceipt`]).
//! - `retry`: riding out Redis restarts ([`with_retries`]).
//! - `store`: job records and their atomic state transitions ([`JobStore`]).
//! - `memo`: memoisation by invocation CID — a tenant's accepted result answers its identical
//!   submissions ([`JobStore::submit_memoised`]).
//! - `changes`: every change of a job as it happens, published by the script that made it and
//!   kept beside the job ([`follow_changes`], [`JobStore::changes`]).
//! - `queue`: the shard streams jobs travel on ([`ShardQueue`], [`ShardReader`]).
//! - `fanout`: the tasks of jobs fanned out over a directory ([`FanOutStore`]).
//! - `membership`: which workers are alive and what they offer ([`Membership`]).
//! - `router`: which shard a job goes to ([`ShardRouter`]).
//! - `pipelines`: pipelines as Shoal tracks them, and what their driver decided
//!   ([`PipelineStore`]).
//! - `placement`: which workers read which shards ([`ShardAssignment`]).
//! - `hot`: extra readers, holding the data first, for shards whose backlog outgrows their
//!   owners ([`HotShards`]).
//! - `backlog`: how much work waits on each shard ([`shard_backlogs`]).
//! - `tenants`: tenants, their API keys and quotas ([`Tenant`], [`ApiKeys`], [`Principal`]).
//! - `webhooks`: webhook events and delivery attempts ([`WebhookStore`]).
//! - `fil`: exact amounts of FIL, as specs and the ledger state them ([`AttoFil`]).
//! - `spending`: what each Filecoin wallet may spend, has spent and holds reserved
//!   ([`SpendingLedger`]).
//! - `server`: a private `redis-server` for the embedded stack and the tests ([`RedisServer`]).

mod backlog;
mod changes;
mod connection;
mod error;
mod fanout;
mod fil;
mod hot;
pub mod keys;
mod membership;
mod memo;
mod model;
mod pipelines;
mod placement;
mod queue;
mod receipt;
mod replication;
mod retry;
mod router;
mod server;
mod spending;
mod store;
mod tenants;
mod webhooks;

pub use backlog::{longest, oldest_waiting, shard_backlogs, take_unread, ShardBacklog};
pub use changes::{follow_changes, Change, Heard};
pub use connection::{redis_addresses, redis_urls, Batch, ConnectOptions, RedisConnection};
pub use error::{SpecError, StoreError};
pub use fanout::{FanOutStore, FinishedTask, Notice, Standing, Task, TaskOutcome, Unfinished};
pub use fil::{AmountError, AttoFil};
pub use hot::{HotPolicy, HotShards};
pub use membership::{Member, Membership, Quarantine, WorkerInfo};
pub use memo::DEFAULT_MEMO_TTL;
pub use model::{
    Acceptance, Agreement, Compared, Comparison, Condition, ContentId, Determinism, Execution, ExecutionOutcome,
    ExecutionResult, Failure, FailureReason, FanOut, FanOutOver, FieldCheck, InputSource, InputSpec, Job, JobSpec,
    JobState, JobStatus, Limits, Notify, OnFailure, PipelineSpec, RetryPolicy, RuntimeKind, Stage, StageInput,
    StageSource, TaskFailure, TaskSummary, ToleranceField, Verification, VerificationOutcome, VerificationPolicy,
    WebhookEvent, MIN_CONTAINER_MEMORY_BYTES, OUTPUTS_MOUNT,
};
pub use pipelines::{
    per_file_input, unit_key, JobEnd, Pipeline, PipelineCreated, PipelineNotice, PipelineState, PipelineStatus,
    PipelineStore, StageStatus, UnitCounts, UnitDecision, UnitState, UnitStatus,
};
pub use placement::{Candidate, ShardAssignment};
pub use queue::{Delivery, Lane, ShardQueue, ShardReader};
pub use receipt::{KeyError, PublicKey, Receipt, ReceiptError, SignedReceipt, WorkerKey};
pub use replication::ReplicationStore;
pub use retry::{with_retries, STORE_RETRY_LIMIT};
pub use router::ShardRouter;
pub use server::{free_port, Fsync, RedisCluster, RedisServer, ServerError};
pub use spending::{parse_attofil, Budget, Expired, Reservation, SpendingError, SpendingLedger, DIGITS, MAX_ATTOFIL};
pub use store::{now_ms, ClientSubmission, Created, Idempotency, JobStore, Listed, Started, TaskOf};
pub use tenants::{ApiKeys, NewApiKey, Principal, Quotas, Role, Tenant, API_KEY_PREFIX};
pub use webhooks::{AttemptOutcome, WebhookAttempt, WebhookDelivery, WebhookStore};
