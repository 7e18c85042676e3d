//! What both workloads of a reliability run start from: the stack's home, the `shoal` binary,
//! the guest programs and the shared block store ([`Setup`]); the stack itself; and draining a
//! channel of submitted jobs.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_content::FsBlockStore;
use shoal_jobs::Fsync;
use shoal_testkit::{programs_dir, ProcessStack, ProcessStackConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::chaos::options::{FsyncMode, Options};
use crate::cli::shoal_binary;
use crate::error::{LoadtestError, Result};

/// What the common part of a run prepared.
pub struct Setup {
    /// The stack's home.
    pub home: PathBuf,
    /// The `shoal` binary.
    pub shoal: PathBuf,
    /// The committed guest programs.
    pub programs: PathBuf,
    /// The workers' shared block store (`home/blocks`).
    pub store: FsBlockStore,
    /// When the run started (seconds since the Unix epoch).
    pub started_at_unix_s: u64,
    /// The run's hard limit.
    pub deadline: Instant,
    /// A temporary home, removed when this is dropped (after the stack, which is started later).
    pub temporary: Option<tempfile::TempDir>,
}

impl Setup {
    /// The home (`--work-dir` or a temporary directory), the binary and programs, and the block
    /// store, opened before any worker starts so that content added to it waits for no one.
    pub fn new(options: &Options) -> Result<Setup> {
        let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(options.deadline_secs);
        let (home, temporary) = match &options.work_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| LoadtestError::io(format!("creating {}", dir.display()), e))?;
                let home = std::path::absolute(dir)
                    .map_err(|e| LoadtestError::io(format!("resolving {}", dir.display()), e))?;
                (home, None)
            }
            None => {
                let dir = tempfile::tempdir().map_err(|e| LoadtestError::io("creating the stack's home", e))?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let shoal = shoal_binary(options.shoal.as_deref())?;
        let programs = options.programs.clone().unwrap_or_else(programs_dir);
        let store = FsBlockStore::open(home.join("blocks"))
            .map_err(|source| LoadtestError::content(format!("opening {}/blocks", home.display()), source))?;
        Ok(Setup { home, shoal, programs, store, started_at_unix_s, deadline, temporary })
    }

    /// Starts the stack `options` describe with its `--workers` worker processes.
    pub async fn start_stack(&self, options: &Options) -> Result<ProcessStack> {
        let stack = ProcessStack::start(ProcessStackConfig {
            shoal: self.shoal.clone(),
            home: self.home.clone(),
            shards: options.shards,
            worker_concurrency: options.worker_concurrency,
            visibility_timeout_secs: Some(options.visibility_timeout_secs),
            fsync: match options.fsync {
                FsyncMode::EverySec => Fsync::EverySec,
                FsyncMode::Always => Fsync::Always,
            },
            input_cache_bytes: options.cache_bytes,
            heartbeat_ms: options.heartbeat_ms,
        })
        .await?;
        for _ in 0..options.workers {
            stack.start_worker(&stack.new_worker_id())?;
        }
        for n in 0..options.verifiers {
            stack.start_verifier(&verifier_id(n), options.sample_rate)?;
        }
        Ok(stack)
    }
}

/// The id of the `n`th verifier started in a run.
pub fn verifier_id(n: usize) -> String {
    format!("verifier-{n}")
}

/// Hands everything waiting on `rx` to `each`, without waiting; whether every sender is gone,
/// so that nothing more will come.
pub fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>, mut each: impl FnMut(T)) -> bool {
    loop {
        match rx.try_recv() {
            Ok(item) => each(item),
            Err(mpsc::error::TryRecvError::Empty) => return false,
            Err(mpsc::error::TryRecvError::Disconnected) => return true,
        }
    }
}
