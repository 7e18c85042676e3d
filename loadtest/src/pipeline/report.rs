//! What a pipeline run reports: [`PipelineReport`], its runs ([`PipelineRun`]), the problems
//! that fail it, and its Markdown form.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use shoal_jobs::UnitCounts;

use crate::report::{figure_table, human_bytes, RunReport};

/// One stage's units by where they ended.
#[derive(Debug, Clone, Serialize)]
pub struct StageFigures {
    /// The stage's name.
    pub name: String,
    /// Its units' counts (for separate jobs: its jobs', the scenes not over the threshold
    /// skipped).
    pub counts: UnitCounts,
}

/// One run of the cloud work: the pipeline, or the same work as separate jobs.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineRun {
    /// What the run was.
    pub name: String,
    /// Its `PIPELINE_RUN`, which keeps its jobs apart from the other runs'.
    pub env: String,
    /// The pipeline's id (none for separate jobs).
    pub pipeline: Option<String>,
    /// How it ended.
    pub state: String,
    /// Seconds from submitting to the end.
    pub wall_s: f64,
    /// Per-stage counts.
    pub stages: Vec<StageFigures>,
    /// Jobs it ran.
    pub jobs: usize,
    /// Scenes whose detect `stats.json`, read by the harness, is over the threshold.
    pub over_threshold: usize,
    /// Scenes over the threshold not cleared, plus scenes cleared but not over it.
    pub remove_mismatches: usize,
    /// The summary's output CID.
    pub summary_output: Option<String>,
    /// `counts` of the summary's `summary.json`.
    pub summary_counts: Value,
    /// The counts the detect stats call for.
    pub summary_expected: Value,
    /// Succeeded remove jobs whose scene's detect job is known.
    pub removes_checked: usize,
    /// Of those, the ones that ran on the worker that ran their scene's detect job.
    pub removes_same_worker: usize,
    /// Redis commands while it ran (none across a Redis restart, which resets the counters).
    pub redis_calls: Option<u64>,
    /// Redis commands per job.
    pub redis_calls_per_job: Option<f64>,
    /// Seconds the harness's checks took.
    pub check_s: f64,
    /// Faults injected, when.
    pub faults: Vec<String>,
    /// What went wrong in it.
    pub problems: Vec<String>,
}

impl PipelineRun {
    /// Fraction of the checked remove jobs that ran where their scene was detected.
    pub fn locality(&self) -> f64 {
        crate::report::ratio(self.removes_same_worker as u64, self.removes_checked as u64)
    }

    fn counts(&self) -> Vec<(String, u64, u64, u64)> {
        self.stages.iter().map(|s| (s.name.clone(), s.counts.succeeded, s.counts.skipped, s.counts.failed)).collect()
    }
}

/// A `shoal-loadtest pipeline` run.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// The command line.
    pub command: String,
    /// When it started (Unix seconds).
    pub started_at_unix_s: u64,
    /// Whether every check held.
    pub passed: bool,
    /// Scenes.
    pub scenes: usize,
    /// Worker processes.
    pub workers: usize,
    /// Jobs each worker runs at once.
    pub worker_concurrency: usize,
    /// Shard streams.
    pub shards: u32,
    /// Side of a scene in pixels.
    pub tile_px: u32,
    /// The real scene the tiles were cut from.
    pub source_scene: String,
    /// The scenes directory.
    pub scenes_cid: String,
    /// Bytes of the scenes directory.
    pub catalogue_bytes: u64,
    /// The cloud fraction over which remove runs.
    pub threshold: f64,
    /// Seconds cutting the tiles.
    pub generate_s: f64,
    /// Seconds adding them and the programs.
    pub add_s: f64,
    /// Seconds starting the stack.
    pub stack_start_s: f64,
    /// Seconds for everything.
    pub total_s: f64,
    /// The clean pipeline's time over the separate jobs'.
    pub time_ratio: f64,
    /// The clean pipeline's Redis commands per job over the separate jobs'.
    pub redis_ratio: Option<f64>,
    /// The clean pipeline, the separate jobs, the pipeline through faults.
    pub runs: Vec<PipelineRun>,
    /// CPU seconds of each process still running at the end.
    pub cpu_s: BTreeMap<String, f64>,
    /// Why it failed, if it did.
    pub problems: Vec<String>,
    /// The run's temporary home, when it had one: removed when the report is dropped, after it
    /// is written (removing many block files takes a while, and the report must not wait on it).
    #[serde(skip)]
    pub home: Option<Arc<tempfile::TempDir>>,
}

/// Why `report` fails: each run's own problems, an unfinished run, a run whose outputs differ
/// from the clean pipeline's, a fault run without its faults.
pub fn problems(report: &PipelineReport) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(clean) = report.runs.first() else { return vec!["no run".into()] };
    for run in &report.runs {
        problems.extend(run.problems.iter().cloned());
        if run.state != "succeeded" {
            problems.push(format!("{}: {}", run.name, run.state));
        }
        if run.summary_output != clean.summary_output {
            problems.push(format!(
                "{}: summary output {:?}, the clean pipeline's {:?}",
                run.name, run.summary_output, clean.summary_output
            ));
        }
        if run.counts() != clean.counts() {
            problems.push(format!(
                "{}: stage counts {:?}, the clean pipeline's {:?}",
                run.name,
                run.counts(),
                clean.counts()
            ));
        }
    }
    if report.runs.iter().skip(2).any(|run| run.faults.is_empty()) {
        problems.push("the fault run ended before its faults were injected".into());
    }
    problems
}

