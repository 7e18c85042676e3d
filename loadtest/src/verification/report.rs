//! What a verification run found, per strategy: whether honest runs were ever judged to
//! disagree, how far apart their accuracies are, what verifying cost against running, and which
//! adversary kinds' lies were caught; the verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shoal_jobs::{Job, Quarantine};

use crate::adversary::AdversaryKind;
use crate::report::{figure_table, RunReport};
use crate::verification::options::VerificationOptions;
use crate::verification::{output_of, told, verdict_of, DONOR_EPOCHS};

/// Minimum, maximum, mean and standard deviation of some values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// How many values.
    pub count: usize,
    /// The least (0 when there are none).
    pub min: f64,
    /// The greatest.
    pub max: f64,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (0 for fewer than two).
    pub sd: f64,
}

impl Spread {
    /// The spread of `values`.
    pub fn of(values: &[f64]) -> Spread {
        let count = values.len();
        if count == 0 {
            return Spread { count, min: 0.0, max: 0.0, mean: 0.0, sd: 0.0 };
        }
        let mean = values.iter().sum::<f64>() / count as f64;
        let variance =
            if count > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1) as f64 } else { 0.0 };
        Spread {
            count,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean,
            sd: variance.sqrt(),
        }
    }
}

/// The honest phase of one strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HonestFigures {
    /// Jobs submitted.
    pub submitted: usize,
    /// Jobs that succeeded.
    pub succeeded: usize,
    /// Jobs with a verdict.
    pub verified: usize,
    /// Jobs whose re-execution agreed.
    pub agreed: usize,
    /// Honest jobs judged to disagree with their re-execution: must be 0.
    pub false_disagreements: usize,
    /// Jobs by verdict (`none`: no verdict by the deadline).
    pub verdicts: BTreeMap<String, usize>,
    /// The held-out accuracies the workers' results claim (honest: what their weights achieve).
    pub accuracy: Spread,
    /// How far each result's accuracy was from its re-execution's, as the comparison saw it (a
    /// comparator's disagreement names its gap only in prose, in `disagreements`: not counted).
    pub gap: Spread,
    /// The workers' wasm run time per job, milliseconds.
    pub worker_run_ms: Spread,
    /// CPU seconds of the worker processes over the phase (each ran and imported its jobs).
    pub worker_cpu_s: f64,
    /// CPU seconds of the verifier processes over the phase (each re-ran and compared).
    pub verifier_cpu_s: f64,
    /// `verifier_cpu_s / worker_cpu_s`: what verifying a job costs against running it.
    pub cost_ratio: f64,
    /// Seconds from starting the stack to the last verdict.
    pub wall_s: f64,
    /// Every disagreement between honest runs, with what the comparison said.
    pub disagreements: Vec<String>,
}

/// Why a job was handed to an adversary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobRole {
    /// A lie is expected.
    Lie,
    /// The stolen-weights adversary's first job (`--epochs 20`), run honestly: the result it
    /// hands in for the later ones.
    Donor,
}

/// One job an adversary was handed, and what the verifier made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Told {
    /// The job.
    pub job: String,
    /// Why it was handed over.
    pub role: JobRole,
    /// Whether the adversary settled it.
    pub handled: bool,
    /// Its verdict (`agreed`, `disagreed`, `none`, …).
    pub verdict: String,
    /// The held-out accuracy the adversary's result claims.
    pub claimed_accuracy: Option<f64>,
    /// What the comparison said.
    pub said: String,
    /// The adversary's output.
    #[serde(skip)]
    pub output: Option<cid::Cid>,
}

impl Told {
    /// `job`, handed to `worker` as `role`.
    pub fn of(job: &Job, role: JobRole, worker: &str) -> Told {
        let output = output_of(job, worker);
        Told {
            job: job.id.clone(),
            role,
            handled: output.is_some(),
            verdict: verdict_of(job).to_string(),
            claimed_accuracy: None,
            said: told(job),
            output,
        }
    }

