//! Bytes and directory trees → UnixFS DAGs, block for block as kubo and the JS importer build them.
//!
//! Files are cut into fixed-size chunks, each chunk becomes a leaf (a raw block, or a dag-pb
//! UnixFS `File` node in the CIDv0 profile), and leaves are gathered into a *balanced* tree: runs
//! of at most `max_links` leaves get a parent, runs of parents get a parent, until one node is
//! left. A single-chunk file is its own root. The tree is built as the bytes stream in, keeping
//! at most one partial run per level, so memory does not grow with the file.
//!
//! Hashing is the expensive part, so chunks are hashed on blocking threads a few chunks ahead of
//! the sink, which receives blocks in order. Local files go further: each blocking task reads
//! its own chunk by offset as well as hashing it, so reading and hashing use every core.
//!
//! Small imports are the other way round: their cost is hops to the blocking pool, not hashing.
//! So a tree is listed in one blocking task, which also reads small files whole (a job's outputs
//! are usually read entirely there), small chunks are hashed where they are read, and blocks
//! reach the sink in batches ([`BlockSink::put_many`]), a small import's all in one.

use std::collections::VecDeque;
use std::fmt;
use std::fs::Metadata;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cid::Cid;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
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

/// Batches being written to the sink at once (see [`Importer::flush`]).
const WRITE_AHEAD: usize = 4;

/// Blocks are handed to the sink in batches of about this many bytes ([`BlockSink::put_many`]):
/// a small import is one batch, one hop to a file store's blocking pool rather than one per
/// block; a full chunk's leaf is a batch of its own, written while later chunks hash.
const BATCH_BYTES: usize = 256 * 1024;

/// Chunks up to this size are hashed where they are read: hashing a few KiB takes less time
/// than handing it to a blocking thread and back.
const INLINE_HASH_BYTES: usize = 16 * 1024;

/// File bytes [`import_path`] reads while it lists a tree, in the same blocking task: a hop to
/// the blocking pool per file cost more than reading small files. Files past this are read chunk
/// by chunk as they are imported.
const READ_WHILE_LISTING: u64 = 1 << 20;

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
    let file = importer.file(ReaderLeaves { reader, eof: false }).await?;
    importer.finish(file.cid).await
}

/// Imports a file, or a directory tree, from the local file system.
///
/// In a tree, symbolic links are stored as UnixFS symlinks (not followed), hidden entries are
/// skipped unless [`ImportOptions::include_hidden`], and a name that is not UTF-8 is an error.
/// If `path` itself is a symbolic link, its target is imported.
pub async fn import_path(path: &Path, opts: &ImportOptions, sink: &dyn BlockSink) -> Result<Imported> {
    import_listed(path, opts, sink, READ_WHILE_LISTING).await
}

/// [`import_path`], reading up to `read_whole` file bytes while listing.
async fn import_listed(path: &Path, opts: &ImportOptions, sink: &dyn BlockSink, read_whole: u64) -> Result<Imported> {
    let mut importer = Importer::new(opts, sink);
    let tree = listing(path, opts.include_hidden, read_whole).await?;
    let root = importer.listed(tree).await?;
    importer.finish(root.cid).await
}

/// [`list`] on a blocking thread.
async fn listing(path: &Path, include_hidden: bool, read_whole: u64) -> Result<Listed> {
    let list_path = path.to_path_buf();
    tokio::task::spawn_blocking(move || list(&list_path, include_hidden, read_whole))
        .await
        .map_err(|e| ContentError::io(format!("reading {}", path.display()), std::io::Error::other(e)))?
}

/// A file or tree of the local file system listed by [`list_tree`], its small files read: what
/// [`ImportSource::Listed`] imports.
pub struct ListedTree(Listed);

/// Lists the file or tree at `path` as [`import_path`] does before importing it (reading files
/// whole while a budget lasts), on the calling thread: for a caller on a thread that may block,
/// which thereby saves the hop to a blocking thread that [`import_path`] takes. Hidden entries
/// are left out unless `include_hidden`.
pub fn list_tree(path: &Path, include_hidden: bool) -> Result<ListedTree> {
    list(path, include_hidden, READ_WHILE_LISTING).map(ListedTree)
}

/// What [`import_many`] imports.
pub enum ImportSource {
    /// A file or tree on the local file system, as [`import_path`] imports it.
    Path(PathBuf),
    /// A file or tree already listed, imported as [`import_path`] would import it.
    Listed(ListedTree),
    /// Bytes as one file, as [`import_reader`] imports them.
    Bytes(Bytes),
}

