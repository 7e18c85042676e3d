//! Locality as every mode counts it: cache hits and local tasks over succeeded jobs, mean
//! execution times, a time series with live workers, the warm-up curve by jobs; the
//! [`LocalityTally`] that counts them, the [`Locality`] figures a real run reports, and their
//! Markdown pieces. The simulation and the real locality run both count through this module, so
//! their figures mean the same.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_jobs::{now_ms, ExecutionOutcome, ExecutionResult, Job, Membership};

use crate::report::{quantile, ratio};

/// How often [`sample_live`] samples the live membership.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One bucket of the time series (by when jobs finished).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket, seconds since submissions began.
    pub at_s: f64,
    /// Jobs finished in the bucket, per second.
    pub throughput_per_s: f64,
    /// 99th percentile of created → finished of those jobs, in (real) milliseconds.
    pub p99_ms: f64,
    /// Inputs of those jobs that their worker held already, over all their inputs.
    pub cache_hit_rate: f64,
    /// Those jobs that ran on a worker holding all their inputs, over those jobs.
    pub local_task_rate: f64,
    /// The most workers the membership listed as live during the bucket.
    pub live_workers: usize,
}

/// Mean times of the executions that produced succeeded jobs, as the executor measured them
/// (`ExecutionResult::fetch_ms`, `run_ms`, and the execution's start to finish): what a
/// simulation's cost model is set from to stand for a real run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutionTimes {
    /// Fetching program and inputs, for jobs whose worker held all their inputs.
    pub fetch_ms_local: f64,
    /// Fetching, for jobs whose worker lacked an input.
    pub fetch_ms_remote: f64,
    /// Running the program.
    pub run_ms: f64,
    /// The whole execution, from its start being recorded to its outcome being recorded.
    pub execution_ms: f64,
}

/// One succeeded job as locality sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLocality {
    /// The job.
    pub id: String,
    /// The worker whose execution produced the result.
    pub worker: String,
    /// The CIDs of its inputs, in order.
    pub inputs: Vec<String>,
    /// How many the worker held already (`ExecutionResult::inputs_cached`).
    pub inputs_cached: u32,
    /// When that execution started, ms since the epoch.
    pub started_at_ms: u64,
    /// When the job finished (its record's last update), ms since the epoch.
    pub finished_at_ms: u64,
}

/// Cache hits over a run of consecutive jobs in the order they finished: the warm-up curve by
/// jobs rather than by time, so runs of different speeds compare job for job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsBucket {
    /// Jobs that finished before these.
    pub after_jobs: usize,
    /// Jobs in the bucket.
    pub jobs: usize,
    /// Their inputs already held over all their inputs.
    pub cache_hit_rate: f64,
    /// Those of them whose worker held all their inputs.
    pub local_task_rate: f64,
}

/// Per-bucket sums while tallying.
#[derive(Default, Clone)]
struct BucketSums {
    latencies: Vec<f64>,
    inputs: u64,
    cached: u64,
    jobs: u64,
    local: u64,
}

/// Sums of cache hits, local jobs, times and a per-bucket series over succeeded jobs: the one
/// place the simulation and the real locality run count them, so their figures mean the same.
#[derive(Default)]
pub struct LocalityTally {
    t0_ms: u64,
    bucket_ms: u64,
    inputs: u64,
    cached: u64,
    jobs: u64,
    local: u64,
    buckets: BTreeMap<u64, BucketSums>,
    fetch_local: (u64, u64),
    fetch_remote: (u64, u64),
    run_ms: u64,
    execution_ms: u64,
    records: Vec<JobLocality>,
}

impl LocalityTally {
    /// A tally whose series starts at `t0_ms` (ms since the epoch) in buckets of `bucket_ms`.
    pub fn new(t0_ms: u64, bucket_ms: u64) -> LocalityTally {
        LocalityTally { t0_ms, bucket_ms: bucket_ms.max(1), ..LocalityTally::default() }
    }