    /// Whether it is a lie the verifier caught: the adversary's result judged to disagree.
    fn caught(&self) -> bool {
        self.handled && self.verdict == "disagreed"
    }
}

/// One adversary kind against one strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdversaryFigures {
    /// Its kind.
    pub kind: String,
    /// Its worker id.
    pub worker: String,
    /// Lies it settled.
    pub lies: usize,
    /// Of those, the ones judged to disagree.
    pub caught: usize,
    /// Of those, the ones judged to agree: lies the strategy let through.
    pub missed: usize,
    /// Lies handed to it that it did not settle or that got no verdict.
    pub unsettled: usize,
    /// Whether it was quarantined.
    pub quarantined: bool,
    /// Why.
    pub reason: Option<String>,
    /// Every job it was handed.
    pub jobs: Vec<Told>,
}

impl AdversaryFigures {
    /// The figures of adversary `worker` of `kind`, from the jobs it was handed and its
    /// quarantine.
    pub fn new(kind: AdversaryKind, worker: String, jobs: Vec<Told>, quarantine: Option<Quarantine>) -> Self {
        let lies: Vec<&Told> = jobs.iter().filter(|t| t.role == JobRole::Lie).collect();
        let settled: Vec<&&Told> = lies.iter().filter(|t| t.handled && t.verdict != "none").collect();
        AdversaryFigures {
            kind: kind.name().to_string(),
            worker,
            lies: settled.len(),
            caught: settled.iter().filter(|t| t.caught()).count(),
            missed: settled.iter().filter(|t| t.verdict == "agreed").count(),
            unsettled: lies.len() - settled.len(),
            quarantined: quarantine.is_some(),
            reason: quarantine.map(|q| q.reason),
            jobs,
        }
    }

    /// How it fared, in a table cell: `caught 1 of 1, quarantined` or `MISSED 3 of 3`.
    fn cell(&self) -> String {
        let mut cell = if self.missed > 0 {
            format!("**missed {} of {}**", self.missed, self.lies)
        } else {
            format!("caught {} of {}", self.caught, self.lies)
        };
        if self.missed > 0 && self.caught > 0 {
            let _ = write!(cell, " (caught {})", self.caught);
        }
        if self.quarantined {
            cell.push_str(", quarantined");
        }
        if self.unsettled > 0 {
            let _ = write!(cell, ", {} unsettled", self.unsettled);
        }
        cell
    }
}

/// One strategy's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyRun {
    /// `tolerance` or `comparator`.
    pub strategy: String,
    /// The spec's `verification.compare` for a job of the default epochs.
    pub compare: Value,
    /// The honest phase.
    pub honest: HonestFigures,
    /// Each adversary kind alone.
    pub adversaries: Vec<AdversaryFigures>,
}

impl StrategyRun {
    /// Kinds with a lie this strategy let through.
    pub fn missed_kinds(&self) -> Vec<&str> {
        self.adversaries.iter().filter(|a| a.missed > 0).map(|a| a.kind.as_str()).collect()
    }

    /// Kinds not caught at all: some lie missed, or none caught.
    fn uncaught_kinds(&self) -> Vec<&str> {
        self.adversaries.iter().filter(|a| a.missed > 0 || a.caught == 0).map(|a| a.kind.as_str()).collect()
    }
}

/// Everything a verification run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// The command line.
    pub command: String,
    /// When it started, seconds since the Unix epoch.
    pub started_at_unix_s: u64,
    /// How long it took, seconds.
    pub total_s: f64,
    /// Honest jobs per strategy.
    pub honest_per_strategy: usize,
    /// Lies handed to each adversary kind per strategy, at most.
    pub lies_per_kind: usize,
    /// The tolerance of held-out accuracies (and the comparator's accuracy gap allowed).
    pub tolerance: f64,
    /// Fabricated metrics' raise of the claimed accuracy; `None`: drawn per job from 0.02–0.05.
    pub raise: Option<f64>,
    /// Honest workers and verifiers in the honest phases.
    pub workers: usize,
    /// Verifier processes in every phase.
    pub verifiers: usize,
    /// Each strategy's runs.
    pub strategies: Vec<StrategyRun>,
}

