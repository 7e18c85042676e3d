//! Where a worker's time goes, delivery by delivery: a histogram of seconds per phase
//! (`shoal_worker_phase_seconds{phase=…}`), kept for the whole process and served as OpenMetrics
//! text at `GET /metrics` on [`WorkerConfig::metrics_addr`](crate::WorkerConfig::metrics_addr)
//! when one is given. What the latency benchmark's per-job cost breakdown is read from.
//!
//! The histograms are process-wide (every executor of the process adds to them), so recording
//! needs no handle threaded through the settle protocol; observing is a few atomic adds.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::WorkerError;

/// A phase of one delivery, in the order a job meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    /// From the stream entry's creation (its id's milliseconds) to the worker starting on it:
    /// time queued, not work.
    Queued,
    /// `start_execution`: the Lua script recording the execution and the job `running`.
    Begin,
    /// The program: compiled-module cache lookup (compiling on a miss).
    Program,
    /// The inputs: materialised-input cache lookup (fetching and exporting on a miss).
    Inputs,
    /// The run's scratch directory and its input mounts.
    Mounts,
    /// Instantiating the module and running it to its exit.
    Run,
    /// Importing `/outputs`, stdout and stderr as UnixFS, blocks written to the store.
    Import,
    /// Storing the signed receipt's block, before the record names it (a WebAssembly run's on
    /// the guest's thread, right after `import`).
    Receipt,
    /// `finish_execution`: the Lua script storing the outcome and settling the job (and, on a
    /// single Redis node, recording it against the worker, for re-verification if it is caught,
    /// and acknowledging its entry).
    Finish,
    /// Handing the job to the verifier (only when its policy is not `none`).
    EnqueueVerification,
    /// `XACK` + `XDEL` of a batch of entries settled without `finish` acknowledging them, off
    /// the jobs' slots ([`crate::acks`]): one observation per batch, not per job.
    Ack,
    /// The whole delivery, from the worker starting on it to its entry being handed to be
    /// acknowledged: the time it held a slot.
    Delivery,
}

impl Phase {
    /// Its label value.
    fn name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Begin => "begin",
            Phase::Program => "program",
            Phase::Inputs => "inputs",
            Phase::Mounts => "mounts",
            Phase::Run => "run",
            Phase::Import => "import",
            Phase::Finish => "finish",
            Phase::EnqueueVerification => "enqueue_verification",
            Phase::Receipt => "receipt",
            Phase::Ack => "ack",
            Phase::Delivery => "delivery",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// Bucket bounds, seconds: 10 µs × 1.25ⁿ up to about 13 s, fine enough (25 % apart) for
/// percentiles read from the buckets to mean something at the microsecond end.
fn buckets() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 1.25, 64))
}

type PhaseFamily = Family<PhaseLabels, Histogram, fn() -> Histogram>;

struct Phases {
    registry: Registry,
    seconds: PhaseFamily,
}

static PHASES: LazyLock<Phases> = LazyLock::new(|| {
    let seconds: PhaseFamily = Family::new_with_constructor(buckets);
    let mut registry = Registry::with_prefix("shoal_worker");
    registry.register("phase_seconds", "Time spent in each phase of a delivery, seconds", seconds.clone());
    Phases { registry, seconds }
});

/// Adds `elapsed` to `phase`'s histogram.
pub(crate) fn observe(phase: Phase, elapsed: Duration) {
    PHASES.seconds.get_or_create(&PhaseLabels { phase: phase.name() }).observe(elapsed.as_secs_f64());
}

/// Runs `work`, adding the time it took to `phase`'s histogram.
pub(crate) async fn timed<T>(phase: Phase, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    observe(phase, started.elapsed());
    out
}

/// Time since stream entry `entry` (`<ms>-<seq>`) was added, if its id says when.
pub(crate) fn queued_for(entry: &str, now_ms: u64) -> Option<Duration> {
    let added_ms: u64 = entry.split_once('-')?.0.parse().ok()?;
    Some(Duration::from_millis(now_ms.saturating_sub(added_ms)))
}

/// The histograms as OpenMetrics text.
fn encode() -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &PHASES.registry).expect("writing to a String cannot fail");
    text
}

/// Binds `addr` and serves `GET /metrics` (the phase histograms) there until the process ends.
pub(crate) async fn serve_metrics(addr: SocketAddr) -> Result<(), WorkerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WorkerError::Io { context: format!("binding the metrics address {addr}"), source })?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                encode(),
            )
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_id_says_how_long_it_queued() {
        assert_eq!(queued_for("1000-3", 1250), Some(Duration::from_millis(250)));
        assert_eq!(queued_for("2000-0", 1000), Some(Duration::ZERO));
        assert_eq!(queued_for("garbage", 1000), None);
    }

    #[tokio::test]
    async fn observed_phases_are_served_as_histograms() {
        observe(Phase::Finish, Duration::from_micros(300));
        timed(Phase::Ack, async { tokio::time::sleep(Duration::from_millis(2)).await }).await;
        let text = encode();
        assert!(text.contains("shoal_worker_phase_seconds_count{phase=\"finish\"}"), "{text}");
        let ack_sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("shoal_worker_phase_seconds_sum{phase=\"ack\"} "))
            .expect("an ack sum")
            .parse()
            .unwrap();
        assert!(ack_sum >= 0.002, "{ack_sum}");
        // 300 µs is above the 10 µs × 1.25^15 ≈ 284 µs bound and within the next.
        assert!(text.contains("shoal_worker_phase_seconds_bucket{le=\"0.000355"), "{text}");
    }
}
