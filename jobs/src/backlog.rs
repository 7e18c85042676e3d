//! How much work waits on each shard: what idle workers steal from and what the gateway's
//! backpressure measures. Every call works on a single node and on a Redis Cluster alike.

use std::time::Duration;

use redis::streams::{StreamInfoGroupsReply, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::connection::{Batch, RedisConnection};
use crate::error::StoreError;
use crate::keys::{self, WORKER_GROUP};
use crate::queue::{delivery, Delivery, Lane};
use crate::store::now_ms;

/// The work waiting on one shard's job stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardBacklog {
    /// The shard.
    pub shard: u32,
    /// Entries no worker has read yet.
    pub unread: u64,
    /// Entries read by a worker and not yet acknowledged (running, or lost with their worker).
    pub pending: u64,
    /// The id of the last entry handed to a worker: unread entries come after it.
    pub last_delivered: String,
}

impl ShardBacklog {
    /// Entries not yet acknowledged, read or not.
    pub fn outstanding(&self) -> u64 {
        self.unread + self.pending
    }
}

/// The backlog of each of `shards`, in that order, in two batched round trips: the streams'
/// lengths, then the consumer groups of the non-empty ones (most shards are empty most of the
/// time, and a stream no worker has opened yet does not exist).
///
/// Acknowledged entries are deleted ([`crate::ShardQueue::ack`]), so a stream's length is its
/// outstanding work; the group's pending count splits it into read and unread. (The group's
/// `lag` field would say the same, but Redis reports it as unknown after deletions.)
pub async fn shard_backlogs(conn: &RedisConnection, shards: &[u32]) -> Result<Vec<ShardBacklog>, StoreError> {
    if shards.is_empty() {
        return Ok(Vec::new());
    }
    let mut lengths = Batch::new();
    for &shard in shards {
        let stream = keys::shard_stream(shard);
        lengths.add(&stream, redis::cmd("XLEN").arg(&stream).clone());
    }
    let lengths = conn.query_batch::<u64>(&lengths).await?;
    let mut groups = Batch::new();
    for (&shard, _) in shards.iter().zip(&lengths).filter(|(_, &len)| len > 0) {
        let stream = keys::shard_stream(shard);
        groups.add(&stream, redis::cmd("XINFO").arg("GROUPS").arg(&stream).clone());
    }
    let groups =
        if !groups.is_empty() { conn.query_batch::<StreamInfoGroupsReply>(&groups).await? } else { Vec::new() };
    let mut groups = groups.into_iter();
    Ok(shards
        .iter()
        .zip(lengths)
        .map(|(&shard, len)| {
            let groups = if len > 0 { groups.next() } else { None };
            let group = groups.as_ref().and_then(|g| g.groups.iter().find(|g| g.name == WORKER_GROUP));
            let pending = group.map_or(0, |g| g.pending as u64).min(len);
            let last_delivered = group.map_or_else(|| "0-0".to_string(), |g| g.last_delivered_id.clone());
            ShardBacklog { shard, unread: len - pending, pending, last_delivered }
        })
        .collect())
}

/// The shard of `backlogs` with the most unread entries, if it has at least `at_least` (and one).
pub fn longest(backlogs: &[ShardBacklog], at_least: u64) -> Option<ShardBacklog> {
    backlogs.iter().filter(|b| b.unread >= at_least.max(1)).max_by_key(|b| (b.unread, u32::MAX - b.shard)).cloned()
}

/// The shard of `backlogs` whose oldest unread entry has waited longest, if that is at least
/// `older_than`: work its readers are not getting to. Entry ids are their enqueue times (ms).
pub async fn oldest_waiting(
    conn: &RedisConnection,
    backlogs: &[ShardBacklog],
    older_than: Duration,
) -> Result<Option<u32>, StoreError> {
    let waiting: Vec<&ShardBacklog> = backlogs.iter().filter(|b| b.unread > 0).collect();
    if waiting.is_empty() {
        return Ok(None);
    }
    let mut firsts = Batch::new();
    for backlog in &waiting {
        // The first entry after the last delivered one: the oldest nobody has read.
        let stream = keys::shard_stream(backlog.shard);
        let after = format!("({}", backlog.last_delivered);
        firsts.add(&stream, redis::cmd("XRANGE").arg(&stream).arg(after).arg("+").arg("COUNT").arg(1).clone());
    }
    let replies: Vec<StreamRangeReply> = conn.query_batch(&firsts).await?;
    let cutoff = now_ms().saturating_sub(older_than.as_millis() as u64);
    Ok(waiting
        .iter()
        .zip(replies)
        .filter_map(|(backlog, reply)| Some((entry_ms(&reply.ids.first()?.id)?, backlog.shard)))
        .filter(|&(enqueued, _)| enqueued <= cutoff)
        .min()
        .map(|(_, shard)| shard))
}

/// Reads, for `consumer`, up to `count` unread entries of shard `shard`'s job stream, without
/// blocking: how a worker takes work from a shard it does not normally read.
pub async fn take_unread(
    conn: &mut RedisConnection,
    shard: u32,
    consumer: &str,
    count: usize,
) -> Result<Vec<Delivery>, StoreError> {
    let stream = keys::shard_stream(shard);
    let options = StreamReadOptions::default().group(WORKER_GROUP, consumer).count(count.max(1));
    let reply: Option<StreamReadReply> = conn.xread_options(&[&stream], &[">"], &options).await?;
    reply
        .map(|r| r.keys)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|key| key.ids)
        .map(|entry| delivery(Lane::Jobs, shard, &stream, entry))
        .collect()
}

/// The enqueue time (ms) of a stream entry id `<ms>-<seq>`.
fn entry_ms(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_picks_the_most_unread_above_the_threshold() {
        let b = |shard, unread| ShardBacklog { shard, unread, pending: 9, last_delivered: "0-0".into() };
        let backlogs = [b(1, 3), b(2, 7), b(3, 7), b(4, 0)];
        assert_eq!(longest(&backlogs, 1).map(|b| b.shard), Some(2), "ties go to the lower shard");
        assert_eq!(longest(&backlogs, 8), None);
        assert_eq!(longest(&[b(5, 0)], 0), None, "nothing unread is never stolen from");
        assert_eq!(b(1, 3).outstanding(), 12);
    }
}
