//! The report of a run: JSON (the figures), Markdown (for people) and an SVG latency histogram.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{LoadtestError, Result};
use crate::sim::report::{by_jobs_line, human_bytes, series_table, times_row, Locality};

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Seconds since submissions began.
    pub at_s: f64,
    /// `kill_worker`, `pause_worker`, `resume_worker`, `restart_redis`, `restart_gateway`.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Up to 20 examples of lost, wrong or duplicated jobs, for debugging.
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
        Report {
            command,
            started_at_unix_s,
            planned,
            submitted: 0,
            not_submitted: 0,
            not_submitted_reasons: BTreeMap::new(),
            succeeded: 0,
            failed: 0,
            failed_by_reason: BTreeMap::new(),
            lost: 0,
            lost_by_state: BTreeMap::new(),
            wrong: 0,
            duplicates: 0,
            reexecuted: 0,
            submit_retries: 0,
            submit_replays: 0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            throughput_per_s: 0.0,
            duration_s: 0.0,
            ended_early: None,
            faults_injected: Vec::new(),
            faults_by_kind: BTreeMap::new(),
            jobs_by_kind: BTreeMap::new(),
            workers_reclaim: false,
            examples: Vec::new(),
            locality: None,
            latencies_ms: Vec::new(),
        }
    }

    /// Whether every accepted job finished once, correctly, with nothing lost.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.wrong == 0 && self.duplicates == 0 && self.failed == 0 && self.not_submitted == 0
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
            std::path::PathBuf::from(name)
        };
        let svg_path = with("svg");
        let svg_name = svg_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let json = serde_json::to_string_pretty(self).expect("a report always serialises");
        for (path, text) in [
            (with("json"), json + "\n"),
            (with("md"), self.markdown(&svg_name)),
            (svg_path.clone(), self.histogram_svg()),
        ] {
            std::fs::write(&path, text).map_err(|e| LoadtestError::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// The report for people.
    pub fn markdown(&self, svg_name: &str) -> String {
        let mut md = String::new();
        let verdict = if self.clean() {
            "clean: every job finished once with the expected output"
        } else {
            "NOT clean: see the counts below"
        };
        let _ = writeln!(md, "# Shoal load/chaos run\n\n```\n{}\n```\n\n**{verdict}**\n", self.command);
        let _ = writeln!(md, "| figure | value |\n|---|---|");
        let rows: [(&str, String); 16] = [
            ("planned", self.planned.to_string()),
            ("submitted (accepted)", self.submitted.to_string()),
            ("not submitted", self.not_submitted.to_string()),
            ("succeeded (expected CID)", self.succeeded.to_string()),
            ("failed", self.failed.to_string()),
            ("lost", self.lost.to_string()),
            ("wrong output CID", self.wrong.to_string()),
            ("duplicates", self.duplicates.to_string()),
            ("re-executed (same output)", self.reexecuted.to_string()),
            ("submissions retried / replayed", format!("{} / {}", self.submit_retries, self.submit_replays)),
            (
                "latency p50 / p95 / p99 / max",
                format!("{:.0} / {:.0} / {:.0} / {:.0} ms", self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms),
            ),
            ("throughput", format!("{:.1} jobs/s", self.throughput_per_s)),
            ("duration", format!("{:.1} s", self.duration_s)),
            ("faults injected", self.faults_injected.len().to_string()),
            ("workers reclaim others' entries", self.workers_reclaim.to_string()),
            ("ended early", self.ended_early.clone().unwrap_or_else(|| "no".into())),
        ];
        for (name, value) in rows {
            let _ = writeln!(md, "| {name} | {value} |");
        }
        let table = |md: &mut String, title: &str, map: &BTreeMap<String, usize>| {
            if !map.is_empty() {
                let _ = writeln!(
                    md,
                    "\n{title}: {}",
                    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
                );
            }
        };
        if let Some(l) = &self.locality {
            let _ = writeln!(md, "\n## Locality\n\n| figure | value |\n|---|---|");
            let rows: [(&str, String); 7] = [
                ("workers", l.workers.to_string()),
                ("catalogue", format!("{} items, {}", l.catalogue_items, human_bytes(l.catalogue_bytes))),
                ("input cache per worker", human_bytes(l.cache_bytes)),
                (
                    "users / programs / outstanding per user",
                    format!("{} / {} / {}", l.users, l.programs, l.outstanding_per_user),
                ),
                ("cache hit rate", format!("{:.1}%", l.cache_hit_rate * 100.0)),
                ("local task rate", format!("{:.1}%", l.local_task_rate * 100.0)),
                ("execution (mean)", times_row(&l.execution_times)),
            ];
            for (name, value) in rows {
                let _ = writeln!(md, "| {name} | {value} |");
            }
            let _ = writeln!(md, "\n{}", by_jobs_line(&l.by_jobs));
            let _ = writeln!(md);
            series_table(&mut md, &l.series);
        }
        table(&mut md, "Jobs by kind", &self.jobs_by_kind);
        table(&mut md, "Failed by reason", &self.failed_by_reason);
        table(&mut md, "Lost by last state", &self.lost_by_state);
        table(&mut md, "Not submitted", &self.not_submitted_reasons);
        table(&mut md, "Faults by kind", &self.faults_by_kind);
        let _ = writeln!(md, "\n![latency histogram]({svg_name})\n\n## Faults\n\n| at (s) | fault | target | ok | detail |\n|---|---|---|---|---|");
        for fault in &self.faults_injected {
            let _ = writeln!(
                md,
                "| {:.1} | {} | {} | {} | {} |",
                fault.at_s,
                fault.kind,
                fault.target,
                fault.ok,
                fault.detail.replace('|', "\\|")
            );
        }
        if !self.examples.is_empty() {
            let _ = writeln!(md, "\n## Examples of problems\n");
            for example in &self.examples {
                let _ = writeln!(md, "- {example}");
            }
        }
        md
    }

    /// A histogram of created → finished latencies as a self-contained SVG.
    pub fn histogram_svg(&self) -> String {
        histogram_svg(
            &self.latencies_ms,
            &format!(
                "created → finished latency, {} jobs (p50 {:.0} ms, p99 {:.0} ms)",
                self.latencies_ms.len(),
                self.p50_ms,
                self.p99_ms
            ),
        )
    }
}

/// The `q`-quantile (0–1) of sorted values by nearest rank, 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// 40 equal bins from 0 to the largest value; bars, axes, five tick labels, a title.
fn histogram_svg(values: &[f64], title: &str) -> String {
    const BINS: usize = 40;
    const W: f64 = 800.0;
    const H: f64 = 400.0;
    const LEFT: f64 = 60.0;
    const BOTTOM: f64 = 50.0;
    const TOP: f64 = 40.0;
    let max = values.iter().cloned().fold(0.0_f64, f64::max).max(1.0);
    let mut counts = [0usize; BINS];
    for v in values {
        counts[(((v / max) * BINS as f64) as usize).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (plot_w, plot_h) = (W - LEFT - 20.0, H - BOTTOM - TOP);
    let bar_w = plot_w / BINS as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        W / 2.0,
        escape(title)
    );
    for (i, count) in counts.iter().enumerate() {
        let h = *count as f64 / top * plot_h;
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4a7ab5\"><title>{:.0}–{:.0} ms: {count}</title></rect>",
            LEFT + i as f64 * bar_w,
            TOP + plot_h - h,
            (bar_w - 1.0).max(1.0),
            max * i as f64 / BINS as f64,
            max * (i + 1) as f64 / BINS as f64
        );
    }
    let (x0, y0) = (LEFT, TOP + plot_h);
    let _ = writeln!(svg, "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"black\"/>", x0 + plot_w);
    let _ = writeln!(svg, "<line x1=\"{x0}\" y1=\"{TOP}\" x2=\"{x0}\" y2=\"{y0}\" stroke=\"black\"/>");
    for t in 0..=4 {
        let f = t as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>",
            x0 + f * plot_w,
            y0 + 18.0,
            f * max
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text>",
            x0 - 6.0,
            y0 - f * plot_h + 4.0,
            f * top
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">milliseconds</text>",
        x0 + plot_w / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">jobs</text>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.95), 95.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.5), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_histogram_has_one_bar_per_bin_and_counts_every_value() {
        let values = [1.0, 2.0, 2.0, 400.0];
        let svg = histogram_svg(&values, "t <x>");
        assert_eq!(svg.matches("<rect x=").count(), 40);
        assert!(svg.contains("t &lt;x&gt;"));
        // The tallest bar holds the three small values, the last bin the largest.
        assert!(svg.contains("0–10 ms: 3"), "{svg}");
        assert!(svg.contains("390–400 ms: 1"), "{svg}");
        assert_eq!(svg.matches(": 0</title>").count(), 38);
    }
}
