//! UnixFS DAGs → file bytes, directory listings, resolved paths and trees on disk.
//!
//! Every block is read through a [`BlockReader`], so it has been verified against its CID before
//! it is decoded here. What is decoded is then checked against the UnixFS rules: a file node's
//! inline bytes plus its `blocksizes` must equal its `filesize`, each child must hold exactly the
//! bytes its parent's `blocksizes` says, names must be usable path components, HAMT entries
//! must sit in the slot their name hashes to. Anything else is [`ContentError::Malformed`]
//! naming the node. Depth, block size and entry counts are bounded ([`MAX_DEPTH`],
//! [`MAX_BLOCK_SIZE`], [`MAX_ENTRIES`]), so a hostile DAG ends in an error, not a hang.

use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use ipld_dagpb::PbLink;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::hamt::{self, MURMUR3_X64_64};
use super::pb::{Data, DataType};
use crate::block::{Block, Codec};
use crate::dag::decode_pb;
use crate::error::{ContentError, Result};
use crate::store::BlockReader;

/// Largest block the exporter accepts. Importers write at most 1 MiB of chunk plus framing;
/// kubo's bitswap limit is 2 MiB.
pub const MAX_BLOCK_SIZE: usize = 2 * 1024 * 1024;

/// Deepest nesting accepted: levels of a file's tree, of a HAMT, or of directories. A balanced
/// tree of depth 8 with 174 links of 256 KiB already holds 10^17 bytes.
pub const MAX_DEPTH: usize = 64;

/// Most entries accepted in one directory listing, and in one whole export.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Blocks fetched ahead of the one being streamed, per level of a file's tree.
const PREFETCH: usize = 4;

/// Children stat'ed concurrently when listing a directory.
const LIST_CONCURRENCY: usize = 16;

/// What a UnixFS node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A file: a raw block or a dag-pb UnixFS `File` (or legacy `Raw`) node.
    File,
    /// A plain directory.
    Directory,
    /// A HAMT-sharded directory.
    HamtDirectory,
    /// A symbolic link.
    Symlink,
}

impl NodeKind {
    /// Lower-case name for messages and listings.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Directory => "directory",
            NodeKind::HamtDirectory => "HAMT-sharded directory",
            NodeKind::Symlink => "symlink",
        }
    }

    /// Whether the node is a directory of either layout.
    pub fn is_directory(self) -> bool {
        matches!(self, NodeKind::Directory | NodeKind::HamtDirectory)
    }
}

/// What [`stat`] tells about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node.
    pub cid: Cid,
    /// Its kind.
    pub kind: NodeKind,
    /// Content bytes: a file's length (checked against its blocks' declared sizes), a symlink
    /// target's length; 0 for directories.
    pub size: u64,
    /// The node's block plus the `Tsize` its links declare for their sub-DAGs (what `ipfs ls`
    /// shows for directories). Declared by the DAG, not verified.
    pub dag_size: u64,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (a valid path component).
    pub name: String,
    /// The entry's node.
    pub cid: Cid,
    /// The entry's kind.
    pub kind: NodeKind,
    /// As [`NodeInfo::size`].
    pub size: u64,
    /// As [`NodeInfo::dag_size`].
    pub dag_size: u64,
}

/// What [`export_to_path`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    /// Regular files written.
    pub files: u64,
    /// Directories created (the root included, if it is one).
    pub directories: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// A decoded node.
enum Node {
    /// A raw block: file bytes.
    Raw(Bytes),
    /// A dag-pb UnixFS node.
    Pb { kind: DataType, data: Data, links: Vec<PbLink> },
}

fn malformed(cid: &Cid, reason: impl Into<String>) -> ContentError {
    ContentError::Malformed { cid: *cid, reason: reason.into() }
}

async fn fetch(reader: &dyn BlockReader, cid: &Cid) -> Result<Block> {
    let block = reader.get(cid).await?;
    if block.data().len() > MAX_BLOCK_SIZE {
        return Err(ContentError::Limit(format!(
            "block {cid} is {} bytes, over the {MAX_BLOCK_SIZE}-byte limit",
            block.data().len()
        )));
    }
    Ok(block)
}

