//! `ml-train [--epochs N] [--learning-rate R] [--batch-size B] [--hidden H] [--seed S] [DATA [OUTPUT_DIR]]`
//! — defaults `/inputs/digits.csv` (or a directory holding it) and `/outputs`.

use std::path::PathBuf;
use std::process::ExitCode;

use ml_train::{Options, TrainConfig};

const USAGE: &str = "usage: ml-train [--epochs N] [--learning-rate R] [--batch-size B] [--hidden H] [--seed S] \
                     [DATA [OUTPUT_DIR]]   (defaults /inputs/digits.csv /outputs; no --seed: host randomness)";

fn parse_args(args: Vec<String>) -> Result<Options, String> {
    let mut config = TrainConfig::default();
    let mut seed = None;
    let mut paths = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let bad = |name: &str, value: &str| format!("{name}: {value:?} is not valid");
        match arg.as_str() {
            "--epochs" => {
                let v = value(&arg)?;
                config.epochs = v.parse().map_err(|_| bad(&arg, &v))?;
            }
            "--learning-rate" => {
                let v = value(&arg)?;
                config.learning_rate =
                    v.parse().ok().filter(|r: &f64| r.is_finite() && *r > 0.0).ok_or_else(|| bad(&arg, &v))?;
            }
            "--batch-size" => {
                let v = value(&arg)?;
                config.batch_size = v.parse().ok().filter(|b| *b > 0).ok_or_else(|| bad(&arg, &v))?;
            }
            "--hidden" => {
                let v = value(&arg)?;
                config.hidden = v
                    .parse()
                    .ok()
                    .filter(|h| (1..=ml_train::format::MAX_HIDDEN).contains(h))
                    .ok_or_else(|| bad(&arg, &v))?;
            }
            "--seed" => {
                let v = value(&arg)?;
                seed = Some(v.parse().map_err(|_| bad(&arg, &v))?);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if paths.len() > 2 {
        return Err("at most two paths: DATA and OUTPUT_DIR".into());
    }
    let mut paths = paths.into_iter();
    Ok(Options {
        data: paths.next().unwrap_or_else(|| PathBuf::from("/inputs/digits.csv")),
        outputs: paths.next().unwrap_or_else(|| PathBuf::from("/outputs")),
        config,
        seed,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ml-train: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match ml_train::run(&options) {
        Ok(metrics) => {
            println!(
                "ml-train: {} after {} epochs (seed {} from {}): held-out accuracy {:.4} over {} rows, \
                 held-out loss {:.4}, train loss {:.4}",
                metrics.model,
                metrics.epochs,
                metrics.seed,
                metrics.seed_source,
                metrics.held_out_accuracy,
                metrics.held_out_rows,
                metrics.held_out_loss,
                metrics.train_loss
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ml-train: {error}");
            ExitCode::FAILURE
        }
    }
}
