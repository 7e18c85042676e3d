//! The pipeline endpoints: create, status and cancel. The gateway only stores a pipeline and
//! ends it; a worker's driver runs its stages as ordinary jobs of the pipeline's tenant.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use shoal_jobs::{JobState, PipelineCreated, PipelineSpec, PipelineState, PipelineStatus, Principal, StoreError};
use utoipa::{IntoParams, IntoResponses};

use crate::api_error::{ApiError, Envelope};
use crate::jobs::{idempotency_key, parse_ulid, read_json_body, IDEMPOTENT_REPLAYED};
use crate::AppState;

/// `POST /v1/pipelines`: stores the pipeline in the body, to be run by the workers' driver.
///
/// 202 with its status (every unit waiting); with an `Idempotency-Key` seen before for the
/// same spec, 200 with the pipeline that key created (and `Idempotent-Replayed: true`).
#[utoipa::path(
    post,
    path = "/v1/pipelines",
    operation_id = "createPipeline",
    tag = "pipelines",
    security(("api_key" = [])),
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        description = "Makes the creation idempotent within the key's tenant: sent again with the same spec, \
                       the pipeline it created is answered (200), not created again.",
        min_length = 1,
        max_length = 255,
        example = "nightly-scenes-2026-12-06"
    )),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "The pipeline spec: named `inputs` (CIDs) and `stages`, each a program run as a job over \
                       pipeline inputs (`pipeline.<name>`) or earlier stages' outputs (`<stage>`, `<stage>.all`), \
                       per file with `each`, conditionally with `when`. At most 1 MiB (the gateway's limit).",
        example = json!(example_spec())
    ),
    responses(
        (status = 202, description = "Stored; the driver runs it.", body = PipelineStatus,
            headers(("Location" = String, description = "`/v1/pipelines/{id}`"))),
        (status = 200, description = "The `Idempotency-Key` was used before for the same spec: the pipeline it \
                                      created.", body = PipelineStatus,
            headers(
                ("Location" = String, description = "`/v1/pipelines/{id}`"),
                ("Idempotent-Replayed" = String, description = "`true`")
            )),
        (status = 400, description = "`malformed_json`, `invalid_spec` (with the `field` at fault, e.g. \
                                      `stages.remove.inputs[0].from`, unless the body is not an object), \
                                      `invalid_idempotency_key`, `body_unreadable`.", body = Envelope),
        (status = 403, description = "`quota_exceeded`: a stage asks for more fuel than the tenant may \
                                      (field `stages.<name>.limits.fuel`).", body = Envelope),
        (status = 413, description = "`body_too_large` (answered with `Connection: close`), or \
                                      `spec_too_large` (with the field).", body = Envelope),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`.",
            body = Envelope),
        (status = 422, description = "`idempotency_key_reused`: the key was used for a different spec.",
            body = Envelope),
        (status = 429, description = "`rate_limited` or `too_many_outstanding` (the tenant's quotas).",
            body = Envelope, headers(("Retry-After" = u64, description = "Seconds to wait before trying again."))),
    )
)]
pub(crate) async fn create(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = match read_json_body(&headers, body, app.config.max_body_bytes).await {
        Ok(body) => body,
        Err(refused) => return Ok(refused),
    };
    let spec = PipelineSpec::from_json(&body)?;
    let idempotency_key = idempotency_key(&headers)?;
    let tenant = &principal.tenant;
    if let Err(refused) = app.access.admit_pipeline(tenant, &spec).await {
        return Ok(refused);
    }
    let created = app.pipelines.create(&spec, tenant, idempotency_key).await.map_err(|error| match error {
        // The store's error names a job; this one is about a pipeline.
        StoreError::IdempotencyConflict { key, job } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!(
                "Idempotency-Key {key:?} was already used for pipeline {job} with a different spec; use a new key for a new pipeline"
            ),
        ),
        other => other.into(),
    })?;
    let (status, replayed) = match &created {
        PipelineCreated::New(pipeline) => {
            tracing::info!(pipeline = %pipeline.id, %tenant, stages = spec.stages().len(), "pipeline created");
            (StatusCode::ACCEPTED, false)
        }
        PipelineCreated::Existing(_) => (StatusCode::OK, true),
    };
    let id = &created.pipeline().id;
    let current = app.pipelines.status(id).await?.ok_or_else(|| not_found(id))?;
    let location = HeaderValue::try_from(format!("/v1/pipelines/{id}")).expect("a ULID is a valid header value");
    let mut response = (status, [(LOCATION, location)], Json(current)).into_response();
    if replayed {
        response.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The `{id}` of `/v1/pipelines/{id}`, as the document names it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(dead_code, reason = "documentation only: the handlers take the id as `Path<String>`")]
pub(crate) struct PipelineId {
    /// The pipeline's id: a ULID.
    #[param(example = "01MA2Q0F8RZ6W4N0V3C5YH7KJD")]
    id: String,
}

/// The 400 of `/v1/pipelines/{id}` for an id that is not a ULID.
#[derive(IntoResponses)]
#[response(status = 400, description = "`invalid_pipeline_id` (field `id`).")]
#[expect(dead_code, reason = "documentation only: the handlers answer errors as `ApiError`")]
pub(crate) struct InvalidPipelineId(Envelope<'static>);

/// The 404 of `/v1/pipelines/{id}`.
#[derive(IntoResponses)]
#[response(status = 404, description = "`pipeline_not_found`: no such pipeline, or another tenant's.")]
#[expect(dead_code, reason = "documentation only: the handlers answer errors as `ApiError`")]
pub(crate) struct PipelineNotFound(Envelope<'static>);

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "pipeline_not_found", format!("no pipeline with id {id}"))
}

/// The status of the pipeline `raw_id` names, if `principal` may see it: another tenant's
/// pipeline is answered as one that does not exist, as jobs are.
async fn load_status(app: &AppState, principal: &Principal, raw_id: &str) -> Result<PipelineStatus, ApiError> {
    let id = parse_ulid(raw_id).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pipeline_id",
            format!("{raw_id:?} is not a pipeline id (a 26-character ULID): {e}"),
        )
        .with_field("id")
    })?;
    match app.pipelines.status(&id).await? {
        Some(status) if principal.may_access(&status.tenant) => Ok(status),
        _ => Err(not_found(&id)),
    }
}

/// `GET /v1/pipelines/{id}`: the pipeline's state and every stage's units.
#[utoipa::path(
    get,
    path = "/v1/pipelines/{id}",
    operation_id = "getPipeline",
    tag = "pipelines",
    security(("api_key" = [])),
    params(PipelineId),
    responses(
        (status = 200, description = "The pipeline: its state, and each stage's units (one, or one per file of a \
                                      stage run per file once the files are listed) with their counts, jobs, \
                                      outputs and why one failed or was skipped.", body = PipelineStatus),
        InvalidPipelineId,
        PipelineNotFound,
    )
)]
pub(crate) async fn status(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<PipelineStatus>, ApiError> {
    Ok(Json(load_status(&app, &principal, &id).await?))
}

/// `DELETE /v1/pipelines/{id}`: cancels the pipeline unless it ended — no stage starts any
/// more, and the driver cancels its unfinished jobs. 200 with its status (also for one
/// cancelled before); 409 `pipeline_finished` (with `state`) for one that succeeded or failed.
#[utoipa::path(
    delete,
    path = "/v1/pipelines/{id}",
    operation_id = "cancelPipeline",
    tag = "pipelines",
    security(("api_key" = [])),
    params(PipelineId),
    responses(
        (status = 200, description = "The pipeline, now `cancelled`; the driver cancels its unfinished jobs.",
            body = PipelineStatus),
        InvalidPipelineId,
        PipelineNotFound,
        (status = 409, description = "`pipeline_finished` (with `state`): it succeeded or failed first.",
            body = Envelope),
    )
)]
pub(crate) async fn cancel(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<PipelineStatus>, ApiError> {
    let current = load_status(&app, &principal, &id).await?;
    if current.state == PipelineState::Running {
        let why = format!("cancelled by API key {} of tenant {}", principal.key_id, principal.tenant);
        app.pipelines.finish(&current.id, PipelineState::Cancelled, &why).await?;
    }
    // Read again: the driver may have ended it between the two reads.
    let current = load_status(&app, &principal, &id).await?;
    let finished = match current.state {
        PipelineState::Succeeded => Some(JobState::Succeeded),
        PipelineState::Failed => Some(JobState::Failed),
        PipelineState::Running | PipelineState::Cancelled => None,
    };
    if let Some(state) = finished {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "pipeline_finished",
            format!("pipeline {} {} before it could be cancelled", current.id, current.state),
        )
        .with_state(state));
    }
    tracing::info!(pipeline = %current.id, tenant = %current.tenant, key = %principal.key_id, "pipeline cancelled");
    Ok(Json(current))
}

/// The example pipeline: cloud detection per scene, then removal where a scene is cloudy.
fn example_spec() -> Value {
    json!({
        "inputs": {"scenes": "bafybeigprqr2mhzycbjib2vaswxdiqtkhbwvowph2gs4kir4uccoumkl2u"},
        "stages": [
            {
                "name": "detect",
                "program": "bafybeiftif2ncpyug4t5by6wfapozrralajk6jnjqrqtuikt7chgi6afay",
                "inputs": [{"from": "pipeline.scenes", "path": "/inputs"}],
                "each": {"input": 0},
                "writes": ["mask.png", "preview.png", "stats.json"]
            },
            {
                "name": "remove",
                "program": "bafybeihhfatlgd5dk6pc3azzpvippjkx4f54s5j4hmniq6oc7z4qoc42q4",
                "inputs": [
                    {"from": "pipeline.scenes", "path": "/inputs"},
                    {"from": "detect", "path": "/mask"}
                ],
                "each": {"input": 0},
                "when": {"stage": "detect", "file": "stats.json", "field": "cloud_fraction", "op": "gt", "value": 0.05},
                "writes": ["clear.png"]
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_a_valid_pipeline() {
        let spec = PipelineSpec::from_json(example_spec().to_string().as_bytes()).unwrap();
        let order: Vec<&str> = spec.stages_in_order().map(|stage| stage.name.as_str()).collect();
        assert_eq!(order, ["detect", "remove"]);
    }
}
