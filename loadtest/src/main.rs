//! `shoal-loadtest`: see the crate documentation of `shoal_loadtest`. `shoal-loadtest sim …`
//! runs the scale simulation instead ([`shoal_loadtest::sim`]); every other command line is the
//! reliability harness's, unchanged.

use std::process::ExitCode;

use clap::Parser;
use shoal_loadtest::sim::{run_sim, SimOptions};
use shoal_loadtest::{run, Options};

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("sim") {
        return simulate();
    }
    let options = Options::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let command =
        std::env::args().map(|a| if a.contains(' ') { format!("'{a}'") } else { a }).collect::<Vec<_>>().join(" ");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(run(&options, command)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(prefix) = &options.report {
        if let Err(e) = report.write(prefix) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        eprintln!("report: {}.{{json,md,svg}}", prefix.display());
    }
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let command =
        std::env::args().map(|a| if a.contains(' ') { format!("'{a}'") } else { a }).collect::<Vec<_>>().join(" ");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(run_sim(&options, command)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(prefix) = &options.report {
        if let Err(e) = report.write(prefix) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        eprintln!("report: {}.{{json,md,svg}}", prefix.display());
    }
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