impl RunReport for PipelineReport {
    fn summary(&self) -> String {
        let mut out = String::new();
        for run in &self.runs {
            let counts: Vec<String> =
                run.counts().iter().map(|(name, ok, skip, failed)| format!("{name} {ok}/{skip}/{failed}")).collect();
            let _ = writeln!(
                out,
                "{}: {} in {:.1} s, {} (succeeded/skipped/failed), {} remove mismatches, locality {:.3}, summary {}",
                run.name,
                run.state,
                run.wall_s,
                counts.join(" "),
                run.remove_mismatches,
                run.locality(),
                run.summary_output.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(out, "time pipeline / separate jobs: {:.3}", self.time_ratio);
        let verdict = if self.passed { "PASSED".to_string() } else { format!("FAILED: {}", self.problems.join("; ")) };
        let _ = writeln!(out, "{verdict}");
        out
    }

    fn passed(&self) -> bool {
        self.passed
    }

    fn documents(&self, _name: &str) -> Vec<(&'static str, String)> {
        let mut md = String::new();
        let _ = writeln!(md, "# The cloud pipeline over {} scenes\n", self.scenes);
        let _ = writeln!(md, "`{}`\n", self.command);
        let _ = writeln!(
            md,
            "detect (cloud-detect) on each of {} {}×{} px windows of {} ({}), remove where detect's own \
             `stats.json` cloud_fraction > {}, one summary over detect.all and remove.all; {} worker \
             processes × {} slots, {} shards, verification `none`. Three runs on one stack, told apart by \
             `PIPELINE_RUN` so none reuses another's jobs: an untimed warm-up (separate jobs over the first 64 scenes, so every worker has compiled the programs it runs most), the pipeline, the same \
             jobs submitted separately stage by stage (baseline), and the pipeline again with a worker \
             SIGKILLed and Redis SIGKILLed and restarted mid-run.\n",
            self.scenes,
            self.tile_px,
            self.tile_px,
            self.source_scene,
            human_bytes(self.catalogue_bytes),
            self.threshold,
            self.workers,
            self.worker_concurrency,
            self.shards
        );
        let _ = writeln!(md, "**{}**\n", if self.passed { "Passed" } else { "Failed" });
        let redis_ratio = self.redis_ratio.map_or("-".to_string(), |r| format!("{r:.3}"));
        figure_table(
            &mut md,
            &[
                ("pipeline time / separate jobs time", format!("{:.3}", self.time_ratio)),
                ("pipeline Redis commands per job / separate jobs'", redis_ratio),
                (
                    "faulted pipeline time / clean pipeline time",
                    self.runs
                        .get(2)
                        .map_or("-".into(), |f| format!("{:.3}", f.wall_s / self.runs[0].wall_s.max(f64::EPSILON))),
                ),
            ],
        );
        let _ = writeln!(
            md,
            "\n| run | state | wall s | jobs | detect ✓/↷/✗ | remove ✓/↷/✗ | summary ✓/✗ | over threshold (read by the harness) | remove mismatches | summary counts match | remove on detect's worker | Redis cmds / job | summary output |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for run in &self.runs {
            let stage = |name: &str| run.stages.iter().find(|s| s.name == name).map(|s| s.counts).unwrap_or_default();
            let (d, r, s) = (stage("detect"), stage("remove"), stage("summary"));
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {} | {}/{}/{} | {}/{}/{} | {}/{} | {} | {} | {} | {}/{} ({:.3}) | {} | `{}` |",
                run.name,
                run.state,
                run.wall_s,
                run.jobs,
                d.succeeded,
                d.skipped,
                d.failed,
                r.succeeded,
                r.skipped,
                r.failed,
                s.succeeded,
                s.failed,
                run.over_threshold,
                run.remove_mismatches,
                if run.summary_counts == run.summary_expected { "yes" } else { "no" },
                run.removes_same_worker,
                run.removes_checked,
                run.locality(),
                run.redis_calls_per_job.map_or("-".into(), |c| format!("{c:.1}")),
                run.summary_output.as_deref().unwrap_or("-"),
            );
        }
        if let Some(faulted) = self.runs.get(2) {
            let _ = writeln!(md, "\nFaults: {}.", faulted.faults.join("; "));
        }
        let _ = writeln!(
            md,
            "\nRedis commands are `INFO commandstats` calls between a run's start and end, the \
             harness's own polling included (a pipeline status read every 0.5 s, 2 s past 1,000 scenes; \
             for separate jobs, job states read in batches of 1,000 every 0.5 s); the faulted run has none, \
             Redis's counters restart with it. Locality is by the worker whose execution of each job \
             completed. Setup: tiles {:.1} s, adding {:.1} s, stack {:.1} s; everything {:.1} s.",
            self.generate_s, self.add_s, self.stack_start_s, self.total_s
        );
        if !self.problems.is_empty() {
            let _ = writeln!(md, "\n## Problems\n");
            for problem in &self.problems {
                let _ = writeln!(md, "- {problem}");
            }
        }
        vec![("md", md)]
    }
}