/// Imports each source as [`import_path`] or [`import_reader`] would, with one importer, so the
/// blocks of small sources reach the sink together: a job's outputs, stdout and stderr in one
/// batch, one write rather than one each. The results are in the sources' order; the progress
/// callback counts over all of them.
pub async fn import_many(
    sources: Vec<ImportSource>,
    opts: &ImportOptions,
    sink: &dyn BlockSink,
) -> Result<Vec<Imported>> {
    let mut importer = Importer::new(opts, sink);
    let mut imported = Vec::with_capacity(sources.len());
    for source in sources {
        let (bytes, blocks) = (importer.bytes, importer.blocks);
        let root = match source {
            ImportSource::Path(path) => {
                let tree = listing(&path, opts.include_hidden, READ_WHILE_LISTING).await?;
                importer.listed(tree).await?
            }
            ImportSource::Listed(ListedTree(tree)) => importer.listed(tree).await?,
            ImportSource::Bytes(data) => {
                importer.file(ReaderLeaves { reader: std::io::Cursor::new(data), eof: false }).await?
            }
        };
        imported.push(Imported { root: root.cid, size: importer.bytes - bytes, blocks: importer.blocks - blocks });
    }
    importer.flush().await?;
    importer.drain().await?;
    Ok(imported)
}

/// An existing DAG to link into a new directory ([`import_links`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The entry's name in the directory (one path component).
    pub name: String,
    /// The DAG's root.
    pub cid: Cid,
    /// The DAG's cumulative size (block plus sub-DAGs), the link's `Tsize` (see
    /// [`super::NodeInfo::dag_size`]).
    pub dag_size: u64,
}

/// Builds a UnixFS directory over existing DAGs, which are linked, never read: exactly the
/// directory a tree import of the same entries would build, HAMT-sharded past the same size.
/// Names must be unique; they are sorted as the importer sorts them.
pub async fn import_links(mut links: Vec<Link>, opts: &ImportOptions, sink: &dyn BlockSink) -> Result<Imported> {
    links.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = links.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(ContentError::InvalidArgument {
            what: format!("directory entry {:?}", pair[0].name),
            reason: "appears twice".into(),
        });
    }
    let mut importer = Importer::new(opts, sink);
    let entries = links.into_iter().map(|l| (l.name, Child { cid: l.cid, tsize: l.dag_size })).collect();
    let root = importer.directory(entries).await?;
    importer.finish(root.cid).await
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
    progress: Option<ProgressFn>,
    sink: &'a dyn BlockSink,
    bytes: u64,
    blocks: u64,
    /// Blocks not yet handed to the sink, children before parents.
    batch: Vec<Block>,
    /// Bytes of the blocks in `batch`.
    batch_bytes: usize,
    /// Whether `batch` holds a block other than a leaf: a block that may link to blocks of
    /// batches still being written.
    batch_links: bool,
    /// Batches being written. Batches of leaves are written while later chunks hash; a batch
    /// holding a parent waits for these first, so a parent is never stored before its
    /// children.
    writing: FuturesUnordered<BoxFuture<'a, Result<()>>>,
}

