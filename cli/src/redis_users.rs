//! `shoal redis-acl`: the Redis ACL file of Shoal's users, for a Redis started outside `shoal
//! dev` (docker-compose, a managed deployment). Each part then logs in as its own user.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use shoal_jobs::keys::{self, RedisRole};

use crate::home::write_private;

/// `shoal redis-acl`.
#[derive(Args)]
pub(crate) struct RedisAclArgs {
    /// The admin's (Redis's `default` user) password (operators' tools: `shoal keys`, `tenants`,
    /// `quarantine`).
    #[arg(long, env = "SHOAL_REDIS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// The gateway user's password.
    #[arg(long, env = "SHOAL_REDIS_GATEWAY_PASSWORD", hide_env_values = true)]
    gateway_password: String,
    /// The worker user's password.
    #[arg(long, env = "SHOAL_REDIS_WORKER_PASSWORD", hide_env_values = true)]
    worker_password: String,
    /// The verifier user's password.
    #[arg(long, env = "SHOAL_REDIS_VERIFIER_PASSWORD", hide_env_values = true)]
    verifier_password: String,
    /// Where to write the file (readable by its owner only); standard output if not given.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Writes the ACL file.
pub(crate) fn run(args: RedisAclArgs) -> anyhow::Result<ExitCode> {
    let password = |role| match role {
        RedisRole::Admin => &args.admin_password,
        RedisRole::Gateway => &args.gateway_password,
        RedisRole::Worker => &args.worker_password,
        RedisRole::Verifier => &args.verifier_password,
    };
    for role in RedisRole::ALL {
        // An ACL line ends at whitespace; a short password is guessable.
        let given = password(role);
        if given.len() < 16 || !given.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the {} password must be at least 16 visible ASCII characters without spaces", role.user());
        }
    }
    let file = keys::acl_file(|role| password(role).clone());
    match &args.out {
        Some(path) => {
            write_private(path, file.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        }
        None => print!("{file}"),
    }
    Ok(ExitCode::SUCCESS)
}
