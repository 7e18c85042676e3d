//! Memoised repeats (`shoal-loadtest latency --memoised N`, issue 15): how fast the gateway
//! answers a tenant's submission identical to a run the verifier accepted. A fresh stack with a
//! verifier (Redis, gateway, the workers, one verifier), one echo-hash job verified `always`,
//! waited for until its result is accepted; then the identical spec POSTed N times in a row on
//! one keep-alive connection, without an Idempotency-Key (which would cost a round trip of its
//! own), each answer expected `201` naming the first job in `memoised_from`. The gateway's time
//! on each is read from the answer's `Server-Timing`, the client's round trip around it; the
//! gateway's `shoal_gateway_submit_duration_seconds{outcome="memoised"}` and phase histograms,
//! read before and after, cross-check them.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal_content::FsBlockStore;
use shoal_jobs::{Acceptance, ApiKeys, Quotas, RedisConnection, Tenant};
use shoal_testkit::{programs_dir, CommandStats, ProcessStack, TEST_TENANT};
use tokio::time::Instant;

use crate::api::{Api, JobRead};
use crate::error::{LoadtestError, Result};
use crate::latency::options::LatencyOptions;
use crate::latency::phases::{self, redis_commands, Breakdown, PhaseFigures, RedisCommand, GATEWAY_METRIC};
use crate::latency::shoal::{plan, stack_home, start_stack};
use crate::latency::step::loadavg;
use crate::report::quantile;

/// Issue 15's bar: a memoised submission answered within this much server time at the p99.
pub const TARGET_P99_MS: f64 = 1.0;
/// Repeats before the timed ones, not counted: connection, caches and allocator warmed.
const WARM_UP_REPEATS: usize = 100;
/// Time allowed for the first job to run and be accepted.
const ACCEPTED_WITHIN: Duration = Duration::from_secs(120);
/// The gateway's histogram of whole submissions, by outcome.
const SUBMIT_METRIC: &str = "shoal_gateway_submit_duration_seconds";

/// One quantity over the timed repeats, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Values measured.
    pub count: usize,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Spread {
    /// The spread of `values` (nearest-rank percentiles).
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let mean_ms = if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 };
        Spread {
            count: values.len(),
            mean_ms,
            p50_ms: quantile(&values, 0.5),
            p95_ms: quantile(&values, 0.95),
            p99_ms: quantile(&values, 0.99),
            max_ms: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// What the memoised repeats measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoisedFigures {
    /// Timed repeats asked for.
    pub repeats: usize,
    /// Repeats before them, not counted.
    pub warm_up: usize,
    /// How long the first job took to be accepted by the verifier, ms.
    pub accepted_after_ms: f64,
    /// Timed repeats answered `201` naming the first job.
    pub memoised: usize,
    /// Timed repeats answered otherwise (queued, refused, no answer).
    pub other: usize,
    /// The first such answer, for the report.
    pub first_other: Option<String>,
    /// The gateway's time on each (`Server-Timing`'s `total`: from its submit handler's start
    /// to its answer; authentication, before it, is the `auth` phase).
    pub server: Spread,
    /// Of which the tenant's quota checks (`Server-Timing`'s `admit`).
    pub admit: Spread,
    /// And storing the job, answered from the memo (`Server-Timing`'s `store`).
    pub store: Spread,
    /// The client's round trip: request sent to answer read.
    pub client: Spread,
    /// `shoal_gateway_submit_duration_seconds{outcome="memoised"}` over the timed repeats:
    /// observations.
    pub histogram_count: u64,
    /// Its mean (exact), ms.
    pub histogram_mean_ms: f64,
    /// Its p99, interpolated within its bucket, ms.
    pub histogram_p99_ms: f64,
    /// The gateway's phases over the timed repeats.
    pub phases: Vec<PhaseFigures>,
    /// The Redis commands called at least once a repeat over the timed repeats (the scripts, and
    /// the commands they call, count), by name: what Redis itself spent on a submission.
    pub redis_commands: BTreeMap<String, RedisCommand>,
    /// CPU milliseconds per timed repeat, by process (`gateway`, `redis`; workers and verifier,
    /// idle, left out).
    pub cpu_ms_per_repeat: BTreeMap<String, f64>,
    /// Whether the server time's p99 is under [`TARGET_P99_MS`].
    pub meets_target: bool,
    /// `/proc/loadavg`'s 1-minute figure before and after the timed repeats.
    pub loadavg: (f64, f64),
    /// The test tenant's submissions a second while the repeats were timed (its quota, raised
    /// for them; 0 in reports from before it was recorded).
    #[serde(default)]
    pub submissions_per_sec: u64,
}

