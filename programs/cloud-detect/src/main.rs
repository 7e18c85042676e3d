//! `cloud-detect [SCENE_DIR [OUTPUT_DIR]]` — defaults `/inputs` and `/outputs`,
//! the mount points Shoal's worker gives a job.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    if first.as_deref().is_some_and(|a| a == "--help" || a == "-h") {
        println!("usage: cloud-detect [SCENE_DIR [OUTPUT_DIR]]   (defaults /inputs /outputs)");
        return ExitCode::SUCCESS;
    }
    let scene_dir = first.map_or_else(|| PathBuf::from("/inputs"), PathBuf::from);
    let output_dir = args
        .next()
        .map_or_else(|| PathBuf::from("/outputs"), PathBuf::from);
    match cloud_detect::run(&scene_dir, &output_dir) {
        Ok(stats) => {
            let bqa = &stats.bqa_cloud_agreement.agreement;
            println!(
                "{}: cloud {:.2} % ({} of {} px), vs BQA high-confidence cloud: accuracy {:.4}, IoU {:.4}",
                stats.scene_id,
                stats.cloud_fraction * 100.0,
                stats.pixels.cloud,
                stats.pixels.total - stats.pixels.fill,
                bqa.accuracy,
                bqa.iou,
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cloud-detect: {error}");
            ExitCode::FAILURE
        }
    }
}
