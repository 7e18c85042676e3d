//! `shoal filecoin devnet`: shoal-filecoin's stand-ins — a simulated chain with a payer's and a
//! provider's Lotus node, and a storage provider selling the local block store's DAGs — for
//! demos and for pointing any Lotus client or curl at. Nothing here is Filecoin.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use shoal_content::{BlockStore, FsBlockStore};
use shoal_filecoin::amount::{format_fil, parse_amount};
use shoal_filecoin::standin::{ProviderConfig, ProviderStandIn, StandInChain};

use crate::home::Home;
use crate::services::{init_logging, shutdown_signal};

/// `shoal filecoin`.
#[derive(Subcommand)]
pub(crate) enum FilecoinCommand {
    /// Start the Lotus and storage-provider stand-ins on loopback (random ports, printed) until
    /// stopped: a simulated chain, not Filecoin.
    Devnet(DevnetArgs),
}

/// `shoal filecoin devnet`.
#[derive(Args)]
pub(crate) struct DevnetArgs {
    /// What one retrieval from the provider costs ("0.001", "0.001 FIL", "1000 attoFIL").
    #[arg(long, default_value = "0.001 FIL")]
    price: String,
    /// The payer wallet's starting balance.
    #[arg(long, default_value = "100 FIL")]
    balance: String,
    /// The bearer token of the payer's Lotus node (the provider's is this with `-provider`).
    #[arg(long, env = "SHOAL_LOTUS_TOKEN", hide_env_values = true, default_value = "devnet")]
    token: String,
}

/// `shoal filecoin …`.
pub(crate) async fn run(home: &Home, command: FilecoinCommand) -> anyhow::Result<ExitCode> {
    match command {
        FilecoinCommand::Devnet(args) => devnet(home, args).await,
    }
}

async fn devnet(home: &Home, args: DevnetArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let price = parse_amount(&args.price).context("--price")?;
    let balance = parse_amount(&args.balance).context("--balance")?;
    let blocks = home.blocks();
    let store: Arc<dyn BlockStore> =
        Arc::new(FsBlockStore::open(&blocks).with_context(|| format!("opening {}", blocks.display()))?);
    let chain = StandInChain::new();
    let payer = chain.new_account(balance.clone());
    let payee = chain.new_account(Default::default());
    let payer_node = chain.start_node(vec![payer], &args.token).await.context("starting the payer's Lotus stand-in")?;
    let provider_token = format!("{}-provider", args.token);
    let provider_node =
        chain.start_node(vec![payee], &provider_token).await.context("starting the provider's Lotus stand-in")?;
    let config = ProviderConfig { price: price.clone(), payee, lotus: provider_node.client() };
    let provider = ProviderStandIn::start(store, config).await.context("starting the provider stand-in")?;

    println!("Filecoin stand-ins (a simulated chain, not Filecoin), selling the DAGs in {}:", blocks.display());
    println!(
        "  payer's Lotus     {}  token {}  wallet {payer} ({})",
        payer_node.url(),
        args.token,
        format_fil(&balance)
    );
    println!("  provider's Lotus  {}  token {provider_token}  wallet {payee}", provider_node.url());
    println!("  provider          {}  peer {}  price {}", provider.url(), provider.peer_id(), format_fil(&price));
    println!("    IPNI find   GET {}/cid/<cid>", provider.url());
    println!("    quote       GET {}/quote/<cid>", provider.url());
    println!("    paid CAR    GET {}/ipfs/<cid>?format=car  with header x-filecoin-voucher", provider.url());
    println!("Stop with Ctrl-C.");
    shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}
