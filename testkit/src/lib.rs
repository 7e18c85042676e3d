//! `shoal-testkit`: how to start a Shoal stack for testing, written once for the whole-system
//! tests and the load harness. Used only by tests and the harness, never by a production crate.
//!
//! - [`shoal_binary`], [`repo_root`], [`programs_dir`], [`program_bytes`]: where the built
//!   `shoal` binary, the repository and the committed guest programs are.
//! - [`Stack`]: a private Redis, the gateway in-process, in-process workers and verifier, and
//!   `shoal worker` processes ([`Stack::spawn_worker_process`]) over one shared block store
//!   (served as a trustless gateway, [`Stack::content`], which the gateway reads job files from),
//!   with the calls the whole-system tests make (add content, submit, wait, read outputs).
//! - [`ProcessStack`]: a private Redis, a `shoal gateway` and `shoal worker`s as separate
//!   processes the caller can kill, pause and restart, and what each has cost.
//! - [`WorkerCommand`]: the one command line of a `shoal worker` process in a test stack.
//! - [`api_key`], [`keyed_client`]: API keys made straight in a stack's Redis, and clients
//!   that send them.
//! - [`TestkitError`]: why a stack could not be started or changed.

mod error;
mod keys;
mod paths;
mod process;
mod stack;

pub use error::TestkitError;
pub use keys::{api_key, keyed_client, TEST_TENANT};
pub use paths::{program_bytes, programs_dir, repo_root, shoal_binary};
pub use process::{
    process_context_switches, process_cpu_seconds, CommandStats, ProcessStack, ProcessStackConfig, RedisUsage, Role,
    WorkerCommand,
};
pub use stack::{Stack, StackOptions, SHARDS};
