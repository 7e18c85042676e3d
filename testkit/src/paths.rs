//! Where things are: the repository, the committed guest programs, the built `shoal` binary.

use std::path::{Path, PathBuf};

use crate::error::TestkitError;

/// The repository root (for `programs/wasm`, `data/`, `docker-compose.yml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit/ is inside the repository").to_path_buf()
}

/// The committed guest programs, `programs/wasm/`.
pub fn programs_dir() -> PathBuf {
    repo_root().join("programs/wasm")
}

/// The bytes of a committed guest program, `programs/wasm/<name>.wasm`; panics if it cannot be
/// read (a test cannot go on without it).
pub fn program_bytes(name: &str) -> Vec<u8> {
    let path = programs_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The `shoal` binary: beside the current executable (a test binary sits one level deeper, in
/// `deps/`), else the workspace's release build, else its debug build. Cargo builds it with
/// `cargo build -p shoal-cli` (`make test` does).
pub fn shoal_binary() -> Result<PathBuf, TestkitError> {
    let exe = std::env::current_exe().map_err(|e| TestkitError::io("locating this executable", e))?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("shoal"));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join("shoal"));
        }
    }
    let root = repo_root();
    candidates.push(root.join("target/release/shoal"));
    candidates.push(root.join("target/debug/shoal"));
    candidates.iter().find(|path| path.is_file()).cloned().ok_or(TestkitError::NoShoalBinary { candidates })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_holds_the_programs() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(program_bytes("echo-hash").starts_with(b"\0asm"));
    }
}
