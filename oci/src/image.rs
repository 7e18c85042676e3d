//! Reading an OCI image layout: `oci-layout`, `index.json`, then the
//! manifest, config and layer descriptors, every blob checked against its
//! sha256 digest and size before it is trusted.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, OciLayout};
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;

/// Largest manifest, index or config read into memory. Real ones are a few
/// KiB; the cap keeps a hostile image from exhausting the worker's memory.
const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

const MANIFEST_MEDIA_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
const INDEX_MEDIA_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// A sha256 blob digest, validated: `sha256:` and 64 lowercase hex digits, so
/// that it is safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobDigest(String);

impl BlobDigest {
    /// Parses `sha256:<64 lowercase hex>`; any other algorithm or form is refused.
    pub fn parse(digest: &str) -> Result<Self, ImageError> {
        match digest.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                Ok(BlobDigest(hex.to_owned()))
            }
            _ => Err(ImageError::InvalidDigest { digest: digest.to_owned() }),
        }
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar archive.
    None,
    /// A gzip-compressed tar archive.
    Gzip,
}

/// One layer of an image, in order from the base up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The digest of the (compressed) blob; the layer cache's key.
    pub digest: BlobDigest,
    /// The blob's size according to the manifest.
    pub size: u64,
    /// How the blob is compressed.
    pub compression: Compression,
}

/// An OCI image layout whose index, manifest and config were read and
/// verified. Layer blobs are verified as they are unpacked
/// ([`LayerCache::unpack`](crate::LayerCache::unpack)).
#[derive(Debug, Clone)]
pub struct Image {
    layout: PathBuf,
    manifest_digest: BlobDigest,
    config: ImageConfiguration,
    layers: Vec<Layer>,
}

impl Image {
    /// Opens the image layout at `layout`: checks `oci-layout`, picks the
    /// manifest from `index.json` (the only one, or the one for this host's
    /// linux architecture;
    /// nested indexes are followed) and reads the manifest and config, each
    /// checked against its descriptor's digest and size.
    pub fn open(layout: impl AsRef<Path>) -> Result<Image, ImageError> {
        let layout = layout.as_ref().to_path_buf();
        let not_a_layout = |reason: &str| ImageError::NotALayout { path: layout.clone(), reason: reason.to_owned() };
        let marker = layout.join("oci-layout");
        if !marker.is_file() {
            return Err(not_a_layout("no `oci-layout` file"));
        }
        let marker: OciLayout = OciLayout::from_reader(read_limited(&marker, "oci-layout")?.as_slice())
            .map_err(|e| not_a_layout(&format!("unreadable `oci-layout`: {e}")))?;
        if !marker.image_layout_version().starts_with("1.") {
            return Err(not_a_layout(&format!("unsupported layout version {}", marker.image_layout_version())));
        }
        let index_path = layout.join("index.json");
        if !index_path.is_file() {
            return Err(not_a_layout("no `index.json` file"));
        }
        let index = ImageIndex::from_reader(read_limited(&index_path, "index.json")?.as_slice()).map_err(|e| {
            ImageError::InvalidDocument { what: "index", digest: "index.json".to_owned(), reason: e.to_string() }
        })?;

        let mut descriptor = pick_manifest(index.manifests())?;
        // Nested indexes (multi-platform images) are followed a few levels at most.
        for _ in 0..4 {
            let media_type = descriptor.media_type().to_string();
            if !INDEX_MEDIA_TYPES.contains(&media_type.as_str()) {
                break;
            }
            let (_, bytes) = read_blob(&layout, &descriptor, "index")?;
            let nested = ImageIndex::from_reader(bytes.as_slice()).map_err(|e| ImageError::InvalidDocument {
                what: "index",
                digest: descriptor.digest().to_string(),
                reason: e.to_string(),
            })?;
            descriptor = pick_manifest(nested.manifests())?;
        }
        let media_type = descriptor.media_type().to_string();
        if !MANIFEST_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(ImageError::Unsupported { reason: format!("manifest media type {media_type}") });
        }
        let (manifest_digest, bytes) = read_blob(&layout, &descriptor, "manifest")?;
        let manifest = ImageManifest::from_reader(bytes.as_slice()).map_err(|e| ImageError::InvalidDocument {
            what: "manifest",
            digest: manifest_digest.to_string(),
            reason: e.to_string(),
        })?;
        let (config_digest, bytes) = read_blob(&layout, manifest.config(), "config")?;
        let config = ImageConfiguration::from_reader(bytes.as_slice()).map_err(|e| ImageError::InvalidDocument {
            what: "config",
            digest: config_digest.to_string(),
            reason: e.to_string(),
        })?;
        let (os, architecture) = (config.os().to_string(), config.architecture().to_string());
        if os != "linux" || architecture != crate::seccomp::go_arch() {
            return Err(ImageError::Unsupported {
                reason: format!("image for {os}/{architecture}, this host runs linux/{}", crate::seccomp::go_arch()),
            });
        }
        let layers = manifest.layers().iter().map(layer).collect::<Result<Vec<_>, _>>()?;
        Ok(Image { layout, manifest_digest, config, layers })
    }

    /// The digest of the manifest, which names the image's content.
    pub fn manifest_digest(&self) -> &BlobDigest {
        &self.manifest_digest
    }

    /// The image configuration (entrypoint, command, environment, working directory).
    pub fn config(&self) -> &ImageConfiguration {
        &self.config
    }

    /// The layers, base first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Path of a blob of this layout.
    pub(crate) fn blob_path(&self, digest: &BlobDigest) -> PathBuf {
        blob_path(&self.layout, digest)
    }
}

