//! CARv1 reading, writing, export and import: round trips, walk order and scopes, and every kind
//! of broken input turning into a clear error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;
use shoal_content::car::{export_car, import_car, CarReader, CarWriter, DagScope, WalkOptions, MAX_SECTION_LEN};
use shoal_content::{Block, BlockReader, Codec, ContentError, MemoryBlockStore};

use crate::car_support::*;

async fn export(store: &MemoryBlockStore, root: &Cid, scope: DagScope) -> Vec<u8> {
    let mut out = Vec::new();
    export_car(store, root, &mut out, scope, WalkOptions::default()).await.unwrap();
    out
}

async fn read_all(bytes: &[u8]) -> Result<(Vec<Cid>, Vec<Block>), ContentError> {
    let mut car = CarReader::new(bytes, "test.car").await?;
    let mut blocks = Vec::new();
    while let Some(block) = car.next_block().await? {
        blocks.push(block);
    }
    Ok((car.roots().to_vec(), blocks))
}

/// Appends an unsigned LEB128 varint (written out here, independently of the crate's writer).
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[tokio::test]
async fn export_writes_depth_first_preorder_without_duplicates_and_reads_back() {
    let dag = sample_dag();
    let store = store_with(&dag.blocks).await;
    let car = export(&store, &dag.root, DagScope::All).await;

    let (roots, blocks) = read_all(&car).await.unwrap();
    assert_eq!(roots, vec![dag.root]);
    let order: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    assert_eq!(order, dag.dfs_order);
    for block in &blocks {
        assert!(dag.blocks.contains(block));
    }

    let copy = MemoryBlockStore::new();
    let imported = import_car(&car[..], &copy, "test.car").await.unwrap();
    assert_eq!(imported.roots, vec![dag.root]);
    assert_eq!(imported.stats.blocks, 5);
    assert_eq!(imported.stats.bytes, car.len() as u64);
    for block in &dag.blocks {
        assert_eq!(&copy.get(block.cid()).await.unwrap(), block);
    }
}

#[tokio::test]
async fn export_is_identical_with_and_without_prefetch() {
    let dag = sample_dag();
    let store = store_with(&dag.blocks).await;
    let mut sequential = Vec::new();
    let options = WalkOptions { prefetch: 0, ..WalkOptions::default() };
    export_car(&store, &dag.root, &mut sequential, DagScope::All, options).await.unwrap();
    assert_eq!(sequential, export(&store, &dag.root, DagScope::All).await);
}

/// A reader that takes a while per block and records how many gets overlap.
struct SlowReader {
    store: MemoryBlockStore,
    current: AtomicUsize,
    peak: AtomicUsize,
}

#[async_trait]
impl BlockReader for SlowReader {
    async fn get(&self, cid: &Cid) -> shoal_content::Result<Block> {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.current.fetch_sub(1, Ordering::SeqCst);
        self.store.get(cid).await
    }
}

#[tokio::test]
async fn prefetch_fetches_siblings_concurrently_within_its_window() {
    let leaves: Vec<Block> = (0..40).map(|i| leaf(&format!("leaf {i}"))).collect();
    let links: Vec<(&Block, &str)> = leaves.iter().map(|l| (l, "")).collect();
    let root = pb_node(&links, Some(UNIXFS_FILE));
    let mut blocks = leaves.clone();
    blocks.push(root.clone());
    for (prefetch, expected_peak) in [(0usize, 1usize), (8, 8)] {
        let reader = SlowReader { store: store_with(&blocks).await, current: 0.into(), peak: 0.into() };
        let mut out = Vec::new();
        let options = WalkOptions { prefetch, ..WalkOptions::default() };
        let stats = export_car(&reader, root.cid(), &mut out, DagScope::All, options).await.unwrap();
        assert_eq!(stats.blocks, 41);
        let (_, read) = read_all(&out).await.unwrap();
        assert_eq!(
            read[1..].iter().map(|b| b.cid()).collect::<Vec<_>>(),
            leaves.iter().map(|b| b.cid()).collect::<Vec<_>>()
        );
        // The target block is fetched alongside a full window, so the peak may exceed the window
        // by the one block the walk is waiting for.
        let peak = reader.peak.load(Ordering::SeqCst);
        assert!(peak >= expected_peak && peak <= expected_peak + 1, "prefetch {prefetch}: peak {peak}");
    }
}

