//! `shoal-loadtest`: see the crate documentation of `shoal_loadtest`.

use std::process::ExitCode;

use clap::Parser;
use shoal_loadtest::Cli;

fn main() -> ExitCode {
    Cli::parse().command.drive()
}
