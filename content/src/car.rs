//! CAR v1 (Content Addressable aRchive): streaming read and write, DAG export and import.
//!
//! A CARv1 stream is a varint-length-prefixed dag-cbor header `{roots: [CID], version: 1}`
//! followed by sections, each a varint length then a binary CID then the block's bytes.
//!
//! Both directions stream: [`CarWriter`] writes one block at a time to any [`AsyncWrite`], and
//! [`CarReader`] yields one verified [`Block`] at a time from any [`AsyncRead`], so a DAG is never
//! held in memory whole. Everything read from a CAR is hostile until hashed: every block is
//! verified against its CID, lengths are capped ([`MAX_HEADER_LEN`], [`MAX_SECTION_LEN`]) and
//! every malformed input is an error, never a panic.
//!
//! Why the framing is hand-written: the header is encoded with `serde_ipld_dagcbor`, but the
//! section framing is a few lines of varint code. The maintained Rust CAR crates do not fit:
//! `iroh-car` hands out unverified blocks and treats a stream cut inside a varint as a clean end
//! (so a truncated CAR would look complete), and `rs-car` is synchronous-first with its own error
//! model. Owning the ~50 lines lets every failure name its byte offset and section.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use cid::Cid;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::block::{Block, Codec};
use crate::dag;
use crate::error::{ContentError, Result};
use crate::store::{BlockReader, BlockSink};

/// Largest CAR header accepted, in bytes. Real headers hold a handful of roots (~40 bytes each).
pub const MAX_HEADER_LEN: u64 = 1 << 20;

/// Largest CAR section (CID + block bytes) accepted or written, in bytes. IPFS blocks are at most
/// 2 MiB by convention (bitswap's limit); 4 MiB leaves room without letting a hostile length
/// prefix make us allocate gigabytes.
pub const MAX_SECTION_LEN: u64 = 4 << 20;

/// Default bound on the number of blocks one DAG walk visits.
pub const DEFAULT_MAX_DAG_BLOCKS: u64 = 1 << 20;

/// Default number of blocks fetched ahead of the walk (see [`WalkOptions::prefetch`]).
pub const DEFAULT_PREFETCH: usize = 16;

/// A varint in multiformats is at most 9 bytes (values below 2^63).
const MAX_VARINT_LEN: usize = 9;

/// The CARv1 header as it is encoded in dag-cbor.
///
/// `roots` is optional here only so that a CARv2 pragma (`{version: 2}`, no roots) decodes and
/// can be reported as an unsupported version rather than as a malformed header.
#[derive(Serialize, Deserialize)]
struct CarHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roots: Option<Vec<Cid>>,
    version: u64,
}

/// Encodes `value` as an unsigned LEB128 varint.
fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Totals of a CAR written or read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarStats {
    /// Number of block sections.
    pub blocks: u64,
    /// Bytes of the whole CAR stream, header included.
    pub bytes: u64,
}

/// Writes a CARv1 stream block by block.
///
/// Nothing is buffered beyond the block being written: wrap the writer in a
/// [`tokio::io::BufWriter`] if it is unbuffered and blocks are small.
#[derive(Debug)]
pub struct CarWriter<W> {
    writer: W,
    stats: CarStats,
}

impl<W: AsyncWrite + Unpin> CarWriter<W> {
    /// Writes the header naming `roots` and returns a writer ready for blocks.
    pub async fn new(mut writer: W, roots: &[Cid]) -> Result<CarWriter<W>> {
        let header = CarHeader { roots: Some(roots.to_vec()), version: 1 };
        let encoded =
            serde_ipld_dagcbor::to_vec(&header).map_err(|e| ContentError::Car(format!("encoding header: {e}")))?;
        let mut framed = Vec::with_capacity(encoded.len() + MAX_VARINT_LEN);
        encode_varint(encoded.len() as u64, &mut framed);
        framed.extend_from_slice(&encoded);
        writer.write_all(&framed).await.map_err(|e| ContentError::io("writing CAR header", e))?;
        Ok(CarWriter { writer, stats: CarStats { blocks: 0, bytes: framed.len() as u64 } })
    }

