//! Hostile and broken UnixFS DAGs: every operation ends in a clear error that names the block
//! at fault — never a panic, a hang or an allocation sized by a number inside the DAG.
//!
//! Also path resolution (`<cid>/a/b`, `/ipfs/<cid>/a/b`) with CIDv0 and CIDv1 roots.

use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use futures::TryStreamExt;
use ipld_dagpb::{PbLink, PbNode};
use multihash_codetable::{Code, MultihashDigest};
use prost::Message;
use shoal_content::unixfs::pb::{Data, DataType};
use shoal_content::unixfs::{self, ImportOptions, NodeKind, Profile, MAX_BLOCK_SIZE, MAX_DEPTH};
use shoal_content::{Block, BlockReader, BlockSink, Codec, ContentError, MemoryBlockStore};

/// A dag-pb block with `links` (target, name, declared tsize) and UnixFS `data`.
fn pb(links: &[(Cid, &str)], data: Option<Data>) -> Block {
    let node = PbNode {
        links: links
            .iter()
            .map(|(cid, name)| PbLink { cid: *cid, name: Some(name.to_string()), size: Some(1) })
            .collect(),
        data: data.map(|d| d.encode_to_vec().into()),
    };
    Block::encode(Codec::DagPb, node.into_bytes())
}

/// A UnixFS `File` node over `children` with the given `blocksizes` and declared `filesize`.
fn file_node(children: &[Cid], blocksizes: Vec<u64>, filesize: Option<u64>) -> Block {
    let mut data = Data::new(DataType::File);
    data.blocksizes = blocksizes;
    data.filesize = filesize;
    let links: Vec<(Cid, &str)> = children.iter().map(|c| (*c, "")).collect();
    pb(&links, Some(data))
}

fn dir_node(entries: &[(&str, Cid)]) -> Block {
    let links: Vec<(Cid, &str)> = entries.iter().map(|(name, cid)| (*cid, *name)).collect();
    pb(&links, Some(Data::new(DataType::Directory)))
}

fn raw(bytes: &[u8]) -> Block {
    Block::encode(Codec::Raw, bytes.to_vec())
}

async fn store_of(blocks: &[&Block]) -> Arc<MemoryBlockStore> {
    let store = Arc::new(MemoryBlockStore::new());
    for block in blocks {
        store.put(block).await.unwrap();
    }
    store
}

async fn cat_all(store: &Arc<MemoryBlockStore>, cid: Cid) -> Result<Vec<u8>, ContentError> {
    let reader: Arc<dyn BlockReader> = store.clone();
    let parts: Vec<Bytes> = unixfs::cat(reader, cid).try_collect().await?;
    Ok(parts.concat())
}

/// Asserts `err` is `Malformed` about `cid`, and that its message names the CID.
fn assert_malformed(err: ContentError, cid: &Cid) {
    match &err {
        ContentError::Malformed { cid: at, .. } => assert_eq!(at, cid, "{err}"),
        other => panic!("expected Malformed about {cid}, got {other:?}"),
    }
    assert!(err.to_string().contains(&cid.to_string()), "{err}");
}

#[tokio::test]
async fn dag_pb_garbage_fails_every_operation_naming_the_block() {
    let garbage = Block::encode(Codec::DagPb, &b"\xff\xff\xff\xff garbage"[..]);
    let cid = *garbage.cid();
    let store = store_of(&[&garbage]).await;
    assert_malformed(unixfs::stat(store.as_ref(), &cid).await.unwrap_err(), &cid);
    assert_malformed(unixfs::list(store.as_ref(), &cid).await.unwrap_err(), &cid);
    assert_malformed(unixfs::resolve_path(store.as_ref(), &cid, "a/b").await.unwrap_err(), &cid);
    assert_malformed(cat_all(&store, cid).await.unwrap_err(), &cid);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("x");
    assert_malformed(unixfs::export_to_path(store.as_ref(), &cid, &dest).await.unwrap_err(), &cid);
    assert!(!dest.exists(), "nothing is written for a block that does not decode");
}

