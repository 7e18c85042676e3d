//! The harness's integration tests, one binary: each module was its own test file. The runs
//! start real stacks and need the `shoal` binary built (`cargo build -p shoal-cli`).

mod byzantine;
mod common;
mod latency;
mod locality;
mod scenes;
mod sim;
mod verification;
mod whole_run;