    /// Appends `block` as one section.
    pub async fn write_block(&mut self, block: &Block) -> Result<()> {
        let cid_bytes = block.cid().to_bytes();
        let section_len = (cid_bytes.len() + block.data().len()) as u64;
        if section_len > MAX_SECTION_LEN {
            return Err(ContentError::Limit(format!(
                "block {} makes a {section_len}-byte CAR section, above the {MAX_SECTION_LEN}-byte cap",
                block.cid()
            )));
        }
        let mut prefix = Vec::with_capacity(MAX_VARINT_LEN + cid_bytes.len());
        encode_varint(section_len, &mut prefix);
        prefix.extend_from_slice(&cid_bytes);
        let context = || format!("writing block {} to CAR", block.cid());
        self.writer.write_all(&prefix).await.map_err(|e| ContentError::io(context(), e))?;
        self.writer.write_all(block.data()).await.map_err(|e| ContentError::io(context(), e))?;
        self.stats.blocks += 1;
        self.stats.bytes += prefix.len() as u64 + block.data().len() as u64;
        Ok(())
    }

    /// What has been written so far.
    pub fn stats(&self) -> CarStats {
        self.stats
    }

    /// Flushes and returns the underlying writer.
    pub async fn finish(mut self) -> Result<W> {
        self.writer.flush().await.map_err(|e| ContentError::io("flushing CAR", e))?;
        Ok(self.writer)
    }
}

/// Reads a CARv1 stream, verifying every block against its CID.
pub struct CarReader<R> {
    reader: BufReader<R>,
    roots: Vec<Cid>,
    origin: String,
    offset: u64,
    blocks: u64,
}

impl<R> fmt::Debug for CarReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarReader")
            .field("origin", &self.origin)
            .field("roots", &self.roots)
            .field("offset", &self.offset)
            .field("blocks", &self.blocks)
            .finish()
    }
}

impl<R: AsyncRead + Unpin> CarReader<R> {
    /// Reads and checks the header. `origin` names the stream in errors (a file, a URL).
    pub async fn new(reader: R, origin: impl Into<String>) -> Result<CarReader<R>> {
        let mut car = CarReader {
            reader: BufReader::new(reader),
            roots: Vec::new(),
            origin: origin.into(),
            offset: 0,
            blocks: 0,
        };
        let len = match car.read_varint().await? {
            Some(len) => len,
            None => return Err(car.error("empty stream: no CAR header")),
        };
        if len == 0 || len > MAX_HEADER_LEN {
            return Err(car.error(format!("header length {len} is outside 1..={MAX_HEADER_LEN}")));
        }
        let bytes = car.read_exact(len, "header").await?;
        let header: CarHeader = serde_ipld_dagcbor::from_slice(&bytes)
            .map_err(|e| car.error(format!("header is not a dag-cbor CAR header: {e}")))?;
        if header.version != 1 {
            return Err(ContentError::UnsupportedCarVersion { version: header.version });
        }
        car.roots = header.roots.ok_or_else(|| car.error("CARv1 header has no roots"))?;
        Ok(car)
    }

    /// The roots the header declares.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The name given to the stream.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// What has been read so far.
    pub fn stats(&self) -> CarStats {
        CarStats { blocks: self.blocks, bytes: self.offset }
    }

    /// The next block, verified, or `None` at a clean end of stream.
    pub async fn next_block(&mut self) -> Result<Option<Block>> {
        let section_start = self.offset;
        let len = match self.read_varint().await? {
            Some(len) => len,
            None => return Ok(None),
        };
        let section = self.blocks + 1;
        if len == 0 || len > MAX_SECTION_LEN {
            return Err(self.error(format!(
                "section {section} at byte {section_start}: length {len} is outside 1..={MAX_SECTION_LEN}"
            )));
        }
        let bytes = self.read_exact(len, &format!("section {section}")).await?;
        let mut cursor = std::io::Cursor::new(&bytes[..]);
        let cid = Cid::read_bytes(&mut cursor)
            .map_err(|e| self.error(format!("section {section} at byte {section_start}: bad CID: {e}")))?;
        let data = bytes.slice(cursor.position() as usize..);
        let origin = format!("{} (CAR section {section})", self.origin);
        let block = Block::new_verified(cid, data, &origin)?;
        self.blocks += 1;
        Ok(Some(block))
    }

