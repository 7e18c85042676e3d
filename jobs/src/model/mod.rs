//! The job model: what a user asks for ([`JobSpec`]), the job as Shoal tracks it ([`Job`]), and
//! each attempt to run it ([`Execution`]).
//!
//! A job is separate from its executions: retries, replicas and verifier re-runs are all
//! executions of one job, each with its own worker, timings and result.
//!
//! - `spec`: the spec, its parts and their validation;
//! - `agreement`: how two results of a job are compared, and whether it runs pinned;
//! - `pipeline`: a pipeline of stages, each run as a job, and its validation;
//! - `job`: the job record, its state and what the API reports of it;
//! - `execution`: one attempt and how it ended.

mod agreement;
mod execution;
mod job;
mod pipeline;
mod spec;

use std::fmt;
use std::str::FromStr;

use cid::Cid;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use agreement::{Agreement, Compared, Determinism, FieldCheck, ToleranceField};
pub use execution::{Execution, ExecutionOutcome, ExecutionResult, Failure, FailureReason};
pub use job::{Acceptance, Job, JobState, JobStatus, TaskFailure, TaskSummary, Verification, VerificationOutcome};
pub use pipeline::{Comparison, Condition, OnFailure, PipelineSpec, Stage, StageInput, StageSource};
pub use spec::{
    FanOut, FanOutOver, InputSource, InputSpec, JobSpec, Limits, Notify, RetryPolicy, RuntimeKind, VerificationPolicy,
    WebhookEvent, MIN_CONTAINER_MEMORY_BYTES, OUTPUTS_MOUNT,
};

/// A CID carried as its string form in JSON (the `cid` crate's serde form is bytes, for IPLD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ToSchema)]
#[schema(
    value_type = String,
    description = "An IPFS CID (v0 `Qm…` or v1 `b…`).",
    examples("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
)]
pub struct ContentId(pub Cid);

impl ContentId {
    /// The CID.
    pub fn cid(&self) -> &Cid {
        &self.0
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ContentId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cid::from_str(s).map(ContentId).map_err(|e| format!("invalid CID {s:?}: {e}"))
    }
}

impl Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
