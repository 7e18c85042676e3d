//! Where blocks live: the traits every store and source implements, and the two local stores.
//!
//! - [`BlockSource`]: anything that may have a block's bytes — a local store, an HTTP gateway,
//!   Filecoin. Its bytes are *claims*: nothing from a source is used before it is verified.
//! - [`BlockSink`]: anything blocks can be written to — a store, a CAR writer.
//! - [`BlockStore`]: a local, writable source.
//! - [`BlockReader`]: hands out [`Block`]s that have been verified against their CID; this is
//!   what the rest of Shoal reads through.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;

use crate::block::Block;
use crate::error::{ContentError, Result};

/// A place that may hold blocks. What it returns is unverified.
#[async_trait]
pub trait BlockSource: Send + Sync {
    /// A short name for logs and errors (`fs:/var/lib/shoal/blocks`, `http://127.0.0.1:8080`).
    fn name(&self) -> &str;

    /// The bytes this source holds for `cid`, or `None` if it has none.
    async fn fetch(&self, cid: &Cid) -> Result<Option<Bytes>>;
}

/// A place blocks can be written to.
#[async_trait]
pub trait BlockSink: Send + Sync {
    /// Stores `block`. Storing a block that is already present is not an error.
    async fn put(&self, block: &Block) -> Result<()>;

    /// Stores `blocks` in order: each is stored only once those before it are, so a batch
    /// listing children before their parents never leaves a parent without its children. The
    /// first failure ends the batch and is returned, naming its block; the blocks before it
    /// stay stored. A sink that can write several blocks at less cost than one at a time (a
    /// file store: one hop to the blocking pool per batch, not per block) overrides this.
    async fn put_many(&self, blocks: &[Block]) -> Result<()> {
        for block in blocks {
            self.put(block).await?;
        }
        Ok(())
    }
}

/// A local, writable block store.
#[async_trait]
pub trait BlockStore: BlockSource + BlockSink {
    /// Whether the store holds `cid`.
    async fn has(&self, cid: &Cid) -> Result<bool>;
}

/// Hands out blocks verified against their CID.
#[async_trait]
pub trait BlockReader: Send + Sync {
    /// The verified block `cid`, or [`ContentError::NotFound`].
    async fn get(&self, cid: &Cid) -> Result<Block>;
}

/// Reads `cid` from one source and verifies it; an identity CID's block is its own
/// ([`Block::inline`]).
pub async fn get_verified(source: &dyn BlockSource, cid: &Cid) -> Result<Block> {
    if let Some(block) = Block::inline(cid) {
        return Ok(block);
    }
    match source.fetch(cid).await? {
        Some(bytes) => Block::new_verified(*cid, bytes, source.name()),
        None => Err(ContentError::NotFound { cid: *cid, detail: format!("not in {}", source.name()) }),
    }
}

/// A block store on the local file system: one file per block, fanned out over directories.
///
/// Blocks are keyed by multihash, not by whole CID, so the CIDv0 and CIDv1 names of the same
/// bytes share one file — as kubo's flatfs does. Writes go to a temporary file first and are
/// renamed into place, so a crash never leaves a half-written block under its final name; reads
/// are verified by [`BlockReader::get`], so a corrupted file is caught, not served.
#[derive(Debug, Clone)]
pub struct FsBlockStore {
    root: PathBuf,
    name: String,
}

impl FsBlockStore {
    /// Opens (creating if needed) a store under `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<FsBlockStore> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root)
            .map_err(|e| ContentError::io(format!("creating block store {}", root.display()), e))?;
        let name = format!("fs:{}", root.display());
        Ok(FsBlockStore { root, name })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A sink writing into this store on the calling thread, for a caller on a thread that may
    /// block (a guest's, a blocking task's): it saves the hop to the blocking pool and back
    /// that the store's own [`BlockSink`] takes to keep async threads free.
    pub fn on_this_thread(&self) -> WritesHere<'_> {
        WritesHere(self)
    }

    fn path_of(&self, cid: &Cid) -> PathBuf {
        // Lower-case hex of the multihash; fanned out by its last two digits as flatfs does
        // (`next-to-last/2`), because leading bytes are the same for every sha2-256 key.
        // By hand: `format!` per byte allocated a string for each, on every read and write.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut key = String::with_capacity(2 * cid.hash().encoded_len());
        for b in cid.hash().to_bytes() {
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        let shard = &key[key.len() - 3..key.len() - 1];
        self.root.join(shard).join(key)
    }
}

