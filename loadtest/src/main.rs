//! `shoal-loadtest`: see the crate documentation of `shoal_loadtest`.

use std::process::ExitCode;

use clap::Parser;
use shoal_loadtest::Cli;

// The load generator shares the machine with what it measures: the allocator the `shoal` binary
// uses keeps its own allocations as cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    Cli::parse().command.drive()
}
