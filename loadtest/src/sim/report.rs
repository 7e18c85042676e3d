//! The report of a simulated run: the reliability harness's [`Report`] figures at the top level,
//! plus the scale figures and a time series; JSON, Markdown and an SVG plot over time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_jobs::{ExecutionOutcome, ExecutionResult, Job};

use crate::error::{LoadtestError, Result};
use crate::report::{quantile, Report};

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

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The locality figures of a real run with the locality workload, at the top level of its
/// [`Report`] under the same names as in a [`SimReport`], so the two compare field by field.
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

/// Everything measured in one simulated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// The reliability harness's figures (faults are always none here).
    #[serde(flatten)]
    pub base: Report,
    /// Workers started over the run.
    pub workers: usize,
    /// Workers started at the beginning.
    pub initial_workers: usize,
    /// When the others joined (seconds since submissions began), if they did.
    pub join_at_s: Option<f64>,
    /// The catalogue's exact size in bytes.
    pub catalogue_bytes: u64,
    /// Items in the catalogue.
    pub catalogue_items: u64,
    /// Inputs that were in their worker's cache already, over all inputs of succeeded jobs.
    pub cache_hit_rate: f64,
    /// Succeeded jobs that ran on a worker that already held all their inputs.
    pub local_task_rate: f64,
    /// Users submitting at once.
    pub users: usize,
    /// Distinct programs.
    pub programs: usize,
    /// Shard streams.
    pub shards: u32,
    /// Real seconds per simulated second: latencies and throughput are real; multiply
    /// latencies by `1 / time_scale` for simulated time.
    pub time_scale: f64,
    /// The most workers the membership listed as live at once.
    pub peak_live_workers: usize,
    /// Mean execution times of succeeded jobs (simulated costs scaled to real time).
    pub execution_times: ExecutionTimes,
    /// The simulation settings, as `name = value` lines, for reading the figures.
    pub settings: Vec<String>,
    /// The time series, one bucket per `bucket_s`.
    pub series: Vec<Bucket>,
    /// Width of a bucket in seconds.
    pub bucket_s: f64,
    /// Hit and local rates per [`BY_JOBS`] jobs in the order they finished.
    pub by_jobs: Vec<JobsBucket>,
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

impl SimReport {
    /// Accepted jobs that succeeded with the expected output, over accepted jobs (0 if none).
    pub fn success_rate(&self) -> f64 {
        if self.base.submitted == 0 {
            0.0
        } else {
            self.base.succeeded as f64 / self.base.submitted as f64
        }
    }

