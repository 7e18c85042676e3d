//! `shoal quarantine list|readmit`: the operator's view of workers caught lying.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use shoal_jobs::{redis_urls, Membership, RedisConnection};

use crate::redis_users::with_password;

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

/// Where the job store is, logged in to as its admin.
#[derive(Args)]
pub(crate) struct RedisArgs {
    /// The Redis holding jobs (several comma-separated URLs: the seed nodes of a Redis Cluster).
    #[arg(long, env = "SHOAL_REDIS", hide_env_values = true)]
    redis: String,
    /// The admin's password, if the URL holds none (kept apart from it: docker-compose's env
    /// files).
    #[arg(long, env = "SHOAL_REDIS_ADMIN_PASSWORD", hide_env_values = true)]
    redis_password: Option<String>,
}

impl RedisArgs {
    /// A connection to the Redis these arguments name.
    pub(crate) async fn connect(&self) -> anyhow::Result<RedisConnection> {
        let urls = with_password(&self.redis, self.redis_password.as_deref())?;
        RedisConnection::open(&redis_urls(&urls)).await.context("connecting to Redis")
    }
}

/// `shoal quarantine list|readmit`.
pub(crate) async fn run(command: QuarantineCommand, json: bool) -> anyhow::Result<ExitCode> {
    let redis = match &command {
        QuarantineCommand::List(args) | QuarantineCommand::Readmit { redis: args, .. } => args,
    };
    let membership = Membership::new(redis.connect().await?);
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