fn decode(block: &Block) -> Result<Node> {
    let cid = block.cid();
    match Codec::of(cid)? {
        Codec::Raw => Ok(Node::Raw(block.data().clone())),
        Codec::DagPb => {
            let pb = decode_pb(block)?;
            let bytes = pb.data.ok_or_else(|| malformed(cid, "dag-pb node has no UnixFS Data"))?;
            let data = Data::decode(bytes).map_err(|e| malformed(cid, format!("UnixFS Data: {e}")))?;
            let kind = DataType::try_from(data.r#type)
                .map_err(|_| malformed(cid, format!("unknown UnixFS type {}", data.r#type)))?;
            Ok(Node::Pb { kind, data, links: pb.links })
        }
    }
}

fn kind_of(cid: &Cid, node: &Node) -> Result<NodeKind> {
    match node {
        Node::Raw(_) => Ok(NodeKind::File),
        Node::Pb { kind, .. } => match kind {
            DataType::File | DataType::Raw => Ok(NodeKind::File),
            DataType::Directory => Ok(NodeKind::Directory),
            DataType::HamtShard => Ok(NodeKind::HamtDirectory),
            DataType::Symlink => Ok(NodeKind::Symlink),
            DataType::Metadata => Err(ContentError::Unsupported { cid: *cid, reason: "UnixFS Metadata nodes".into() }),
        },
    }
}

/// The content length of a file node, after checking that its parts add up.
fn file_size(cid: &Cid, data: &Data, links: &[PbLink]) -> Result<u64> {
    if links.len() != data.blocksizes.len() {
        return Err(malformed(
            cid,
            format!("file node has {} links but {} blocksizes", links.len(), data.blocksizes.len()),
        ));
    }
    let inline = data.data.as_ref().map_or(0, |d| d.len() as u64);
    let total = data
        .blocksizes
        .iter()
        .try_fold(inline, |acc, size| acc.checked_add(*size))
        .ok_or_else(|| malformed(cid, "file node's blocksizes overflow 64 bits"))?;
    match data.filesize {
        Some(declared) if declared != total => Err(malformed(
            cid,
            format!("file node declares {declared} bytes but its data and blocksizes add up to {total}"),
        )),
        _ => Ok(total),
    }
}

fn info_of(block: &Block, node: &Node) -> Result<NodeInfo> {
    let cid = *block.cid();
    let kind = kind_of(&cid, node)?;
    let block_len = block.data().len() as u64;
    let (size, dag_size) = match node {
        Node::Raw(bytes) => (bytes.len() as u64, block_len),
        Node::Pb { data, links, .. } => {
            let size = match kind {
                NodeKind::File => file_size(&cid, data, links)?,
                NodeKind::Symlink => data.data.as_ref().map_or(0, |d| d.len() as u64),
                NodeKind::Directory | NodeKind::HamtDirectory => 0,
            };
            let dag_size = links.iter().fold(block_len, |acc, l| acc.saturating_add(l.size.unwrap_or(0)));
            (size, dag_size)
        }
    };
    Ok(NodeInfo { cid, kind, size, dag_size })
}

/// What `cid` is, and how big. Reads one block.
pub async fn stat(reader: &dyn BlockReader, cid: &Cid) -> Result<NodeInfo> {
    let block = fetch(reader, cid).await?;
    let node = decode(&block)?;
    info_of(&block, &node)
}

/// The entries of directory `dir` (plain or HAMT-sharded), sorted by name. Reads the
/// directory's blocks and each entry's root block (for its kind and size).
pub async fn list(reader: &dyn BlockReader, dir: &Cid) -> Result<Vec<DirEntry>> {
    let links = dir_links(reader, dir).await?;
    stream::iter(links)
        .map(|link| async move {
            let info = stat(reader, &link.cid).await?;
            Ok(DirEntry { name: link.name, cid: link.cid, kind: info.kind, size: info.size, dag_size: info.dag_size })
        })
        .buffered(LIST_CONCURRENCY)
        .try_collect()
        .await
}

/// A directory entry as its parent records it.
struct NamedLink {
    name: String,
    cid: Cid,
}

/// The named links of directory `dir`, sorted by name, names checked and unique.
async fn dir_links(reader: &dyn BlockReader, dir: &Cid) -> Result<Vec<NamedLink>> {
    let block = fetch(reader, dir).await?;
    let node = decode(&block)?;
    let mut out = Vec::new();
    match (kind_of(dir, &node)?, node) {
        (NodeKind::Directory, Node::Pb { links, .. }) => {
            if links.len() > MAX_ENTRIES {
                return Err(too_many_entries(dir));
            }
            for link in links {
                let name = link.name.ok_or_else(|| malformed(dir, "directory link without a name"))?;
                check_name(dir, &name)?;
                out.push(NamedLink { name, cid: link.cid });
            }
        }
        (NodeKind::HamtDirectory, Node::Pb { data, links, .. }) => {
            let bits = shard_bits(dir, &data)?;
            hamt_entries(reader, *dir, links, bits, Vec::new(), &mut out).await?;
        }
        (kind, _) => return Err(ContentError::WrongKind { cid: *dir, expected: "directory", found: kind.name() }),
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = out.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(malformed(dir, format!("directory holds two entries named {:?}", pair[0].name)));
    }
    Ok(out)
}

fn too_many_entries(dir: &Cid) -> ContentError {
    ContentError::Limit(format!("directory {dir} has more than {MAX_ENTRIES} entries"))
}

/// A name a directory entry may have: one non-empty path component.
fn check_name(dir: &Cid, name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(malformed(dir, format!("entry name {name:?} is not a single path component")));
    }
    Ok(())
}

/// Bits of hash per level of a HAMT shard node, after checking its parameters.
fn shard_bits(cid: &Cid, data: &Data) -> Result<u32> {
    if data.hash_type != Some(MURMUR3_X64_64) {
        return Err(ContentError::Unsupported {
            cid: *cid,
            reason: format!("HAMT hash function {:?} (only murmur3-x64-64, 0x22)", data.hash_type),
        });
    }
    match data.fanout {
        Some(fanout) if fanout.is_power_of_two() && (2..=4096).contains(&fanout) => Ok(fanout.trailing_zeros()),
        other => Err(malformed(cid, format!("HAMT fanout {other:?} is not a power of two in 2..=4096"))),
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Collects the entries of HAMT shard `shard` (whose slot path from the root is `path`).
fn hamt_entries<'a>(
    reader: &'a dyn BlockReader,
    shard: Cid,
    links: Vec<PbLink>,
    bits: u32,
    path: Vec<usize>,
    out: &'a mut Vec<NamedLink>,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let prefix_len = hamt::prefix_len(1 << bits);
        for link in links {
            let label = link.name.ok_or_else(|| malformed(&shard, "HAMT link without a name"))?;
            let slot = label
                .get(..prefix_len)
                .and_then(|p| usize::from_str_radix(p, 16).ok())
                .filter(|s| *s < 1 << bits)
                .ok_or_else(|| malformed(&shard, format!("HAMT link name {label:?} has no valid slot prefix")))?;
            let mut slot_path = path.clone();
            slot_path.push(slot);
            if label.len() == prefix_len {
                if slot_path.len() >= MAX_DEPTH || slot_path.len() as u32 * bits >= 64 {
                    return Err(ContentError::Limit(format!("HAMT {shard} nests deeper than its 64 hash bits")));
                }
                let block = fetch(reader, &link.cid).await?;
                match decode(&block)? {
                    Node::Pb { kind: DataType::HamtShard, data, links } => {
                        if shard_bits(&link.cid, &data)? != bits {
                            return Err(malformed(&link.cid, "sub-shard fanout differs from its parent's"));
                        }
                        hamt_entries(reader, link.cid, links, bits, slot_path, out).await?;
                    }
                    _ => return Err(malformed(&link.cid, "HAMT sub-shard link points to a non-shard node")),
                }
            } else {
                let name = label[prefix_len..].to_string();
                check_name(&shard, &name)?;
                let hash = hamt::name_hash(name.as_bytes());
                let placed = slot_path.iter().enumerate().all(|(depth, s)| hamt::slot(hash, depth, bits) == Some(*s));
                if !placed {
                    return Err(malformed(
                        &shard,
                        format!("HAMT entry {name:?} is not in the slot its name hashes to"),
                    ));
                }
                if out.len() >= MAX_ENTRIES {
                    return Err(too_many_entries(&shard));
                }
                out.push(NamedLink { name, cid: link.cid });
            }
        }
        Ok(())
    })
}

/// Follows `path` (`a/b/c`; empty segments ignored) from `root` through plain and HAMT
/// directories, reading only the blocks on the way.
pub async fn resolve_path(reader: &dyn BlockReader, root: &Cid, path: &str) -> Result<Cid> {
    let mut current = *root;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(ContentError::InvalidArgument {
                what: format!("path {path:?}"),
                reason: "`.` and `..` are not allowed".into(),
            });
        }
        let not_found = || ContentError::PathNotFound { root: *root, path: path.to_string() };
        let block = fetch(reader, &current).await?;
        let node = decode(&block)?;
        current = match (kind_of(&current, &node)?, node) {
            (NodeKind::Directory, Node::Pb { links, .. }) => {
                links.into_iter().find(|l| l.name.as_deref() == Some(segment)).map(|l| l.cid).ok_or_else(not_found)?
            }
            (NodeKind::HamtDirectory, Node::Pb { data, links, .. }) => {
                hamt_lookup(reader, current, &data, links, segment).await?.ok_or_else(not_found)?
            }
            (kind, _) => {
                return Err(ContentError::WrongKind { cid: current, expected: "directory", found: kind.name() })
            }
        };
    }
    Ok(current)
}