    /// Writes `PREFIX.json`, `PREFIX.md` and `PREFIX.svg`.
    pub fn write(&self, prefix: &Path) -> Result<()> {
        if let Some(parent) = prefix.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| LoadtestError::io(format!("creating {}", parent.display()), e))?;
        }
        let with = |ext: &str| {
            let mut name = prefix.as_os_str().to_owned();
            name.push(format!(".{ext}"));
            PathBuf::from(name)
        };
        let svg_path = with("svg");
        let svg_name = svg_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let json = serde_json::to_string_pretty(self).expect("a report always serialises");
        for (path, text) in
            [(with("json"), json + "\n"), (with("md"), self.markdown(&svg_name)), (svg_path, self.svg())]
        {
            std::fs::write(&path, text).map_err(|e| LoadtestError::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// The report for people.
    pub fn markdown(&self, svg_name: &str) -> String {
        let b = &self.base;
        let mut md = String::new();
        let _ = writeln!(md, "# Shoal scale simulation: {} workers\n\n```\n{}\n```\n", self.workers, b.command);
        let _ = writeln!(
            md,
            "**success {:.3}%** ({} of {} accepted jobs succeeded with the expected output)\n",
            self.success_rate() * 100.0,
            b.succeeded,
            b.submitted
        );
        let _ = writeln!(md, "| figure | value |\n|---|---|");
        let join = match self.join_at_s {
            Some(at) => format!(
                "{} at start, {} joined at {at:.0} s",
                self.initial_workers,
                self.workers - self.initial_workers
            ),
            None => format!("{} at start", self.initial_workers),
        };
        let rows: Vec<(&str, String)> = vec![
            ("workers", join),
            ("peak live workers (membership)", self.peak_live_workers.to_string()),
            ("catalogue", format!("{} items, {}", self.catalogue_items, human_bytes(self.catalogue_bytes))),
            ("users / programs", format!("{} / {}", self.users, self.programs)),
            ("shards", self.shards.to_string()),
            ("submitted (accepted)", b.submitted.to_string()),
            ("not submitted", b.not_submitted.to_string()),
            ("succeeded (expected CID)", b.succeeded.to_string()),
            ("failed", b.failed.to_string()),
            ("lost", b.lost.to_string()),
            ("wrong output CID", b.wrong.to_string()),
            ("duplicates", b.duplicates.to_string()),
            ("re-executed (same output)", b.reexecuted.to_string()),
            ("cache hit rate", format!("{:.1}%", self.cache_hit_rate * 100.0)),
            ("local task rate", format!("{:.1}%", self.local_task_rate * 100.0)),
            ("execution (mean, real)", times_row(&self.execution_times)),
            (
                "latency p50 / p95 / p99 / max (real)",
                format!("{:.0} / {:.0} / {:.0} / {:.0} ms", b.p50_ms, b.p95_ms, b.p99_ms, b.max_ms),
            ),
            ("throughput (real)", format!("{:.1} jobs/s", b.throughput_per_s)),
            ("duration", format!("{:.1} s", b.duration_s)),
            ("time scale", format!("{} real s per simulated s", self.time_scale)),
            ("ended early", b.ended_early.clone().unwrap_or_else(|| "no".into())),
        ];
        for (name, value) in rows {
            let _ = writeln!(md, "| {name} | {value} |");
        }
        if !b.failed_by_reason.is_empty() {
            let reasons: Vec<String> = b.failed_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(md, "\nFailed by reason: {}", reasons.join(", "));
        }
        if !b.lost_by_state.is_empty() {
            let states: Vec<String> = b.lost_by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(md, "\nLost by last state: {}", states.join(", "));
        }
        let _ = writeln!(md, "\n{}", by_jobs_line(&self.by_jobs));
        let _ = writeln!(md, "\n![throughput, p99 latency and cache hit rate over time]({svg_name})\n");
        let _ = writeln!(md, "## Settings\n\n```");
        for line in &self.settings {
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(md, "```\n\n## Time series ({} s buckets)\n", self.bucket_s);
        series_table(&mut md, &self.series);
        if !b.examples.is_empty() {
            let _ = writeln!(md, "\n## Examples of problems\n");
            for example in &b.examples {
                let _ = writeln!(md, "- {example}");
            }
        }
        md
    }

    /// Throughput (with live workers), p99 latency and cache hit rate over time, in three
    /// stacked panels sharing the time axis, the join marked by a dashed line.
    pub fn svg(&self) -> String {
        const W: f64 = 900.0;
        const PANEL: f64 = 170.0;
        const GAP: f64 = 40.0;
        const LEFT: f64 = 70.0;
        const RIGHT: f64 = 70.0;
        const TOP: f64 = 50.0;
        let height = TOP + 3.0 * (PANEL + GAP) + 20.0;
        let end = self.series.last().map_or(1.0, |b| b.at_s + self.bucket_s).max(1.0);
        let plot_w = W - LEFT - RIGHT;
        let x = |t: f64| LEFT + t / end * plot_w;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" viewBox=\"0 0 {W} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{} workers, {} catalogue: success {:.3}%, hit rate {:.1}%, local {:.1}%</text>\n",
            W / 2.0,
            self.workers,
            human_bytes(self.catalogue_bytes),
            self.success_rate() * 100.0,
            self.cache_hit_rate * 100.0,
            self.local_task_rate * 100.0
        );
        let mids: Vec<f64> = self.series.iter().map(|b| b.at_s + self.bucket_s / 2.0).collect();
        let panels: [(&str, Vec<f64>, &str); 3] = [
            ("throughput (jobs/s)", self.series.iter().map(|b| b.throughput_per_s).collect(), "#4a7ab5"),
            ("p99 latency (ms, real)", self.series.iter().map(|b| b.p99_ms).collect(), "#c0504d"),
            ("cache hit rate (%)", self.series.iter().map(|b| b.cache_hit_rate * 100.0).collect(), "#4f9a4f"),
        ];
        for (i, (title, values, colour)) in panels.iter().enumerate() {
            let top = TOP + i as f64 * (PANEL + GAP);
            let bottom = top + PANEL;
            let max = if i == 2 { 100.0 } else { nice_max(values.iter().cloned().fold(0.0, f64::max)) };
            let y = |v: f64| bottom - v / max * PANEL;
            let _ = writeln!(svg, "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"13\">{title}</text>", top - 6.0);
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"black\"/>",
                LEFT + plot_w
            );
            let _ = writeln!(svg, "<line x1=\"{LEFT}\" y1=\"{top}\" x2=\"{LEFT}\" y2=\"{bottom}\" stroke=\"black\"/>");
            for t in 0..=4 {
                let v = max * t as f64 / 4.0;
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
                    LEFT - 6.0,
                    y(v) + 4.0,
                    short(v),
                    y(v),
                    LEFT + plot_w,
                    y(v)
                );
            }
            let points: Vec<String> =
                mids.iter().zip(values).map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                points.join(" ")
            );
            if i == 0 {
                // Live workers on a right-hand axis of the throughput panel.
                let most = nice_max(self.series.iter().map(|b| b.live_workers as f64).fold(0.0, f64::max));
                let live: Vec<String> = mids
                    .iter()
                    .zip(&self.series)
                    .map(|(t, b)| format!("{:.1},{:.1}", x(*t), bottom - b.live_workers as f64 / most * PANEL))
                    .collect();
                let _ = writeln!(
                    svg,
                    "<polyline fill=\"none\" stroke=\"#888\" stroke-dasharray=\"2 3\" stroke-width=\"2\" points=\"{}\"/>",
                    live.join(" ")
                );
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\">live workers (right axis, max {})</text>",
                    LEFT + plot_w - 230.0,
                    top - 6.0,
                    short(most)
                );
                for t in 0..=4 {
                    let v = most * t as f64 / 4.0;
                    let _ = writeln!(
                        svg,
                        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\">{}</text>",
                        LEFT + plot_w + 6.0,
                        bottom - v / most * PANEL + 4.0,
                        short(v)
                    );
                }
            }
            for t in 0..=5 {
                let at = end * t as f64 / 5.0;
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{at:.0} s</text>",
                    x(at),
                    bottom + 16.0
                );
            }
            if let Some(join) = self.join_at_s {
                let _ = writeln!(
                    svg,
                    "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"black\" stroke-dasharray=\"6 4\"/><text x=\"{1:.1}\" y=\"{2:.1}\">join</text>",
                    x(join),
                    x(join) + 4.0,
                    top + 12.0
                );
            }
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Mean execution times as one table cell.
pub fn times_row(t: &ExecutionTimes) -> String {
    format!(
        "fetch {:.1} ms when local, {:.1} ms otherwise; run {:.1} ms; whole execution {:.1} ms",
        t.fetch_ms_local, t.fetch_ms_remote, t.run_ms, t.execution_ms
    )
}

/// A round axis maximum at or above `v` (1, 2 or 5 times a power of ten).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|m| *m >= v).unwrap_or(10.0 * power)
}

/// A tick label: whole and large values without decimals, others with one.
fn short(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Bytes in decimal units (TB, PB), as storage is sold.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round_and_cover_the_data() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(0.3), 0.5);
        assert_eq!(human_bytes(1_000_000_000_000_000), "1.0 PB");
        assert_eq!(human_bytes(100_412_000_000_000), "100.4 TB");
        assert_eq!((short(12.5), short(50.0), short(137.5)), ("12.5".into(), "50".into(), "138".into()));
    }
}
