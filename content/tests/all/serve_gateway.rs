//! The trustless-gateway server over real HTTP: formats, negotiation, headers, scopes, errors.

use std::sync::Arc;

use cid::Cid;
use reqwest::{header, StatusCode};
use shoal_content::car::CarReader;
use shoal_content::serve::{router, CAR_CONTENT_TYPE};
use shoal_content::{Block, BlockStore, MemoryBlockStore};

use crate::car_support::*;

const RAW: &str = "application/vnd.ipld.raw";
const CAR: &str = "application/vnd.ipld.car";

async fn serve_sample() -> (String, SampleDag, MemoryBlockStore) {
    let dag = sample_dag();
    let store = store_with(&dag.blocks).await;
    let base = spawn_server(router(Arc::new(store.clone()) as Arc<dyn BlockStore>)).await;
    (base, dag, store)
}

async fn get(url: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    request.send().await.unwrap()
}

fn header_of<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

async fn car_cids(response: reqwest::Response) -> (Vec<Cid>, Vec<Cid>) {
    let body = response.bytes().await.unwrap();
    let mut car = CarReader::new(&body[..], "response").await.unwrap();
    let mut cids = Vec::new();
    while let Some(block) = car.next_block().await.unwrap() {
        cids.push(*block.cid());
    }
    (car.roots().to_vec(), cids)
}

