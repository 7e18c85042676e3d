//! What a verification run does: the options of `shoal-loadtest verification`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::adversary::AdversaryKind;

/// How the ML job's results are compared: the spec's `verification.compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// `metrics.json#/held_out_accuracy` of the two results within `--tolerance`: reads the
    /// claims only.
    Tolerance,
    /// `ml-compare` over the two results: recomputes each one's claims from its weights, then
    /// checks their epochs and accuracy gap (within `--tolerance`).
    Comparator,
}

impl Strategy {
    /// Its name, as the spec's `compare.kind`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Tolerance => "tolerance",
            Strategy::Comparator => "comparator",
        }
    }

    /// The spec's `compare` for a job asking for `epochs`: the comparator (module `comparator`,
    /// a CID) is told the epochs both results must claim and the accuracy gap allowed.
    pub fn compare(self, tolerance: f64, comparator: &str, epochs: u32) -> Value {
        match self {
            Strategy::Tolerance => json!({
                "kind": "tolerance",
                "fields": [{"file": "metrics.json", "json": "/held_out_accuracy", "absolute": tolerance}],
            }),
            Strategy::Comparator => json!({
                "kind": "comparator",
                "program": comparator,
                "args": ["--epochs", epochs.to_string(), "--accuracy-tolerance", tolerance.to_string()],
            }),
        }
    }
}

/// Honest and lying runs of the ML training job (`programs/ml-train`) under each verification
/// strategy: `shoal-loadtest verification [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct VerificationOptions {
    /// Honest jobs per strategy, each seeded from its host (no `--seed`).
    #[arg(long, default_value_t = 50)]
    pub honest: usize,
    /// Lies each adversary kind is handed per strategy; it gets no more once it is quarantined.
    #[arg(long, default_value_t = 3)]
    pub lies: usize,
    /// The strategies compared.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tolerance,comparator")]
    pub strategies: Vec<Strategy>,
    /// The adversary kinds, each run alone against a verifier (ML kinds only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "fabricated-metrics,few-epochs,stolen-weights,random-weights"
    )]
    pub kinds: Vec<AdversaryKind>,
    /// The absolute tolerance of held-out accuracies (tolerance), and the accuracy gap allowed
    /// (comparator, ml-compare's own default since): over 100 pairs of honest runs one pair was
    /// 0.031 apart (docs/verification/), while a 1-epoch result stays more than 0.05 below.
    #[arg(long, default_value_t = 0.04)]
    pub tolerance: f64,
    /// What fabricated metrics add to the claimed accuracy; drawn per job from 0.02–0.05 if
    /// not given.
    #[arg(long)]
    pub raise: Option<f64>,
    /// Honest worker processes in the honest phase. One by default, as many as the verifiers:
    /// each process compiles ml-train once, and the cost ratio should compare running with
    /// verifying, not one compilation with two.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Verifier processes.
    #[arg(long, default_value_t = 1)]
    pub verifiers: usize,
    /// Fuel per training job: ml-train needs about 4.6 G; the limit leaves room without letting
    /// a runaway loop go on for long.
    #[arg(long, default_value_t = 20_000_000_000)]
    pub fuel: u64,
    /// The `shoal` binary (default: beside this one, or the workspace's target directory).
    #[arg(long)]
    pub shoal: Option<PathBuf>,
    /// Directory of the guest modules (`ml-train.wasm`, `ml-compare.wasm`); default
    /// `programs/wasm`.
    #[arg(long)]
    pub programs: Option<PathBuf>,
    /// The digits directory (`digits.csv`, fetched by `scripts/fetch-data.sh`); default
    /// `data/digits`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where each phase's stack lives (a temporary directory if not given).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Seconds each phase may take before the run gives up on its unfinished jobs.
    #[arg(long, default_value_t = 900)]
    pub deadline_secs: u64,
    /// Write PREFIX.json and PREFIX.md.
    #[arg(long)]
    pub report: Option<PathBuf>,
}
