//! Paid retrieval end to end on loopback: a real `redis-server` holding the spending ledger,
//! the Lotus stand-in (the payer's node and each provider's node on one simulated chain), and
//! provider stand-ins serving IPNI finds, quotes and paid trustless-gateway CARs.

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use serde_json::Value;
use shoal_content::unixfs::{import_reader, ImportOptions, Profile};
use shoal_content::{get_verified, BlockSource, BlockStore, MemoryBlockStore};
use shoal_filecoin::amount::format_atto;
use shoal_filecoin::ipni::{decode_metadata, FindResponse, IpniClient, Transport};
use shoal_filecoin::retrieve::{encode_voucher, Quote, VOUCHER_HEADER};
use shoal_filecoin::standin::{LotusStandIn, ProviderConfig, ProviderStandIn, StandInChain};
use shoal_filecoin::{LotusError, RetrievalError, Retriever};
use shoal_jobs::keys::{RedisRole, WalletKeys};
use shoal_jobs::{Budget, Fsync, RedisConnection, RedisServer, SpendingLedger};

/// One FIL in attoFIL.
const FIL: u128 = 1_000_000_000_000_000_000;
/// A milliFIL: the prices here.
const MILLI: u128 = FIL / 1000;

fn atto(n: u128) -> TokenAmount {
    TokenAmount::from_atto(n)
}

/// The paying side: Redis with the ledger, the chain, the payer's Lotus node.
struct Payer {
    _dir: tempfile::TempDir,
    redis: RedisServer,
    chain: StandInChain,
    node: LotusStandIn,
    wallet: Address,
}

impl Payer {
    /// A payer with 100 FIL whose wallet may spend `limit` attoFIL.
    async fn new(limit: u128) -> Payer {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
        let chain = StandInChain::new();
        let wallet = chain.new_account(atto(100 * FIL));
        let node = chain.start_node(vec![wallet], "payer-token").await.unwrap();
        let payer = Payer { _dir: dir, redis, chain, node, wallet };
        payer.ledger(RedisRole::Admin).await.set_limit(&wallet.to_string(), limit).await.unwrap();
        payer
    }

    async fn ledger(&self, role: RedisRole) -> SpendingLedger {
        SpendingLedger::new(RedisConnection::open(&[self.redis.url_for(role)]).await.unwrap())
    }

    async fn budget(&self) -> Budget {
        self.ledger(RedisRole::Worker).await.status(&self.wallet.to_string()).await.unwrap()
    }

    /// A retriever paying through the payer's node, finding providers on `indexers`.
    async fn retriever(&self, indexers: &[&Provider]) -> Retriever {
        let indexers = indexers.iter().map(|p| IpniClient::new(&p.standin.url()).unwrap()).collect();
        Retriever::new(self.node.client(), self.ledger(RedisRole::Worker).await, indexers, "worker-1")
    }

    /// A provider holding `store`'s DAGs at `price` attoFIL per retrieval.
    async fn provider(&self, store: &Arc<MemoryBlockStore>, price: u128, wrong_bytes: bool) -> Provider {
        let payee = self.chain.new_account(atto(0));
        let node = self.chain.start_node(vec![payee], "provider-token").await.unwrap();
        let config = ProviderConfig { price: atto(price), payee, lotus: node.client() };
        let store: Arc<dyn BlockStore> = store.clone();
        let standin = if wrong_bytes {
            ProviderStandIn::start_serving_wrong_bytes(store, config).await.unwrap()
        } else {
            ProviderStandIn::start(store, config).await.unwrap()
        };
        Provider { standin, _node: node }
    }
}

struct Provider {
    standin: ProviderStandIn,
    _node: LotusStandIn,
}

/// A UnixFS file of 600 KiB (three 256 KiB leaves and a root) into a fresh store.
async fn dag(seed: u8) -> (Arc<MemoryBlockStore>, Cid) {
    let store = Arc::new(MemoryBlockStore::new());
    let root = dag_into(&store, seed).await;
    (store, root)
}

