//! The one error shape every endpoint answers with:
//! `{"error": {"code": "...", "message": "...", "field": "...", ...}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use shoal_jobs::{Acceptance, FailureReason, JobState, SpecError, StoreError};
use utoipa::ToSchema;

/// An error answer: an HTTP status and a machine-readable code with a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

/// The `error` object of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// Stable, machine-readable (`invalid_spec`, `job_not_found`, …).
    #[schema(value_type = String, examples("invalid_spec"))]
    pub code: &'static str,
    /// For people.
    #[schema(examples("inputs[0].cid: invalid CID \"bafy\": …"))]
    pub message: String,
    /// The path of the request field at fault (`inputs[0].cid`, `limit`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(examples("inputs[0].cid"))]
    pub field: Option<String>,
    /// The job's state, when the error is about a job's life (`not_finished`, `job_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Why the job failed, for `job_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    /// How far the result is trusted, for `not_accepted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<Acceptance>,
}

/// Every error answer: `{"error": {"code", "message", "field"?, …}}`.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct Envelope<'a> {
    error: &'a ErrorBody,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody { code, message: message.into(), field: None, state: None, reason: None, acceptance: None },
        }
    }

    /// A 400 about one query or path parameter.
    pub(crate) fn invalid_parameter(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", message).with_field(field)
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.body.field = Some(field.into());
        self
    }

    pub(crate) fn with_state(mut self, state: JobState) -> ApiError {
        self.body.state = Some(state);
        self
    }

    /// The answer for a request that ran out of time.
    pub(crate) fn timeout() -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the request did not complete in time; retry it (with the same Idempotency-Key for submissions)",
        )
    }

    /// The answer for a request whose handler panicked: the details stay in the log.
    pub(crate) fn internal() -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the gateway failed while handling this request")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Envelope { error: &self.body })).into_response()
    }
}

impl From<SpecError> for ApiError {
    fn from(error: SpecError) -> ApiError {
        match error {
            SpecError::MalformedJson { reason } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {reason}"),
            ),
            SpecError::TooLarge { field, reason } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "spec_too_large", reason).with_field(field)
            }
            SpecError::Field { field, reason } => {
                let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_spec", reason);
                if field.is_empty() {
                    error
                } else {
                    error.with_field(field)
                }
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::from(&error)
    }
}

impl From<&StoreError> for ApiError {
    fn from(error: &StoreError) -> ApiError {
        match error {
            // Every Redis failure the gateway can meet is Redis being down, slow or refusing
            // writes (out of memory, read-only replica): the client should retry later.
            StoreError::Redis(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                format!("the job store (Redis) is unavailable, retry later: {e}"),
            ),
            StoreError::JobNotFound(id) => {
                ApiError::new(StatusCode::NOT_FOUND, "job_not_found", format!("no job with id {id}"))
            }
            StoreError::IdempotencyConflict { key, job } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!("Idempotency-Key {key:?} was already used for job {job} with a different spec; use a new key for a new job"),
            ),
            // Only worker start-up binds keys; a gateway never meets this.
            StoreError::KeyConflict { worker, .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "key_conflict",
                format!("worker {worker} is registered with another key"),
            ),
            // Only a worker's start-up check reports this; a gateway never meets it.
            StoreError::NotPermitted { .. } => {
                tracing::error!(%error, "Redis refused a command");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "redis_not_permitted", "Redis refused a command")
            }
            // Its answer says when to come back (`auth::too_many`).
            StoreError::RateLimited { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", error.to_string())
            }
            StoreError::Corrupt { key, reason } => {
                tracing::error!(%key, %reason, "corrupt record in Redis");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_record",
                    format!("the stored record {key} cannot be read: {reason}"),
                )
            }
        }
    }
}
