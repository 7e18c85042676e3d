//! `ml-compare [--accuracy-tolerance T] [--epochs N] [DATA [RESULT_A [RESULT_B [OUTPUT_DIR]]]]`
//! — defaults `/inputs/digits.csv`, `/results/a`, `/results/b`, `/outputs`. Exit 0: the results
//! agree; 1: they do not; 2: they could not be compared. One JSON line on stdout says why.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ml_compare::{Options, DEFAULT_ACCURACY_TOLERANCE};
use serde_json::json;

const USAGE: &str =
    "usage: ml-compare [--accuracy-tolerance T] [--epochs N] [DATA [RESULT_A [RESULT_B [OUTPUT_DIR]]]]   \
                     (defaults /inputs/digits.csv /results/a /results/b /outputs)";

fn parse_args(args: Vec<String>) -> Result<(Options, PathBuf), String> {
    let mut accuracy_tolerance = DEFAULT_ACCURACY_TOLERANCE;
    let mut epochs = None;
    let mut paths = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--accuracy-tolerance" => {
                let v = value(&arg)?;
                accuracy_tolerance = v
                    .parse()
                    .ok()
                    .filter(|t: &f64| (0.0..=1.0).contains(t))
                    .ok_or_else(|| format!("{arg}: {v:?} is not a number from 0 to 1"))?;
            }
            "--epochs" => {
                let v = value(&arg)?;
                epochs = Some(v.parse().map_err(|_| format!("{arg}: {v:?} is not valid"))?);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if paths.len() > 4 {
        return Err("at most four paths: DATA, RESULT_A, RESULT_B and OUTPUT_DIR".into());
    }
    let mut paths = paths.into_iter();
    let mut next = |default: &str| paths.next().unwrap_or_else(|| PathBuf::from(default));
    let options = Options {
        data: next("/inputs/digits.csv"),
        a: next("/results/a"),
        b: next("/results/b"),
        accuracy_tolerance,
        epochs,
    };
    Ok((options, next("/outputs")))
}

/// Writes `comparison.json` into `outputs`; a failure to is reported but does not change the
/// verdict, which stdout and the exit code carry.
fn write_output(outputs: &Path, value: &impl serde::Serialize) {
    let path = outputs.join("comparison.json");
    let mut bytes = serde_json::to_vec_pretty(value).expect("plain structs serialise");
    bytes.push(b'\n');
    if let Err(error) = fs::create_dir_all(outputs).and_then(|()| fs::write(&path, bytes)) {
        eprintln!("ml-compare: writing {}: {error}", path.display());
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (options, outputs) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("ml-compare: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match ml_compare::compare(&options) {
        Ok(comparison) => {
            write_output(&outputs, &comparison);
            let line = match comparison.failures.first() {
                None => json!({"agree": true, "accuracy_gap": comparison.accuracy_gap}),
                Some(first) => json!({
                    "agree": false,
                    "result": first.result,
                    "reason": first.reason,
                    "detail": first.detail,
                    "failures": comparison.failures.len(),
                }),
            };
            println!("{line}");
            ExitCode::from(if comparison.agree { 0 } else { 1 })
        }
        Err(error) => {
            let value = json!({"agree": null, "reason": error.reason(), "detail": error.to_string()});
            write_output(&outputs, &value);
            println!("{value}");
            ExitCode::from(2)
        }
    }
}