/// A UnixFS file of 600 KiB (three 256 KiB leaves and a root) into `store`.
async fn dag_into(store: &MemoryBlockStore, seed: u8) -> Cid {
    let bytes: Vec<u8> = (0..600 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed).collect();
    let options = ImportOptions { profile: Profile::KuboV1, progress: None, include_hidden: false };
    let imported = import_reader(&bytes[..], &options, store).await.unwrap();
    assert_eq!(imported.blocks, 4);
    imported.root
}

/// Whether `sink` holds, verified, every block of the DAG in `source`.
async fn holds_all(sink: &MemoryBlockStore, source: &MemoryBlockStore, root: &Cid) -> bool {
    let reader = shoal_content::source::SourceChain::new(vec![Arc::new(source.clone()) as Arc<dyn BlockSource>]);
    let mut walker = shoal_content::car::DagWalker::new(
        &reader,
        *root,
        shoal_content::car::DagScope::All,
        shoal_content::car::WalkOptions::default(),
    );
    let mut count = 0;
    while let Some(block) = walker.next_block().await.unwrap() {
        if get_verified(sink, block.cid()).await.is_err() {
            return false;
        }
        count += 1;
    }
    count == sink.len()
}

/// The voucher recorded for a reservation in Redis.
async fn recorded_voucher(payer: &Payer, reservation: &str) -> String {
    let mut conn = redis::Client::open(payer.redis.url_for(RedisRole::Admin))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = WalletKeys::of(&payer.wallet.to_string()).reservation(reservation);
    redis::cmd("HGET").arg(&key).arg("voucher").query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn a_paid_retrieval_stores_verified_blocks_and_spends_the_quote() {
    let payer = Payer::new(FIL).await;
    let (store, root) = dag(1).await;
    let provider = payer.provider(&store, 3 * MILLI, false).await;
    let retriever = payer.retriever(&[&provider]).await;

    let sink = MemoryBlockStore::new();
    let done = retriever.retrieve(&root, &payer.wallet, Some(&atto(5 * MILLI)), &sink).await.unwrap();
    assert_eq!((done.root, done.blocks, done.paid.clone()), (root, 4, atto(3 * MILLI)));
    assert_eq!(done.provider, provider.standin.peer_id());
    assert!(done.failed.is_empty());
    assert!(holds_all(&sink, &store, &root).await);

    // Spent exactly the quote; nothing left reserved.
    assert_eq!(payer.budget().await, Budget { limit: FIL, spent: 3 * MILLI, reserved: 0, refused: 0, refusals: 0 });
    // The provider accepted one voucher: the one returned, the one recorded before it was sent.
    let accepted = provider.standin.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!((accepted[0].root, &accepted[0].voucher, &accepted[0].paid), (root, &done.voucher, &atto(3 * MILLI)));
    let v = &done.voucher;
    assert_eq!(recorded_voucher(&payer, &done.reservation).await, format!("{}/{}/{}", v.channel_addr, v.lane, v.nonce));
    // The channel pays the provider's payee, as its node's Lotus sees it.
    let funds = payer.node.client().paych_available_funds(&v.channel_addr).await.unwrap();
    assert_eq!((funds.from, funds.voucher_redeemed_amt), (payer.wallet, atto(3 * MILLI)));

    // A second retrieval of the same root pays again, on a fresh lane.
    let again = retriever.retrieve(&root, &payer.wallet, None, &MemoryBlockStore::new()).await.unwrap();
    assert_ne!(again.voucher.lane, done.voucher.lane);
    assert_eq!(payer.budget().await.spent, 6 * MILLI);
    assert_eq!(provider.standin.paid_total(), atto(6 * MILLI));
}

#[tokio::test]
async fn a_provider_serving_wrong_bytes_is_paid_its_quote_only_and_skipped() {
    let payer = Payer::new(FIL).await;
    let (store, root) = dag(2).await;
    // The liar is cheaper, so it is tried first.
    let liar = payer.provider(&store, 2 * MILLI, true).await;
    let honest = payer.provider(&store, 3 * MILLI, false).await;
    let retriever = payer.retriever(&[&liar, &honest]).await;

    let sink = MemoryBlockStore::new();
    let done = retriever.retrieve(&root, &payer.wallet, None, &sink).await.unwrap();
    assert_eq!(done.provider, honest.standin.peer_id());
    assert_eq!(done.failed.len(), 1);
    let failed = &done.failed[0];
    assert_eq!((failed.provider.as_str(), &failed.paid), (liar.standin.peer_id(), &atto(2 * MILLI)));
    assert!(failed.reason.contains("hash") || failed.reason.contains("match"), "{}", failed.reason);
    assert!(holds_all(&sink, &store, &root).await, "only verified blocks, and all of them");

    // The liar holds one voucher for its quote, no more; the books count both payments.
    assert_eq!(liar.standin.accepted().len(), 1);
    assert_eq!(liar.standin.paid_total(), atto(2 * MILLI));
    assert_eq!(honest.standin.paid_total(), atto(3 * MILLI));
    assert_eq!(done.paid, atto(5 * MILLI));
    assert_eq!(payer.budget().await, Budget { limit: FIL, spent: 5 * MILLI, reserved: 0, refused: 0, refusals: 0 });
}

#[tokio::test]
async fn a_provider_that_took_a_voucher_and_failed_is_skipped_unpaid_next_time() {
    let payer = Payer::new(FIL).await;
    let (store, first) = dag(3).await;
    let second = dag_into(&store, 4).await;
    let liar = payer.provider(&store, 2 * MILLI, true).await;
    let honest = payer.provider(&store, 3 * MILLI, false).await;
    let retriever = payer.retriever(&[&liar, &honest]).await;

    retriever.retrieve(&first, &payer.wallet, None, &MemoryBlockStore::new()).await.unwrap();
    // A clone (another job of the same worker) knows it too.
    let done = retriever.clone().retrieve(&second, &payer.wallet, None, &MemoryBlockStore::new()).await.unwrap();
    assert_eq!(done.provider, honest.standin.peer_id());
    let skipped = &done.failed[0];
    assert_eq!((skipped.provider.as_str(), &skipped.paid), (liar.standin.peer_id(), &atto(0)));
    assert!(skipped.reason.contains("skipped unpaid"), "{}", skipped.reason);
    assert_eq!(liar.standin.accepted().len(), 1, "the liar was paid once, for the first input only");
    assert_eq!(done.paid, atto(3 * MILLI));

    // Without a shun period it is tried (and paid) again.
    let forgetful = payer.retriever(&[&liar, &honest]).await.with_shun_period(Duration::ZERO);
    forgetful.retrieve(&first, &payer.wallet, None, &MemoryBlockStore::new()).await.unwrap();
    forgetful.retrieve(&second, &payer.wallet, None, &MemoryBlockStore::new()).await.unwrap();
    assert_eq!(liar.standin.accepted().len(), 3);
}

#[tokio::test]
async fn max_price_bounds_the_total_paid_for_an_input() {
    let payer = Payer::new(FIL).await;
    let (store, root) = dag(11).await;
    let liar = payer.provider(&store, 2 * MILLI, true).await;
    let honest = payer.provider(&store, 3 * MILLI, false).await;
    let retriever = payer.retriever(&[&liar, &honest]).await;

    // Each quote is within 4 milliFIL, but after paying the liar 2 the honest 3 is not.
    let e =
        retriever.retrieve(&root, &payer.wallet, Some(&atto(4 * MILLI)), &MemoryBlockStore::new()).await.unwrap_err();
    let RetrievalError::AllProvidersFailed { attempts, .. } = &e else { panic!("{e:?}") };
    assert_eq!(attempts.len(), 2);
    assert_eq!((&attempts[0].paid, &attempts[1].paid), (&atto(2 * MILLI), &atto(0)));
    assert!(attempts[1].reason.contains("exceeds max_price"), "{}", attempts[1].reason);
    assert!(honest.standin.accepted().is_empty());
    assert_eq!(payer.budget().await, Budget { limit: FIL, spent: 2 * MILLI, reserved: 0, refused: 0, refusals: 0 });
}

#[tokio::test]
async fn quotes_above_max_price_are_refused_unpaid() {
    let payer = Payer::new(FIL).await;
    let (store, root) = dag(3).await;
    let dear = payer.provider(&store, 7 * MILLI, false).await;
    let dearer = payer.provider(&store, 9 * MILLI, false).await;
    let retriever = payer.retriever(&[&dear, &dearer]).await;

    let e =
        retriever.retrieve(&root, &payer.wallet, Some(&atto(5 * MILLI)), &MemoryBlockStore::new()).await.unwrap_err();
    assert!(e.is_budget_exhausted(), "{e}");
    match &e {
        RetrievalError::AboveMaxPrice { max_price, cheapest, provider, .. } => {
            assert_eq!((max_price, cheapest), (&atto(5 * MILLI), &atto(7 * MILLI)));
            assert_eq!(provider, dear.standin.peer_id());
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with(&format!("every quote for {root} is above max_price")), "{e}");
    assert_eq!(payer.budget().await, Budget { limit: FIL, spent: 0, reserved: 0, refused: 0, refusals: 0 });
    assert!(dear.standin.accepted().is_empty() && dearer.standin.accepted().is_empty());
}

#[tokio::test]
async fn a_limit_below_the_price_is_budget_exhausted_with_the_amounts() {
    let payer = Payer::new(2 * MILLI).await;
    let (store, root) = dag(4).await;
    let provider = payer.provider(&store, 3 * MILLI, false).await;
    let retriever = payer.retriever(&[&provider]).await;

    let e = retriever.retrieve(&root, &payer.wallet, None, &MemoryBlockStore::new()).await.unwrap_err();
    assert!(e.is_budget_exhausted(), "{e}");
    match &e {
        RetrievalError::BudgetExhausted { wallet, asked, limit, spent, reserved, .. } => {
            assert_eq!((wallet, *asked, *limit, *spent, *reserved), (&payer.wallet, 3 * MILLI, 2 * MILLI, 0, 0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        format!(
            "{root} costs {} attoFIL, wallet {} has limit {}, spent 0, reserved 0 attoFIL",
            3 * MILLI,
            payer.wallet,
            2 * MILLI
        )
    );
    assert!(provider.standin.accepted().is_empty());
    // Lotus was not asked to pay: no channel exists.
    assert!(payer.node.client().paych_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_retrievals_never_spend_past_the_limit() {
    const TASKS: u128 = 20;
    const PRICE: u128 = 3 * MILLI;
    // Room for seven retrievals and a half: the other thirteen must be refused.
    let limit = 7 * PRICE + PRICE / 2;
    let payer = Payer::new(limit).await;
    let (store, root) = dag(5).await;
    let provider = payer.provider(&store, PRICE, false).await;
    let retriever = payer.retriever(&[&provider]).await;

    let outcomes = futures::future::join_all((0..TASKS).map(|_| {
        let retriever = retriever.clone();
        let wallet = payer.wallet;
        async move { retriever.retrieve(&root, &wallet, None, &MemoryBlockStore::new()).await }
    }))
    .await;
    let succeeded = outcomes.iter().filter(|o| o.is_ok()).count() as u128;
    for outcome in &outcomes {
        if let Err(e) = outcome {
            assert!(matches!(e, RetrievalError::BudgetExhausted { asked: PRICE, limit: l, .. } if *l == limit), "{e}");
        }
    }
    assert_eq!(succeeded, 7);
    let budget = payer.budget().await;
    // What the provider was paid, voucher by voucher, is what the ledger says was spent.
    let accepted = provider.standin.accepted();
    let paid: TokenAmount = accepted.iter().map(|a| a.paid.clone()).sum();
    assert_eq!(accepted.len() as u128, succeeded);
    assert_eq!(format_atto(&paid), budget.spent.to_string());
    assert!(budget.spent <= limit);
    assert_eq!(budget, Budget { limit, spent: 7 * PRICE, reserved: 0, refused: (TASKS - 7) * PRICE, refusals: 13 });
}

#[tokio::test]
async fn a_lotus_error_is_surfaced_and_the_reservation_released() {
    let payer = Payer::new(FIL).await;
    let (store, root) = dag(6).await;
    let provider = payer.provider(&store, 3 * MILLI, false).await;
    let retriever = payer.retriever(&[&provider]).await;
    // A wallet with a limit that the payer's Lotus node holds no key for.
    let stranger = payer.chain.new_account(atto(FIL));
    payer.ledger(RedisRole::Admin).await.set_limit(&stranger.to_string(), FIL).await.unwrap();

    let e = retriever.retrieve(&root, &stranger, None, &MemoryBlockStore::new()).await.unwrap_err();
    assert!(!e.is_budget_exhausted());
    match &e {
        RetrievalError::Lotus { step, source: LotusError::Rpc { method, code: 1, message }, .. } => {
            assert_eq!((*step, method.as_str()), ("PaychGet", "Filecoin.PaychGet"));
            assert!(message.contains("wallet does not have key for address"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("Lotus failed at PaychGet"), "{e}");
    let books = payer.ledger(RedisRole::Worker).await.status(&stranger.to_string()).await.unwrap();
    assert_eq!(
        books,
        Budget { limit: FIL, spent: 0, reserved: 0, refused: 0, refusals: 0 },
        "nothing was sent, so nothing is held"
    );
    assert!(provider.standin.accepted().is_empty());
}

#[tokio::test]
async fn the_provider_refuses_missing_invalid_short_and_replayed_vouchers() {
    let payer = Payer::new(FIL).await;
    let (store, root) = dag(7).await;
    let provider = payer.provider(&store, 3 * MILLI, false).await;
    let http = reqwest::Client::new();
    let base = provider.standin.url();

    let quote: Quote = http.get(format!("{base}/quote/{root}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (quote.root, &quote.price, quote.provider.as_str()),
        (root, &atto(3 * MILLI), provider.standin.peer_id())
    );
    let car = |voucher: Option<String>| {
        let mut request = http.get(format!("{base}/ipfs/{root}?format=car"));
        if let Some(v) = voucher {
            request = request.header(VOUCHER_HEADER, v);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap())
        }
    };
    let error = |body: &[u8]| serde_json::from_slice::<Value>(body).unwrap()["error"].as_str().unwrap().to_owned();

    let (status, body) = car(None).await;
    assert_eq!(status, 402);
    assert!(error(&body).starts_with("payment required"), "{}", error(&body));
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["price"], (3 * MILLI).to_string());
    assert_eq!(car(Some("not a voucher".into())).await.0, 402);

    let lotus = payer.node.client();
    let info = lotus.paych_get(&payer.wallet, &quote.payee, &atto(10 * MILLI), Default::default()).await.unwrap();
    let channel = lotus.paych_get_wait_ready(&info.wait_sentinel.unwrap()).await.unwrap();
    let lane = lotus.paych_allocate_lane(&channel).await.unwrap();
    // Short of the quote.
    let short = lotus.paych_voucher_create(&channel, &atto(2 * MILLI), lane).await.unwrap().voucher.unwrap();
    let (status, body) = car(Some(encode_voucher(&short))).await;
    assert_eq!(status, 402);
    assert!(error(&body).contains("voucher short"), "{}", error(&body));
    // Tampered: the amount raised after signing.
    let mut forged = short.clone();
    forged.amount = atto(9 * MILLI);
    let (status, body) = car(Some(encode_voucher(&forged))).await;
    assert_eq!(status, 402);
    assert!(error(&body).contains("signature did not match"), "{}", error(&body));
    assert!(provider.standin.accepted().is_empty());

    // A good one is served once; presented again, it pays nothing more and is refused.
    let good = lotus.paych_voucher_create(&channel, &atto(5 * MILLI), lane).await.unwrap().voucher.unwrap();
    // HEAD has no body to pay for: it never takes the voucher.
    let head = http.head(format!("{base}/ipfs/{root}?format=car")).header(VOUCHER_HEADER, encode_voucher(&good));
    assert_eq!(head.send().await.unwrap().status().as_u16(), 402);
    assert!(provider.standin.accepted().is_empty());
    let (status, body) = car(Some(encode_voucher(&good))).await;
    assert_eq!(status, 200);
    let imported = shoal_content::car::import_car(&body[..], &MemoryBlockStore::new(), "test").await.unwrap();
    assert_eq!(imported.roots, vec![root]);
    let (status, body) = car(Some(encode_voucher(&good))).await;
    assert_eq!(status, 402);
    assert!(error(&body).contains("nonce too low"), "{}", error(&body));
    assert_eq!(provider.standin.paid_total(), atto(5 * MILLI));

    // Nothing is charged for what it does not hold.
    let (absent_store, absent) = dag(8).await;
    drop(absent_store);
    let response = http.get(format!("{base}/ipfs/{absent}?format=car")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn ipni_finds_from_a_recorded_answer_and_from_the_stand_in() {
    // cid.contact's answer for a web3.storage CID (tests/fixtures/README.md).
    let recorded = include_str!("fixtures/ipni-find-cid.json");
    let found: FindResponse = serde_json::from_str(recorded).unwrap();
    let asked: Cid = "bafybeidluj5ub7okodgg5v6l4x3nytpivvcouuxgzuioa6vodg3xt2uqle".parse().unwrap();
    assert_eq!(found.multihash_results.len(), 1);
    assert_eq!(found.multihash_results[0].multihash, asked.hash().to_bytes(), "the multihash of the CID asked for");
    let results = &found.multihash_results[0].provider_results;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].provider.as_ref().unwrap().id, "12D3KooWAWcPeDRjFMasZ9D7yfr2Znh3kefPUuyVb66DsM3A72oz");
    match decode_metadata(&results[0].metadata).unwrap().as_slice() {
        [Transport::GraphsyncFilecoinV1 { piece_cid, verified_deal: true, fast_retrieval: true }] => {
            assert_eq!(piece_cid.codec(), 0xf101, "a piece CID (fil-commitment-unsealed)");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decode_metadata(&results[1].metadata).unwrap(), vec![Transport::Bitswap]);
    // Neither serves the trustless gateway over HTTP.
    assert!(found.http_providers().is_empty());
    // Written back, it is the same JSON.
    let original: Value = serde_json::from_str(recorded).unwrap();
    assert_eq!(serde_json::to_value(&found).unwrap(), original);

    // The stand-in answers in that shape, naming itself over HTTP; 404 is "nobody has it".
    let payer = Payer::new(FIL).await;
    let (store, root) = dag(9).await;
    let provider = payer.provider(&store, MILLI, false).await;
    let indexer = IpniClient::new(&provider.standin.url()).unwrap();
    let http = indexer.find_cid(&root).await.unwrap().http_providers();
    assert_eq!(http.len(), 1);
    assert_eq!(http[0].peer_id, provider.standin.peer_id());
    assert_eq!(http[0].urls[0].as_str(), format!("{}/", provider.standin.url()));
    assert!(provider.standin.multiaddr().ends_with("/http"));
    let (_, elsewhere) = dag(10).await;
    assert_eq!(indexer.find_cid(&elsewhere).await.unwrap(), FindResponse::default());
    let retriever = payer.retriever(&[&provider]).await;
    let e = retriever.retrieve(&elsewhere, &payer.wallet, None, &MemoryBlockStore::new()).await.unwrap_err();
    assert!(matches!(e, RetrievalError::NoProviders { .. }), "{e}");
}