#[tokio::test]
async fn dag_pb_without_valid_unixfs_data_is_malformed() {
    let no_data = Block::encode(Codec::DagPb, PbNode { links: vec![], data: None }.into_bytes());
    let bad_data =
        Block::encode(Codec::DagPb, PbNode { links: vec![], data: Some(Bytes::from_static(b"\xff\xff")) }.into_bytes());
    let unknown_type =
        Block::encode(Codec::DagPb, PbNode { links: vec![], data: Some(Bytes::from_static(&[0x08, 99])) }.into_bytes());
    let store = store_of(&[&no_data, &bad_data, &unknown_type]).await;
    for (block, says) in
        [(&no_data, "no UnixFS Data"), (&bad_data, "UnixFS Data"), (&unknown_type, "unknown UnixFS type 99")]
    {
        let err = unixfs::stat(store.as_ref(), block.cid()).await.unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
        assert_malformed(err, block.cid());
    }
}

#[tokio::test]
async fn codecs_other_than_raw_and_dag_pb_are_unsupported() {
    let bytes = b"\xa1\x61a\x01".to_vec();
    let cbor = Cid::new_v1(0x71, Code::Sha2_256.digest(&bytes));
    let store = Arc::new(MemoryBlockStore::new());
    store.insert_unchecked(&cbor, bytes);
    let err = unixfs::stat(store.as_ref(), &cbor).await.unwrap_err();
    assert!(matches!(err, ContentError::Unsupported { cid, .. } if cid == cbor), "{err}");
}

#[tokio::test]
async fn absurd_sizes_are_errors_and_nothing_is_allocated_for_them() {
    let leaf = raw(b"hello");
    // Declares a petabyte over a 5-byte leaf: stat reports what is declared, cat catches the lie
    // at the leaf instead of trusting (or allocating) the declared size.
    let petabyte = 1u64 << 50;
    let liar = file_node(&[*leaf.cid()], vec![petabyte], Some(petabyte));
    // blocksizes whose sum overflows u64.
    let overflow = file_node(&[*leaf.cid(), *leaf.cid()], vec![u64::MAX, 5], None);
    // filesize that disagrees with the blocksizes.
    let wrong_total = file_node(&[*leaf.cid()], vec![5], Some(u64::MAX));
    // two links, one blocksize.
    let uneven = file_node(&[*leaf.cid(), *leaf.cid()], vec![5], Some(5));
    let store = store_of(&[&leaf, &liar, &overflow, &wrong_total, &uneven]).await;

    assert_eq!(unixfs::stat(store.as_ref(), liar.cid()).await.unwrap().size, petabyte);
    let err = cat_all(&store, *liar.cid()).await.unwrap_err();
    assert!(err.to_string().contains(&format!("holds 5 bytes but its parent says {petabyte}")), "{err}");
    assert_malformed(err, leaf.cid());

    for (block, says) in [
        (&overflow, "overflow"),
        (&wrong_total, "declares 18446744073709551615 bytes"),
        (&uneven, "2 links but 1 blocksizes"),
    ] {
        let err = unixfs::stat(store.as_ref(), block.cid()).await.unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
        assert_malformed(err, block.cid());
        assert_malformed(cat_all(&store, *block.cid()).await.unwrap_err(), block.cid());
    }
}

#[tokio::test]
async fn blocks_over_the_size_limit_are_refused() {
    let huge = raw(&vec![7u8; MAX_BLOCK_SIZE + 1]);
    let store = store_of(&[&huge]).await;
    let err = unixfs::stat(store.as_ref(), huge.cid()).await.unwrap_err();
    assert!(matches!(err, ContentError::Limit(_)), "{err}");
    assert!(err.to_string().contains(&huge.cid().to_string()), "{err}");
}

