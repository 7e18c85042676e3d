//! `shoal dev`: the embedded stack in one process — a private `redis-server` on a free loopback
//! port, the gateway, N workers sharing the local block store, a verifier, and the content
//! server — stopped together by Ctrl-C or SIGTERM.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use fvm_shared::econ::TokenAmount;
use shoal_content::{BlockStore, FsBlockStore};
use shoal_filecoin::amount::parse_amount;
use shoal_gateway::GatewayConfig;
use shoal_jobs::keys::RedisRole;
use shoal_jobs::{
    redis_addresses, redis_urls, ApiKeys, AttoFil, Fsync, RedisConnection, RedisServer, Role, SpendingLedger, Tenant,
};
use shoal_verifier::VerifierConfig;
use shoal_worker::WorkerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::filecoin::Devnet;
use crate::home::{Endpoints, Home};
use crate::services::{init_logging, shutdown_signal, DEFAULT_SHARDS};

/// `shoal dev`.
#[derive(Args)]
pub(crate) struct DevArgs {
    /// Workers to start.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// The gateway's port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The content server's port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8081)]
    content_port: u16,
    /// Number of shard streams.
    #[arg(long, default_value_t = DEFAULT_SHARDS)]
    shards: u32,
    /// fsync every AOF write (no accepted job lost even on power loss) instead of every second.
    #[arg(long)]
    fsync_always: bool,
    /// Fraction of `sampled` jobs the verifier re-executes (0 to 1).
    #[arg(long, default_value_t = 1.0)]
    verify_rate: f64,
    /// Also start the Filecoin stand-ins (`shoal filecoin devnet`'s): a provider selling the
    /// DAGs of `<home>/filecoin/blocks` (`shoal --home <home>/filecoin add FILE` puts one there
    /// and nowhere else), and workers that buy `"source": "filecoin"` inputs from it.
    #[arg(long)]
    filecoin: bool,
    /// The provider stand-in's price a retrieval.
    #[arg(long, default_value = "0.001 FIL", requires = "filecoin")]
    filecoin_price: String,
    /// The paying wallet's spending limit.
    #[arg(long, default_value = "0.01 FIL", requires = "filecoin")]
    filecoin_limit: String,
}

/// The tenant of the dev stack's local key.
const LOCAL_TENANT: &str = "local";

/// The dev stack's local key, an operator's of tenant [`LOCAL_TENANT`]: the one an earlier run
/// with this home wrote down if Redis still knows it, else a new one.
async fn local_key(home: &Home, redis_url: &str) -> anyhow::Result<String> {
    let keys = ApiKeys::new(RedisConnection::open(&redis_urls(redis_url)).await?);
    if let Some(key) = home.endpoints().and_then(|e| e.api_key) {
        if keys.authenticate(&key).await?.is_some() {
            return Ok(key);
        }
    }
    let tenant: Tenant = LOCAL_TENANT.parse().map_err(anyhow::Error::msg)?;
    Ok(keys.create(&tenant, Role::Operator).await?.secret)
}