    /// Counts succeeded `job`, whose `result` was checked, finished `latency_ms` after it was
    /// created.
    pub fn add(&mut self, job: &Job, result: &ExecutionResult, latency_ms: f64) {
        let held = u64::from(result.inputs_cached);
        let count = job.spec.inputs.len() as u64;
        let local = held >= count;
        self.inputs += count;
        self.cached += held;
        self.jobs += 1;
        self.local += u64::from(local);
        let sums = self.buckets.entry(job.updated_at_ms.saturating_sub(self.t0_ms) / self.bucket_ms).or_default();
        sums.latencies.push(latency_ms);
        sums.inputs += count;
        sums.cached += held;
        sums.jobs += 1;
        sums.local += u64::from(local);
        let fetch = if local { &mut self.fetch_local } else { &mut self.fetch_remote };
        fetch.0 += result.fetch_ms;
        fetch.1 += 1;
        self.run_ms += result.run_ms;
        // The execution that produced the result: the last completed one with its output.
        let execution = job
            .executions
            .iter()
            .rev()
            .find(|e| matches!(&e.outcome, Some(ExecutionOutcome::Completed(r)) if r.output == result.output));
        if let Some(execution) = execution {
            self.execution_ms +=
                execution.finished_at_ms.unwrap_or(execution.started_at_ms).saturating_sub(execution.started_at_ms);
            self.records.push(JobLocality {
                id: job.id.clone(),
                worker: execution.worker.clone(),
                inputs: job.spec.inputs.iter().map(|i| i.cid.to_string()).collect(),
                inputs_cached: result.inputs_cached,
                started_at_ms: execution.started_at_ms,
                finished_at_ms: job.updated_at_ms,
            });
        }
    }

    /// Inputs already held over all inputs.
    pub fn cache_hit_rate(&self) -> f64 {
        ratio(self.cached, self.inputs)
    }

    /// Jobs whose worker held all their inputs over all jobs counted.
    pub fn local_task_rate(&self) -> f64 {
        ratio(self.local, self.jobs)
    }

    /// Mean execution times.
    pub fn times(&self) -> ExecutionTimes {
        let mean = |sum: u64, n: u64| if n == 0 { 0.0 } else { sum as f64 / n as f64 };
        ExecutionTimes {
            fetch_ms_local: mean(self.fetch_local.0, self.fetch_local.1),
            fetch_ms_remote: mean(self.fetch_remote.0, self.fetch_remote.1),
            run_ms: mean(self.run_ms, self.jobs),
            execution_ms: mean(self.execution_ms, self.records.len() as u64),
        }
    }

    /// Hit and local rates over every `chunk` jobs in the order they finished (the last bucket
    /// holds the rest).
    pub fn by_jobs(&self, chunk: usize) -> Vec<JobsBucket> {
        let mut records: Vec<&JobLocality> = self.records.iter().collect();
        records.sort_by_key(|r| (r.finished_at_ms, r.started_at_ms));
        records
            .chunks(chunk.max(1))
            .enumerate()
            .map(|(i, jobs)| {
                let inputs: u64 = jobs.iter().map(|j| j.inputs.len() as u64).sum();
                let cached: u64 = jobs.iter().map(|j| u64::from(j.inputs_cached)).sum();
                let local = jobs.iter().filter(|j| j.inputs_cached as usize >= j.inputs.len()).count() as u64;
                JobsBucket {
                    after_jobs: i * chunk.max(1),
                    jobs: jobs.len(),
                    cache_hit_rate: ratio(cached, inputs),
                    local_task_rate: ratio(local, jobs.len() as u64),
                }
            })
            .collect()
    }

    /// The counted jobs, in the order counted.
    pub fn records(&self) -> &[JobLocality] {
        &self.records
    }

    /// Width of a bucket in seconds.
    pub fn bucket_s(&self) -> f64 {
        self.bucket_ms as f64 / 1000.0
    }

