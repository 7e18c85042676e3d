//! Safe layer unpacking into a cache keyed by layer digest.
//!
//! Each layer is unpacked into its own directory in overlayfs's format, so
//! that a container's root filesystem is an overlay mount of the cached layer
//! directories, shared by every run and never written to: a `.wh.NAME`
//! whiteout becomes the character device 0/0 `NAME` and an opaque directory
//! (`.wh..wh..opq`) gets the `trusted.overlay.opaque` attribute.
//!
//! A layer is unpacked into a fresh directory under `tmp/` and renamed to
//! `layers/<hex digest>` only once it is complete and its blob matched its
//! digest: a crash leaves at most a stray temporary directory (removed when
//! the cache is opened), never a half-unpacked layer under its digest.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use rustix::fs::{makedev, mknodat, setxattr, FileType, Mode, XattrFlags, CWD};
use tar::EntryType;

use crate::error::ImageError;
use crate::image::{check_blob, Compression, HashingReader, Image, Layer};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacked layers on the local disk, keyed by layer digest. Safe to share
/// between concurrent runs of one process; the directory must not be shared
/// with another process (opening the cache removes unfinished unpacks).
#[derive(Debug)]
pub struct LayerCache {
    layers: PathBuf,
    tmp: PathBuf,
    empty: PathBuf,
    unpacked: AtomicU64,
}

/// The layers of an image, unpacked and ready to be mounted.
#[derive(Debug, Clone)]
pub struct UnpackedImage {
    /// The cached layer directories, base first (never empty: an image
    /// without layers gets one empty directory).
    pub layer_dirs: Vec<PathBuf>,
    /// How many layers this call unpacked; the others were in the cache.
    pub layers_unpacked: usize,
}

impl LayerCache {
    /// Opens (creating it if needed) the cache under `dir` and removes what
    /// an interrupted unpack left behind.
    ///
    /// The path must not contain `:` or `,`: the layer directories are
    /// listed in an overlay mount's options, where those are separators.
    pub fn open(dir: impl AsRef<Path>) -> Result<LayerCache, ImageError> {
        let dir = dir.as_ref();
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().map_err(ImageError::io("resolving the cache directory", dir))?.join(dir)
        };
        if dir.to_string_lossy().contains([':', ',']) {
            return Err(ImageError::Io {
                context: "opening the layer cache",
                path: dir,
                source: io::Error::new(io::ErrorKind::InvalidInput, "the path must not contain `:` or `,`"),
            });
        }
        let cache = LayerCache {
            layers: dir.join("layers"),
            tmp: dir.join("tmp"),
            empty: dir.join("empty"),
            unpacked: AtomicU64::new(0),
        };
        if cache.tmp.exists() {
            fs::remove_dir_all(&cache.tmp).map_err(ImageError::io("removing unfinished unpacks", &cache.tmp))?;
        }
        for path in [&cache.layers, &cache.tmp, &cache.empty] {
            fs::create_dir_all(path).map_err(ImageError::io("creating the layer cache", path))?;
        }
        Ok(cache)
    }

    /// Layers unpacked by this cache since it was opened (cache hits not counted).
    pub fn layers_unpacked(&self) -> u64 {
        self.unpacked.load(Ordering::Relaxed)
    }

    /// Makes sure every layer of `image` is in the cache, unpacking and
    /// verifying the missing ones. Blocking: call it from a blocking thread.
    pub fn unpack(&self, image: &Image) -> Result<UnpackedImage, ImageError> {
        let mut layer_dirs = Vec::with_capacity(image.layers().len().max(1));
        let mut layers_unpacked = 0;
        for layer in image.layers() {
            let dir = self.layers.join(layer.digest.hex());
            if !dir.is_dir() && self.unpack_layer(image, layer, &dir)? {
                layers_unpacked += 1;
            }
            layer_dirs.push(dir);
        }
        if layer_dirs.is_empty() {
            layer_dirs.push(self.empty.clone());
        }
        Ok(UnpackedImage { layer_dirs, layers_unpacked })
    }

    /// Unpacks one layer into `dir`; false if another run finished it first.
    fn unpack_layer(&self, image: &Image, layer: &Layer, dir: &Path) -> Result<bool, ImageError> {
        let tmp = self.tmp.join(format!("{}-{}", layer.digest.hex(), ulid::Ulid::new()));
        fs::create_dir(&tmp).map_err(ImageError::io("creating a layer directory", &tmp))?;
        let unpacked = unpack_verified(image, layer, &tmp).and_then(|()| {
            // Durable before it is named: a power loss must not leave a
            // truncated file in a layer the cache believes complete.
            let handle = File::open(&tmp).map_err(ImageError::io("opening a layer directory", &tmp))?;
            rustix::fs::syncfs(&handle).map_err(|e| ImageError::Io {
                context: "syncing an unpacked layer",
                path: tmp.clone(),
                source: e.into(),
            })
        });
        if let Err(error) = unpacked {
            // Best effort: the next open of the cache removes it anyway.
            let _ = fs::remove_dir_all(&tmp);
            return Err(error);
        }
        match fs::rename(&tmp, dir) {
            Ok(()) => {
                self.unpacked.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(layer = %layer.digest, "layer unpacked");
                Ok(true)
            }
            // A concurrent run renamed the same layer first; its copy is as good.
            Err(_) if dir.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(false)
            }
            Err(e) => Err(ImageError::Io { context: "naming an unpacked layer", path: dir.to_path_buf(), source: e }),
        }
    }
}