fn blob_path(layout: &Path, digest: &BlobDigest) -> PathBuf {
    layout.join("blobs").join("sha256").join(digest.hex())
}

/// The manifest to run: the only one, else the one for linux on this architecture.
fn pick_manifest(manifests: &[Descriptor]) -> Result<Descriptor, ImageError> {
    if let [only] = manifests {
        return Ok(only.clone());
    }
    manifests
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux"
                    && p.architecture().to_string() == std::env::consts::ARCH.replace("x86_64", "amd64")
            })
        })
        .cloned()
        .ok_or_else(|| ImageError::Unsupported {
            reason: format!(
                "the index lists {} manifests and none for linux/{}",
                manifests.len(),
                crate::seccomp::go_arch()
            ),
        })
}

fn layer(descriptor: &Descriptor) -> Result<Layer, ImageError> {
    let media_type = descriptor.media_type().to_string();
    let compression = match media_type.as_str() {
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Compression::None
        }
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Compression::Gzip,
        other => return Err(ImageError::Unsupported { reason: format!("layer media type {other}") }),
    };
    Ok(Layer { digest: BlobDigest::parse(descriptor.digest().as_ref())?, size: descriptor.size(), compression })
}

/// Reads a small file whole, refusing one larger than [`MAX_DOCUMENT_BYTES`].
fn read_limited(path: &Path, what: &'static str) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(ImageError::io("opening a layout file", path))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut bytes).map_err(ImageError::io("reading a layout file", path))?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ImageError::Unsupported { reason: format!("{what} is larger than {MAX_DOCUMENT_BYTES} bytes") });
    }
    Ok(bytes)
}

/// Reads a JSON blob named by `descriptor`, checked against its digest and size.
fn read_blob(layout: &Path, descriptor: &Descriptor, what: &'static str) -> Result<(BlobDigest, Vec<u8>), ImageError> {
    let digest = BlobDigest::parse(descriptor.digest().as_ref())?;
    if descriptor.size() > MAX_DOCUMENT_BYTES {
        return Err(ImageError::Unsupported {
            reason: format!("{what} {digest} is larger than {MAX_DOCUMENT_BYTES} bytes"),
        });
    }
    let path = blob_path(layout, &digest);
    if !path.is_file() {
        return Err(ImageError::MissingBlob { digest: digest.to_string() });
    }
    let bytes = read_limited(&path, what)?;
    check_blob(what, &digest, descriptor.size(), bytes.len() as u64, &hex::encode(Sha256::digest(&bytes)))?;
    Ok((digest, bytes))
}

/// Compares what was read with what the descriptor promised.
pub(crate) fn check_blob(
    what: &'static str,
    digest: &BlobDigest,
    expected_size: u64,
    actual_size: u64,
    actual_hex: &str,
) -> Result<(), ImageError> {
    if actual_hex != digest.hex() {
        return Err(ImageError::DigestMismatch { what, digest: digest.to_string(), actual: actual_hex.to_owned() });
    }
    if actual_size != expected_size {
        return Err(ImageError::SizeMismatch {
            what,
            digest: digest.to_string(),
            expected: expected_size,
            actual: actual_size,
        });
    }
    Ok(())
}

/// A reader that hashes and counts what passes through it, so a layer is
/// verified in the same pass that unpacks it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// Reads what is left (a tar's padding after its end marker) and returns
    /// the hex sha256 and the byte count of everything read.
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex::encode(self.hasher.finalize()), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
