//! Prometheus metrics: request counts and latencies by route, submitted jobs, the backlog of
//! every shard stream, and every limited wallet's Filecoin books — the last two read from Redis
//! at scrape time, so any gateway reports the same figures.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::future::join_all;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use shoal_jobs::{Budget, Principal, SpendingError, SpendingLedger};

use crate::api_error::ApiError;
use crate::AppState;

/// The route label of requests that matched no route: one value, so unknown paths cannot
/// multiply the series.
const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteStatusLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// A step of answering a request whose time is recorded on its own (issue 15's per-job cost
/// breakdown): `auth` for every authenticated request, the rest for submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Looking the API key up (cached for a few seconds).
    Auth,
    /// Reading the request body.
    ReadBody,
    /// Parsing and validating the spec.
    Validate,
    /// The tenant's quotas.
    Admit,
    /// Creating the job record and queueing it (Redis).
    Store,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Auth => "auth",
            Phase::ReadBody => "read_body",
            Phase::Validate => "validate",
            Phase::Admit => "admit",
            Phase::Store => "store",
        }
    }
}

type PhaseFamily = Family<PhaseLabels, Histogram, fn() -> Histogram>;

/// 10 µs × 1.25ⁿ up to about 13 s: 25 % apart, fine enough for percentiles at the microsecond
/// end (the same bounds as the workers' phases).
fn phase_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 1.25, 64))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ShardLabels {
    shard: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WalletLabels {
    wallet: String,
}

/// A gauge of attoFIL. Prometheus values are float64, so amounts above 2⁵³ attoFIL (about
/// 0.009 FIL) are rounded here; `shoal filecoin spent` prints the exact figures.
type AttoFilGauge = Family<WalletLabels, Gauge<f64, AtomicU64>>;

/// Every limited wallet's books from the spending ledger, as gauges labelled by wallet.
#[derive(Default)]
struct WalletGauges {
    limit: AttoFilGauge,
    spent: AttoFilGauge,
    reserved: AttoFilGauge,
    refused: AttoFilGauge,
    refusals: Family<WalletLabels, Gauge>,
}

impl WalletGauges {
    fn clear(&self) {
        for family in [&self.limit, &self.spent, &self.reserved, &self.refused] {
            family.clear();
        }
        self.refusals.clear();
    }

    fn set(&self, wallet: &str, budget: &Budget) {
        let labels = WalletLabels { wallet: wallet.to_string() };
        self.limit.get_or_create(&labels).set(budget.limit as f64);
        self.spent.get_or_create(&labels).set(budget.spent as f64);
        self.reserved.get_or_create(&labels).set(budget.reserved as f64);
        self.refused.get_or_create(&labels).set(budget.refused as f64);
        self.refusals.get_or_create(&labels).set(i64::try_from(budget.refusals).unwrap_or(i64::MAX));
    }
}

/// The gateway's metrics and the registry that exposes them.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RouteStatusLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    /// New jobs accepted (idempotent replays are not counted again).
    pub jobs_submitted: Counter,
    /// Submissions answered with an existing job because of their Idempotency-Key.
    pub jobs_replayed: Counter,
    /// Submissions refused with 429 because the backlog was over its limit.
    pub jobs_refused: Counter,
    /// Submissions answered from an identical invocation's accepted result (memoised).
    pub jobs_memoised: Counter,
    submit_seconds: Family<SubmittedLabels, Histogram>,
    shard_backlog: Family<ShardLabels, Gauge>,
    redis_up: Gauge,
    wallets: WalletGauges,
    phases: PhaseFamily,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let requests = Family::<RouteStatusLabels, Counter>::default();
        // 1 ms to about 16 s: Redis-bound requests sit at the low end, timeouts at the top.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let jobs_submitted = Counter::default();
        let jobs_replayed = Counter::default();
        let jobs_refused = Counter::default();
        let jobs_memoised = Counter::default();
        // 25 µs to about 1.6 s: a memoised answer takes well under a millisecond.
        let submit_seconds = Family::<SubmittedLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(25e-6, 2.0, 17))
        });
        let shard_backlog = Family::<ShardLabels, Gauge>::default();
        let redis_up = Gauge::default();
        let wallets = WalletGauges::default();
        let phases: PhaseFamily = Family::new_with_constructor(phase_buckets);
        let mut root = Registry::default();
        // The wallets' books are the system's, not this gateway's: named `shoal_filecoin_…`.
        let filecoin = root.sub_registry_with_prefix("shoal_filecoin");
        filecoin.register("limit_attofil", "Each limited wallet's spending limit, attoFIL", wallets.limit.clone());
        filecoin.register(
            "spent_attofil",
            "What each limited wallet spent on settled retrievals, attoFIL",
            wallets.spent.clone(),
        );
        filecoin.register(
            "reserved_attofil",
            "What each limited wallet holds reserved for retrievals under way, attoFIL",
            wallets.reserved.clone(),
        );
        filecoin.register(
            "refused_attofil",
            "What reservations refused for want of budget asked of each limited wallet, summed, attoFIL",
            wallets.refused.clone(),
        );
        filecoin.register(
            "refusals",
            "Reservations refused for want of budget, per limited wallet",
            wallets.refusals.clone(),
        );
        let registry = root.sub_registry_with_prefix("shoal_gateway");
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route (with ?wait=, the wait included)",
            latency.clone(),
        );
        registry.register("jobs_submitted", "New jobs accepted and queued", jobs_submitted.clone());
        registry.register(
            "jobs_replayed",
            "Submissions answered with an existing job because of their Idempotency-Key",
            jobs_replayed.clone(),
        );
        registry.register(
            "jobs_refused",
            "Submissions refused with 429 because the backlog was over its limit",
            jobs_refused.clone(),
        );
        registry.register(
            "jobs_memoised",
            "Submissions answered at once from an identical invocation's accepted result",
            jobs_memoised.clone(),
        );
        registry.register(
            "submit_duration_seconds",
            "Time to answer accepted submissions, from the request's arrival, by how they were answered \
             (queued, memoised, replayed)",
            submit_seconds.clone(),
        );
        registry.register(
            "shard_backlog",
            "Entries on each shard stream (read or not), at scrape time",
            shard_backlog.clone(),
        );
        registry.register("redis_up", "Whether Redis answered at the last scrape (1) or not (0)", redis_up.clone());
        registry.register(
            "phase_seconds",
            "Time spent in each step of answering: auth (every request), then a submission's body, \
             validation, quotas and Redis",
            phases.clone(),
        );
        Metrics {
            registry: root,
            requests,
            latency,
            jobs_submitted,
            jobs_replayed,
            jobs_refused,
            jobs_memoised,
            submit_seconds,
            shard_backlog,
            redis_up,
            wallets,
            phases,
        }
    }

    /// Adds `elapsed` to `phase`'s histogram.
    pub(crate) fn observe(&self, phase: Phase, elapsed: std::time::Duration) {
        self.phases.get_or_create(&PhaseLabels { phase: phase.name() }).observe(elapsed.as_secs_f64());
    }
}

