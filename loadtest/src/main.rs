//! `shoal-loadtest`: see the crate documentation of `shoal_loadtest`. `shoal-loadtest sim …`
//! runs the scale simulation instead ([`shoal_loadtest::sim`]), `shoal-loadtest scenes …` one
//! job fanned out over many real-format scenes ([`shoal_loadtest::scenes`]); every other command
//! line is the reliability harness's, unchanged.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use shoal_loadtest::scenes::{run_scenes, ScenesOptions, ScenesReport};
use shoal_loadtest::sim::{run_sim, SimOptions, SimReport};
use shoal_loadtest::{run, Options, Report};

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("sim") {
        return simulate();
    }
    if std::env::args().nth(1).as_deref() == Some("scenes") {
        return scenes();
    }
    let options = Options::parse();
    let report = match drive("warn", |command| run(&options, command), options.report.as_deref(), Report::write, true) {
        Ok(report) => report,
        Err(code) => return code,
    };
    println!(
        "submitted {} succeeded {} failed {} lost {} wrong {} duplicates {} | p50 {:.0} ms p95 {:.0} ms p99 {:.0} ms | {:.1} jobs/s | {} faults",
        report.submitted,
        report.succeeded,
        report.failed,
        report.lost,
        report.wrong,
        report.duplicates,
        report.p50_ms,
        report.p95_ms,
        report.p99_ms,
        report.throughput_per_s,
        report.faults_injected.len()
    );
    if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Success (accepted jobs that succeeded with the expected output) below which `sim` fails.
const SIM_SUCCESS: f64 = 0.999;

/// `shoal-loadtest sim …`: the scale simulation.
fn simulate() -> ExitCode {
    let options =
        SimOptions::parse_from(std::iter::once("shoal-loadtest sim".to_string()).chain(std::env::args().skip(2)));
    let report =
        match drive("error", |command| run_sim(&options, command), options.report.as_deref(), SimReport::write, true) {
            Ok(report) => report,
            Err(code) => return code,
        };
    let b = &report.base;
    println!(
        "{} workers | submitted {} succeeded {} failed {} lost {} wrong {} duplicates {} | success {:.3}% | hit rate {:.1}% local {:.1}% | p50 {:.0} ms p99 {:.0} ms | {:.1} jobs/s",
        report.workers,
        b.submitted,
        b.succeeded,
        b.failed,
        b.lost,
        b.wrong,
        b.duplicates,
        report.success_rate() * 100.0,
        report.cache_hit_rate * 100.0,
        report.local_task_rate * 100.0,
        b.p50_ms,
        b.p99_ms,
        b.throughput_per_s
    );
    if report.success_rate() >= SIM_SUCCESS && b.wrong == 0 && b.duplicates == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `shoal-loadtest scenes …`: one job fanned out over a directory of real-format scenes; fails
/// unless every entry is there and right and the warm run was local enough.
fn scenes() -> ExitCode {
    let options =
        ScenesOptions::parse_from(std::iter::once("shoal-loadtest scenes".to_string()).chain(std::env::args().skip(2)));
    match drive("warn", |command| run_scenes(&options, command), options.report.as_deref(), ScenesReport::write, false)
    {
        Ok(report) => {
            print!("{}", report.summary());
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(code) => code,
    }
}

/// The part both modes share: logging at `level` unless `RUST_LOG` says otherwise, a
/// multi-threaded runtime running `job` with the command line, and the report written under
/// `prefix` if one is given (with an SVG plot if `with_plot`). An error is printed and becomes the exit code.
fn drive<R, E: Display, F: Future<Output = Result<R, E>>>(
    level: &str,
    job: impl FnOnce(String) -> F,
    prefix: Option<&Path>,
    write: fn(&R, &Path) -> shoal_loadtest::Result<()>,
    with_plot: bool,
) -> Result<R, ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let command =
        std::env::args().map(|a| if a.contains(' ') { format!("'{a}'") } else { a }).collect::<Vec<_>>().join(" ");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: starting the async runtime: {e}");
        ExitCode::FAILURE
    })?;
    let report = runtime.block_on(job(command)).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    if let Some(prefix) = prefix {
        write(&report, prefix).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        })?;
        eprintln!("report: {}.{{json,md{}}}", prefix.display(), if with_plot { ",svg" } else { "" });
    }
    Ok(report)
}
