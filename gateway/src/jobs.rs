//! The job endpoints: submit, status, result and listing.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use std::time::{Duration, Instant};

use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use shoal_jobs::{
    Acceptance, Agreement, ClientSubmission, ContentId, Created, FailureReason, Idempotency, Job, JobSpec, JobState,
    JobStatus, Principal, Role, SpecError, StoreError, Tenant,
};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::api_error::{ApiError, Envelope};
use crate::auth::too_many;
use crate::connections::Draining;
use crate::events;
use crate::metrics::Phase;
use crate::metrics::Submitted;
use crate::openapi;
use crate::AppState;

/// The request header that makes a submission idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a submission's answer when it returns the job an earlier one with its key created.
pub(crate) const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Set on a submission's answer: the W3C Server Timing of its quota checks (`admit`), of storing
/// it (`store`), of the whole submission (`total`, what `shoal_gateway_submit_duration_seconds`
/// observes) and, with `?wait=`, of the wait for the job's end (`wait`), in ms, so a client can
/// tell the server's time in each request from the network's.
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
/// The longest Idempotency-Key accepted (the length Stripe and the IETF draft's examples use).
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Page size of `GET /v1/jobs` unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 50;
/// The largest page `GET /v1/jobs` returns.
const MAX_PAGE: usize = 500;
/// At most this much of a refused body is still read (and discarded) before the connection
/// is closed; see [`linger`].
const LINGER_BYTES: usize = 16 << 20;
/// At most this long is a refused body still read before the connection is closed.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Whether the spec in `body` (already parsed as a [`JobSpec`]) names its verification policy;
/// one that does not gets the deployment's default.
fn names_verification(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .is_ok_and(|spec| spec.contains_key("verification"))
}

/// The parameters of `POST /v1/jobs`.
#[derive(Debug, Deserialize)]
pub(crate) struct SubmitQuery {
    /// Submit and wait: answer once the job is terminal, or as it is after this long.
    wait: Option<String>,
}