/// A hash-linked DAG cannot hold a cycle, so the only way to close one is a store that hands
/// out a block's bytes under another block's CID. Verification catches that on the read.
#[tokio::test]
async fn a_cycle_forged_in_the_store_is_caught_by_verification() {
    let leaf = raw(b"leaf");
    let root = dir_node(&[("loop", *leaf.cid())]);
    let store = store_of(&[&root]).await;
    // "loop" now claims to be the directory itself: root → loop → root → …
    store.insert_unchecked(leaf.cid(), root.data().clone());
    let out = tempfile::tempdir().unwrap();
    let err = unixfs::export_to_path(store.as_ref(), root.cid(), &out.path().join("d")).await.unwrap_err();
    assert!(matches!(&err, ContentError::HashMismatch { cid, .. } if cid == leaf.cid()), "{err}");
    let err = unixfs::resolve_path(store.as_ref(), root.cid(), "loop/loop/loop").await.unwrap_err();
    assert!(matches!(&err, ContentError::HashMismatch { cid, .. } if cid == leaf.cid()), "{err}");
}

/// What a cycle would do — nest without end — is bounded by depth limits instead.
#[tokio::test]
async fn nesting_deeper_than_the_limit_ends_in_a_limit_error() {
    let leaf = raw(b"x");
    let mut blocks = vec![leaf.clone()];
    let mut file = leaf.clone();
    let mut dir = dir_node(&[("f", *leaf.cid())]);
    blocks.push(dir.clone());
    for _ in 0..MAX_DEPTH + 2 {
        file = file_node(&[*file.cid()], vec![1], Some(1));
        dir = dir_node(&[("d", *dir.cid())]);
        blocks.push(file.clone());
        blocks.push(dir.clone());
    }
    let refs: Vec<&Block> = blocks.iter().collect();
    let store = store_of(&refs).await;

    let err = cat_all(&store, *file.cid()).await.unwrap_err();
    assert!(matches!(err, ContentError::Limit(_)), "{err}");
    let out = tempfile::tempdir().unwrap();
    let err = unixfs::export_to_path(store.as_ref(), dir.cid(), &out.path().join("deep")).await.unwrap_err();
    assert!(matches!(err, ContentError::Limit(_)), "{err}");
}

#[tokio::test]
async fn entry_names_that_are_not_one_path_component_are_refused_before_writing() {
    let leaf = raw(b"payload");
    let out = tempfile::tempdir().unwrap();
    for evil in ["../escape", "a/b", "", "..", "nul\0byte"] {
        let dir = dir_node(&[("ok", *leaf.cid()), (evil, *leaf.cid())]);
        let store = store_of(&[&leaf, &dir]).await;
        assert_malformed(unixfs::list(store.as_ref(), dir.cid()).await.unwrap_err(), dir.cid());
        let dest = out.path().join("tree");
        assert_malformed(unixfs::export_to_path(store.as_ref(), dir.cid(), &dest).await.unwrap_err(), dir.cid());
        assert!(!dest.exists() && !out.path().join("escape").exists(), "{evil:?}");
    }
    let twice = dir_node(&[("same", *leaf.cid()), ("same", *leaf.cid())]);
    let store = store_of(&[&leaf, &twice]).await;
    let err = unixfs::list(store.as_ref(), twice.cid()).await.unwrap_err();
    assert!(err.to_string().contains("two entries named \"same\""), "{err}");
}

