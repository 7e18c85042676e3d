//! `shoal redis-acl`: the Redis ACL file of Shoal's users, for a Redis started outside `shoal
//! dev` (docker-compose, a managed deployment). Each part then logs in as its own user, its
//! password in the Redis URL or beside it (`with_password`).

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

/// `urls` (comma-separated) with `password` given to each URL that holds none, so a password can
/// be kept apart from the URL (docker-compose's env files); a URL holding another is an error.
pub(crate) fn with_password(urls: &str, password: Option<&str>) -> anyhow::Result<String> {
    let Some(password) = password else { return Ok(urls.to_string()) };
    let urls = shoal_jobs::redis_urls(urls)
        .iter()
        .map(|url| {
            // Never echo the URL: it may hold a password.
            let mut parsed = reqwest::Url::parse(url).context("a Redis URL does not parse")?;
            match parsed.password() {
                None => parsed.set_password(Some(password)).ok().context("a Redis URL cannot take a password")?,
                Some(held) if held == password => {}
                Some(_) => bail!("a Redis URL holds a password other than the one given beside it"),
            }
            Ok(parsed.to_string())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(urls.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_given_apart_goes_into_each_url_holding_none() {
        assert_eq!(with_password("redis://worker@r:6379/", None).unwrap(), "redis://worker@r:6379/");
        assert_eq!(
            with_password("redis://worker@a:1/, redis://worker@b:2/", Some("p4ss")).unwrap(),
            "redis://worker:p4ss@a:1/,redis://worker:p4ss@b:2/"
        );
        assert_eq!(with_password("redis://w:p4ss@a:1/", Some("p4ss")).unwrap(), "redis://w:p4ss@a:1/");
        let other = with_password("redis://w:secret@a:1/", Some("p4ss")).unwrap_err().to_string();
        assert!(other.contains("other than") && !other.contains("secret"), "{other}");
    }
}