/// Unpacks the layer's blob into `dir` while hashing it; fails if the blob
/// does not match its digest and size.
fn unpack_verified(image: &Image, layer: &Layer, dir: &Path) -> Result<(), ImageError> {
    let path = image.blob_path(&layer.digest);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::MissingBlob { digest: layer.digest.to_string() })
        }
        Err(e) => return Err(ImageError::Io { context: "opening a layer blob", path, source: e }),
    };
    let mut hashing = HashingReader::new(file);
    let unpacked = {
        let decoded: Box<dyn Read + '_> = match layer.compression {
            Compression::None => Box::new(&mut hashing),
            Compression::Gzip => Box::new(MultiGzDecoder::new(&mut hashing)),
        };
        unpack_archive(decoded, dir, &layer.digest.to_string())
    };
    let (actual_hex, actual_size) = hashing.finish().map_err(ImageError::io("reading a layer blob", &path))?;
    // The digest is checked first: a corrupted or forged blob is reported as
    // such, not as whatever its garbage looked like to the tar reader.
    check_blob("layer", &layer.digest, layer.size, actual_size, &actual_hex)?;
    unpacked
}

fn unpack_archive(reader: impl Read, dir: &Path, digest: &str) -> Result<(), ImageError> {
    let bad_archive = |source| ImageError::BadArchive { digest: digest.to_owned(), source };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    // Extended attributes could plant `trusted.overlay.*` and change what the
    // overlay shows; images do not need them.
    archive.set_unpack_xattrs(false);
    for entry in archive.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let raw_path = entry.path().map_err(bad_archive)?.into_owned();
        let refuse = |reason: &str| ImageError::UnsafeEntry {
            digest: digest.to_owned(),
            entry: raw_path.display().to_string(),
            reason: reason.to_owned(),
        };
        let relative = relative_path(&raw_path).map_err(&refuse)?;
        let Some(name) = relative.file_name() else {
            // The archive's root ("./") itself: the layer directory exists already.
            continue;
        };
        let parent = relative.parent().unwrap_or(Path::new(""));
        if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(WHITEOUT_PREFIX)) {
            let parent_dir = ensure_directory(dir, parent).map_err(|reason| refuse(&reason))?;
            let applied = if name == OPAQUE_MARKER {
                setxattr(&parent_dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
            } else if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(refuse("whiteout without a name"));
            } else {
                mknodat(CWD, parent_dir.join(hidden), FileType::CharacterDevice, Mode::empty(), makedev(0, 0))
            };
            applied.map_err(|e| refuse(&format!("cannot apply the whiteout: {e}")))?;
            continue;
        }
        let entry_type = entry.header().entry_type();
        match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory | EntryType::Fifo => {}
            EntryType::Char | EntryType::Block => return Err(refuse("device nodes are not allowed in layers")),
            EntryType::Symlink => {
                let target =
                    entry.link_name().map_err(bad_archive)?.ok_or_else(|| refuse("symlink without a target"))?;
                // Absolute targets resolve inside the container's root; relative
                // ones must not climb above it.
                if target.is_relative() && escapes_root(parent, &target) {
                    return Err(refuse(&format!("symlink to {} leaves the root", target.display())));
                }
            }
            EntryType::Link => {
                let target =
                    entry.link_name().map_err(bad_archive)?.ok_or_else(|| refuse("hard link without a target"))?;
                relative_path(&target).map_err(|reason| refuse(&format!("hard link target: {reason}")))?;
            }
            other => return Err(refuse(&format!("unsupported entry type {other:?}"))),
        }
        ensure_directory(dir, parent).map_err(|reason| refuse(&reason))?;
        // An entry replacing a symlink must replace it, not write through it.
        let destination = dir.join(&relative);
        if entry_type != EntryType::Directory && fs::symlink_metadata(&destination).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(&destination).map_err(|e| refuse(&format!("cannot replace the existing entry: {e}")))?;
        }
        match entry.unpack_in(dir) {
            Ok(true) => {}
            Ok(false) => return Err(refuse("the entry would be outside the root")),
            Err(e) => return Err(refuse(&error_chain(&e))),
        }
    }
    Ok(())
}

