//! Bytes and directory trees → UnixFS DAGs, block for block as kubo and the JS importer build them.
//!
//! Files are cut into fixed-size chunks, each chunk becomes a leaf (a raw block, or a dag-pb
//! UnixFS `File` node in the CIDv0 profile), and leaves are gathered into a *balanced* tree: runs
//! of at most `max_links` leaves get a parent, runs of parents get a parent, until one node is
//! left. A single-chunk file is its own root. The tree is built as the bytes stream in, keeping
//! at most one partial run per level, so memory does not grow with the file.
//!
//! Hashing is the expensive part, so chunks are hashed on blocking threads a few chunks ahead of
//! the reader while earlier blocks are handed to the sink in order.

use std::fmt;
use std::fs::Metadata;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cid::Cid;
use futures::stream::{FuturesOrdered, StreamExt};
use ipld_dagpb::{PbLink, PbNode};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::hamt;
use super::pb::{Data, DataType};
use super::profile::{Profile, ShardSplitStrategy, HAMT_THRESHOLD_BYTES};
use crate::block::{Block, Codec};
use crate::error::{ContentError, Result};
use crate::store::BlockSink;

/// Chunks hashed ahead of the sink. Enough to keep both cores hashing while the reader fills the
/// next chunk; small enough that memory stays a few chunks (≤ 5 MiB at 1 MiB chunks).
const HASH_AHEAD: usize = 4;

/// Called with the number of file bytes imported so far (cumulative over a whole tree).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// How to import.
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// DAG construction parameters; decides the resulting CIDs.
    pub profile: Profile,
    /// Called after every chunk with the file bytes imported so far, for progress bars.
    pub progress: Option<ProgressFn>,
    /// Import entries whose name starts with `.`. Off by default, as in `ipfs add` and IPIP-499.
    pub include_hidden: bool,
}

impl fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportOptions")
            .field("profile", &self.profile)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .field("include_hidden", &self.include_hidden)
            .finish()
    }
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The root of the DAG (a file, directory or symlink node).
    pub root: Cid,
    /// File content bytes imported (the file's size; for a tree, the sum over its files).
    pub size: u64,
    /// Blocks handed to the sink. A block that occurs twice in the DAG (two identical chunks,
    /// two identical files) is counted, and written, each time.
    pub blocks: u64,
}

/// Imports the bytes of `reader` as one UnixFS file, streaming: memory stays a few chunks
/// whatever the length.
pub async fn import_reader(
    reader: impl AsyncRead + Unpin + Send,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<Imported> {
    let mut importer = Importer::new(opts, sink);
    let file = importer.file(reader).await?;
    Ok(importer.finish(file.cid))
}

/// Imports a file, or a directory tree, from the local file system.
///
/// In a tree, symbolic links are stored as UnixFS symlinks (not followed), hidden entries are
/// skipped unless [`ImportOptions::include_hidden`], and a name that is not UTF-8 is an error.
/// If `path` itself is a symbolic link, its target is imported.
pub async fn import_path(path: &Path, opts: &ImportOptions, sink: &dyn BlockSink) -> Result<Imported> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| ContentError::io(format!("reading {}", path.display()), e))?;
    let mut importer = Importer::new(opts, sink);
    let root = if meta.is_dir() {
        importer.directory_at(path.to_path_buf()).await?
    } else {
        importer.entry_at(path.to_path_buf(), meta).await?
    };
    Ok(importer.finish(root.cid))
}

/// A finished node as its parent links to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Child {
    /// The node.
    pub cid: Cid,
    /// Cumulative size of the node's DAG (its block plus its children's), the link's `Tsize`.
    pub tsize: u64,
}

/// A finished node of a file's tree.
#[derive(Debug, Clone)]
struct FileNode {
    child: Child,
    /// Content bytes under the node: what the parent's `blocksizes` records for it.
    filesize: u64,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

struct Importer<'a> {
    profile: Profile,
    include_hidden: bool,
    progress: Option<ProgressFn>,
    sink: &'a dyn BlockSink,
    bytes: u64,
    blocks: u64,
}

