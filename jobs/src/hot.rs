//! Hot shards: more readers for a shard whose backlog outgrows its owners.
//!
//! A shard's owners ([`ShardAssignment`]) suffice while its backlog is short. When one CID (or a
//! few sharing a shard) is in demand, that shard's unread backlog grows behind its owners while
//! other workers run colder work; stealing helps only workers that are idle, and only after a
//! delay. So one worker at a time — whoever holds the hot lock, tried at every heartbeat —
//! samples every shard's backlog and, for each shard with more unread entries per reader than
//! [`HotPolicy::backlog_per_reader`] and than every worker's fair share of all unread work,
//! picks extra readers: workers
//! that advertise holding the shard's data first ([`Membership::advertise`]), then the next
//! ranked ([`ShardAssignment::readers`]). A shard with work waiting whose owner has missed
//! its heartbeat for [`HotPolicy::suspect_after`] gets one extra reader too, however short its
//! backlog: the owner is likely dead, and the membership drops it only after three missed
//! heartbeats. It publishes them with an expiry ([`HotShards`]).
//! Every worker reads the publication at its heartbeat and also reads the hot shards it was
//! picked for; when a backlog drains, the next publication drops the shard and its extra
//! readers let it go. Readers of one stream share its consumer group, so an entry still goes to
//! exactly one of them. The fair share keeps a job fanned out over thousands of files where its
//! data is: when every shard has a backlog, every worker is busy with its own, and extra readers
//! would only trade work between caches.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::backlog::{shard_backlogs, ShardBacklog};
use crate::connection::RedisConnection;
use crate::error::StoreError;
use crate::keys;
use crate::membership::{Member, Membership};
use crate::placement::{Candidate, ShardAssignment};
use crate::store::now_ms;

/// When a shard is hot, and how many readers it may have then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotPolicy {
    /// Unread entries per reader above which a shard gets one more reader.
    pub backlog_per_reader: u64,
    /// The most workers that read one shard, owners included. At most the shard's owner count
    /// turns hot replicas off.
    pub max_readers: usize,
    /// A shard with unread entries whose owner has not been heard from for this long gets one
    /// more reader (its owner is suspected dead).
    pub suspect_after: Duration,
}

impl HotPolicy {
    /// How many workers should read a shard with `unread` entries waiting and `owners` owners,
    /// when each live worker's share of all unread work is `fair_share`: one per
    /// [`HotPolicy::backlog_per_reader`] entries or per fair share, whichever is more; one more
    /// than the owners if it is `stranded`; at least the owners, at most
    /// [`HotPolicy::max_readers`].
    pub fn readers_wanted(&self, unread: u64, owners: usize, stranded: bool, fair_share: u64) -> usize {
        let per_reader = self.backlog_per_reader.max(fair_share).max(1);
        let wanted = usize::try_from(unread.div_ceil(per_reader)).unwrap_or(usize::MAX);
        let wanted = if stranded { wanted.max(owners + 1) } else { wanted };
        wanted.clamp(owners, self.max_readers.max(owners))
    }
}

/// The hot shards and, for each, the workers picked to read it besides its owners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotShards {
    /// Shard → extra readers, best first.
    pub extra_readers: BTreeMap<u32, Vec<String>>,
}

impl HotShards {
    /// Picks extra readers for the shards of `backlogs` that `policy` finds hot (or stranded
    /// with a suspect owner), among `live` (whose advertised holdings `membership` reads).
    pub async fn pick(
        membership: &Membership,
        assignment: &ShardAssignment,
        policy: &HotPolicy,
        backlogs: &[ShardBacklog],
        live: &[Member],
    ) -> Result<HotShards, StoreError> {
        let candidates: Vec<Candidate> = live.iter().map(|m| Candidate::new(&m.info.id, m.info.capacity)).collect();
        let owners = assignment.replicas().min(candidates.len());
        let heard_since = now_ms().saturating_sub(u64::try_from(policy.suspect_after.as_millis()).unwrap_or(u64::MAX));
        let suspects: BTreeSet<&str> =
            live.iter().filter(|m| m.last_seen_ms < heard_since).map(|m| m.info.id.as_str()).collect();
        let stranded = |b: &ShardBacklog| {
            b.unread > 0
                && !suspects.is_empty()
                && assignment.owners(b.shard, &candidates).iter().any(|o| suspects.contains(o.id.as_str()))
        };
        let unread: u64 = backlogs.iter().map(|b| b.unread).sum();
        let fair_share = unread.div_ceil(candidates.len().max(1) as u64);
        let hot: Vec<(u32, usize)> = backlogs
            .iter()
            .map(|b| (b.shard, policy.readers_wanted(b.unread, owners, stranded(b), fair_share)))
            .filter(|&(_, wanted)| wanted > owners)
            .collect();
        let shards: Vec<u32> = hot.iter().map(|&(shard, _)| shard).collect();
        let holders = membership.holders(&shards, live).await?;
        let extra_readers = hot
            .iter()
            .zip(&holders)
            .map(|(&(shard, wanted), holders)| {
                let readers = assignment.readers(shard, wanted, &candidates, holders);
                (shard, readers.into_iter().skip(owners).map(|w| w.id.clone()).collect::<Vec<_>>())
            })
            .filter(|(_, extra)| !extra.is_empty())
            .collect();
        Ok(HotShards { extra_readers })
    }

