//! The shard streams: one Redis stream per shard, read by workers through a consumer group.
//!
//! Delivery is at-least-once: an entry stays pending in the group until the worker that read it
//! acknowledges it, which it does only after the job's result is durably written
//! ([`crate::JobStore::finish_execution`]). A worker that dies leaves its entries pending, where
//! they can be reclaimed; the job record itself stays `running` with the lost execution visible.

use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamClaimOptions, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, AsyncConnectionConfig, Client};

use crate::error::StoreError;
use crate::keys::{self, VERIFIER_GROUP, WORKER_GROUP};

/// Which of a shard's streams: jobs for workers, or succeeded jobs for the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// `shoal:{sNN}:jobs`, read by workers.
    Jobs,
    /// `shoal:{sNN}:verify`, read by verifiers.
    Verify,
}

impl Lane {
    /// The stream of this lane on shard `shard`.
    pub fn stream(self, shard: u32) -> String {
        match self {
            Lane::Jobs => keys::shard_stream(shard),
            Lane::Verify => keys::verify_stream(shard),
        }
    }

    /// The consumer group that reads this lane.
    pub fn group(self) -> &'static str {
        match self {
            Lane::Jobs => WORKER_GROUP,
            Lane::Verify => VERIFIER_GROUP,
        }
    }
}

/// One job handed to a worker (or verifier) by a shard stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The lane it came from.
    pub lane: Lane,
    /// The shard it came from.
    pub shard: u32,
    /// The stream entry id, needed to acknowledge it.
    pub entry: String,
    /// The job to run.
    pub job_id: String,
}

/// Writes to and reads from the shard streams.
#[derive(Clone)]
pub struct ShardQueue {
    conn: ConnectionManager,
}

impl ShardQueue {
    /// A queue over `conn`.
    pub fn new(conn: ConnectionManager) -> ShardQueue {
        ShardQueue { conn }
    }

    /// Creates the consumer groups of every shard's streams (and the streams), if missing.
    pub async fn ensure_groups(&self, shards: u32) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        for shard in 0..shards {
            for lane in [Lane::Jobs, Lane::Verify] {
                let created: redis::RedisResult<()> =
                    conn.xgroup_create_mkstream(lane.stream(shard), lane.group(), "0").await;
                match created {
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }

    /// Puts job `job_id` on shard `shard`'s stream.
    pub async fn enqueue(&self, shard: u32, job_id: &str) -> Result<String, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.xadd(keys::shard_stream(shard), "*", &[("job", job_id)]).await?)
    }

    /// Puts job `job_id`, which succeeded, on shard `shard`'s verification stream.
    pub async fn enqueue_verification(&self, shard: u32, job_id: &str) -> Result<String, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.xadd(keys::verify_stream(shard), "*", &[("job", job_id)]).await?)
    }

    /// Acknowledges a delivery and removes its entry, once what it asked for is stored.
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let stream = delivery.lane.stream(delivery.shard);
        let mut conn = self.conn.clone();
        let _: (i64, i64) = redis::pipe()
            .xack(&stream, delivery.lane.group(), &[&delivery.entry])
            .xdel(&stream, &[&delivery.entry])
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Takes over, for `consumer`, up to `count` entries of `shards` that another consumer read
    /// and left unacknowledged for longer than `min_idle` — its worker died or hangs, since a
    /// live worker renews its claims ([`ShardQueue::renew`]).
    pub async fn reclaim(
        &self,
        shards: &[u32],
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.conn.clone();
        let mut deliveries = Vec::new();
        for &shard in shards {
            let stream = keys::shard_stream(shard);
            let mut cursor = "0-0".to_string();
            // Bounded: one pass over the shard's pending list, a page of `count` at a time.
            loop {
                let wanted = count - deliveries.len();
                if wanted == 0 {
                    return Ok(deliveries);
                }
                let options = StreamAutoClaimOptions::default().count(wanted);
                let reply: StreamAutoClaimReply = conn
                    .xautoclaim_options(&stream, WORKER_GROUP, consumer, min_idle.as_millis() as u64, &cursor, options)
                    .await?;
                for entry in reply.claimed {
                    deliveries.push(delivery(Lane::Jobs, shard, &stream, entry)?);
                }
                if reply.next_stream_id == "0-0" {
                    break;
                }
                cursor = reply.next_stream_id;
            }
        }
        Ok(deliveries)
    }

    /// Resets the idle time of `consumer`'s entries `deliveries` (still running), so no other
    /// worker reclaims them.
    pub async fn renew(&self, consumer: &str, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for delivery in deliveries {
            // Claiming one's own entry with min-idle 0 resets its idle time; JUSTID leaves its
            // delivery count alone.
            let options = StreamClaimOptions::default().with_justid();
            pipe.xclaim_options(
                keys::shard_stream(delivery.shard),
                WORKER_GROUP,
                consumer,
                0,
                &[&delivery.entry],
                options,
            )
            .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Moves a delivery whose job cannot be run to shard `shard`'s dead-letter stream with the
    /// reason, and acknowledges it, in one transaction.
    pub async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        let stream = keys::shard_stream(delivery.shard);
        let mut conn = self.conn.clone();
        let _: (String, i64, i64) = redis::pipe()
            .atomic()
            .xadd(
                keys::dead_letter_stream(delivery.shard),
                "*",
                &[("job", delivery.job_id.as_str()), ("entry", &delivery.entry), ("reason", reason)],
            )
            .xack(&stream, WORKER_GROUP, &[&delivery.entry])
            .xdel(&stream, &[&delivery.entry])
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Entries on shard `shard`'s dead-letter stream: job id and reason, oldest first.
    pub async fn dead_letters(&self, shard: u32) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = conn.xrange_all(keys::dead_letter_stream(shard)).await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| (entry.get("job").unwrap_or_default(), entry.get("reason").unwrap_or_default()))
            .collect())
    }

    /// Number of entries waiting on shard `shard` (read or not).
    pub async fn len(&self, shard: u32) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.xlen(keys::shard_stream(shard)).await?)
    }
}

