//! How a worker is set up ([`WorkerConfig`], with its defaults in one place) and why it stops
//! ([`WorkerError`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use shoal_jobs::{redis_urls, Membership, ShardRouter, StoreError};

use crate::filecoin::FilecoinConfig;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's identity, used as its consumer name and in executions.
    pub id: String,
    /// Where Redis is: one URL, or several comma-separated seed nodes of a Redis Cluster.
    pub redis_url: String,
    /// How many shard streams exist; the worker reads all of them.
    pub shards: u32,
    /// How many jobs run at once.
    pub concurrency: usize,
    /// Where the worker's signing key is kept (created on first start): it signs the receipt of
    /// every execution, and the id is bound to it at the first registration.
    pub key_file: PathBuf,
    /// The local block store: a cache of fetched blocks and where outputs are written.
    pub store_dir: PathBuf,
    /// Trustless gateways to fetch blocks from, tried in order after the local store.
    pub gateways: Vec<String>,
    /// Scratch space for materialised inputs and outputs, and for container jobs the layer
    /// cache and runc's state (`containers/`, owned by this worker alone).
    pub work_dir: PathBuf,
    /// Where each run's `/outputs` (and joined inputs) live, in a directory named after the
    /// worker; `None`: `<work_dir>/runs`. A tmpfs (`/dev/shm/shoal`) makes small jobs cheaper:
    /// a run's output files are deleted after it, and on ext4 each deleted inode makes creating
    /// files slower for a minute or more (the allocator skips recently deleted inodes, reading
    /// each). Outputs there take memory while they exist, up to the output limit per running
    /// job; joined inputs are copied, not hard-linked, across file systems. Workers sharing it
    /// must have distinct ids: each empties its own directory there when it starts.
    pub runs_dir: Option<PathBuf>,
    /// The runc binary that runs container jobs (`"runtime": "oci"`). A worker where it cannot
    /// run (not installed, not root, no seccomp profile) still runs WebAssembly jobs, and leaves
    /// container jobs to another attempt, as for any failure of its host.
    pub runc: PathBuf,
    /// Bytes of materialised inputs kept on disk between jobs.
    pub input_cache_bytes: u64,
    /// Bytes of compiled programs kept in memory.
    pub program_cache_bytes: u64,
    /// How long fetching a job's program and inputs may take before the job fails.
    pub fetch_timeout: Duration,
    /// How long compiling a program may take before the job fails (`timeout`). Compilation
    /// cannot be interrupted: it finishes in the background, its result unused, and jobs naming
    /// the program fail at once for a while instead of compiling it again.
    pub compile_timeout: Duration,
    /// How long one stream read blocks waiting for work.
    pub poll_block: Duration,
    /// How long an entry another worker read may go unrenewed before this worker takes it
    /// over: that worker is taken for dead or hung. Running jobs renew their entries every
    /// third of this.
    pub visibility_timeout: Duration,
    /// How often the worker refreshes its registration ([`shoal_jobs::Membership`]).
    pub heartbeat: Duration,
    /// Labels it registers with (region, hardware, …).
    pub labels: BTreeMap<String, String>,
    /// How many workers read each shard ([`shoal_jobs::ShardAssignment`]); this worker reads the shards it
    /// ranks among the first that many for.
    pub shard_replicas: usize,
    /// When idle, take unread work from a shard this worker does not read once that shard has
    /// at least this many unread entries…
    pub steal_min_backlog: u64,
    /// …or once its oldest unread entry has waited this long (its readers are gone or stuck).
    pub steal_after: Duration,
    /// How often finished tasks of fanned-out jobs are gathered (by one worker at a time).
    pub gather_every: Duration,
    /// How often the worker looks whether a job it runs was cancelled, and stops it if so.
    pub cancel_check: Duration,
    /// How many jobs may wait for content no source has yet (up to the fetch timeout) without
    /// holding one of the [`WorkerConfig::concurrency`] slots, so that jobs naming missing
    /// content do not starve the others; beyond it they wait holding their slot.
    pub max_waiting_for_content: usize,
    /// On shutdown, how long the jobs it runs may go on to finish; then they are stopped and
    /// left to another worker (their entries stay pending and are taken over after the
    /// visibility timeout), so no job holds a shutdown up.
    pub drain_timeout: Duration,
    /// A shard with more unread entries than this per reader is hot and gets another reader,
    /// preferably a worker that holds its data ([`shoal_jobs::HotShards`]); so does one with work
    /// waiting whose owner has missed a heartbeat…
    pub hot_backlog: u64,
    /// …up to this many readers in all; [`WorkerConfig::shard_replicas`] or fewer turns hot
    /// replicas off.
    pub max_shard_readers: usize,
    /// Where the worker buys `"source": "filecoin"` inputs no free source has; without it such
    /// an input is waited for like any missing content.
    pub filecoin: Option<FilecoinConfig>,
    /// Where to serve `GET /metrics`: the time each phase of a delivery took, as histograms
    /// (none if not given).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl WorkerConfig {
    /// Jobs run at once unless configured.
    pub const DEFAULT_CONCURRENCY: usize = 2;
    /// Bytes of materialised inputs kept unless configured.
    pub const DEFAULT_INPUT_CACHE_BYTES: u64 = 4 << 30;
    /// Bytes of compiled programs kept unless configured.
    pub const DEFAULT_PROGRAM_CACHE_BYTES: u64 = 512 << 20;
    /// Time to fetch a job's program and inputs unless configured.
    pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
    /// Time to compile a program unless configured: a few megabytes of ordinary code compile
    /// in seconds.
    pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Jobs waiting for content without a slot unless configured: each costs a task and a
    /// lookup every two seconds or so, not a slot.
    pub const DEFAULT_MAX_WAITING_FOR_CONTENT: usize = 64;
    /// The visibility timeout unless configured.
    pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long running jobs may go on finishing after a shutdown begins.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
    /// Readers per shard unless configured.
    pub const DEFAULT_SHARD_REPLICAS: usize = 1;
    /// The hot-shard backlog per reader unless configured.
    pub const DEFAULT_HOT_BACKLOG: u64 = 8;
    /// The most readers of a hot shard unless configured.
    pub const DEFAULT_MAX_SHARD_READERS: usize = 4;

    /// The URLs in [`WorkerConfig::redis_url`]: one for a single node, several for a cluster.
    pub fn redis_urls(&self) -> Vec<String> {
        redis_urls(&self.redis_url)
    }

    /// Checks that [`WorkerConfig::id`] can name the worker: it names its key file and its
    /// directories, some of which are emptied at start, so it must be one plain path component
    /// (letters, digits, `.`, `_`, `-`, `@`, `:`; not `.` or `..`), of at most 128 bytes.
    pub fn check_id(&self) -> Result<(), InvalidWorkerId> {
        let id = self.id.as_str();
        let reason = if id.is_empty() || id.len() > 128 {
            Some("it must have 1 to 128 characters")
        } else if id == "." || id == ".." {
            Some("it names a directory of its own")
        } else if !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-@:".contains(c)) {
            Some("it may hold only letters, digits, '.', '_', '-', '@' and ':'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidWorkerId { id: id.to_string(), reason }),
            None => Ok(()),
        }
    }

    /// The directory this worker's run directories go in: its own, whether under
    /// [`WorkerConfig::runs_dir`] (shared by the workers of a host) or its work directory. It is
    /// emptied when the worker starts.
    pub fn runs_root(&self) -> PathBuf {
        match &self.runs_dir {
            Some(dir) => dir.join(&self.id),
            None => self.work_dir.join("runs"),
        }
    }

    /// Defaults for a worker named `id` against `redis_url`, keeping its files under `home`.
    pub fn new(id: &str, redis_url: &str, home: &std::path::Path) -> WorkerConfig {
        WorkerConfig {
            id: id.to_string(),
            redis_url: redis_url.to_string(),
            shards: ShardRouter::DEFAULT_SHARDS,
            concurrency: WorkerConfig::DEFAULT_CONCURRENCY,
            key_file: home.join("keys").join(format!("{id}.key")),
            store_dir: home.join("blocks"),
            gateways: Vec::new(),
            work_dir: home.join("work").join(id),
            runs_dir: None,
            runc: PathBuf::from("runc"),
            input_cache_bytes: WorkerConfig::DEFAULT_INPUT_CACHE_BYTES,
            program_cache_bytes: WorkerConfig::DEFAULT_PROGRAM_CACHE_BYTES,
            fetch_timeout: WorkerConfig::DEFAULT_FETCH_TIMEOUT,
            compile_timeout: WorkerConfig::DEFAULT_COMPILE_TIMEOUT,
            poll_block: Duration::from_secs(1),
            visibility_timeout: WorkerConfig::DEFAULT_VISIBILITY_TIMEOUT,
            heartbeat: Membership::DEFAULT_HEARTBEAT,
            labels: BTreeMap::new(),
            shard_replicas: WorkerConfig::DEFAULT_SHARD_REPLICAS,
            steal_min_backlog: 4,
            steal_after: Duration::from_secs(5),
            gather_every: Duration::from_millis(500),
            cancel_check: Duration::from_secs(1),
            max_waiting_for_content: WorkerConfig::DEFAULT_MAX_WAITING_FOR_CONTENT,
            drain_timeout: WorkerConfig::DEFAULT_DRAIN_TIMEOUT,
            hot_backlog: WorkerConfig::DEFAULT_HOT_BACKLOG,
            max_shard_readers: WorkerConfig::DEFAULT_MAX_SHARD_READERS,
            filecoin: None,
            metrics_addr: None,
        }
    }
}

