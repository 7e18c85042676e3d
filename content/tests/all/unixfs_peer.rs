//! Shoal's importer against the npm `ipfs-unixfs-importer` (the JS peer): identical root CIDs
//! for the same bytes in every profile, and Shoal's exporter reading DAGs the peer built.
//!
//! Needs Node.js and `npm ci --prefix content/tests/js-unixfs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use shoal_content::unixfs::{self, ImportOptions, NodeKind, Profile};
use shoal_content::{BlockReader, BlockSink, MemoryBlockStore};

use crate::unixfs_support::{
    assert_same_tree, load_peer_blocks, peer_import, write_flat_dir, write_random_file, CountingSink,
};

const MIB: u64 = 1024 * 1024;

/// Imports `paths` with Shoal into `sink` and with the peer, and asserts equal root CIDs.
async fn assert_same_as_peer(profile: Profile, paths: &[PathBuf], sink: &dyn BlockSink) -> Vec<unixfs::Imported> {
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let peer = peer_import(profile, &refs, None);
    let opts = ImportOptions { profile, ..Default::default() };
    let mut ours = Vec::new();
    for (path, peer) in paths.iter().zip(peer) {
        let imported = unixfs::import_path(path, &opts, sink).await.unwrap();
        assert_eq!(imported.root.to_string(), peer.cid, "{profile}: {}", path.display());
        ours.push(imported);
    }
    ours
}

#[tokio::test]
async fn files_match_the_peer_in_every_profile() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [0, 1, 256 * 1024, 256 * 1024 + 1, 10 * MIB];
    let paths: Vec<PathBuf> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let path = dir.path().join(format!("random-{size}"));
            write_random_file(&path, *size, i as u64 + 1);
            path
        })
        .collect();
    for profile in Profile::ALL {
        let ours = assert_same_as_peer(profile, &paths, &CountingSink::default()).await;
        for (imported, size) in ours.iter().zip(sizes) {
            assert_eq!(imported.size, size);
        }
    }
}

/// Vectors from kubo itself (`ipfs add` and `ipfs add --cid-version=1`), not from the peer: the
/// peer agreeing with Shoal would not help if both were wrong.
#[tokio::test]
async fn kubo_vectors_match_in_every_profile() {
    let dir = tempfile::tempdir().unwrap();
    let hello = dir.path().join("hello.txt");
    std::fs::write(&hello, "hello world\n").unwrap();
    let mod251 = dir.path().join("mod251");
    std::fs::write(&mod251, (0..1u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let hello_v1 = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    for (profile, vectors) in [
        (
            Profile::KuboV1,
            [
                hello_v1,
                "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau",
                "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354",
            ],
        ),
        (
            Profile::UnixfsV02015,
            [
                "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
                "QmXgkY4miMKJBrg8YYke4xw6C2n8WNsUc1GXLhN84k4QM3",
                "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
            ],
        ),
    ] {
        let opts = ImportOptions { profile, ..Default::default() };
        for (path, expected) in [&hello, &mod251, &empty_dir].into_iter().zip(vectors) {
            let imported = unixfs::import_path(path, &opts, &CountingSink::default()).await.unwrap();
            assert_eq!(imported.root.to_string(), expected, "{profile}: {}", path.display());
        }
    }
    // unixfs-v1-2025 keeps raw leaves, so a one-chunk file has the same CID as in kubo-v1.
    let opts = ImportOptions { profile: Profile::UnixfsV12025, ..Default::default() };
    let imported = unixfs::import_path(&hello, &opts, &CountingSink::default()).await.unwrap();
    assert_eq!(imported.root.to_string(), hello_v1);
}

/// 200 MiB: more than 174 × 256 KiB, so a three-level tree in the 256 KiB profiles.
#[tokio::test]
async fn a_multi_level_file_matches_the_peer_in_every_profile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random-200MiB");
    write_random_file(&path, 200 * MIB, 200);
    for profile in Profile::ALL {
        let ours = assert_same_as_peer(profile, std::slice::from_ref(&path), &CountingSink::default()).await;
        let chunks = (200 * MIB).div_ceil(profile.chunk_size() as u64);
        let parents = chunks.div_ceil(profile.max_links() as u64);
        let grandparents = parents.div_ceil(profile.max_links() as u64);
        assert_eq!(ours[0].blocks, chunks + parents + if parents > 1 { grandparents } else { 0 }, "{profile}");
    }
}

#[tokio::test]
async fn directories_match_the_peer_in_every_profile() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("three");
    write_flat_dir(&small, 3);
    let thousand = dir.path().join("thousand");
    write_flat_dir(&thousand, 1_000);
    let ten_thousand = dir.path().join("ten-thousand");
    write_flat_dir(&ten_thousand, 10_000);
    let nested = dir.path().join("nested");
    write_flat_dir(&nested.join("scenes/2015"), 4);
    write_flat_dir(&nested.join("scenes/2016"), 2);
    std::fs::create_dir_all(nested.join("empty")).unwrap();
    write_random_file(&nested.join("scenes/big.bin"), 600 * 1024, 7);
    std::fs::write(nested.join("naïve café.txt"), "utf-8 names\n").unwrap();
    std::os::unix::fs::symlink("scenes/big.bin", nested.join("latest")).unwrap();
    let paths = [small, thousand, ten_thousand, nested];
    // 1,000 short names stay far below the 256 KiB threshold in every profile; 10,000 exceed it.
    let kinds = [NodeKind::Directory, NodeKind::Directory, NodeKind::HamtDirectory, NodeKind::Directory];

    for profile in Profile::ALL {
        let store = MemoryBlockStore::new();
        let ours = assert_same_as_peer(profile, &paths, &store).await;
        for (imported, kind) in ours.iter().zip(kinds) {
            assert_eq!(unixfs::stat(&store, &imported.root).await.unwrap().kind, kind, "{profile}");
        }
        assert_eq!(ours[2].size, (0..10_000).map(|i| format!("content of file {i}\n").len() as u64).sum::<u64>());
    }
}

