//! Verified block sources: IPFS trustless gateways over HTTP, and a chain of sources that
//! verifies every block, falls through liars and slow peers, and caches what it verified.
//!
//! - [`HttpGatewaySource`]: a [`BlockSource`] speaking the trustless gateway protocol
//!   (`GET /ipfs/{cid}?format=raw`), plus whole-DAG fetch as a CAR ([`HttpGatewaySource::fetch_dag`]).
//! - [`SourceChain`]: the [`BlockReader`] the rest of Shoal reads through.
//! - [`copy_dag`]: walks a DAG through any reader (fetching ahead concurrently) into a sink.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cid::Cid;
use futures::TryStreamExt;
use tokio::io::AsyncRead;
use tokio::time::Instant;

use crate::block::Block;
use crate::car::{self, CarImport, CarReader, DagScope, DagWalker, WalkOptions, MAX_SECTION_LEN};
use crate::error::{ContentError, Result};
use crate::store::{BlockReader, BlockSink, BlockSource, BlockStore};

/// Media type of a single raw block in the trustless gateway protocol.
pub const MEDIA_TYPE_RAW: &str = "application/vnd.ipld.raw";
/// Media type of a CAR in the trustless gateway protocol.
pub const MEDIA_TYPE_CAR: &str = "application/vnd.ipld.car";

/// Default time allowed for one single-block request.
pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed for one whole-DAG CAR request, body included.
pub const DEFAULT_CAR_TIMEOUT: Duration = Duration::from_secs(600);

/// A CAR being read from an HTTP response body.
pub type HttpCarReader = CarReader<Pin<Box<dyn AsyncRead + Send>>>;

/// A trustless IPFS gateway reached over HTTP(S).
///
/// What it returns is unverified, like every [`BlockSource`]; read through a [`SourceChain`] or
/// [`crate::store::get_verified`].
#[derive(Debug, Clone)]
pub struct HttpGatewaySource {
    base: String,
    client: reqwest::Client,
    block_timeout: Duration,
    car_timeout: Duration,
}

impl HttpGatewaySource {
    /// A source for the gateway at `base_url` (`http://127.0.0.1:8080`; a trailing `/` is fine).
    pub fn new(base_url: &str) -> Result<HttpGatewaySource> {
        let parsed = reqwest::Url::parse(base_url)
            .map_err(|e| ContentError::InvalidUrl { url: base_url.to_string(), reason: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ContentError::InvalidUrl {
                url: base_url.to_string(),
                reason: format!("scheme {:?} is not http or https", parsed.scheme()),
            });
        }
        Ok(HttpGatewaySource {
            base: base_url.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            block_timeout: DEFAULT_BLOCK_TIMEOUT,
            car_timeout: DEFAULT_CAR_TIMEOUT,
        })
    }

    /// Uses `client` (for shared connection pools or custom TLS) instead of a default one.
    pub fn with_client(mut self, client: reqwest::Client) -> HttpGatewaySource {
        self.client = client;
        self
    }

    /// Time allowed for one single-block request, from connecting to the last body byte.
    pub fn with_block_timeout(mut self, timeout: Duration) -> HttpGatewaySource {
        self.block_timeout = timeout;
        self
    }

    /// Time allowed for one whole-DAG CAR request, from connecting to the last body byte.
    pub fn with_car_timeout(mut self, timeout: Duration) -> HttpGatewaySource {
        self.car_timeout = timeout;
        self
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn source_error(&self, cid: &Cid, reason: impl fmt::Display) -> ContentError {
        ContentError::Source { cid: *cid, origin: self.base.clone(), reason: reason.to_string() }
    }

    /// Asks for the DAG under `root` (limited to `scope`) as a CAR; `Ok(None)` on 404.
    ///
    /// The reader verifies each block as it is read, but only the caller can tell whether the
    /// stream was complete: use [`HttpGatewaySource::fetch_dag`] for that.
    pub async fn fetch_car(&self, root: &Cid, scope: DagScope) -> Result<Option<HttpCarReader>> {
        // Both the Accept parameters and `format=car` are sent: `format` wins at gateways that
        // honour it, and Accept carries the order and duplicate preferences.
        let url = format!("{}/ipfs/{root}?format=car&dag-scope={scope}", self.base);
        let response = self
            .client
            .get(&url)
            .header(http::header::ACCEPT, format!("{MEDIA_TYPE_CAR}; version=1; order=dfs; dups=n"))
            .timeout(self.car_timeout)
            .send()
            .await
            .map_err(|e| self.source_error(root, describe_reqwest(&e)))?;
        match response.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(self.source_error(root, format!("HTTP {status} for {url}"))),
        }
        let body = response.bytes_stream().map_err(|e| std::io::Error::other(describe_reqwest(&e)));
        let reader: Pin<Box<dyn AsyncRead + Send>> = Box::pin(tokio_util::io::StreamReader::new(body));
        Ok(Some(CarReader::new(reader, url).await?))
    }

