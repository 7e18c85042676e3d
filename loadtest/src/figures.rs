//! The base report: the figures every mode counts the same way (jobs planned, accepted,
//! succeeded with the expected output, failed, lost, wrong, duplicated; latencies, throughput;
//! faults injected), and [`assess_jobs`], which counts a run's jobs into them. The reliability
//! harness reports a [`Report`] as it is; the simulation's and the scenes' reports carry one each.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use shoal_jobs::{ExecutionOutcome, Job, JobState};

use crate::api::Submitted;
use crate::locality::{Locality, LocalityTally};
use crate::report::quantile;

/// Examples of problems kept in a report.
pub const MAX_EXAMPLES: usize = 20;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Seconds since submissions began.
    pub at_s: f64,
    /// `kill_worker`, `kill_verifier`, `pause_worker`, `resume_worker`, `restart_redis`,
    /// `restart_gateway`.
    pub kind: String,
    /// What it was done to (a worker id, `redis`, `gateway`).
    pub target: String,
    /// What followed (the replacement worker, how long the restart took) or what went wrong.
    pub detail: String,
    /// Whether the fault and its recovery step worked.
    pub ok: bool,
}

impl FaultRecord {
    /// How many of `faults` there were of each kind.
    pub fn by_kind(faults: &[FaultRecord]) -> BTreeMap<String, usize> {
        faults.iter().fold(BTreeMap::new(), |mut map, f| {
            *map.entry(f.kind.clone()).or_insert(0) += 1;
            map
        })
    }
}

/// Everything measured in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The command line that produced this report.
    pub command: String,
    /// When the run started (seconds since the Unix epoch).
    pub started_at_unix_s: u64,
    /// Jobs planned.
    pub planned: usize,
    /// Jobs the gateway accepted (an id came back).
    pub submitted: usize,
    /// Planned jobs never accepted (refused or no answer before the deadline).
    pub not_submitted: usize,
    /// Why submissions were refused, by reason.
    pub not_submitted_reasons: BTreeMap<String, usize>,
    /// Jobs that succeeded with the expected output CID.
    pub succeeded: usize,
    /// Jobs that ended `failed` or `cancelled`.
    pub failed: usize,
    /// Failed jobs by failure reason.
    pub failed_by_reason: BTreeMap<String, usize>,
    /// Accepted jobs that never finished by the end of the run, or whose record disappeared.
    pub lost: usize,
    /// Lost jobs by their last state (`queued`, `running`, `missing`, `unreadable`).
    pub lost_by_state: BTreeMap<String, usize>,
    /// Jobs that succeeded with an output CID other than the expected one.
    pub wrong: usize,
    /// With verifiers: succeeded jobs by acceptance (`verified`, `corrected`, `unsampled`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acceptance: BTreeMap<String, usize>,
    /// With verifiers: jobs reported as accepted (verified or corrected).
    #[serde(default)]
    pub accepted: usize,
    /// With verifiers: jobs reported as accepted with an output other than the expected one —
    /// what must never happen.
    #[serde(default)]
    pub wrong_accepted: usize,
    /// Jobs with two completed executions of different outputs, plus jobs the gateway lists
    /// that no accepted submission returned (a key that made two jobs).
    pub duplicates: usize,
    /// Jobs run more than once (a redelivery after a fault); harmless when the outputs agree.
    pub reexecuted: usize,
    /// Submissions that needed more than one request (gateway or Redis away).
    pub submit_retries: usize,
    /// Submissions answered by replaying an earlier attempt's job (Idempotency-Key at work).
    pub submit_replays: usize,
    /// Median of created → finished, over finished jobs, in milliseconds (server clocks).
    pub p50_ms: f64,
    /// 95th percentile of created → finished.
    pub p95_ms: f64,
    /// 99th percentile of created → finished.
    pub p99_ms: f64,
    /// Largest created → finished.
    pub max_ms: f64,
    /// Finished jobs per second, from the first job created to the last finished.
    pub throughput_per_s: f64,
    /// Seconds from the first submission to the end of waiting.
    pub duration_s: f64,
    /// Whether the run ended by hitting --deadline-secs or the stall limit rather than finishing.
    pub ended_early: Option<String>,
    /// Every fault injected, in order.
    pub faults_injected: Vec<FaultRecord>,
    /// Faults by kind.
    pub faults_by_kind: BTreeMap<String, usize>,
    /// Jobs planned by kind.
    pub jobs_by_kind: BTreeMap<String, usize>,
    /// Whether workers ran with `--visibility-timeout-secs` (reclaim of others' entries).
    pub workers_reclaim: bool,
    /// Up to [`MAX_EXAMPLES`] examples of lost, wrong or duplicated jobs, for debugging.
    pub examples: Vec<String>,
    /// With the locality workload: workers, catalogue, cache hit and local task rates, a time
    /// series — at the top level, named as in the simulation's report.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    /// Latencies of finished jobs in milliseconds, for the histogram (not part of the JSON).
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

