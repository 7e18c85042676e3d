//! The long-running roles: `gateway`, `worker`, `content`, `verifier`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use shoal_content::{BlockStore, FsBlockStore};
use shoal_gateway::GatewayConfig;
use shoal_jobs::{Membership, ShardRouter, VerificationPolicy};
use shoal_verifier::VerifierConfig;
use shoal_worker::{FilecoinConfig, WorkerConfig};
use tokio::net::TcpListener;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::home::Home;
use crate::redis_users::with_password;

/// Number of shard streams unless configured ([`ShardRouter::DEFAULT_SHARDS`]).
pub(crate) const DEFAULT_SHARDS: u32 = ShardRouter::DEFAULT_SHARDS;

/// wasmtime-wasi opens an `info` span for every WASI call a guest makes (its `#[instrument]`s),
/// whether anything is logged in it or not: at the default level, making them was several per
/// cent of a small job's CPU in a worker. Its warnings and errors are still logged.
const QUIET_TARGET: &str = "wasmtime_wasi";

/// The filter of `RUST_LOG`'s value `asked`: `info` when unset or invalid.
fn asked_filter(asked: Option<&str>) -> EnvFilter {
    asked.and_then(|spec| EnvFilter::try_new(spec).ok()).unwrap_or_else(|| EnvFilter::new("info"))
}

