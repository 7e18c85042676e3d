//! The job as Shoal tracks it: [`Job`], its [`JobState`], and what the API reports of it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::tenants::Tenant;

use super::{Compared, ContentId, Execution, ExecutionResult, Failure, FailureReason, JobSpec, VerificationPolicy};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted and on a stream, not yet picked up.
    Queued,
    /// A worker has picked it up.
    Running,
    /// Finished with exit code 0; the output CID is final.
    Succeeded,
    /// Finished without a result; the reason says why.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 5] =
        [JobState::Queued, JobState::Running, JobState::Succeeded, JobState::Failed, JobState::Cancelled];

    /// Whether the job can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }

    /// The state's name as used in the API and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            format!("unknown state {s:?}; expected one of queued, running, succeeded, failed, cancelled")
        })
    }
}

/// A job as Shoal tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// The job's id (a ULID: unique and sortable by creation time).
    pub id: String,
    /// The invocation CID: the hash of the spec (`JobSpec::invocation_cid`).
    pub invocation: ContentId,
    /// What was asked.
    pub spec: JobSpec,
    /// Whose job it is: only that tenant (and operators) can see or cancel it.
    pub tenant: Tenant,
    /// Where it is.
    pub state: JobState,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Milliseconds since the Unix epoch of the last state change.
    pub updated_at_ms: u64,
    /// The shard stream the job was placed on.
    pub shard: u32,
    /// Why the job failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The execution whose result is the job's result, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
    /// Every attempt so far, oldest first.
    #[serde(default)]
    pub executions: Vec<Execution>,
    /// What the verifier found, once it re-ran the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The job whose accepted result answered this one at submission (an identical invocation
    /// of the same tenant's): this job was never run, and its result and verification are that
    /// job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memoised_from: Option<String>,
}

/// A job as `GET /v1/jobs/{id}` shows it: the record, how far its result is trusted, and for a
/// fanned-out job how its tasks stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobStatus {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// How far its result is trusted, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<Acceptance>,
    /// Its tasks, once it has fanned out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TaskSummary>,
    /// Attempts at delivering its webhooks, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_attempts: Vec<crate::webhooks::WebhookAttempt>,
}

impl JobStatus {
    /// The status of `job`, with its tasks' if it fanned out.
    pub fn new(job: Job, tasks: Option<TaskSummary>) -> JobStatus {
        JobStatus { acceptance: job.acceptance(), job, tasks, webhook_attempts: Vec::new() }
    }
}

/// How far a succeeded job's result is trusted. A result is **accepted** only once the verifier
/// has re-executed the job and agreed, or replaced the worker's result by its own: no accepted
/// result is a worker's word alone. The others are labelled for what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Acceptance {
    /// Settled by a worker; the verifier has not looked at it yet.
    Pending,
    /// Accepted: the verifier re-executed the job and got the same result.
    Verified,
    /// Accepted: the worker's result was wrong or unvouched, and the verifier's own
    /// re-execution replaced it.
    Corrected,
    /// The worker's receipt is valid, but the job was not in the verifier's sample: the result
    /// is the worker's signed word (re-verified if the worker is ever caught).
    Unsampled,
    /// The spec asked for no verification.
    Unverified,
    /// The verifier could not re-execute it (content gone, runtime fault).
    Inconclusive,
    /// `replicated` policy: that many distinct workers, each under its own signed receipt, got
    /// the same result. Not accepted: workers colluding in every replica could agree on a lie.
    /// (Replicas that disagree are settled by the verifier's own re-execution instead, and the
    /// job ends `verified` or `corrected`.)
    Replicated,
    /// A fanned-out job's gathered output: each task's result is verified on its own, and the
    /// verifier gathered the tasks' outputs again and got the same directory.
    Gathered,
}

impl Acceptance {
    /// Whether the result is accepted: verified or corrected by the verifier.
    pub fn is_accepted(self) -> bool {
        matches!(self, Acceptance::Verified | Acceptance::Corrected)
    }

    /// Whether the verifier will say no more about it (unless its worker is caught later).
    pub fn is_settled(self) -> bool {
        self != Acceptance::Pending
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Acceptance::Pending => "pending",
            Acceptance::Verified => "verified",
            Acceptance::Corrected => "corrected",
            Acceptance::Unsampled => "unsampled",
            Acceptance::Unverified => "unverified",
            Acceptance::Inconclusive => "inconclusive",
            Acceptance::Replicated => "replicated",
            Acceptance::Gathered => "gathered",
        }
    }
}

impl fmt::Display for Acceptance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Job {
    /// Whether the job is over: terminal and, if its policy asks for verification, decided on
    /// by the verifier — a success's acceptance settled, a failure the program would meet on
    /// any worker (which a lying worker could make up) checked. (A verdict can still change if
    /// the job's worker is caught later.)
    pub fn is_final(&self) -> bool {
        match self.state {
            JobState::Succeeded => self.acceptance().is_some_and(Acceptance::is_settled),
            JobState::Failed => {
                self.verification.is_some()
                    || self.spec.verification == VerificationPolicy::None
                    || !self.failure.as_ref().is_some_and(|f| f.reason.is_deterministic())
            }
            JobState::Cancelled => true,
            JobState::Queued | JobState::Running => false,
        }
    }

