//! The shard streams: one Redis stream per shard, read by workers through a consumer group.
//!
//! Delivery is at-least-once: an entry stays pending in the group until the worker that read it
//! acknowledges it, which it does only after the job's result is durably written
//! ([`crate::JobStore::finish_execution`]). A worker that dies leaves its entries pending, where
//! they can be reclaimed; the job record itself stays `running` with the lost execution visible.
//!
//! Every shard's streams share the shard's `{sNN}` tag, so on a Redis Cluster each shard lives
//! on one node and the shards spread over all of them.

use std::collections::VecDeque;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamClaimOptions, StreamClaimReply, StreamId,
    StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, AsyncConnectionConfig, Client};
use tokio::time::Instant;

use crate::connection::{self, Batch, RedisConnection};
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

/// Writes to and reads from the shard streams, on one node or a cluster.
#[derive(Clone)]
pub struct ShardQueue {
    conn: RedisConnection,
}

impl ShardQueue {
    /// A queue over `conn` (a [`redis::aio::ConnectionManager`] for one node, or a
    /// [`RedisConnection`]).
    pub fn new(conn: impl Into<RedisConnection>) -> ShardQueue {
        ShardQueue { conn: conn.into() }
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
        self.ack_many(std::slice::from_ref(delivery)).await
    }