/// Resolves an IPFS path — `<cid>`, `<cid>/a/b` or `/ipfs/<cid>/a/b`, CIDv0 or CIDv1 — to the
/// CID it names. A bad CID is [`ContentError::InvalidCid`]; a missing entry is
/// [`ContentError::PathNotFound`].
pub async fn resolve(reader: &dyn BlockReader, path: &str) -> Result<Cid> {
    let trimmed = path.strip_prefix("/ipfs/").unwrap_or(path);
    let (root, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let root = crate::block::parse_cid(root)?;
    resolve_path(reader, &root, rest).await
}

/// Finds `name` in the HAMT rooted at `shard` by following its hash: one block per level.
async fn hamt_lookup(
    reader: &dyn BlockReader,
    shard: Cid,
    data: &Data,
    links: Vec<PbLink>,
    name: &str,
) -> Result<Option<Cid>> {
    let bits = shard_bits(&shard, data)?;
    let prefix_len = hamt::prefix_len(1 << bits);
    let hash = hamt::name_hash(name.as_bytes());
    let (mut shard, mut links) = (shard, links);
    for depth in 0..MAX_DEPTH {
        let Some(slot) = hamt::slot(hash, depth, bits) else { return Ok(None) };
        let prefix = format!("{slot:0prefix_len$X}");
        let Some(link) = links.into_iter().find(|l| l.name.as_deref().is_some_and(|n| n.starts_with(&prefix))) else {
            return Ok(None);
        };
        let label = link.name.as_deref().unwrap_or_default();
        if label.len() > prefix_len {
            return Ok((&label[prefix_len..] == name).then_some(link.cid));
        }
        let block = fetch(reader, &link.cid).await?;
        match decode(&block)? {
            Node::Pb { kind: DataType::HamtShard, data, links: sub } => {
                if shard_bits(&link.cid, &data)? != bits {
                    return Err(malformed(&link.cid, "sub-shard fanout differs from its parent's"));
                }
                shard = link.cid;
                links = sub;
            }
            _ => return Err(malformed(&shard, "HAMT sub-shard link points to a non-shard node")),
        }
    }
    Err(ContentError::Limit(format!("HAMT {shard} nests deeper than {MAX_DEPTH} levels")))
}

/// The bytes of file `cid`, streamed block by block: memory stays a few blocks per tree level.
///
/// Fails (mid-stream, with [`ContentError::Malformed`]) if the DAG's blocks do not add up to
/// the sizes it declares, so a consumer that saw the stream end without error got exactly the
/// file's declared length. CIDv0 and CIDv1 roots both work.
pub fn cat(reader: Arc<dyn BlockReader>, cid: Cid) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    cat_range(reader, cid, 0..u64::MAX)
}

