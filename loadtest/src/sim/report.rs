//! The report of a simulated run: the base [`Report`] figures at the top level, plus the scale
//! figures and a time series; JSON, Markdown and an SVG plot over time.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::figures::Report;
use crate::locality::{by_jobs_line, series_table, times_row, Bucket, ExecutionTimes, JobsBucket};
use crate::report::{counts_line, examples_section, figure_table, human_bytes, RunReport};

/// Success (accepted jobs that succeeded with the expected output) below which a run fails.
pub const SIM_SUCCESS: f64 = 0.999;

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
    /// Hit and local rates per [`BY_JOBS`](crate::locality::BY_JOBS) jobs in the order they finished.
    pub by_jobs: Vec<JobsBucket>,
}

impl RunReport for SimReport {
    fn summary(&self) -> String {
        let b = &self.base;
        format!(
            "{} workers | submitted {} succeeded {} failed {} lost {} wrong {} duplicates {} | success {:.3}% | hit rate {:.1}% local {:.1}% | p50 {:.0} ms p99 {:.0} ms | {:.1} jobs/s",
            self.workers,
            b.submitted,
            b.succeeded,
            b.failed,
            b.lost,
            b.wrong,
            b.duplicates,
            self.success_rate() * 100.0,
            self.cache_hit_rate * 100.0,
            self.local_task_rate * 100.0,
            b.p50_ms,
            b.p99_ms,
            b.throughput_per_s
        )
    }

    /// At least [`SIM_SUCCESS`] succeeded, nothing wrong, nothing duplicated.
    fn passed(&self) -> bool {
        self.success_rate() >= SIM_SUCCESS && self.base.wrong == 0 && self.base.duplicates == 0
    }

    /// `NAME.md` and `NAME.svg`.
    fn documents(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![("md", self.markdown(&format!("{name}.svg"))), ("svg", self.svg())]
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
        let join = match self.join_at_s {
            Some(at) => format!(
                "{} at start, {} joined at {at:.0} s",
                self.initial_workers,
                self.workers - self.initial_workers
            ),
            None => format!("{} at start", self.initial_workers),
        };
        let rows = [
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
        figure_table(&mut md, &rows);
        counts_line(&mut md, "Failed by reason", &b.failed_by_reason);
        counts_line(&mut md, "Lost by last state", &b.lost_by_state);
        let _ = writeln!(md, "\n{}", by_jobs_line(&self.by_jobs));
        let _ = writeln!(md, "\n![throughput, p99 latency and cache hit rate over time]({svg_name})\n");
        let _ = writeln!(md, "## Settings\n\n```");
        for line in &self.settings {
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(md, "```\n\n## Time series ({} s buckets)\n", self.bucket_s);
        series_table(&mut md, &self.series);
        examples_section(&mut md, &b.examples);
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
