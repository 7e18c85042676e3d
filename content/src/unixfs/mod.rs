//! UnixFS: files and directory trees as IPFS DAGs, built exactly as kubo and the JS importer
//! build them, and read back with every block verified.
//!
//! Import ([`import_reader`], [`import_path`]) streams the input, so memory stays a few chunks
//! whatever the file size; the [`Profile`] decides the DAG shape and so the CID:
//!
//! | profile | chunks | links/node | leaves | CIDs | HAMT when |
//! |---|---|---|---|---|---|
//! | [`Profile::KuboV1`] (default, `ipfs add --cid-version=1`) | 256 KiB | 174 | raw | v1 | links-bytes > 256 KiB |
//! | [`Profile::UnixfsV02015`] (`ipfs add`) | 256 KiB | 174 | dag-pb `File` | v0 | links-bytes > 256 KiB |
//! | [`Profile::UnixfsV12025`] (IPIP-499) | 1 MiB | 1024 | raw | v1 | block-bytes > 256 KiB |
//!
//! All profiles use the balanced layout, sha2-256, HAMT fanout 256 with murmur3-x64-64, and no
//! mode/mtime. A directory's size estimate counts every link, sub-directories included, as
//! IPIP-499 defines it (the JS importer leaves out sub-directories that have entries of their
//! own; the two agree on every directory whose entries are files, symlinks or empty directories).
//!
//! Export ([`stat`], [`list`], [`resolve`], [`resolve_path`], [`cat`], [`cat_range`], [`cat_reader`],
//! [`export_to_path`]) reads through a [`crate::BlockReader`], accepts CIDv0 and CIDv1 roots,
//! checks every node against the UnixFS rules and bounds depth, block size and entry counts
//! ([`MAX_DEPTH`], [`MAX_BLOCK_SIZE`], [`MAX_ENTRIES`]).
//!
//! ```no_run
//! # async fn demo() -> shoal_content::Result<()> {
//! use std::sync::Arc;
//! use futures::TryStreamExt;
//! use shoal_content::{unixfs, MemoryBlockStore};
//!
//! let store = Arc::new(MemoryBlockStore::new());
//! let opts = unixfs::ImportOptions::default();
//! let imported = unixfs::import_reader(&b"hello world\n"[..], &opts, store.as_ref()).await?;
//! assert_eq!(imported.root.to_string(), "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
//! let bytes: Vec<bytes::Bytes> = unixfs::cat(store.clone(), imported.root).try_collect().await?;
//! assert_eq!(bytes.concat(), b"hello world\n");
//! # Ok(()) }
//! ```

mod exporter;
mod hamt;
mod importer;
pub mod pb;
mod profile;

pub use exporter::{
    cat, cat_range, cat_reader, export_to_path, list, resolve, resolve_path, stat, DirEntry, Exported, NodeInfo,
    NodeKind, MAX_BLOCK_SIZE, MAX_DEPTH, MAX_ENTRIES,
};
pub use hamt::{name_hash as hamt_name_hash, MURMUR3_X64_64};
pub use importer::{
    import_links, import_many, import_path, import_reader, list_tree, ImportOptions, ImportSource, Imported, Link,
    ListedTree, ProgressFn,
};
pub use profile::{Profile, ShardSplitStrategy, HAMT_FANOUT, HAMT_THRESHOLD_BYTES};
