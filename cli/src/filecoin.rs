//! `shoal filecoin`: the operators' hold on wallets' spending limits and books (`limit`,
//! `spent`, straight in Redis like `shoal keys`), a wallet's balance from Lotus (`balance`), and
//! `devnet`: shoal-filecoin's stand-ins — a simulated chain with a payer's and a provider's
//! Lotus node, and a storage provider selling the local block store's DAGs — for demos and for
//! pointing any Lotus client or curl at. Nothing in `devnet` is Filecoin.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use serde_json::json;
use shoal_content::{BlockStore, FsBlockStore};
use shoal_filecoin::amount::{format_atto, format_fil, parse_amount};
use shoal_filecoin::standin::{LotusStandIn, ProviderConfig, ProviderStandIn, StandInChain};
use shoal_filecoin::types::parse_address;
use shoal_filecoin::LotusClient;
use shoal_jobs::{parse_attofil, AttoFil, Budget, SpendingLedger};
use shoal_worker::FilecoinConfig;

use crate::home::Home;
use crate::quarantine::RedisArgs;
use crate::services::{init_logging, shutdown_signal};

/// `shoal filecoin`.
#[derive(Subcommand)]
pub(crate) enum FilecoinCommand {
    /// Start the Lotus and storage-provider stand-ins on loopback (random ports, printed) until
    /// stopped: a simulated chain, not Filecoin.
    Devnet(DevnetArgs),
    /// Show a wallet's spending limit, or set it (operators, straight in Redis): what workers
    /// may spend from it on retrievals in all.
    Limit(LimitArgs),
    /// Show the limit, spent, reserved and refused amounts of a wallet, or of every wallet with
    /// a limit (operators, straight in Redis).
    Spent(SpentArgs),
    /// Show a wallet's balance on chain, from a Lotus node (its default wallet if none is named).
    Balance(BalanceArgs),
}

/// `shoal filecoin limit`.
#[derive(Args)]
pub(crate) struct LimitArgs {
    /// The wallet's address (`f1…`).
    wallet: String,
    /// The new limit ("0.5", "0.5 FIL", "1500 attoFIL"); without it the limit is shown.
    // Hyphens allowed so that "-1" is refused as a negative amount, not as an unknown flag.
    #[arg(allow_hyphen_values = true)]
    amount: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
}

/// `shoal filecoin spent`.
#[derive(Args)]
pub(crate) struct SpentArgs {
    /// The wallet's address; every wallet with a limit if none.
    wallet: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
}

/// `shoal filecoin balance`.
#[derive(Args)]
pub(crate) struct BalanceArgs {
    /// The wallet's address; the node's default wallet if none.
    wallet: Option<String>,
    /// The Lotus node's JSON-RPC v1 endpoint (`http://host:1234/rpc/v1`).
    #[arg(long, env = "SHOAL_LOTUS_URL")]
    lotus_url: String,
    /// The node's API token (the default wallet needs `write`).
    #[arg(long, env = "SHOAL_LOTUS_TOKEN", hide_env_values = true)]
    lotus_token: Option<String>,
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
pub(crate) async fn run(home: &Home, command: FilecoinCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        FilecoinCommand::Devnet(args) => devnet(home, args).await,
        FilecoinCommand::Limit(args) => limit(args, json).await,
        FilecoinCommand::Spent(args) => spent(args, json).await,
        FilecoinCommand::Balance(args) => balance(args, json).await,
    }
}

/// An amount as the commands print it: exactly, in FIL, with the attoFIL in parentheses.
fn fil(atto: u128) -> String {
    match AttoFil::new(atto) {
        Ok(amount) => format!("{amount} ({atto} attoFIL)"),
        Err(_) => format!("{atto} attoFIL"),
    }
}

/// `wallet` as the ledger keys it: the address's canonical string, as the retriever writes it.
fn wallet_key(wallet: &str) -> anyhow::Result<String> {
    Ok(parse_address(wallet).with_context(|| format!("invalid wallet address {wallet:?}"))?.to_string())
}

/// A wallet's books as `--json` prints them: attoFIL as decimal strings, exact in any parser.
fn budget_json(wallet: &str, budget: &Budget) -> serde_json::Value {
    json!({
        "wallet": wallet,
        "limit_attofil": budget.limit.to_string(),
        "spent_attofil": budget.spent.to_string(),
        "reserved_attofil": budget.reserved.to_string(),
        "refused_attofil": budget.refused.to_string(),
        "refusals": budget.refusals,
    })
}

async fn limit(args: LimitArgs, json: bool) -> anyhow::Result<ExitCode> {
    let wallet = wallet_key(&args.wallet)?;
    let ledger = SpendingLedger::new(args.redis.connect().await?);
    if let Some(amount) = &args.amount {
        let amount = AttoFil::parse(amount).context("the limit")?;
        ledger.set_limit(&wallet, amount.atto()).await?;
    }
    let limited = ledger.wallets().await?.contains(&wallet);
    let budget = ledger.status(&wallet).await?;
    if json {
        crate::print_json(&json!({ "wallet": wallet, "limited": limited, "limit_attofil": budget.limit.to_string() }))?;
    } else if limited {
        println!("{wallet}\tlimit {}", fil(budget.limit));
    } else {
        println!("{wallet}\tno limit set: it may spend nothing");
    }
    Ok(ExitCode::SUCCESS)
}

