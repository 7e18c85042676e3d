//! The local Shoal home: the block store user commands and the embedded stack share, and the
//! endpoints file through which `shoal dev` tells other commands where it listens.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where a gateway listens when nothing else says.
pub(crate) const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

/// The directory layout under `--home`.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    root: PathBuf,
}

/// Where a running `shoal dev` stack listens, written to `<home>/dev.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Endpoints {
    /// The gateway's base URL.
    pub gateway: String,
    /// The content server's base URL (trustless gateway).
    pub content: String,
    /// The private Redis.
    pub redis: String,
    /// The `shoal dev` process, so scripts can stop it.
    pub pid: u32,
    /// The stack's local API key (an operator's), which user commands send unless told
    /// otherwise. The file is readable by its owner only.
    #[serde(default)]
    pub api_key: Option<String>,
}

/// Writes `bytes` to a new file at `path` that only its owner can read.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::remove_file(path).ok();
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

impl Home {
    /// The home at `root` (created on first write).
    pub(crate) fn new(root: PathBuf) -> Home {
        Home { root }
    }

    /// Creates the home, readable by its owner only: it holds the block store, Redis's data and
    /// credentials, and the local API key.
    pub(crate) fn make_private(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", self.root.display()))
    }

    /// The root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The local block store.
    pub(crate) fn blocks(&self) -> PathBuf {
        self.root.join("blocks")
    }

    /// Where a running dev stack's endpoints are written.
    pub(crate) fn endpoints_file(&self) -> PathBuf {
        self.root.join("dev.json")
    }

    /// Records where a dev stack listens.
    pub(crate) fn write_endpoints(&self, endpoints: &Endpoints) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
        let file = self.endpoints_file();
        let tmp = file.with_extension("json.tmp");
        write_private(&tmp, &serde_json::to_vec_pretty(endpoints)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
        Ok(())
    }

    /// Forgets the dev stack's endpoints (it is stopping).
    pub(crate) fn clear_endpoints(&self) {
        std::fs::remove_file(self.endpoints_file()).ok();
    }

    /// The endpoints of a dev stack started with this home, if one wrote them.
    pub(crate) fn endpoints(&self) -> Option<Endpoints> {
        let bytes = std::fs::read(self.endpoints_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