/// Runs the stack until Ctrl-C or SIGTERM.
pub(crate) async fn run(home: &Home, args: DevArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let fsync = if args.fsync_always { Fsync::Always } else { Fsync::EverySec };
    home.make_private()?;
    let redis_dir = home.root().join("redis");
    let mut redis = tokio::task::spawn_blocking(move || RedisServer::start(&redis_dir, fsync))
        .await?
        .context("starting redis-server (is it installed? `apt-get install redis-server`)")?;
    let redis_url = redis.url();
    let api_key = local_key(home, &redis_url).await?;
    // Each part logs in as its own Redis user, allowed only what it needs.
    let role_url = |role| redis.url_for(role);

    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            stopped.wait_for(|stop| *stop).await.ok();
        }
    };
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();

    let store: Arc<dyn BlockStore> = Arc::new(FsBlockStore::open(home.blocks())?);
    let listener = bind(args.content_port).await?;
    let content_url = format!("http://{}", listener.local_addr()?);
    let shutdown = until_stopped();
    tasks.spawn(async move {
        axum::serve(listener, shoal_content::serve::router(store)).with_graceful_shutdown(shutdown).await?;
        Ok(())
    });

    let mut gateway = GatewayConfig::new(role_url(RedisRole::Gateway), args.shards);
    // Local testing sends webhooks to receivers on this machine.
    gateway.webhook_allowed_networks = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
    // The dashboard shows jobs' files from the content server.
    gateway.content_gateways = vec![content_url.clone()];
    let router = shoal_gateway::router(gateway).await?;
    let listener = bind(args.port).await?;
    let gateway_url = format!("http://{}", listener.local_addr()?);
    tasks.spawn(shoal_gateway_task(listener, router, until_stopped()));

    let devnet = match args.filecoin {
        true => Some(start_devnet(home, &args, &redis_url).await?),
        false => None,
    };
    for n in 1..=args.workers {
        let mut config = WorkerConfig::new(&format!("dev-worker-{n}"), &role_url(RedisRole::Worker), home.root());
        config.shards = args.shards;
        config.concurrency = args.concurrency;
        config.filecoin = devnet.as_ref().map(Devnet::buyer);
        let shutdown = until_stopped();
        tasks.spawn(async move {
            shoal_worker::run(config, shutdown).await?;
            Ok(())
        });
    }

    let mut verifier = WorkerConfig::new("dev-verifier", &role_url(RedisRole::Verifier), home.root());
    verifier.shards = args.shards;
    verifier.concurrency = 1;
    let shutdown = until_stopped();
    let verify_rate = args.verify_rate;
    tasks.spawn(async move {
        shoal_verifier::run(VerifierConfig::new(verifier, verify_rate), shutdown).await?;
        Ok(())
    });

    home.write_endpoints(&Endpoints {
        gateway: gateway_url.clone(),
        content: content_url.clone(),
        redis: redis_url.clone(),
        pid: std::process::id(),
        api_key: Some(api_key),
    })?;
    println!("shoal dev is up:");
    println!("  gateway  {gateway_url}");
    println!("  dashboard {gateway_url}/ui  (API key: api_key in {})", home.endpoints_file().display());
    println!("  content  {content_url}  (trustless gateway over {})", home.blocks().display());
    println!(
        "  redis    {}  (users and passwords in {}/credentials.json)",
        redis_addresses(std::slice::from_ref(&redis_url)),
        home.root().join("redis").display()
    );
    println!("  workers  {} x {} slots", args.workers, args.concurrency);
    println!("  verifier re-runs {:.0} % of sampled jobs", args.verify_rate * 100.0);
    if let Some(devnet) = &devnet {
        devnet.print();
        println!(
            "    wallet {} may spend {}; add what only the provider holds with `shoal --home {} add FILE`",
            devnet.payer,
            args.filecoin_limit,
            filecoin_home(home).root().display()
        );
    }
    println!("Ctrl-C stops everything.");

    // Stop on a signal, or as soon as any part fails.
    let failure = tokio::select! {
        _ = shutdown_signal() => None,
        Some(ended) = tasks.join_next() => Some(ended),
    };
    stop.send(true).ok();
    let mut result = failure.map_or(Ok(()), flatten);
    while let Some(ended) = tasks.join_next().await {
        if let Err(e) = flatten(ended) {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    home.clear_endpoints();
    tokio::task::spawn_blocking(move || redis.stop()).await?;
    result.map(|()| ExitCode::SUCCESS)
}

async fn shoal_gateway_task(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    shoal_gateway::serve(listener, router, shutdown).await?;
    Ok(())
}

async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address} (choose another port with --port / --content-port)"))
}

fn flatten(ended: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    ended.context("a part of the stack panicked")?
}

/// The home whose block store the provider stand-in sells: apart from the stack's own, so what
/// is added there is on no free source.
fn filecoin_home(home: &Home) -> Home {
    Home::new(home.root().join("filecoin"))
}

/// Starts the Filecoin stand-ins and sets the payer wallet's spending limit.
async fn start_devnet(home: &Home, args: &DevArgs, admin_url: &str) -> anyhow::Result<Devnet> {
    let price = parse_amount(&args.filecoin_price).context("--filecoin-price")?;
    let limit = AttoFil::parse(&args.filecoin_limit).context("--filecoin-limit")?;
    let devnet = Devnet::start(&filecoin_home(home).blocks(), price, TokenAmount::from_whole(100), "devnet").await?;
    let ledger = SpendingLedger::new(RedisConnection::open(&redis_urls(admin_url)).await?);
    ledger.set_limit(&devnet.payer.to_string(), limit.atto()).await?;
    Ok(devnet)
}
