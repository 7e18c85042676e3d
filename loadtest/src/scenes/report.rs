//! The report of a scenes run: per run (cold, warm) the base [`Report`] figures
//! with a *task* as the unit counted, plus entries, locality and wall times; JSON and Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use shoal_testkit::CommandStats;

use crate::figures::Report;
use crate::report::RunReport;

/// One run of the fanned-out job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFigures {
    /// The reliability harness's figures, counting **tasks** (one per scene): `submitted` is the
    /// tasks the job fanned out into, `succeeded` those that succeeded with a correct output,
    /// `wrong` those whose output (or gathered entry) is not what it should be, `lost` those not
    /// finished by the deadline; latencies are task created → finished, throughput tasks per
    /// second from the first task created to the last finished.
    #[serde(flatten)]
    pub base: Report,
    /// `cold` or `warm`.
    pub run: String,
    /// The fanned-out job's id.
    pub job_id: String,
    /// Its final state.
    pub job_state: String,
    /// The gathered output directory, if the job got one.
    pub output: Option<String>,
    /// Entries in the output directory.
    pub entries: usize,
    /// Entries whose content was checked and found right.
    pub entries_ok: usize,
    /// Inputs already in their worker's input cache, over all inputs of succeeded tasks.
    pub cache_hit_rate: f64,
    /// Succeeded tasks whose worker already held their scene, over succeeded tasks.
    pub local_task_rate: f64,
    /// Seconds from submitting the job to seeing it finished.
    pub wall_s: f64,
    /// Seconds from the job's creation to its last task's creation (listing and fanning out).
    pub fan_out_s: f64,
    /// Seconds from the last task finishing to the job finishing (gathering).
    pub gather_s: f64,
    /// Seconds spent checking every entry through the content layer (not part of `wall_s`).
    pub check_s: f64,
    /// Succeeded tasks by the worker that ran them.
    pub tasks_by_worker: BTreeMap<String, usize>,
}

/// The single cloud-detect job over one tile that shows a tile is a scene the program reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileCheck {
    /// The tile.
    pub scene: String,
    /// The job's id.
    pub job_id: String,
    /// Its final state.
    pub state: String,
    /// Size of the `mask.png` it wrote, if it decoded.
    pub mask_size: Option<(u32, u32)>,
    /// Share of the tile's pixels that BQA flags as high-confidence cloud (the tile checked is
    /// the cloudiest by this measure).
    pub bqa_cloud_fraction: f64,
    /// `cloud_fraction` from its `stats.json`.
    pub cloud_fraction: Option<f64>,
    /// White (cloud) pixels of the mask.
    pub mask_cloud_pixels: Option<u64>,
    /// `pixels.cloud` from its `stats.json`.
    pub stats_cloud_pixels: Option<u64>,
    /// Whether the mask decoded at the tile's size, holds only 0 and 255, and has as many
    /// cloud pixels as `stats.json` counts.
    pub ok: bool,
    /// What went wrong, or the program's summary line.
    pub detail: String,
}