/// The bytes of file `cid` in `range` (clamped to the file's length), reading only the blocks
/// that hold them.
pub fn cat_range(
    reader: Arc<dyn BlockReader>,
    cid: Cid,
    range: Range<u64>,
) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    Walk::new(reader, Start::Cid(cid), range).into_stream()
}

/// [`cat`] as an [`AsyncRead`]; errors surface as `std::io::Error`s wrapping [`ContentError`].
pub fn cat_reader(reader: Arc<dyn BlockReader>, cid: Cid) -> impl AsyncRead + Send + Unpin + 'static {
    tokio_util::io::StreamReader::new(Box::pin(cat(reader, cid).map_err(std::io::Error::other)))
}

/// Something the walker can read blocks through: an owned `Arc` (for `'static` streams) or a
/// borrowed reader (for exports).
trait ReaderHandle: Clone + Send + Sync {
    fn reader(&self) -> &dyn BlockReader;
}

impl ReaderHandle for Arc<dyn BlockReader> {
    fn reader(&self) -> &dyn BlockReader {
        self.as_ref()
    }
}

impl ReaderHandle for &dyn BlockReader {
    fn reader(&self) -> &dyn BlockReader {
        *self
    }
}

/// The part of a node's bytes still wanted, relative to the node, and the size its parent
/// declared for it (`None` for the root).
#[derive(Debug, Clone, Copy)]
struct Window {
    declared: Option<u64>,
    start: u64,
    end: u64,
}