    /// The remaining blocks as a stream; it ends after the first error.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Block>> {
        futures::stream::try_unfold(
            self,
            |mut car| async move { Ok(car.next_block().await?.map(|block| (block, car))) },
        )
    }

    fn error(&self, reason: impl fmt::Display) -> ContentError {
        ContentError::Car(format!("{}: {reason}", self.origin))
    }

    /// Reads a varint; `None` only if the stream ends before its first byte.
    async fn read_varint(&mut self) -> Result<Option<u64>> {
        let start = self.offset;
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let byte = match self.reader.read_u8().await {
                Ok(byte) => byte,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    if i == 0 {
                        return Ok(None);
                    }
                    return Err(self.error(format!("truncated varint at byte {start}")));
                }
                Err(e) => return Err(ContentError::io(format!("reading {}", self.origin), e)),
            };
            self.offset += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                // Multiformats varints must be minimal: a trailing zero group is a second spelling.
                if byte == 0 && i > 0 {
                    return Err(self.error(format!("non-minimal varint at byte {start}")));
                }
                return Ok(Some(value));
            }
        }
        Err(self.error(format!("varint at byte {start} is longer than {MAX_VARINT_LEN} bytes")))
    }

    async fn read_exact(&mut self, len: u64, what: &str) -> Result<Bytes> {
        let start = self.offset;
        // `len` is capped by the callers (at most MAX_SECTION_LEN), so this allocation is bounded.
        let mut buf = vec![0u8; len as usize];
        match self.reader.read_exact(&mut buf).await {
            Ok(_) => {
                self.offset += len;
                Ok(Bytes::from(buf))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(self.error(format!("truncated {what}: {len} bytes announced at byte {start}, stream ended first")))
            }
            Err(e) => Err(ContentError::io(format!("reading {}", self.origin), e)),
        }
    }
}

/// Which part of a DAG to take, as the trustless gateway's `dag-scope` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DagScope {
    /// Only the root block.
    Block,
    /// The root entity: for a UnixFS file all its blocks; for a directory only the blocks needed
    /// to enumerate it (the directory node, and every HAMT shard node of a sharded directory),
    /// not its entries; for anything else the root block.
    Entity,
    /// Every block reachable from the root.
    #[default]
    All,
}

impl DagScope {
    /// The parameter value (`block`, `entity`, `all`).
    pub fn as_str(self) -> &'static str {
        match self {
            DagScope::Block => "block",
            DagScope::Entity => "entity",
            DagScope::All => "all",
        }
    }
}

impl fmt::Display for DagScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `dag-scope` value that is not `block`, `entity` or `all`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dag-scope {0:?} (expected block, entity or all)")]
pub struct UnknownDagScope(pub String);

impl FromStr for DagScope {
    type Err = UnknownDagScope;

    fn from_str(s: &str) -> Result<DagScope, UnknownDagScope> {
        match s {
            "block" => Ok(DagScope::Block),
            "entity" => Ok(DagScope::Entity),
            "all" => Ok(DagScope::All),
            other => Err(UnknownDagScope(other.to_string())),
        }
    }
}

/// Bounds and tuning of a DAG walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    /// The walk fails with [`ContentError::Limit`] rather than visit more blocks than this.
    pub max_blocks: u64,
    /// How many blocks ahead of the walk to fetch concurrently. Over HTTP this hides round-trip
    /// latency; it also bounds the memory held in fetched-but-not-yet-emitted blocks.
    pub prefetch: usize,
}

impl Default for WalkOptions {
    fn default() -> WalkOptions {
        WalkOptions { max_blocks: DEFAULT_MAX_DAG_BLOCKS, prefetch: DEFAULT_PREFETCH }
    }
}

/// What to do with a node's links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Emit the node only.
    Nothing,
    /// Emit the node and everything below it.
    Everything,
    /// Emit the node and what [`DagScope::Entity`] asks for below it.
    Entity,
}

/// UnixFS node types (the `Type` enum of unixfs.proto) that matter for `dag-scope=entity`.
const UNIXFS_RAW: i32 = 0;
const UNIXFS_FILE: i32 = 2;
const UNIXFS_HAMT_SHARD: i32 = 5;

/// The two fields of a UnixFS `Data` message that decide what `dag-scope=entity` covers.
/// prost skips the fields not declared here.
#[derive(Clone, PartialEq, prost::Message)]
struct UnixFsKind {
    #[prost(int32, required, tag = "1")]
    kind: i32,
    #[prost(uint64, optional, tag = "6")]
    fanout: Option<u64>,
}

/// The links of `block` to walk under `follow`, each with how to walk it.
fn links_to_follow(block: &Block, follow: Follow) -> Result<Vec<(Cid, Follow)>> {
    match follow {
        Follow::Nothing => Ok(Vec::new()),
        Follow::Everything => Ok(dag::links(block)?.into_iter().map(|cid| (cid, Follow::Everything)).collect()),
        Follow::Entity => entity_links(block),
    }
}

