//! The command line: `shoal-loadtest <chaos|sim|scenes|byzantine|verification|filecoin|pipeline|latency> [OPTIONS]`, each subcommand's options a
//! [`Mode`](crate::driver::Mode) the one [`drive`] runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shoal_testkit::TestkitError;

use crate::adversary::{run_adversary, AdversaryOptions};
use crate::byzantine::ByzantineOptions;
use crate::chaos::options::Options;
use crate::driver::drive;
use crate::error::{LoadtestError, Result};
use crate::filecoin::FilecoinOptions;
use crate::latency::LatencyOptions;
use crate::pipeline::PipelineOptions;
use crate::scenes::options::ScenesOptions;
use crate::sim::options::SimOptions;
use crate::verification::VerificationOptions;

/// The load, chaos and scale harness for Shoal (loopback only).
#[derive(Debug, Clone, Parser)]
#[command(name = "shoal-loadtest", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Reliability: a job mix (or the locality workload) through a stack of separate processes
    /// while workers are killed and paused and Redis and the gateway restarted; every output
    /// checked.
    Chaos(Options),
    /// Scale simulation: many in-process Shoal workers over a synthetic catalogue.
    Sim(SimOptions),
    /// One job fanned out over a directory of N real-format Landsat scenes, run cold and warm on
    /// K worker processes.
    Scenes(ScenesOptions),
    /// The reliability mix with a fraction of the workers adversarial and verifiers deciding,
    /// after an honest baseline of the same command: is any wrong result accepted, is every
    /// adversary caught, what does it cost?
    Byzantine(ByzantineOptions),
    /// The nondeterministic ML training job under each verification strategy (tolerance,
    /// comparator): honest runs — false disagreements, the spread of their accuracies, the cost
    /// of verifying — then each ML adversary kind alone: which lies does each strategy catch?
    Verification(VerificationOptions),
    /// Paid Filecoin retrievals: jobs over datasets only storage providers hold, bought by
    /// worker processes under a wallet limit too small for all, the cheapest provider lying and
    /// a worker killed mid-run; then the same datasets warm. Every failure `budget_exhausted`,
    /// every output verified, the ledger's books against what the providers accepted.
    Filecoin(FilecoinOptions),
    /// The three-stage cloud pipeline (detect, remove where cloudy, summary) over N real-format
    /// scenes on worker processes: clean, as separate jobs (the baseline), and through a worker
    /// kill and a Redis restart; remove's scenes, the summary and locality checked.
    Pipeline(PipelineOptions),
    /// Latency against BullMQ: open-loop echo-hash submissions at each offered rate over HTTP,
    /// each result waited for by its client (on the submission, else by long-poll, else polling);
    /// percentiles, achieved rate, backlog growth, the highest sustainable rate, CPU and load,
    /// where a job's time goes; a BullMQ no-op baseline at the same rates in the same run.
    Latency(LatencyOptions),
    /// One byzantine worker process (started by the harness and its tests).
    #[command(hide = true)]
    AdversaryWorker(AdversaryOptions),
}

impl Command {
    /// Runs the subcommand through [`drive`]; its exit status.
    pub fn drive(&self) -> ExitCode {
        match self {
            Command::Chaos(options) => drive(options),
            Command::Sim(options) => drive(options),
            Command::Scenes(options) => drive(options),
            Command::Byzantine(options) => drive(options),
            Command::Verification(options) => drive(options),
            Command::Filecoin(options) => drive(options),
            Command::Pipeline(options) => drive(options),
            Command::Latency(options) => drive(options),
            Command::AdversaryWorker(options) => match run_adversary(options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            },
        }
    }
}

/// The `shoal` binary: `--shoal` if given, else [`shoal_testkit::shoal_binary`]'s.
pub fn shoal_binary(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => shoal_testkit::shoal_binary().map_err(|e| match e {
            TestkitError::NoShoalBinary { .. } => LoadtestError::Setup(format!("{e} or pass --shoal")),
            e => e.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let Command::Sim(options) = Cli::parse_from(["shoal-loadtest", "sim"]).command else { panic!("not sim") };
        assert_eq!(options.catalogue, 100_000_000_000_000);
        assert_eq!(options.cache, 2_000_000_000_000);
        assert_eq!(options.workers, 100);
    }

    #[test]
    fn latency_rates_are_a_list_of_positive_numbers() {
        let Command::Latency(options) = Cli::parse_from(["shoal-loadtest", "latency"]).command else {
            panic!("not latency")
        };
        assert_eq!(options.rates, [250.0, 500.0, 1000.0, 1500.0]);
        assert_eq!((options.workers, options.worker_concurrency), (2, 8));
        let Command::Latency(options) = Cli::parse_from(["shoal-loadtest", "latency", "--rates", "10,20.5"]).command
        else {
            panic!("not latency")
        };
        assert_eq!(options.rates, [10.0, 20.5]);
        assert!(Cli::try_parse_from(["shoal-loadtest", "latency", "--rates", "100,0"]).is_err());
        assert!(Cli::try_parse_from(["shoal-loadtest", "latency", "--secs", "-1"]).is_err());
    }
}
