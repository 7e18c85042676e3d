//! Pipeline commands over the gateway's HTTP API: `pipeline run`, `pipeline status`,
//! `pipeline cancel`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use shoal_jobs::{PipelineState, PipelineStatus, StageStatus, UnitState};

use crate::api::{Api, ApiArgs};
use crate::home::Home;

/// `shoal pipeline`.
#[derive(Subcommand)]
pub(crate) enum PipelineCommand {
    /// Create a pipeline from a JSON or YAML spec file and, by default, wait until it ends.
    Run(RunArgs),
    /// Show a pipeline's stages: how far each got, and why units failed.
    Status(PipelineArgs),
    /// Cancel a pipeline: no stage starts any more, and its unfinished jobs are cancelled.
    Cancel(PipelineArgs),
}

/// `shoal pipeline run`.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// The pipeline spec (`inputs` and `stages`; see the README's Pipelines): a JSON file, or
    /// YAML when its name ends in `.yaml` or `.yml`.
    file: PathBuf,
    /// Makes the creation idempotent: the same key and spec return the same pipeline.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print the pipeline id and return at once instead of waiting.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds (the pipeline keeps running).
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    #[command(flatten)]
    api: ApiArgs,
}

/// `shoal pipeline status` / `shoal pipeline cancel`.
#[derive(Args)]
pub(crate) struct PipelineArgs {
    /// The pipeline id.
    pipeline: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs one `shoal pipeline` command.
pub(crate) async fn run(home: &Home, command: PipelineCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        PipelineCommand::Run(args) => create(home, args, json).await,
        PipelineCommand::Status(args) => status(home, args, json).await,
        PipelineCommand::Cancel(args) => cancel(home, args, json).await,
    }
}

