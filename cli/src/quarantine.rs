//! `shoal quarantine list|readmit`: the operator's view of workers caught lying.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use shoal_jobs::{redis_urls, Membership, RedisConnection};

/// `shoal quarantine`.
#[derive(Subcommand)]
pub(crate) enum QuarantineCommand {
    /// List the quarantined workers: why, on which job, and how many results it had settled.
    List(RedisArgs),
    /// Let a quarantined worker take work again.
    Readmit {
        /// The worker's id.
        worker: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
}

/// Where the job store is.
#[derive(Args)]
pub(crate) struct RedisArgs {
    /// The Redis holding jobs (several comma-separated URLs: the seed nodes of a Redis Cluster).
    #[arg(long, env = "SHOAL_REDIS", hide_env_values = true)]
    pub(crate) redis: String,
}

/// `shoal quarantine list|readmit`.
pub(crate) async fn run(command: QuarantineCommand, json: bool) -> anyhow::Result<ExitCode> {
    let redis = match &command {
        QuarantineCommand::List(args) | QuarantineCommand::Readmit { redis: args, .. } => &args.redis,
    };
    let conn = RedisConnection::open(&redis_urls(redis)).await.context("connecting to Redis")?;
    let membership = Membership::new(conn);
    match command {
        QuarantineCommand::List(_) => {
            let quarantined = membership.quarantined().await?;
            if json {
                let workers: Vec<_> = quarantined
                    .into_iter()
                    .map(|(worker, why)| {
                        let mut record = json!(why);
                        record["worker"] = json!(worker);
                        record
                    })
                    .collect();
                crate::print_json(&json!({ "quarantined": workers }))?;
                return Ok(ExitCode::SUCCESS);
            }
            for (worker, why) in quarantined {
                println!(
                    "{worker}\t{}\tcaught on job {} by {} after {} settled jobs",
                    why.reason, why.job, why.verifier, why.settled
                );
            }
        }
        QuarantineCommand::Readmit { worker, .. } => {
            if !membership.readmit(&worker).await? {
                eprintln!("{worker} is not quarantined");
                return Ok(ExitCode::FAILURE);
            }
            if json {
                crate::print_json(&json!({ "readmitted": worker }))?;
            } else {
                println!("readmitted {worker}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