impl<'a> Importer<'a> {
    fn new(opts: &ImportOptions, sink: &'a dyn BlockSink) -> Importer<'a> {
        Importer {
            profile: opts.profile,
            include_hidden: opts.include_hidden,
            progress: opts.progress.clone(),
            sink,
            bytes: 0,
            blocks: 0,
        }
    }

    fn finish(self, root: Cid) -> Imported {
        Imported { root, size: self.bytes, blocks: self.blocks }
    }

    async fn put(&mut self, block: &Block) -> Result<()> {
        self.sink.put(block).await?;
        self.blocks += 1;
        Ok(())
    }

    /// Encodes, names (CIDv0 or v1 as the profile says) and stores a dag-pb node.
    async fn put_pb(&mut self, node: PbNode) -> Result<Child> {
        let block = encode_pb(node, self.profile.cid_v0());
        self.put(&block).await?;
        Ok(Child { cid: *block.cid(), tsize: block.data().len() as u64 })
    }

    async fn file(&mut self, mut reader: impl AsyncRead + Unpin + Send) -> Result<Child> {
        let chunk_size = self.profile.chunk_size();
        let profile = self.profile;
        let mut tree = BalancedTree { max_links: profile.max_links(), levels: Vec::new() };
        let mut hashing = FuturesOrdered::new();
        let mut first = true;
        let mut eof = false;
        loop {
            while !eof && hashing.len() < HASH_AHEAD {
                let chunk = read_chunk(&mut reader, chunk_size).await?;
                eof = chunk.len() < chunk_size;
                // An empty file still gets one (empty) leaf, as in kubo; otherwise a short read
                // at the end yields no extra empty chunk.
                if chunk.is_empty() && !first {
                    break;
                }
                first = false;
                hashing.push_back(tokio::task::spawn_blocking(move || encode_leaf(chunk, profile)));
            }
            let Some(joined) = hashing.next().await else { break };
            let leaf = joined.map_err(|e| ContentError::io("hashing a chunk", std::io::Error::other(e)))?;
            self.put(&leaf.block).await?;
            self.bytes += leaf.filesize;
            if let Some(progress) = &self.progress {
                progress(self.bytes);
            }
            let node = FileNode {
                child: Child { cid: *leaf.block.cid(), tsize: leaf.block.data().len() as u64 },
                filesize: leaf.filesize,
            };
            tree.push(self, node, 0).await?;
        }
        Ok(tree.finish(self).await?.child)
    }

    /// A parent `File` node over `children`.
    async fn file_parent(&mut self, children: Vec<FileNode>) -> Result<FileNode> {
        let mut data = Data::new(DataType::File);
        let mut filesize = 0u64;
        let mut tsize = 0u64;
        let mut links = Vec::with_capacity(children.len());
        for c in children {
            filesize += c.filesize;
            tsize += c.child.tsize;
            data.blocksizes.push(c.filesize);
            // kubo and JS write an empty (present) name on file links.
            links.push(PbLink { cid: c.child.cid, name: Some(String::new()), size: Some(c.child.tsize) });
        }
        data.filesize = Some(filesize);
        let node = self.put_pb(PbNode { links, data: Some(data.encode_to_vec().into()) }).await?;
        Ok(FileNode { child: Child { cid: node.cid, tsize: node.tsize + tsize }, filesize })
    }

    async fn symlink(&mut self, target: String) -> Result<Child> {
        let mut data = Data::new(DataType::Symlink);
        data.data = Some(Bytes::from(target.into_bytes()));
        self.put_pb(PbNode { links: Vec::new(), data: Some(data.encode_to_vec().into()) }).await
    }

    /// A directory over `entries` (unique names): plain, or HAMT-sharded if its estimated size
    /// is over the profile's threshold.
    async fn directory(&mut self, entries: Vec<(String, Child)>) -> Result<Child> {
        let estimate = match self.profile.shard_split_strategy() {
            ShardSplitStrategy::LinksBytes => links_bytes(&entries),
            ShardSplitStrategy::BlockBytes => directory_block_bytes(&entries),
        };
        if estimate > HAMT_THRESHOLD_BYTES {
            let (blocks, root) = hamt::build(entries, self.profile.cid_v0())?;
            for block in &blocks {
                self.put(block).await?;
            }
            return Ok(root);
        }
        let children_tsize: u64 = entries.iter().map(|(_, c)| c.tsize).sum();
        let links = entries
            .into_iter()
            .map(|(name, c)| PbLink { cid: c.cid, name: Some(name), size: Some(c.tsize) })
            .collect();
        let data = Data::new(DataType::Directory).encode_to_vec();
        let node = self.put_pb(PbNode { links, data: Some(data.into()) }).await?;
        Ok(Child { cid: node.cid, tsize: node.tsize + children_tsize })
    }

    fn directory_at(&mut self, path: PathBuf) -> BoxFuture<'_, Result<Child>> {
        Box::pin(async move {
            let mut read = tokio::fs::read_dir(&path)
                .await
                .map_err(|e| ContentError::io(format!("listing {}", path.display()), e))?;
            let mut found = Vec::new();
            while let Some(entry) =
                read.next_entry().await.map_err(|e| ContentError::io(format!("listing {}", path.display()), e))?
            {
                let entry_path = entry.path();
                let name = entry.file_name().into_string().map_err(|raw| ContentError::InvalidArgument {
                    what: format!("file name {raw:?} in {}", path.display()),
                    reason: "UnixFS names must be UTF-8".into(),
                })?;
                if name.starts_with('.') && !self.include_hidden {
                    continue;
                }
                found.push((name, entry_path));
            }
            // Sorted so blocks and progress come in the same order on every run.
            found.sort();
            let mut entries = Vec::with_capacity(found.len());
            for (name, entry_path) in found {
                let meta = tokio::fs::symlink_metadata(&entry_path)
                    .await
                    .map_err(|e| ContentError::io(format!("reading {}", entry_path.display()), e))?;
                let child = self.entry_at(entry_path, meta).await?;
                entries.push((name, child));
            }
            self.directory(entries).await
        })
    }

