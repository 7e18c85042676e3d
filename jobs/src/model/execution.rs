//! One attempt to run a job on one worker ([`Execution`]) and how it ended.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ContentId, JobState};
use crate::receipt::SignedReceipt;

/// One attempt to run a job on one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Execution {
    /// Unique within the job: `<worker>-<n>`.
    pub id: String,
    /// The worker that ran it.
    pub worker: String,
    /// When the worker picked the job up.
    pub started_at_ms: u64,
    /// When it finished, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// What happened, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ExecutionOutcome>,
    /// The worker's signed statement of the outcome, once settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<SignedReceipt>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ExecutionOutcome {
    /// The program ran to completion (any exit code).
    Completed(ExecutionResult),
    /// The program could not be run, or was stopped.
    Failed(Failure),
}

impl ExecutionOutcome {
    /// The state this outcome settles its job in: succeeded for an exit code of 0, else failed.
    pub fn settles_as(&self) -> JobState {
        match self {
            ExecutionOutcome::Completed(result) if result.exit_code == 0 => JobState::Succeeded,
            ExecutionOutcome::Completed(_) | ExecutionOutcome::Failed(_) => JobState::Failed,
        }
    }
}

/// What a completed execution produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionResult {
    /// The guest's exit code (0 is success).
    pub exit_code: i32,
    /// The UnixFS directory built from `/outputs`.
    pub output: ContentId,
    /// The captured stdout, as a UnixFS file.
    pub stdout: ContentId,
    /// The captured stderr, as a UnixFS file.
    pub stderr: ContentId,
    /// Fuel the run consumed: deterministic, so equal on every honest worker.
    pub fuel_consumed: u64,
    /// Time spent fetching inputs, in milliseconds.
    pub fetch_ms: u64,
    /// Time spent running the program, in milliseconds.
    pub run_ms: u64,
    /// How many of the job's inputs the worker already held in its input cache: the measure
    /// of data locality (all of them is a local run).
    #[serde(default)]
    pub inputs_cached: u32,
}

/// Why an execution or a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    /// A stable machine-readable reason.
    pub reason: FailureReason,
    /// A human-readable explanation (trap message, the CID that could not be fetched, …).
    pub message: String,
    /// The guest's stderr, as a UnixFS file, when the guest ran at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<ContentId>,
    /// Fuel consumed before the failure, when the guest ran at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_consumed: Option<u64>,
}

/// Machine-readable failure reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The guest trapped (unreachable, panic, out-of-bounds access…).
    Trap,
    /// The guest used up its fuel.
    FuelExhausted,
    /// The guest asked for more memory than its limit.
    MemoryLimit,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The run exceeded its wall-clock budget.
    Timeout,
    /// The guest wrote more than its output limit.
    OutputLimit,
    /// The program is not a valid WebAssembly module, or for a container job not a usable OCI
    /// image, or its command cannot be run in it.
    InvalidProgram,
    /// The program has no such entrypoint.
    MissingEntrypoint,
    /// An input or the program could not be fetched or verified.
    InputUnavailable,
    /// An input is not of the kind the spec needs: `fan_out` over a file rather than a
    /// directory (the gateway cannot tell a CID's kind, the worker finds out).
    InvalidInput,
    /// The guest exited with a non-zero code.
    NonZeroExit,
    /// The worker running the job stopped responding.
    WorkerLost,
    /// The job did not finish within its total timeout (`retry.total_timeout_ms`).
    DeadlineExceeded,
    /// Some files of a fanned-out job failed (each file's own failure is in the job's `tasks`).
    TasksFailed,
    /// A run exited 0 without writing a file its spec declares (`writes`), or a batch task of a
    /// fanned-out job wrote no output named as one of its files.
    MissingOutput,
    /// The job was cancelled (`DELETE /v1/jobs/{id}`) before it finished.
    Cancelled,
    /// The job asked for more than its tenant's quota allows (a fan-out over more files).
    QuotaExceeded,
    /// A Filecoin input could not be paid for: every provider asks more than its `max_price`,
    /// or the wallet's spending limit has too little left (the message gives the amounts).
    BudgetExhausted,
    /// A fault inside Shoal itself.
    Internal,
}

impl Failure {
    /// The failure of a run that completed with a non-zero exit code.
    pub fn non_zero_exit(result: &ExecutionResult) -> Failure {
        Failure {
            reason: FailureReason::NonZeroExit,
            message: format!("the program exited with code {}", result.exit_code),
            stderr: Some(result.stderr),
            fuel_consumed: Some(result.fuel_consumed),
        }
    }
}

impl FailureReason {
    /// Whether the same program over the same inputs fails this way on every honest worker:
    /// the deterministic sandbox's failures, not content being unavailable, the wall clock, or
    /// the host.
    pub fn is_deterministic(self) -> bool {
        matches!(
            self,
            FailureReason::Trap
                | FailureReason::FuelExhausted
                | FailureReason::MemoryLimit
                | FailureReason::StackOverflow
                | FailureReason::OutputLimit
                | FailureReason::InvalidProgram
                | FailureReason::MissingEntrypoint
                | FailureReason::NonZeroExit
                | FailureReason::MissingOutput
        )
    }

    /// The reason's name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Trap => "trap",
            FailureReason::FuelExhausted => "fuel_exhausted",
            FailureReason::MemoryLimit => "memory_limit",
            FailureReason::StackOverflow => "stack_overflow",
            FailureReason::Timeout => "timeout",
            FailureReason::OutputLimit => "output_limit",
            FailureReason::InvalidProgram => "invalid_program",
            FailureReason::MissingEntrypoint => "missing_entrypoint",
            FailureReason::InputUnavailable => "input_unavailable",
            FailureReason::InvalidInput => "invalid_input",
            FailureReason::NonZeroExit => "non_zero_exit",
            FailureReason::WorkerLost => "worker_lost",
            FailureReason::DeadlineExceeded => "deadline_exceeded",
            FailureReason::TasksFailed => "tasks_failed",
            FailureReason::MissingOutput => "missing_output",
            FailureReason::Cancelled => "cancelled",
            FailureReason::QuotaExceeded => "quota_exceeded",
            FailureReason::BudgetExhausted => "budget_exhausted",
            FailureReason::Internal => "internal",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