impl Report {
    /// Sets the latency quantiles from `latencies_ms`, and the throughput: `finished` jobs from
    /// the first created (`first_created_ms`) to the last finished (`last_finished_ms`), both in
    /// ms since the Unix epoch.
    pub fn summarise(&mut self, finished: usize, first_created_ms: u64, last_finished_ms: u64) {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        self.p50_ms = quantile(&sorted, 0.50);
        self.p95_ms = quantile(&sorted, 0.95);
        self.p99_ms = quantile(&sorted, 0.99);
        self.max_ms = sorted.last().copied().unwrap_or(0.0);
        if last_finished_ms > first_created_ms {
            self.throughput_per_s = finished as f64 / ((last_finished_ms - first_created_ms) as f64 / 1000.0);
        }
    }

    /// A report of a run of `planned` jobs started by `command` at `started_at_unix_s`, with
    /// nothing counted yet.
    pub fn empty(command: String, started_at_unix_s: u64, planned: usize) -> Report {
        Report { command, started_at_unix_s, planned, ..Report::default() }
    }

    /// An empty report of a run through a faulted process stack: how long it took, whether it
    /// ended early, the faults done, and whether the workers reclaimed dead ones' entries.
    pub fn of_faulted_run(
        base: Report,
        duration_s: f64,
        ended_early: Option<String>,
        faults: Vec<FaultRecord>,
        workers_reclaim: bool,
    ) -> Report {
        Report {
            duration_s,
            ended_early,
            faults_by_kind: FaultRecord::by_kind(&faults),
            faults_injected: faults,
            workers_reclaim,
            ..base
        }
    }

    /// Whether every accepted job finished once, correctly, with nothing lost, and (with
    /// verifiers) every result was decided on and none wrongly accepted.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.wrong == 0
            && self.duplicates == 0
            && self.failed == 0
            && self.not_submitted == 0
            && self.wrong_accepted == 0
            && !self.acceptance.contains_key("pending")
    }

    /// Adds `text` to the examples of problems, unless there are [`MAX_EXAMPLES`] already.
    pub fn example(&mut self, text: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(text);
        }
    }

    /// Counts a submission as accepted (with its retries and replays) or not submitted (by
    /// reason); whether it was accepted.
    pub fn count_submission(&mut self, submitted: &Submitted) -> bool {
        match submitted {
            Submitted::Accepted { attempts, .. } | Submitted::Replayed { attempts, .. } => {
                self.submitted += 1;
                self.submit_retries += usize::from(*attempts > 1);
                self.submit_replays += usize::from(matches!(submitted, Submitted::Replayed { .. }));
                true
            }
            Submitted::Refused { reason } => {
                self.not_submitted += 1;
                let short: String = reason.split(':').next().unwrap_or(reason).chars().take(60).collect();
                *self.not_submitted_reasons.entry(short).or_insert(0) += 1;
                false
            }
        }
    }

    /// Counts as duplicates the jobs the gateway `listed` that no accepted submission returned
    /// (a key that made two jobs); notes it if the listing failed.
    pub fn count_unreturned(&mut self, listed: Result<Vec<String>, String>, accepted: &HashSet<&str>) {
        match listed {
            Ok(ids) => {
                let extra: Vec<&String> = ids.iter().filter(|id| !accepted.contains(id.as_str())).collect();
                self.duplicates += extra.len();
                if let Some(first) = extra.first() {
                    self.example(format!(
                        "{} jobs in the system that no submission returned, e.g. {first}",
                        extra.len()
                    ));
                }
            }
            Err(e) => self.example(format!("could not list jobs to look for duplicates: {e}")),
        }
    }
}