#[tokio::test]
async fn scopes_block_entity_and_all_select_the_spec_blocks() {
    // A UnixFS file inside a directory inside a HAMT shard.
    let chunk1 = leaf("file chunk 1");
    let chunk2 = leaf("file chunk 2");
    let file = pb_node(&[(&chunk1, ""), (&chunk2, "")], Some(UNIXFS_FILE));
    let other = leaf("another file");
    let dir = pb_node(&[(&file, "file.bin"), (&other, "other.txt")], Some(UNIXFS_DIRECTORY));
    let entry = leaf("entry in the root shard");
    let sub_shard = pb_node(&[(&dir, "1Adir")], Some(UNIXFS_HAMT_256));
    let shard = pb_node(&[(&sub_shard, "0F"), (&entry, "A3entry.txt")], Some(UNIXFS_HAMT_256));
    let all = [&shard, &sub_shard, &entry, &dir, &file, &chunk1, &chunk2, &other].map(|b| b.clone());
    let store = store_with(&all).await;

    let cids =
        |car: Vec<u8>| async move { read_all(&car).await.unwrap().1.iter().map(|b| *b.cid()).collect::<Vec<_>>() };
    assert_eq!(cids(export(&store, file.cid(), DagScope::Block).await).await, vec![*file.cid()]);
    assert_eq!(
        cids(export(&store, file.cid(), DagScope::Entity).await).await,
        vec![*file.cid(), *chunk1.cid(), *chunk2.cid()]
    );
    assert_eq!(cids(export(&store, dir.cid(), DagScope::Entity).await).await, vec![*dir.cid()]);
    // Entity of a sharded directory: every shard node, no entries.
    assert_eq!(cids(export(&store, shard.cid(), DagScope::Entity).await).await, vec![*shard.cid(), *sub_shard.cid()]);
    assert_eq!(
        cids(export(&store, shard.cid(), DagScope::All).await).await,
        vec![
            *shard.cid(),
            *sub_shard.cid(),
            *dir.cid(),
            *file.cid(),
            *chunk1.cid(),
            *chunk2.cid(),
            *other.cid(),
            *entry.cid()
        ]
    );
}

#[tokio::test]
async fn cidv0_dags_round_trip() {
    let a = Block::encode_v0(ipld_dagpb::PbNode { links: vec![], data: Some(UNIXFS_FILE.into()) }.into_bytes());
    let root = Block::encode_v0(
        ipld_dagpb::PbNode {
            links: vec![ipld_dagpb::PbLink { cid: *a.cid(), name: Some("a".into()), size: None }],
            data: Some(UNIXFS_DIRECTORY.into()),
        }
        .into_bytes(),
    );
    assert_eq!(root.cid().version(), cid::Version::V0);
    let store = store_with(&[a.clone(), root.clone()]).await;
    let car = export(&store, root.cid(), DagScope::All).await;
    let (roots, blocks) = read_all(&car).await.unwrap();
    assert_eq!(roots, vec![*root.cid()]);
    assert_eq!(blocks, vec![root, a]);
}

#[tokio::test]
async fn import_accepts_children_before_parents() {
    let dag = sample_dag();
    let mut car = Vec::new();
    let mut writer = CarWriter::new(&mut car, &[dag.root]).await.unwrap();
    for block in dag.blocks.iter().rev() {
        writer.write_block(block).await.unwrap();
    }
    writer.finish().await.unwrap();
    let store = MemoryBlockStore::new();
    assert_eq!(import_car(&car[..], &store, "reversed.car").await.unwrap().roots, vec![dag.root]);
    assert_eq!(store.len(), dag.blocks.len());
}

