//! The content layer's error type.

use cid::Cid;

/// Everything that can go wrong while naming, storing, moving or reading content.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A string is not a CID.
    #[error("invalid CID {input:?}: {reason}")]
    InvalidCid {
        /// The text that was given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A CID uses a codec or hash function this layer does not handle.
    #[error("unsupported CID {cid}: {reason}")]
    Unsupported {
        /// The CID.
        cid: Cid,
        /// What is not supported.
        reason: String,
    },
    /// Bytes said to be block `cid` hash to something else.
    #[error("block {cid} failed verification: its bytes hash to a different digest (from {origin})")]
    HashMismatch {
        /// The CID that was asked for.
        cid: Cid,
        /// Where the bytes came from (a source's name).
        origin: String,
    },
    /// No configured source has the block.
    #[error("block {cid} not found ({detail})")]
    NotFound {
        /// The CID that was asked for.
        cid: Cid,
        /// What was tried.
        detail: String,
    },
    /// A block that decodes as neither valid dag-pb nor valid UnixFS, or a DAG that breaks the rules.
    #[error("malformed DAG node {cid}: {reason}")]
    Malformed {
        /// The node at fault.
        cid: Cid,
        /// What is wrong with it.
        reason: String,
    },
    /// A CAR stream that is not valid CARv1.
    #[error("invalid CAR: {0}")]
    Car(String),
    /// A CAR stream whose header names a version other than 1 (CARv2 included).
    #[error("unsupported CAR version {version}: only CARv1 is supported")]
    UnsupportedCarVersion {
        /// The version the header declares.
        version: u64,
    },
    /// A CAR or DAG transfer that ended without every block reachable from its root.
    #[error("DAG {root} from {origin} is incomplete: block {missing} is missing")]
    Incomplete {
        /// The root whose DAG was being transferred.
        root: Cid,
        /// A reachable block that never arrived.
        missing: Cid,
        /// Where the DAG came from.
        origin: String,
    },
    /// No source delivered a verified block, and at least one failed rather than cleanly
    /// answering "not here" (transport error, timeout, bytes that failed verification).
    #[error("block {cid} unavailable: {detail}")]
    Unavailable {
        /// The CID that was asked for.
        cid: Cid,
        /// Every source tried and what it did.
        detail: String,
    },
    /// A source address that is not a usable URL.
    #[error("invalid source URL {url:?}: {reason}")]
    InvalidUrl {
        /// The text that was given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A path inside a directory that does not exist.
    #[error("path {path:?} not found under {root}")]
    PathNotFound {
        /// The directory the path was resolved from.
        root: Cid,
        /// The path.
        path: String,
    },
    /// A UnixFS node of one kind where another was needed (`cat` of a directory, a path through a file).
    #[error("{cid} is a {found}, not a {expected}")]
    WrongKind {
        /// The node.
        cid: Cid,
        /// What the operation needed.
        expected: &'static str,
        /// What the node is.
        found: &'static str,
    },
    /// A caller-supplied value that cannot be used: a profile name, a file name, a path.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What the value is (`file name`, `path`, …), with the offending value where useful.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A size or count beyond what this layer accepts.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// A source failed in transport (HTTP error, timeout, connection refused).
    #[error("source {origin} failed for {cid}: {reason}")]
    Source {
        /// The CID that was asked for.
        cid: Cid,
        /// The source's name.
        origin: String,
        /// What happened.
        reason: String,
    },
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ContentError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ContentError::Io { context: context.into(), source }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ContentError> = std::result::Result<T, E>;
