//! `echo-hash [ARGS...]`: hashes every file under `/inputs` into `/outputs`
//! (see `test_programs::echo_hash`) and prints arguments, sorted environment
//! and digests on stdout. Arguments are only echoed, never interpreted, so a
//! test can pass anything; `ECHO_HASH_INPUT` / `ECHO_HASH_OUTPUT` override the
//! two paths. A missing input (a job without inputs) hashes nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use test_programs::echo_hash::{hash_tree, write_report};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let input =
        PathBuf::from(std::env::var("ECHO_HASH_INPUT").unwrap_or_else(|_| "/inputs".to_owned()));
    let output =
        PathBuf::from(std::env::var("ECHO_HASH_OUTPUT").unwrap_or_else(|_| "/outputs".to_owned()));

    let files = if input.exists() {
        match hash_tree(&input, &output) {
            Ok(files) => files,
            Err(error) => {
                eprintln!("echo-hash: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        Vec::new()
    };
    if let Err(error) = write_report(&mut std::io::stdout().lock(), &args, &env, &files) {
        eprintln!("echo-hash: cannot write stdout: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
