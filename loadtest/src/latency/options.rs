//! What a latency run does: the options of `shoal-loadtest latency`.

use std::path::PathBuf;

use clap::builder::ArgPredicate;
use clap::Args;

/// Open-loop submissions of echo-hash jobs over small cached files at each of `--rates`, every
/// job waited for by its client, on a fresh process stack per rate; then the BullMQ no-op
/// baseline at the same rates in the same run: `shoal-loadtest latency [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct LatencyOptions {
    /// Offered rates, submissions a second, each run for `--secs` (none by default with
    /// `--memoised`).
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = positive,
        default_value = "250,500,1000,1500",
        default_value_if("memoised", ArgPredicate::IsPresent, None)
    )]
    pub rates: Vec<f64>,
    /// Measure memoised repeats: on a stack with a verifier, one job verified `always` and
    /// accepted, then its identical spec submitted this many times in a row, each answered
    /// from the memo; the gateway's time on each (its `Server-Timing`) and the round trip.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub memoised: Option<u64>,
    /// Seconds of submitting at each rate.
    #[arg(long, value_parser = positive, default_value_t = 10.0)]
    pub secs: f64,
    /// After the submitting, how long to wait for the jobs still outstanding; those left are
    /// counted at their wait so far (the percentiles are then lower bounds).
    #[arg(long, default_value_t = 20.0)]
    pub drain_secs: f64,
    /// Jobs submitted and not yet seen finished at most; a submission due while the client is
    /// at the limit goes late, and its lateness counts in its latency.
    #[arg(long, default_value_t = 8192)]
    pub max_in_flight: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 8)]
    pub worker_concurrency: usize,
    /// Shard streams (gateway and workers).
    #[arg(long, default_value_t = 16)]
    pub shards: u32,
    /// Distinct input files (random bytes from --seed, 1 B to 64 KiB each).
    #[arg(long, default_value_t = 16)]
    pub inputs: usize,
    /// Seed of the inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The offered rate whose per-phase cost breakdown the report shows (default: the highest
    /// sustainable rate, else the lowest rate).
    #[arg(long)]
    pub breakdown_at: Option<f64>,
    /// Skip the BullMQ baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// The BullMQ baseline's directory (`latency.mjs`, its `node_modules` from `npm ci`).
    #[arg(long, value_name = "DIR")]
    pub bullmq_dir: Option<PathBuf>,
    /// The Node.js binary.
    #[arg(long, default_value = "node")]
    pub node: PathBuf,
    /// BullMQ worker concurrency.
    #[arg(long, default_value_t = 100)]
    pub bullmq_concurrency: usize,
    /// The `shoal` binary (default: next to this binary, else target/{release,debug}/shoal).
    #[arg(long, value_name = "PATH")]
    pub shoal: Option<PathBuf>,
    /// Directory of the committed guest programs (`echo-hash.wasm`).
    #[arg(long, value_name = "DIR")]
    pub programs: Option<PathBuf>,
    /// Keep each rate's stack home (block store, Redis data, process logs) under this directory
    /// (`shoal-<rate>/`, `shoal-<rate>-2/`… if taken) instead of a temporary directory removed at
    /// the end of the run.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Workers keep runs' `/outputs` here (`shoal worker --runs-dir`, e.g. a tmpfs such as
    /// `/dev/shm/shoal-latency`) instead of under their work directory in the stack's home.
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Write the report to PREFIX.json and PREFIX.md.
    #[arg(long, value_name = "PREFIX")]
    pub report: Option<PathBuf>,
}

/// A number greater than 0 (a rate, a duration).
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => Err(format!("{text} is not a number greater than 0")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn latency(args: &[&str]) -> super::LatencyOptions {
        let line = ["shoal-loadtest", "latency"].into_iter().chain(args.iter().copied());
        let Command::Latency(options) = Cli::parse_from(line).command else { panic!("not latency") };
        options
    }

    #[test]
    fn memoised_repeats_run_alone_unless_rates_are_given() {
        let alone = latency(&["--memoised", "3000"]);
        assert_eq!((alone.memoised, alone.rates.len()), (Some(3000), 0));
        let both = latency(&["--memoised=10", "--rates=20"]);
        assert_eq!((both.memoised, both.rates), (Some(10), vec![20.0]));
        assert_eq!(latency(&[]).memoised, None);
        assert!(Cli::try_parse_from(["shoal-loadtest", "latency", "--memoised", "0"]).is_err());
    }
}