impl<'a> Importer<'a> {
    fn new(opts: &ImportOptions, sink: &'a dyn BlockSink) -> Importer<'a> {
        Importer {
            profile: opts.profile,
            progress: opts.progress.clone(),
            sink,
            bytes: 0,
            blocks: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_links: false,
            writing: FuturesUnordered::new(),
        }
    }

    async fn finish(mut self, root: Cid) -> Result<Imported> {
        self.flush().await?;
        self.drain().await?;
        Ok(Imported { root, size: self.bytes, blocks: self.blocks })
    }

    /// Stores `block`, which may link to blocks stored before it: it goes to the sink after
    /// them.
    async fn put(&mut self, block: Block) -> Result<()> {
        self.batch_links = true;
        self.queue(block).await
    }

    /// Stores a leaf, without waiting for earlier writes: leaves link to nothing.
    async fn put_leaf(&mut self, block: Block) -> Result<()> {
        self.queue(block).await
    }

    /// Adds `block` to the batch, and starts writing the batch once it is [`BATCH_BYTES`].
    async fn queue(&mut self, block: Block) -> Result<()> {
        self.blocks += 1;
        self.batch_bytes += block.data().len();
        self.batch.push(block);
        if self.batch_bytes >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Starts writing the batch without waiting for it, with at most [`WRITE_AHEAD`] batches
    /// under way: a store's write (a file per block) takes as long as hashing a chunk, and need
    /// not wait for it. A batch holding a parent first waits for every batch under way, which
    /// may hold its children; within a batch the sink stores blocks in order.
    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if std::mem::take(&mut self.batch_links) {
            self.drain().await?;
        }
        while self.writing.len() >= WRITE_AHEAD {
            self.writing.next().await.expect("writes under way")?;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let sink = self.sink;
        self.writing.push(Box::pin(async move { sink.put_many(&batch).await }));
        // Poll until nothing more is ready, so the new write has started (a store typically
        // hands it to a blocking thread on first poll) before this task goes back to hashing.
        while let Some(Some(done)) = self.writing.next().now_or_never() {
            done?;
        }
        Ok(())
    }

    /// Waits for every batch being written.
    async fn drain(&mut self) -> Result<()> {
        while let Some(done) = self.writing.next().await {
            done?;
        }
        Ok(())
    }

    /// Encodes, names (CIDv0 or v1 as the profile says) and stores a dag-pb node.
    async fn put_pb(&mut self, node: PbNode) -> Result<Child> {
        let block = encode_pb(node, self.profile.cid_v0());
        let child = Child { cid: *block.cid(), tsize: block.data().len() as u64 };
        self.put(block).await?;
        Ok(child)
    }

    /// Imports one file whose leaves `leaves` produces, building the balanced tree as they come.
    async fn file(&mut self, mut leaves: impl LeafProducer) -> Result<Child> {
        let chunk_size = self.profile.chunk_size() as u64;
        let mut tree = BalancedTree { max_links: self.profile.max_links(), levels: Vec::new() };
        let mut pending = VecDeque::new();
        let mut first = true;
        loop {
            while pending.len() < HASH_AHEAD {
                match leaves.start(self.profile).await? {
                    Some(task) => pending.push_back(task),
                    None => break,
                }
            }
            let Some(task) = pending.pop_front() else { break };
            let leaf = task.leaf().await?;
            // An empty file still gets one (empty) leaf, as in kubo; otherwise an empty read
            // after a full chunk is the end of input, not a leaf.
            if leaf.filesize == 0 && !first {
                break;
            }
            first = false;
            let last = leaf.filesize < chunk_size;
            let leaf_child = Child { cid: *leaf.block.cid(), tsize: leaf.block.data().len() as u64 };
            self.put_leaf(leaf.block).await?;
            self.bytes += leaf.filesize;
            if let Some(progress) = &self.progress {
                progress(self.bytes);
            }
            let node = FileNode { child: leaf_child, filesize: leaf.filesize };
            tree.push(self, node, 0).await?;
            if last {
                // Leaves started past the end of input are empty; dropping them cancels nothing
                // that matters.
                break;
            }
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
            for block in blocks {
                self.put(block).await?;
            }
            return Ok(root);
        }
        let children_tsize: u64 = entries.iter().map(|(_, c)| c.tsize).sum();
        let links =
            entries.into_iter().map(|(name, c)| PbLink { cid: c.cid, name: Some(name), size: Some(c.tsize) }).collect();
        let data = Data::new(DataType::Directory).encode_to_vec();
        let node = self.put_pb(PbNode { links, data: Some(data.into()) }).await?;
        Ok(Child { cid: node.cid, tsize: node.tsize + children_tsize })
    }

    /// Imports a tree [`list`] listed: depth first, with a stack of its own, as it was listed.
    async fn listed(&mut self, tree: Listed) -> Result<Child> {
        /// A directory being imported: its entries not yet imported, and those imported.
        struct Open {
            name: String,
            pending: std::vec::IntoIter<(String, Listed)>,
            imported: Vec<(String, Child)>,
        }
        let found = match tree {
            Listed::Directory(found) => found,
            Listed::Leaf(leaf) => return self.listed_leaf(leaf).await,
        };
        let mut stack = vec![Open { name: String::new(), pending: found.into_iter(), imported: Vec::new() }];
        loop {
            let top = stack.last_mut().expect("the root is open until it is returned");
            match top.pending.next() {
                Some((name, Listed::Directory(found))) => {
                    stack.push(Open { name, pending: found.into_iter(), imported: Vec::new() });
                }
                Some((name, Listed::Leaf(leaf))) => {
                    let child = self.listed_leaf(leaf).await?;
                    stack.last_mut().expect("still open").imported.push((name, child));
                }
                None => {
                    let done = stack.pop().expect("the top was there");
                    let child = self.directory(done.imported).await?;
                    match stack.last_mut() {
                        Some(parent) => parent.imported.push((done.name, child)),
                        None => return Ok(child),
                    }
                }
            }
        }
    }

    /// Imports a symlink or a file [`list`] listed.
    async fn listed_leaf(&mut self, leaf: ListedLeaf) -> Result<Child> {
        match leaf {
            ListedLeaf::Symlink(target) => self.symlink(target).await,
            // Chunked as a file read by offset is: the same leaves, the same CID.
            ListedLeaf::Read(bytes) => {
                self.file(ReaderLeaves { reader: std::io::Cursor::new(bytes), eof: false }).await
            }
            ListedLeaf::Unread { path, len } => {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| ContentError::io(format!("opening {}", path.display()), e))?;
                let file = Arc::new(file.into_std().await);
                self.file(FileLeaves { file, path, len, offset: 0 }).await
            }
        }
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

/// A leaf hashed where it was read, or being read and hashed on a blocking thread.
enum LeafTask {
    Done(Box<Leaf>),
    Hashing(tokio::task::JoinHandle<Result<Leaf>>),
}

impl LeafTask {
    /// Hashes `chunk` here if it is small, else on a blocking thread.
    fn hash(chunk: Bytes, profile: Profile) -> LeafTask {
        if chunk.len() <= INLINE_HASH_BYTES {
            LeafTask::Done(Box::new(encode_leaf(chunk, profile)))
        } else {
            LeafTask::Hashing(tokio::task::spawn_blocking(move || Ok(encode_leaf(chunk, profile))))
        }
    }

    async fn leaf(self) -> Result<Leaf> {
        match self {
            LeafTask::Done(leaf) => Ok(*leaf),
            LeafTask::Hashing(task) => {
                task.await.map_err(|e| ContentError::io("hashing a chunk", std::io::Error::other(e)))?
            }
        }
    }
}

/// Where a file's leaves come from: each call starts the next chunk's leaf.
#[async_trait::async_trait]
trait LeafProducer: Send {
    /// Starts the next leaf, or `None` once the input is known to be exhausted. A leaf shorter
    /// than a chunk is the last one; leaves started after it are empty.
    async fn start(&mut self, profile: Profile) -> Result<Option<LeafTask>>;
}

/// Leaves of a stream: chunks are read in order here, hashed on blocking threads.
struct ReaderLeaves<R> {
    reader: R,
    eof: bool,
}

#[async_trait::async_trait]
impl<R: AsyncRead + Unpin + Send> LeafProducer for ReaderLeaves<R> {
    async fn start(&mut self, profile: Profile) -> Result<Option<LeafTask>> {
        if self.eof {
            return Ok(None);
        }
        let chunk = read_chunk(&mut self.reader, profile.chunk_size()).await?;
        self.eof = chunk.len() < profile.chunk_size();
        Ok(Some(LeafTask::hash(chunk, profile)))
    }
}

/// Leaves of a local file: each blocking task reads its own chunk by offset (`pread`) and
/// hashes it, so reading and hashing run in parallel on every core with no extra copy.
///
/// The file is imported as long as it was when opened: chunks are sized from that length (so a
/// small file costs a small buffer, not a whole chunk), and a short read ends the file.
struct FileLeaves {
    file: Arc<std::fs::File>,
    path: PathBuf,
    len: u64,
    offset: u64,
}

#[async_trait::async_trait]
impl LeafProducer for FileLeaves {
    async fn start(&mut self, profile: Profile) -> Result<Option<LeafTask>> {
        // An empty file still has its one (empty) leaf.
        if self.offset >= self.len && !(self.offset == 0 && self.len == 0) {
            return Ok(None);
        }
        let (file, offset, path) = (self.file.clone(), self.offset, self.path.clone());
        let want = (self.len - offset).min(profile.chunk_size() as u64) as usize;
        self.offset += profile.chunk_size() as u64;
        Ok(Some(LeafTask::Hashing(tokio::task::spawn_blocking(move || {
            let chunk = read_chunk_at(&file, offset, want)
                .map_err(|e| ContentError::io(format!("reading {}", path.display()), e))?;
            Ok(encode_leaf(chunk, profile))
        }))))
    }
}

/// A tree as [`list`] found it.
enum Listed {
    /// Entries sorted by name, hidden ones left out unless asked for.
    Directory(Vec<(String, Listed)>),
    Leaf(ListedLeaf),
}

/// What is not a directory in a tree [`list`] found.
enum ListedLeaf {
    Symlink(String),
    /// A file read while listing.
    Read(Bytes),
    /// A file to read as it is imported, as long as it was when listed.
    Unread {
        path: PathBuf,
        len: u64,
    },
}

/// Lists the tree at `path` (following `path` itself if it is a link, never the links inside),
/// reading files whole until `read_whole` bytes have been read. Runs on a blocking thread.
///
/// Depth first, by name, with a stack of its own rather than recursion: a job can nest its
/// outputs as deep as paths go, deeper than a thread's stack would allow.
fn list(path: &Path, include_hidden: bool, read_whole: u64) -> Result<Listed> {
    /// A directory being listed: its entries not yet listed, and those listed.
    struct Open {
        name: String,
        pending: std::vec::IntoIter<(String, PathBuf)>,
        listed: Vec<(String, Listed)>,
    }
    let open = |name: String, dir: &Path| -> Result<Open> {
        Ok(Open { name, pending: entries(dir, include_hidden)?.into_iter(), listed: Vec::new() })
    };
    let meta = std::fs::metadata(path).map_err(|e| ContentError::io(format!("reading {}", path.display()), e))?;
    let mut budget = read_whole;
    if !meta.is_dir() {
        return list_leaf(path.to_path_buf(), &meta, &mut budget).map(Listed::Leaf);
    }
    let mut stack = vec![open(String::new(), path)?];
    loop {
        let top = stack.last_mut().expect("the root is open until it is returned");
        match top.pending.next() {
            Some((name, entry)) => {
                let meta = std::fs::symlink_metadata(&entry)
                    .map_err(|e| ContentError::io(format!("reading {}", entry.display()), e))?;
                if meta.is_dir() {
                    let dir = open(name, &entry)?;
                    stack.push(dir);
                } else {
                    let leaf = list_leaf(entry, &meta, &mut budget)?;
                    top.listed.push((name, Listed::Leaf(leaf)));
                }
            }
            None => {
                let done = stack.pop().expect("the top was there");
                let listed = Listed::Directory(done.listed);
                match stack.last_mut() {
                    Some(parent) => parent.listed.push((done.name, listed)),
                    None => return Ok(listed),
                }
            }
        }
    }
}

/// The entries of directory `dir`, sorted by name (so blocks and progress come in the same order
/// on every run), hidden ones left out unless `include_hidden`.
fn entries(dir: &Path, include_hidden: bool) -> Result<Vec<(String, PathBuf)>> {
    let listing = |e| ContentError::io(format!("listing {}", dir.display()), e);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name().into_string().map_err(|raw| ContentError::InvalidArgument {
            what: format!("file name {raw:?} in {}", dir.display()),
            reason: "UnixFS names must be UTF-8".into(),
        })?;
        if name.starts_with('.') && !include_hidden {
            continue;
        }
        found.push((name, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// A symlink or a file as [`list`] lists it: a file read whole while `budget` lasts, else left
/// to be read as it is imported.
fn list_leaf(path: PathBuf, meta: &Metadata, budget: &mut u64) -> Result<ListedLeaf> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target =
            std::fs::read_link(&path).map_err(|e| ContentError::io(format!("reading link {}", path.display()), e))?;
        let target = target.into_os_string().into_string().map_err(|raw| ContentError::InvalidArgument {
            what: format!("symlink target {raw:?} of {}", path.display()),
            reason: "UnixFS symlink targets must be UTF-8".into(),
        })?;
        Ok(ListedLeaf::Symlink(target))
    } else if kind.is_file() {
        let len = meta.len();
        let Some(left) = budget.checked_sub(len) else { return Ok(ListedLeaf::Unread { path, len }) };
        *budget = left;
        let file =
            std::fs::File::open(&path).map_err(|e| ContentError::io(format!("opening {}", path.display()), e))?;
        // As long as it was when its metadata was read, as `FileLeaves` reads it.
        let bytes = read_chunk_at(&file, 0, len as usize)
            .map_err(|e| ContentError::io(format!("reading {}", path.display()), e))?;
        Ok(ListedLeaf::Read(bytes))
    } else {
        Err(ContentError::InvalidArgument {
            what: format!("file {}", path.display()),
            reason: "not a regular file, directory or symlink (sockets, FIFOs and devices have no UnixFS form)".into(),
        })
    }
}

/// Reads up to `want` bytes at `offset`; fewer only at the end of the file.
fn read_chunk_at(file: &std::fs::File, offset: u64, want: usize) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

/// Hashes one chunk into a leaf block (runs on a blocking thread).
fn encode_leaf(chunk: Bytes, profile: Profile) -> Leaf {
    let filesize = chunk.len() as u64;
    let block = if profile.raw_leaves() {
        Block::encode(Codec::Raw, chunk)
    } else {
        let bytes = pb_file_leaf(&chunk);
        if profile.cid_v0() {
            Block::encode_v0(bytes)
        } else {
            Block::encode(Codec::DagPb, bytes)
        }
    };
    Leaf { block, filesize }
}

/// The dag-pb bytes of a link-less UnixFS `File` leaf holding `chunk`, written in one pass
/// (encoding the `Data` message and then the node copied each chunk twice). The bytes are those
/// prost and ipld-dagpb produce — `PBNode { Data: Data { Type: File, Data: chunk, filesize } }`
/// — with an empty chunk's `Data.Data` left out, as kubo and JS do.
fn pb_file_leaf(chunk: &[u8]) -> Bytes {
    use prost::encoding::{encode_varint, encoded_len_varint};
    let len = chunk.len() as u64;
    let data_field = if chunk.is_empty() { 0 } else { 1 + encoded_len_varint(len) + chunk.len() };
    let unixfs_len = 2 + data_field + 1 + encoded_len_varint(len);
    let mut out = BytesMut::with_capacity(1 + encoded_len_varint(unixfs_len as u64) + unixfs_len);
    out.extend_from_slice(&[0x0a]); // PBNode.Data (field 1, length-delimited)
    encode_varint(unixfs_len as u64, &mut out);
    out.extend_from_slice(&[0x08, DataType::File as u8]); // Data.Type (field 1, varint)
    if !chunk.is_empty() {
        out.extend_from_slice(&[0x12]); // Data.Data (field 2, length-delimited)
        encode_varint(len, &mut out);
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&[0x18]); // Data.filesize (field 3, varint)
    encode_varint(len, &mut out);
    out.freeze()
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::{BlockStore, MemoryBlockStore};

    fn child(seed: u8, tsize: u64) -> Child {
        Child { cid: *Block::encode(Codec::Raw, vec![seed]).cid(), tsize }
    }

    /// A sink whose writes finish out of order, and which records any block stored before a
    /// block it links to.
    #[derive(Default)]
    struct ScramblingSink {
        stored: std::sync::Mutex<std::collections::HashSet<Cid>>,
        orphans: std::sync::Mutex<Vec<Cid>>,
    }

    #[async_trait::async_trait]
    impl BlockSink for ScramblingSink {
        async fn put(&self, block: &Block) -> Result<()> {
            for _ in 0..block.cid().hash().digest()[0] % 7 {
                tokio::task::yield_now().await;
            }
            let links = crate::dag::links(block)?;
            let mut stored = self.stored.lock().unwrap();
            if links.iter().any(|l| !stored.contains(l)) {
                self.orphans.lock().unwrap().push(*block.cid());
            }
            stored.insert(*block.cid());
            Ok(())
        }
    }

    #[tokio::test]
    async fn blocks_reach_the_sink_children_first_and_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(dir.path().join("big"), &data).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for i in 0..20 {
            std::fs::write(dir.path().join(format!("sub/{i}")), format!("{i}")).unwrap();
        }
        let sink = ScramblingSink::default();
        let imported = import_path(dir.path(), &ImportOptions::default(), &sink).await.unwrap();
        assert!(sink.orphans.lock().unwrap().is_empty(), "stored before their children: {:?}", sink.orphans);
        let stored = sink.stored.lock().unwrap();
        assert!(stored.contains(&imported.root));
        // 12 leaves + 1 parent for "big", 20 files, "sub", the root.
        assert_eq!((imported.blocks, stored.len()), (35, 35));
    }

    #[tokio::test]
    async fn linking_imported_entries_builds_the_directory_a_tree_import_builds() {
        let store = crate::MemoryBlockStore::default();
        for entries in [3usize, 6000] {
            let dir = tempfile::tempdir().unwrap();
            for i in 0..entries {
                std::fs::write(dir.path().join(format!("scene-{i:05}.tif")), format!("pixels {i}")).unwrap();
            }
            std::fs::create_dir(dir.path().join("sub")).unwrap();
            std::fs::write(dir.path().join("sub/inner"), "x").unwrap();
            let whole = import_path(dir.path(), &ImportOptions::default(), &store).await.unwrap();
            let mut links = Vec::new();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let entry = entry.unwrap();
                let root = import_path(&entry.path(), &ImportOptions::default(), &store).await.unwrap().root;
                let dag_size = super::super::stat(&store, &root).await.unwrap().dag_size;
                links.push(Link { name: entry.file_name().into_string().unwrap(), cid: root, dag_size });
            }
            let linked = import_links(links.clone(), &ImportOptions::default(), &store).await.unwrap();
            assert_eq!(linked.root, whole.root, "{entries} entries");
            links.push(links[0].clone());
            assert!(import_links(links, &ImportOptions::default(), &store).await.is_err(), "a name twice");
        }
    }

    #[tokio::test]
    async fn a_tree_imports_the_same_whether_its_files_are_read_while_listing_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..600_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(dir.path().join("big"), &big).unwrap();
        std::fs::write(dir.path().join("empty"), "").unwrap();
        std::fs::write(dir.path().join(".hidden"), "h").unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("sub/deeper/small"), "80 bytes or so").unwrap();
        std::os::unix::fs::symlink("../big", dir.path().join("sub/link")).unwrap();
        let big = |budget| list(&dir.path().join("big"), false, budget).unwrap();
        assert!(matches!(big(0), Listed::Leaf(ListedLeaf::Unread { len: 600_000, .. })));
        assert!(matches!(big(600_000), Listed::Leaf(ListedLeaf::Read(_))));
        let none_read = |opts: &ImportOptions| {
            let (path, opts) = (dir.path().to_path_buf(), opts.clone());
            async move {
                let store = MemoryBlockStore::new();
                let imported = import_listed(&path, &opts, &store, 0).await;
                (imported, store)
            }
        };
        for include_hidden in [false, true] {
            let opts = ImportOptions { include_hidden, ..Default::default() };
            let all_read = MemoryBlockStore::new();
            let imported = import_path(dir.path(), &opts, &all_read).await.unwrap();
            let (after, after_store) = none_read(&opts).await;
            assert_eq!(imported, after.unwrap());
            // big: 3 leaves and a parent; empty, small, link, deeper, sub, the root; .hidden if asked.
            assert_eq!((all_read.len(), imported.blocks), (after_store.len(), 10 + u64::from(include_hidden)));
            // One file of a tree, and a file alone, too.
            let big_alone = import_path(&dir.path().join("big"), &opts, &MemoryBlockStore::new()).await.unwrap();
            let big_after = import_listed(&dir.path().join("big"), &opts, &MemoryBlockStore::new(), 0).await.unwrap();
            assert_eq!(big_alone, big_after);
        }
        // A socket has no UnixFS form: an error naming it.
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sub/socket")).unwrap();
        let error = import_path(dir.path(), &ImportOptions::default(), &MemoryBlockStore::new()).await.unwrap_err();
        assert!(error.to_string().contains("sub/socket"), "{error}");
        assert!(error.to_string().contains("no UnixFS form"), "{error}");
    }

