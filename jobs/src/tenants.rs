//! Tenants, their API keys and their quotas.
//!
//! Every job belongs to a [`Tenant`]. Clients authenticate with an API key (`Authorization:
//! Bearer shoal_…`); the key names its tenant and its [`Role`]. Only a SHA-256 digest of each key
//! is stored: the keys are 256 random bits, so a fast hash is as safe as a slow password hash
//! (there is nothing to guess), and a stolen Redis dump yields no usable key.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::connection::RedisConnection;
use crate::error::StoreError;
use crate::keys;
use crate::store::now_ms;

/// The prefix of every API key, so leaked keys are easy to recognise (and scan for).
pub const API_KEY_PREFIX: &str = "shoal_";

/// The name of a tenant: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a
/// letter or digit — safe inside Redis keys and URLs as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(examples("acme"))]
pub struct Tenant(String);

impl Tenant {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tenant {
    type Err = String;

    fn from_str(name: &str) -> Result<Tenant, String> {
        let valid = (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if valid {
            Ok(Tenant(name.to_string()))
        } else {
            Err(format!(
                "{name:?} is not a tenant name: 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
            ))
        }
    }
}

impl TryFrom<String> for Tenant {
    type Error = String;

    fn try_from(name: String) -> Result<Tenant, String> {
        name.parse()
    }
}

impl From<Tenant> for String {
    fn from(tenant: Tenant) -> String {
        tenant.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submits, reads and cancels its own tenant's jobs.
    Tenant,
    /// Also sees and cancels every tenant's jobs, and reads `/metrics` and `/v1/workers`.
    Operator,
}

/// Who a request comes from: the record of the key it presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The key's id: the first characters of its digest, safe to show and to revoke by.
    pub key_id: String,
    /// The tenant whose jobs it submits and reads.
    pub tenant: Tenant,
    /// What it may do besides.
    pub role: Role,
    /// When the key was made (ms since the Unix epoch).
    pub created_at_ms: u64,
}

impl Principal {
    /// Whether this principal may see and cancel a job of `owner`.
    pub fn may_access(&self, owner: &Tenant) -> bool {
        self.role == Role::Operator || &self.tenant == owner
    }
}

/// How much one tenant may ask for. `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Jobs queued or running at once (a fan-out's tasks count too).
    pub max_outstanding: Option<u64>,
    /// Submissions per second, over all gateways.
    pub submissions_per_sec: Option<u64>,
    /// Files one fan-out may spread over.
    pub max_fan_out: Option<u64>,
    /// Fuel one job may ask for (`limits.fuel`).
    pub max_fuel: Option<u64>,
}

impl Default for Quotas {
    /// Generous limits that still stop one tenant from filling the cluster by accident.
    fn default() -> Quotas {
        Quotas {
            max_outstanding: Some(100_000),
            submissions_per_sec: Some(2_000),
            max_fan_out: Some(100_000),
            max_fuel: None,
        }
    }
}

/// A key made by [`ApiKeys::create`]: the secret, shown once, and its record.
#[derive(Clone)]
pub struct NewApiKey {
    /// The key to send as `Authorization: Bearer …`; not stored anywhere.
    pub secret: String,
    /// What it grants.
    pub principal: Principal,
}

impl fmt::Debug for NewApiKey {
    /// The record only: a key printed by mistake must not be usable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey").field("principal", &self.principal).finish_non_exhaustive()
    }
}

/// The API keys and tenant quotas in Redis. Cheap to clone.
#[derive(Clone)]
pub struct ApiKeys {
    conn: RedisConnection,
}

/// The stored digest of a key, hex.
fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// How many hex digits of the digest make a key's id.
const KEY_ID_LEN: usize = 12;

impl ApiKeys {
    /// The keys in the Redis behind `conn`.
    pub fn new(conn: impl Into<RedisConnection>) -> ApiKeys {
        ApiKeys { conn: conn.into() }
    }

    /// Makes a new key for `tenant` with `role`.
    pub async fn create(&self, tenant: &Tenant, role: Role) -> Result<NewApiKey, StoreError> {
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let secret = format!("{API_KEY_PREFIX}{}", hex::encode(random));
        let digest = digest(&secret);
        let principal = Principal {
            key_id: digest[..KEY_ID_LEN].to_string(),
            tenant: tenant.clone(),
            role,
            created_at_ms: now_ms(),
        };
        let record = serde_json::to_string(&principal).expect("a Principal always serialises");
        let mut conn = self.conn.clone();
        let _: () = conn.hset(keys::api_keys(), &digest, record).await?;
        Ok(NewApiKey { secret, principal })
    }

