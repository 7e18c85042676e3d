//! `shoal keys` and `shoal tenants`: the operator's hold on API keys and tenant quotas, straight
//! in Redis (a gateway never makes keys, so a stolen key cannot make more).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use shoal_jobs::{ApiKeys, Quotas, Role, Tenant};

use crate::quarantine::RedisArgs;

/// `shoal keys`.
#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Make a key for a tenant and print it (it is shown this once; only its hash is kept).
    Create {
        /// The tenant whose jobs the key submits and reads.
        #[arg(long)]
        tenant: Tenant,
        /// Let the key see every tenant's jobs, `/metrics` and `/v1/workers`.
        #[arg(long)]
        operator: bool,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// List the keys: id, tenant, role, creation time (never the keys themselves).
    List(RedisArgs),
    /// Revoke a key by its id (gateways stop taking it within 5 s).
    Revoke {
        /// The key's id, as `shoal keys list` shows it.
        id: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
}

/// `shoal tenants`.
#[derive(Subcommand)]
pub(crate) enum TenantsCommand {
    /// Print a tenant's quotas (JSON).
    Show {
        /// The tenant.
        tenant: Tenant,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Set a tenant's quotas; those not given keep their value, `0` means no limit.
    SetQuotas(SetQuotasArgs),
    /// Print the tenant's webhook signing secret (`whsec_…`), making one if it has none.
    WebhookSecret {
        /// The tenant.
        tenant: Tenant,
        /// Replace the secret by a new one (receivers must change theirs).
        #[arg(long)]
        rotate: bool,
        #[command(flatten)]
        redis: RedisArgs,
    },
}

/// `shoal tenants set-quotas`.
#[derive(Args)]
pub(crate) struct SetQuotasArgs {
    /// The tenant.
    tenant: Tenant,
    /// Jobs queued or running at once.
    #[arg(long)]
    max_outstanding: Option<u64>,
    /// Submissions per second.
    #[arg(long)]
    submissions_per_sec: Option<u64>,
    /// Files one fan-out may spread over.
    #[arg(long)]
    max_fan_out: Option<u64>,
    /// Fuel one job may ask for.
    #[arg(long)]
    max_fuel: Option<u64>,
    #[command(flatten)]
    redis: RedisArgs,
}

async fn api_keys(redis: &RedisArgs) -> anyhow::Result<ApiKeys> {
    Ok(ApiKeys::new(redis.connect().await?))
}

/// `shoal keys create|list|revoke`.
pub(crate) async fn keys(command: KeysCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create { tenant, operator, redis } => {
            let role = if operator { Role::Operator } else { Role::Tenant };
            let key = api_keys(&redis).await?.create(&tenant, role).await?;
            eprintln!("key {} for tenant {tenant} ({role:?}); it is not shown again:", key.principal.key_id);
            if json {
                let mut record = serde_json::to_value(&key.principal)?;
                record["secret"] = json!(key.secret);
                crate::print_json(&record)?;
            } else {
                println!("{}", key.secret);
            }
        }
        KeysCommand::List(redis) => {
            let keys = api_keys(&redis).await?.list().await?;
            if json {
                crate::print_json(&json!({ "keys": keys }))?;
                return Ok(ExitCode::SUCCESS);
            }
            for key in keys {
                println!("{}\t{}\t{:?}\tcreated {}", key.key_id, key.tenant, key.role, key.created_at_ms);
            }
        }
        KeysCommand::Revoke { id, redis } => {
            if !api_keys(&redis).await?.revoke(&id).await? {
                eprintln!("no key with id {id}");
                return Ok(ExitCode::FAILURE);
            }
            if json {
                crate::print_json(&json!({ "revoked": id }))?;
            } else {
                println!("revoked {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal tenants show|set-quotas|webhook-secret` (quotas print as JSON with or without `--json`).
pub(crate) async fn tenants(command: TenantsCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        TenantsCommand::Show { tenant, redis } => {
            let quotas = api_keys(&redis).await?.quotas(&tenant).await?;
            crate::print_json(&quotas)?;
        }
        TenantsCommand::SetQuotas(args) => {
            let keys = api_keys(&args.redis).await?;
            let mut quotas: Quotas = keys.quotas(&args.tenant).await?;
            let set = |slot: &mut Option<u64>, given: Option<u64>| {
                if let Some(value) = given {
                    *slot = (value > 0).then_some(value);
                }
            };
            set(&mut quotas.max_outstanding, args.max_outstanding);
            set(&mut quotas.submissions_per_sec, args.submissions_per_sec);
            set(&mut quotas.max_fan_out, args.max_fan_out);
            set(&mut quotas.max_fuel, args.max_fuel);
            keys.set_quotas(&args.tenant, &quotas).await?;
            crate::print_json(&quotas)?;
        }
        TenantsCommand::WebhookSecret { tenant, rotate, redis } => {
            let keys = api_keys(&redis).await?;
            let secret = match keys.webhook_secret(&tenant).await? {
                Some(secret) if !rotate => secret,
                _ => keys.new_webhook_secret(&tenant).await?,
            };
            if json {
                crate::print_json(&json!({ "tenant": tenant, "secret": secret }))?;
            } else {
                println!("{secret}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