/// A worker id that cannot name the worker's files and directories ([`WorkerConfig::check_id`]).
#[derive(Debug, thiserror::Error)]
#[error("worker id {id:?} is not usable: {reason}")]
pub struct InvalidWorkerId {
    /// The id given.
    pub id: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Why a worker could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The content layer failed to open its store or a source.
    #[error(transparent)]
    Content(#[from] shoal_content::ContentError),
    /// The wasm runtime could not be created.
    #[error("creating the wasm runtime: {0}")]
    Runtime(#[from] shoal_runtime::RuntimeError),
    /// The signing key could not be loaded or made.
    #[error(transparent)]
    Key(#[from] shoal_jobs::KeyError),
    /// Buying inputs from Filecoin was configured, but cannot be set up.
    #[error("setting up Filecoin retrieval: {0}")]
    Filecoin(String),
    /// Lotus could not be reached or refused (asked for the default wallet).
    #[error("setting up Filecoin retrieval: {0}")]
    Lotus(#[from] shoal_filecoin::LotusError),
    /// The worker id cannot name its files and directories.
    #[error(transparent)]
    InvalidId(#[from] InvalidWorkerId),
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_go_under_the_work_directory_or_in_the_workers_own_directory_of_runs_dir() {
        let home = std::path::Path::new("/srv/shoal");
        let mut a = WorkerConfig::new("a", "redis://127.0.0.1/", home);
        assert_eq!(a.runs_root(), home.join("work/a/runs"));
        a.runs_dir = Some("/dev/shm/shoal".into());
        let mut b = a.clone();
        b.id = "b".into();
        assert_eq!((a.runs_root(), b.runs_root()), ("/dev/shm/shoal/a".into(), "/dev/shm/shoal/b".into()));
    }

    #[test]
    fn an_id_that_is_not_one_plain_path_component_is_refused() {
        let config = |id: &str| WorkerConfig::new(id, "redis://127.0.0.1/", std::path::Path::new("/srv/shoal"));
        for good in ["w0", "worker-a", "host.example.org-4242", "gpu_1@eu-west:2"] {
            config(good).check_id().unwrap();
        }
        let long = "x".repeat(129);
        for bad in ["", ".", "..", "../etc", "a/b", "a b", "é", long.as_str()] {
            let error = config(bad).check_id().unwrap_err().to_string();
            assert!(error.starts_with("worker id") && error.contains("not usable"), "{bad:?}: {error}");
        }
    }
}
