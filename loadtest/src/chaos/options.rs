//! What a reliability run does: the options of `shoal-loadtest chaos`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// How a SIGKILLed worker is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Replace {
    /// Restart it under the same id: it takes back its own pending entries on start.
    SameId,
    /// Start a worker with a fresh id: the dead one's entries must be reclaimed by others.
    NewId,
    /// Start nothing: the remaining workers carry on.
    None,
}

impl Replace {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Replace::SameId => "same-id",
            Replace::NewId => "new-id",
            Replace::None => "none",
        }
    }
}

/// What jobs a run submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// `--jobs` planned jobs over a few small inputs: echo-hash over files and directories, and
    /// huge-output (the reliability mix).
    Mix,
    /// The simulation's workload on real processes: users with their own programs (echo-hash
    /// with distinct arguments) reading items of a catalogue of real blobs, drawn with Zipf
    /// popularity, each user keeping a bounded number of jobs outstanding; reports the cache
    /// hit and local task rates.
    Locality,
}

/// When Redis fsyncs its append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncMode {
    /// Once a second.
    EverySec,
    /// On every write.
    Always,
}

/// The verification policy of every submitted job (`"verification": {"mode": …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerificationMode {
    /// Every result re-executed by a verifier.
    Always,
    /// A sample re-executed (`--sample-rate`).
    Sampled,
    /// None.
    None,
}

impl VerificationMode {
    /// The name in a job spec.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationMode::Always => "always",
            VerificationMode::Sampled => "sampled",
            VerificationMode::None => "none",
        }
    }
}

/// A load/chaos run against a Shoal stack the harness starts itself, on loopback only:
/// `shoal-loadtest chaos [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Jobs to submit (locality: at most this many, 0 for no limit).
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// What to submit.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Mix)]
    pub workload: WorkloadKind,
    /// Locality: real seconds of submitting; then the run waits for what is outstanding.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub duration_secs: f64,
    /// Locality: users submitting at once, each with programs of its own.
    #[arg(long, default_value_t = 3)]
    pub users: usize,
    /// Locality: distinct programs (echo-hash with distinct arguments), spread over the users.
    #[arg(long, default_value_t = 10)]
    pub distinct_programs: usize,
    /// Locality: jobs each user keeps submitted and unfinished (closed loop).
    #[arg(long, default_value_t = 8)]
    pub outstanding_per_user: usize,
    /// Locality: items in the catalogue.
    #[arg(long, default_value_t = 1000)]
    pub catalogue_items: u64,
    /// Locality: mean item size (items are 0.5 to 1.5 times it, as in the simulation).
    #[arg(long, value_parser = crate::sim::options::parse_bytes, default_value = "500kB")]
    pub item_bytes: u64,
    /// Each worker's input cache (`shoal worker --input-cache-bytes`); the worker's default if
    /// not given.
    #[arg(long, value_parser = crate::sim::options::parse_bytes)]
    pub cache_bytes: Option<u64>,
    /// Workers' heartbeat (`shoal worker --heartbeat-ms`); the worker's default if not given.
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Locality: width of a time-series bucket, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub bucket_secs: f64,
    /// Submissions per second (open loop); without it, as fast as --submit-concurrency allows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Submission requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub submit_concurrency: usize,
    /// Most jobs submitted and not yet seen finished (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_outstanding: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 2)]
    pub worker_concurrency: usize,
    /// Shard streams (gateway and workers).
    #[arg(long, default_value_t = 16)]
    pub shards: u32,
    /// Distinct single-file inputs (random bytes from --seed).
    #[arg(long, default_value_t = 16)]
    pub inputs: usize,
    /// Every Nth job is `huge-output 1M 0` (0: none).
    #[arg(long, default_value_t = 50)]
    pub huge_every: usize,
    /// Seed of the inputs, the job mix and the fault targets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// SIGKILL a random worker every this many seconds.
    #[arg(long, value_name = "SECS")]
    pub kill_every_secs: Option<f64>,
    /// Stop killing after this many kills.
    #[arg(long)]
    pub max_kills: Option<usize>,
    /// How a killed worker is replaced.
    #[arg(long, value_enum, default_value_t = Replace::SameId)]
    pub replace: Replace,
    /// SIGSTOP a random worker every this many seconds (a hang), SIGCONT it --pause-for-secs later.
    #[arg(long, value_name = "SECS")]
    pub pause_every_secs: Option<f64>,
    /// How long a paused worker stays stopped.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub pause_for_secs: f64,
    /// Stop pausing after this many pauses.
    #[arg(long)]
    pub max_pauses: Option<usize>,
    /// Kill and restart Redis (same port and data) this many seconds into the run; repeatable.
    #[arg(long = "restart-redis-at", value_name = "SECS")]
    pub restart_redis_at: Vec<f64>,
    /// Kill and restart the gateway (same port) this many seconds into the run; repeatable.
    #[arg(long = "restart-gateway-at", value_name = "SECS")]
    pub restart_gateway_at: Vec<f64>,
    /// Verifier processes (`shoal verifier`). With any, a job that succeeded counts as finished
    /// only once the verifier has decided on it, and an accepted wrong result fails the run.
    #[arg(long, default_value_t = 0)]
    pub verifiers: usize,
    /// Every job's verification policy (the spec's default if not given).
    #[arg(long, value_enum)]
    pub verification: Option<VerificationMode>,
    /// Fraction of `sampled` jobs the verifiers re-execute.
    #[arg(long, default_value_t = 0.1)]
    pub sample_rate: f64,
    /// SIGKILL a random verifier every this many seconds and start one under a new id (the
    /// others must take the dead one's verifications over).
    #[arg(long, value_name = "SECS")]
    pub kill_verifier_every_secs: Option<f64>,
    /// Passed to workers as --visibility-timeout-secs when their --help lists that flag.
    #[arg(long, default_value_t = 4)]
    pub visibility_timeout_secs: u64,
    /// Once everything is submitted, give up waiting after this long without a job finishing.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stall_secs: u64,
    /// Hard limit on the whole run; every loop stops by then.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub deadline_secs: u64,
    /// Redis append-only-file fsync policy.
    #[arg(long, value_enum, default_value_t = FsyncMode::EverySec)]
    pub fsync: FsyncMode,
    /// The `shoal` binary (default: next to this binary, else target/{release,debug}/shoal).
    #[arg(long, value_name = "PATH")]
    pub shoal: Option<PathBuf>,
    /// Directory of the committed guest programs (`echo-hash.wasm`, `huge-output.wasm`).
    #[arg(long, value_name = "DIR")]
    pub programs: Option<PathBuf>,
    /// Write the report to PREFIX.json, PREFIX.md and PREFIX.svg.
    #[arg(long, value_name = "PREFIX")]
    pub report: Option<PathBuf>,
    /// Keep the stack's home (block store, Redis data, process logs) here instead of a
    /// temporary directory that is removed at the end.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}
