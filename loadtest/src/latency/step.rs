//! One offered rate's run, the same for both systems: what was measured ([`StepSamples`]) and
//! what the report says of it ([`StepFigures`]): percentiles, achieved rate, whether the
//! backlog grew, whether the rate is sustainable; and the highest sustainable rate of a sweep.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::latency::phases::Breakdown;
use crate::report::quantile;

/// A rate is sustainable only with its p99 under this.
pub const SUSTAINABLE_P99_MS: f64 = 1000.0;
/// The backlog grows when, over the second half of the submitting, it rises faster than this
/// share of the offered rate (plus one job a second, for noise at low rates).
const GROWTH_SHARE: f64 = 0.05;

/// What one rate's run measured, as both the harness and the BullMQ script record it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepSamples {
    /// Submissions a second offered.
    pub offered_per_s: f64,
    /// Jobs due in the window (rate × seconds).
    pub planned: usize,
    /// Jobs the system accepted.
    #[serde(alias = "added")]
    pub submitted: usize,
    /// Jobs seen finished.
    pub completed: usize,
    /// Jobs that ended failed (or, for Shoal, with a wrong output; see the step's `wrong`).
    pub failed: usize,
    /// Seconds the submitting took.
    pub offered_secs: f64,
    /// Seconds from the first due submission to the end of waiting.
    pub elapsed_secs: f64,
    /// Each finished job's latency: from when its submission was due to its result being seen.
    pub latencies_ms: Vec<f64>,
    /// Each job still unfinished when waiting ended: its wait so far.
    pub unfinished_waits_ms: Vec<f64>,
    /// When each finished job was seen finished, seconds from the start.
    pub done_at_s: Vec<f64>,
    /// (seconds from the start, jobs due and not yet seen finished or refused), sampled.
    pub backlog: Vec<(f64, f64)>,
}

/// What the report says of one rate's run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepFigures {
    /// Submissions a second offered.
    pub offered_per_s: f64,
    /// Jobs due.
    pub planned: usize,
    /// Jobs accepted.
    pub submitted: usize,
    /// Submissions refused or never answered.
    pub refused: usize,
    /// Jobs seen finished.
    pub completed: usize,
    /// Jobs that failed.
    pub failed: usize,
    /// Jobs whose output was not the expected one (Shoal only).
    pub wrong: usize,
    /// Jobs not seen finished when waiting ended.
    pub unfinished: usize,
    /// Accepted submissions a second over the submitting window.
    pub submitted_per_s: f64,
    /// Jobs seen finished a second over the submitting window (the achieved rate).
    pub completed_per_s: f64,
    /// Latency percentiles and maximum, milliseconds (due → result seen).
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Whether unfinished jobs were counted at their wait so far, making the figures lower
    /// bounds.
    pub lower_bounds: bool,
    /// How fast the backlog rose over the second half of the submitting, jobs a second
    /// (least squares).
    pub backlog_slope_per_s: f64,
    /// The largest backlog sampled.
    pub backlog_max: f64,
    /// Whether the backlog grew (see [`backlog_grows`]).
    pub backlog_grows: bool,
    /// p99 under [`SUSTAINABLE_P99_MS`], the backlog not growing, every job finished.
    pub sustainable: bool,
    /// CPU seconds each process used over the step (Shoal: workers by id, `gateway`, `redis`,
    /// `harness`; BullMQ: `node`, `redis`).
    pub cpu_s: BTreeMap<String, f64>,
    /// All of those CPU milliseconds per finished job.
    pub cpu_ms_per_job: f64,
    /// Voluntary context switches each process made over the step (the same names as `cpu_s`;
    /// empty when not measured): a thread's each wait, so per job, the hand-offs a job takes.
    #[serde(default)]
    pub context_switches: BTreeMap<String, u64>,
    /// All of those per finished job.
    #[serde(default)]
    pub switches_per_job: f64,
    /// `/proc/loadavg`'s 1-minute figure at the step's start and end.
    pub loadavg: (f64, f64),
    /// Where the time of a job went (Shoal only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Breakdown>,
}