    /// The digest a key is stored under, or `None` for a string that is not a key at all (the
    /// prefix and 64 lowercase hex digits): such a one need not be looked up, nor remembered.
    pub fn digest_of(secret: &str) -> Option<String> {
        let hex = secret.strip_prefix(API_KEY_PREFIX)?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| digest(secret))
    }

    /// The principal of `secret`, or `None` for a key that was never made or was revoked.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, StoreError> {
        match ApiKeys::digest_of(secret) {
            Some(digest) => self.principal_by_digest(&digest).await,
            None => Ok(None),
        }
    }

    /// The principal of the key stored under `digest` (see [`ApiKeys::digest_of`]).
    pub async fn principal_by_digest(&self, digest: &str) -> Result<Option<Principal>, StoreError> {
        let mut conn = self.conn.clone();
        let record: Option<String> = conn.hget(keys::api_keys(), digest).await?;
        record.map(|record| decode_principal(&record)).transpose()
    }

    /// Every key's record, oldest first.
    pub async fn list(&self) -> Result<Vec<Principal>, StoreError> {
        let mut conn = self.conn.clone();
        let records: Vec<(String, String)> = conn.hgetall(keys::api_keys()).await?;
        let mut keys = records.iter().map(|(_, record)| decode_principal(record)).collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| (a.created_at_ms, &a.key_id).cmp(&(b.created_at_ms, &b.key_id)));
        Ok(keys)
    }

    /// Revokes the key whose id is `key_id`; whether there was one.
    pub async fn revoke(&self, key_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let records: Vec<(String, String)> = conn.hgetall(keys::api_keys()).await?;
        let Some((digest, _)) =
            records.iter().find(|(digest, _)| digest.starts_with(key_id) && key_id.len() == KEY_ID_LEN)
        else {
            return Ok(false);
        };
        let removed: u32 = conn.hdel(keys::api_keys(), digest).await?;
        Ok(removed == 1)
    }

    /// The quotas of `tenant`: those set for it, else the defaults.
    pub async fn quotas(&self, tenant: &Tenant) -> Result<Quotas, StoreError> {
        let mut conn = self.conn.clone();
        let record: Option<String> = conn.hget(keys::quotas(), tenant.as_str()).await?;
        record
            .map(|record| {
                serde_json::from_str(&record)
                    .map_err(|e| StoreError::Corrupt { key: keys::quotas(), reason: format!("{tenant}: {e}") })
            })
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Sets the quotas of `tenant`.
    pub async fn set_quotas(&self, tenant: &Tenant, quotas: &Quotas) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let record = serde_json::to_string(quotas).expect("Quotas always serialise");
        let _: () = conn.hset(keys::quotas(), tenant.as_str(), record).await?;
        Ok(())
    }

    /// The webhook signing secret of `tenant` (`whsec_` and 32 random bytes in base64, as
    /// Standard Webhooks has it), if it has one.
    pub async fn webhook_secret(&self, tenant: &Tenant) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hget(keys::webhook_secrets(), tenant.as_str()).await?)
    }

    /// Makes `tenant` a new webhook signing secret, replacing any earlier one, and returns it.
    pub async fn new_webhook_secret(&self, tenant: &Tenant) -> Result<String, StoreError> {
        use base64::Engine;
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(random));
        let mut conn = self.conn.clone();
        let _: () = conn.hset(keys::webhook_secrets(), tenant.as_str(), &secret).await?;
        Ok(secret)
    }

    /// Counts one submission of `tenant` in the current second (over every gateway) and returns
    /// how many it made in that second so far.
    pub async fn count_submission(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        count_submission(&self.conn, tenant).await
    }
}

/// Counts one submission of `tenant` in the current second and returns how many it made in that
/// second so far. (The create script counts as this does, see `store::COUNT`.)
pub(crate) async fn count_submission(conn: &RedisConnection, tenant: &Tenant) -> Result<u64, StoreError> {
    let key = keys::submissions(tenant, now_ms() / 1000);
    let mut conn = conn.clone();
    let (count, _): (u64, bool) =
        redis::pipe().incr(&key, 1).expire(&key, keys::SUBMISSIONS_KEPT_SECS).query_async(&mut conn).await?;
    Ok(count)
}

fn decode_principal(record: &str) -> Result<Principal, StoreError> {
    serde_json::from_str(record).map_err(|e| StoreError::Corrupt { key: keys::api_keys(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_safe_in_keys() {
        for good in ["a", "acme", "lab-7", "x_y", &"a".repeat(64)] {
            assert_eq!(good.parse::<Tenant>().unwrap().as_str(), good);
        }
        for bad in ["", "-a", "_a", "A", "a:b", "a{b}", "a b", "ä", &"a".repeat(65)] {
            assert!(bad.parse::<Tenant>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Tenant>("\"a}b\"").is_err());
    }

    #[test]
    fn an_operator_accesses_every_tenant_and_a_tenant_only_its_own() {
        let principal = |tenant: &str, role| Principal {
            key_id: "k".into(),
            tenant: tenant.parse().unwrap(),
            role,
            created_at_ms: 0,
        };
        let (a, b): (Tenant, Tenant) = ("a".parse().unwrap(), "b".parse().unwrap());
        assert!(principal("a", Role::Tenant).may_access(&a));
        assert!(!principal("a", Role::Tenant).may_access(&b));
        assert!(principal("ops", Role::Operator).may_access(&b));
    }
}
