//! What a byzantine run does: the options of `shoal-loadtest byzantine`.

use clap::Args;

use crate::adversary::{adversary_id, AdversaryKind};
use crate::chaos::options::VerificationMode;
use crate::chaos::Options;

/// The reliability mix with a fraction of the workers adversarial, after an honest baseline run
/// of the same command: `shoal-loadtest byzantine [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct ByzantineOptions {
    /// The run: jobs, workers (honest and adversarial together), verifiers, shards, faults.
    #[command(flatten)]
    pub mix: Options,
    /// Fraction of `--workers` that are adversaries (rounded to the nearest worker).
    #[arg(long, default_value_t = 0.1)]
    pub malicious_fraction: f64,
    /// Kinds of adversary, dealt out in turn to the adversarial workers.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "liar,lazy,colluding,sleeper,rare,forger")]
    pub kinds: Vec<AdversaryKind>,
    /// A sleeper's honest jobs before it turns.
    #[arg(long, default_value_t = 20)]
    pub honest_for: u64,
    /// The percentage of its jobs a rare liar lies on.
    #[arg(long, default_value_t = 1)]
    pub lie_percent: u64,
    /// Instead of the mix: the plan's own example, one `cloud-detect` job fanned out over this
    /// many real-format Landsat scenes (the `scenes` workload; its cold run is reported), each
    /// task's output checked against the harness's own run of the program on its scene.
    #[arg(long, value_name = "N")]
    pub scenes: Option<usize>,
    /// Skip the honest baseline run (no throughput ratio then).
    #[arg(long)]
    pub no_baseline: bool,
    /// The run passes only if its throughput is at least this fraction of the baseline's.
    #[arg(long, default_value_t = 0.5)]
    pub min_throughput_ratio: f64,
    /// The run passes only if at least this fraction of its jobs is accepted with the right
    /// output.
    #[arg(long, default_value_t = 0.999)]
    pub min_accepted: f64,
}

impl ByzantineOptions {
    /// Every job's verification policy: `--verification`, else `always` (every result
    /// re-executed, what makes results accepted).
    pub fn verification(&self) -> VerificationMode {
        self.mix.verification.unwrap_or(VerificationMode::Always)
    }

    /// How many of the workers are adversaries.
    pub fn malicious(&self) -> usize {
        ((self.mix.workers as f64 * self.malicious_fraction).round() as usize).min(self.mix.workers)
    }

    /// The adversaries: (id, kind), kinds dealt out in turn.
    pub fn adversaries(&self) -> Vec<(String, AdversaryKind)> {
        (0..self.malicious())
            .filter_map(|n| {
                let kind = *self.kinds.get(n % self.kinds.len().max(1))?;
                Some((adversary_id(n, kind), kind))
            })
            .collect()
    }
}