/// How an accepted submission was answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SubmittedLabels {
    outcome: &'static str,
}

/// How an accepted submission was answered, for `submit_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// A new job, queued.
    Queued,
    /// A new job, answered from an identical invocation's accepted result.
    Memoised,
    /// The job an earlier submission with the same Idempotency-Key created.
    Replayed,
}

impl Submitted {
    fn name(self) -> &'static str {
        match self {
            Submitted::Queued => "queued",
            Submitted::Memoised => "memoised",
            Submitted::Replayed => "replayed",
        }
    }
}

impl Metrics {
    /// Records that a submission received `took` ago was answered as `outcome`.
    pub(crate) fn submitted(&self, outcome: Submitted, took: std::time::Duration) {
        self.submit_seconds.get_or_create(&SubmittedLabels { outcome: outcome.name() }).observe(took.as_secs_f64());
    }
}

/// Middleware counting every answered request by route template and status.
pub(crate) async fn record(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, MatchedPath::as_str).to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics
        .latency
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics.requests.get_or_create(&RouteStatusLabels { method, route, status }).inc();
    response
}

/// Every limited wallet with its books, read now.
async fn books(ledger: &SpendingLedger) -> Result<Vec<(String, Budget)>, SpendingError> {
    let wallets = ledger.wallets().await?;
    let budgets: Result<Vec<Budget>, _> =
        join_all(wallets.iter().map(|wallet| ledger.status(wallet))).await.into_iter().collect();
    Ok(wallets.into_iter().zip(budgets?).collect())
}

/// `GET /metrics`: the OpenMetrics text, with the shard backlog and the wallets' books read
/// from Redis now.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operators",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Prometheus (OpenMetrics) text: requests by route and status, latency, jobs \
                                      submitted, shard backlog, each limited wallet's Filecoin limit, spent, \
                                      reserved and refused attoFIL.", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 403, description = "`forbidden`: a tenant's key.", body = crate::api_error::Envelope),
    )
)]
pub(crate) async fn scrape(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    crate::auth::operator_only(&principal)?;
    let shards = app.placement.shards();
    let lengths: Result<Vec<u64>, _> =
        join_all((0..shards).map(|shard| app.queue.len(shard))).await.into_iter().collect();
    let metrics = &app.metrics;
    match lengths {
        Ok(lengths) => {
            metrics.redis_up.set(1);
            for (shard, len) in (0..shards).zip(lengths) {
                metrics.shard_backlog.get_or_create(&ShardLabels { shard }).set(i64::try_from(len).unwrap_or(i64::MAX));
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the shard backlog for /metrics");
            // A stale backlog would look like a stalled queue: report none rather than old numbers.
            metrics.redis_up.set(0);
            metrics.shard_backlog.clear();
        }
    }
    // Cleared first, so a wallet's series stop rather than go stale if its books cannot be read.
    metrics.wallets.clear();
    match books(&app.ledger).await {
        Ok(books) => books.iter().for_each(|(wallet, budget)| metrics.wallets.set(wallet, budget)),
        Err(error) => tracing::warn!(%error, "cannot read the wallets' books for /metrics"),
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry).map_err(|e| {
        ApiError::new(http::StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("encoding metrics: {e}"))
    })?;
    Ok(([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}
