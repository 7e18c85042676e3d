//! What a byzantine run found: how many results were accepted and whether any wrongly, who was
//! caught after how many jobs, what correcting them cost, and the throughput against the
//! honest baseline; the verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use shoal_jobs::{Acceptance, ExecutionOutcome, Job, VerificationOutcome};

use crate::adversary::AdversaryKind;
use crate::byzantine::options::ByzantineOptions;
use crate::chaos::mix::MixRun;
use crate::figures::Report;
use crate::report::{counts_line, examples_section, figure_table, RunReport};

/// An adversary and when it was caught.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caught {
    /// Its worker id.
    pub worker: String,
    /// Its kind.
    pub kind: String,
    /// Jobs of the run settled (by anyone) before it was quarantined; `None`: never caught.
    pub caught_after_jobs: Option<usize>,
    /// Of those, the ones it settled itself.
    pub its_jobs_before: usize,
    /// Results it settled over the whole run whose output was wrong.
    pub lies: usize,
    /// Why it was quarantined.
    pub reason: Option<String>,
}

/// Everything a byzantine run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ByzantineReport {
    /// The command line.
    pub command: String,
    /// Worker processes, honest and adversarial.
    pub workers: usize,
    /// Adversaries among them.
    pub malicious: usize,
    /// `malicious / workers`.
    pub malicious_fraction: f64,
    /// The kinds of adversary in the run.
    pub adversary_kinds: Vec<String>,
    /// Verifier processes.
    pub verifiers: usize,
    /// Every job's verification policy.
    pub verification: String,
    /// Jobs the gateway accepted.
    pub submitted: usize,
    /// Jobs reported as accepted (verified or corrected) with the expected output.
    pub accepted: usize,
    /// `accepted / submitted`.
    pub accepted_fraction: f64,
    /// Jobs reported as accepted with an output other than the expected one: must be 0.
    pub wrong_accepted: usize,
    /// Jobs that succeeded with the expected output, accepted or not.
    pub succeeded: usize,
    /// Jobs whose reported result is wrong at the end (accepted or not).
    pub wrong: usize,
    /// Jobs that failed, or never finished.
    pub failed: usize,
    /// Jobs lost.
    pub lost: usize,
    /// Succeeded jobs by acceptance.
    pub acceptance: BTreeMap<String, usize>,
    /// Accepted jobs per second, from the first created to the last verdict.
    pub throughput_per_s: f64,
    /// The same for the honest baseline run of the same command.
    pub honest_throughput_per_s: Option<f64>,
    /// `throughput_per_s / honest_throughput_per_s`.
    pub throughput_ratio: Option<f64>,
    /// Every adversary, caught or not, and when.
    pub quarantined: Vec<Caught>,
    /// Honest workers quarantined (must be none).
    pub honest_quarantined: Vec<String>,
    /// Jobs whose result the verifier replaced by its own.
    pub corrected: usize,
    /// Of those, the ones corrected after their worker was caught: tainted results.
    pub tainted_corrected: usize,
    /// Verdicts by outcome (`agreed`, `disagreed`, `refused`, …).
    pub verdicts: BTreeMap<String, usize>,
    /// Re-executions by verifiers plus repeated executions by workers, per submitted job.
    pub reexecutions_per_job: f64,
    /// The bar: the least `accepted_fraction` that passes.
    pub min_accepted: f64,
    /// The bar: the least `throughput_ratio` that passes.
    pub min_throughput_ratio: f64,
    /// The run's own figures (latencies, faults, examples).
    pub run: Report,
    /// The honest baseline's.
    pub baseline: Option<Report>,
}

