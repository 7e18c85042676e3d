//! Shared fixtures of the CAR, source and serve tests: hand-built DAGs whose expected walk order
//! is written down independently of the walker, and the `ipfs-car` interop peer.

use std::path::PathBuf;

use bytes::Bytes;
use cid::Cid;
use ipld_dagpb::{PbLink, PbNode};
use shoal_content::{Block, Codec, MemoryBlockStore};

/// A dag-pb node linking to `links` (block, name), with optional `data`.
pub(crate) fn pb_node(links: &[(&Block, &str)], data: Option<&[u8]>) -> Block {
    let node = PbNode {
        links: links
            .iter()
            .map(|(block, name)| PbLink {
                cid: *block.cid(),
                name: Some(name.to_string()),
                size: Some(block.data().len() as u64),
            })
            .collect(),
        data: data.map(Bytes::copy_from_slice),
    };
    Block::encode(Codec::DagPb, node.into_bytes())
}

/// A raw leaf holding `text`.
pub(crate) fn leaf(text: &str) -> Block {
    Block::encode(Codec::Raw, text.as_bytes().to_vec())
}

/// UnixFS `Data` messages, protobuf-encoded by hand (field 1 = Type, field 6 = fanout).
pub(crate) const UNIXFS_FILE: &[u8] = &[0x08, 0x02];
/// A plain UnixFS directory.
pub(crate) const UNIXFS_DIRECTORY: &[u8] = &[0x08, 0x01];
/// A UnixFS HAMT shard with fanout 256 (`0x30` = field 6 varint, `0x80 0x02` = 256).
pub(crate) const UNIXFS_HAMT_256: &[u8] = &[0x08, 0x05, 0x30, 0x80, 0x02];

/// A small DAG with a shared subtree and a duplicate link:
///
/// ```text
/// root ─┬─ mid ─┬─ a
///       │       └─ b
///       ├─ c
///       └─ a   (again: must not be written twice)
/// ```
pub(crate) struct SampleDag {
    /// Every distinct block.
    pub blocks: Vec<Block>,
    /// The root.
    pub root: Cid,
    /// The depth-first pre-order without duplicates, as the trustless gateway spec defines it.
    pub dfs_order: Vec<Cid>,
}

/// Builds [`SampleDag`].
pub(crate) fn sample_dag() -> SampleDag {
    let a = leaf("alpha");
    let b = leaf("bravo");
    let c = leaf("charlie");
    let mid = pb_node(&[(&a, "a"), (&b, "b")], None);
    // dag-pb encoders sort links by name, so the names fix the link order.
    let root = pb_node(&[(&mid, "1-mid"), (&c, "2-c"), (&a, "3-a-again")], None);
    let dfs_order = vec![*root.cid(), *mid.cid(), *a.cid(), *b.cid(), *c.cid()];
    SampleDag { root: *root.cid(), blocks: vec![root, mid, a, b, c], dfs_order }
}

/// A store holding `blocks`.
pub(crate) async fn store_with(blocks: &[Block]) -> MemoryBlockStore {
    use shoal_content::BlockSink;
    let store = MemoryBlockStore::new();
    for block in blocks {
        store.put(block).await.unwrap();
    }
    store
}

/// Deterministic pseudo-random bytes (xorshift64), so fixtures need no RNG crate.
pub(crate) fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The `ipfs-car` CLI installed by `npm ci --prefix content/tests/js-car`.
pub(crate) fn ipfs_car_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js-car/node_modules/.bin/ipfs-car");
    assert!(
        bin.exists(),
        "{} is missing: run `npm ci --prefix content/tests/js-car` first (the Makefile's test setup does)",
        bin.display()
    );
    bin
}

/// Runs `ipfs-car` with `args` and returns its stdout; fails the test with its stderr otherwise.
pub(crate) fn ipfs_car(args: &[&std::ffi::OsStr]) -> String {
    let output = std::process::Command::new("node")
        .arg(ipfs_car_bin())
        .args(args)
        .output()
        .expect("running node (Node 20 is needed for the ipfs-car interop tests)");
    assert!(output.status.success(), "ipfs-car {:?} failed: {}", args, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("ipfs-car prints UTF-8")
}

/// Serves `router` on an ephemeral loopback port; returns its base URL. The server lives as long
/// as the test's runtime.
pub(crate) async fn spawn_server(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}
