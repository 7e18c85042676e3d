//! Reading and unpacking images: verification, refused entries, whiteouts
//! and the layer cache. Runs as root (whiteouts are device nodes).

mod common;

use std::fs;
use std::path::Path;

use common::{busybox_image, file, tar_of, write_layout, Entry};
use shoal_oci::{Image, ImageError, LayerCache};
use tar::EntryType;

fn unpack(layout: &Path, cache: &Path) -> Result<shoal_oci::UnpackedImage, ImageError> {
    LayerCache::open(cache)?.unpack(&Image::open(layout)?)
}

#[test]
fn a_directory_that_is_not_a_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = Image::open(dir.path()).unwrap_err();
    assert!(matches!(error, ImageError::NotALayout { .. }), "{error}");
    assert!(error.to_string().contains("oci-layout"), "{error}");
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_layout(dir.path(), &[tar_of(&[file("hello", b"hi")])]);
    let blob = dir.path().join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap());
    let mut manifest = fs::read(&blob).unwrap();
    manifest.push(b' ');
    fs::write(&blob, manifest).unwrap();
    let error = Image::open(dir.path()).unwrap_err();
    assert!(
        matches!(&error, ImageError::DigestMismatch { what: "manifest", digest: d, .. } if *d == digest),
        "{error}"
    );
    assert!(error.to_string().contains(&digest), "the message names the digest: {error}");
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused_and_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), &[tar_of(&[file("hello", b"hi")])]);
    let image = Image::open(dir.path()).unwrap();
    let layer = &image.layers()[0];
    let blob = dir.path().join("blobs/sha256").join(layer.digest.hex());
    let other = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar_of(&[file("hello", b"ho")])).unwrap();
        gz.finish().unwrap()
    };
    fs::write(&blob, other).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let error = LayerCache::open(cache.path()).unwrap().unpack(&image).unwrap_err();
    assert!(matches!(&error, ImageError::DigestMismatch { what: "layer", .. }), "{error}");
    assert!(error.to_string().contains(&layer.digest.to_string()), "{error}");
    assert_eq!(fs::read_dir(cache.path().join("layers")).unwrap().count(), 0, "nothing cached");
    assert_eq!(fs::read_dir(cache.path().join("tmp")).unwrap().count(), 0, "nothing left half-done");
}

fn refused(entries: &[Entry<'_>], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_layout(dir.path(), &[tar_of(entries)]);
    let error = unpack(dir.path(), cache.path()).unwrap_err();
    assert!(matches!(error, ImageError::UnsafeEntry { .. }), "{error}");
    assert!(error.to_string().contains(expected), "{expected:?} in {error}");
    assert_eq!(fs::read_dir(cache.path().join("layers")).unwrap().count(), 0, "nothing cached");
    assert_eq!(fs::read_dir(cache.path().join("tmp")).unwrap().count(), 0, "nothing left half-done");
}

#[test]
fn layers_with_escaping_paths_or_devices_are_refused() {
    refused(&[file("ok", b"1"), file("../escaped", b"x")], "`..` components are not allowed");
    refused(&[file("/etc/escaped", b"x")], "absolute paths are not allowed");
    refused(&[Entry { name: "dev/null", kind: EntryType::Char, data: b"", link: None }], "device nodes");
    refused(
        &[file("a", b"x"), Entry { name: "b", kind: EntryType::Link, data: b"", link: Some("../../etc/passwd") }],
        "hard link target",
    );
    refused(&[Entry { name: "up", kind: EntryType::Symlink, data: b"", link: Some("../..") }], "leaves the root");
    // A symlink to a host directory, then a file through it.
    refused(
        &[Entry { name: "etc", kind: EntryType::Symlink, data: b"", link: Some("/etc") }, file("etc/escaped", b"x")],
        "is a symlink",
    );
}

#[test]
fn whiteouts_and_opaque_directories_become_overlay_markers() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_layout(
        dir.path(),
        &[
            tar_of(&[file("gone", b"1"), file("kept", b"1"), file("d/old", b"1")]),
            tar_of(&[file(".wh.gone", b""), file("d/.wh..wh..opq", b""), file("d/new", b"2")]),
        ],
    );
    let unpacked = unpack(dir.path(), cache.path()).unwrap();
    assert_eq!(unpacked.layers_unpacked, 2);
    let top = &unpacked.layer_dirs[1];
    let whiteout = fs::symlink_metadata(top.join("gone")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0, "a 0/0 character device");
    assert!(!top.join(".wh.gone").exists());
    let opaque = rustix::fs::getxattr(top.join("d"), "trusted.overlay.opaque", &mut [0u8; 8]).unwrap();
    assert_eq!(opaque, 1);
    assert_eq!(fs::read(top.join("d/new")).unwrap(), b"2");
}

#[test]
fn a_second_unpack_is_a_cache_hit() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(cache_dir.path()).unwrap();
    let image = Image::open(busybox_image()).unwrap();
    let first = cache.unpack(&image).unwrap();
    assert_eq!(first.layers_unpacked, 1);
    assert!(first.layer_dirs[0].join("bin/busybox").is_file());
    let second = cache.unpack(&image).unwrap();
    assert_eq!(second.layers_unpacked, 0, "nothing unpacked the second time");
    assert_eq!(second.layer_dirs, first.layer_dirs);
    assert_eq!(cache.layers_unpacked(), 1);
    // A new process (a reopened cache) finds the layer too.
    let reopened = LayerCache::open(cache_dir.path()).unwrap();
    assert_eq!(reopened.unpack(&image).unwrap().layers_unpacked, 0);
}

#[test]
fn the_test_image_is_deterministic() {
    let image = Image::open(busybox_image()).unwrap();
    let again = tempfile::tempdir().unwrap();
    let out = again.path().join("image");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-image.sh");
    assert!(std::process::Command::new("bash").arg(script).arg(&out).status().unwrap().success());
    assert_eq!(Image::open(&out).unwrap().manifest_digest(), image.manifest_digest());
}