/// IPIP-499: a directory becomes a HAMT only when its estimate is strictly over 262,144 bytes.
#[tokio::test]
async fn the_hamt_threshold_boundary_matches_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str, count: usize, width: usize, longer_last: bool| {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        for i in 0..count {
            let extra = if longer_last && i == count - 1 { "x" } else { "" };
            std::fs::write(path.join(format!("e{i:0w$}{extra}", w = width - 1)), "x").unwrap();
        }
        path
    };
    // links-bytes: 4,096 × (28-byte name + 36-byte CIDv1) = 262,144.
    let links_at = make("links-at", 4_096, 28, false);
    let links_over = make("links-over", 4_096, 28, true);
    // block-bytes: 4-byte Data field + 3,855 links × 68 bytes (24-byte name, 36-byte CID, Tsize 1) = 262,144.
    let block_at = make("block-at", 3_855, 24, false);
    let block_over = make("block-over", 3_855, 24, true);

    for (profile, at, over) in [(Profile::KuboV1, links_at, links_over), (Profile::UnixfsV12025, block_at, block_over)]
    {
        let store = MemoryBlockStore::new();
        let ours = assert_same_as_peer(profile, &[at, over], &store).await;
        assert_eq!(unixfs::stat(&store, &ours[0].root).await.unwrap().kind, NodeKind::Directory, "{profile}");
        assert_eq!(unixfs::stat(&store, &ours[1].root).await.unwrap().kind, NodeKind::HamtDirectory, "{profile}");
    }
}

/// Shoal's exporter on DAGs it did not build: the peer's blocks, verified on load.
#[tokio::test]
async fn the_exporter_reads_dags_built_by_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("random-3MiB");
    write_random_file(&file, 3 * MIB + 17, 31);
    // 2,000 entries with 120-byte names: over the HAMT threshold in every profile, at a fifth of
    // the files (and so of the test's time) a 10,000-entry tree would need.
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let long_name = |i: usize| format!("{i:05}-{}.txt", "x".repeat(110));
    for i in 0..2_000 {
        std::fs::write(tree.join(long_name(i)), format!("content of file {i}\n")).unwrap();
    }
    write_flat_dir(&tree.join("sub"), 2);

    for profile in [Profile::UnixfsV02015, Profile::KuboV1] {
        let blocks = tempfile::tempdir().unwrap();
        let peer = peer_import(profile, &[&file, &tree], Some(blocks.path()));
        let store = Arc::new(MemoryBlockStore::new());
        assert!(load_peer_blocks(blocks.path(), &store).await > 2_000);
        let file_root = shoal_content::parse_cid(&peer[0].cid).unwrap();
        let tree_root = shoal_content::parse_cid(&peer[1].cid).unwrap();
        assert_eq!(unixfs::stat(store.as_ref(), &tree_root).await.unwrap().kind, NodeKind::HamtDirectory);

        let reader: Arc<dyn BlockReader> = store.clone();
        let bytes: Vec<bytes::Bytes> = unixfs::cat(reader.clone(), file_root).try_collect().await.unwrap();
        assert!(bytes.concat() == std::fs::read(&file).unwrap(), "{profile}: cat differs");

        let entries = unixfs::list(store.as_ref(), &tree_root).await.unwrap();
        assert_eq!(entries.len(), 2_001, "{profile}");
        assert_eq!(entries[0].name, long_name(0));
        assert_eq!(entries[2_000].name, "sub");
        assert_eq!(entries[2_000].kind, NodeKind::Directory);
        let target = unixfs::resolve_path(store.as_ref(), &tree_root, "sub/file-00001.txt").await.unwrap();
        let bytes: Vec<bytes::Bytes> = unixfs::cat(reader.clone(), target).try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"content of file 1\n");
        let target = unixfs::resolve_path(store.as_ref(), &tree_root, &long_name(1234)).await.unwrap();
        let bytes: Vec<bytes::Bytes> = unixfs::cat(reader.clone(), target).try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"content of file 1234\n");
        let missing = unixfs::resolve_path(store.as_ref(), &tree_root, &long_name(2_000)).await.unwrap_err();
        assert!(matches!(missing, shoal_content::ContentError::PathNotFound { .. }), "{missing}");

        let out = tempfile::tempdir().unwrap();
        let exported = unixfs::export_to_path(store.as_ref(), &tree_root, &out.path().join("tree")).await.unwrap();
        assert_eq!((exported.files, exported.directories), (2_002, 2));
        assert_same_tree(&tree, &out.path().join("tree"));
    }
}
