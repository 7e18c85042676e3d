//! Verified fetching: a lying gateway is caught and skipped, HTTP transfer between two stores,
//! whole-DAG CAR fetches checked for completeness, timeouts, deadlines and the cache.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use shoal_content::car::{CarWriter, DagScope, WalkOptions};
use shoal_content::get_verified;
use shoal_content::serve::{router, router_with, ServeOptions};
use shoal_content::source::{copy_dag, AttemptOutcome, HttpGatewaySource, SourceChain};
use shoal_content::{BlockReader, BlockSource, BlockStore, ContentError, FsBlockStore, MemoryBlockStore};

use crate::car_support::*;

fn arc(store: &MemoryBlockStore) -> Arc<dyn BlockStore> {
    Arc::new(store.clone())
}

/// A store behind a gateway that serves whatever bytes it holds, unverified — a liar.
async fn lying_gateway(store: &MemoryBlockStore) -> String {
    spawn_server(router_with(arc(store), ServeOptions { verify_raw: false, ..ServeOptions::default() })).await
}

#[tokio::test]
async fn a_gateway_serving_tampered_bytes_is_caught_and_the_next_source_is_used() {
    let dag = sample_dag();
    let target = dag.dfs_order[2];
    let honest = store_with(&dag.blocks).await;
    let tampered = store_with(&dag.blocks).await;
    tampered.insert_unchecked(&target, &b"not what you asked for"[..]);
    let liar_url = lying_gateway(&tampered).await;
    let honest_url = spawn_server(router(arc(&honest))).await;

    // Asked alone, the liar's bytes fail verification, naming the CID and the liar.
    let liar = Arc::new(HttpGatewaySource::new(&liar_url).unwrap());
    let err = get_verified(liar.as_ref(), &target).await.unwrap_err();
    assert!(
        matches!(&err, ContentError::HashMismatch { cid, origin } if *cid == target && *origin == liar_url),
        "{err}"
    );
    assert!(err.to_string().contains(&target.to_string()) && err.to_string().contains(&liar_url), "{err}");

    // In a chain, the liar is recorded and skipped; the honest gateway delivers.
    let chain = SourceChain::new(vec![liar, Arc::new(HttpGatewaySource::new(&honest_url).unwrap())]);
    let fetched = chain.fetch_traced(&target).await.unwrap();
    assert_eq!(fetched.block.data(), &Bytes::from_static(b"alpha"));
    assert_eq!(fetched.source, honest_url);
    assert_eq!(fetched.failed.len(), 1);
    assert_eq!(fetched.failed[0].source, liar_url);
    match &fetched.failed[0].outcome {
        AttemptOutcome::Failed(ContentError::HashMismatch { cid, origin }) => {
            assert_eq!((cid, origin), (&target, &liar_url));
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(fetched.failed[0].to_string().contains(&target.to_string()));

    // With only the liar, the error says what was tried and why it failed.
    let only_liar = SourceChain::new(vec![Arc::new(HttpGatewaySource::new(&liar_url).unwrap())]);
    let err = only_liar.get(&target).await.unwrap_err();
    assert!(matches!(err, ContentError::Unavailable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&target.to_string()) && text.contains(&liar_url) && text.contains("failed verification"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dag_moves_between_two_stores_over_http() {
    let dag = sample_dag();
    let origin = store_with(&dag.blocks).await;
    let base = spawn_server(router(arc(&origin))).await;
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(FsBlockStore::open(dir.path()).unwrap());

    // Block by block through a chain that caches into the local store.
    let chain = SourceChain::new(vec![Arc::new(HttpGatewaySource::new(&base).unwrap())]).with_cache(local.clone());
    let sink = MemoryBlockStore::new();
    let copied = copy_dag(&chain, &dag.root, &sink, DagScope::All, WalkOptions::default()).await.unwrap();
    assert_eq!(copied, dag.blocks.len() as u64);
    for block in &dag.blocks {
        assert_eq!(&local.get(block.cid()).await.unwrap(), block);
        assert_eq!(&sink.get(block.cid()).await.unwrap(), block);
    }
    // Now cached: the next read comes from the local store, not the gateway.
    assert_eq!(chain.fetch_traced(&dag.root).await.unwrap().source, local.name());

    // The whole DAG as one CAR.
    let other = MemoryBlockStore::new();
    let imported = HttpGatewaySource::new(&base).unwrap().fetch_dag(&dag.root, &other).await.unwrap();
    assert_eq!(imported.roots, vec![dag.root]);
    assert_eq!(other.len(), dag.blocks.len());
}

/// A gateway that answers every CAR request with the same prepared bytes and a 200.
async fn canned_car_gateway(car: Vec<u8>) -> String {
    let car = Bytes::from(car);
    let app = axum::Router::new().route("/ipfs/{cid}", axum::routing::get(move || async move { car.clone() }));
    spawn_server(app).await
}

#[tokio::test]
async fn a_car_that_ends_early_or_holds_another_dag_is_rejected() {
    let dag = sample_dag();
    let missing = dag.dfs_order[4];
    let mut short = Vec::new();
    let mut writer = CarWriter::new(&mut short, &[dag.root]).await.unwrap();
    for block in dag.blocks.iter().filter(|b| *b.cid() != missing) {
        writer.write_block(block).await.unwrap();
    }
    writer.finish().await.unwrap();
    let gateway = HttpGatewaySource::new(&canned_car_gateway(short).await).unwrap();
    let err = gateway.fetch_dag(&dag.root, &MemoryBlockStore::new()).await.unwrap_err();
    assert!(
        matches!(err, ContentError::Incomplete { root, missing: m, .. } if root == dag.root && m == missing),
        "{err}"
    );

    // A complete CAR of some other DAG, whose header names that other root, does not count.
    let stranger = leaf("a different DAG");
    let mut other = Vec::new();
    let mut writer = CarWriter::new(&mut other, &[*stranger.cid()]).await.unwrap();
    writer.write_block(&stranger).await.unwrap();
    writer.finish().await.unwrap();
    let gateway = HttpGatewaySource::new(&canned_car_gateway(other).await).unwrap();
    let err = gateway.fetch_dag(&dag.root, &MemoryBlockStore::new()).await.unwrap_err();
    assert!(matches!(err, ContentError::Incomplete { missing, .. } if missing == dag.root), "{err}");
}

#[tokio::test]
async fn http_status_codes_map_to_none_and_source_errors() {
    let dag = sample_dag();
    let store = store_with(&dag.blocks).await;
    let base = spawn_server(router(arc(&store))).await;
    let gateway = HttpGatewaySource::new(&base).unwrap();
    let absent = *leaf("absent").cid();
    assert_eq!(gateway.fetch(&absent).await.unwrap(), None);

    // The default server refuses to pass on a corrupted block: a 500, reported as a source error.
    store.insert_unchecked(&dag.root, &b"rot"[..]);
    let err = gateway.fetch(&dag.root).await.unwrap_err();
    assert!(matches!(&err, ContentError::Source { origin, .. } if *origin == base), "{err}");
    assert!(err.to_string().contains("500"), "{err}");

    // Nothing listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let err = HttpGatewaySource::new(&format!("http://{closed}")).unwrap().fetch(&absent).await.unwrap_err();
    assert!(matches!(err, ContentError::Source { .. }), "{err}");

    for bad in ["not a url", "ftp://example.invalid/"] {
        assert!(matches!(HttpGatewaySource::new(bad), Err(ContentError::InvalidUrl { .. })), "{bad}");
    }
}

/// A source that never answers.
struct Silent(&'static str);

#[async_trait]
impl BlockSource for Silent {
    fn name(&self) -> &str {
        self.0
    }

    async fn fetch(&self, _cid: &Cid) -> shoal_content::Result<Option<Bytes>> {
        std::future::pending().await
    }
}

/// A memory store under another name, so several can be told apart in a chain.
struct Named(&'static str, MemoryBlockStore);

#[async_trait]
impl BlockSource for Named {
    fn name(&self) -> &str {
        self.0
    }

    async fn fetch(&self, cid: &Cid) -> shoal_content::Result<Option<Bytes>> {
        self.1.fetch(cid).await
    }
}

// Paused time: the runtime jumps the clock whenever every task waits on a timer, so the
// timeouts below elapse instantly and the test measures behaviour, not wall time.
#[tokio::test(start_paused = true)]
async fn a_silent_source_times_out_and_the_next_one_answers() {
    let dag = sample_dag();
    let chain =
        SourceChain::new(vec![Arc::new(Silent("silent")), Arc::new(Named("honest", store_with(&dag.blocks).await))])
            .with_source_timeout(Duration::from_secs(3));
    let fetched = chain.fetch_traced(&dag.root).await.unwrap();
    assert_eq!(fetched.source, "honest");
    assert!(matches!(fetched.failed[0].outcome, AttemptOutcome::TimedOut(d) if d == Duration::from_secs(3)));
}

#[tokio::test(start_paused = true)]
async fn a_cid_no_source_has_fails_at_the_deadline_naming_it_and_what_was_tried() {
    let absent = *leaf("nobody has this").cid();
    let chain = SourceChain::new(vec![
        Arc::new(Named("empty", MemoryBlockStore::new())),
        Arc::new(Silent("silent-a")),
        Arc::new(Silent("silent-b")),
    ])
    .with_source_timeout(Duration::from_secs(20))
    .with_deadline(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    let err = chain.get(&absent).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert!(matches!(err, ContentError::Unavailable { cid, .. } if cid == absent), "{err}");
    let text = err.to_string();
    for needle in ["empty: not found", "silent-a: no answer within 20s", "silent-b: total deadline reached"] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}

#[tokio::test]
async fn a_cid_every_source_lacks_is_not_found_listing_them() {
    let absent = *leaf("nobody has this").cid();
    let chain = SourceChain::new(vec![
        Arc::new(Named("first", MemoryBlockStore::new())),
        Arc::new(Named("second", MemoryBlockStore::new())),
    ]);
    let err = chain.get(&absent).await.unwrap_err();
    assert!(matches!(err, ContentError::NotFound { cid, .. } if cid == absent), "{err}");
    assert!(err.to_string().contains("first: not found; second: not found"), "{err}");
}

#[tokio::test]
async fn a_corrupted_cache_entry_is_skipped_and_reported() {
    let dag = sample_dag();
    let cache = MemoryBlockStore::new();
    cache.insert_unchecked(&dag.root, &b"rotten"[..]);
    let chain = SourceChain::new(vec![Arc::new(Named("origin", store_with(&dag.blocks).await))])
        .with_cache(Arc::new(cache.clone()));
    let fetched = chain.fetch_traced(&dag.root).await.unwrap();
    assert_eq!(fetched.source, "origin");
    assert!(matches!(&fetched.failed[0].outcome, AttemptOutcome::Failed(ContentError::HashMismatch { .. })));
    assert_eq!(fetched.failed[0].source, "memory");
}

/// An identity CID's block is inside the CID: a chain with no source, and an empty store, read
/// it (kubo's `--inline` makes such CIDs), and UnixFS reads it as a file.
#[tokio::test]
async fn an_identity_cid_is_read_without_any_source() {
    use futures::TryStreamExt;
    let inline: Cid = "bafkqac3imvwgy3zao5xxe3de".parse().unwrap();
    let chain = SourceChain::new(Vec::new());
    assert_eq!(&chain.get(&inline).await.unwrap().data()[..], b"hello world");
    assert_eq!(&get_verified(&MemoryBlockStore::new(), &inline).await.unwrap().data()[..], b"hello world");
    let info = shoal_content::unixfs::stat(&chain, &inline).await.unwrap();
    assert_eq!(info.size, 11);
    let read: Vec<Bytes> = shoal_content::unixfs::cat(Arc::new(chain), inline).try_collect().await.unwrap();
    assert_eq!(read.concat(), b"hello world");
}
