//! The busybox test image, shared by shoal-oci's tests and the whole-system tests (which
//! include this file by path: a test-support crate both could depend on would make shoal-oci's
//! tests build the worker, and with it shoal-oci again). Uses std and sha2 only, which both
//! crates have.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The busybox image of `scripts/build-test-image.sh`, built once and kept under Cargo's target
/// temp directory, named by the script's hash so that a changed script builds a new one (the
/// script is deterministic, so the image keeps its CID). Needs busybox-static
/// (`scripts/install-deps.sh`).
pub(crate) fn busybox_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        // Both crates including this file sit one level under the repository's root.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-image.sh");
        let hash = format!("{:x}", Sha256::digest(std::fs::read(&script).unwrap()));
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oci-test-image-{}", &hash[..16]));
        if out.join("index.json").is_file() {
            return out;
        }
        // Built aside and renamed, so that concurrent test binaries never see half an image.
        let building = out.with_extension(format!("building-{}", std::process::id()));
        let status = Command::new("bash").arg(&script).arg(&building).status().expect("run build-test-image.sh");
        assert!(status.success(), "scripts/build-test-image.sh failed; run scripts/install-deps.sh (busybox-static)");
        if std::fs::rename(&building, &out).is_err() {
            // Another test binary finished first; its image is the same.
            std::fs::remove_dir_all(&building).unwrap();
        }
        out
    })
}
