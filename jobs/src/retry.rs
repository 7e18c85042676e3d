//! Riding out short Redis outages (a restart, a dropped connection) instead of failing jobs.

use std::future::Future;
use std::time::Duration;

use crate::StoreError;
use tokio::time::Instant;
use tracing::warn;

/// How long one Redis operation is retried while Redis is away.
pub const STORE_RETRY_LIMIT: Duration = Duration::from_secs(60);

/// Runs `op` again, with exponential backoff, while it fails transiently
/// ([`StoreError::is_transient`]), for up to [`STORE_RETRY_LIMIT`]. The connection manager
/// reconnects in the background, so a later attempt usually succeeds once Redis is back.
pub async fn with_retries<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + STORE_RETRY_LIMIT;
    let mut backoff = Duration::from_millis(50);
    loop {
        match op().await {
            Err(e) if e.is_transient() && Instant::now() + backoff < deadline => {
                warn!(operation = what, error = %e, retry_in = ?backoff, "Redis unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            result => return result,
        }
    }
}
