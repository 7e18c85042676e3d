//! What a simulated run does: the options of `shoal-loadtest sim`, and byte sizes in decimal
//! units.

use std::path::PathBuf;

use clap::Args;

/// A simulated scale run: `shoal-loadtest sim [OPTIONS]`. Sizes take decimal units (`100TB`,
/// `1PB`, `2TB`, `125MB`); times are simulated unless named real.
#[derive(Debug, Clone, Args)]
pub struct SimOptions {
    /// Workers started over the run.
    #[arg(long, default_value_t = 100)]
    pub workers: usize,
    /// Workers started at the beginning (the rest join at --join-at-secs); all if not given.
    #[arg(long)]
    pub initial_workers: Option<usize>,
    /// When the other workers join, real seconds after submissions begin.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub join_at_secs: f64,
    /// Joining workers (and the initial ones) start spread over this many real seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub start_spread_secs: f64,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Real seconds of submitting; then the run waits for what is outstanding.
    #[arg(long, value_name = "SECS", default_value_t = 90.0)]
    pub duration_secs: f64,
    /// Stop submitting after this many jobs (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_jobs: usize,
    /// Users submitting at once, each with programs of its own.
    #[arg(long, default_value_t = 3)]
    pub users: usize,
    /// Distinct programs, spread over the users.
    #[arg(long, default_value_t = 10)]
    pub programs: usize,
    /// Jobs each user keeps submitted and unfinished (closed loop).
    #[arg(long, default_value_t = 100)]
    pub outstanding_per_user: usize,
    /// Total submissions per real second over all users (open loop within the outstanding bound);
    /// as fast as the bound allows if not given.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Catalogue size.
    #[arg(long, value_parser = parse_bytes, default_value = "100TB")]
    pub catalogue: u64,
    /// Mean catalogue item size (items are 0.5 to 1.5 times it).
    #[arg(long, value_parser = parse_bytes, default_value = "1GB")]
    pub item: u64,
    /// Each worker's cache.
    #[arg(long, value_parser = parse_bytes, default_value = "2TB")]
    pub cache: u64,
    /// Each worker's download bandwidth, bytes per simulated second.
    #[arg(long, value_parser = parse_bytes, default_value = "125MB")]
    pub bandwidth: u64,
    /// Latency of every fetch, simulated milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub latency_ms: u64,
    /// The fastest program's run time over a mean-sized item, simulated seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub compute_min_secs: f64,
    /// The slowest program's.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    pub compute_max_secs: f64,
    /// Real seconds per simulated second.
    #[arg(long, default_value_t = 0.01)]
    pub time_scale: f64,
    /// Shard streams.
    #[arg(long, default_value_t = 4096)]
    pub shards: u32,
    /// Workers reading each shard.
    #[arg(long, default_value_t = 1)]
    pub shard_replicas: usize,
    /// Workers' heartbeat, real seconds (the shard assignment is recomputed at each).
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub heartbeat_secs: f64,
    /// How long a worker's stream read blocks, real milliseconds (an idle worker then steals).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub poll_block_ms: u64,
    /// Workers' visibility timeout, real seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub visibility_timeout_secs: u64,
    /// An idle worker steals from a shard with at least this many unread entries.
    #[arg(long, default_value_t = 4)]
    pub steal_min_backlog: u64,
    /// …or whose oldest unread entry waited this long, real seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub steal_after_secs: f64,
    /// A shard with more unread entries than this per reader gets another reader (hot data).
    #[arg(long, default_value_t = 8)]
    pub hot_backlog: u64,
    /// The most workers reading a hot shard; `--shard-replicas` turns hot replicas off.
    #[arg(long, default_value_t = 4)]
    pub max_shard_readers: usize,
    /// Redis connections the workers share (each also has its own blocking reader).
    #[arg(long, default_value_t = 8)]
    pub redis_connections: usize,
    /// Width of a time-series bucket, real seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub bucket_secs: f64,
    /// Seed of the catalogue names, the popularity and the job mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Once submitting is over, give up after this long without a job finishing, real seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stall_secs: u64,
    /// Hard limit on the whole run, real seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub deadline_secs: u64,
    /// Write the report to PREFIX.json, PREFIX.md and PREFIX.svg.
    #[arg(long, value_name = "PREFIX")]
    pub report: Option<PathBuf>,
    /// Keep Redis's data here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses a byte size with an optional decimal unit: `1PB`, `100TB`, `2TB`, `125MB`, `512kB`,
/// `1.5GB`, `42`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} does not start with a number"))?;
    let scale: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" | "K" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "TB" | "T" => 1e12,
        "PB" | "P" => 1e15,
        other => return Err(format!("unknown unit {other:?} (B, kB, MB, GB, TB, PB)")),
    };
    Ok((number * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_units() {
        assert_eq!(parse_bytes("1PB"), Ok(1_000_000_000_000_000));
        assert_eq!(parse_bytes("100TB"), Ok(100_000_000_000_000));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("42"), Ok(42));
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("GB").is_err());
    }
}
