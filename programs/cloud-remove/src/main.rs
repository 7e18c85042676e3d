//! `cloud-remove [SCENE_DIR [MASK [OUTPUT_DIR]]]` — defaults `/inputs`,
//! `/mask` (a cloud-detect output directory or a mask PNG) and `/outputs`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--help" || a == "-h") {
        println!("usage: cloud-remove [SCENE_DIR [MASK [OUTPUT_DIR]]]   (defaults /inputs /mask /outputs)");
        return ExitCode::SUCCESS;
    }
    let arg = |index: usize, default: &str| {
        args.get(index)
            .map_or_else(|| PathBuf::from(default), PathBuf::from)
    };
    match cloud_remove::run(&arg(0, "/inputs"), &arg(1, "/mask"), &arg(2, "/outputs")) {
        Ok(summary) => {
            println!(
                "cloud-remove: {} of {} pixels transparent, wrote {}",
                summary.transparent,
                summary.total,
                cloud_remove::OUTPUT_NAME
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cloud-remove: {error}");
            ExitCode::FAILURE
        }
    }
}