impl StepFigures {
    /// The figures of `samples`, `refused` and `wrong` as the caller counted them.
    pub fn of(samples: &StepSamples, refused: usize, wrong: usize) -> StepFigures {
        let mut all: Vec<f64> = samples.latencies_ms.iter().chain(&samples.unfinished_waits_ms).copied().collect();
        all.sort_by(f64::total_cmp);
        let window = samples.offered_secs.max(f64::EPSILON);
        let done_in_window = samples.done_at_s.iter().filter(|&&t| t <= samples.offered_secs).count();
        let slope = backlog_slope(&samples.backlog, samples.offered_secs);
        let grows = backlog_grows(slope, samples.offered_per_s);
        let unfinished = samples.unfinished_waits_ms.len();
        let p99_ms = quantile(&all, 0.99);
        StepFigures {
            offered_per_s: samples.offered_per_s,
            planned: samples.planned,
            submitted: samples.submitted,
            refused,
            completed: samples.completed,
            failed: samples.failed,
            wrong,
            unfinished,
            submitted_per_s: samples.submitted as f64 / window,
            completed_per_s: done_in_window as f64 / window,
            p50_ms: quantile(&all, 0.5),
            p95_ms: quantile(&all, 0.95),
            p99_ms,
            max_ms: all.last().copied().unwrap_or(0.0),
            lower_bounds: unfinished > 0,
            backlog_slope_per_s: slope,
            backlog_max: samples.backlog.iter().map(|&(_, n)| n).fold(0.0, f64::max),
            backlog_grows: grows,
            sustainable: p99_ms < SUSTAINABLE_P99_MS && !grows && unfinished == 0 && refused == 0,
            ..StepFigures::default()
        }
    }

    /// Records the CPU each process used, and per finished job.
    pub fn with_cpu(mut self, cpu_s: BTreeMap<String, f64>) -> StepFigures {
        let total: f64 = cpu_s.values().sum();
        self.cpu_ms_per_job = if self.completed == 0 { 0.0 } else { total * 1000.0 / self.completed as f64 };
        self.cpu_s = cpu_s;
        self
    }

    /// Records the voluntary context switches each process made, and per finished job.
    pub fn with_context_switches(mut self, switches: BTreeMap<String, u64>) -> StepFigures {
        let total: u64 = switches.values().sum();
        self.switches_per_job = if self.completed == 0 { 0.0 } else { total as f64 / self.completed as f64 };
        self.context_switches = switches;
        self
    }
}

/// The least-squares slope (jobs a second) of the backlog samples taken in the second half of
/// the submitting window (the first half is the backlog filling to its steady level); 0 with
/// fewer than two.
pub fn backlog_slope(backlog: &[(f64, f64)], offered_secs: f64) -> f64 {
    let half: Vec<(f64, f64)> =
        backlog.iter().copied().filter(|&(t, _)| t >= offered_secs / 2.0 && t <= offered_secs).collect();
    if half.len() < 2 {
        return 0.0;
    }
    let n = half.len() as f64;
    let (mean_t, mean_b) = (half.iter().map(|p| p.0).sum::<f64>() / n, half.iter().map(|p| p.1).sum::<f64>() / n);
    let covariance: f64 = half.iter().map(|&(t, b)| (t - mean_t) * (b - mean_b)).sum();
    let variance: f64 = half.iter().map(|&(t, _)| (t - mean_t).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

/// Whether a backlog rising at `slope` jobs a second under `offered` submissions a second is
/// growing: faster than [`GROWTH_SHARE`] of the offered rate plus one job a second.
pub fn backlog_grows(slope: f64, offered: f64) -> bool {
    slope > GROWTH_SHARE * offered + 1.0
}

/// The highest offered rate of `steps` that is sustainable, if any.
pub fn max_sustainable(steps: &[StepFigures]) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.sustainable)
        .map(|s| s.offered_per_s)
        .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
}

