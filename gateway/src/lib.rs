//! Shoal's stateless HTTP gateway: accepts job submissions, puts them on the shard streams and
//! serves job state. Everything lives in Redis, so any number of gateways can run side by side.
//!
//! Every endpoint but `/healthz`, `/openapi.json` and the dashboard's page (`/ui`) needs an API
//! key (`Authorization: Bearer shoal_…`, made with `shoal keys create`): **401**
//! `unauthenticated` without one, `invalid_api_key` for one that is unknown or revoked. A key
//! belongs to a tenant; it sees only that tenant's jobs (another tenant's job id answers **404**
//! `job_not_found`), and an operator's key sees all.
//!
//! | endpoint | answers |
//! |---|---|
//! | `POST /v1/jobs` | body: a JSON job spec (`Content-Type: application/json`, at most [`GatewayConfig::max_body_bytes`]; its `args`, `env` and `inputs` at most [`shoal_jobs::JobSpec::MAX_PAYLOAD_BYTES`], 256 KiB, together, else **413** `spec_too_large` naming the largest of the three). **202** with the job and `Location: /v1/jobs/{id}`. With an `Idempotency-Key` header (scoped to the tenant) already used for the same spec: **200** with that job and `Idempotent-Replayed: true` (not queued again); used for a different spec: **422** `idempotency_key_reused`. |
//! | `GET /v1/jobs/{id}` | **200** the job with its state and executions (and, for a job with `notify`, `webhook_attempts`: each delivery attempt's event, number, time, answer and outcome) (and, for a job with `fan_out`, `tasks`: how many files there are, succeeded and failed, the failed ones by name, how many `tasks` they were batched into and `tasks_finished`, and the gathered `output`); **404** `job_not_found`; **400** `invalid_job_id` (field `id`) unless the id is a ULID (26 Crockford base-32 characters, the first `0`–`7`: one past `7ZZZ…` would overflow 128 bits). |
//! | `GET /v1/jobs/{id}?wait=30s` | Long-poll: the same answer as soon as the job is terminal, or as it is after the wait (`30s`, `30`, `500ms`; at most 60 s; else **400** `invalid_parameter`, field `wait`). Woken by the script that changed the job (see `events.rs`), never by polling; `/result?wait=` likewise waits until its answer would be no **409**. The request timeout stretches by the wait. |
//! | `GET /v1/jobs/{id}/events` | **200** `text/event-stream`: the job's changes, each once and in order — `state` events (`queued`, `running`, …) and a `verdict` event for the verifier's — with the change's number as `id` and `{job, seq, state, verdict?}` as `data`, until the job is final; a client reconnecting with `Last-Event-ID` gets what came after (on any gateway: the job keeps its latest 64 changes in Redis); **204** for a final job with nothing after it. |
//! | `GET /v1/events` | **200** `text/event-stream`: the same events for every job of the caller's tenant (an operator's: all), as they happen; not resumable (no ids): a `resync` event, first and whenever changes may have been missed, tells the client to read the listing again. Streams and long-polls end when the gateway drains. |
//! | `GET /v1/jobs/{id}/result` | **200** `{job, state, acceptance, accepted, output, stdout, stderr, exit_code, fuel_consumed}` once succeeded and the verifier had its say (`accepted` only when `verified` or `corrected`); **409** `not_accepted` (with `acceptance: pending`) before that unless `?early=true`; **409** `not_finished` (with `state`) while queued or running; **422** `job_failed` (with `state` and the failure `reason`) or `job_cancelled` when it ended without a result — a failure the program would meet on any worker once the verifier has checked it (**409** `not_accepted` before that, unless `?early=true`). |
//! | `DELETE /v1/jobs/{id}` | **200** the job, now `cancelled` (a queued job never runs, a running one is stopped by its worker within about a second, a fanned-out job's tasks are cancelled with it; again for a cancelled job finishes cancelling its tasks); **409** `job_finished` (with `state`) for a job that succeeded or failed. |
//! | `GET /v1/jobs?state=&limit=&cursor=` | **200** `{jobs, next_cursor, next}`, newest first, the caller's tenant's (an operator's: every tenant's); `state` filters (all states when absent), `limit` is 1–500 (50 by default), `cursor` is the previous page's `next_cursor`. Each job is a summary — `id`, `tenant`, `state`, `created_at_ms`, `updated_at_ms`, `program`, and `acceptance` or `failure_reason` once known — never the spec's `args`, `env` or `inputs` (`GET /v1/jobs/{id}` has the whole job); a page stops short of 256 KiB (with a `next_cursor` for the rest). |
//! | `GET /v1/jobs/{id}/files/output[/{path}]`, `…/files/inputs/{i}[/{path}]`, `…/files/stdout`, `…/files/stderr` | The job's recorded output (whatever its acceptance, which the job shows), its input `i` (from 0, in the spec's order) and its logs, read through [`GatewayConfig::content_gateways`] with every block verified. A directory: **200** `{job, tree, path, cid, kind, entries: [{name, cid, kind, size}]}` (`kind` `file`, `directory` or `symlink`). A file: **200** its bytes, typed by its extension from an allow-list (PNG, JPEG, GIF, WebP, plain text, JSON; anything else `application/octet-stream` with `Content-Disposition: attachment`), with `Content-Security-Policy: sandbox` and `nosniff` so nothing a program wrote runs on this origin; `ETag` is the CID (**304** for `If-None-Match`). **404** `path_not_found` (field `path`), `input_not_found` (field `index`), `no_output` for a job that ended without one; **409** `not_finished` while it runs; **413** `file_too_large` over [`GatewayConfig::max_file_bytes`]; **501** `content_not_configured` without sources; **503** `content_unavailable` when the sources cannot deliver. |
//! | `POST /v1/pipelines` | body: a JSON pipeline spec (`shoal_jobs::PipelineSpec`: named `inputs` and `stages`), read as a job spec is (415, 413, `malformed_json`); an invalid one is **400** `invalid_spec` naming the field (`stages.remove.inputs[0].from`); a stage asking for more fuel than the tenant may **403** `quota_exceeded` (field `stages.<name>.limits.fuel`). **202** with its status and `Location: /v1/pipelines/{id}`; an `Idempotency-Key` already used for the same spec **200** with that pipeline and `Idempotent-Replayed: true`, for another spec **422** `idempotency_key_reused`. The workers' driver runs its stages as jobs of the tenant. |
//! | `GET /v1/pipelines/{id}` | **200** `{id, tenant, state, created_ms, finished_ms, message, stages: [{name, counts: {waiting, running, succeeded, failed, skipped}, units: [{file, state, job, output, reason}]}]}`; **404** `pipeline_not_found` (also another tenant's); **400** `invalid_pipeline_id` (field `id`). |
//! | `DELETE /v1/pipelines/{id}` | **200** its status, now `cancelled` (the driver cancels its unfinished jobs; again for a cancelled one); **409** `pipeline_finished` (with `state`) for one that succeeded or failed. |
//! | `GET /v1/workers` (operators) | **200** `{workers, live_within_ms, hot_shards, shards}`: the workers heard from within three default heartbeats (15 s) (id, capacity, cache bytes, labels, shards, start and last-seen times), most recent first, each hot shard's extra readers, and every shard's `owner` (its best-ranked live worker), `unread` and `pending` entries and `extra_readers`. |
//! | `GET /ui` | The dashboard (no key needed for the page itself: it asks for one, keeps it in the tab's `sessionStorage` and calls this API with it): jobs, one job with its executions, verdict, logs and files (images shown), workers and shards. Static files embedded in the binary, served with a strict `Content-Security-Policy`. |
//! | `GET /healthz` | **200** `{"status":"ok"}` when Redis answers a PING, **503** `redis_unavailable` otherwise. |
//! | `GET /openapi.json` | **200** this API's OpenAPI 3.1 document, generated from the handlers and types (`openapi.rs`). |
//! | `GET /metrics` (operators) | Prometheus (OpenMetrics) text: requests by route and status, latency, jobs submitted, shard backlog; each limited wallet's Filecoin limit, spent, reserved and refused attoFIL. |
//!
//! Each gateway also delivers webhooks (`webhooks.rs`): the events of jobs with `notify`, signed
//! the Standard Webhooks way with the tenant's secret, retried, never to addresses that are not
//! public unless [`GatewayConfig::webhook_allowed_networks`] lets them.
//!
//! Every error is `{"error": {"code": "...", "message": "...", "field": "..."}}` (`field` when
//! one request field is at fault, e.g. `inputs[0].cid`). Bad specs are **400**: `malformed_json`
//! for a body that is not JSON or has anything after the spec's object; `invalid_spec` for a
//! body that is JSON but not an object (no field), and with the field for a missing one
//! (`program`), an unknown one, a wrong type or value — a NUL in `args[i]` or in `env.NAME`, a
//! mount path (`inputs[i].path`) that is not absolute and normal (no `//`, trailing `/`, `.` or
//! `..`) or lies in `/outputs`; a wrong content type **415**; a body over the limit **413**
//! (answered as soon as the type or the size is known, with `Connection: close`; a refused body is
//! never buffered);
//! `args`, `env` and `inputs` over 256 KiB together **413** `spec_too_large` (with the field);
//! more than [`GatewayConfig::max_backlog`] entries outstanding on the shard streams **429**
//! `backlog_full` with `Retry-After`; over a tenant's quotas (`shoal tenants set-quotas`) **429**
//! `too_many_outstanding` or `rate_limited` with `Retry-After`, or **403** `quota_exceeded` (with
//! the field) for more fuel than it may ask; a tenant's key on an operator's endpoint **403**
//! `forbidden`; Redis unreachable **503**; a request over [`GatewayConfig::request_timeout`] **504**.
//! A connection beyond [`GatewayConfig::max_connections`] is answered **503**
//! `too_many_connections` (with `Retry-After`) and closed at once; one that takes longer than
//! [`GatewayConfig::header_read_timeout`] (10 s) to send a request's headers, or idles that long
//! between requests, is closed ([`serve_with`]).
//! Every answer carries `x-request-id` (the client's, or a fresh one).