#[tokio::test]
async fn broken_hamt_shards_are_rejected() {
    let leaf = raw(b"x");
    let shard = |hash_type: Option<u64>, fanout: Option<u64>, names: &[&str]| {
        let mut data = Data::new(DataType::HamtShard);
        data.hash_type = hash_type;
        data.fanout = fanout;
        data.data = Some(Bytes::from_static(&[0x01]));
        let links: Vec<(Cid, &str)> = names.iter().map(|n| (*leaf.cid(), *n)).collect();
        pb(&links, Some(data))
    };
    // "hello" hashes to slot 0xCB at depth 0 (see hamt::name_hash's test vector).
    let good = shard(Some(0x22), Some(256), &["CBhello"]);
    let wrong_hash = shard(Some(0x12), Some(256), &["CBhello"]);
    let bad_fanout = shard(Some(0x22), Some(3), &["CBhello"]);
    let bad_prefix = shard(Some(0x22), Some(256), &["ZZhello"]);
    let wrong_slot = shard(Some(0x22), Some(256), &["00hello"]);
    let store = store_of(&[&leaf, &good, &wrong_hash, &bad_fanout, &bad_prefix, &wrong_slot]).await;

    let entries = unixfs::list(store.as_ref(), good.cid()).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["hello"]);
    assert_eq!(unixfs::resolve_path(store.as_ref(), good.cid(), "hello").await.unwrap(), *leaf.cid());

    let err = unixfs::list(store.as_ref(), wrong_hash.cid()).await.unwrap_err();
    assert!(matches!(err, ContentError::Unsupported { .. }), "{err}");
    for (block, says) in [
        (&bad_fanout, "fanout"),
        (&bad_prefix, "no valid slot prefix"),
        (&wrong_slot, "not in the slot its name hashes to"),
    ] {
        let err = unixfs::list(store.as_ref(), block.cid()).await.unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
        assert_malformed(err, block.cid());
    }
}

#[tokio::test]
async fn operations_on_the_wrong_kind_of_node_say_so() {
    let leaf = raw(b"just bytes");
    let dir = dir_node(&[("f", *leaf.cid())]);
    let store = store_of(&[&leaf, &dir]).await;
    let err = cat_all(&store, *dir.cid()).await.unwrap_err();
    assert!(matches!(err, ContentError::WrongKind { expected: "file", found: "directory", .. }), "{err}");
    let err = unixfs::list(store.as_ref(), leaf.cid()).await.unwrap_err();
    assert!(matches!(err, ContentError::WrongKind { expected: "directory", found: "file", .. }), "{err}");
    let err = unixfs::resolve_path(store.as_ref(), dir.cid(), "f/g").await.unwrap_err();
    assert!(matches!(err, ContentError::WrongKind { cid, .. } if cid == *leaf.cid()), "{err}");
}

#[tokio::test]
async fn ipfs_paths_resolve_from_cidv0_and_cidv1_roots() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("a/b")).unwrap();
    std::fs::write(tree.path().join("a/b/c.txt"), "deep\n").unwrap();
    std::fs::write(tree.path().join("top.txt"), "top\n").unwrap();
    for (profile, prefix) in [(Profile::UnixfsV02015, "Qm"), (Profile::KuboV1, "bafy")] {
        let store = Arc::new(MemoryBlockStore::new());
        let opts = ImportOptions { profile, ..Default::default() };
        let root = unixfs::import_path(tree.path(), &opts, store.as_ref()).await.unwrap().root;
        assert!(root.to_string().starts_with(prefix), "{profile}: {root}");

        for path in [format!("{root}/a/b/c.txt"), format!("/ipfs/{root}/a/b/c.txt"), format!("{root}//a/b/c.txt/")] {
            let cid = unixfs::resolve(store.as_ref(), &path).await.unwrap();
            assert_eq!(cat_all(&store, cid).await.unwrap(), b"deep\n", "{path}");
        }
        let dir = unixfs::resolve(store.as_ref(), &format!("{root}/a")).await.unwrap();
        assert_eq!(unixfs::stat(store.as_ref(), &dir).await.unwrap().kind, NodeKind::Directory);
        assert_eq!(unixfs::resolve(store.as_ref(), &root.to_string()).await.unwrap(), root);

        let err = unixfs::resolve(store.as_ref(), &format!("{root}/a/missing")).await.unwrap_err();
        assert!(matches!(&err, ContentError::PathNotFound { path, .. } if path == "a/missing"), "{err}");
        let err = unixfs::resolve(store.as_ref(), &format!("{root}/a/../top.txt")).await.unwrap_err();
        assert!(matches!(err, ContentError::InvalidArgument { .. }), "{err}");
    }
    let err = unixfs::resolve(&MemoryBlockStore::new(), "bafy-not-a-cid/a/b").await.unwrap_err();
    assert!(matches!(&err, ContentError::InvalidCid { input, .. } if input == "bafy-not-a-cid"), "{err}");
}
