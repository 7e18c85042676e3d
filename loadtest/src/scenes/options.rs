//! What a scenes run does: the options of `shoal-loadtest scenes`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::adversary::AdversaryKind;
use crate::chaos::options::VerificationMode;

/// The program each task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenesProgram {
    /// `echo-hash`: hashes every file of the task's scene; each gathered entry is checked
    /// against the output CID computed from the tile files' own hashes.
    EchoHash,
    /// `cloud-detect`: cloud mask of the scene; each gathered entry must hold a `mask.png` of
    /// the tile's size. Every task gets the same arguments (the directory's mount path), and
    /// cloud-detect finds its scene one level down, under the entry's name.
    CloudDetect,
}

impl ScenesProgram {
    /// The program's name in `programs/wasm`.
    pub fn name(self) -> &'static str {
        match self {
            ScenesProgram::EchoHash => "echo-hash",
            ScenesProgram::CloudDetect => "cloud-detect",
        }
    }
}

/// `shoal-loadtest scenes [OPTIONS]`: one fan-out job over N small real-format scenes, cold and
/// warm, on separate processes.
#[derive(Debug, Clone, Args)]
pub struct ScenesOptions {
    /// Scenes in the directory (one task each).
    #[arg(long, default_value_t = 1000)]
    pub scenes: usize,
    /// Side of a scene in 30 m pixels (B8, at 15 m, gets twice as many).
    #[arg(long, default_value_t = 32)]
    pub tile: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Tasks each worker runs at once.
    #[arg(long, default_value_t = 2)]
    pub worker_concurrency: usize,
    /// Shard streams (the system's default; with few shards per worker the hashing leaves
    /// workers unevenly loaded, idle ones steal, and stolen tasks run away from their data).
    #[arg(long, default_value_t = 256)]
    pub shards: u32,
    /// Bytes of materialised inputs each worker keeps between tasks (a 32-pixel scene is
    /// about 45 KB on disk, so the default holds every scene of a 10,000-scene run many times over).
    #[arg(long, default_value_t = 4 << 30)]
    pub input_cache_bytes: u64,
    /// The program each task runs.
    #[arg(long, value_enum, default_value_t = ScenesProgram::CloudDetect)]
    pub program: ScenesProgram,
    /// The real scene the tiles are cut from (default: the repository's `data/landsat` scene).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// The `shoal` binary (default: beside this one, else target/release, else target/debug).
    #[arg(long)]
    pub shoal: Option<PathBuf>,
    /// Directory of the committed `.wasm` programs (default: the repository's `programs/wasm`).
    #[arg(long)]
    pub programs: Option<PathBuf>,
    /// Home of the stack: tiles, block store, Redis, logs (default: a temporary directory,
    /// removed afterwards).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Seconds each run may take before the tasks still unfinished count as lost.
    #[arg(long, default_value_t = 3600)]
    pub deadline_secs: u64,
    /// Warm local task rate below which the command fails.
    #[arg(long, default_value_t = 0.9)]
    pub min_local_rate: f64,
    /// Verifier processes (`shoal verifier`, over every shard).
    #[arg(long, default_value_t = 0)]
    pub verifiers: usize,
    /// The fanned-out job's verification policy, which its tasks inherit (`none` unless
    /// verifiers run: a fan-out gathers a task only once the verifier has decided on it).
    #[arg(long, value_enum, default_value_t = VerificationMode::None)]
    pub verification: VerificationMode,
    /// Byzantine workers (`shoal-loadtest adversary-worker`) started beside the `--workers`
    /// honest ones, one per kind listed (repeat a kind for more).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub adversaries: Vec<AdversaryKind>,
    /// Check every task's output against the harness's own run of the program on its scene
    /// (an in-process executor, no worker involved); `echo-hash` outputs are always checked
    /// against CIDs computed without the runtime.
    #[arg(long)]
    pub reference: bool,
    /// Write the report to PREFIX.json and PREFIX.md.
    #[arg(long, value_name = "PREFIX")]
    pub report: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// The repository's real Landsat scene.
pub fn default_source() -> PathBuf {
    shoal_testkit::repo_root().join("data/landsat/LC80200392015216LGN00")
}