#[tokio::test]
async fn import_of_an_incomplete_car_names_the_missing_block() {
    let dag = sample_dag();
    let missing = dag.dfs_order[3]; // leaf "b", reachable only through mid
    let mut car = Vec::new();
    let mut writer = CarWriter::new(&mut car, &[dag.root]).await.unwrap();
    for block in dag.blocks.iter().filter(|b| *b.cid() != missing) {
        writer.write_block(block).await.unwrap();
    }
    writer.finish().await.unwrap();
    let err = import_car(&car[..], &MemoryBlockStore::new(), "short.car").await.unwrap_err();
    match &err {
        ContentError::Incomplete { root, missing: m, origin } => {
            assert_eq!((root, m, origin.as_str()), (&dag.root, &missing, "short.car"));
        }
        other => panic!("expected Incomplete, got {other}"),
    }
    assert!(err.to_string().contains(&missing.to_string()), "{err}");
}

#[tokio::test]
async fn every_truncation_is_an_error_or_an_incomplete_import() {
    let dag = sample_dag();
    let store = store_with(&dag.blocks).await;
    let car = export(&store, &dag.root, DagScope::All).await;
    // Section boundaries, from the reader's own byte counts on the intact CAR.
    let mut boundaries = Vec::new();
    let mut reader = CarReader::new(&car[..], "x").await.unwrap();
    boundaries.push(reader.stats().bytes as usize);
    while reader.next_block().await.unwrap().is_some() {
        boundaries.push(reader.stats().bytes as usize);
    }
    assert_eq!(*boundaries.last().unwrap(), car.len());

    for cut in 0..car.len() {
        let result = import_car(&car[..cut], &MemoryBlockStore::new(), "cut.car").await;
        let err = result.expect_err("a cut CAR must not import");
        if boundaries.contains(&cut) {
            // A cut between sections reads cleanly; only the completeness check can catch it.
            assert!(matches!(err, ContentError::Incomplete { .. }), "cut at {cut}: {err}");
        } else {
            assert!(matches!(err, ContentError::Car(_)), "cut at {cut}: {err}");
            let text = err.to_string();
            assert!(text.contains("truncated") || text.contains("empty stream"), "cut at {cut}: {text}");
        }
    }
}

#[tokio::test]
async fn a_tampered_block_fails_verification_naming_cid_and_section() {
    let dag = sample_dag();
    let store = store_with(&dag.blocks).await;
    let mut car = export(&store, &dag.root, DagScope::All).await;
    // The last section is leaf "c"; its data ends the file.
    let last = car.len() - 1;
    car[last] ^= 0x01;
    let err = read_all(&car).await.unwrap_err();
    match &err {
        ContentError::HashMismatch { cid, origin } => {
            assert_eq!(cid, &dag.dfs_order[4]);
            assert!(origin.contains("test.car") && origin.contains("section 5"), "{origin}");
        }
        other => panic!("expected HashMismatch, got {other}"),
    }
}

#[tokio::test]
async fn garbage_and_empty_input_are_car_errors() {
    for input in [&b""[..], b"\x00", b"hello, this is not a CAR", &pseudo_random_bytes(4096, 7)] {
        let err = read_all(input).await.unwrap_err();
        assert!(matches!(err, ContentError::Car(_)), "{input:?}: {err}");
        assert!(err.to_string().contains("test.car"), "{err}");
    }
}

#[tokio::test]
async fn carv2_and_unknown_versions_are_unsupported() {
    // The CARv2 pragma: varint 10, then dag-cbor {"version": 2}.
    let mut v2 = vec![0x0a, 0xa1, 0x67];
    v2.extend_from_slice(b"version");
    v2.push(0x02);
    v2.extend_from_slice(&[0u8; 40]);
    let err = read_all(&v2).await.unwrap_err();
    assert!(matches!(err, ContentError::UnsupportedCarVersion { version: 2 }), "{err}");
    assert!(err.to_string().contains("unsupported CAR version 2"), "{err}");

    let root = leaf("x");
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    header.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00]);
    header.extend_from_slice(&root.cid().to_bytes());
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x03);
    let mut v3 = Vec::new();
    push_varint(&mut v3, header.len() as u64);
    v3.extend_from_slice(&header);
    let err = read_all(&v3).await.unwrap_err();
    assert!(matches!(err, ContentError::UnsupportedCarVersion { version: 3 }), "{err}");
}

