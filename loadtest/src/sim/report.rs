//! The report of a simulated run: the reliability harness's [`Report`] figures at the top level,
//! plus the scale figures and a time series; JSON, Markdown and an SVG plot over time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{LoadtestError, Result};
use crate::report::Report;

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
    /// The simulation settings, as `name = value` lines, for reading the figures.
    pub settings: Vec<String>,
    /// The time series, one bucket per `bucket_s`.
    pub series: Vec<Bucket>,
    /// Width of a bucket in seconds.
    pub bucket_s: f64,
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
        let _ = writeln!(md, "\n![throughput, p99 latency and cache hit rate over time]({svg_name})\n");
        let _ = writeln!(md, "## Settings\n\n```");
        for line in &self.settings {
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(
            md,
            "```\n\n## Time series ({} s buckets)\n\n| t (s) | jobs/s | p99 ms | hit rate | local rate | live workers |\n|---|---|---|---|---|---|",
            self.bucket_s
        );
        for bucket in &self.series {
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