enum Start {
    Cid(Cid),
    Block(Block),
}

/// Depth-first walk over a file's tree, emitting its bytes in order.
struct Walk<'a, H: ReaderHandle + 'a> {
    handle: H,
    start: Option<Start>,
    range: Range<u64>,
    /// One entry per open level: the children still to visit, fetched a few ahead.
    stack: Vec<BoxStream<'a, (Result<Block>, Window)>>,
    failed: bool,
}

impl<'a, H: ReaderHandle + 'a> Walk<'a, H> {
    fn new(handle: H, start: Start, range: Range<u64>) -> Self {
        Walk { handle, start: Some(start), range, stack: Vec::new(), failed: false }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + 'a {
        stream::unfold(self, |mut walk| async move {
            let item = walk.next().await?;
            walk.failed = item.is_err();
            Some((item, walk))
        })
    }

    async fn next(&mut self) -> Option<Result<Bytes>> {
        if self.failed {
            return None;
        }
        loop {
            let visited = if let Some(start) = self.start.take() {
                let block = match start {
                    Start::Block(block) => Ok(block),
                    Start::Cid(cid) => fetch(self.handle.reader(), &cid).await,
                };
                let window = Window { declared: None, start: self.range.start, end: self.range.end };
                match block {
                    Ok(block) => self.visit(block, window),
                    Err(e) => Err(e),
                }
            } else {
                let level = self.stack.last_mut()?;
                match level.next().await {
                    None => {
                        self.stack.pop();
                        continue;
                    }
                    Some((Err(e), _)) => Err(e),
                    Some((Ok(block), window)) => self.visit(block, window),
                }
            };
            match visited {
                Ok(Some(bytes)) => return Some(Ok(bytes)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Emits the wanted part of `block`'s own bytes and queues the children that hold the rest.
    fn visit(&mut self, block: Block, window: Window) -> Result<Option<Bytes>> {
        let cid = *block.cid();
        let node = decode(&block)?;
        let (inline, blocksizes, links, size) = match node {
            Node::Raw(bytes) => {
                let size = bytes.len() as u64;
                (bytes, Vec::new(), Vec::new(), size)
            }
            Node::Pb { kind: DataType::File | DataType::Raw, mut data, links } => {
                let size = file_size(&cid, &data, &links)?;
                (data.data.take().unwrap_or_default(), data.blocksizes, links, size)
            }
            other => {
                let kind = kind_of(&cid, &other)?;
                return Err(match window.declared {
                    None => ContentError::WrongKind { cid, expected: "file", found: kind.name() },
                    Some(_) => malformed(&cid, format!("a file's tree contains a {}", kind.name())),
                });
            }
        };
        if let Some(declared) = window.declared {
            if declared != size {
                return Err(malformed(&cid, format!("holds {size} bytes but its parent says {declared}")));
            }
        }
        let end = window.end.min(size);
        let start = window.start.min(end);
        let mut offset = inline.len() as u64;
        let mut wanted = Vec::new();
        for (link, child_size) in links.iter().zip(&blocksizes) {
            let (child_start, child_end) = (offset, offset + child_size);
            if child_start < end && child_end > start && *child_size > 0 {
                let child_window = Window {
                    declared: Some(*child_size),
                    start: start.saturating_sub(child_start),
                    end: end.min(child_end) - child_start,
                };
                wanted.push((link.cid, child_window));
            }
            offset = child_end;
        }
        if !wanted.is_empty() {
            if self.stack.len() >= MAX_DEPTH {
                return Err(ContentError::Limit(format!("file tree under {cid} is deeper than {MAX_DEPTH} levels")));
            }
            let handle = self.handle.clone();
            let children = stream::iter(wanted)
                .map(move |(child, window)| {
                    let handle = handle.clone();
                    async move { (fetch(handle.reader(), &child).await, window) }
                })
                .buffered(PREFETCH);
            self.stack.push(Box::pin(children));
        }
        let inline_len = inline.len() as u64;
        if start < inline_len && start < end {
            return Ok(Some(inline.slice(start as usize..end.min(inline_len) as usize)));
        }
        Ok(None)
    }
}

/// Writes file, directory tree or symlink `cid` to `dest`, which must not exist (its parent
/// must). Creates every path itself and never writes through an existing one, so a DAG cannot
/// make it write outside `dest`. A file that fails midway is removed; a tree that fails midway
/// is left partial (the error says where).
pub async fn export_to_path(reader: &dyn BlockReader, cid: &Cid, dest: &Path) -> Result<Exported> {
    let mut exported = Exported::default();
    export_node(reader, *cid, dest.to_path_buf(), 0, &mut exported).await?;
    Ok(exported)
}

fn export_node<'a>(
    reader: &'a dyn BlockReader,
    cid: Cid,
    dest: PathBuf,
    depth: usize,
    exported: &'a mut Exported,
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        if depth > MAX_DEPTH {
            return Err(ContentError::Limit(format!("directories nest deeper than {MAX_DEPTH} levels at {cid}")));
        }
        let entries = exported.files + exported.directories + exported.symlinks;
        if entries >= MAX_ENTRIES as u64 {
            return Err(ContentError::Limit(format!("export has more than {MAX_ENTRIES} entries")));
        }
        let block = fetch(reader, &cid).await?;
        let node = decode(&block)?;
        match kind_of(&cid, &node)? {
            NodeKind::File => {
                drop(node);
                exported.bytes += write_file(reader, block, &dest).await?;
                exported.files += 1;
            }
            NodeKind::Directory | NodeKind::HamtDirectory => {
                let links = dir_links(reader, &cid).await?;
                tokio::fs::create_dir(&dest)
                    .await
                    .map_err(|e| ContentError::io(format!("creating directory {}", dest.display()), e))?;
                exported.directories += 1;
                for link in links {
                    export_node(reader, link.cid, dest.join(&link.name), depth + 1, exported).await?;
                }
            }
            NodeKind::Symlink => {
                let target = match node {
                    Node::Pb { data, .. } => data.data.unwrap_or_default(),
                    Node::Raw(bytes) => bytes,
                };
                let target = std::str::from_utf8(&target)
                    .ok()
                    .filter(|t| !t.is_empty() && !t.contains('\0'))
                    .ok_or_else(|| malformed(&cid, "symlink target is empty or not UTF-8"))?;
                tokio::fs::symlink(target, &dest)
                    .await
                    .map_err(|e| ContentError::io(format!("creating symlink {}", dest.display()), e))?;
                exported.symlinks += 1;
            }
        }
        Ok(())
    })
}

/// Streams file `root` (already fetched) into a new file at `dest`; removes it on failure.
async fn write_file(reader: &dyn BlockReader, root: Block, dest: &Path) -> Result<u64> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .await
        .map_err(|e| ContentError::io(format!("creating {}", dest.display()), e))?;
    let written = async {
        let mut bytes = std::pin::pin!(Walk::new(reader, Start::Block(root), 0..u64::MAX).into_stream());
        let mut written = 0u64;
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await.map_err(|e| ContentError::io(format!("writing {}", dest.display()), e))?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(|e| ContentError::io(format!("writing {}", dest.display()), e))?;
        Ok::<_, ContentError>(written)
    }
    .await;
    if written.is_err() {
        drop(file);
        // Best effort: the export's error is what matters, not a failure to tidy up after it.
        let _ = tokio::fs::remove_file(dest).await;
    }
    written
}