/// Everything measured in one scenes run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenesReport {
    /// The command line that produced this report.
    pub command: String,
    /// When the run started (seconds since the Unix epoch).
    pub started_at_unix_s: u64,
    /// Whether it met its bar: every entry there and right in both runs, nothing lost, failed
    /// or wrong, and the warm local task rate at least `min_local_rate`.
    pub passed: bool,
    /// Scenes in the directory (tasks per run).
    pub scenes: usize,
    /// Entries in the warm run's output directory.
    pub entries: usize,
    /// Worker processes.
    pub workers: usize,
    /// Tasks each worker ran at once.
    pub worker_concurrency: usize,
    /// Shard streams.
    pub shards: u32,
    /// The program each task ran.
    pub program: String,
    /// The real scene the tiles were cut from.
    pub source_scene: String,
    /// Tile side in 30 m pixels.
    pub tile_px: u32,
    /// Pixels between neighbouring tile windows.
    pub stride_px: u32,
    /// Bytes of all scene files (the catalogue the tasks read).
    pub catalogue_bytes: u64,
    /// Files in the catalogue.
    pub catalogue_files: usize,
    /// The scenes directory's CID.
    pub scenes_cid: String,
    /// The warm run's cache hit rate.
    pub cache_hit_rate: f64,
    /// The warm run's local task rate.
    pub local_task_rate: f64,
    /// The bar for the warm local task rate.
    pub min_local_rate: f64,
    /// Seconds cutting and writing the tiles.
    pub generate_s: f64,
    /// Seconds adding the scenes directory to the block store.
    pub add_s: f64,
    /// Seconds from starting Redis to every worker live and heard from since all were.
    pub stack_start_s: f64,
    /// Seconds of the whole command.
    pub total_s: f64,
    /// CPU seconds (user + system) each process used over the whole command: `w0`…,
    /// `gateway`, `redis`.
    pub cpu_s: BTreeMap<String, f64>,
    /// Redis's busiest commands over the whole command (by time spent), to see what the
    /// fan-out, the tasks and the gathering cost it.
    pub redis_commands: Vec<(String, CommandStats)>,
    /// The cloud-detect job over one tile.
    pub tile_check: TileCheck,
    /// The first run, with every cache empty.
    pub cold: RunFigures,
    /// The second run over the same scenes.
    pub warm: RunFigures,
    /// Verifier processes.
    #[serde(default)]
    pub verifiers: usize,
    /// The fanned-out job's verification policy.
    #[serde(default)]
    pub verification: String,
    /// The byzantine workers among the workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adversaries: Vec<String>,
    /// The workers quarantined by the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<String>,
    /// Why the run did not pass, when it did not.
    pub problems: Vec<String>,
}

impl RunReport for ScenesReport {
    /// A line per run, then the problems.
    fn summary(&self) -> String {
        let mut out = String::new();
        for run in [&self.cold, &self.warm] {
            let b = &run.base;
            let _ = writeln!(
                out,
                "{}: {} tasks | succeeded {} failed {} lost {} wrong {} duplicates {} | entries {} ({} right) | \
                 hit rate {:.1}% local {:.1}% | p50 {:.0} ms p99 {:.0} ms | {:.1} tasks/s | wall {:.1} s",
                run.run,
                b.submitted,
                b.succeeded,
                b.failed,
                b.lost,
                b.wrong,
                b.duplicates,
                run.entries,
                run.entries_ok,
                run.cache_hit_rate * 100.0,
                run.local_task_rate * 100.0,
                b.p50_ms,
                b.p99_ms,
                b.throughput_per_s,
                run.wall_s
            );
        }
        for problem in &self.problems {
            let _ = writeln!(out, "problem: {problem}");
        }
        out
    }

    /// Every entry there and right in both runs, and the warm run local enough.
    fn passed(&self) -> bool {
        self.passed
    }

    /// `NAME.md`.
    fn documents(&self, _name: &str) -> Vec<(&'static str, String)> {
        vec![("md", self.markdown())]
    }
}

