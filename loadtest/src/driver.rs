//! The one path every subcommand takes: logging, an async runtime running the [`Mode`], the
//! report written, a summary printed, and the exit status from the report's verdict.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use crate::error::Result;
use crate::report::RunReport;

/// A subcommand's options, which know how to run it.
pub trait Mode {
    /// What a run reports.
    type Report: RunReport;

    /// The log level unless `RUST_LOG` says otherwise.
    const LOG_LEVEL: &'static str = "warn";

    /// Where to write the report (`--report PREFIX`), if anywhere.
    fn report_prefix(&self) -> Option<&Path>;

    /// Runs it; `command` (the command line) is recorded in the report.
    fn run(&self, command: String) -> impl Future<Output = Result<Self::Report>>;
}

/// Runs `mode` as the command: logs to stderr, runs it on a multi-threaded runtime, writes its
/// report if asked, prints its summary. Exit status 0 if the report passed, 1 if not, 2 if the
/// run could not be carried out or the report not written.
pub fn drive<M: Mode>(mode: &M) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| M::LOG_LEVEL.into());
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
    let report = match runtime.block_on(mode.run(command)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(prefix) = mode.report_prefix() {
        match report.write(prefix) {
            Ok(paths) => {
                let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                eprintln!("report: {}", paths.join(", "));
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    println!("{}", report.summary().trim_end());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
