//! Shared by the test files: the busybox test image and hand-made layouts.

// Each test file uses a part of it.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

mod busybox;

pub(crate) use busybox::busybox_image;

/// Writes an OCI layout at `dir` whose layers are the given gzip-compressed tars.
/// Returns the manifest's digest (`sha256:…`).
pub(crate) fn write_layout(dir: &Path, layers: &[Vec<u8>]) -> String {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(Sha256::digest(bytes));
        fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        diff_ids.push(format!("sha256:{}", hex::encode(Sha256::digest(tar))));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let (digest, size) = put(&gz.finish().unwrap());
        layer_descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size,
        }));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layer_descriptors,
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size}],
    });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    manifest_digest
}

/// One entry of a hand-made tar; the name is written raw, so paths the tar
/// crate's builder would refuse (`..`, absolute) can be made.
pub(crate) struct Entry<'a> {
    pub(crate) name: &'a str,
    pub(crate) kind: tar::EntryType,
    pub(crate) data: &'a [u8],
    pub(crate) link: Option<&'a str>,
}

pub(crate) fn file<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry { name, kind: tar::EntryType::Regular, data, link: None }
}

pub(crate) fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        let name = &mut header.as_old_mut().name;
        name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        if let Some(link) = entry.link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(entry.kind);
        header.set_mode(if entry.kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        header.set_size(entry.data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        if entry.kind == tar::EntryType::Char {
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
        }
        header.set_cksum();
        builder.append(&header, entry.data).unwrap();
    }
    builder.into_inner().unwrap()
}
