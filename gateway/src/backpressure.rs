//! Backpressure: while more work is outstanding on the shard streams than
//! [`GatewayConfig::max_backlog`], submissions are refused with 429 and `Retry-After`, so a flood
//! of submissions queues at the clients instead of growing Redis without bound.
//!
//! The backlog is sampled in the background, not read per request: summing every shard costs a
//! round trip over all streams, which thousands of submissions a second must not each pay. The
//! limit is therefore approximate by what arrives within one sampling interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use shoal_jobs::{shard_backlogs, RedisConnection};

use crate::GatewayConfig;

/// The last sampled number of entries outstanding (read or not) over all shard streams.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    outstanding: AtomicU64,
}

impl Backlog {
    /// Starts sampling every [`GatewayConfig::backlog_sample_interval`] over `conn`; sampling
    /// stops when the returned handle is dropped.
    pub(crate) fn sample(conn: RedisConnection, config: &GatewayConfig) -> Arc<Backlog> {
        let backlog = Arc::new(Backlog::default());
        let shards: Vec<u32> = (0..config.shards).collect();
        tokio::spawn(sampler(Arc::downgrade(&backlog), conn, shards, config.backlog_sample_interval));
        backlog
    }

    /// Entries outstanding at the last sample.
    pub(crate) fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }
}

async fn sampler(backlog: Weak<Backlog>, conn: RedisConnection, shards: Vec<u32>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        ticks.tick().await;
        let Some(backlog) = backlog.upgrade() else { return };
        match shard_backlogs(&conn, &shards).await {
            Ok(shards) => {
                let total = shards.iter().map(|b| b.outstanding()).sum();
                backlog.outstanding.store(total, Ordering::Relaxed);
            }
            // Submissions fail with 503 while Redis is away; the last sample stands meanwhile.
            Err(error) => tracing::debug!(%error, "sampling the shard backlog failed"),
        }
    }
}
