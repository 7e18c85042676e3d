//! `abuse sleep SECONDS` | `abuse files COUNT`: guests that lean on the host
//! rather than the CPU.
//!
//! * `sleep` sleeps SECONDS with `std::thread::sleep` (a WASI `poll_oneoff`
//!   on one relative clock) and prints how long the monotonic clock says it
//!   slept, in whole seconds.
//! * `files` creates COUNT empty files `/outputs/f<N>` and prints `done`.

use std::fs::File;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |arg: Option<&String>| arg.and_then(|a| a.parse::<u64>().ok());
    match (args.first().map(String::as_str), count(args.get(1))) {
        (Some("sleep"), Some(seconds)) => {
            let started = Instant::now();
            std::thread::sleep(Duration::from_secs(seconds));
            println!("slept {}", started.elapsed().as_secs());
            ExitCode::SUCCESS
        }
        (Some("files"), Some(n)) => {
            for i in 0..n {
                if let Err(error) = File::create(format!("/outputs/f{i}")) {
                    eprintln!("abuse: creating file {i}: {error}");
                    return ExitCode::FAILURE;
                }
            }
            println!("done");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: abuse sleep SECONDS | abuse files COUNT");
            ExitCode::from(2)
        }
    }
}