    #[tokio::test]
    async fn a_tree_deeper_than_a_thread_stack_would_recurse_imports() {
        let dir = tempfile::tempdir().unwrap();
        // 2,000 levels of one-letter directories: a path of 4,000 bytes, within PATH_MAX.
        let mut deepest = dir.path().join("d");
        for _ in 1..2_000 {
            deepest.push("d");
        }
        std::fs::create_dir_all(&deepest).unwrap();
        std::fs::write(deepest.join("leaf"), "at the bottom").unwrap();
        let store = MemoryBlockStore::new();
        let imported = import_path(dir.path(), &ImportOptions::default(), &store).await.unwrap();
        // The root, 2,000 directories and the file.
        assert_eq!((imported.blocks, imported.size), (2_002, 13));
        let path = format!("{}/leaf", vec!["d"; 2_000].join("/"));
        let leaf = crate::unixfs::resolve_path(&store, &imported.root, &path).await.unwrap();
        assert_eq!(*Block::encode(Codec::Raw, b"at the bottom".to_vec()).cid(), leaf);
    }

    #[tokio::test]
    async fn importing_many_sources_at_once_gives_what_importing_each_gives_in_one_write() {
        /// Counts the sink's writes.
        #[derive(Default)]
        struct Writes(MemoryBlockStore, AtomicUsize);
        #[async_trait::async_trait]
        impl BlockSink for Writes {
            async fn put(&self, block: &Block) -> Result<()> {
                self.put_many(std::slice::from_ref(block)).await
            }
            async fn put_many(&self, blocks: &[Block]) -> Result<()> {
                self.1.fetch_add(1, Ordering::Relaxed);
                self.0.put_many(blocks).await
            }
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("outputs/sub")).unwrap();
        std::fs::write(
            dir.path().join("outputs/hash.txt"),
            "d2a84f4b8b650937ec8f73cd8be2c74add5a911ba64df27458ed8229da804a26",
        )
        .unwrap();
        std::fs::write(dir.path().join("outputs/sub/empty"), "").unwrap();
        let (outputs, stdout, stderr) =
            (dir.path().join("outputs"), Bytes::from_static(b"hashed 1 file\n"), Bytes::new());
        let opts = ImportOptions::default();
        let each = [
            import_path(&outputs, &opts, &MemoryBlockStore::new()).await.unwrap(),
            import_reader(&stdout[..], &opts, &MemoryBlockStore::new()).await.unwrap(),
            import_reader(&stderr[..], &opts, &MemoryBlockStore::new()).await.unwrap(),
        ];
        let sink = Writes::default();
        let sources = vec![ImportSource::Path(outputs), ImportSource::Bytes(stdout), ImportSource::Bytes(stderr)];
        let many = import_many(sources, &opts, &sink).await.unwrap();
        assert_eq!(many, each);
        assert_eq!(sink.1.load(Ordering::Relaxed), 1, "every block in one write");
        for imported in &many {
            assert!(sink.0.has(&imported.root).await.unwrap(), "{imported:?} stored");
        }
        // Listed beforehand (on a thread that may block), the tree imports as it would by its
        // path, and a file store's sink for such a thread writes it there, readable by the store.
        let files = crate::FsBlockStore::open(dir.path().join("blocks")).unwrap();
        let outputs_again = dir.path().join("outputs");
        let listed = ImportSource::Listed(list_tree(&outputs_again, false).unwrap());
        let imported = import_many(vec![listed], &opts, &files.on_this_thread()).await.unwrap();
        assert_eq!(imported[0], each[0]);
        let exported = dir.path().join("exported");
        crate::unixfs::export_to_path(&files, &imported[0].root, &exported).await.unwrap();
        assert_eq!(
            std::fs::read(exported.join("hash.txt")).unwrap(),
            std::fs::read(outputs_again.join("hash.txt")).unwrap()
        );
        // A source that cannot be read fails the whole import, naming it.
        let missing = ImportSource::Path(dir.path().join("missing"));
        let error = import_many(vec![ImportSource::Bytes(Bytes::new()), missing], &opts, &sink).await.unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }

