//! Whole-system tests, in one binary: each module starts what it needs (a private `redis-server`
//! or Redis Cluster, the gateway, in-process or `shoal worker` processes, `shoal dev`) on
//! ephemeral ports under its own temporary directory, so the tests run side by side.
//!
//! The process tests run the `shoal` binary: `cargo build -p shoal-cli` first (`make test` does).

mod abuse_runtime;
mod bad_inputs;
mod cli;
mod cluster;
mod containers;
mod dashboard;
mod fanout;
mod filecoin;
mod filecoin_inputs;
mod landsat;
mod locality;
mod memo;
mod ml;
mod openapi;
mod pipelines;
mod programs;
mod recovery;
mod redis_restart;
mod system;
mod tenants;
mod verification;
mod waiting;
mod webhooks;
mod worker_resilience;

use sha2::{Digest, Sha256};

/// The lowercase hex SHA-256 of `bytes`, as `sha256sum` prints it.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