impl ByzantineReport {
    /// The report of the `attacked` run (with `adversaries`) against its `baseline`.
    pub fn new(
        options: &ByzantineOptions,
        command: String,
        adversaries: &[(String, AdversaryKind)],
        attacked: &MixRun,
        baseline: Option<&MixRun>,
    ) -> ByzantineReport {
        let jobs: Vec<(&Job, &cid::Cid)> =
            attacked.finished.iter().map(|(n, job)| (job, &attacked.planned[*n].expected_output)).collect();
        let right = |job: &Job, expected: &cid::Cid| job.result.as_ref().is_some_and(|r| r.output.cid() == expected);
        let wrong_execution = |job: &Job, expected: &cid::Cid, worker: &str| {
            job.executions.iter().any(|e| {
                e.worker == worker
                    && matches!(&e.outcome, Some(ExecutionOutcome::Completed(r)) if r.output.cid() != expected)
            })
        };
        let settled_at = |job: &Job| job.executions.iter().filter_map(|e| e.finished_at_ms).min();
        let adversary_kind: BTreeMap<&str, &AdversaryKind> =
            adversaries.iter().map(|(id, k)| (id.as_str(), k)).collect();

        let quarantined = adversaries
            .iter()
            .map(|(worker, kind)| {
                let why = attacked.quarantined.get(worker);
                let before = |job: &Job| why.is_some_and(|q| settled_at(job).is_some_and(|at| at <= q.at_ms));
                Caught {
                    worker: worker.clone(),
                    kind: kind.name().to_string(),
                    caught_after_jobs: why.map(|_| jobs.iter().filter(|(job, _)| before(job)).count()),
                    its_jobs_before: jobs
                        .iter()
                        .filter(|(job, _)| before(job) && job.executions.iter().any(|e| e.worker == *worker))
                        .count(),
                    lies: jobs.iter().filter(|(job, expected)| wrong_execution(job, expected, worker)).count(),
                    reason: why.map(|q| q.reason.clone()),
                }
            })
            .collect();
        let honest_quarantined =
            attacked.quarantined.keys().filter(|id| !adversary_kind.contains_key(id.as_str())).cloned().collect();

        let (mut corrected, mut tainted_corrected, mut reexecutions) = (0, 0, 0);
        let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
        for (job, expected) in &jobs {
            reexecutions += job.executions.len().saturating_sub(1);
            let Some(verification) = &job.verification else { continue };
            *verdicts.entry(verdict_name(&verification.outcome).to_string()).or_insert(0) += 1;
            reexecutions += usize::from(verification.outcome != VerificationOutcome::Vouched);
            if verification.corrected.is_some() {
                corrected += 1;
                let caught_before = attacked.quarantined.iter().any(|(worker, q)| {
                    q.at_ms < verification.at_ms && q.job != job.id && wrong_execution(job, expected, worker)
                });
                tainted_corrected += usize::from(caught_before);
            }
        }
        let accepted = jobs
            .iter()
            .filter(|(job, expected)| job.acceptance().is_some_and(Acceptance::is_accepted) && right(job, expected))
            .count();
        let throughput_per_s = accepted_throughput(attacked);
        let honest_throughput_per_s = baseline.map(accepted_throughput);
        let report = &attacked.report;
        let workers = options.mix.workers;
        ByzantineReport {
            command,
            workers,
            malicious: adversaries.len(),
            malicious_fraction: adversaries.len() as f64 / workers.max(1) as f64,
            adversary_kinds: adversaries
                .iter()
                .map(|(_, kind)| kind.name().to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            verifiers: options.mix.verifiers,
            verification: options.verification().as_str().to_string(),
            submitted: report.submitted,
            accepted,
            accepted_fraction: accepted as f64 / report.submitted.max(1) as f64,
            wrong_accepted: report.wrong_accepted,
            succeeded: report.succeeded,
            wrong: report.wrong,
            failed: report.failed,
            lost: report.lost,
            acceptance: report.acceptance.clone(),
            throughput_per_s,
            honest_throughput_per_s,
            throughput_ratio: honest_throughput_per_s.filter(|h| *h > 0.0).map(|h| throughput_per_s / h),
            quarantined,
            honest_quarantined,
            corrected,
            tainted_corrected,
            verdicts,
            reexecutions_per_job: reexecutions as f64 / report.submitted.max(1) as f64,
            min_accepted: options.min_accepted,
            min_throughput_ratio: options.min_throughput_ratio,
            run: report.clone(),
            baseline: baseline.map(|b| b.report.clone()),
        }
    }

    /// Adversaries never quarantined.
    pub fn uncaught(&self) -> Vec<&str> {
        self.quarantined.iter().filter(|c| c.caught_after_jobs.is_none()).map(|c| c.worker.as_str()).collect()
    }

    /// The passing bar's parts, each with whether it was met.
    fn checks(&self) -> Vec<(String, bool)> {
        let (min_accepted, min_ratio) = (self.min_accepted, self.min_throughput_ratio);
        vec![
            (format!("no accepted result wrong ({} wrong)", self.wrong_accepted), self.wrong_accepted == 0),
            (
                format!(
                    "at least {:.1} % accepted with the right output ({:.2} %)",
                    min_accepted * 100.0,
                    self.accepted_fraction * 100.0
                ),
                self.accepted_fraction >= min_accepted,
            ),
            (format!("every adversary quarantined (uncaught: {:?})", self.uncaught()), self.uncaught().is_empty()),
            (
                format!("no honest worker quarantined ({:?})", self.honest_quarantined),
                self.honest_quarantined.is_empty(),
            ),
            (format!("nothing lost ({})", self.lost), self.lost == 0),
            (
                format!(
                    "throughput at least {:.0} % of the honest run's ({})",
                    min_ratio * 100.0,
                    self.throughput_ratio.map_or("no baseline".into(), |r| format!("{:.0} %", r * 100.0))
                ),
                self.throughput_ratio.is_none_or(|r| r >= min_ratio),
            ),
        ]
    }
}

/// Accepted jobs per second of `run`, from its first job created to its last verdict.
fn accepted_throughput(run: &MixRun) -> f64 {
    let accepted: Vec<&Job> =
        run.finished.values().filter(|job| job.acceptance().is_some_and(Acceptance::is_accepted)).collect();
    let first = accepted.iter().map(|job| job.created_at_ms).min().unwrap_or(0);
    let last = accepted
        .iter()
        .map(|job| job.verification.as_ref().map_or(job.updated_at_ms, |v| v.at_ms.max(job.updated_at_ms)))
        .max()
        .unwrap_or(0);
    if last <= first {
        return 0.0;
    }
    accepted.len() as f64 / ((last - first) as f64 / 1000.0)
}

/// The name of a verdict, as in the API.
pub(crate) fn verdict_name(outcome: &VerificationOutcome) -> &'static str {
    match outcome {
        VerificationOutcome::Agreed => "agreed",
        VerificationOutcome::Vouched => "vouched",
        VerificationOutcome::Replicated { .. } => "replicated",
        VerificationOutcome::Disagreed { .. } => "disagreed",
        VerificationOutcome::Contradicted { .. } => "contradicted",
        VerificationOutcome::Refused { .. } => "refused",
        VerificationOutcome::Denied { .. } => "denied",
        VerificationOutcome::Inconclusive { .. } => "inconclusive",
    }
}