    /// How far the job's result is trusted; `None` unless it succeeded.
    pub fn acceptance(&self) -> Option<Acceptance> {
        if self.state != JobState::Succeeded {
            return None;
        }
        let Some(verification) = &self.verification else {
            return Some(match self.spec.verification {
                VerificationPolicy::None if self.spec.fan_out.is_some() => Acceptance::Gathered,
                VerificationPolicy::None => Acceptance::Unverified,
                _ => Acceptance::Pending,
            });
        };
        if verification.corrected.is_some() {
            return Some(Acceptance::Corrected);
        }
        if self.spec.fan_out.is_some() && verification.outcome == VerificationOutcome::Agreed {
            // Gathered again by the verifier, and the same.
            return Some(Acceptance::Gathered);
        }
        Some(match &verification.outcome {
            VerificationOutcome::Agreed => Acceptance::Verified,
            VerificationOutcome::Vouched => Acceptance::Unsampled,
            VerificationOutcome::Replicated { .. } => Acceptance::Replicated,
            // Refused or disagreed without a correction: the re-execution failed.
            VerificationOutcome::Disagreed { .. }
            | VerificationOutcome::Contradicted { .. }
            | VerificationOutcome::Denied { .. }
            | VerificationOutcome::Refused { .. }
            | VerificationOutcome::Inconclusive { .. } => Acceptance::Inconclusive,
        })
    }
}

/// How the tasks of a fanned-out job stand. The counts are of *files* (directory
/// entries or inputs fanned out over), which with `batch` 1 are also the tasks; `tasks` and
/// `tasks_finished` count the tasks they were grouped into.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskSummary {
    /// Files the job fanned out over.
    pub total: u64,
    /// Files that succeeded.
    pub succeeded: u64,
    /// Files that failed (after their task's retries).
    pub failed: u64,
    /// Tasks the files were grouped into.
    #[serde(default)]
    pub tasks: u64,
    /// Tasks that have finished, either way.
    #[serde(default)]
    pub tasks_finished: u64,
    /// The first failed files, with why (100 at most, `TaskSummary::MAX_FAILURES_LISTED`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<TaskFailure>,
    /// The gathered outputs once every task has finished: one entry per succeeded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ContentId>,
}

impl TaskSummary {
    /// How many failed files are listed by name.
    pub const MAX_FAILURES_LISTED: usize = 100;

    /// Files not finished yet.
    pub fn pending(&self) -> u64 {
        self.total.saturating_sub(self.succeeded + self.failed)
    }
}

/// One failed file of a fanned-out job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskFailure {
    /// The file (directory entry or input name).
    pub name: String,
    /// The job id of the task it was in.
    pub job: String,
    /// Why it failed.
    pub reason: FailureReason,
    /// The failure's message.
    pub message: String,
}

/// A verifier's re-execution of a succeeded job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    /// The verifier's id.
    pub verifier: String,
    /// When it finished, in ms since the Unix epoch.
    pub at_ms: u64,
    /// What it found.
    pub outcome: VerificationOutcome,
    /// The result the job now reports, when the verifier replaced the worker's (its own
    /// re-execution's, after a disagreement or a refused receipt); the worker's stays in its
    /// execution, so the history shows both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<ExecutionResult>,
    /// Why the job now reports failure, when the verifier's re-execution failed (or exited
    /// non-zero) where the worker claimed success: the job was moved to `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Failure>,
    /// `replicated` policy: the replica jobs run for this one (ordinary jobs of the same
    /// program and inputs), whatever the verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// Every comparison of the reported result the verdict rests on (with the verifier's
    /// re-execution, with each replica), under the spec's `compare`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<Compared>,
}

/// The verifier's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum VerificationOutcome {
    /// The re-execution agreed with the reported result under the spec's comparison (for
    /// `exact`: the same exit code, fuel, output, stdout and stderr).
    Agreed,
    /// The worker's receipt is valid; the job was not in the sample, so it was not re-executed.
    Vouched,
    /// `replicated` policy: these distinct workers (the one that settled the job first) each
    /// ran it under a valid receipt and got the same result; the verifier did not re-execute it.
    Replicated {
        /// The workers that agreed.
        workers: Vec<String>,
    },
    /// The re-execution produced something else: the worker that reported the result is faulty
    /// or lying.
    Disagreed {
        /// The worker whose execution settled the job.
        worker: String,
        /// What that worker reported.
        reported: Box<ExecutionResult>,
        /// What the verifier computed.
        recomputed: Box<ExecutionResult>,
    },
    /// The re-execution failed deterministically (trap, fuel, memory, a non-zero exit, …) where
    /// the worker reported success: the worker lied, and the job now reports the failure.
    Contradicted {
        /// The worker whose execution settled the job.
        worker: String,
        /// What that worker reported.
        reported: Box<ExecutionResult>,
        /// How the re-execution failed.
        failure: Failure,
    },
    /// The worker reported a failure the program does not have: re-execution succeeded, and
    /// the job now reports the verifier's result.
    Denied {
        /// The worker whose execution failed the job.
        worker: String,
        /// How it said the job failed.
        failure: Failure,
    },
    /// The execution that settled the job is not vouched for by a valid receipt of its worker:
    /// missing, forged, replayed or altered. Its result is not accepted, whatever it is.
    Refused {
        /// The worker the execution is recorded for.
        worker: String,
        /// What is wrong with the receipt.
        reason: String,
    },
    /// The re-execution could not complete (content gone, runtime fault): no verdict.
    Inconclusive {
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        }
        assert!("done".parse::<JobState>().is_err());
    }
}