    /// The series from the first bucket to the last with a job, with the most live workers of
    /// `live` samples (ms since the epoch, count) in each.
    pub fn series(&self, live: &[(u64, usize)]) -> Vec<Bucket> {
        let last_bucket = self.buckets.keys().next_back().copied().unwrap_or(0);
        (0..=last_bucket)
            .map(|b| {
                let mut sums = self.buckets.get(&b).cloned().unwrap_or_default();
                sums.latencies.sort_by(f64::total_cmp);
                let (from, to) = (self.t0_ms + b * self.bucket_ms, self.t0_ms + (b + 1) * self.bucket_ms);
                Bucket {
                    at_s: (b * self.bucket_ms) as f64 / 1000.0,
                    throughput_per_s: sums.jobs as f64 / self.bucket_s(),
                    p99_ms: quantile(&sums.latencies, 0.99),
                    cache_hit_rate: ratio(sums.cached, sums.inputs),
                    local_task_rate: ratio(sums.local, sums.jobs),
                    live_workers: live.iter().filter(|(at, _)| (from..to).contains(at)).map(|s| s.1).max().unwrap_or(0),
                }
            })
            .collect()
    }
}

/// The locality figures of a real run with the locality workload, at the top level of its
/// report under the same names as in the simulation's, so the two compare field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Locality {
    /// Worker processes started.
    pub workers: usize,
    /// The catalogue's exact size in bytes.
    pub catalogue_bytes: u64,
    /// Items in the catalogue.
    pub catalogue_items: u64,
    /// Each worker's input cache, bytes.
    pub cache_bytes: u64,
    /// Inputs that were in their worker's input cache already, over all inputs of succeeded jobs.
    pub cache_hit_rate: f64,
    /// Succeeded jobs that ran on a worker that already held all their inputs.
    pub local_task_rate: f64,
    /// Users submitting at once.
    pub users: usize,
    /// Distinct programs.
    pub programs: usize,
    /// Jobs each user kept outstanding at most.
    pub outstanding_per_user: usize,
    /// Shard streams.
    pub shards: u32,
    /// Mean execution times of succeeded jobs.
    pub execution_times: ExecutionTimes,
    /// The time series, one bucket per `bucket_s`.
    pub series: Vec<Bucket>,
    /// Width of a bucket in seconds.
    pub bucket_s: f64,
    /// Hit and local rates per [`BY_JOBS`] jobs in the order they finished.
    pub by_jobs: Vec<JobsBucket>,
    /// Every succeeded job's locality (not part of the JSON: thousands of lines).
    #[serde(skip)]
    pub jobs: Vec<JobLocality>,
}

/// Jobs per bucket of the warm-up curve by jobs ([`LocalityTally::by_jobs`]).
pub const BY_JOBS: usize = 500;

/// The warm-up curve as one line: hit rates per bucket of jobs.
pub fn by_jobs_line(buckets: &[JobsBucket]) -> String {
    let rates: Vec<String> = buckets.iter().map(|b| format!("{:.1}%", b.cache_hit_rate * 100.0)).collect();
    format!("Cache hit rate per {BY_JOBS} jobs in the order they finished: {}", rates.join(", "))
}

/// The time series as a Markdown table, header included.
pub fn series_table(md: &mut String, series: &[Bucket]) {
    let _ =
        writeln!(md, "| t (s) | jobs/s | p99 ms | hit rate | local rate | live workers |\n|---|---|---|---|---|---|");
    for bucket in series {
        let _ = writeln!(
            md,
            "| {:.0} | {:.1} | {:.0} | {:.1}% | {:.1}% | {} |",
            bucket.at_s,
            bucket.throughput_per_s,
            bucket.p99_ms,
            bucket.cache_hit_rate * 100.0,
            bucket.local_task_rate * 100.0,
            bucket.live_workers
        );
    }
}

/// Mean execution times as one table cell.
pub fn times_row(t: &ExecutionTimes) -> String {
    format!(
        "fetch {:.1} ms when local, {:.1} ms otherwise; run {:.1} ms; whole execution {:.1} ms",
        t.fetch_ms_local, t.fetch_ms_remote, t.run_ms, t.execution_ms
    )
}

/// Records (ms since the epoch, live workers) every second, until aborted.
pub async fn sample_live(membership: Membership, within: Duration, samples: Arc<Mutex<Vec<(u64, usize)>>>) {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    loop {
        ticks.tick().await;
        if let Ok(live) = membership.live(within).await {
            samples.lock().expect("never poisoned").push((now_ms(), live.len()));
        }
    }
}