    fn entry_at(&mut self, path: PathBuf, meta: Metadata) -> BoxFuture<'_, Result<Child>> {
        Box::pin(async move {
            let kind = meta.file_type();
            if kind.is_dir() {
                self.directory_at(path).await
            } else if kind.is_symlink() {
                let target = tokio::fs::read_link(&path)
                    .await
                    .map_err(|e| ContentError::io(format!("reading link {}", path.display()), e))?;
                let target = target.into_os_string().into_string().map_err(|raw| ContentError::InvalidArgument {
                    what: format!("symlink target {raw:?} of {}", path.display()),
                    reason: "UnixFS symlink targets must be UTF-8".into(),
                })?;
                self.symlink(target).await
            } else if kind.is_file() {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| ContentError::io(format!("opening {}", path.display()), e))?;
                self.file(file).await
            } else {
                Err(ContentError::InvalidArgument {
                    what: format!("file {}", path.display()),
                    reason: "not a regular file, directory or symlink (sockets, FIFOs and devices have no UnixFS form)"
                        .into(),
                })
            }
        })
    }
}

/// The balanced layout, built incrementally: `levels[i]` holds the not-yet-parented nodes of
/// height `i`, at most `max_links` of them.
struct BalancedTree {
    max_links: usize,
    levels: Vec<Vec<FileNode>>,
}

impl BalancedTree {
    /// Adds `node` at height `level`. A full run is parented only when a further node arrives,
    /// so a file of exactly `max_links` chunks gets one root over all of them.
    async fn push(&mut self, importer: &mut Importer<'_>, node: FileNode, level: usize) -> Result<()> {
        let mut level = level;
        let mut carry = node;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            if self.levels[level].len() < self.max_links {
                self.levels[level].push(carry);
                return Ok(());
            }
            let full = std::mem::replace(&mut self.levels[level], vec![carry]);
            carry = importer.file_parent(full).await?;
            level += 1;
        }
    }

    /// Parents what is left, level by level, until a single node remains: the root.
    async fn finish(mut self, importer: &mut Importer<'_>) -> Result<FileNode> {
        let mut level = 0;
        loop {
            let nothing_above = self.levels[level + 1..].iter().all(Vec::is_empty);
            if nothing_above && self.levels[level].len() == 1 {
                return Ok(self.levels[level].pop().expect("one node"));
            }
            let run = std::mem::take(&mut self.levels[level]);
            if !run.is_empty() {
                let parent = importer.file_parent(run).await?;
                self.push(importer, parent, level + 1).await?;
            }
            level += 1;
        }
    }
}

