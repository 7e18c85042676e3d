//! API keys for test stacks and the harness: made straight in the stack's Redis, as an
//! operator's `shoal keys create` would.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use shoal_jobs::{redis_urls, ApiKeys, RedisConnection, Role, Tenant};

use crate::TestkitError;

/// The tenant of a stack's own key ([`crate::Stack::api_key`], [`crate::ProcessStack::api_key`]).
pub const TEST_TENANT: &str = "test";

/// Makes an API key for `tenant` with `role` in the Redis at `redis_url`; returns the key.
pub async fn api_key(redis_url: &str, tenant: &str, role: Role) -> Result<String, TestkitError> {
    let store = |source| TestkitError::Store { context: format!("making an API key for tenant {tenant}"), source };
    let tenant: Tenant = tenant.parse().map_err(|reason: String| TestkitError::InvalidTenant(reason))?;
    let conn = RedisConnection::open(&redis_urls(redis_url)).await.map_err(store)?;
    Ok(ApiKeys::new(conn).create(&tenant, role).await.map_err(store)?.secret)
}

/// An HTTP client on `builder`'s settings that sends `key` with every request.
pub fn keyed_client(builder: reqwest::ClientBuilder, key: &str) -> Result<reqwest::Client, TestkitError> {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::try_from(format!("Bearer {key}")).expect("API keys are visible ASCII");
    headers.insert(AUTHORIZATION, value);
    builder
        .default_headers(headers)
        .build()
        .map_err(|source| TestkitError::Http { context: "building an HTTP client".into(), source })
}
