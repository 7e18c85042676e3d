//! Inputs bought from Filecoin through a whole stack: a job's `"source": "filecoin"` input that
//! no free source has is retrieved by the worker from a storage-provider stand-in, paid with a
//! voucher through the Lotus stand-in, within the wallet's limit and the input's `max_price`;
//! what cannot be paid for fails `budget_exhausted` with the amounts.

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use serde_json::{json, Value};
use shoal_content::unixfs::{import_reader, ImportOptions};
use shoal_content::{BlockStore, MemoryBlockStore};
use shoal_filecoin::standin::{LotusStandIn, ProviderConfig, ProviderStandIn, StandInChain};
use shoal_jobs::keys::RedisRole;
use shoal_jobs::{Budget, FailureReason, Job, JobState, RedisConnection, SpendingLedger};
use shoal_testkit::{Stack, StackOptions};
use shoal_worker::FilecoinConfig;

use crate::sha256_hex;

const WAIT: Duration = Duration::from_secs(120);

/// One milliFIL in attoFIL: the provider's price here.
const MILLI: u128 = 1_000_000_000_000_000;

/// A simulated chain with a paying wallet and one provider holding a dataset.
struct Market {
    payer: LotusStandIn,
    wallet: Address,
    provider: ProviderStandIn,
    _provider_node: LotusStandIn,
    /// The dataset, only the provider holds it.
    dataset: Cid,
    bytes: Vec<u8>,
}

impl Market {
    /// A payer with 10 FIL, and a provider asking `price` attoFIL for its dataset of `seed`.
    async fn open(price: u128, seed: u8) -> Market {
        let chain = StandInChain::new();
        let wallet = chain.new_account(TokenAmount::from_whole(10));
        let payer = chain.start_node(vec![wallet], "payer-token").await.unwrap();
        let payee = chain.new_account(TokenAmount::from_atto(0));
        let provider_node = chain.start_node(vec![payee], "provider-token").await.unwrap();
        let bytes: Vec<u8> = (0..700 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8 ^ seed).collect();
        let store = Arc::new(MemoryBlockStore::new());
        let dataset = import_reader(&bytes[..], &ImportOptions::default(), store.as_ref()).await.unwrap().root;
        let config = ProviderConfig { price: TokenAmount::from_atto(price), payee, lotus: provider_node.client() };
        let provider = ProviderStandIn::start(store as Arc<dyn BlockStore>, config).await.unwrap();
        Market { payer, wallet, provider, _provider_node: provider_node, dataset, bytes }
    }

    /// A worker of `stack` that buys inputs in this market.
    fn worker(&self, stack: &Stack, id: &str) -> shoal_worker::WorkerConfig {
        let mut config = stack.worker_config(id);
        config.filecoin = Some(FilecoinConfig {
            lotus_url: self.payer.url(),
            lotus_token: Some(self.payer.token().to_string()),
            indexers: vec![self.provider.url()],
            wallet: None,
        });
        config
    }

    /// What the provider was paid, in attoFIL, by the vouchers it accepted.
    fn paid(&self) -> u128 {
        self.provider.accepted().iter().map(|a| u128::try_from(a.paid.atto()).unwrap()).sum()
    }
}

async fn ledger(stack: &Stack) -> SpendingLedger {
    SpendingLedger::new(RedisConnection::open(&[stack.redis.url_for(RedisRole::Admin)]).await.unwrap())
}

async fn budget(stack: &Stack, market: &Market) -> Budget {
    ledger(stack).await.status(&market.wallet.to_string()).await.unwrap()
}

/// A stack whose one worker buys in a market where the dataset of `seed` costs `price` and
/// the wallet may spend `limit` (attoFIL).
async fn buying_stack(price: u128, seed: u8, limit: u128) -> (Stack, Market) {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let market = Market::open(price, seed).await;
    ledger(&stack).await.set_limit(&market.wallet.to_string(), limit).await.unwrap();
    stack.start_worker_with(market.worker(&stack, "buyer"));
    (stack, market)
}

