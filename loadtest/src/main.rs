//! `shoal-loadtest`: see the crate documentation of `shoal_loadtest`.

use std::process::ExitCode;

use clap::Parser;
use shoal_loadtest::{run, Options};

fn main() -> ExitCode {
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