    /// Fetches the whole DAG under `root` as one CAR (`dag-scope=all`), verifies every block,
    /// writes each to `sink`, and checks that every block reachable from `root` arrived — a
    /// gateway may end a 200 response early, or send another DAG than the one asked for.
    pub async fn fetch_dag(&self, root: &Cid, sink: &dyn BlockSink) -> Result<CarImport> {
        let car = self.fetch_car(root, DagScope::All).await?.ok_or_else(|| ContentError::NotFound {
            cid: *root,
            detail: format!("{} answered 404 for the DAG", self.base),
        })?;
        car::import_blocks(car, sink, &[*root]).await
    }
}

#[async_trait]
impl BlockSource for HttpGatewaySource {
    fn name(&self) -> &str {
        &self.base
    }

    async fn fetch(&self, cid: &Cid) -> Result<Option<Bytes>> {
        let url = format!("{}/ipfs/{cid}?format=raw", self.base);
        let response = self
            .client
            .get(&url)
            .header(http::header::ACCEPT, MEDIA_TYPE_RAW)
            .timeout(self.block_timeout)
            .send()
            .await
            .map_err(|e| self.source_error(cid, describe_reqwest(&e)))?;
        match response.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(self.source_error(cid, format!("HTTP {status} for {url}"))),
        }
        if response.content_length().is_some_and(|len| len > MAX_SECTION_LEN) {
            return Err(self.source_error(cid, format!("block larger than {MAX_SECTION_LEN} bytes")));
        }
        // Read chunk by chunk so a lying Content-Length (or none) cannot make us buffer more
        // than one block's worth.
        let mut body = BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.source_error(cid, describe_reqwest(&e)))? {
            if (body.len() + chunk.len()) as u64 > MAX_SECTION_LEN {
                return Err(self.source_error(cid, format!("block larger than {MAX_SECTION_LEN} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body.freeze()))
    }
}

/// reqwest's `Display` omits the cause ("error sending request"); the chain says what happened.
fn describe_reqwest(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if error.is_timeout() { format!("timed out: {error}") } else { error.to_string() };
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// What one source did when asked for a block.
#[derive(Debug)]
pub enum AttemptOutcome {
    /// It answered that it has no such block.
    Missing,
    /// It failed: transport error, or bytes that did not match the CID
    /// ([`ContentError::HashMismatch`]).
    Failed(ContentError),
    /// It did not answer within the per-source timeout.
    TimedOut(Duration),
    /// The chain's total deadline passed while waiting for it.
    DeadlineReached,
}

/// One source asked for one block, and what happened.
#[derive(Debug)]
pub struct SourceAttempt {
    /// The source's name.
    pub source: String,
    /// What it did.
    pub outcome: AttemptOutcome,
}

impl fmt::Display for SourceAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            AttemptOutcome::Missing => write!(f, "{}: not found", self.source),
            AttemptOutcome::Failed(e) => write!(f, "{}: {e}", self.source),
            AttemptOutcome::TimedOut(after) => {
                write!(f, "{}: no answer within {after:?}", self.source)
            }
            AttemptOutcome::DeadlineReached => write!(f, "{}: total deadline reached", self.source),
        }
    }
}

/// A block from a [`SourceChain`], with where it came from and what failed before.
#[derive(Debug)]
pub struct Fetched {
    /// The verified block.
    pub block: Block,
    /// The name of the source (or cache) that delivered it.
    pub source: String,
    /// Sources tried before, in order, that did not deliver it.
    pub failed: Vec<SourceAttempt>,
}

/// Default time one source gets to answer for one block.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads blocks from an ordered list of sources, verifying every block.
///
/// For each block it asks the local cache first (if any), then each source in turn. A source that
/// answers with bytes that do not hash to the CID is logged (naming the CID and the source),
/// recorded, and skipped: the next source is tried. Verified blocks from sources are written
/// through to the cache. Each source gets [`SourceChain::with_source_timeout`] to answer, and the
/// whole lookup [`SourceChain::with_deadline`] if set.
#[derive(Clone)]
pub struct SourceChain {
    sources: Vec<Arc<dyn BlockSource>>,
    cache: Option<Arc<dyn BlockStore>>,
    source_timeout: Duration,
    deadline: Option<Duration>,
}

impl fmt::Debug for SourceChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceChain")
            .field("sources", &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>())
            .field("cache", &self.cache.as_ref().map(|c| c.name()))
            .field("source_timeout", &self.source_timeout)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl SourceChain {
    /// A chain over `sources`, tried in order, with no cache and no total deadline.
    pub fn new(sources: Vec<Arc<dyn BlockSource>>) -> SourceChain {
        SourceChain { sources, cache: None, source_timeout: DEFAULT_SOURCE_TIMEOUT, deadline: None }
    }

    /// Reads `cache` before the sources and writes verified blocks into it.
    pub fn with_cache(mut self, cache: Arc<dyn BlockStore>) -> SourceChain {
        self.cache = Some(cache);
        self
    }

    /// Time each source gets to answer for one block.
    pub fn with_source_timeout(mut self, timeout: Duration) -> SourceChain {
        self.source_timeout = timeout;
        self
    }

    /// Total time one block lookup may take across all sources; past it the lookup fails with
    /// [`ContentError::Unavailable`] naming the CID and what was tried.
    pub fn with_deadline(mut self, deadline: Duration) -> SourceChain {
        self.deadline = Some(deadline);
        self
    }

    /// The names of the sources, in the order they are tried (cache excluded).
    pub fn source_names(&self) -> Vec<&str> {
        self.sources.iter().map(|s| s.name()).collect()
    }

    /// The verified block `cid`, with where it came from and which sources failed first.
    pub async fn fetch_traced(&self, cid: &Cid) -> Result<Fetched> {
        if let Some(block) = Block::inline(cid) {
            return Ok(Fetched { block, source: "the CID itself (identity hash)".into(), failed: Vec::new() });
        }
        let deadline = self.deadline.map(|d| Instant::now() + d);
        let mut failed = Vec::new();
        let candidates = self.cache.iter().map(|c| (c.clone() as Arc<dyn BlockSource>, true));
        let candidates = candidates.chain(self.sources.iter().map(|s| (s.clone(), false)));
        for (source, is_cache) in candidates {
            let name = source.name().to_string();
            let (limit, deadline_binds) = match deadline {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    (left.min(self.source_timeout), left <= self.source_timeout)
                }
                None => (self.source_timeout, false),
            };
            let outcome = match tokio::time::timeout(limit, source.fetch(cid)).await {
                Err(_) if deadline_binds => {
                    failed.push(SourceAttempt { source: name, outcome: AttemptOutcome::DeadlineReached });
                    break;
                }
                Err(_) => AttemptOutcome::TimedOut(limit),
                Ok(Ok(None)) => AttemptOutcome::Missing,
                Ok(Err(e)) => AttemptOutcome::Failed(e),
                Ok(Ok(Some(bytes))) => match Block::new_verified(*cid, bytes, &name) {
                    Ok(block) => {
                        if !is_cache {
                            self.write_through(&block).await;
                        }
                        return Ok(Fetched { block, source: name, failed });
                    }
                    Err(e) => {
                        tracing::warn!(%cid, source = %name, "block failed verification; trying the next source");
                        AttemptOutcome::Failed(e)
                    }
                },
            };
            failed.push(SourceAttempt { source: name, outcome });
        }
        let detail = if failed.is_empty() {
            "no sources configured".to_string()
        } else {
            format!("tried {}", failed.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("; "))
        };
        if failed.iter().all(|a| matches!(a.outcome, AttemptOutcome::Missing)) {
            Err(ContentError::NotFound { cid: *cid, detail })
        } else {
            Err(ContentError::Unavailable { cid: *cid, detail })
        }
    }

    async fn write_through(&self, block: &Block) {
        if let Some(cache) = &self.cache {
            // A failing cache costs speed, not correctness: the block is already verified.
            if let Err(e) = cache.put(block).await {
                tracing::warn!(cid = %block.cid(), cache = %cache.name(), error = %e, "could not cache block");
            }
        }
    }
}

#[async_trait]
impl BlockReader for SourceChain {
    async fn get(&self, cid: &Cid) -> Result<Block> {
        Ok(self.fetch_traced(cid).await?.block)
    }
}

/// Walks the DAG under `root` (limited to `scope`) through `reader` — fetching up to
/// `options.prefetch` blocks ahead concurrently — and writes every block to `sink`.
/// Returns the number of blocks copied.
pub async fn copy_dag(
    reader: &dyn BlockReader,
    root: &Cid,
    sink: &dyn BlockSink,
    scope: DagScope,
    options: WalkOptions,
) -> Result<u64> {
    let mut walker = DagWalker::new(reader, *root, scope, options);
    while let Some(block) = walker.next_block().await? {
        sink.put(&block).await?;
    }
    Ok(walker.emitted())
}
