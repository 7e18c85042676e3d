//! Interop with the real npm `ipfs-car` v3 (needs `npm ci --prefix content/tests/js-car` and
//! Node 20): a CAR packed by ipfs-car imports into Shoal with every block verified and the root
//! ipfs-car printed, and a CAR exported by Shoal unpacks with ipfs-car to the original bytes.

use std::ffi::OsStr;
use std::path::Path;

use shoal_content::car::{export_car, import_car, DagScope, WalkOptions};
use shoal_content::{parse_cid, BlockReader, MemoryBlockStore};

use crate::car_support::*;

/// Writes a directory tree that ipfs-car chunks into several blocks (its chunks are 1 MiB).
fn write_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        ("big.bin".to_string(), pseudo_random_bytes(3 * 1024 * 1024 + 12345, 1)),
        ("hello.txt".to_string(), b"hello world\n".to_vec()),
        ("nested/inner.bin".to_string(), pseudo_random_bytes(70_000, 2)),
        ("nested/deeper/empty.txt".to_string(), Vec::new()),
    ];
    for (name, data) in &files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    files
}

/// Packs `input` with ipfs-car into `car`; returns the root CID it printed.
fn pack(input: &Path, car: &Path, wrap: bool) -> cid::Cid {
    let mut args: Vec<&OsStr> = vec![OsStr::new("pack"), input.as_os_str(), OsStr::new("--output"), car.as_os_str()];
    if !wrap {
        args.push(OsStr::new("--no-wrap"));
    }
    parse_cid(ipfs_car(&args).trim()).expect("ipfs-car prints the root CID")
}

#[tokio::test]
async fn a_car_packed_by_ipfs_car_imports_and_reexports_to_identical_files() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("tree");
    let files = write_tree(&input);
    let packed = work.path().join("packed.car");
    let root = pack(&input, &packed, false);

    // Import: header root is the one ipfs-car printed, every block verified, DAG complete.
    let store = MemoryBlockStore::new();
    let file = tokio::fs::File::open(&packed).await.unwrap();
    let imported = import_car(file, &store, "packed.car").await.unwrap();
    assert_eq!(imported.roots, vec![root]);
    let listed = ipfs_car(&[OsStr::new("blocks"), packed.as_os_str()]);
    let listed: Vec<cid::Cid> = listed.lines().map(|l| parse_cid(l).unwrap()).collect();
    assert_eq!(imported.stats.blocks, listed.len() as u64);
    for cid in &listed {
        store.get(cid).await.unwrap();
    }

    // Export from Shoal's store, unpack with ipfs-car, compare every file's bytes.
    let exported = work.path().join("exported.car");
    let out = tokio::fs::File::create(&exported).await.unwrap();
    let stats = export_car(&store, &root, out, DagScope::All, WalkOptions::default()).await.unwrap();
    assert_eq!(stats.bytes, std::fs::metadata(&exported).unwrap().len());
    let roots = ipfs_car(&[OsStr::new("roots"), exported.as_os_str()]);
    assert_eq!(parse_cid(roots.trim()).unwrap(), root);
    let unpacked = work.path().join("unpacked");
    ipfs_car(&[OsStr::new("unpack"), exported.as_os_str(), OsStr::new("--output"), unpacked.as_os_str()]);
    for (name, data) in &files {
        let got = std::fs::read(unpacked.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name}: unpacked bytes differ ({} vs {} bytes)", got.len(), data.len());
    }
}

#[tokio::test]
async fn a_single_file_exported_by_shoal_unpacks_with_ipfs_car() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("scene.bin");
    let data = pseudo_random_bytes(2 * 1024 * 1024 + 1, 3);
    std::fs::write(&input, &data).unwrap();
    let packed = work.path().join("scene.car");
    let root = pack(&input, &packed, false);

    let store = MemoryBlockStore::new();
    import_car(tokio::fs::File::open(&packed).await.unwrap(), &store, "scene.car").await.unwrap();

    // Only Shoal's export of the entity reaches ipfs-car: the packed CAR is not reused.
    let mut car = Vec::new();
    export_car(&store, &root, &mut car, DagScope::Entity, WalkOptions::default()).await.unwrap();
    let exported = work.path().join("exported.car");
    std::fs::write(&exported, &car).unwrap();
    let unpacked = work.path().join("scene.out");
    ipfs_car(&[OsStr::new("unpack"), exported.as_os_str(), OsStr::new("--output"), unpacked.as_os_str()]);
    assert!(std::fs::read(&unpacked).unwrap() == data, "unpacked file differs");
}

/// DAGs built by Shoal's own importer — CIDv1 with raw leaves, CIDv0 with dag-pb leaves, and a
/// HAMT-sharded directory — exported as CARs that ipfs-car unpacks to the original files.
#[tokio::test]
async fn dags_imported_by_shoal_unpack_with_ipfs_car_in_every_profile() {
    use shoal_content::unixfs::{self, ImportOptions, NodeKind, Profile};

    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("tree");
    let mut files = write_tree(&input);
    // 2,000 entries with 120-byte names (~310 KB of links): a HAMT in every profile.
    for i in 0..2_000 {
        let name = format!("sharded/{i:05}-{}.txt", "y".repeat(110));
        let data = format!("entry {i}\n").into_bytes();
        std::fs::create_dir_all(input.join("sharded")).unwrap();
        std::fs::write(input.join(&name), &data).unwrap();
        files.push((name, data));
    }
    for profile in Profile::ALL {
        let store = MemoryBlockStore::new();
        let opts = ImportOptions { profile, ..Default::default() };
        let root = unixfs::import_path(&input, &opts, &store).await.unwrap().root;
        let sharded = unixfs::resolve_path(&store, &root, "sharded").await.unwrap();
        assert_eq!(unixfs::stat(&store, &sharded).await.unwrap().kind, NodeKind::HamtDirectory);

        let car = work.path().join(format!("{profile}.car"));
        let out = tokio::fs::File::create(&car).await.unwrap();
        export_car(&store, &root, out, DagScope::All, WalkOptions::default()).await.unwrap();
        let roots = ipfs_car(&[OsStr::new("roots"), car.as_os_str()]);
        assert_eq!(parse_cid(roots.trim()).unwrap(), root, "{profile}");
        let unpacked = work.path().join(format!("{profile}.out"));
        ipfs_car(&[OsStr::new("unpack"), car.as_os_str(), OsStr::new("--output"), unpacked.as_os_str()]);
        for (name, data) in &files {
            let got = std::fs::read(unpacked.join(name)).unwrap_or_else(|e| panic!("{profile} {name}: {e}"));
            assert!(got == *data, "{profile} {name}: unpacked bytes differ");
        }
    }
}
