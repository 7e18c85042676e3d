//! The reliability harness (`shoal-loadtest chaos`): a whole Shoal deployment as separate
//! processes on loopback (a private `redis-server`, a `shoal gateway`, several `shoal worker`s
//! sharing one block store), a job mix submitted through the HTTP API, faults injected on a
//! schedule (SIGKILL a worker and start a replacement, SIGSTOP/SIGCONT a worker, restart Redis,
//! restart the gateway), every job waited for, every output CID checked against one computed
//! independently. It reports a [`crate::figures::Report`].
//!
//! - [`options`]: what to run ([`Options`], the subcommand's command line).
//! - [`setup`]: the home, binary, programs and block store both workloads start from.
//! - [`faults`]: the fault schedule.
//! - [`mix`]: the reliability mix (`--workload mix`).
//! - [`locality`]: the simulation's workload on real processes (`--workload locality`).
//! - [`report`]: the report's Markdown and SVG, and its verdict.

pub mod faults;
pub mod locality;
pub mod mix;
pub mod options;
pub mod report;
pub mod setup;

use std::path::Path;

pub use options::{FsyncMode, Options, Replace, WorkloadKind};

use crate::driver::Mode;
use crate::error::Result;
use crate::figures::Report;

impl Mode for Options {
    type Report = Report;

    fn report_prefix(&self) -> Option<&Path> {
        self.report.as_deref()
    }

    async fn run(&self, command: String) -> Result<Report> {
        let setup = setup::Setup::new(self)?;
        match self.workload {
            WorkloadKind::Mix => mix::run(self, command, setup).await,
            WorkloadKind::Locality => locality::run(self, command, setup).await,
        }
    }
}