    #[tokio::test]
    async fn hidden_entries_are_skipped_unless_asked_for_and_symlinks_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("visible"), "v").unwrap();
        std::fs::write(dir.path().join(".hidden"), "h").unwrap();
        std::os::unix::fs::symlink("visible", dir.path().join("link")).unwrap();
        for (include_hidden, expected) in [(false, vec!["link", "visible"]), (true, vec![".hidden", "link", "visible"])]
        {
            let store = MemoryBlockStore::new();
            let opts = ImportOptions { include_hidden, ..Default::default() };
            let root = import_path(dir.path(), &opts, &store).await.unwrap().root;
            let entries = crate::unixfs::list(&store, &root).await.unwrap();
            let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, expected, "include_hidden = {include_hidden}");
            let link = entries.iter().find(|e| e.name == "link").unwrap();
            assert_eq!((link.kind, link.size), (crate::unixfs::NodeKind::Symlink, "visible".len() as u64));
        }
    }

    #[test]
    fn one_pass_file_leaves_match_prost_and_dagpb_encoding() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 256 * 1024, 1024 * 1024] {
            let chunk: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut data = Data::new(DataType::File);
            data.filesize = Some(len as u64);
            data.data = (!chunk.is_empty()).then(|| Bytes::from(chunk.clone()));
            let reference = PbNode { links: Vec::new(), data: Some(data.encode_to_vec().into()) }.into_bytes();
            assert!(pb_file_leaf(&chunk) == reference, "{len}-byte leaf differs");
        }
    }

    #[test]
    fn block_bytes_estimate_is_the_real_encoded_length() {
        let entries: Vec<(String, Child)> =
            (0..300u32).map(|i| (format!("entry-{i}-é"), child(i as u8, u64::from(i) * 977 + 1))).collect();
        let links =
            entries.iter().map(|(n, c)| PbLink { cid: c.cid, name: Some(n.clone()), size: Some(c.tsize) }).collect();
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
