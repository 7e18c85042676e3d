//! `cell-count [IMAGE_OR_DIR [OUTPUT_DIR]]` — defaults `/inputs` and `/outputs`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--help" || a == "-h") {
        println!("usage: cell-count [IMAGE_OR_DIR [OUTPUT_DIR]]   (defaults /inputs /outputs)");
        return ExitCode::SUCCESS;
    }
    let arg = |index: usize, default: &str| {
        args.get(index)
            .map_or_else(|| PathBuf::from(default), PathBuf::from)
    };
    match cell_count::run(&arg(0, "/inputs"), &arg(1, "/outputs")) {
        Ok(count) => {
            println!(
                "cell-count: {} nuclei in {} ({}×{})",
                count.count, count.image, count.width, count.height
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cell-count: {error}");
            ExitCode::FAILURE
        }
    }
}
