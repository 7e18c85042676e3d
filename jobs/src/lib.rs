//! Shoal's job model and its Redis layout.
//!
//! - [`model`]: what a user asks ([`JobSpec`]), the job Shoal tracks ([`Job`]) and each attempt
//!   to run it ([`Execution`]).
//! - [`keys`]: every Redis key, cluster-compatible, in one place.
//! - [`connection`]: one connection type for a single Redis node or a Redis Cluster.
//! - [`store`]: job records and their atomic state transitions.
//! - [`queue`]: the shard streams jobs travel on.
//! - [`fanout`]: the tasks of jobs fanned out over a directory.
//! - [`membership`]: which workers are alive and what they offer.
//! - [`router`]: which shard a job goes to.
//! - [`placement`]: which workers read which shards.
//! - [`hot`]: extra readers, holding the data first, for shards whose backlog outgrows their owners.
//! - [`backlog`]: how much work waits on each shard.
//! - [`server`]: a private `redis-server` for the embedded stack and the tests.

pub mod backlog;
pub mod connection;
pub mod error;
pub mod fanout;
pub mod hot;
pub mod keys;
pub mod membership;
pub mod model;
pub mod placement;
pub mod queue;
pub mod router;
pub mod server;
pub mod store;

pub use backlog::{shard_backlogs, ShardBacklog};
pub use connection::{Batch, RedisConnection};
pub use error::{SpecError, StoreError};
pub use fanout::{FanOutStore, FinishedTask, Task, TaskOutcome, Unfinished};
pub use hot::{HotPolicy, HotShards};
pub use membership::{Member, Membership, WorkerInfo};
pub use model::{
    ContentId, Execution, ExecutionOutcome, ExecutionResult, Failure, FailureReason, FanOut, FanOutOver, InputSpec,
    Job, JobSpec, JobState, JobStatus, Limits, RetryPolicy, TaskFailure, TaskSummary, Verification,
    VerificationOutcome, VerificationPolicy, OUTPUTS_MOUNT,
};
pub use placement::{Candidate, ShardAssignment};
pub use queue::{Delivery, Lane, ShardQueue, ShardReader};
pub use router::ShardRouter;
pub use server::RedisCluster;
pub use server::{Fsync, RedisServer};
pub use store::{now_ms, Created, JobStore, Listed, Started};