#![warn(missing_docs)]

mod api_error;
mod auth;
mod backpressure;
mod config;
mod connections;
mod events;
mod files;
mod jobs;
mod layers;
mod metrics;
mod openapi;
mod pipelines;
mod ui;
mod webhooks;

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{middleware, Extension, Json, Router};
use shoal_jobs::{
    redis_addresses, redis_urls, shard_backlogs, ApiKeys, Candidate, ConnectOptions, Determinism, FanOutStore,
    HotShards, JobStore, Membership, PipelineStore, Principal, RedisConnection, ShardAssignment, ShardQueue,
    ShardRouter, SpendingLedger, WebhookStore,
};
use tokio::net::TcpListener;

pub use config::{GatewayConfig, GatewayError};

use api_error::ApiError;
use auth::Access;
use backpressure::Backlog;
use metrics::Metrics;
use webhooks::Deliverer;

/// What every handler shares, behind one `Arc`: axum clones the state for every request, and
/// cloning a dozen Redis handles, caches and settings each time showed in a profile of the
/// gateway at 300 submissions a second.
#[derive(Clone)]
struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`]: handles on Redis and the settings.
struct AppParts {
    store: JobStore,
    fanouts: FanOutStore,
    /// Pipelines, created and cancelled here, run by the workers' driver.
    pipelines: PipelineStore,
    queue: ShardQueue,
    redis: RedisConnection,
    placement: ShardRouter,
    config: Arc<GatewayConfig>,
    metrics: Arc<Metrics>,
    backlog: Arc<Backlog>,
    access: Access,
    webhooks: WebhookStore,
    /// The wallets' spending books, read (only) for `/metrics`.
    ledger: SpendingLedger,
    /// Where job files are read from.
    content: files::Content,
    /// The webhook deliverer, stopped when the last route is dropped.
    _deliverer: Arc<Delivering>,
    /// The subscription to job changes and who waits for them (long-polls, event streams),
    /// ended when the last route is dropped.
    changes: Arc<events::Changes>,
}

/// The webhook delivery task of a router; aborted with it.
struct Delivering(tokio::task::JoinHandle<()>);

impl Drop for Delivering {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to Redis, creates the shard streams' consumer groups if missing, and returns the
/// gateway's routes with their middleware.
///
/// The connection reconnects by itself: while Redis is down requests answer 503, and they
/// succeed again once it is back, without restarting the gateway.
pub async fn router(config: GatewayConfig) -> Result<Router, GatewayError> {
    if config.shards == 0 {
        return Err(GatewayError::InvalidConfig("shards must be at least 1".into()));
    }
    if config.max_body_bytes == 0 {
        return Err(GatewayError::InvalidConfig("max_body_bytes must be at least 1".into()));
    }
    if config.max_connections == 0 || config.header_read_timeout.is_zero() {
        return Err(GatewayError::InvalidConfig("max_connections and header_read_timeout must be above zero".into()));
    }
    if let Err(e) =
        shoal_jobs::JobSpec::check_verification(&config.default_verification, Determinism::Deterministic, None)
    {
        return Err(GatewayError::InvalidConfig(format!("default verification: {e}")));
    }
    let content = files::Content::new(&config)?;
    let redis = connect(&config).await?;
    let queue = ShardQueue::new(redis.clone());
    queue.ensure_groups(config.shards).await.map_err(GatewayError::ShardGroups)?;

    let metrics = Arc::new(Metrics::new());
    let backlog = Backlog::sample(redis.clone(), &config);
    let store = JobStore::new(redis.clone());
    let access = Access::new(ApiKeys::new(redis.clone()), store.clone(), config.backlog_sample_interval);
    let webhooks = WebhookStore::new(redis.clone());
    let deliverer = Deliverer::new(webhooks.clone(), store.clone(), ApiKeys::new(redis.clone()), &config);
    let delivering = Arc::new(Delivering(tokio::spawn(deliverer.run())));
    let ledger = SpendingLedger::new(redis.clone());
    let state = AppState(Arc::new(AppParts {
        store,
        fanouts: FanOutStore::new(redis.clone()),
        pipelines: PipelineStore::new(redis.clone()),
        queue,
        redis,
        placement: ShardRouter::new(config.shards),
        config: Arc::new(config.clone()),
        metrics: metrics.clone(),
        backlog,
        access,
        webhooks,
        ledger,
        content,
        _deliverer: delivering,
        changes: Arc::new(events::Changes::follow(&config.redis_url)),
    }));
    // Every route but the health check needs a key, unknown paths included, so that what
    // exists is not told to strangers.
    let keyed = Router::new()
        .route("/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/v1/jobs/{id}", get(jobs::status).delete(jobs::cancel))
        .route("/v1/jobs/{id}/result", get(jobs::result))
        .route("/v1/jobs/{id}/events", get(events::job_events))
        .route("/v1/events", get(events::all_events))
        .route("/v1/jobs/{id}/files/output", get(files::output))
        .route("/v1/jobs/{id}/files/output/{*path}", get(files::output_path))
        .route("/v1/jobs/{id}/files/inputs/{index}", get(files::input))
        .route("/v1/jobs/{id}/files/inputs/{index}/{*path}", get(files::input_path))
        .route("/v1/jobs/{id}/files/stdout", get(files::stdout))
        .route("/v1/jobs/{id}/files/stderr", get(files::stderr))
        .route("/v1/pipelines", post(pipelines::create))
        .route("/v1/pipelines/{id}", get(pipelines::status).delete(pipelines::cancel))
        .route("/v1/workers", get(workers))
        .route("/metrics", get(metrics::scrape))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    // The dashboard is static: it asks for a key and sends it with its API calls.
    let dashboard =
        Router::new().route("/ui", get(ui::index)).route("/ui/", get(ui::index)).route("/ui/{file}", get(ui::asset));
    // The document needs no key, like the health check: generated clients fetch it, and it
    // tells no more than the README.
    let routes = Router::new()
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi::document))
        .merge(dashboard)
        .merge(keyed)
        .with_state(state);
    Ok(layers::apply(routes, metrics, config.request_timeout))
}

/// Connects to the Redis of `config`, failing fast ([`ConnectOptions::fail_fast`] within
/// [`GatewayConfig::redis_timeout`]): a request waiting on a reconnect should get 503 rather
/// than hang; the next request starts a new attempt.
async fn connect(config: &GatewayConfig) -> Result<RedisConnection, GatewayError> {
    let urls = redis_urls(&config.redis_url);
    RedisConnection::open_with(&urls, ConnectOptions::fail_fast(config.redis_timeout))
        .await
        .map_err(|source| GatewayError::Connect { address: redis_addresses(&urls), source })
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting connections
/// and returns once the requests in flight have been answered; with the default connection
/// limits ([`GatewayConfig::default_max_connections`],
/// [`GatewayConfig::DEFAULT_HEADER_READ_TIMEOUT`]).
pub async fn serve<F>(listener: TcpListener, router: Router, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let defaults = GatewayConfig::new(String::new(), 1);
    connections::serve(listener, router, &defaults, shutdown).await
}

/// [`serve`] with the connection limits of `config`: at most
/// [`GatewayConfig::max_connections`] open (a new one beyond is answered 503
/// `too_many_connections` and closed at once), each closed if it takes longer than
/// [`GatewayConfig::header_read_timeout`] to send a request's headers. Fails at once, with
/// [`io::ErrorKind::InvalidInput`], if either is zero.
pub async fn serve_with<F>(listener: TcpListener, router: Router, config: &GatewayConfig, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    connections::serve(listener, router, config, shutdown).await
}

/// `GET /v1/workers` (operators only): the live workers, most recently heard from first, the
/// hot shards with the workers picked to read them besides their owners, and each shard's
/// owner and backlog.
#[utoipa::path(
    get,
    path = "/v1/workers",
    operation_id = "listWorkers",
    tag = "operators",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The live workers, the hot shards and every shard's owner and backlog.",
            body = openapi::Workers),
        (status = 403, description = "`forbidden`: a tenant's key.", body = api_error::Envelope),
    )
)]
async fn workers(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth::operator_only(&principal)?;
    // Gateways do not know each worker's heartbeat: the default's window.
    let live_within = Membership::live_window(Membership::DEFAULT_HEARTBEAT);
    let live = Membership::new(app.redis.clone()).live(live_within).await?;
    let hot = HotShards::read(&app.redis).await?;
    let shards: Vec<u32> = (0..app.config.shards).collect();
    let backlogs = shard_backlogs(&app.redis, &shards).await?;
    // The best-ranked live worker reads a shard whatever the workers' `--shard-replicas`
    // (further replicas are the next-ranked): the gateway can name it without their settings.
    let candidates: Vec<Candidate> = live.iter().map(|m| Candidate::new(&m.info.id, m.info.capacity)).collect();
    let assignment = ShardAssignment::new(app.config.shards, 1);
    let shards: Vec<serde_json::Value> = backlogs
        .iter()
        .map(|backlog| {
            let owner = assignment.owners(backlog.shard, &candidates).first().map(|c| c.id.clone());
            serde_json::json!({
                "shard": backlog.shard,
                "owner": owner,
                "unread": backlog.unread,
                "pending": backlog.pending,
                "extra_readers": hot.extra_readers.get(&backlog.shard).cloned().unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "workers": live,
        "live_within_ms": live_within.as_millis() as u64,
        "hot_shards": hot.extra_readers,
        "shards": shards,
    })))
}

/// `GET /healthz`: whether this gateway can reach Redis.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health",
    tag = "service",
    responses(
        (status = 200, description = "Redis answers.", body = openapi::Health),
        (status = 503, description = "`redis_unavailable`.", body = api_error::Envelope),
    )
)]
async fn health(State(app): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut redis = app.redis.clone();
    // The connection's own timeouts bound one attempt; this bounds a reconnect's retries too.
    let ping =
        tokio::time::timeout(app.config.redis_timeout * 2, redis::cmd("PING").query_async::<String>(&mut redis)).await;
    match ping {
        Ok(Ok(_)) => Ok(Json(serde_json::json!({ "status": "ok" }))),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            format!("Redis does not answer: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            format!("Redis did not answer a PING within {:?}", app.config.redis_timeout * 2),
        )),
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no endpoint at {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
}