    /// Samples every shard's backlog over `conn`, picks the hot and stranded shards' extra
    /// readers
    /// ([`HotShards::pick`]) and publishes them for `ttl`: if the picker stops, they expire
    /// and every shard falls back to its owners.
    pub async fn refresh(
        conn: &RedisConnection,
        membership: &Membership,
        assignment: &ShardAssignment,
        policy: &HotPolicy,
        live: &[Member],
        ttl: Duration,
    ) -> Result<HotShards, StoreError> {
        let shards: Vec<u32> = (0..assignment.shards()).collect();
        let backlogs = shard_backlogs(conn, &shards).await?;
        let hot = HotShards::pick(membership, assignment, policy, &backlogs, live).await?;
        let json = serde_json::to_string(&hot).expect("HotShards always serialises");
        let mut conn = conn.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        conn.pset_ex::<_, _, ()>(keys::hot_shards(), json, ttl_ms).await?;
        Ok(hot)
    }

    /// The last publication, or none if it has expired.
    pub async fn read(conn: &RedisConnection) -> Result<HotShards, StoreError> {
        let mut conn = conn.clone();
        let json: Option<String> = conn.get(keys::hot_shards()).await?;
        match json {
            None => Ok(HotShards::default()),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt { key: keys::hot_shards(), reason: e.to_string() }),
        }
    }

    /// The hot shards worker `id` was picked to read, ascending.
    pub fn shards_for(&self, id: &str) -> Vec<u32> {
        self.extra_readers.iter().filter(|(_, readers)| readers.iter().any(|r| r == id)).map(|(&s, _)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_grow_with_the_backlog_between_the_owners_and_the_cap() {
        let after = Duration::from_secs(5);
        let policy = HotPolicy { backlog_per_reader: 8, max_readers: 4, suspect_after: after };
        assert_eq!(policy.readers_wanted(0, 1, false, 0), 1);
        assert_eq!(policy.readers_wanted(8, 1, false, 0), 1);
        assert_eq!(policy.readers_wanted(9, 1, false, 0), 2);
        assert_eq!(policy.readers_wanted(24, 1, false, 0), 3);
        assert_eq!(policy.readers_wanted(10_000, 1, false, 0), 4);
        assert_eq!(policy.readers_wanted(3, 2, false, 0), 2, "never fewer than the owners");
        assert_eq!(policy.readers_wanted(1, 1, true, 0), 2, "a stranded shard gets one more reader");
        assert_eq!(policy.readers_wanted(24, 1, true, 0), 3);
        assert_eq!(policy.readers_wanted(40, 1, false, 2_500), 1, "no shard is hot when all work is far behind");
        assert_eq!(policy.readers_wanted(40, 1, false, 15), 3, "a shard holding more than its share is");
        let off = HotPolicy { backlog_per_reader: 8, max_readers: 1, suspect_after: after };
        assert_eq!(off.readers_wanted(10_000, 1, true, 0), 1, "a cap of the owner count turns it off");
        let eager = HotPolicy { backlog_per_reader: 0, max_readers: 3, suspect_after: after };
        assert_eq!(eager.readers_wanted(2, 1, false, 0), 2);
    }

    #[test]
    fn a_worker_reads_only_the_hot_shards_it_was_picked_for() {
        let hot = HotShards {
            extra_readers: [(3, vec!["a".to_string(), "b".to_string()]), (9, vec!["b".to_string()])].into(),
        };
        assert_eq!(hot.shards_for("b"), vec![3, 9]);
        assert_eq!(hot.shards_for("a"), vec![3]);
        assert!(hot.shards_for("c").is_empty());
    }
}