/// A filter beside [`asked_filter`]'s, so it can only quieten: [`QUIET_TARGET`] at `warn`
/// unless `asked` has a directive for it (or a module in it).
fn quiet_filter(asked: Option<&str>) -> Targets {
    let named = asked.is_some_and(|spec| {
        spec.split(',').any(|directive| {
            let target = directive.split(['[', '=']).next().unwrap_or_default().trim();
            target.strip_prefix(QUIET_TARGET).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
    });
    let level = if named { LevelFilter::TRACE } else { LevelFilter::WARN };
    Targets::new().with_default(LevelFilter::TRACE).with_target(QUIET_TARGET, level)
}

/// Sets up logging for a service: human-readable lines, or JSON lines with `SHOAL_LOG_FORMAT=json`;
/// the level comes from `RUST_LOG` ([`asked_filter`], [`quiet_filter`]).
pub(crate) fn init_logging() {
    let asked = std::env::var("RUST_LOG").ok();
    let filters =
        tracing_subscriber::registry().with(asked_filter(asked.as_deref())).with(quiet_filter(asked.as_deref()));
    // Colour codes only for a terminal: in a log file they are noise, and formatting them cost
    // a busy worker measurable CPU per job.
    let lines =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let result = if std::env::var("SHOAL_LOG_FORMAT").is_ok_and(|f| f == "json") {
        filters.with(lines.json()).try_init()
    } else {
        filters.with(lines).try_init()
    };
    // Already initialised (a second service in the same process): keep the first.
    drop(result);
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// `shoal gateway`.
#[derive(Args)]
pub(crate) struct GatewayArgs {
    /// The Redis holding jobs (several comma-separated URLs: the seed nodes of a Redis Cluster).
    #[arg(long, env = "SHOAL_REDIS", hide_env_values = true)]
    redis: String,
    /// The Redis user's password, if the URL holds none (kept apart from it: docker-compose's
    /// env files).
    #[arg(long, env = "SHOAL_REDIS_GATEWAY_PASSWORD", hide_env_values = true)]
    redis_password: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Number of shard streams (must match the workers).
    #[arg(long, default_value_t = DEFAULT_SHARDS)]
    shards: u32,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = GatewayConfig::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Jobs outstanding (queued or running) beyond which submissions get 429; 0 for no limit.
    #[arg(long, default_value_t = GatewayConfig::DEFAULT_MAX_BACKLOG.unwrap_or(0))]
    max_backlog: u64,
    /// The verification policy of jobs whose spec names none, as in a spec:
    /// `{"mode": "always"}`, `{"mode": "replicated", "replicas": 3}`, …
    #[arg(long, value_name = "JSON", value_parser = parse_policy)]
    default_verification: Option<VerificationPolicy>,
    /// A network webhooks may be sent to although it is not public (`10.0.0.0/8`,
    /// `127.0.0.1/32`, …). Repeatable; loopback, private and link-local addresses are refused
    /// otherwise.
    #[arg(long = "webhook-allow", value_name = "CIDR")]
    webhook_allow: Vec<ipnet::IpNet>,
    /// A trustless gateway (`shoal content`, kubo, …) that jobs' files are read from for the
    /// dashboard and `/v1/jobs/{id}/files/…`, every block verified. Repeatable, tried in order.
    #[arg(long = "content-from", value_name = "URL")]
    content_from: Vec<String>,
    /// The largest file one request to `/v1/jobs/{id}/files/…` streams, in bytes.
    #[arg(long, default_value_t = GatewayConfig::DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: u64,
    /// How long, in seconds, an accepted result answers the same tenant's identical
    /// submissions (memoisation by invocation CID); 0 turns memoisation off.
    #[arg(long, default_value_t = GatewayConfig::DEFAULT_MEMO_TTL.map_or(0, |ttl| ttl.as_secs()))]
    memo_ttl_secs: u64,
}

/// A verification policy given on the command line, as JSON.
fn parse_policy(json: &str) -> Result<VerificationPolicy, String> {
    serde_json::from_str(json).map_err(|e| format!("not a verification policy ({e})"))
}

/// `shoal worker`.
#[derive(Args)]
pub(crate) struct WorkerArgs {
    /// The Redis holding jobs (several comma-separated URLs: the seed nodes of a Redis Cluster).
    #[arg(long, env = "SHOAL_REDIS", hide_env_values = true)]
    redis: String,
    /// The Redis user's password, if the URL holds none (kept apart from it: docker-compose's
    /// env files).
    #[arg(long, env = "SHOAL_REDIS_WORKER_PASSWORD", hide_env_values = true)]
    redis_password: Option<String>,
    /// This worker's id (default: host name and process id).
    #[arg(long)]
    id: Option<String>,
    /// Number of shard streams (must match the gateways).
    #[arg(long, default_value_t = DEFAULT_SHARDS)]
    shards: u32,
    /// Jobs run at once.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Trustless gateways to fetch content from, in order, after the local store.
    #[arg(long = "fetch-from", value_name = "URL")]
    fetch_from: Vec<String>,
    /// Local block store (default: `<home>/blocks`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Where runs' `/outputs` live, in a directory named after the worker (default: the work
    /// directory). A tmpfs such as `/dev/shm/shoal` makes small jobs cheaper: on ext4 every
    /// output file deleted after its run makes creating files slower for minutes. Outputs there
    /// take memory while they exist. Workers sharing DIR need distinct ids: each empties its
    /// own directory there when it starts.
    #[arg(long, value_name = "DIR")]
    runs_dir: Option<PathBuf>,
    /// Bytes of materialised inputs kept between jobs.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_INPUT_CACHE_BYTES)]
    input_cache_bytes: u64,
    /// Seconds allowed to fetch a job's program and inputs.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_FETCH_TIMEOUT.as_secs())]
    fetch_timeout_secs: u64,
    /// Seconds another worker's entry may go unrenewed before this worker takes it over.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_VISIBILITY_TIMEOUT.as_secs())]
    visibility_timeout_secs: u64,
    /// On shutdown, how long running jobs may go on to finish before they are stopped and left
    /// for another worker.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_DRAIN_TIMEOUT.as_secs())]
    drain_timeout_secs: u64,
    /// A label `KEY=VALUE` the worker registers with. Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Workers reading each shard: more than one lets all data be served from several caches.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_SHARD_REPLICAS)]
    shard_replicas: usize,
    /// Unread entries per reader above which a shard is hot and gets another reader, preferably
    /// a worker already holding its data.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_HOT_BACKLOG)]
    hot_backlog: u64,
    /// The most workers reading a hot shard; `--shard-replicas` or fewer turns hot replicas off.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_MAX_SHARD_READERS)]
    max_shard_readers: usize,
    /// Milliseconds between heartbeats; a worker silent for three is taken for gone and its
    /// shards move to the others.
    #[arg(long, default_value_t = Membership::DEFAULT_HEARTBEAT.as_millis() as u64)]
    heartbeat_ms: u64,
    /// Serve `GET /metrics` here: the time each phase of a delivery took (start, program,
    /// inputs, run, import, settle, ack, …), as Prometheus histograms.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// A Lotus full node's JSON-RPC endpoint (`http://host:1234/rpc/v1`): with it the worker
    /// buys `"source": "filecoin"` inputs that no free source has, paying from its wallet.
    #[arg(long, env = "SHOAL_LOTUS_URL", requires = "ipni")]
    lotus_url: Option<String>,
    /// The Lotus API token, if the node needs one.
    #[arg(long, env = "SHOAL_LOTUS_TOKEN", hide_env_values = true)]
    lotus_token: Option<String>,
    /// An IPNI indexer to find a CID's storage providers on (`https://cid.contact`).
    /// Repeatable.
    #[arg(long = "ipni", value_name = "URL")]
    ipni: Vec<String>,
    /// The paying wallet (default: the Lotus node's default wallet).
    #[arg(long, requires = "lotus_url")]
    wallet: Option<String>,
}

impl WorkerArgs {
    /// The worker configuration these arguments describe.
    fn config(&self, home: &Home) -> anyhow::Result<WorkerConfig> {
        let id = self.id.clone().unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
        let redis = with_password(&self.redis, self.redis_password.as_deref())?;
        let mut config = WorkerConfig::new(&id, &redis, home.root());
        config.shards = self.shards;
        config.concurrency = self.concurrency;
        config.gateways = self.fetch_from.clone();
        if let Some(store) = &self.store {
            config.store_dir = store.clone();
        }
        config.runs_dir = self.runs_dir.clone();
        config.input_cache_bytes = self.input_cache_bytes;
        config.fetch_timeout = Duration::from_secs(self.fetch_timeout_secs);
        config.visibility_timeout = Duration::from_secs(self.visibility_timeout_secs.max(1));
        config.drain_timeout = Duration::from_secs(self.drain_timeout_secs);
        config.shard_replicas = self.shard_replicas.max(1);
        config.hot_backlog = self.hot_backlog.max(1);
        config.max_shard_readers = self.max_shard_readers;
        config.heartbeat = Duration::from_millis(self.heartbeat_ms.max(100));
        config.metrics_addr = self.metrics_addr;
        for label in &self.labels {
            let (key, value) = label.split_once('=').with_context(|| format!("--label {label:?} is not KEY=VALUE"))?;
            config.labels.insert(key.to_string(), value.to_string());
        }
        config.filecoin = self.lotus_url.as_ref().map(|lotus_url| FilecoinConfig {
            lotus_url: lotus_url.clone(),
            lotus_token: self.lotus_token.clone(),
            indexers: self.ipni.clone(),
            wallet: self.wallet.clone(),
        });
        Ok(config)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}

/// `shoal content`.
#[derive(Args)]
pub(crate) struct ContentArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The block store to serve (default: `<home>/blocks`).
    #[arg(long)]
    store: Option<PathBuf>,
}

/// `shoal verifier`.
#[derive(Args)]
pub(crate) struct VerifierArgs {
    /// The Redis holding jobs (several comma-separated URLs: the seed nodes of a Redis Cluster).
    #[arg(long, env = "SHOAL_REDIS", hide_env_values = true)]
    redis: String,
    /// The Redis user's password, if the URL holds none (kept apart from it: docker-compose's
    /// env files).
    #[arg(long, env = "SHOAL_REDIS_VERIFIER_PASSWORD", hide_env_values = true)]
    redis_password: Option<String>,
    /// This verifier's id.
    #[arg(long, default_value = "verifier")]
    id: String,
    /// Number of shard streams (must match the workers).
    #[arg(long, default_value_t = DEFAULT_SHARDS)]
    shards: u32,
    /// Fraction of `sampled` jobs re-executed (0 to 1); `always` jobs are all re-executed. With
    /// `--reputation-halving`, the floor no worker's rate falls below.
    #[arg(long, default_value_t = 0.1)]
    sample_rate: f64,
    /// Reputation-weighted sampling: a new worker's results are all re-executed, and its rate
    /// halves with every N results the verifier re-ran and agreed with, down to `--sample-rate`;
    /// 0: every worker at `--sample-rate`.
    #[arg(long, value_name = "N", default_value_t = 20)]
    reputation_halving: u64,
    /// Refused receipts (forged, replayed, missing) after which the worker they name is
    /// quarantined; 0: never.
    #[arg(long, default_value_t = VerifierConfig::DEFAULT_REFUSALS_TO_QUARANTINE)]
    refusals_to_quarantine: u64,
    /// Seconds another verifier's verification may go unrenewed before this one takes it over.
    #[arg(long, default_value_t = WorkerConfig::DEFAULT_VISIBILITY_TIMEOUT.as_secs())]
    visibility_timeout_secs: u64,
    /// Trustless gateways to fetch content from, in order, after the local store.
    #[arg(long = "fetch-from", value_name = "URL")]
    fetch_from: Vec<String>,
    /// Local block store (default: `<home>/blocks`).
    #[arg(long)]
    store: Option<PathBuf>,
}

/// Runs a gateway until Ctrl-C or SIGTERM, then drains in-flight requests.
pub(crate) async fn gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let mut config = GatewayConfig::new(with_password(&args.redis, args.redis_password.as_deref())?, args.shards);
    config.max_body_bytes = args.max_body_bytes;
    config.max_backlog = Some(args.max_backlog).filter(|&limit| limit > 0);
    if let Some(policy) = args.default_verification {
        config.default_verification = policy;
    }
    config.webhook_allowed_networks = args.webhook_allow;
    config.content_gateways = args.content_from;
    config.max_file_bytes = args.max_file_bytes;
    config.memo_ttl = Some(Duration::from_secs(args.memo_ttl_secs)).filter(|ttl| !ttl.is_zero());
    let router = shoal_gateway::router(config).await?;
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "gateway listening");
    shoal_gateway::serve(listener, router, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a worker until Ctrl-C or SIGTERM, then lets its running jobs finish.
pub(crate) async fn worker(home: &Home, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    shoal_worker::run(args.config(home)?, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serves a block store as a trustless gateway until Ctrl-C or SIGTERM.
pub(crate) async fn content(home: &Home, args: ContentArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let dir = args.store.unwrap_or_else(|| home.blocks());
    let store: Arc<dyn BlockStore> =
        Arc::new(FsBlockStore::open(&dir).with_context(|| format!("opening {}", dir.display()))?);
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, store = %dir.display(), "content server listening");
    axum::serve(listener, shoal_content::serve::router(store)).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a verifier until Ctrl-C or SIGTERM.
pub(crate) async fn verifier(home: &Home, args: VerifierArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let redis = with_password(&args.redis, args.redis_password.as_deref())?;
    let mut worker = WorkerConfig::new(&args.id, &redis, home.root());
    worker.shards = args.shards;
    worker.concurrency = 1;
    worker.gateways = args.fetch_from;
    worker.visibility_timeout = Duration::from_secs(args.visibility_timeout_secs.max(1));
    if let Some(store) = args.store {
        worker.store_dir = store;
    }
    let config = VerifierConfig {
        reputation_halving: Some(args.reputation_halving).filter(|&n| n > 0),
        refusals_to_quarantine: args.refusals_to_quarantine,
        ..VerifierConfig::new(worker, args.sample_rate)
    };
    shoal_verifier::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `make` makes a span that is recorded under `RUST_LOG=asked`.
    fn recorded(asked: Option<&str>, make: fn() -> tracing::Span) -> bool {
        let subscriber = tracing_subscriber::registry().with(asked_filter(asked)).with(quiet_filter(asked));
        tracing::subscriber::with_default(subscriber, || !make().is_disabled())
    }

    #[test]
    fn wasmtime_wasis_spans_are_left_out_unless_asked_for_by_name() {
        let wasi: fn() -> tracing::Span = || tracing::info_span!(target: "wasmtime_wasi::p1", "fd_write");
        let wasi_warning: fn() -> tracing::Span = || tracing::warn_span!(target: "wasmtime_wasi::p1", "warning");
        let ours: fn() -> tracing::Span = || tracing::info_span!(target: "shoal_worker::execute", "job");
        assert!(!recorded(None, wasi), "not at the default level");
        assert!(recorded(None, wasi_warning), "its warnings are");
        assert!(recorded(None, ours), "the rest is at info");
        assert!(!recorded(Some("debug"), wasi), "not at a level that does not name it");
        assert!(recorded(Some("info,wasmtime_wasi=info"), wasi), "named, as asked");
        assert!(recorded(Some("info,wasmtime_wasi::p1=debug"), wasi), "a module of it named");
        assert!(!recorded(Some("info,wasmtime_wasi_http=info"), wasi), "another crate named");
        assert!(!recorded(Some("off"), wasi_warning), "never louder than asked");
        assert!(!recorded(Some("warn"), ours), "RUST_LOG sets the level");
        assert!(recorded(Some("not a filter ,="), ours), "an invalid RUST_LOG means info");
    }
}