#[async_trait]
impl BlockSource for FsBlockStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self, cid: &Cid) -> Result<Option<Bytes>> {
        let path = self.path_of(cid);
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ContentError::io(format!("reading block {cid} from {}", path.display()), e)),
        }
    }
}

#[async_trait]
impl BlockSink for FsBlockStore {
    async fn put(&self, block: &Block) -> Result<()> {
        let path = self.path_of(block.cid());
        let (cid, data) = (*block.cid(), block.data().clone());
        // One blocking task for the whole check-write-rename: a hop to the blocking pool per
        // step cost more than the file system itself for small blocks.
        tokio::task::spawn_blocking(move || write_block_file(&path, &cid, &data))
            .await
            .map_err(|e| ContentError::io(format!("storing block {cid}"), std::io::Error::other(e)))?
    }

    /// All of `blocks` in one blocking task, one after another.
    async fn put_many(&self, blocks: &[Block]) -> Result<()> {
        let Some(first) = blocks.first().map(|b| *b.cid()) else { return Ok(()) };
        let writes: Vec<(PathBuf, Cid, Bytes)> =
            blocks.iter().map(|b| (self.path_of(b.cid()), *b.cid(), b.data().clone())).collect();
        tokio::task::spawn_blocking(move || {
            writes.iter().try_for_each(|(path, cid, data)| write_block_file(path, cid, data))
        })
        .await
        .map_err(|e| {
            let what = format!("storing block {first} and {} more", blocks.len() - 1);
            ContentError::io(what, std::io::Error::other(e))
        })?
    }
}

/// [`FsBlockStore::on_this_thread`]: writes blocking the caller's thread.
pub struct WritesHere<'a>(&'a FsBlockStore);

#[async_trait]
impl BlockSink for WritesHere<'_> {
    async fn put(&self, block: &Block) -> Result<()> {
        write_block_file(&self.0.path_of(block.cid()), block.cid(), block.data())
    }
}

/// Writes `data` to `path` through a temporary file in the same directory, creating the
/// directory the first time one of its blocks is written.
fn write_block_file(path: &Path, cid: &Cid, data: &[u8]) -> Result<()> {
    use std::io::Write;
    if path.try_exists().unwrap_or(false) {
        return Ok(());
    }
    let dir = path.parent().expect("block path has a parent");
    let tmp = dir.join(format!(".tmp-{}-{}", process_id(), unique_suffix()));
    let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp);
    let mut file = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| ContentError::io(format!("creating {}", dir.display()), e))?;
            create()
        }
        other => other,
    }
    .map_err(|e| ContentError::io(format!("writing block {cid}"), e))?;
    let written = file.write_all(data).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        drop(file);
        // Best effort: the write's error is what matters, not a failure to tidy up after it.
        let _ = std::fs::remove_file(&tmp);
        return Err(ContentError::io(format!("storing block {cid}"), e));
    }
    Ok(())
}

#[async_trait]
impl BlockStore for FsBlockStore {
    async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.path_of(cid)).await.unwrap_or(false))
    }
}

#[async_trait]
impl BlockReader for FsBlockStore {
    async fn get(&self, cid: &Cid) -> Result<Block> {
        get_verified(self, cid).await
    }
}