impl VerificationReport {
    /// The report of `strategies`, run as `options` say.
    pub fn new(
        options: &VerificationOptions,
        command: String,
        started_at_unix_s: u64,
        total_s: f64,
        strategies: Vec<StrategyRun>,
    ) -> VerificationReport {
        VerificationReport {
            command,
            started_at_unix_s,
            total_s,
            honest_per_strategy: options.honest,
            lies_per_kind: options.lies,
            tolerance: options.tolerance,
            raise: options.raise,
            workers: options.workers,
            verifiers: options.verifiers,
            strategies,
        }
    }

    /// The strategy named `name`, if it ran.
    pub fn strategy(&self, name: &str) -> Option<&StrategyRun> {
        self.strategies.iter().find(|s| s.strategy == name)
    }

    /// The passing bar's parts, each with whether it was met.
    fn checks(&self) -> Vec<(String, bool)> {
        let mut checks = Vec::new();
        for run in &self.strategies {
            let honest = &run.honest;
            checks.push((
                format!(
                    "{}: every honest job verified and agreed ({} of {}), no false disagreement ({})",
                    run.strategy, honest.agreed, honest.submitted, honest.false_disagreements
                ),
                honest.agreed == honest.submitted && honest.false_disagreements == 0,
            ));
        }
        if let Some(comparator) = self.strategy("comparator") {
            let uncaught = comparator.uncaught_kinds();
            let unquarantined: Vec<&str> =
                comparator.adversaries.iter().filter(|a| !a.quarantined).map(|a| a.kind.as_str()).collect();
            checks.push((
                format!("comparator: every adversary kind caught (not caught: {uncaught:?})"),
                uncaught.is_empty(),
            ));
            checks.push((
                format!("comparator: every adversary quarantined (not: {unquarantined:?})"),
                unquarantined.is_empty(),
            ));
        }
        checks
    }
}

/// `0.9610` for an accuracy.
fn four(value: f64) -> String {
    format!("{value:.4}")
}

impl RunReport for VerificationReport {
    fn summary(&self) -> String {
        let failed: Vec<String> = self.checks().into_iter().filter(|(_, ok)| !ok).map(|(what, _)| what).collect();
        let mut line = String::from("verification:");
        for run in &self.strategies {
            let _ = write!(
                line,
                " {}: {}/{} honest agreed, {} false disagreements, cost ×{:.2}, missed {:?};",
                run.strategy,
                run.honest.agreed,
                run.honest.submitted,
                run.honest.false_disagreements,
                run.honest.cost_ratio,
                run.missed_kinds()
            );
        }
        let verdict = if failed.is_empty() { "PASSED".to_string() } else { format!("FAILED: {}", failed.join("; ")) };
        format!("{line} {verdict}\n")
    }

    fn passed(&self) -> bool {
        self.checks().iter().all(|(_, ok)| *ok)
    }

