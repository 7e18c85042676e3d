//! The reliability harness's report for people: the base [`Report`] as Markdown with an SVG
//! latency histogram, and how `shoal-loadtest chaos` judges it (clean: every job finished once
//! with the expected output).

use std::fmt::Write as _;

use crate::figures::Report;
use crate::locality::{by_jobs_line, series_table, times_row};
use crate::report::{counts_line, examples_section, figure_table, human_bytes, RunReport};

impl RunReport for Report {
    fn summary(&self) -> String {
        format!(
            "submitted {} succeeded {} failed {} lost {} wrong {} duplicates {} | p50 {:.0} ms p95 {:.0} ms p99 {:.0} ms | {:.1} jobs/s | {} faults",
            self.submitted,
            self.succeeded,
            self.failed,
            self.lost,
            self.wrong,
            self.duplicates,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.throughput_per_s,
            self.faults_injected.len()
        )
    }

    fn passed(&self) -> bool {
        self.clean()
    }

    /// `NAME.md` and `NAME.svg`.
    fn documents(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![("md", self.markdown(&format!("{name}.svg"))), ("svg", self.histogram_svg())]
    }
}

impl Report {
    /// The report for people.
    pub fn markdown(&self, svg_name: &str) -> String {
        let mut md = String::new();
        let verdict = if self.clean() {
            "clean: every job finished once with the expected output"
        } else {
            "NOT clean: see the counts below"
        };
        let _ = writeln!(md, "# Shoal load/chaos run\n\n```\n{}\n```\n\n**{verdict}**\n", self.command);
        figure_table(
            &mut md,
            &[
                ("planned", self.planned.to_string()),
                ("submitted (accepted)", self.submitted.to_string()),
                ("not submitted", self.not_submitted.to_string()),
                ("succeeded (expected CID)", self.succeeded.to_string()),
                ("failed", self.failed.to_string()),
                ("lost", self.lost.to_string()),
                ("wrong output CID", self.wrong.to_string()),
                ("accepted (verified or corrected)", self.accepted.to_string()),
                ("accepted with a wrong output", self.wrong_accepted.to_string()),
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
            ],
        );
        if let Some(l) = &self.locality {
            let _ = writeln!(md, "\n## Locality\n");
            figure_table(
                &mut md,
                &[
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
                ],
            );
            let _ = writeln!(md, "\n{}", by_jobs_line(&l.by_jobs));
            let _ = writeln!(md);
            series_table(&mut md, &l.series);
        }
        counts_line(&mut md, "Jobs by kind", &self.jobs_by_kind);
        counts_line(&mut md, "Succeeded by acceptance", &self.acceptance);
        counts_line(&mut md, "Failed by reason", &self.failed_by_reason);
        counts_line(&mut md, "Lost by last state", &self.lost_by_state);
        counts_line(&mut md, "Not submitted", &self.not_submitted_reasons);
        counts_line(&mut md, "Faults by kind", &self.faults_by_kind);
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
        examples_section(&mut md, &self.examples);
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