fn entity_links(block: &Block) -> Result<Vec<(Cid, Follow)>> {
    if Codec::of(block.cid())? != Codec::DagPb {
        return Ok(Vec::new());
    }
    let node = dag::decode_pb(block)?;
    let Some(kind) = node.data.as_ref().and_then(|d| <UnixFsKind as prost::Message>::decode(d.clone()).ok()) else {
        // dag-pb without UnixFS data is not a UnixFS entity: the entity is the block itself.
        return Ok(Vec::new());
    };
    match kind.kind {
        UNIXFS_FILE | UNIXFS_RAW => Ok(node.links.into_iter().map(|l| (l.cid, Follow::Everything)).collect()),
        UNIXFS_HAMT_SHARD => {
            // In a HAMT shard a link named by the bucket index alone (hex, padded to the width of
            // `fanout - 1`) points at a sub-shard; longer names are entries (index + entry name).
            let fanout = kind.fanout.unwrap_or(256).max(2);
            let width = format!("{:X}", fanout - 1).len();
            Ok(node
                .links
                .into_iter()
                .filter(|l| l.name.as_deref().is_some_and(|n| n.len() == width))
                .map(|l| (l.cid, Follow::Entity))
                .collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// Walks a DAG depth-first, pre-order, links in order, each block once — the order of the
/// trustless gateway's `order=dfs; dups=n` CARs — fetching up to [`WalkOptions::prefetch`]
/// upcoming blocks concurrently.
pub struct DagWalker<'a> {
    reader: &'a dyn BlockReader,
    stack: Vec<(Cid, Follow)>,
    visited: HashSet<Cid>,
    in_flight: FuturesUnordered<BoxFuture<'a, (Cid, Result<Block>)>>,
    pending: HashSet<Cid>,
    ready: HashMap<Cid, Result<Block>>,
    options: WalkOptions,
    emitted: u64,
    root: Cid,
}

impl fmt::Debug for DagWalker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DagWalker")
            .field("root", &self.root)
            .field("emitted", &self.emitted)
            .field("stack", &self.stack.len())
            .field("in_flight", &self.pending.len())
            .finish()
    }
}

impl<'a> DagWalker<'a> {
    /// A walk of `scope` under `root`, reading through `reader`.
    pub fn new(reader: &'a dyn BlockReader, root: Cid, scope: DagScope, options: WalkOptions) -> Self {
        let follow = match scope {
            DagScope::Block => Follow::Nothing,
            DagScope::Entity => Follow::Entity,
            DagScope::All => Follow::Everything,
        };
        DagWalker {
            reader,
            stack: vec![(root, follow)],
            visited: HashSet::new(),
            in_flight: FuturesUnordered::new(),
            pending: HashSet::new(),
            ready: HashMap::new(),
            options,
            emitted: 0,
            root,
        }
    }

    /// Number of blocks emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The next block in walk order, or `None` when the walk is done.
    pub async fn next_block(&mut self) -> Result<Option<Block>> {
        while let Some((cid, follow)) = self.stack.pop() {
            if !self.visited.insert(cid) {
                continue;
            }
            if self.emitted >= self.options.max_blocks {
                return Err(ContentError::Limit(format!(
                    "DAG {} has more than {} blocks",
                    self.root, self.options.max_blocks
                )));
            }
            let block = self.take(cid).await?;
            let links = links_to_follow(&block, follow)?;
            self.stack.extend(links.into_iter().rev());
            self.emitted += 1;
            self.prefetch();
            return Ok(Some(block));
        }
        Ok(None)
    }

    fn start_fetch(&mut self, cid: Cid) {
        let reader = self.reader;
        self.pending.insert(cid);
        self.in_flight.push(Box::pin(async move {
            let result = reader.get(&cid).await;
            (cid, result)
        }));
    }

    async fn take(&mut self, cid: Cid) -> Result<Block> {
        if let Some(result) = self.ready.remove(&cid) {
            return result;
        }
        if !self.pending.contains(&cid) {
            self.start_fetch(cid);
        }
        while let Some((done, result)) = self.in_flight.next().await {
            self.pending.remove(&done);
            if done == cid {
                return result;
            }
            self.ready.insert(done, result);
        }
        // `cid` was in flight, so the loop above returns; reading directly keeps this total.
        self.reader.get(&cid).await
    }

    /// Starts fetching the blocks next in line, keeping at most `prefetch` fetched ahead.
    fn prefetch(&mut self) {
        let window = self.options.prefetch;
        // Only the top of the stack is walked next; scanning deeper would fetch too early.
        let scan = self.stack.len().saturating_sub(window.saturating_mul(4));
        let upcoming: Vec<Cid> = self.stack[scan..].iter().rev().map(|(cid, _)| *cid).collect();
        for cid in upcoming {
            if self.pending.len() + self.ready.len() >= window {
                break;
            }
            if !self.visited.contains(&cid) && !self.pending.contains(&cid) && !self.ready.contains_key(&cid) {
                self.start_fetch(cid);
            }
        }
    }
}

/// Writes the DAG under `root` (limited to `scope`) to `writer` as a CARv1 with `root` as its
/// only root, in the trustless gateway's order (`order=dfs; dups=n`). Every block is read through
/// `reader`, so it is verified before it is written.
pub async fn export_car<W: AsyncWrite + Unpin>(
    reader: &dyn BlockReader,
    root: &Cid,
    writer: W,
    scope: DagScope,
    options: WalkOptions,
) -> Result<CarStats> {
    let mut walker = DagWalker::new(reader, *root, scope, options);
    let mut car = CarWriter::new(writer, &[*root]).await?;
    while let Some(block) = walker.next_block().await? {
        car.write_block(&block).await?;
    }
    let stats = car.stats();
    car.finish().await?;
    Ok(stats)
}

/// What [`import_car`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarImport {
    /// The roots the CAR's header declares.
    pub roots: Vec<Cid>,
    /// Blocks and bytes read.
    pub stats: CarStats,
}

