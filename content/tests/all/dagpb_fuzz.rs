//! Property tests of the dag-pb / UnixFS decoders behind `stat`, `list`, `resolve_path` and
//! `cat`: arbitrary bytes, and well-framed nodes with arbitrary UnixFS fields, never make them
//! panic, and whatever `cat` returns agrees with what `stat` declared. Case counts are small
//! to keep `cargo test` quick.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use ipld_dagpb::{PbLink, PbNode};
use proptest::prelude::*;
use prost::Message;
use shoal_content::unixfs::pb::{Data, DataType};
use shoal_content::unixfs::{self, NodeKind};
use shoal_content::{Block, BlockReader, BlockSink, Codec, MemoryBlockStore};

/// Runs every read operation on `root` in a store holding `blocks`; returns what `stat` and
/// `cat` gave (either may be an error — only a panic fails the property).
fn exercise(root: &Block, blocks: &[Block]) -> (Option<unixfs::NodeInfo>, Option<Vec<u8>>) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let store = Arc::new(MemoryBlockStore::new());
        store.put(root).await.unwrap();
        for block in blocks {
            store.put(block).await.unwrap();
        }
        let info = unixfs::stat(store.as_ref(), root.cid()).await.ok();
        let _ = unixfs::list(store.as_ref(), root.cid()).await;
        let _ = unixfs::resolve_path(store.as_ref(), root.cid(), "a/b").await;
        let reader: Arc<dyn BlockReader> = store.clone();
        let bytes = unixfs::cat(reader, *root.cid()).try_collect::<Vec<Bytes>>().await.ok().map(|parts| parts.concat());
        (info, bytes)
    })
}

/// A few leaves that links may point at, so some DAGs are complete and some are not.
fn leaves() -> Vec<Block> {
    ["", "a", "hello", "0123456789"].iter().map(|s| Block::encode(Codec::Raw, s.as_bytes().to_vec())).collect()
}

fn unixfs_data() -> impl Strategy<Value = Data> {
    (
        0i32..8,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        proptest::option::of(prop_oneof![0u64..32, any::<u64>()]),
        proptest::collection::vec(prop_oneof![0u64..16, any::<u64>()], 0..4),
        proptest::option::of(prop_oneof![Just(0x22u64), any::<u64>()]),
        proptest::option::of(prop_oneof![Just(256u64), 0u64..5000]),
    )
        .prop_map(|(kind, data, filesize, blocksizes, hash_type, fanout)| Data {
            r#type: kind,
            data: data.map(Bytes::from),
            filesize,
            blocksizes,
            hash_type,
            fanout,
            mode: None,
            mtime: None,
        })
}

fn link_name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just(String::new()),
        Just("a".to_string()),
        Just("..".to_string()),
        Just("x/y".to_string()),
        "[0-9A-F]{2}[a-z]{0,3}",
    ])
}

proptest! {
    #![proptest_config(crate::proptest_config(200))]

    #[test]
    fn arbitrary_bytes_as_dag_pb_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let block = Block::encode(Codec::DagPb, bytes);
        exercise(&block, &[]);
    }

    #[test]
    fn arbitrary_unixfs_nodes_never_panic_and_cat_matches_stat(
        data in unixfs_data(),
        links in proptest::collection::vec((0usize..5, link_name()), 0..5),
    ) {
        let leaves = leaves();
        let missing = Block::encode(Codec::Raw, b"not in the store".to_vec());
        let node = PbNode {
            links: links
                .into_iter()
                .map(|(target, name)| PbLink {
                    cid: *leaves.get(target).unwrap_or(&missing).cid(),
                    name,
                    size: Some(1),
                })
                .collect(),
            data: Some(data.encode_to_vec().into()),
        };
        let root = Block::encode(Codec::DagPb, node.into_bytes());
        let (info, bytes) = exercise(&root, &leaves);
        if let Some(bytes) = bytes {
            let info = info.expect("a node that cats also stats");
            prop_assert_eq!(info.kind, NodeKind::File);
            prop_assert_eq!(bytes.len() as u64, info.size);
        }
    }

    /// Well-formed file nodes over real leaves cat to exactly their bytes; the same node with one
    /// declared size off by one never cats at all.
    #[test]
    fn file_nodes_cat_their_bytes_and_any_size_lie_is_caught(
        inline in proptest::collection::vec(any::<u8>(), 0..8),
        children in proptest::collection::vec(0usize..4, 0..6),
        declare_filesize in any::<bool>(),
        lie in proptest::option::of(0usize..7),
    ) {
        let leaves = leaves();
        let mut data = Data::new(DataType::File);
        data.blocksizes = children.iter().map(|i| leaves[*i].data().len() as u64).collect();
        let total = inline.len() as u64 + data.blocksizes.iter().sum::<u64>();
        data.filesize = declare_filesize.then_some(total);
        data.data = (!inline.is_empty()).then(|| Bytes::from(inline.clone()));
        // The lie: one blocksize, or the filesize (the index past the children), one too big.
        let lie = lie.filter(|at| *at < children.len() || (*at == children.len() && declare_filesize));
        match lie {
            Some(at) if at < children.len() => data.blocksizes[at] += 1,
            Some(_) => data.filesize = Some(total + 1),
            None => {}
        }
        let node = PbNode {
            links: children
                .iter()
                .map(|i| PbLink { cid: *leaves[*i].cid(), name: Some(String::new()), size: Some(1) })
                .collect(),
            data: Some(data.encode_to_vec().into()),
        };
        let root = Block::encode(Codec::DagPb, node.into_bytes());
        let (_, bytes) = exercise(&root, &leaves);
        if lie.is_some() {
            prop_assert!(bytes.is_none(), "a size lie went unnoticed");
        } else {
            let mut expected = inline.clone();
            for i in &children {
                expected.extend_from_slice(leaves[*i].data());
            }
            prop_assert_eq!(bytes, Some(expected));
        }
    }
}