/// echo-hash over the dataset, bought from Filecoin at most for `max_price` (if given).
async fn hash_dataset(stack: &Stack, market: &Market, max_price: Option<&str>) -> Job {
    let program = stack.add_program("echo-hash").await.unwrap();
    let mut input = json!({"cid": market.dataset.to_string(), "name": "scene", "source": "filecoin"});
    if let Some(max_price) = max_price {
        input["max_price"] = Value::from(max_price);
    }
    let id = stack.submit_ok(&json!({"program": program.to_string(), "inputs": [input]})).await.unwrap();
    stack.wait_terminal(&id, WAIT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_input_only_a_provider_holds_is_bought_once_verified_and_then_read_for_free() {
    let (stack, market) = buying_stack(2 * MILLI, 1, 10 * MILLI).await;

    let job = hash_dataset(&stack, &market, Some("0.005 FIL")).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let line = stack.read(job.result.unwrap().output.cid(), "scene.sha256").await.unwrap();
    assert_eq!(String::from_utf8(line).unwrap(), format!("{}  scene\n", sha256_hex(&market.bytes)));
    let books = budget(&stack, &market).await;
    assert_eq!((books.spent, books.reserved), (2 * MILLI, 0), "{books:?}");
    assert_eq!(market.paid(), 2 * MILLI, "the provider was paid its price once");

    // The worker now holds the dataset: a second job over it pays nothing.
    let again = hash_dataset(&stack, &market, Some("0.005 FIL")).await;
    assert_eq!(again.state, JobState::Succeeded, "{again:?}");
    assert_eq!(budget(&stack, &market).await.spent, 2 * MILLI);
    assert_eq!(market.provider.accepted().len(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_input_that_cannot_be_paid_for_fails_budget_exhausted_with_the_amounts() {
    let (stack, market) = buying_stack(3 * MILLI, 2, 2 * MILLI).await;

    // Above the input's own max_price: nothing is reserved or paid.
    let dear = hash_dataset(&stack, &market, Some("0.001 FIL")).await;
    let failure = dear.failure.expect("failed");
    assert_eq!((dear.state, failure.reason), (JobState::Failed, FailureReason::BudgetExhausted), "{}", failure.message);
    assert!(failure.message.contains("max_price 1000000000000000 attoFIL"), "{}", failure.message);
    assert!(failure.message.contains("the cheapest is 3000000000000000 attoFIL"), "{}", failure.message);

    // Within max_price, but the wallet's limit leaves too little.
    let over = hash_dataset(&stack, &market, None).await;
    let failure = over.failure.expect("failed");
    assert_eq!((over.state, failure.reason), (JobState::Failed, FailureReason::BudgetExhausted), "{}", failure.message);
    assert!(failure.message.contains("costs 3000000000000000 attoFIL"), "{}", failure.message);
    assert!(failure.message.contains("limit 2000000000000000"), "{}", failure.message);

    let books = budget(&stack, &market).await;
    assert_eq!((books.spent, books.reserved), (0, 0), "{books:?}");
    assert!(market.provider.accepted().is_empty(), "nothing was paid");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_buys_nothing_says_so_when_the_input_never_comes() {
    let options = StackOptions { workers: 0, fetch_timeout: Duration::from_secs(2), ..StackOptions::default() };
    let mut stack = Stack::start(options).await.unwrap();
    let market = Market::open(MILLI, 3).await;
    stack.start_worker("free-only");
    let job = hash_dataset(&stack, &market, None).await;
    let failure = job.failure.expect("failed");
    assert_eq!((job.state, failure.reason), (JobState::Failed, FailureReason::InputUnavailable), "{}", failure.message);
    assert!(failure.message.contains("this worker buys nothing"), "{}", failure.message);
    assert!(market.provider.accepted().is_empty());
    stack.shutdown().await;
}