impl ScenesReport {
    /// The report for people.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(md, "# Scenes run: {} scenes, {} workers — {verdict}\n", self.scenes, self.workers);
        let _ = writeln!(md, "```\n{}\n```\n", self.command);
        let _ = writeln!(
            md,
            "One job with `fan_out` over a directory of {} scenes ({}×{} px windows of `{}` at a stride of {} px; \
             {} files, {} bytes, directory `{}`), program `{}`, {} `shoal worker` processes × {} tasks, {} shards. \
             A *task* is the unit counted below (one per scene).\n",
            self.scenes,
            self.tile_px,
            self.tile_px,
            self.source_scene,
            self.stride_px,
            self.catalogue_files,
            self.catalogue_bytes,
            self.scenes_cid,
            self.program,
            self.workers,
            self.worker_concurrency,
            self.shards
        );
        if self.verifiers > 0 || !self.adversaries.is_empty() {
            let _ = writeln!(
                md,
                "Verification `{}` by {} `shoal verifier` processes; byzantine workers beside the honest ones: {}; \
                 quarantined by the end: {}.\n",
                self.verification,
                self.verifiers,
                if self.adversaries.is_empty() { "none".to_string() } else { self.adversaries.join(", ") },
                if self.quarantined.is_empty() { "none".to_string() } else { self.quarantined.join(", ") },
            );
        }
        let _ = writeln!(md, "| | cold | warm |\n|---|---:|---:|");
        let row = |md: &mut String, name: &str, cold: String, warm: String| {
            let _ = writeln!(md, "| {name} | {cold} | {warm} |");
        };
        let (c, w) = (&self.cold, &self.warm);
        row(&mut md, "job state", c.job_state.clone(), w.job_state.clone());
        row(&mut md, "tasks", c.base.submitted.to_string(), w.base.submitted.to_string());
        row(&mut md, "succeeded (output right)", c.base.succeeded.to_string(), w.base.succeeded.to_string());
        row(&mut md, "failed", c.base.failed.to_string(), w.base.failed.to_string());
        row(&mut md, "lost", c.base.lost.to_string(), w.base.lost.to_string());
        row(&mut md, "wrong", c.base.wrong.to_string(), w.base.wrong.to_string());
        row(&mut md, "accepted (verified or corrected)", c.base.accepted.to_string(), w.base.accepted.to_string());
        row(
            &mut md,
            "accepted with a wrong output",
            c.base.wrong_accepted.to_string(),
            w.base.wrong_accepted.to_string(),
        );
        let acceptance =
            |r: &RunFigures| r.base.acceptance.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        row(&mut md, "tasks by acceptance", acceptance(c), acceptance(w));
        row(&mut md, "duplicates", c.base.duplicates.to_string(), w.base.duplicates.to_string());
        row(&mut md, "re-executed", c.base.reexecuted.to_string(), w.base.reexecuted.to_string());
        row(&mut md, "output entries", c.entries.to_string(), w.entries.to_string());
        row(&mut md, "entries checked right", c.entries_ok.to_string(), w.entries_ok.to_string());
        row(&mut md, "cache hit rate", pct(c.cache_hit_rate), pct(w.cache_hit_rate));
        row(&mut md, "**local task rate**", pct(c.local_task_rate), format!("**{}**", pct(w.local_task_rate)));
        row(&mut md, "task p50 / p95 / p99", ms3(&c.base), ms3(&w.base));
        row(&mut md, "throughput", per_s(c.base.throughput_per_s), per_s(w.base.throughput_per_s));
        row(&mut md, "wall (submit → finished)", secs(c.wall_s), secs(w.wall_s));
        row(&mut md, "fan-out (job → last task created)", secs(c.fan_out_s), secs(w.fan_out_s));
        row(&mut md, "gather (last task → job finished)", secs(c.gather_s), secs(w.gather_s));
        row(&mut md, "checking every entry", secs(c.check_s), secs(w.check_s));
        let workers =
            |r: &RunFigures| r.tasks_by_worker.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        row(&mut md, "tasks by worker", workers(c), workers(w));
        let _ = writeln!(
            md,
            "\nSetup: tiles cut and written in {}, added to the block store in {}, stack up in {}; whole command {}.\n",
            secs(self.generate_s),
            secs(self.add_s),
            secs(self.stack_start_s),
            secs(self.total_s)
        );
        let cpu = self.cpu_s.iter().map(|(k, v)| format!("{k} {v:.1} s")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(md, "CPU (user + system) over the whole command: {cpu}.\n");
        let _ = writeln!(md, "Redis's busiest commands (whole command, by time):\n\n| command | calls | time | µs/call |\n|---|---:|---:|---:|");
        for (name, stats) in &self.redis_commands {
            let per_call = if stats.calls == 0 { 0.0 } else { stats.usec as f64 / stats.calls as f64 };
            let _ = writeln!(md, "| {name} | {} | {:.2} s | {per_call:.1} |", stats.calls, stats.usec as f64 / 1e6);
        }
        md.push('\n');
        let t = &self.tile_check;
        let _ = writeln!(
            md,
            "Tile check (`cloud-detect` as a plain job over `{}`, the cloudiest tile by BQA: {}): {}, mask {}, \
             cloud fraction {}, cloud pixels {} in the mask and {} in stats.json — {}.\n",
            t.scene,
            pct(t.bqa_cloud_fraction),
            t.state,
            t.mask_size.map_or("none".to_string(), |(w, h)| format!("{w}×{h}")),
            t.cloud_fraction.map_or("-".to_string(), pct),
            t.mask_cloud_pixels.map_or("-".to_string(), |n| n.to_string()),
            t.stats_cloud_pixels.map_or("-".to_string(), |n| n.to_string()),
            if t.ok { "ok" } else { "NOT ok" }
        );
        if !self.problems.is_empty() {
            let _ = writeln!(md, "Problems:\n");
            for problem in &self.problems {
                let _ = writeln!(md, "- {problem}");
            }
            md.push('\n');
        }
        for run in [c, w] {
            if !run.base.failed_by_reason.is_empty() || !run.base.examples.is_empty() {
                let _ = writeln!(md, "{} run: failures {:?}", run.run, run.base.failed_by_reason);
                for example in &run.base.examples {
                    let _ = writeln!(md, "- {example}");
                }
                md.push('\n');
            }
        }
        md
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

fn secs(s: f64) -> String {
    format!("{s:.1} s")
}

fn per_s(x: f64) -> String {
    format!("{x:.1} tasks/s")
}

fn ms3(r: &Report) -> String {
    format!("{:.0} / {:.0} / {:.0} ms", r.p50_ms, r.p95_ms, r.p99_ms)
}

/// The report's problems: what keeps a run from passing.
pub(crate) fn problems(report: &ScenesReport) -> Vec<String> {
    let mut problems = Vec::new();
    for run in [&report.cold, &report.warm] {
        let b = &run.base;
        if run.entries != report.scenes {
            problems.push(format!("{} run: {} output entries, expected {}", run.run, run.entries, report.scenes));
        }
        if run.entries_ok != report.scenes {
            problems.push(format!("{} run: {} of {} entries right", run.run, run.entries_ok, report.scenes));
        }
        if b.submitted != report.scenes || b.failed > 0 || b.lost > 0 || b.wrong > 0 || b.duplicates > 0 {
            problems.push(format!(
                "{} run: {} tasks, {} failed, {} lost, {} wrong, {} duplicates",
                run.run, b.submitted, b.failed, b.lost, b.wrong, b.duplicates
            ));
        }
    }
    if report.warm.local_task_rate < report.min_local_rate {
        problems.push(format!(
            "warm local task rate {:.2} % is below {:.2} %",
            report.warm.local_task_rate * 100.0,
            report.min_local_rate * 100.0
        ));
    }
    if !report.tile_check.ok {
        problems.push(format!("tile check: {}", report.tile_check.detail));
    }
    for run in [&report.cold, &report.warm] {
        if run.base.wrong_accepted > 0 {
            problems.push(format!("{} run: {} wrong results ACCEPTED", run.run, run.base.wrong_accepted));
        }
        if report.verification == "always" && run.base.accepted != report.scenes {
            problems.push(format!("{} run: {} of {} tasks accepted", run.run, run.base.accepted, report.scenes));
        }
    }
    let uncaught: Vec<&String> = report.adversaries.iter().filter(|a| !report.quarantined.contains(a)).collect();
    if !uncaught.is_empty() {
        problems.push(format!("adversaries not quarantined: {uncaught:?}"));
    }
    let honest: Vec<&String> = report.quarantined.iter().filter(|q| !report.adversaries.contains(q)).collect();
    if !honest.is_empty() {
        problems.push(format!("honest workers quarantined: {honest:?}"));
    }
    problems
}
