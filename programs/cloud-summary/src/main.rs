//! `cloud-summary [DETECTED_DIR [CLEARED_DIR [OUTPUT_DIR]]]` — defaults `/detected`,
//! `/cleared` and `/outputs`, where the cloud pipeline mounts `detect.all` and `remove.all`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--help" || a == "-h") {
        println!("usage: cloud-summary [DETECTED_DIR [CLEARED_DIR [OUTPUT_DIR]]]   (defaults /detected /cleared /outputs)");
        return ExitCode::SUCCESS;
    }
    let arg = |index: usize, default: &str| {
        args.get(index)
            .map_or_else(|| PathBuf::from(default), PathBuf::from)
    };
    match cloud_summary::run(
        &arg(0, "/detected"),
        &arg(1, "/cleared"),
        &arg(2, "/outputs"),
    ) {
        Ok(summary) => {
            println!(
                "cloud-summary: {} scenes, {} cleared; wrote {}, {} and {} ({}×{} cells)",
                summary.counts.scenes,
                summary.counts.cleared,
                cloud_summary::CSV_NAME,
                cloud_summary::JSON_NAME,
                cloud_summary::SHEET_NAME,
                summary.contact_sheet.columns,
                summary.contact_sheet.rows,
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cloud-summary: {error}");
            ExitCode::FAILURE
        }
    }
}