/// `POST /v1/jobs`: stores a job for the JSON spec in the body and puts it on its shard stream.
///
/// 202 with the new job; 201 with a new job answered already succeeded from the tenant's
/// accepted result of the same invocation (`memoised_from`); with an `Idempotency-Key` seen
/// before for the same spec, 200 with the job that key created (and `Idempotent-Replayed:
/// true`), which is not queued again. With `?wait=`, the answer waits for the job to be
/// terminal as `GET /v1/jobs/{id}?wait=` would (201 for a new job that is, 202 for one that is
/// not yet): a short job costs one request instead of two. Every answer is the job as
/// `GET /v1/jobs/{id}` shows it; one stored is answered even if waiting for it fails.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    operation_id = "submitJob",
    tag = "jobs",
    security(("api_key" = [])),
    params(
        (
            "Idempotency-Key" = Option<String>,
            Header,
            description = "Makes the submission idempotent within the key's tenant: sent again with the same spec, \
                           the job it created is answered (200) and not queued again.",
            min_length = 1,
            max_length = 255,
            example = "nightly-2026-01-05"
        ),
        ("wait" = Option<String>, Query, description = "Submit and wait: answer as soon as the job is terminal (a \
                                                      new job then answers 201), or as it is after this long (202) \
                                                      — as `GET /v1/jobs/{id}?wait=` takes it: whole seconds or \
                                                      milliseconds, at most 60 s. Woken by the change itself.",
            example = "10s")
    ),
    request_body(
        content = JobSpec,
        content_type = "application/json",
        description = "The job spec; at most 1 MiB (the gateway's limit), its `args`, `env` and `inputs` at most \
                       256 KiB together.",
        example = json!(openapi::example_spec())
    ),
    responses(
        (status = 202, description = "Stored and queued (with `?wait=`: and not terminal when the wait ran out).",
            body = JobStatus,
            headers(
                ("Location" = String, description = "`/v1/jobs/{id}`"),
                ("Server-Timing" = String, description = "The gateway's time, ms: `admit` (quotas), `store`, `total` (the \
                                                           submission); with `?wait=`, `wait` too.")
            ),
            example = json!(openapi::example_job())),
        (status = 201, description = "Memoised: an identical invocation (the same invocation CID) of the same \
                                      tenant's was accepted by the verifier, so the new job is created already \
                                      `succeeded` with its result and verification, naming it in `memoised_from`, \
                                      and nothing runs. Only deterministic WebAssembly jobs that are not fanned \
                                      out; a spec opts out with `\"memoise\": false`. With `?wait=`, also a new \
                                      job that became terminal within the wait.", body = JobStatus,
            headers(
                ("Location" = String, description = "`/v1/jobs/{id}`"),
                ("Server-Timing" = String, description = "The gateway's time, ms: `admit` (quotas), `store`, `total` (the \
                                                           submission); with `?wait=`, `wait` too.")
            )),
        (status = 200, description = "The `Idempotency-Key` was used before for the same spec: the job it created, \
                                      not queued again (with `?wait=`, as it is at the end of the wait).",
            body = JobStatus,
            headers(
                ("Location" = String, description = "`/v1/jobs/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true`"),
                ("Server-Timing" = String, description = "The gateway's time, ms: `admit` (quotas), `store`, `total` (the \
                                                           submission); with `?wait=`, `wait` too.")
            )),
        (status = 400, description = "`malformed_json` (not JSON, or anything after the spec's object), \
                                      `invalid_spec` (with the `field` at fault, unless the body is not an object), \
                                      `invalid_idempotency_key`, `invalid_parameter` (field `wait`), \
                                      `body_unreadable`.", body = Envelope),
        (status = 403, description = "`quota_exceeded`: more fuel than the tenant may ask for (field `limits.fuel`).",
            body = Envelope),
        (status = 413, description = "`body_too_large` (answered with `Connection: close`), or `spec_too_large` \
                                      naming the largest of `args`, `env` and `inputs`.", body = Envelope),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`.",
            body = Envelope),
        (status = 422, description = "`idempotency_key_reused`: the key was used for a different spec.",
            body = Envelope),
        (status = 429, description = "`backlog_full` (the shard streams are over the gateway's backlog limit), \
                                      `rate_limited` or `too_many_outstanding` (the tenant's quotas).",
            body = Envelope, headers(("Retry-After" = u64, description = "Seconds to wait before submitting again."))),
    )
)]
pub(crate) async fn submit(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    draining: Option<Extension<Draining>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let received = Instant::now();
    let wait = match query
        .map_err(|rejection| ApiError::invalid_parameter("wait", rejection.to_string()))
        .and_then(|Query(query)| events::wait_parameter(query.wait.as_deref()))
    {
        Ok(wait) => wait,
        Err(error) => return Ok(refuse_unread(error, body)),
    };
    let started = Instant::now();
    let body = match read_json_body(&headers, body, app.config.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => return Ok(refused),
    };
    app.metrics.observe(Phase::ReadBody, started.elapsed());
    let started = Instant::now();
    let mut spec = JobSpec::from_json(&body)?;
    if !names_verification(&body) {
        spec.verification = app.config.default_verification.clone();
    }
    if let Agreement::Comparator { program, .. } = spec.verification.compare() {
        if let Some(why) = app.content.not_a_module(program.cid()).await {
            let reason = format!("{program} is not a WebAssembly module: {why}");
            return Err(SpecError::Field { field: "verification.compare.program".into(), reason }.into());
        }
    }
    let idempotency_key = idempotency_key(&headers)?;
    app.metrics.observe(Phase::Validate, started.elapsed());
    let tenant = &principal.tenant;
    let started = Instant::now();
    let admitted = app.access.admit(tenant, &spec).await;
    let admit = started.elapsed();
    app.metrics.observe(Phase::Admit, admit);
    let submissions_per_sec = match admitted {
        Ok(per_sec) => per_sec,
        Err(refused) => {
            app.metrics.jobs_refused.inc();
            return Ok(refused);
        }
    };
    if let Some(limit) = app.config.max_backlog {
        let outstanding = app.backlog.outstanding();
        if outstanding >= limit {
            app.metrics.jobs_refused.inc();
            let message = format!("{outstanding} jobs are outstanding, the limit is {limit}: submit again later");
            let mut refused = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "backlog_full", message).into_response();
            let wait = app.config.backlog_sample_interval.as_secs().max(1);
            refused.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait));
            return Ok(refused);
        }
    }
    let shard = app.placement.route(&spec);
    // A first request that stored the job but failed to queue it (it answered 503) leaves it
    // for the client's retry to queue.
    let idempotency = idempotency_key.map(|key| Idempotency::Client { tenant, key });
    let started = Instant::now();
    // Stored and put on its stream, or with memoisation on (the deployment's
    // `GatewayConfig::memo_ttl`) answered from the tenant's accepted result of the same
    // invocation if there is one; counted against the tenant's submissions a second either way.
    let how = ClientSubmission { memo_ttl: app.config.memo_ttl, submissions_per_sec };
    let created = app.store.submit_client(&app.queue, &spec, shard, tenant, idempotency, how).await;
    let store = started.elapsed();
    app.metrics.observe(Phase::Store, store);
    let total = received.elapsed();
    let created = match created {
        Err(refused @ StoreError::RateLimited { .. }) => {
            app.metrics.jobs_refused.inc();
            return Ok(too_many(ApiError::from(refused)));
        }
        created => created?,
    };
    let (job, replayed) = match created {
        Created::New(job) if job.memoised_from.is_some() => {
            app.metrics.jobs_memoised.inc();
            app.metrics.submitted(Submitted::Memoised, total);
            tracing::info!(job = %job.id, from = job.memoised_from.as_deref(), %tenant, "job memoised");
            (job, false)
        }
        Created::New(job) => {
            app.metrics.jobs_submitted.inc();
            app.metrics.submitted(Submitted::Queued, total);
            tracing::info!(job = %job.id, shard, %tenant, "job submitted");
            (job, false)
        }
        Created::Existing(job) => {
            app.metrics.jobs_replayed.inc();
            app.metrics.submitted(Submitted::Replayed, total);
            (job, true)
        }
    };
    let started = Instant::now();
    let draining = draining.map(|Extension(draining)| draining);
    let (status, waited) = match wait {
        Some(wait) => (stored_job(&app, &principal, job, Some(wait), draining).await, Some(started.elapsed())),
        // A replayed job may have fanned out or sent webhooks since; a new one has done neither.
        None if replayed => (stored_job(&app, &principal, job, None, draining).await, None),
        None => (JobStatus::new(job, None), None),
    };
    let code = match (replayed, status.job.state.is_terminal()) {
        (true, _) => StatusCode::OK,
        (false, true) => StatusCode::CREATED,
        (false, false) => StatusCode::ACCEPTED,
    };
    let mut response = job_response(code, status, replayed);
    response.headers_mut().insert(SERVER_TIMING, server_timing(admit, store, total, waited));
    Ok(response)
}

/// The `Server-Timing` value of a submission whose quota checks took `admit`, whose storing took
/// `store` and which took `total` in all, then `waited` for the job to end if asked to.
fn server_timing(admit: Duration, store: Duration, total: Duration, waited: Option<Duration>) -> HeaderValue {
    let ms = |took: Duration| took.as_secs_f64() * 1000.0;
    let mut value = format!("admit;dur={:.3}, store;dur={:.3}, total;dur={:.3}", ms(admit), ms(store), ms(total));
    if let Some(waited) = waited {
        value.push_str(&format!(", wait;dur={:.3}", ms(waited)));
    }
    HeaderValue::try_from(value).expect("numbers and ASCII are a valid header value")
}

/// Submitted `job` as `GET /v1/jobs/{id}` shows it — once terminal, if asked to `wait` (up to
/// that long) — or as it was stored if that fails: a submission that stored its job answers it,
/// since an error would have a client without an Idempotency-Key submit it again.
async fn stored_job(
    app: &AppState,
    principal: &Principal,
    job: Job,
    wait: Option<Duration>,
    draining: Option<Draining>,
) -> JobStatus {
    let shown = async {
        let job = match wait {
            Some(wait) if !job.state.is_terminal() => {
                events::job_when(app, principal, &job.id, wait, draining, |job| job.state.is_terminal()).await?
            }
            _ => job.clone(),
        };
        status_of(app, job).await
    };
    match shown.await {
        Ok(status) => status,
        Err(error) => {
            tracing::warn!(job = %job.id, error = %error.body.message, "answering a submitted job as stored");
            JobStatus::new(job, None)
        }
    }
}

/// `job` as `GET /v1/jobs/{id}` shows it: how far its result is trusted, a fan-out's tasks and
/// a notified job's webhook attempts.
async fn status_of(app: &AppState, job: Job) -> Result<JobStatus, ApiError> {
    let tasks = if job.spec.fan_out.is_some() { app.fanouts.summary(&job.id).await? } else { None };
    let attempts = if job.spec.notify.is_some() { app.webhooks.attempts(&job.id).await? } else { Vec::new() };
    let mut status = JobStatus::new(job, tasks);
    status.webhook_attempts = attempts;
    Ok(status)
}

fn job_response(code: StatusCode, status: JobStatus, replayed: bool) -> Response {
    let location =
        HeaderValue::try_from(format!("/v1/jobs/{}", status.job.id)).expect("a ULID is a valid header value");
    let mut response = (code, [(LOCATION, location)], Json(status)).into_response();
    if replayed {
        response.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Reads a JSON request body of at most `limit` bytes. A declared length over the limit is
/// refused before a byte is read; a body without one is refused as soon as it passes the limit.
///
/// A refusal is the complete answer, sent with `Connection: close` since the connection cannot
/// be reused with the rest of the body unread.
pub(crate) async fn read_json_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let content_type = headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)"));
    // The media type without its parameters (`; charset=utf-8`), compared case-insensitively.
    let essence = content_type.and_then(|t| t.split(';').next()).map(str::trim);
    if !essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        let error = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the body must be a JSON spec sent with Content-Type: application/json, not {}",
                content_type.unwrap_or("no Content-Type")
            ),
        );
        return Err(refuse_unread(error, body));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(refuse_unread(too_large(), body));
    }
    let mut body = body;
    let mut read = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::new(StatusCode::BAD_REQUEST, "body_unreadable", format!("the body could not be read: {error}"))
                .into_response()
        })?;
        let Some(data) = frame.data_ref() else { continue };
        if read.len() + data.len() > limit {
            return Err(refuse_unread(too_large(), body));
        }
        read.extend_from_slice(data);
    }
    Ok(Bytes::from(read))
}

/// The answer to a request refused before its body was read to the end.
fn refuse_unread(error: ApiError, body: Body) -> Response {
    linger(body);
    let mut response = error.into_response();
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads and discards what follows of a refused body, up to [`LINGER_BYTES`] and
/// [`LINGER_TIME`], in the background.
///
/// Closing a connection the client is still sending on makes the kernel reset it, and a client
/// that meets the reset while writing reports a broken pipe instead of the answer on its way.
/// Reading on for a little while (nginx's "lingering close") lets the client read the answer
/// first; the caps keep a client from making the gateway read an unbounded body.
fn linger(mut body: Body) {
    tokio::spawn(async move {
        let drain = async {
            let mut drained = 0;
            while drained < LINGER_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => drained += frame.data_ref().map_or(0, Bytes::len),
                    Some(Err(_)) | None => break,
                }
            }
        };
        // Running out of time is the expected end for a client that keeps sending.
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"),
        )
    };
    let key = value.to_str().map_err(|_| invalid())?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(invalid());
    }
    Ok(Some(key))
}

/// Parses a ULID, in any case, into its canonical upper-case form (the form ids are stored
/// under).
///
/// 26 base-32 characters hold 130 bits, a ULID 128: the first character is at most `7`. The
/// `ulid` crate drops the extra bits instead of refusing them, which made `8…` name the job
/// `0…` names.
pub(crate) fn parse_ulid(raw: &str) -> Result<String, String> {
    if raw.as_bytes().first().is_some_and(|first| !matches!(first, b'0'..=b'7')) {
        return Err("a ULID starts with a digit from 0 to 7".into());
    }
    raw.parse::<ulid::Ulid>().map(|id| id.to_string()).map_err(|e| e.to_string())
}

/// Parses a job id from a path: a ULID (see [`parse_ulid`]).
pub(crate) fn job_id(raw: &str) -> Result<String, ApiError> {
    parse_ulid(raw).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_job_id",
            format!("{raw:?} is not a job id (a 26-character ULID): {e}"),
        )
        .with_field("id")
    })
}

/// The job `raw_id` names, if `principal` may see it: another tenant's job is answered as one
/// that does not exist, so ids tell nothing across tenants.
pub(crate) async fn load_job(app: &AppState, principal: &Principal, raw_id: &str) -> Result<Job, ApiError> {
    let id = job_id(raw_id)?;
    match app.store.get(&id).await? {
        Some(job) if principal.may_access(&job.tenant) => Ok(job),
        _ => Err(StoreError::JobNotFound(id).into()),
    }
}

/// The `{id}` of every route below `/v1/jobs/{id}`, as the document names it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "documentation only: the handlers take the id as `Path<String>`")]
pub(crate) struct JobId {
    /// The job's id: a ULID.
    #[param(example = "01M9606Q1B83NV4CFWBSF1GZJG")]
    id: String,
}

/// The 400 of a route below `/v1/jobs/{id}` whose only parameter is the id.
#[derive(IntoResponses)]
#[response(status = 400, description = "`invalid_job_id` (field `id`).")]
#[expect(dead_code, reason = "documentation only: the handlers answer errors as `ApiError`")]
pub(crate) struct InvalidJobId(Envelope<'static>);

/// The 404 of a route below `/v1/jobs/{id}` for an id [`load_job`] finds no job for.
#[derive(IntoResponses)]
#[response(status = 404, description = "`job_not_found`: no such job, or another tenant's.")]
#[expect(dead_code, reason = "documentation only: the handlers answer errors as `ApiError`")]
pub(crate) struct JobNotFound(Envelope<'static>);

/// The parameters of `GET /v1/jobs/{id}`.
#[derive(Debug, Deserialize)]
pub(crate) struct StatusQuery {
    /// A long-poll: answer once the job is terminal, or after this long (see [`events::parse_wait`]).
    wait: Option<String>,
}

/// `GET /v1/jobs/{id}`: the job with its state and executions; with `?wait=30s`, as soon as it
/// is terminal (succeeded, failed or cancelled), or as it is after the wait.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "getJob",
    tag = "jobs",
    security(("api_key" = [])),
    params(
        JobId,
        ("wait" = Option<String>, Query, description = "Long-poll: answer as soon as the job is terminal, or as it \
                                                      is after this long — whole seconds (`30s`, `30`) or \
                                                      milliseconds (`500ms`), at most 60 s (a longer wait is cut to \
                                                      it). Woken by the change itself, not by polling.",
            example = "30s")
    ),
    responses(
        (status = 200, description = "The job, with how far its result is trusted (`acceptance`), a fan-out's \
                                      `tasks` and a job with `notify` its `webhook_attempts`.", body = JobStatus),
        (status = 400, description = "`invalid_job_id` (field `id`), `invalid_parameter` (field `wait`).",
            body = Envelope),
        JobNotFound,
    )
)]
pub(crate) async fn status(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<StatusQuery>, QueryRejection>,
    draining: Option<Extension<Draining>>,
) -> Result<Json<JobStatus>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::invalid_parameter("wait", rejection.to_string()))?;
    let job = match events::wait_parameter(query.wait.as_deref())? {
        Some(wait) => {
            let draining = draining.map(|Extension(draining)| draining);
            events::job_when(&app, &principal, &id, wait, draining, |job| job.state.is_terminal()).await?
        }
        None => load_job(&app, &principal, &id).await?,
    };
    Ok(Json(status_of(&app, job).await?))
}

/// The answer of `GET /v1/jobs/{id}/result` for a job that succeeded.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = JobResult)]
pub(crate) struct JobResultBody {
    /// The job's id.
    job: String,
    /// Always `succeeded`.
    state: JobState,
    /// How far the result is trusted.
    acceptance: Acceptance,
    /// Whether it is accepted: verified or corrected by the verifier, never a worker's word alone.
    accepted: bool,
    /// The UnixFS directory the program wrote to `/outputs`.
    output: ContentId,
    /// Its standard output, a UnixFS file.
    stdout: ContentId,
    /// Its standard error, a UnixFS file.
    stderr: ContentId,
    /// Always 0: a job whose program exits otherwise fails `non_zero_exit`.
    exit_code: i32,
    /// Fuel the run consumed.
    fuel_consumed: u64,
}

/// The parameters of `GET /v1/jobs/{id}/result`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultQuery {
    /// `true`: the result as soon as the job succeeded, before the verifier's verdict.
    early: Option<bool>,
    /// A long-poll: answer once the answer is no 409, or after this long.
    wait: Option<String>,
}

/// `GET /v1/jobs/{id}/result`: 200 with the outputs, labelled with their acceptance, once the
/// job succeeded and the verifier had its say; 409 `not_accepted` (with `acceptance: pending`)
/// before that unless `?early=true` asks for the worker's result at once; 409 `not_finished`
/// while it is queued or running; 422 `job_failed` (with the failure reason) or `job_cancelled`
/// when it ended without a result — for a failure the program would meet on any worker, once
/// the verifier has checked it (409 `not_accepted` before that, unless `?early=true`).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/result",
    operation_id = "getJobResult",
    tag = "jobs",
    security(("api_key" = [])),
    params(
        JobId,
        ("early" = Option<bool>, Query, description = "`true`: the worker's result as soon as the job succeeded, \
                                                     before the verifier's verdict (labelled `pending`)."),
        ("wait" = Option<String>, Query, description = "Long-poll: answer as soon as the answer would not be a 409 \
                                                      (the job ended and, unless `early`, the verifier had its \
                                                      say), or as it is after this long — `30s`, `30` or `500ms`, \
                                                      at most 60 s.", example = "30s")
    ),
    responses(
        (status = 200, description = "The job succeeded: its outputs, labelled with their acceptance.",
            body = JobResultBody,
            example = json!(openapi::example_result())),
        (status = 400, description = "`invalid_job_id` (field `id`), `invalid_parameter` (an unknown parameter, \
                                      an `early` that is not a boolean, or a `wait` that is no duration: field \
                                      `wait`).", body = Envelope),
        JobNotFound,
        (status = 409, description = "`not_finished` (with `state`) while queued or running; `not_accepted` (with \
                                      `state`, and `acceptance: pending` for a success) while the verifier has not \
                                      had its say, unless `?early=true`.", body = Envelope),
        (status = 422, description = "`job_failed` (with `state` and the failure `reason`) or `job_cancelled`: the \
                                      job ended without a result.", body = Envelope),
    )
)]
pub(crate) async fn result(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<ResultQuery>, QueryRejection>,
    draining: Option<Extension<Draining>>,
) -> Result<Json<JobResultBody>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("{rejection}; the parameters are early and wait"),
        )
    })?;
    let early = query.early == Some(true);
    let job = match events::wait_parameter(query.wait.as_deref())? {
        Some(wait) => {
            let draining = draining.map(|Extension(draining)| draining);
            let answered = |job: &Job| job.state.is_terminal() && (early || job.is_final());
            events::job_when(&app, &principal, &id, wait, draining, answered).await?
        }
        None => load_job(&app, &principal, &id).await?,
    };
    match job.state {
        JobState::Succeeded => {
            let acceptance = job.acceptance().unwrap_or(Acceptance::Pending);
            if !acceptance.is_settled() && query.early != Some(true) {
                let mut error = ApiError::new(
                    StatusCode::CONFLICT,
                    "not_accepted",
                    format!(
                        "job {} succeeded and its result awaits the verifier; ask again, or add ?early=true for the unverified result",
                        job.id
                    ),
                )
                .with_state(job.state);
                error.body.acceptance = Some(acceptance);
                return Err(error);
            }
            let result = job.result.ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_record",
                    format!("job {} succeeded but has no result recorded", job.id),
                )
            })?;
            Ok(Json(JobResultBody {
                job: job.id,
                state: job.state,
                acceptance,
                accepted: acceptance.is_accepted(),
                output: result.output,
                stdout: result.stdout,
                stderr: result.stderr,
                exit_code: result.exit_code,
                fuel_consumed: result.fuel_consumed,
            }))
        }
        JobState::Queued | JobState::Running => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_finished",
            format!("job {} is {}; its result is not ready yet", job.id, job.state),
        )
        .with_state(job.state)),
        // A worker could make a failure up as well as a result: one the program would meet on
        // any worker waits for the verifier's check too.
        JobState::Failed if !job.is_final() && query.early != Some(true) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_accepted",
            format!(
                "job {} failed and the verifier is checking the failure; ask again, or add ?early=true for the worker's word",
                job.id
            ),
        )
        .with_state(job.state)),
        JobState::Failed => {
            let (message, reason) = match &job.failure {
                Some(failure) => {
                    (format!("job {} failed ({}): {}", job.id, failure.reason, failure.message), Some(failure.reason))
                }
                None => (format!("job {} failed", job.id), None),
            };
            let mut error =
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "job_failed", message).with_state(job.state);
            error.body.reason = reason;
            Err(error)
        }
        JobState::Cancelled => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "job_cancelled",
            format!("job {} was cancelled and has no result", job.id),
        )
        .with_state(job.state)),
    }
}

/// Cancels held at once while cancelling a fan-out's tasks.
const CANCELLING_AT_ONCE: usize = 32;

/// `DELETE /v1/jobs/{id}`: cancels the job unless it finished — a queued job is never run, a
/// running one is stopped by its worker within a second or so, a fanned-out job's tasks are
/// cancelled with it. 200 with the job (also for a job cancelled before: cancelling again
/// finishes cancelling its tasks); 409 `job_finished` (with `state`) for one that succeeded or
/// failed.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    operation_id = "cancelJob",
    tag = "jobs",
    security(("api_key" = [])),
    params(JobId),
    responses(
        (status = 200, description = "The job, now `cancelled`.", body = JobStatus),
        InvalidJobId,
        JobNotFound,
        (status = 409, description = "`job_finished` (with `state`): it succeeded or failed first.", body = Envelope),
    )
)]
pub(crate) async fn cancel(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, ApiError> {
    let job = load_job(&app, &principal, &id).await?;
    let why = format!("cancelled by API key {} of tenant {}", principal.key_id, principal.tenant);
    if !job.state.is_terminal() {
        app.store.cancel(&job.id, &why).await?;
    }
    if job.spec.fan_out.is_some() && matches!(job.state, JobState::Running | JobState::Cancelled) {
        let tasks = app.fanouts.tasks(&job.id).await?;
        futures::stream::iter(tasks)
            .map(|task| {
                let (store, why) = (app.store.clone(), why.clone());
                async move { store.cancel(&task.job, &why).await }
            })
            .buffer_unordered(CANCELLING_AT_ONCE)
            .try_collect::<Vec<_>>()
            .await?;
    }
    let job = load_job(&app, &principal, &id).await?;
    if matches!(job.state, JobState::Succeeded | JobState::Failed) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_finished",
            format!("job {} {} before it could be cancelled", job.id, job.state),
        )
        .with_state(job.state));
    }
    tracing::info!(job = %job.id, tenant = %job.tenant, key = %principal.key_id, "job cancelled");
    let tasks = if job.spec.fan_out.is_some() { app.fanouts.summary(&job.id).await? } else { None };
    Ok(Json(JobStatus::new(job, tasks)))
}

/// The query of `GET /v1/jobs`; every value is parsed by hand so each error names its field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A position in the listing: the creation time and id of the last job of the previous page.
///
/// Clients treat it as opaque; its form, `<created_ms>-<id>`, is URL-safe as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    created_ms: u64,
    id: String,
}

impl Cursor {
    fn encode(&self) -> String {
        format!("{}-{}", self.created_ms, self.id)
    }

    fn decode(raw: &str) -> Result<Cursor, ApiError> {
        let invalid = || ApiError::invalid_parameter("cursor", format!("{raw:?} is not a cursor returned by this API"));
        let (ms, id) = raw.split_once('-').ok_or_else(invalid)?;
        let created_ms = ms.parse().map_err(|_| invalid())?;
        let id = parse_ulid(id).map_err(|_| invalid())?;
        Ok(Cursor { created_ms, id })
    }
}

/// One job in a listing: what tells jobs apart and how they ended, never the spec's `args`,
/// `env` or `inputs` (up to 256 KiB a job), nor its
/// executions — `GET /v1/jobs/{id}` has those. A few hundred bytes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobSummary {
    /// The job's id.
    id: String,
    /// Whose job it is.
    tenant: Tenant,
    /// Where it is.
    state: JobState,
    /// When it was submitted, in ms since the Unix epoch.
    created_at_ms: u64,
    /// When its state last changed, in ms since the Unix epoch.
    updated_at_ms: u64,
    /// Its program.
    program: ContentId,
    /// How far the result is trusted, once the job succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    acceptance: Option<Acceptance>,
    /// Why the job failed, once it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<FailureReason>,
}

impl JobSummary {
    fn of(job: &Job) -> JobSummary {
        JobSummary {
            id: job.id.clone(),
            tenant: job.tenant.clone(),
            state: job.state,
            created_at_ms: job.created_at_ms,
            updated_at_ms: job.updated_at_ms,
            program: job.spec.program,
            acceptance: job.acceptance(),
            failure_reason: job.failure.as_ref().map(|failure| failure.reason),
        }
    }
}

/// Job records loaded at once for a listing: each is converted to its summary as it arrives,
/// so a page never holds more than this many whole records.
const LOADING_AT_ONCE: usize = 16;

/// The most bytes of summaries one page holds; a page is cut short (with a cursor to the rest)
/// before it would pass this, but always holds at least one job. Summaries are a few hundred
/// bytes, so a page of 500 stays well below it.
const MAX_PAGE_BYTES: usize = 256 << 10;

/// Adds `summary` to `page` unless that takes the page past `max_bytes` (a first summary is
/// always taken); says whether it did. `bytes` is the page's size so far.
fn fits(page: &mut Vec<JobSummary>, bytes: &mut usize, summary: JobSummary, max_bytes: usize) -> bool {
    let size = serde_json::to_vec(&summary).map_or(0, |json| json.len()) + 1;
    if !page.is_empty() && *bytes + size > max_bytes {
        return false;
    }
    *bytes += size;
    page.push(summary);
    true
}

/// The answer of `GET /v1/jobs`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobPage {
    /// Newest first.
    jobs: Vec<JobSummary>,
    /// The cursor of the next page, `null` on the last page.
    next_cursor: Option<String>,
    /// The URL of the next page, `null` on the last page.
    next: Option<String>,
}

/// `GET /v1/jobs?state=…&limit=…&cursor=…`: job summaries, newest first.
/// Without `state`, jobs in every state are listed, merged by creation time.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    security(("api_key" = [])),
    params(
        ("state" = Option<JobState>, Query, description = "Only jobs in this state; every state when absent."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Jobs per page, 50 unless given."),
        ("cursor" = Option<String>, Query, description = "The previous page's `next_cursor`.")
    ),
    responses(
        (status = 200, description = "A page of job summaries, newest first: the caller's tenant's, an operator's \
                                      every tenant's.", body = JobPage),
        (status = 400, description = "`invalid_parameter` (with the `field`: `state`, `limit` or `cursor`; without \
                                      one for an unknown parameter).", body = Envelope),
    )
)]
pub(crate) async fn list(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("{rejection}; the parameters are state, limit and cursor"),
        )
    })?;
    let state = query
        .state
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(|reason| ApiError::invalid_parameter("state", reason))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
            ApiError::invalid_parameter(
                "limit",
                format!("limit must be a whole number from 1 to {MAX_PAGE}, got {raw:?}"),
            )
        })?,
    };
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;

    let states: &[JobState] = match &state {
        Some(state) => std::slice::from_ref(state),
        None => &JobState::ALL,
    };
    let before = cursor.map(|c| (c.created_ms, c.id));
    // An operator lists every tenant's jobs; anyone else only its own tenant's.
    let tenant = (principal.role != Role::Operator).then_some(&principal.tenant);
    let pages = try_join_all(states.iter().map(|&state| app.store.list(tenant, state, limit, before.clone()))).await?;
    // Each state's page holds its newest `limit` jobs before the cursor, so the newest `limit`
    // of their union are the newest overall; more remain if the union overflows or any state
    // had more.
    let any_state_has_more = pages.iter().any(|(_, next)| next.is_some());
    let mut entries: Vec<(u64, String)> = pages.into_iter().flat_map(|(page, _)| page).collect();
    entries.sort_by(|a, b| b.cmp(a));
    let mut has_more = any_state_has_more || entries.len() > limit;
    entries.truncate(limit);

    // A job that vanished between the listing and the loading is left out.
    let mut loaded = futures::stream::iter(entries)
        .map(|entry| {
            let store = app.store.clone();
            async move { store.get(&entry.1).await.map(|job| (entry, job)) }
        })
        .buffered(LOADING_AT_ONCE);
    let (mut jobs, mut bytes, mut last) = (Vec::new(), 0, None);
    while let Some((entry, job)) = loaded.try_next().await? {
        let Some(job) = job else { continue };
        if !fits(&mut jobs, &mut bytes, JobSummary::of(&job), MAX_PAGE_BYTES) {
            has_more = true;
            break;
        }
        last = Some(entry);
    }
    let next_cursor = has_more.then_some(last).flatten().map(|(created_ms, id)| Cursor { created_ms, id }.encode());
    let next = next_cursor.as_ref().map(|cursor| {
        let state = state.map_or(String::new(), |s| format!("state={s}&"));
        format!("/v1/jobs?{state}limit={limit}&cursor={cursor}")
    });
    Ok(Json(JobPage { jobs, next_cursor, next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(n: u64) -> JobSummary {
        JobSummary {
            id: format!("01J0000000000000000000{n:04}"),
            tenant: "test".parse().unwrap(),
            state: JobState::Queued,
            created_at_ms: n,
            updated_at_ms: n,
            program: "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4".parse().unwrap(),
            acceptance: None,
            failure_reason: None,
        }
    }

    #[test]
    fn a_page_stops_before_its_byte_limit_but_always_holds_one_job() {
        let one = serde_json::to_vec(&summary(0)).unwrap().len() + 1;
        let (mut page, mut bytes) = (Vec::new(), 0);
        let taken = (0..10).take_while(|&n| fits(&mut page, &mut bytes, summary(n), 3 * one)).count();
        assert_eq!((taken, page.len()), (3, 3));
        assert!(bytes <= 3 * one);

        let (mut page, mut bytes) = (Vec::new(), 0);
        assert!(fits(&mut page, &mut bytes, summary(0), 1), "a first job goes in whatever its size");
        assert!(!fits(&mut page, &mut bytes, summary(1), 1));
        assert_eq!(page.len(), 1);
    }

    #[test]
    fn server_timing_names_each_part_in_milliseconds() {
        let (admit, store, total) =
            (Duration::from_micros(190), Duration::from_micros(2_250), Duration::from_micros(2_470));
        assert_eq!(server_timing(admit, store, total, None), "admit;dur=0.190, store;dur=2.250, total;dur=2.470");
        assert_eq!(
            server_timing(admit, store, total, Some(Duration::from_micros(4_001))),
            "admit;dur=0.190, store;dur=2.250, total;dur=2.470, wait;dur=4.001"
        );
    }
}