/// The spec in `file` as the JSON the gateway takes: a JSON file as written (the gateway's
/// errors name its fields), a YAML one (`.yaml`, `.yml`) converted, its syntax errors with their
/// line and column.
fn read_spec(file: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let yaml = matches!(file.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    if !yaml {
        return Ok(bytes);
    }
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", file.display()))?;
    let spec: serde_json::Value =
        serde_saphyr::from_str(text).with_context(|| format!("{} is not a YAML pipeline spec", file.display()))?;
    Ok(serde_json::to_vec(&spec)?)
}

/// `shoal pipeline run FILE`: creates the pipeline, then (unless `--no-wait`) shows each stage's
/// progress until it ends and prints its final status. Exits 1 unless it succeeded.
async fn create(home: &Home, args: RunArgs, json: bool) -> anyhow::Result<ExitCode> {
    let spec = read_spec(&args.file)?;
    let api = Api::new(home, &args.api)?;
    let created = api
        .create_pipeline(spec, args.idempotency_key.as_deref())
        .await
        .with_context(|| format!("creating the pipeline of {}", args.file.display()))?;
    if args.no_wait {
        if json {
            crate::print_json(&created)?;
        } else {
            println!("{}", created.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("pipeline {} created ({} stages)", created.id, created.stages.len());
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("a valid template"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut delay = Duration::from_millis(100);
    let status = loop {
        let status = api.pipeline(&created.id).await?;
        if status.state != PipelineState::Running {
            break status;
        }
        let progress: Vec<String> = status
            .stages
            .iter()
            .map(|stage| {
                let (decided, total) = progress(stage);
                format!("{} {decided}/{total}", stage.name)
            })
            .collect();
        spinner.set_message(progress.join(", "));
        if Instant::now() >= deadline {
            spinner.finish_and_clear();
            bail!(
                "pipeline {} is still running after {} s; follow it with `shoal pipeline status {}`",
                status.id,
                args.timeout_secs,
                status.id
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    };
    spinner.finish_and_clear();
    if json {
        crate::print_json(&status)?;
    } else {
        print!("{}", describe(&status));
    }
    Ok(if status.state == PipelineState::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `shoal pipeline status ID`.
async fn status(home: &Home, args: PipelineArgs, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(home, &args.api)?;
    let status = api.pipeline(&args.pipeline).await?;
    if json {
        crate::print_json(&status)?;
    } else {
        print!("{}", describe(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal pipeline cancel ID`.
async fn cancel(home: &Home, args: PipelineArgs, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(home, &args.api)?;
    let status = api.cancel_pipeline(&args.pipeline).await?;
    if json {
        crate::print_json(&status)?;
    } else {
        println!("{} {}", status.id, status.state);
    }
    Ok(ExitCode::SUCCESS)
}

/// Width of a stage's progress bar, between its brackets.
const BAR_WIDTH: usize = 20;

/// A stage's units decided (succeeded, failed or skipped) and listed.
fn progress(stage: &StageStatus) -> (u64, u64) {
    let c = &stage.counts;
    (c.succeeded + c.failed + c.skipped, c.waiting + c.running + c.succeeded + c.failed + c.skipped)
}

/// `[=====>    ]`: `done` of `total` as a bar `width` wide between brackets.
fn bar(done: u64, total: u64, width: usize) -> String {
    if total == 0 {
        return format!("[{}]", " ".repeat(width));
    }
    if done >= total {
        return format!("[{}]", "=".repeat(width));
    }
    let filled = (done as u128 * width as u128 / total as u128) as usize;
    format!("[{}>{}]", "=".repeat(filled), " ".repeat(width - filled - 1))
}

/// The pipeline as `shoal pipeline status` prints it: its state, then a line per stage with a
/// progress bar and the counts, then the units that failed with why.
fn describe(status: &PipelineStatus) -> String {
    let mut out = format!("pipeline {}\nstate    {}\n", status.id, status.state);
    if let Some(message) = &status.message {
        out.push_str(&format!("message  {message}\n"));
    }
    let name_width = status.stages.iter().map(|stage| stage.name.len()).max().unwrap_or(0);
    for stage in &status.stages {
        let (decided, total) = progress(stage);
        let c = &stage.counts;
        out.push_str(&format!(
            "{:name_width$} {} {decided}/{total}  waiting {}, running {}, succeeded {}, failed {}, skipped {}\n",
            stage.name,
            bar(decided, total, BAR_WIDTH),
            c.waiting,
            c.running,
            c.succeeded,
            c.failed,
            c.skipped
        ));
        for unit in stage.units.iter().filter(|unit| unit.state == UnitState::Failed) {
            let which = unit.file.as_deref().map_or(String::new(), |file| format!(" {file}"));
            let job = unit.job.as_deref().map_or(String::new(), |job| format!(" (job {job})"));
            let reason = unit.reason.as_deref().unwrap_or("failed");
            out.push_str(&format!("  failed{which}{job}: {reason}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_jobs::{UnitCounts, UnitStatus};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../jobs/tests/fixtures");

    #[test]
    fn a_yaml_spec_reads_as_the_json_one() {
        let json: serde_json::Value =
            serde_json::from_slice(&read_spec(&Path::new(FIXTURES).join("cloud-pipeline.json")).unwrap()).unwrap();
        let yaml: serde_json::Value =
            serde_json::from_slice(&read_spec(&Path::new(FIXTURES).join("cloud-pipeline.yaml")).unwrap()).unwrap();
        assert_eq!(yaml, json);
        assert_eq!(yaml["stages"][1]["when"]["value"], serde_json::json!(0.05), "a number stays a number");
    }

    #[test]
    fn a_yaml_syntax_error_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broken.yml");
        std::fs::write(&file, "inputs:\n  scenes: bafy\nstages: [\n  {name: detect\n").unwrap();
        let error = format!("{:#}", read_spec(&file).unwrap_err());
        assert!(error.contains("broken.yml is not a YAML pipeline spec"), "{error}");
        assert!(error.contains("line"), "the parser's position is kept: {error}");
    }

    #[test]
    fn a_json_spec_goes_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spec.json");
        std::fs::write(&file, b"{\"stages\": oops").unwrap();
        assert_eq!(read_spec(&file).unwrap(), b"{\"stages\": oops", "the gateway names what is wrong with it");
    }

    #[test]
    fn the_bar_fills_with_what_is_decided() {
        assert_eq!(bar(0, 10, 10), "[>         ]");
        assert_eq!(bar(5, 10, 10), "[=====>    ]");
        assert_eq!(bar(12, 40, 10), "[===>      ]");
        assert_eq!(bar(9, 10, 10), "[=========>]");
        assert_eq!(bar(10, 10, 10), "[==========]");
        assert_eq!(bar(0, 0, 4), "[    ]", "no unit listed yet");
    }

    #[test]
    fn a_status_prints_a_line_per_stage_and_each_failed_unit() {
        let unit = |file: &str, state: UnitState, reason: Option<&str>| UnitStatus {
            file: Some(file.into()),
            state,
            job: (state != UnitState::Waiting).then(|| "01JOB".to_string()),
            output: None,
            reason: reason.map(str::to_string),
        };
        let status = PipelineStatus {
            id: "01PIPE".into(),
            tenant: "test".parse().unwrap(),
            state: PipelineState::Running,
            created_ms: 1,
            finished_ms: None,
            message: None,
            stages: vec![
                StageStatus {
                    name: "detect".into(),
                    counts: UnitCounts { waiting: 1, running: 1, succeeded: 1, failed: 1, skipped: 0 },
                    units: vec![
                        unit("a.tif", UnitState::Succeeded, None),
                        unit("b.tif", UnitState::Failed, Some("trap: unreachable")),
                        unit("c.tif", UnitState::Running, None),
                        unit("d.tif", UnitState::Waiting, None),
                    ],
                },
                StageStatus {
                    name: "sum".into(),
                    counts: UnitCounts { waiting: 1, ..UnitCounts::default() },
                    units: vec![],
                },
            ],
        };
        let printed = describe(&status);
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(
            lines,
            [
                "pipeline 01PIPE",
                "state    running",
                "detect [==========>         ] 2/4  waiting 1, running 1, succeeded 1, failed 1, skipped 0",
                "  failed b.tif (job 01JOB): trap: unreachable",
                "sum    [>                   ] 0/1  waiting 1, running 0, succeeded 0, failed 0, skipped 0",
            ]
        );
    }
}