    /// Acknowledges deliveries and removes their entries, one `XACK` and one `XDEL` per stream,
    /// the streams' at once (a stream's pair is one slot's, as a cluster needs).
    pub async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let mut by_stream: Vec<((Lane, u32), Vec<&str>)> = Vec::new();
        for delivery in deliveries {
            let stream = (delivery.lane, delivery.shard);
            match by_stream.iter_mut().find(|(s, _)| *s == stream) {
                Some((_, entries)) => entries.push(&delivery.entry),
                None => by_stream.push((stream, vec![&delivery.entry])),
            }
        }
        futures::future::try_join_all(by_stream.into_iter().map(|((lane, shard), entries)| {
            let mut conn = self.conn.clone();
            async move {
                let stream = lane.stream(shard);
                let _: (i64, i64) = redis::pipe()
                    .xack(&stream, lane.group(), &entries)
                    .xdel(&stream, &entries)
                    .query_async(&mut conn)
                    .await?;
                Ok::<(), StoreError>(())
            }
        }))
        .await?;
        Ok(())
    }

    /// Takes over, for `consumer`, up to `count` entries of `lane`'s streams on `shards` that
    /// another consumer read and left unacknowledged for longer than `min_idle` — its worker (or
    /// verifier) died or hangs, since a live one renews its claims ([`ShardQueue::renew`]).
    pub async fn reclaim(
        &self,
        lane: Lane,
        shards: &[u32],
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.conn.clone();
        let mut deliveries = Vec::new();
        for &shard in shards {
            let stream = lane.stream(shard);
            let mut cursor = "0-0".to_string();
            // Bounded: one pass over the shard's pending list, a page of `count` at a time.
            loop {
                let wanted = count - deliveries.len();
                if wanted == 0 {
                    return Ok(deliveries);
                }
                let options = StreamAutoClaimOptions::default().count(wanted);
                let reply: StreamAutoClaimReply = conn
                    .xautoclaim_options(&stream, lane.group(), consumer, min_idle.as_millis() as u64, &cursor, options)
                    .await?;
                for entry in reply.claimed {
                    deliveries.push(delivery(lane, shard, &stream, entry)?);
                }
                if reply.next_stream_id == "0-0" {
                    break;
                }
                cursor = reply.next_stream_id;
            }
        }
        Ok(deliveries)
    }

    /// Takes over, for `consumer`, up to `count` of the entries of `lane`'s streams on `shards`
    /// that `from` has read and not acknowledged, however recently: `from` is quarantined, and
    /// its in-flight work is not left to it.
    pub async fn take_from(
        &self,
        lane: Lane,
        shards: &[u32],
        from: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.conn.clone();
        let mut deliveries = Vec::new();
        for &shard in shards {
            let wanted = count - deliveries.len();
            if wanted == 0 {
                break;
            }
            let stream = lane.stream(shard);
            let pending: StreamPendingCountReply =
                conn.xpending_consumer_count(&stream, lane.group(), "-", "+", wanted, from).await?;
            if pending.ids.is_empty() {
                continue;
            }
            let ids: Vec<&str> = pending.ids.iter().map(|p| p.id.as_str()).collect();
            let claimed: StreamClaimReply = conn.xclaim(&stream, lane.group(), consumer, 0, &ids).await?;
            for entry in claimed.ids {
                deliveries.push(delivery(lane, shard, &stream, entry)?);
            }
        }
        Ok(deliveries)
    }

    /// Resets the idle time of `consumer`'s entries `deliveries` (still running or being
    /// verified), so no other worker or verifier reclaims them.
    pub async fn renew(&self, consumer: &str, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        for delivery in deliveries {
            let stream = delivery.lane.stream(delivery.shard);
            // Claiming one's own entry with min-idle 0 resets its idle time; JUSTID leaves its
            // delivery count alone.
            let options = StreamClaimOptions::default().with_justid();
            batch.add(
                &stream,
                redis::Cmd::xclaim_options(&stream, delivery.lane.group(), consumer, 0, &[&delivery.entry], options),
            );
        }
        self.conn.query_batch::<redis::Value>(&batch).await?;
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

/// How long a cluster-mode reader waits before looking at its streams again when none had
/// anything: short next to a job's run time, long enough that idle readers cost little.
pub(crate) const CLUSTER_IDLE_WAIT: Duration = Duration::from_millis(25);

/// A reader of a set of shard streams for one consumer.
///
/// On a single node it reads all its shards in one blocking `XREADGROUP`, so a job on any of
/// them is picked up at once. It owns its connection: a blocking read holds a whole connection
/// for its duration, and redis-rs's default response timeout (500 ms) would cut it short, so the
/// connection's timeout is set above the block time.
///
/// On a cluster one command cannot name streams of different slots, so it reads each stream
/// on its own, without blocking — the reads of a round in flight together — and waits
/// [`CLUSTER_IDLE_WAIT`] between rounds that found nothing, up to the block time.
pub struct ShardReader {
    lane: Lane,
    conn: ReaderConnection,
    streams: Vec<String>,
    shards: Vec<u32>,
    consumer: String,
    block: Duration,
    // The stream a cluster round starts at, moved on every round so that a busy shard
    // cannot keep the reader from the others.
    first: usize,
}

enum ReaderConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ShardReader {
    /// Connects a reader of the job streams of `shards` as `consumer`, blocking up to `block`
    /// per read, on the single Redis node of `client`.
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
        Ok(ShardReader::with(ReaderConnection::Single(conn), lane, shards, consumer, block))
    }

    /// Connects a reader of the streams of `lane` on `shards` as `consumer`, on the Redis
    /// Cluster of `client`; a read returns empty after `block` when nothing came.
    pub async fn connect_cluster(
        client: &ClusterClient,
        lane: Lane,
        shards: &[u32],
        consumer: &str,
        block: Duration,
    ) -> Result<ShardReader, StoreError> {
        let conn = client.get_async_connection().await?;
        Ok(ShardReader::with(ReaderConnection::Cluster(conn), lane, shards, consumer, block))
    }

    /// Connects a reader to the Redis at `urls`, like [`RedisConnection::open`]: one URL is a
    /// single node ([`ShardReader::connect_lane`]), several are a cluster
    /// ([`ShardReader::connect_cluster`]).
    pub async fn open(
        urls: &[String],
        lane: Lane,
        shards: &[u32],
        consumer: &str,
        block: Duration,
    ) -> Result<ShardReader, StoreError> {
        match urls {
            [url] => ShardReader::connect_lane(&Client::open(url.as_str())?, lane, shards, consumer, block).await,
            _ => {
                let client = ClusterClient::new(urls.iter().map(String::as_str))?;
                ShardReader::connect_cluster(&client, lane, shards, consumer, block).await
            }
        }
    }

    fn with(conn: ReaderConnection, lane: Lane, shards: &[u32], consumer: &str, block: Duration) -> ShardReader {
        ShardReader {
            lane,
            conn,
            streams: shards.iter().map(|&s| lane.stream(s)).collect(),
            shards: shards.to_vec(),
            consumer: consumer.to_string(),
            block,
            first: 0,
        }
    }

    /// Up to `count` new deliveries for this consumer; empty if none arrived within the block time.
    pub async fn next(&mut self, count: usize) -> Result<Vec<Delivery>, StoreError> {
        let count = count.max(1);
        if let ReaderConnection::Cluster(conn) = &self.conn {
            let conn = conn.clone();
            let deadline = Instant::now() + self.block;
            loop {
                let deliveries = self.read_cluster(&conn, ">", count).await?;
                let now = Instant::now();
                if !deliveries.is_empty() || now >= deadline {
                    return Ok(deliveries);
                }
                tokio::time::sleep(CLUSTER_IDLE_WAIT.min(deadline - now)).await;
            }
        }
        let options = StreamReadOptions::default()
            .group(self.lane.group(), &self.consumer)
            .count(count)
            .block(self.block.as_millis() as usize);
        self.read_single(">", &options).await
    }

    /// Up to `count` entries delivered to this consumer earlier and not yet acknowledged — what
    /// it was working on when its connection (or Redis) went away. Does not block.
    pub async fn pending(&mut self, count: usize) -> Result<Vec<Delivery>, StoreError> {
        let count = count.max(1);
        if let ReaderConnection::Cluster(conn) = &self.conn {
            let conn = conn.clone();
            return self.read_cluster(&conn, "0", count).await;
        }
        let options = StreamReadOptions::default().group(self.lane.group(), &self.consumer).count(count);
        self.read_single("0", &options).await
    }

    async fn read_single(&mut self, from: &str, options: &StreamReadOptions) -> Result<Vec<Delivery>, StoreError> {
        let ReaderConnection::Single(conn) = &mut self.conn else { unreachable!("only called on a single node") };
        let ids = vec![from; self.streams.len()];
        let reply: Option<StreamReadReply> = conn.xread_options(&self.streams, &ids, options).await?;
        let mut deliveries = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(index) = self.streams.iter().position(|s| *s == stream.key) else { continue };
            for entry in stream.ids {
                deliveries.push(delivery(self.lane, self.shards[index], &stream.key, entry)?);
            }
        }
        Ok(deliveries)
    }

    /// One round over the streams, each read on its own, for up to `count` entries after `from`
    /// (`>`: new ones; `0`: this consumer's pending ones).
    ///
    /// Entries read are delivered to this consumer, so a round never asks for more than
    /// `count` in all: it reads a window of streams at once with `count` shared among them,
    /// then goes on with the streams not yet read and those that filled their share, until it
    /// has `count` or every stream came back short.
    async fn read_cluster(
        &mut self,
        conn: &ClusterConnection,
        from: &str,
        count: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let streams = self.streams.len();
        if streams == 0 {
            return Ok(Vec::new());
        }
        let mut open: VecDeque<(usize, String)> =
            (0..streams).map(|i| ((self.first + i) % streams, from.to_string())).collect();
        self.first = (self.first + 1) % streams;
        let mut deliveries = Vec::new();
        while deliveries.len() < count && !open.is_empty() {
            let wanted = count - deliveries.len();
            let window: Vec<(usize, String)> = open.drain(..wanted.min(open.len())).collect();
            let shares = split(wanted, window.len());
            let mut batch = Batch::new();
            for ((index, after), &share) in window.iter().zip(&shares) {
                let stream = &self.streams[*index];
                let mut read = redis::cmd("XREADGROUP");
                read.arg("GROUP").arg(self.lane.group()).arg(&self.consumer).arg("COUNT").arg(share);
                read.arg("STREAMS").arg(stream).arg(after);
                batch.add(stream, read);
            }
            let replies: Vec<Option<StreamReadReply>> = connection::query_batch_cluster(conn, &batch).await?;
            for (((index, after), share), reply) in window.into_iter().zip(shares).zip(replies) {
                let entries: Vec<StreamId> = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect();
                let full = entries.len() == share;
                // History reads go on after the last entry seen; new-entry reads (`>`) need no
                // cursor, the group moves on by itself.
                let after = match entries.last() {
                    Some(last) if after != ">" => last.id.clone(),
                    _ => after,
                };
                for entry in entries {
                    deliveries.push(delivery(self.lane, self.shards[index], &self.streams[index], entry)?);
                }
                if full {
                    open.push_back((index, after));
                }
            }
        }
        Ok(deliveries)
    }
}

/// `total` split into `parts` shares as equal as can be (the first ones larger by one).
fn split(total: usize, parts: usize) -> Vec<usize> {
    (0..parts).map(|i| total / parts + usize::from(i < total % parts)).collect()
}

/// The delivery a stream entry stands for.
pub(crate) fn delivery(lane: Lane, shard: u32, stream: &str, entry: StreamId) -> Result<Delivery, StoreError> {
    let job_id: Option<String> = entry.get("job");
    let job_id = job_id.ok_or_else(|| StoreError::Corrupt {
        key: format!("{stream} {}", entry.id),
        reason: "stream entry without a job field".into(),
    })?;
    Ok(Delivery { lane, shard, entry: entry.id, job_id })
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn shares_add_up_to_the_total_and_differ_by_at_most_one() {
        assert_eq!(split(5, 5), [1, 1, 1, 1, 1]);
        assert_eq!(split(19, 16), [2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(split(100, 3), [34, 33, 33]);
        for total in 1..40 {
            for parts in 1..=total {
                let shares = split(total, parts);
                assert_eq!(shares.iter().sum::<usize>(), total, "{total} over {parts}");
                assert!(shares.iter().all(|&s| s == total / parts || s == total / parts + 1));
            }
        }
    }
}