async fn valid_header() -> Vec<u8> {
    let mut out = Vec::new();
    CarWriter::new(&mut out, &[*leaf("root").cid()]).await.unwrap().finish().await.unwrap();
    out
}

#[tokio::test]
async fn absurd_lengths_are_rejected_before_allocating() {
    let mut huge_header = Vec::new();
    push_varint(&mut huge_header, 1 << 40);
    let err = read_all(&huge_header).await.unwrap_err();
    assert!(err.to_string().contains("header length 1099511627776"), "{err}");

    let mut huge_section = valid_header().await;
    push_varint(&mut huge_section, 100 << 20);
    let err = read_all(&huge_section).await.unwrap_err();
    assert!(err.to_string().contains("section 1") && err.to_string().contains("104857600"), "{err}");

    let mut zero_section = valid_header().await;
    zero_section.push(0);
    assert!(read_all(&zero_section).await.is_err());
}

#[tokio::test]
async fn malformed_varints_and_cids_are_rejected() {
    let mut overlong = valid_header().await;
    overlong.extend_from_slice(&[0xff; 10]);
    let err = read_all(&overlong).await.unwrap_err();
    assert!(err.to_string().contains("longer than 9 bytes"), "{err}");

    let mut non_minimal = valid_header().await;
    non_minimal.extend_from_slice(&[0x85, 0x00]);
    let err = read_all(&non_minimal).await.unwrap_err();
    assert!(err.to_string().contains("non-minimal varint"), "{err}");

    // A section whose CID starts with version 7.
    let mut bad_cid = valid_header().await;
    bad_cid.extend_from_slice(&[0x05, 0x07, 0x55, 0x12, 0x01, 0xaa]);
    let err = read_all(&bad_cid).await.unwrap_err();
    assert!(err.to_string().contains("section 1") && err.to_string().contains("bad CID"), "{err}");
}

#[tokio::test]
async fn oversized_blocks_are_refused_by_the_writer() {
    let big = Block::encode(Codec::Raw, vec![0u8; MAX_SECTION_LEN as usize]);
    let mut out = Vec::new();
    let mut writer = CarWriter::new(&mut out, &[*big.cid()]).await.unwrap();
    let err = writer.write_block(&big).await.unwrap_err();
    assert!(matches!(err, ContentError::Limit(_)), "{err}");
    assert!(err.to_string().contains(&big.cid().to_string()), "{err}");
}

#[tokio::test]
async fn export_stops_at_the_block_limit_and_at_missing_blocks() {
    let dag = sample_dag();
    let store = store_with(&dag.blocks).await;
    let options = WalkOptions { max_blocks: 3, ..WalkOptions::default() };
    let err = export_car(&store, &dag.root, &mut Vec::new(), DagScope::All, options).await.unwrap_err();
    assert!(matches!(err, ContentError::Limit(_)), "{err}");

    let missing = dag.dfs_order[2];
    let partial: Vec<Block> = dag.blocks.iter().filter(|b| *b.cid() != missing).cloned().collect();
    let store = store_with(&partial).await;
    let err = export_car(&store, &dag.root, &mut Vec::new(), DagScope::All, WalkOptions::default()).await.unwrap_err();
    assert!(matches!(err, ContentError::NotFound { cid, .. } if cid == missing), "{err}");
}

#[tokio::test]
async fn export_reads_through_verification() {
    let dag = sample_dag();
    let store = store_with(&dag.blocks).await;
    store.insert_unchecked(&dag.dfs_order[1], &b"not the mid node"[..]);
    let err = export_car(&store, &dag.root, &mut Vec::new(), DagScope::All, WalkOptions::default()).await.unwrap_err();
    assert!(matches!(err, ContentError::HashMismatch { cid, .. } if cid == dag.dfs_order[1]), "{err}");
}