    fn documents(&self, _name: &str) -> Vec<(&'static str, String)> {
        let mut md = String::new();
        let _ = writeln!(md, "# Verifying the nondeterministic ML job\n\n```\n{}\n```\n", self.command);
        for (what, ok) in self.checks() {
            let _ = writeln!(md, "- {} {what}", if ok { "✔" } else { "✘" });
        }
        let _ = writeln!(md);
        figure_table(
            &mut md,
            &[
                ("honest jobs per strategy", self.honest_per_strategy.to_string()),
                ("lies per adversary kind and strategy, at most", self.lies_per_kind.to_string()),
                ("tolerance (held-out accuracy, absolute; comparator's accuracy gap)", self.tolerance.to_string()),
                (
                    "fabricated metrics' raise",
                    self.raise.map_or("drawn per job from 0.02–0.05".into(), |r| r.to_string()),
                ),
                ("honest workers / verifiers", format!("{} / {}", self.workers, self.verifiers)),
                ("run time", format!("{:.0} s", self.total_s)),
            ],
        );

        let _ = writeln!(
            md,
            "\n## Honest runs\n\nEvery job `ml-train` with no `--seed` (each run draws its own), `verification: always`.\n\n\
             | strategy | jobs | agreed | false disagreements | held-out accuracy min / max | mean ± sd | \
             largest gap to re-execution | worker run, mean | worker CPU / job | verifier CPU / job | cost ratio |\n\
             |---|---|---|---|---|---|---|---|---|---|---|"
        );
        for run in &self.strategies {
            let h = &run.honest;
            let per_job = |cpu: f64| cpu / h.submitted.max(1) as f64;
            let _ = writeln!(
                md,
                "| {} | {} | {} | **{}** | {} / {} | {} ± {} | {} | {:.2} s | {:.2} s | {:.2} s | **{:.2}** |",
                run.strategy,
                h.submitted,
                h.agreed,
                h.false_disagreements,
                four(h.accuracy.min),
                four(h.accuracy.max),
                four(h.accuracy.mean),
                four(h.accuracy.sd),
                four(h.gap.max),
                h.worker_run_ms.mean / 1000.0,
                per_job(h.worker_cpu_s),
                per_job(h.verifier_cpu_s),
                h.cost_ratio
            );
        }
        let _ = writeln!(
            md,
            "\nThe cost ratio is the verifier processes' CPU seconds over the worker processes' in the same phase \
             (each fetches, runs — the verifier a second time — and imports; the comparator also runs ml-compare)."
        );
        for run in &self.strategies {
            for disagreement in &run.honest.disagreements {
                let _ = writeln!(md, "- {} false disagreement: {disagreement}", run.strategy);
            }
        }

        let _ = writeln!(md, "\n## Adversaries\n\nEach kind alone as the only worker of its own stack, handed one job at a time until quarantined.\n");
        let _ = write!(md, "| kind |");
        for run in &self.strategies {
            let _ = write!(md, " {} |", run.strategy);
        }
        let _ = write!(md, "\n|---|");
        for _ in &self.strategies {
            let _ = write!(md, "---|");
        }
        let _ = writeln!(md);
        let kinds: Vec<&str> = self
            .strategies
            .first()
            .map(|run| run.adversaries.iter().map(|a| a.kind.as_str()).collect())
            .unwrap_or_default();
        for kind in &kinds {
            let _ = write!(md, "| {kind} |");
            for run in &self.strategies {
                let cell = run.adversaries.iter().find(|a| a.kind == *kind).map_or("–".into(), AdversaryFigures::cell);
                let _ = write!(md, " {cell} |");
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
        for run in &self.strategies {
            let _ = writeln!(md, "- **{}** let through: {}", run.strategy, listed(&run.missed_kinds()));
        }
        let _ = writeln!(
            md,
            "\nThe stolen-weights adversary's first job asks for `--epochs {DONOR_EPOCHS}` and is run honestly; \
             its result is what it hands in for the later ones (not counted as a lie)."
        );

        let _ = writeln!(md, "\n## What each comparison said\n");
        for run in &self.strategies {
            for adversary in &run.adversaries {
                for job in &adversary.jobs {
                    let _ = writeln!(
                        md,
                        "- {} / {} ({:?}, claims {}): **{}** — {}",
                        run.strategy,
                        adversary.kind,
                        job.role,
                        job.claimed_accuracy.map_or("?".into(), four),
                        job.verdict,
                        job.said.replace('|', "\\|")
                    );
                }
            }
        }
        vec![("md", md)]
    }
}

/// `a, b` or `none`.
fn listed(kinds: &[&str]) -> String {
    if kinds.is_empty() {
        "none".into()
    } else {
        kinds.join(", ")
    }
}
