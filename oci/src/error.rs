//! Errors of reading and unpacking images ([`ImageError`]) and of running a
//! container ([`ContainerError`]).

use std::io;
use std::path::PathBuf;

use shoal_runtime::GuestFailure;

/// Why an OCI image layout could not be read, verified or unpacked. Every
/// case is about the image (the user's input) except [`ImageError::Io`] on the
/// cache, which is about the host.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The directory is not an OCI image layout (no `oci-layout` file, an
    /// unsupported layout version, no `index.json`).
    #[error("{path} is not an OCI image layout: {reason}")]
    NotALayout {
        /// The directory that was opened.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A JSON document (index, manifest, config) does not parse as its OCI type.
    #[error("invalid {what} {digest}: {reason}")]
    InvalidDocument {
        /// Which document: `index.json`, `manifest`, `config`.
        what: &'static str,
        /// Its digest, or its file name for `index.json`.
        digest: String,
        /// The parser's message.
        reason: String,
    },
    /// The index names no manifest this host can run (none, or none for
    /// linux on this architecture), or a descriptor has an unsupported media type.
    #[error("unsupported image: {reason}")]
    Unsupported {
        /// What is not supported.
        reason: String,
    },
    /// A descriptor's digest is not `sha256:` and 64 lowercase hex digits.
    #[error("invalid digest {digest:?}: only sha256 digests of 64 lowercase hex digits are accepted")]
    InvalidDigest {
        /// The digest as written in the document.
        digest: String,
    },
    /// A blob named by a descriptor is absent from `blobs/sha256`.
    #[error("blob {digest} is missing from the layout")]
    MissingBlob {
        /// The digest of the missing blob.
        digest: String,
    },
    /// A blob's content does not hash to the digest that names it.
    #[error("{what} blob {digest} does not match its digest: its content hashes to sha256:{actual}")]
    DigestMismatch {
        /// Which blob: `manifest`, `config`, `layer`.
        what: &'static str,
        /// The digest the descriptor names.
        digest: String,
        /// The sha256 of what the file holds.
        actual: String,
    },
    /// A blob's length differs from the descriptor's size.
    #[error("{what} blob {digest} is {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        /// Which blob: `manifest`, `config`, `layer`.
        what: &'static str,
        /// The digest of the blob.
        digest: String,
        /// The size the descriptor names.
        expected: u64,
        /// The size of the file.
        actual: u64,
    },
    /// A layer holds an entry that could escape or subvert the root
    /// filesystem (absolute or `..` path, device node, link leaving the
    /// root) or that cannot be unpacked.
    #[error("layer {digest}: refused entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The layer's digest.
        digest: String,
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A layer is not a readable tar (or gzip) archive.
    #[error("layer {digest} is not a valid archive")]
    BadArchive {
        /// The layer's digest.
        digest: String,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// Reading the layout or writing the layer cache failed.
    #[error("I/O error while {context} ({path})")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { context, path, source }
    }

    /// Whether the error is the image's fault (a bad or unsupported image)
    /// rather than the host's; a job failing this way is an invalid program.
    pub fn is_invalid_image(&self) -> bool {
        !matches!(self, ImageError::Io { .. })
    }
}

/// Why [`OciRuntime::run`](crate::OciRuntime::run) did not produce an
/// [`Outcome`](shoal_runtime::Outcome). Mirrors
/// [`shoal_runtime::RunError`]: only [`ContainerError::Guest`] and
/// [`ContainerError::InvalidProgram`] are verdicts about the job itself.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The image cannot be run: a bad image, or a command that does not
    /// exist or cannot be executed in it. The job's `invalid_program`.
    #[error("invalid program: {reason}")]
    InvalidProgram {
        /// What is wrong, with runc's message for a command that failed to start.
        reason: String,
    },
    /// The invocation is malformed (relative or reserved mount path, a
    /// mount that does not exist, a NUL byte in an argument...). Nothing was run.
    #[error("invalid invocation: {reason}")]
    InvalidInvocation {
        /// What is wrong with the invocation.
        reason: String,
    },
    /// The container ran and failed (memory limit, timeout, output limit,
    /// killed by a signal); see [`GuestFailure::kind`]. `fuel_consumed` is
    /// always 0: containers are not metered in fuel.
    #[error(transparent)]
    Guest(Box<GuestFailure>),
    /// The host failed (runc missing or failing, a mount, I/O on the state
    /// directory). Not the job's fault; retrying may succeed.
    #[error("host error while {context}: {message}")]
    Host {
        /// What the runtime was doing.
        context: &'static str,
        /// The underlying error, with runc's stderr when runc failed.
        message: String,
    },
}

impl ContainerError {
    pub(crate) fn host(context: &'static str, error: impl std::fmt::Display) -> Self {
        ContainerError::Host { context, message: error.to_string() }
    }

    /// The guest failure, if this error is one.
    pub fn guest_failure(&self) -> Option<&GuestFailure> {
        match self {
            ContainerError::Guest(failure) => Some(failure),
            _ => None,
        }
    }
}

impl From<ImageError> for ContainerError {
    fn from(error: ImageError) -> Self {
        if error.is_invalid_image() {
            ContainerError::InvalidProgram { reason: error.to_string() }
        } else {
            ContainerError::host("preparing the image", error)
        }
    }
}