/// The entry's path relative to the layer root, refusing absolute paths and
/// `..` components.
fn relative_path(path: &Path) -> Result<PathBuf, &'static str> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` components are not allowed"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute paths are not allowed"),
        }
    }
    Ok(relative)
}

/// Whether a relative symlink target, read from directory `parent`, climbs
/// above the root.
fn escapes_root(parent: &Path, target: &Path) -> bool {
    let mut depth = parent.components().count();
    for component in target.components() {
        match component {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// Creates `relative` under `root` as real directories, refusing to pass
/// through a symlink (which could lead out of the layer).
fn ensure_directory(root: &Path, relative: &Path) -> Result<PathBuf, String> {
    let mut current = root.to_path_buf();
    for part in relative.iter() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.is_symlink() => {
                return Err(format!("its parent {} is a symlink in this layer", display_relative(root, &current)))
            }
            Ok(_) => return Err(format!("its parent {} is not a directory", display_relative(root, &current))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(|e| format!("cannot create its parent directory: {e}"))?
            }
            Err(e) => return Err(format!("cannot inspect its parent directory: {e}")),
        }
    }
    Ok(current)
}

/// An error with its sources, as tar wraps the cause in a context message.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn display_relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_refuse_absolute_and_parent_components() {
        assert_eq!(relative_path(Path::new("./bin/sh")), Ok(PathBuf::from("bin/sh")));
        assert!(relative_path(Path::new("/etc/passwd")).is_err());
        assert!(relative_path(Path::new("bin/../../etc")).is_err());
    }

    #[test]
    fn relative_symlinks_must_stay_under_the_root() {
        assert!(!escapes_root(Path::new("bin"), Path::new("busybox")));
        assert!(!escapes_root(Path::new("usr/bin"), Path::new("../../bin/sh")));
        assert!(escapes_root(Path::new("usr/bin"), Path::new("../../../etc/shadow")));
        assert!(escapes_root(Path::new(""), Path::new("../x")));
    }
}