/// Reads a CARv1 from `reader`, verifies every block, writes each to `sink`, and checks that the
/// CAR was complete: every block reachable from its roots was in it.
///
/// Blocks may come in any order (ipfs-car, for one, writes children before parents). `origin`
/// names the stream in errors.
pub async fn import_car<R: AsyncRead + Unpin>(reader: R, sink: &dyn BlockSink, origin: &str) -> Result<CarImport> {
    let car = CarReader::new(reader, origin).await?;
    let roots = car.roots().to_vec();
    import_blocks(car, sink, &roots).await
}

/// Like [`import_car`], but checks completeness from `roots` instead of the header's roots —
/// for a client that asked for a specific DAG and must not trust the header to name it.
pub(crate) async fn import_blocks<R: AsyncRead + Unpin>(
    mut car: CarReader<R>,
    sink: &dyn BlockSink,
    roots: &[Cid],
) -> Result<CarImport> {
    // Links of every block seen, keyed by multihash: a CIDv0 link and a CIDv1 dag-pb section
    // name the same bytes. Only CIDs are kept, so memory is ~100 bytes per link, not per byte.
    let mut links: HashMap<Vec<u8>, Vec<Cid>> = HashMap::new();
    while let Some(block) = car.next_block().await? {
        let key = block.cid().hash().to_bytes();
        if let std::collections::hash_map::Entry::Vacant(slot) = links.entry(key) {
            slot.insert(dag::links(&block)?);
        }
        sink.put(&block).await?;
    }
    for root in roots {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            let key = cid.hash().to_bytes();
            if !seen.insert(key.clone()) {
                continue;
            }
            match links.get(&key) {
                Some(children) => stack.extend(children.iter().copied()),
                None => {
                    return Err(ContentError::Incomplete {
                        root: *root,
                        missing: cid,
                        origin: car.origin().to_string(),
                    })
                }
            }
        }
    }
    Ok(CarImport { roots: car.roots().to_vec(), stats: car.stats() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_match_the_reference_encoding() {
        // The header go-car and ipfs-car write for one CIDv1 root: a2 65 "roots" 81 d8 2a 58 25 00
        // <cid> 67 "version" 01 (map of 2, keys in dag-cbor's length-first order).
        let root = Block::encode(Codec::Raw, &b"x"[..]);
        let encoded = serde_ipld_dagcbor::to_vec(&CarHeader { roots: Some(vec![*root.cid()]), version: 1 }).unwrap();
        let mut expected = vec![0xa2, 0x65];
        expected.extend_from_slice(b"roots");
        expected.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00]);
        expected.extend_from_slice(&root.cid().to_bytes());
        expected.push(0x67);
        expected.extend_from_slice(b"version");
        expected.push(0x01);
        assert_eq!(encoded, expected);
    }

    #[test]
    fn varints_encode_as_leb128() {
        let mut out = Vec::new();
        encode_varint(300, &mut out);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        encode_varint(0x7f, &mut out);
        assert_eq!(out, [0x7f]);
    }
}