/// The distinct outputs of `job`'s completed executions: more than one is a duplicate.
pub fn completed_outputs(job: &Job) -> HashSet<String> {
    job.executions
        .iter()
        .filter_map(|e| match &e.outcome {
            Some(ExecutionOutcome::Completed(result)) => Some(result.output.to_string()),
            _ => None,
        })
        .collect()
}

/// One planned job as the assessment sees it.
pub struct Assessed<'a> {
    /// Its kind, for `jobs_by_kind` (`program-N`).
    pub kind: String,
    /// The output a correct run produces.
    pub expected: &'a cid::Cid,
    /// How its submission went.
    pub submitted: &'a Submitted,
    /// Its record at the end (`None`: never accepted, or unreadable).
    pub record: Option<&'a Job>,
}

/// Counts every job into `base` (accepted, succeeded with the expected output, wrong, failed,
/// lost, duplicated, re-executed; latencies, quantiles, throughput) and its locality into
/// `tally`: the assessment the simulation and the real locality run share.
pub fn assess_jobs<'a>(base: &mut Report, jobs: impl IntoIterator<Item = Assessed<'a>>, tally: &mut LocalityTally) {
    let (mut first_created, mut last_finished) = (u64::MAX, 0u64);
    for Assessed { kind, expected, submitted, record } in jobs {
        *base.jobs_by_kind.entry(kind).or_insert(0) += 1;
        if !base.count_submission(submitted) {
            continue;
        }
        let Some(job) = record else {
            base.lost += 1;
            *base.lost_by_state.entry("missing".into()).or_insert(0) += 1;
            continue;
        };
        let outputs = completed_outputs(job);
        if outputs.len() > 1 {
            base.duplicates += 1;
            base.example(format!("job {} completed with {} different outputs", job.id, outputs.len()));
        }
        base.reexecuted += usize::from(job.executions.len() > 1);
        match job.state {
            JobState::Succeeded => {
                let Some(result) = &job.result else {
                    base.wrong += 1;
                    base.example(format!("job {} succeeded without a result", job.id));
                    continue;
                };
                if result.output.cid() != expected {
                    base.wrong += 1;
                    base.example(format!("job {} output {} but expected {expected}", job.id, result.output));
                    continue;
                }
                base.succeeded += 1;
                let latency = job.updated_at_ms.saturating_sub(job.created_at_ms) as f64;
                base.latencies_ms.push(latency);
                first_created = first_created.min(job.created_at_ms);
                last_finished = last_finished.max(job.updated_at_ms);
                tally.add(job, result, latency);
            }
            JobState::Failed | JobState::Cancelled => {
                base.failed += 1;
                let reason = job.failure.as_ref().map_or_else(|| job.state.to_string(), |f| f.reason.to_string());
                let message = job.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default();
                *base.failed_by_reason.entry(reason).or_insert(0) += 1;
                base.example(format!("job {} failed: {message}", job.id));
            }
            JobState::Queued | JobState::Running => {
                base.lost += 1;
                *base.lost_by_state.entry(job.state.to_string()).or_insert(0) += 1;
                base.example(format!("job {} lost: last state {}", job.id, job.state));
            }
        }
    }
    base.summarise(base.latencies_ms.len(), first_created, last_finished);
}