/// This process's id, asked of the kernel once: `std::process::id` is a system call each time,
/// two of a small job's.
fn process_id() -> u32 {
    static ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ID.get_or_init(std::process::id)
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A block store in memory, for tests and for short-lived DAGs.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlockStore {
    blocks: Arc<RwLock<HashMap<Vec<u8>, Bytes>>>,
}

impl MemoryBlockStore {
    /// An empty store.
    pub fn new() -> MemoryBlockStore {
        MemoryBlockStore::default()
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.blocks.read().expect("lock poisoned").len()
    }

    /// Whether the store holds no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the bytes stored under `cid` without verification — for tests that simulate a
    /// corrupted store or a lying peer.
    pub fn insert_unchecked(&self, cid: &Cid, data: impl Into<Bytes>) {
        self.blocks.write().expect("lock poisoned").insert(cid.hash().to_bytes(), data.into());
    }
}

#[async_trait]
impl BlockSource for MemoryBlockStore {
    fn name(&self) -> &str {
        "memory"
    }

    async fn fetch(&self, cid: &Cid) -> Result<Option<Bytes>> {
        Ok(self.blocks.read().expect("lock poisoned").get(&cid.hash().to_bytes()).cloned())
    }
}

#[async_trait]
impl BlockSink for MemoryBlockStore {
    async fn put(&self, block: &Block) -> Result<()> {
        self.insert_unchecked(block.cid(), block.data().clone());
        Ok(())
    }
}

#[async_trait]
impl BlockStore for MemoryBlockStore {
    async fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.blocks.read().expect("lock poisoned").contains_key(&cid.hash().to_bytes()))
    }
}

#[async_trait]
impl BlockReader for MemoryBlockStore {
    async fn get(&self, cid: &Cid) -> Result<Block> {
        get_verified(self, cid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Codec;

    #[tokio::test]
    async fn fs_store_round_trips_and_shares_v0_v1_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlockStore::open(dir.path()).unwrap();
        let block = Block::encode(Codec::DagPb, &b"\x0a\x02\x08\x01"[..]);
        assert!(!store.has(block.cid()).await.unwrap());
        store.put(&block).await.unwrap();
        store.put(&block).await.unwrap();
        assert!(store.has(block.cid()).await.unwrap());
        assert_eq!(store.get(block.cid()).await.unwrap(), block);
        let v0 = Block::encode_v0(block.data().clone());
        assert_eq!(store.get(v0.cid()).await.unwrap().data(), block.data());
    }

    #[tokio::test]
    async fn fs_store_puts_many_in_order_and_names_the_block_that_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlockStore::open(dir.path()).unwrap();
        let blocks: Vec<Block> =
            (0..40u32).map(|i| Block::encode(Codec::Raw, format!("block {i}").into_bytes())).collect();
        store.put(&blocks[7]).await.unwrap();
        store.put_many(&blocks).await.unwrap();
        for block in &blocks {
            assert_eq!(&store.get(block.cid()).await.unwrap(), block);
        }
        store.put_many(&[]).await.unwrap();

        // A file where a block's shard directory belongs: that block cannot be written.
        let fresh: Vec<Block> =
            (0..3u32).map(|i| Block::encode(Codec::Raw, format!("fresh {i}").into_bytes())).collect();
        let blocked = store.path_of(fresh[1].cid());
        let shard = blocked.parent().unwrap();
        let (first_shard, last_shard) = (
            store.path_of(fresh[0].cid()).parent().unwrap().to_owned(),
            store.path_of(fresh[2].cid()).parent().unwrap().to_owned(),
        );
        assert!(shard != first_shard && shard != last_shard, "test blocks share a shard; pick others");
        std::fs::remove_dir_all(shard).ok();
        std::fs::write(shard, b"not a directory").unwrap();
        let err = store.put_many(&fresh).await.unwrap_err();
        assert!(err.to_string().contains(&fresh[1].cid().to_string()), "{err}");
        assert!(store.has(fresh[0].cid()).await.unwrap(), "blocks before the failure are stored");
        assert!(!store.has(fresh[2].cid()).await.unwrap(), "the batch ends at the failure");
    }

    #[tokio::test]
    async fn fs_store_detects_a_corrupted_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlockStore::open(dir.path()).unwrap();
        let block = Block::encode(Codec::Raw, &b"precious"[..]);
        store.put(&block).await.unwrap();
        std::fs::write(store.path_of(block.cid()), b"tampered").unwrap();
        let err = store.get(block.cid()).await.unwrap_err();
        assert!(matches!(err, ContentError::HashMismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn missing_block_is_not_found_naming_the_cid() {
        let store = MemoryBlockStore::new();
        let cid = *Block::encode(Codec::Raw, &b"absent"[..]).cid();
        let err = store.get(&cid).await.unwrap_err();
        assert!(err.to_string().contains(&cid.to_string()), "{err}");
    }
}