#[tokio::test]
async fn raw_blocks_come_with_the_spec_headers() {
    let (base, dag, _) = serve_sample().await;
    let leaf = &dag.blocks[2];
    for (query, accept) in [("?format=raw", None), ("", Some(RAW)), ("?format=raw", Some(CAR))] {
        let response = get(&format!("{base}/ipfs/{}{query}", leaf.cid()), accept).await;
        assert_eq!(response.status(), StatusCode::OK, "{query} {accept:?}");
        assert_eq!(header_of(&response, "content-type"), RAW);
        assert_eq!(header_of(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header_of(&response, "etag"), format!("\"{}.raw\"", leaf.cid()));
        assert!(header_of(&response, "cache-control").contains("immutable"));
        assert_eq!(response.bytes().await.unwrap(), leaf.data());
    }
}

#[tokio::test]
async fn head_answers_headers_without_a_body() {
    let (base, dag, _) = serve_sample().await;
    let leaf = &dag.blocks[2];
    let client = reqwest::Client::new();
    let response = client.head(format!("{base}/ipfs/{}?format=raw", leaf.cid())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "content-length"), leaf.data().len().to_string());
    assert!(response.bytes().await.unwrap().is_empty());

    // A CAR is streamed, so its length is not known up front: HEAD says nothing about it
    // rather than a length of 0 the GET does not have.
    let response = client.head(format!("{base}/ipfs/{}?format=car", dag.root)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "content-type"), CAR_CONTENT_TYPE);
    let get = client.get(format!("{base}/ipfs/{}?format=car", dag.root)).send().await.unwrap();
    assert_eq!(response.headers().get("content-length"), get.headers().get("content-length"));
    assert!(response.headers().get("content-length").is_none(), "{:?}", response.headers());
    assert!(response.bytes().await.unwrap().is_empty());
    assert!(!get.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_identity_cid_is_served_from_the_cid_itself() {
    let (base, _, _) = serve_sample().await;
    // "hello world" inlined as a raw block: no store holds it, and none needs to.
    let inline = "bafkqac3imvwgy3zao5xxe3de";
    let response = get(&format!("{base}/ipfs/{inline}?format=raw"), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.bytes().await.unwrap()[..], b"hello world");
    let response = get(&format!("{base}/ipfs/{inline}?format=car"), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (roots, blocks) = car_cids(response).await;
    assert_eq!((roots[0].to_string(), blocks[0].to_string()), (inline.to_string(), inline.to_string()));
}

#[tokio::test]
async fn if_none_match_with_the_etag_is_not_modified() {
    let (base, dag, _) = serve_sample().await;
    let response = reqwest::Client::new()
        .get(format!("{base}/ipfs/{}?format=raw", dag.root))
        .header(header::IF_NONE_MATCH, format!("\"{}.raw\"", dag.root))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn cars_stream_the_dag_in_dfs_order_for_each_scope() {
    let (base, dag, _) = serve_sample().await;
    let response = get(&format!("{base}/ipfs/{}", dag.root), Some(CAR)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "content-type"), CAR_CONTENT_TYPE);
    assert_eq!(header_of(&response, "x-content-type-options"), "nosniff");
    assert_eq!(car_cids(response).await, (vec![dag.root], dag.dfs_order.clone()));

    let response = get(&format!("{base}/ipfs/{}?format=car&dag-scope=block", dag.root), Some(RAW)).await;
    assert_eq!(car_cids(response).await.1, vec![dag.root]);

    // The sample root carries no UnixFS data: its entity is the block itself.
    let response = get(&format!("{base}/ipfs/{}?dag-scope=entity", dag.root), Some(CAR)).await;
    assert_eq!(car_cids(response).await.1, vec![dag.root]);
}

#[tokio::test]
async fn accept_is_negotiated_by_quality_and_car_version() {
    let (base, dag, _) = serve_sample().await;
    let url = format!("{base}/ipfs/{}", dag.root);
    let cases = [
        (format!("{CAR};q=0.5, {RAW}"), Some(RAW)),
        (format!("text/html, {CAR}; version=1; order=dfs"), Some(CAR_CONTENT_TYPE)),
        (format!("{CAR}; version=2"), None),
        (format!("{RAW};q=0"), None),
        ("text/html,*/*".to_string(), None),
    ];
    for (accept, expected) in cases {
        let response = get(&url, Some(&accept)).await;
        match expected {
            Some(content_type) => {
                assert_eq!(response.status(), StatusCode::OK, "{accept}");
                assert_eq!(header_of(&response, "content-type"), content_type, "{accept}");
            }
            None => assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE, "{accept}"),
        }
    }
    assert_eq!(get(&url, None).await.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn bad_requests_name_what_is_wrong() {
    let (base, dag, _) = serve_sample().await;
    let absent = *Block::encode(shoal_content::Codec::Raw, &b"absent"[..]).cid();
    let cases = [
        ("/ipfs/not-a-cid?format=raw".to_string(), StatusCode::BAD_REQUEST, "not-a-cid".to_string()),
        (format!("/ipfs/{absent}?format=raw"), StatusCode::NOT_FOUND, absent.to_string()),
        (format!("/ipfs/{absent}?format=car"), StatusCode::NOT_FOUND, absent.to_string()),
        (format!("/ipfs/{}?format=tar", dag.root), StatusCode::BAD_REQUEST, "\"tar\"".to_string()),
        (format!("/ipfs/{}?format=car&dag-scope=most", dag.root), StatusCode::BAD_REQUEST, "\"most\"".to_string()),
        (
            format!("/ipfs/{}?format=car&entity-bytes=0:10", dag.root),
            StatusCode::BAD_REQUEST,
            "entity-bytes".to_string(),
        ),
        (format!("/ipfs/{}/a/b.txt?format=raw", dag.root), StatusCode::BAD_REQUEST, "paths below a CID".to_string()),
    ];
    for (path, status, needle) in cases {
        let response = get(&format!("{base}{path}"), None).await;
        assert_eq!(response.status(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(&needle), "{path}: {message}");
    }
}

#[tokio::test]
async fn a_corrupted_store_is_not_served() {
    let (base, dag, store) = serve_sample().await;
    let mid = dag.dfs_order[1];
    store.insert_unchecked(&mid, &b"bit rot"[..]);

    let response = get(&format!("{base}/ipfs/{mid}?format=raw"), None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // The CAR starts (the root is fine) and then breaks: the body must fail, not end cleanly.
    let response = get(&format!("{base}/ipfs/{}?format=car", dag.root), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.is_err(), "a broken CAR export must abort the response");
}

/// CIDv0 (`Qm…`) roots work end to end: served raw and as a CAR, fetched through the gateway
/// source into another store, and read back byte for byte.
#[tokio::test]
async fn cidv0_dags_are_served_raw_and_as_car_and_fetch_back() {
    use futures::TryStreamExt;
    use shoal_content::source::HttpGatewaySource;
    use shoal_content::unixfs::{self, ImportOptions, Profile};
    use shoal_content::BlockReader;

    let content = pseudo_random_bytes(600 * 1024, 5);
    let store = MemoryBlockStore::new();
    let opts = ImportOptions { profile: Profile::UnixfsV02015, ..Default::default() };
    let root = unixfs::import_reader(&content[..], &opts, &store).await.unwrap().root;
    assert!(root.to_string().starts_with("Qm"), "{root}");
    let base = spawn_server(router(Arc::new(store.clone()) as Arc<dyn BlockStore>)).await;

    let response = get(&format!("{base}/ipfs/{root}?format=raw"), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "etag"), format!("\"{root}.raw\""));
    let body = response.bytes().await.unwrap();
    assert!(Block::new_verified(root, body, "test").is_ok());

    let response = get(&format!("{base}/ipfs/{root}"), Some(CAR)).await;
    let (roots, cids) = car_cids(response).await;
    assert_eq!(roots, vec![root]);
    assert_eq!(cids.len(), 4, "a root over three leaves");

    let fetched = Arc::new(MemoryBlockStore::new());
    let source = HttpGatewaySource::new(&base).unwrap();
    source.fetch_dag(&root, fetched.as_ref()).await.unwrap();
    let reader: Arc<dyn BlockReader> = fetched;
    let parts: Vec<bytes::Bytes> = unixfs::cat(reader, root).try_collect().await.unwrap();
    assert!(parts.concat() == content, "bytes fetched over the gateway differ");
}