/// The CPU seconds of the gateway and Redis now.
async fn cpu_now(stack: &ProcessStack) -> (BTreeMap<String, CommandStats>, BTreeMap<String, f64>) {
    let mut cpu: BTreeMap<String, f64> =
        stack.cpu_seconds().into_iter().filter(|(name, _)| name == "gateway").collect();
    let commands = match stack.redis_usage().await {
        Ok(redis) => {
            cpu.insert("redis".into(), redis.cpu_s);
            redis.commands
        }
        Err(_) => BTreeMap::new(),
    };
    (commands, cpu)
}

/// The durations, ms, of a `Server-Timing` value (`name;dur=0.123, …`), by name.
pub fn server_timing(value: &str) -> BTreeMap<String, f64> {
    value
        .split(',')
        .filter_map(|metric| {
            let mut parts = metric.split(';').map(str::trim);
            let name = parts.next().filter(|name| !name.is_empty())?;
            let duration = parts.find_map(|param| param.strip_prefix("dur="))?.parse().ok()?;
            Some((name.to_string(), duration))
        })
        .collect()
}

/// One repeat as the client saw it.
struct Answer {
    /// Whether it was answered `201` from the first job.
    memoised: bool,
    /// What it was otherwise.
    otherwise: String,
    /// The answer's `Server-Timing`.
    timing: BTreeMap<String, f64>,
    /// The round trip, ms.
    round_trip_ms: f64,
}