async fn spent(args: SpentArgs, json: bool) -> anyhow::Result<ExitCode> {
    let ledger = SpendingLedger::new(args.redis.connect().await?);
    let wallets = match &args.wallet {
        Some(wallet) => vec![wallet_key(wallet)?],
        None => ledger.wallets().await?,
    };
    let mut books = Vec::with_capacity(wallets.len());
    for wallet in wallets {
        let budget = ledger.status(&wallet).await?;
        books.push((wallet, budget));
    }
    if json {
        let wallets: Vec<_> = books.iter().map(|(wallet, budget)| budget_json(wallet, budget)).collect();
        crate::print_json(&json!({ "wallets": wallets }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if books.is_empty() {
        eprintln!("no wallet has a limit (shoal filecoin limit WALLET AMOUNT sets one)");
    }
    for (wallet, budget) in books {
        println!("{wallet}");
        println!("  limit     {}", fil(budget.limit));
        println!("  spent     {}", fil(budget.spent));
        println!("  reserved  {}", fil(budget.reserved));
        println!("  refused   {} in {} reservations", fil(budget.refused), budget.refusals);
    }
    Ok(ExitCode::SUCCESS)
}

async fn balance(args: BalanceArgs, json: bool) -> anyhow::Result<ExitCode> {
    let lotus = LotusClient::new(&args.lotus_url, args.lotus_token.as_deref())?;
    let wallet = match &args.wallet {
        Some(wallet) => parse_address(wallet).with_context(|| format!("invalid wallet address {wallet:?}"))?,
        None => lotus.wallet_default_address().await.context("asking Lotus for its default wallet")?,
    };
    let balance = lotus.wallet_balance(&wallet).await.context("asking Lotus for the balance")?;
    if json {
        crate::print_json(&json!({ "wallet": wallet.to_string(), "balance_attofil": format_atto(&balance) }))?;
    } else {
        // Lotus's amounts are bounded by the supply, which a u128 holds.
        println!("{wallet}\tbalance {}", fil(parse_attofil(&format_atto(&balance))?));
    }
    Ok(ExitCode::SUCCESS)
}

async fn devnet(home: &Home, args: DevnetArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let price = parse_amount(&args.price).context("--price")?;
    let balance = parse_amount(&args.balance).context("--balance")?;
    let devnet = Devnet::start(&home.blocks(), price, balance, &args.token).await?;
    devnet.print();
    println!("Stop with Ctrl-C.");
    shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}

/// The stand-ins, running: a simulated chain with a payer's and a provider's Lotus node, and
/// a storage provider selling the DAGs of one block store. Stopped when dropped.
pub(crate) struct Devnet {
    /// The paying wallet.
    pub(crate) payer: Address,
    /// The payer's Lotus node (its wallet holds `payer`).
    pub(crate) payer_node: LotusStandIn,
    provider_node: LotusStandIn,
    /// The storage provider: IPNI finds, quotes, paid CARs.
    pub(crate) provider: ProviderStandIn,
    blocks: PathBuf,
    balance: TokenAmount,
}

impl Devnet {
    /// Starts the stand-ins, the provider selling the DAGs in the block store at `blocks` at
    /// `price` a retrieval, the payer holding `balance`, its node asking for `token` (the
    /// provider's node for `<token>-provider`).
    pub(crate) async fn start(
        blocks: &Path,
        price: TokenAmount,
        balance: TokenAmount,
        token: &str,
    ) -> anyhow::Result<Devnet> {
        let store: Arc<dyn BlockStore> =
            Arc::new(FsBlockStore::open(blocks).with_context(|| format!("opening {}", blocks.display()))?);
        let chain = StandInChain::new();
        let payer = chain.new_account(balance.clone());
        let payee = chain.new_account(Default::default());
        let payer_node = chain.start_node(vec![payer], token).await.context("starting the payer's Lotus stand-in")?;
        let provider_node = chain
            .start_node(vec![payee], &format!("{token}-provider"))
            .await
            .context("starting the provider's Lotus stand-in")?;
        let config = ProviderConfig { price, payee, lotus: provider_node.client() };
        let provider = ProviderStandIn::start(store, config).await.context("starting the provider stand-in")?;
        Ok(Devnet { payer, payer_node, provider_node, provider, blocks: blocks.to_path_buf(), balance })
    }

    /// How a worker buys from these stand-ins.
    pub(crate) fn buyer(&self) -> FilecoinConfig {
        FilecoinConfig {
            lotus_url: self.payer_node.url(),
            lotus_token: Some(self.payer_node.token().to_string()),
            indexers: vec![self.provider.url()],
            wallet: Some(self.payer.to_string()),
        }
    }

    /// Prints where everything is.
    pub(crate) fn print(&self) {
        let (payer, provider) = (&self.payer_node, &self.provider);
        println!(
            "Filecoin stand-ins (a simulated chain, not Filecoin), selling the DAGs in {}:",
            self.blocks.display()
        );
        let balance = format_fil(&self.balance);
        println!("  payer's Lotus     {}  token {}  wallet {} ({balance})", payer.url(), payer.token(), self.payer);
        let node = &self.provider_node;
        println!("  provider's Lotus  {}  token {}", node.url(), node.token());
        println!(
            "  provider          {}  peer {}  price {}",
            provider.url(),
            provider.peer_id(),
            format_fil(provider.price())
        );
        println!("    IPNI find   GET {}/cid/<cid>", provider.url());
        println!("    quote       GET {}/quote/<cid>", provider.url());
        println!("    paid CAR    GET {}/ipfs/<cid>?format=car  with header x-filecoin-voucher", provider.url());
    }
}
