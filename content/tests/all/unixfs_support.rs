//! Helpers shared by the `unixfs_*` test modules: pseudo-random files and trees, and the npm peer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use shoal_content::unixfs::Profile;

/// Deterministic pseudo-random bytes (xorshift64*), the same for a given seed on every run.
pub(crate) struct PseudoRandom(u64);

impl PseudoRandom {
    /// A generator for `seed` (0 is mapped to a non-zero state, as xorshift requires).
    pub(crate) fn new(seed: u64) -> PseudoRandom {
        PseudoRandom(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Fills `buf`.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Writes `len` pseudo-random bytes from `seed` to `path`, 1 MiB at a time.
pub(crate) fn write_random_file(path: &Path, len: u64, seed: u64) {
    let mut rng = PseudoRandom::new(seed);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        file.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// Writes a flat directory of `count` small files named `file-NNNNN.txt` under `dir`.
pub(crate) fn write_flat_dir(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        std::fs::write(dir.join(format!("file-{i:05}.txt")), format!("content of file {i}\n")).unwrap();
    }
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js-unixfs")
}

/// One result line of the npm peer. Every field it prints must be there; the tests compare `cid`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct PeerImport {
    /// The imported path.
    #[expect(dead_code, reason = "parsed to check the peer's output, shown by `Debug`")]
    pub path: String,
    /// Root CID as the peer prints it.
    pub cid: String,
    /// The peer's import time.
    #[expect(dead_code, reason = "parsed to check the peer's output, shown by `Debug`")]
    pub ms: f64,
}

/// Imports `paths` with the npm `ipfs-unixfs-importer` (see `tests/js-unixfs/import.mjs`) and
/// returns its root CIDs, in order. With `blocks`, the peer also writes its DAGs' blocks there.
pub(crate) fn peer_import(profile: Profile, paths: &[&Path], blocks: Option<&Path>) -> Vec<PeerImport> {
    let dir = peer_dir();
    assert!(
        dir.join("node_modules/ipfs-unixfs-importer").is_dir(),
        "the npm peer is not installed: run `npm ci --prefix content/tests/js-unixfs` (the Makefile's test setup does)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("import.mjs"));
    if let Some(blocks) = blocks {
        cmd.arg("--blocks").arg(blocks);
    }
    cmd.arg(profile.name()).args(paths);
    let out = cmd.output().expect("running node (Node.js 20 must be installed)");
    assert!(out.status.success(), "npm peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<PeerImport> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), paths.len());
    lines
}

/// A block sink that only counts: for imports whose CID is all that matters.
#[derive(Debug, Default)]
pub(crate) struct CountingSink(pub std::sync::atomic::AtomicU64);

#[async_trait::async_trait]
impl shoal_content::BlockSink for CountingSink {
    async fn put(&self, _block: &shoal_content::Block) -> shoal_content::Result<()> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Loads every block file the npm peer wrote to `dir` (named by CID) into `store`, verifying each.
pub(crate) async fn load_peer_blocks(dir: &Path, store: &shoal_content::MemoryBlockStore) -> usize {
    use shoal_content::BlockSink;
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let cid = shoal_content::parse_cid(entry.file_name().to_str().unwrap()).unwrap();
        let block = shoal_content::Block::new_verified(cid, std::fs::read(entry.path()).unwrap(), "npm peer").unwrap();
        store.put(&block).await.unwrap();
        count += 1;
    }
    count
}

/// Asserts that two trees on disk hold the same names, file bytes and symlink targets.
pub(crate) fn assert_same_tree(expected: &Path, actual: &Path) {
    let meta = std::fs::symlink_metadata(expected).unwrap();
    let actual_meta = std::fs::symlink_metadata(actual).unwrap_or_else(|e| panic!("{} missing: {e}", actual.display()));
    if meta.file_type().is_symlink() {
        assert!(actual_meta.file_type().is_symlink(), "{} is not a symlink", actual.display());
        assert_eq!(std::fs::read_link(expected).unwrap(), std::fs::read_link(actual).unwrap());
    } else if meta.is_dir() {
        assert!(actual_meta.is_dir(), "{} is not a directory", actual.display());
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
            v.sort();
            v
        };
        let (want, got) = (names(expected), names(actual));
        assert_eq!(want, got, "entries of {}", actual.display());
        for name in want {
            assert_same_tree(&expected.join(&name), &actual.join(&name));
        }
    } else {
        assert!(actual_meta.is_file(), "{} is not a file", actual.display());
        assert!(std::fs::read(expected).unwrap() == std::fs::read(actual).unwrap(), "{} differs", actual.display());
    }
}