impl RunReport for ByzantineReport {
    fn summary(&self) -> String {
        let failed: Vec<String> = self.checks().into_iter().filter(|(_, ok)| !ok).map(|(what, _)| what).collect();
        format!(
            "byzantine: {} of {} workers adversarial; {}/{} accepted, {} wrongly; {} of {} adversaries caught; {:.1} jobs/s{}; {}\n",
            self.malicious,
            self.workers,
            self.accepted,
            self.submitted,
            self.wrong_accepted,
            self.malicious - self.uncaught().len(),
            self.malicious,
            self.throughput_per_s,
            self.honest_throughput_per_s.map_or(String::new(), |h| format!(" (honest {h:.1})")),
            if failed.is_empty() { "PASSED".to_string() } else { format!("FAILED: {}", failed.join("; ")) },
        )
    }

    fn passed(&self) -> bool {
        self.checks().iter().all(|(_, ok)| *ok)
    }

    fn documents(&self, _name: &str) -> Vec<(&'static str, String)> {
        let mut md = String::new();
        let _ = writeln!(md, "# Shoal byzantine run\n\n```\n{}\n```\n", self.command);
        for (what, ok) in self.checks() {
            let _ = writeln!(md, "- {} {what}", if ok { "✔" } else { "✘" });
        }
        let _ = writeln!(md);
        let ratio = self.throughput_ratio.map_or("–".into(), |r| format!("{:.2}", r));
        figure_table(
            &mut md,
            &[
                (
                    "workers (adversaries)",
                    format!("{} ({}, {:.0} %)", self.workers, self.malicious, self.malicious_fraction * 100.0),
                ),
                ("adversary kinds", self.adversary_kinds.join(", ")),
                ("verifiers / policy", format!("{} / {}", self.verifiers, self.verification)),
                ("submitted", self.submitted.to_string()),
                (
                    "accepted with the right output",
                    format!("{} ({:.2} %)", self.accepted, self.accepted_fraction * 100.0),
                ),
                ("accepted with a wrong output", self.wrong_accepted.to_string()),
                ("succeeded (right output) / wrong at the end", format!("{} / {}", self.succeeded, self.wrong)),
                ("failed / lost", format!("{} / {}", self.failed, self.lost)),
                ("corrected (of which tainted)", format!("{} ({})", self.corrected, self.tainted_corrected)),
                ("re-executions per job", format!("{:.2}", self.reexecutions_per_job)),
                ("throughput, accepted jobs/s", format!("{:.1}", self.throughput_per_s)),
                (
                    "honest baseline, same command",
                    self.honest_throughput_per_s.map_or("–".into(), |h| format!("{h:.1}")),
                ),
                ("ratio", ratio),
            ],
        );
        counts_line(&mut md, "Verdicts", &self.verdicts);
        counts_line(&mut md, "Succeeded by acceptance", &self.acceptance);
        let _ = writeln!(md, "\n## Adversaries\n\n| worker | kind | caught after jobs | its jobs by then | wrong results settled | reason |\n|---|---|---|---|---|---|");
        for c in &self.quarantined {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                c.worker,
                c.kind,
                c.caught_after_jobs.map_or("NOT CAUGHT".into(), |n| n.to_string()),
                c.its_jobs_before,
                c.lies,
                c.reason.as_deref().unwrap_or("–").replace('|', "\\|")
            );
        }
        examples_section(&mut md, &self.run.examples);
        vec![("md", md)]
    }
}