/// `/proc/loadavg`'s 1-minute load (0 if unreadable).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(offered: f64, latency_ms: f64, secs: f64, growth_per_s: f64) -> StepSamples {
        let planned = (offered * secs) as usize;
        StepSamples {
            offered_per_s: offered,
            planned,
            submitted: planned,
            completed: planned,
            offered_secs: secs,
            elapsed_secs: secs + 1.0,
            latencies_ms: (0..planned).map(|n| latency_ms + (n % 10) as f64).collect(),
            done_at_s: (0..planned).map(|n| n as f64 / offered).collect(),
            backlog: (1..=(secs * 2.0) as usize)
                .map(|i| {
                    let t = i as f64 / 2.0;
                    (t, offered * latency_ms / 1000.0 + growth_per_s * t)
                })
                .collect(),
            ..StepSamples::default()
        }
    }

    #[test]
    fn a_steady_backlog_does_not_grow_and_a_falling_behind_one_does() {
        let flat = steady(500.0, 5.0, 10.0, 0.0);
        assert!(backlog_slope(&flat.backlog, 10.0).abs() < 1e-9);
        let behind = steady(1000.0, 5.0, 10.0, 650.0);
        let slope = backlog_slope(&behind.backlog, 10.0);
        assert!((slope - 650.0).abs() < 1e-6, "{slope}");
        assert!(backlog_grows(slope, 1000.0));
        // Noise of a few jobs a second is not growth; 5 % of the rate is the line.
        assert!(!backlog_grows(3.0, 250.0));
        assert!(!backlog_grows(25.0, 1000.0));
        assert!(backlog_grows(52.0, 1000.0));
        assert_eq!(backlog_slope(&[(1.0, 3.0)], 2.0), 0.0);
    }

    #[test]
    fn figures_take_percentiles_over_finished_and_unfinished_jobs() {
        let figures = StepFigures::of(&steady(100.0, 10.0, 10.0, 0.0), 0, 0);
        assert_eq!(figures.p50_ms, 14.0);
        assert_eq!(figures.p99_ms, 19.0);
        assert_eq!(figures.max_ms, 19.0);
        assert!(!figures.lower_bounds && figures.sustainable);
        assert!((figures.completed_per_s - 100.0).abs() < 1e-9);

        let mut late = steady(100.0, 10.0, 10.0, 0.0);
        late.completed -= 20;
        late.latencies_ms.truncate(late.completed);
        late.unfinished_waits_ms = vec![30_000.0; 20];
        let figures = StepFigures::of(&late, 0, 0);
        assert_eq!(figures.p99_ms, 30_000.0);
        assert!(figures.lower_bounds && !figures.sustainable);
        assert_eq!(figures.unfinished, 20);
    }

    #[test]
    fn the_sustainable_rate_is_the_highest_under_a_second_without_growth() {
        let step = |offered: f64, p99: f64, grows: bool| StepFigures {
            offered_per_s: offered,
            sustainable: p99 < SUSTAINABLE_P99_MS && !grows,
            ..StepFigures::default()
        };
        let sweep = [
            step(250.0, 20.0, false),
            step(500.0, 900.0, false),
            step(1000.0, 400.0, true),
            step(1500.0, 5000.0, true),
        ];
        assert_eq!(max_sustainable(&sweep), Some(500.0));
        assert_eq!(max_sustainable(&sweep[2..]), None);
        // A refused submission or a p99 of a second makes a step unsustainable.
        let refused = StepFigures::of(&steady(100.0, 10.0, 10.0, 0.0), 1, 0);
        assert!(!refused.sustainable);
        let slow = StepFigures::of(&steady(100.0, 1000.0, 10.0, 0.0), 0, 0);
        assert!(!slow.sustainable);
    }

    #[test]
    fn cpu_per_job_counts_every_process() {
        let figures = StepFigures::of(&steady(100.0, 10.0, 10.0, 0.0), 0, 0)
            .with_cpu(BTreeMap::from([("w0".to_string(), 1.0), ("redis".to_string(), 1.0)]));
        assert!((figures.cpu_ms_per_job - 2.0).abs() < 1e-9, "{}", figures.cpu_ms_per_job);
    }

    #[test]
    fn switches_per_job_count_every_process() {
        let figures = StepFigures::of(&steady(100.0, 10.0, 10.0, 0.0), 0, 0)
            .with_context_switches(BTreeMap::from([("w0".to_string(), 3000), ("redis".to_string(), 1000)]));
        assert!((figures.switches_per_job - 4.0).abs() < 1e-9, "{}", figures.switches_per_job);
        let none = StepFigures::default().with_context_switches(BTreeMap::from([("w0".to_string(), 5)]));
        assert_eq!(none.switches_per_job, 0.0, "no job finished");
    }
}