/// POSTs `body` once on `http` and reads the whole answer.
async fn repeat(http: &reqwest::Client, url: &str, body: &[u8], first: &str) -> Answer {
    let sent = Instant::now();
    let answer = match http.post(url).header(CONTENT_TYPE, "application/json").body(body.to_vec()).send().await {
        Ok(response) => {
            let status = response.status();
            let timing = response
                .headers()
                .get("server-timing")
                .and_then(|value| value.to_str().ok())
                .map(server_timing)
                .unwrap_or_default();
            response.bytes().await.map(|bytes| (status, timing, bytes)).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let round_trip_ms = sent.elapsed().as_secs_f64() * 1000.0;
    match answer {
        Ok((status, timing, bytes)) => {
            let job: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let memoised = status == StatusCode::CREATED && job["memoised_from"] == first;
            let otherwise =
                if memoised { String::new() } else { format!("{status}: {}", String::from_utf8_lossy(&bytes)) };
            Answer { memoised, otherwise, timing, round_trip_ms }
        }
        Err(e) => Answer { memoised: false, otherwise: e, timing: BTreeMap::new(), round_trip_ms },
    }
}

/// The gateway's `/metrics`, or nothing if it does not answer.
async fn metrics(http: &reqwest::Client, stack: &ProcessStack) -> String {
    match http.get(format!("{}/metrics", stack.gateway_url())).send().await {
        Ok(response) if response.status().is_success() => response.text().await.unwrap_or_default(),
        _ => String::new(),
    }
}

/// Repeats after each other on one connection can be more than the test tenant's default
/// submissions a second (2,000): its quota is raised, not lifted, so each repeat is still counted
/// against it, as every submission is. Returns the raised quota.
async fn raise_submission_quota(stack: &ProcessStack) -> Result<u64> {
    let redis = RedisConnection::open(&[stack.redis_url().to_string()])
        .await
        .map_err(|e| LoadtestError::store("connecting to the stack's Redis", e))?;
    let keys = ApiKeys::new(redis);
    let tenant: Tenant = TEST_TENANT.parse().map_err(|e| LoadtestError::Setup(format!("{TEST_TENANT}: {e}")))?;
    let quotas = keys.quotas(&tenant).await.map_err(|e| LoadtestError::store("reading the tenant's quotas", e))?;
    let raised = Quotas { submissions_per_sec: Some(RAISED_SUBMISSIONS_PER_SEC), ..quotas };
    keys.set_quotas(&tenant, &raised).await.map_err(|e| LoadtestError::store("raising the tenant's quota", e))?;
    Ok(RAISED_SUBMISSIONS_PER_SEC)
}

/// The test tenant's submissions a second while repeats are timed: far above what one client can
/// send.
const RAISED_SUBMISSIONS_PER_SEC: u64 = 1_000_000;

/// Waits until job `id`'s result is accepted; how long that took.
async fn accepted(api: &Api, id: &str) -> Result<Duration> {
    let started = Instant::now();
    loop {
        match api.job(id).await {
            JobRead::Found(job) if job.acceptance().is_some_and(Acceptance::is_accepted) => {
                return Ok(started.elapsed())
            }
            JobRead::Found(job) if job.verification.is_some() || (job.state.is_terminal() && job.result.is_none()) => {
                return Err(LoadtestError::Setup(format!(
                    "the first job was not accepted, so nothing can be memoised: {:?}, {:?}",
                    job.state, job.verification
                )))
            }
            _ if started.elapsed() >= ACCEPTED_WITHIN => {
                return Err(LoadtestError::Setup(format!("the first job was not accepted within {ACCEPTED_WITHIN:?}")))
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Runs `repeats` memoised repeats (after [`WARM_UP_REPEATS`]) on a fresh stack with a verifier,
/// in a home of its own under `homes`.
pub async fn run(options: &LatencyOptions, homes: &std::path::Path, repeats: usize) -> Result<MemoisedFigures> {
    let home = stack_home(homes, "shoal-memoised")?;
    let programs = options.programs.clone().unwrap_or_else(programs_dir);
    let store = FsBlockStore::open(home.join("blocks"))
        .map_err(|source| LoadtestError::content("opening the stack's block store", source))?;
    let mut spec = plan(&store, &programs, 1, options)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| LoadtestError::Setup("no echo-hash job was planned".into()))?
        .spec;
    spec["verification"] = json!({"mode": "always"});

    let stack = start_stack(options, &home).await?;
    let submissions_per_sec = raise_submission_quota(&stack).await?;
    for _ in 0..options.workers.max(1) {
        stack.start_worker(&stack.new_worker_id())?;
    }
    // `always`: every job is re-executed, whatever the sample rate of `sampled` ones.
    stack.start_verifier("verifier", 0.0)?;
    let api = Api::new(stack.gateway_url(), stack.api_key())?;
    let submitted = api.submit(&spec, "memoised-first", Instant::now() + ACCEPTED_WITHIN).await;
    let first = submitted
        .id()
        .ok_or_else(|| LoadtestError::Setup(format!("the first submission failed: {submitted:?}")))?
        .to_string();
    let accepted_after = accepted(&api, &first).await?;

    // One client, one request at a time: its one connection is kept alive throughout.
    let http =
        shoal_testkit::keyed_client(reqwest::Client::builder().timeout(Duration::from_secs(5)), stack.api_key())?;
    let url = format!("{}/v1/jobs", stack.gateway_url());
    let body = serde_json::to_vec(&spec).expect("a spec always serialises");
    for _ in 0..WARM_UP_REPEATS {
        repeat(&http, &url, &body, &first).await;
    }
    let before = metrics(&http, &stack).await;
    let (commands_before, cpu_before) = cpu_now(&stack).await;
    let load_before = loadavg();
    let mut answers = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        answers.push(repeat(&http, &url, &body, &first).await);
    }
    let load_after = loadavg();
    let (commands_after, cpu_after) = cpu_now(&stack).await;
    let after = metrics(&http, &stack).await;
    stack.shutdown();

    let timed = |name: &str| Spread::of(answers.iter().filter_map(|a| a.timing.get(name).copied()).collect());
    let server = timed("total");
    let submitted = phases::since(
        &phases::parse_by(&after, SUBMIT_METRIC, "outcome"),
        &phases::parse_by(&before, SUBMIT_METRIC, "outcome"),
    );
    let histogram = submitted.get("memoised").cloned().unwrap_or_default();
    let gateway = phases::since(&phases::parse(&after, GATEWAY_METRIC), &phases::parse(&before, GATEWAY_METRIC));
    let memoised = answers.iter().filter(|a| a.memoised).count();
    Ok(MemoisedFigures {
        repeats,
        warm_up: WARM_UP_REPEATS,
        accepted_after_ms: accepted_after.as_secs_f64() * 1000.0,
        memoised,
        other: repeats - memoised,
        first_other: answers.iter().find(|a| !a.memoised).map(|a| a.otherwise.clone()),
        meets_target: server.count == repeats && server.p99_ms < TARGET_P99_MS,
        server,
        admit: timed("admit"),
        store: timed("store"),
        client: Spread::of(answers.iter().map(|a| a.round_trip_ms).collect()),
        histogram_count: histogram.count.round() as u64,
        histogram_mean_ms: if histogram.count > 0.0 { histogram.sum / histogram.count * 1000.0 } else { 0.0 },
        histogram_p99_ms: histogram.quantile(0.99) * 1000.0,
        phases: Breakdown::of(&BTreeMap::new(), &gateway).gateway,
        redis_commands: redis_commands(&commands_before, &commands_after, repeats as u64),
        cpu_ms_per_repeat: cpu_after
            .iter()
            .map(|(name, after)| {
                (name.clone(), (after - cpu_before.get(name).unwrap_or(&0.0)) * 1000.0 / repeats.max(1) as f64)
            })
            .collect(),
        loadavg: (load_before, load_after),
        submissions_per_sec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_read_by_name() {
        let timing = server_timing("admit;dur=0.190, store;desc=\"memo\";dur=0.25,total;dur=0.47, broken, bad;dur=x");
        assert_eq!(timing.len(), 3, "{timing:?}");
        assert_eq!((timing["admit"], timing["store"], timing["total"]), (0.19, 0.25, 0.47));
    }

    #[test]
    fn a_spread_has_nearest_rank_percentiles() {
        let spread = Spread::of((1..=100).rev().map(f64::from).collect());
        assert_eq!((spread.count, spread.p50_ms, spread.p99_ms, spread.max_ms), (100, 50.0, 99.0, 100.0));
        assert!((spread.mean_ms - 50.5).abs() < 1e-12);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }
}