struct Leaf {
    block: Block,
    filesize: u64,
}

/// Hashes one chunk into a leaf block (runs on a blocking thread).
fn encode_leaf(chunk: Bytes, profile: Profile) -> Leaf {
    let filesize = chunk.len() as u64;
    let block = if profile.raw_leaves() {
        Block::encode(Codec::Raw, chunk)
    } else {
        let mut data = Data::new(DataType::File);
        data.filesize = Some(filesize);
        // An empty `Data.data` is left out, as kubo and JS do (it changes the bytes, so the CID).
        data.data = (!chunk.is_empty()).then_some(chunk);
        encode_pb(PbNode { links: Vec::new(), data: Some(data.encode_to_vec().into()) }, profile.cid_v0())
    };
    Leaf { block, filesize }
}

pub(crate) fn encode_pb(node: PbNode, cid_v0: bool) -> Block {
    let bytes = node.into_bytes();
    if cid_v0 {
        Block::encode_v0(bytes)
    } else {
        Block::encode(Codec::DagPb, bytes)
    }
}

/// Reads until `chunk_size` bytes or end of input.
async fn read_chunk(reader: &mut (impl AsyncRead + Unpin), chunk_size: usize) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(chunk_size);
    while buf.len() < chunk_size {
        // `read_buf` fills at most the spare capacity, so a chunk never exceeds `chunk_size`.
        let n = reader.read_buf(&mut buf).await.map_err(|e| ContentError::io("reading input", e))?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

/// IPIP-499 `links-bytes`: the sum of link names' and CIDs' byte lengths.
fn links_bytes(entries: &[(String, Child)]) -> u64 {
    entries.iter().map(|(name, c)| (name.len() + c.cid.encoded_len()) as u64).sum()
}

/// IPIP-499 `block-bytes`: the exact length of the serialized plain-directory block.
fn directory_block_bytes(entries: &[(String, Child)]) -> u64 {
    use prost::encoding::encoded_len_varint as varint;
    let unixfs = Data::new(DataType::Directory).encoded_len() as u64;
    let data_field = 1 + varint(unixfs) as u64 + unixfs;
    let links: u64 = entries
        .iter()
        .map(|(name, c)| {
            let cid = c.cid.encoded_len() as u64;
            let name = name.len() as u64;
            let link = 1 + varint(cid) as u64 + cid + 1 + varint(name) as u64 + name + 1 + varint(c.tsize) as u64;
            1 + varint(link) as u64 + link
        })
        .sum();
    data_field + links
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBlockStore;

    fn child(seed: u8, tsize: u64) -> Child {
        Child { cid: *Block::encode(Codec::Raw, vec![seed]).cid(), tsize }
    }

    #[test]
    fn block_bytes_estimate_is_the_real_encoded_length() {
        let entries: Vec<(String, Child)> = (0..300u32)
            .map(|i| (format!("entry-{i}-é"), child(i as u8, u64::from(i) * 977 + 1)))
            .collect();
        let links = entries
            .iter()
            .map(|(n, c)| PbLink { cid: c.cid, name: Some(n.clone()), size: Some(c.tsize) })
            .collect();
        let node = PbNode { links, data: Some(Data::new(DataType::Directory).encode_to_vec().into()) };
        assert_eq!(directory_block_bytes(&entries), node.into_bytes().len() as u64);
    }

    #[tokio::test]
    async fn reader_that_returns_one_byte_at_a_time_gives_the_same_cid() {
        struct Trickle(Vec<u8>, usize);
        impl AsyncRead for Trickle {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                if self.1 < self.0.len() {
                    let b = self.0[self.1];
                    buf.put_slice(&[b]);
                    self.1 += 1;
                }
                std::task::Poll::Ready(Ok(()))
            }
        }
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let opts = ImportOptions::default();
        let whole = import_reader(&data[..], &opts, &MemoryBlockStore::new()).await.unwrap();
        let trickled = import_reader(Trickle(data, 0), &opts, &MemoryBlockStore::new()).await.unwrap();
        assert_eq!(whole, trickled);
        assert_eq!(whole.blocks, 3, "two leaves and a root");
    }
}