/// A blocking reader of a set of shard streams for one consumer.
///
/// It reads all its shards in one `XREADGROUP`, so a job on any of them is picked up at once.
/// It owns its connection: a blocking read holds a whole connection for its duration, and
/// redis-rs's default response timeout (500 ms) would cut it short, so the connection's timeout
/// is set above the block time.
pub struct ShardReader {
    lane: Lane,
    conn: MultiplexedConnection,
    streams: Vec<String>,
    shards: Vec<u32>,
    consumer: String,
    block: Duration,
}

impl ShardReader {
    /// Connects a reader of the job streams of `shards` as `consumer`, blocking up to `block`
    /// per read.
    ///
    /// All shards are read with one command, which a single Redis node serves; on a cluster
    /// the caller groups shards by node.
    pub async fn connect(
        client: &Client,
        shards: &[u32],
        consumer: &str,
        block: Duration,
    ) -> Result<ShardReader, StoreError> {
        ShardReader::connect_lane(client, Lane::Jobs, shards, consumer, block).await
    }

    /// Like [`ShardReader::connect`], for the streams of `lane`.
    pub async fn connect_lane(
        client: &Client,
        lane: Lane,
        shards: &[u32],
        consumer: &str,
        block: Duration,
    ) -> Result<ShardReader, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(block + Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let conn = client.get_multiplexed_async_connection_with_config(&config).await?;
        Ok(ShardReader {
            lane,
            conn,
            streams: shards.iter().map(|&s| lane.stream(s)).collect(),
            shards: shards.to_vec(),
            consumer: consumer.to_string(),
            block,
        })
    }

    /// Up to `count` new deliveries for this consumer; empty if none arrived within the block time.
    pub async fn next(&mut self, count: usize) -> Result<Vec<Delivery>, StoreError> {
        let options = StreamReadOptions::default()
            .group(self.lane.group(), &self.consumer)
            .count(count.max(1))
            .block(self.block.as_millis() as usize);
        self.read(">", &options).await
    }

    /// Up to `count` entries delivered to this consumer earlier and not yet acknowledged — what
    /// it was working on when its connection (or Redis) went away. Does not block.
    pub async fn pending(&mut self, count: usize) -> Result<Vec<Delivery>, StoreError> {
        let options = StreamReadOptions::default().group(self.lane.group(), &self.consumer).count(count.max(1));
        self.read("0", &options).await
    }

    async fn read(&mut self, from: &str, options: &StreamReadOptions) -> Result<Vec<Delivery>, StoreError> {
        let ids = vec![from; self.streams.len()];
        let reply: Option<StreamReadReply> = self.conn.xread_options(&self.streams, &ids, options).await?;
        let mut deliveries = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(index) = self.streams.iter().position(|s| *s == stream.key) else { continue };
            for entry in stream.ids {
                deliveries.push(delivery(self.lane, self.shards[index], &stream.key, entry)?);
            }
        }
        Ok(deliveries)
    }
}

/// The delivery a stream entry stands for.
fn delivery(lane: Lane, shard: u32, stream: &str, entry: StreamId) -> Result<Delivery, StoreError> {
    let job_id: Option<String> = entry.get("job");
    let job_id = job_id.ok_or_else(|| StoreError::Corrupt {
        key: format!("{stream} {}", entry.id),
        reason: "stream entry without a job field".into(),
    })?;
    Ok(Delivery { lane, shard, entry: entry.id, job_id })
}
