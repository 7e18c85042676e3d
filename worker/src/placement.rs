//! This worker's place among the live workers: its registration and heartbeat, what its cache
//! advertises holding, and the shards it reads.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use shoal_jobs::{
    keys, now_ms, Candidate, HotPolicy, HotShards, JobStore, Member, Membership, ShardAssignment, ShardRouter,
    StoreError, WorkerInfo,
};
use tokio::sync::watch;
use tracing::warn;

use crate::config::WorkerConfig;

/// This worker's place among the live workers: its registration, what it advertises holding,
/// and the shards it reads — its own, plus the hot shards it was picked for.
pub(crate) struct Placement {
    jobs: JobStore,
    membership: Membership,
    info: WorkerInfo,
    assignment: ShardAssignment,
    policy: HotPolicy,
    router: ShardRouter,
    /// The inputs the executor holds now.
    held: Box<dyn Fn() -> Vec<Cid> + Send + Sync>,
    /// The shards this worker last advertised holding data of.
    advertised: Mutex<BTreeSet<u32>>,
    /// The heartbeat interval.
    every: Duration,
    /// Whether this worker was quarantined, as of its last heartbeat.
    quarantined: AtomicBool,
}

impl Placement {
    /// The placement of the worker `config` describes, whose executor holds `held()` now.
    pub(crate) fn new(
        config: &WorkerConfig,
        jobs: JobStore,
        membership: Membership,
        held: Box<dyn Fn() -> Vec<Cid> + Send + Sync>,
    ) -> Placement {
        Placement {
            jobs,
            membership,
            info: WorkerInfo {
                id: config.id.clone(),
                capacity: config.concurrency as u32,
                cache_bytes: config.input_cache_bytes,
                labels: config.labels.clone(),
                shards: config.shards,
                started_at_ms: now_ms(),
            },
            assignment: ShardAssignment::new(config.shards, config.shard_replicas),
            policy: HotPolicy {
                backlog_per_reader: config.hot_backlog,
                max_readers: config.max_shard_readers,
                // One heartbeat missed, with room for a late one.
                suspect_after: config.heartbeat * 2,
            },
            router: ShardRouter::new(config.shards),
            held,
            advertised: Mutex::default(),
            every: config.heartbeat,
            quarantined: AtomicBool::new(false),
        }
    }

    /// Beats the heartbeat, advertises what changed in the cache, then works out the shards this
    /// worker reads among the live set.
    pub(crate) async fn refresh(&self) -> Result<Vec<u32>, StoreError> {
        self.membership.heartbeat(&self.info).await?;
        let live_within = Membership::live_window(self.every);
        let quarantined = self.membership.quarantined().await?;
        // A quarantined worker reads nothing, steals nothing and is nobody's replica.
        self.quarantined.store(quarantined.contains_key(&self.info.id), Ordering::Relaxed);
        let live: Vec<Member> = self
            .membership
            .live(live_within)
            .await?
            .into_iter()
            .filter(|member| !quarantined.contains_key(&member.info.id))
            .collect();
        self.advertise().await?;
        if self.is_quarantined() {
            return Ok(Vec::new());
        }
        let candidates: Vec<Candidate> = live.iter().map(|m| Candidate::new(&m.info.id, m.info.capacity)).collect();
        let mut shards = self.assignment.shards_of(&self.info.id, &candidates);
        if self.policy.max_readers > self.assignment.replicas() {
            shards.extend(self.hot_shards(&live, live_within).await?.shards_for(&self.info.id));
            shards.sort_unstable();
            shards.dedup();
        }
        Ok(shards)
    }

    /// The published hot shards; refreshed first by whichever worker gets the hot lock this
    /// heartbeat, so one worker per interval pays for sampling every shard.
    async fn hot_shards(&self, live: &[Member], ttl: Duration) -> Result<HotShards, StoreError> {
        let conn = self.jobs.connection();
        if self.jobs.take_lock(keys::Lock::Hot, &self.info.id, self.every).await? {
            HotShards::refresh(&conn, &self.membership, &self.assignment, &self.policy, live, ttl).await
        } else {
            HotShards::read(&conn).await
        }
    }

    /// Advertises the shards whose data this worker came to hold, and withdraws those it no
    /// longer holds, since the last call.
    async fn advertise(&self) -> Result<(), StoreError> {
        let now: BTreeSet<u32> = (self.held)().iter().map(|cid| self.router.shard_of(cid)).collect();
        let before = self.advertised.lock().expect("advertised set is never poisoned").clone();
        let added: Vec<u32> = now.difference(&before).copied().collect();
        let dropped: Vec<u32> = before.difference(&now).copied().collect();
        self.membership.advertise(&self.info.id, &added, &dropped).await?;
        *self.advertised.lock().expect("advertised set is never poisoned") = now;
        Ok(())
    }

    /// Whether this worker was quarantined as of its last heartbeat: it then takes no work.
    pub(crate) fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// The shards whose data this worker held at its last heartbeat.
    pub(crate) fn held_shards(&self) -> HashSet<u32> {
        self.advertised.lock().expect("advertised set is never poisoned").iter().copied().collect()
    }

    /// Withdraws everything this worker advertised (it is leaving).
    pub(crate) async fn withdraw(&self) -> Result<(), StoreError> {
        let all: Vec<u32> = self.advertised.lock().expect("advertised set is never poisoned").iter().copied().collect();
        self.membership.advertise(&self.info.id, &[], &all).await
    }
}

/// Refreshes the worker's registration every `every`, publishing its shards when they change.
pub(crate) async fn beat(placement: Arc<Placement>, every: Duration, assigned: watch::Sender<Vec<u32>>) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        match placement.refresh().await {
            Ok(shards) => {
                assigned.send_if_modified(|current| {
                    let changed = *current != shards;
                    *current = shards;
                    changed
                });
            }
            Err(e) => warn!(error = %e, "heartbeat failed; keeping the current shards, retrying at the next tick"),
        }
    }
}
