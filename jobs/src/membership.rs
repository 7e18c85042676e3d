//! Which workers are alive: each registers what it offers and beats a heartbeat; any gateway
//! reads the live set from Redis (gateways keep no state of their own). Workers also advertise
//! which shards' data their caches hold, so a hot shard can be given to more readers that
//! already hold its data ([`crate::hot`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::connection::RedisConnection;
use crate::error::StoreError;
use crate::keys;
use crate::receipt::PublicKey;
use crate::store::now_ms;

/// What a worker offers, as it registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerInfo {
    /// The worker's id (its consumer name on the streams).
    pub id: String,
    /// Jobs it runs at once.
    pub capacity: u32,
    /// Bytes of inputs it keeps cached.
    pub cache_bytes: u64,
    /// Free-form labels (region, hardware, …) for placement.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Shards it reads.
    pub shards: u32,
    /// When it started, in ms since the Unix epoch.
    pub started_at_ms: u64,
}

/// Why a worker was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// What it was caught at.
    pub reason: String,
    /// The job it was caught on.
    pub job: String,
    /// The verifier that caught it.
    pub verifier: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// How many jobs it had settled by then (as far as remembered), all now tainted.
    #[serde(default)]
    pub settled: u64,
}

/// A registered worker and when it was last heard from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// What it registered.
    #[serde(flatten)]
    pub info: WorkerInfo,
    /// Its last heartbeat, in ms since the Unix epoch.
    pub last_seen_ms: u64,
}

/// The worker registry in Redis. Both of its keys share the `{w}` tag, so its transactions
/// run on a cluster too.
#[derive(Clone)]
pub struct Membership {
    conn: RedisConnection,
}

impl Membership {
    /// How often a worker beats its heartbeat unless configured otherwise.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

    /// Heartbeats a worker may miss before it is taken for gone.
    pub const MISSED_HEARTBEATS: u32 = 3;

    /// The window within which a worker beating every `heartbeat` was last heard from, if it is
    /// alive: [`Membership::MISSED_HEARTBEATS`] beats. The one rule for who is live, used by
    /// workers (for shard ownership), gateways (for listing) and the harness alike.
    pub fn live_window(heartbeat: Duration) -> Duration {
        heartbeat * Membership::MISSED_HEARTBEATS
    }

    /// The registry over `conn` (a [`redis::aio::ConnectionManager`] for one node, or a
    /// [`RedisConnection`]).
    pub fn new(conn: impl Into<RedisConnection>) -> Membership {
        Membership { conn: conn.into() }
    }

    /// Registers (or refreshes) `info` and records a heartbeat now.
    pub async fn heartbeat(&self, info: &WorkerInfo) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(info).expect("a WorkerInfo always serialises");
        redis::pipe()
            .atomic()
            .hset(keys::members(), &info.id, json)
            .zadd(keys::heartbeats(), &info.id, now_ms())
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Binds worker id `id` to `key`, the first time; afterwards only the same key is accepted
    /// ([`StoreError::KeyConflict`] otherwise), so no one else can sign as `id`.
    pub async fn bind_key(&self, id: &str, key: &PublicKey) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let text = key.to_string();
        let _: bool = conn.hset_nx(keys::worker_keys(), id, &text).await?;
        let registered: String = conn.hget(keys::worker_keys(), id).await?;
        if registered != text {
            return Err(StoreError::KeyConflict { worker: id.to_string(), registered });
        }
        Ok(())
    }

    /// The key bound to worker `id`, if it registered one.
    pub async fn key_of(&self, id: &str) -> Result<Option<PublicKey>, StoreError> {
        let mut conn = self.conn.clone();
        let registered: Option<String> = conn.hget(keys::worker_keys(), id).await?;
        registered
            .map(|text| {
                text.parse().map_err(|e: crate::ReceiptError| StoreError::Corrupt {
                    key: keys::worker_keys(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Counts one refused execution of worker `id`; returns its count so far.
    pub async fn count_refusal(&self, id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hincr(keys::refusals(), id, 1).await?)
    }

    /// Counts one result of worker `id` that the verifier re-executed and agreed with.
    pub async fn count_agreed(&self, id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hincr(keys::agreed(), id, 1).await?)
    }

    /// How many results of worker `id` the verifier agreed with: its verified history.
    pub async fn agreed(&self, id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let count: Option<u64> = conn.hget(keys::agreed(), id).await?;
        Ok(count.unwrap_or(0))
    }

    /// How many executions of each worker were refused.
    pub async fn refusals(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hgetall(keys::refusals()).await?)
    }

    /// How many of a worker's settled jobs are remembered for re-verification if it is caught.
    pub const SETTLED_KEPT: usize = 1_000_000;

    /// Remembers that worker `id` settled job `job` as succeeded.
    pub async fn record_settled(&self, id: &str, job: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .lpush(keys::settled_by(id), job)
            .ltrim(keys::settled_by(id), 0, Membership::SETTLED_KEPT as isize - 1)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Quarantines worker `id`: its results are no longer trusted, it gets no shards and steals
    /// nothing, and every job it settled is marked tainted (to be verified whatever its
    /// sampling). Returns whether this call quarantined it, and the jobs still tainted among
    /// those it settled — also when it already was, so a caller that died half-way through
    /// re-queuing them can finish the work. The taint is written before the quarantine, so a
    /// crash in between leaves the work to be redone, never lost.
    pub async fn quarantine(&self, id: &str, mut why: Quarantine) -> Result<(bool, Vec<String>), StoreError> {
        let mut conn = self.conn.clone();
        let settled: Vec<String> = conn.lrange(keys::settled_by(id), 0, -1).await?;
        why.settled = settled.len() as u64;
        let json = serde_json::to_string(&why).expect("a Quarantine always serialises");
        let quarantined: Option<String> = conn.hget(keys::quarantined(), id).await?;
        if quarantined.is_none() && !settled.is_empty() {
            let _: () = conn.sadd(keys::tainted(), &settled).await?;
        }
        let newly: bool = conn.hset_nx(keys::quarantined(), id, json).await?;
        if settled.is_empty() {
            return Ok((newly, Vec::new()));
        }
        let marks: Vec<bool> =
            redis::cmd("SMISMEMBER").arg(keys::tainted()).arg(&settled).query_async(&mut conn).await?;
        let tainted = settled.into_iter().zip(marks).filter_map(|(job, marked)| marked.then_some(job)).collect();
        Ok((newly, tainted))
    }

    /// The quarantined workers and why.
    pub async fn quarantined(&self) -> Result<BTreeMap<String, Quarantine>, StoreError> {
        let mut conn = self.conn.clone();
        let all: BTreeMap<String, String> = conn.hgetall(keys::quarantined()).await?;
        all.into_iter()
            .map(|(id, json)| {
                let why = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                    key: format!("{} {id}", keys::quarantined()),
                    reason: e.to_string(),
                })?;
                Ok((id, why))
            })
            .collect()
    }

    /// Readmits worker `id` (an operator's decision); whether it was quarantined.
    pub async fn readmit(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hdel(keys::quarantined(), id).await?)
    }

    /// Whether job `job`'s result is tainted: its worker was caught since it settled.
    pub async fn is_tainted(&self, job: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.sismember(keys::tainted(), job).await?)
    }

    /// Every job still tainted.
    pub async fn tainted(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.smembers(keys::tainted()).await?)
    }

    /// Takes the taint off job `job`, once its result is verified (or corrected).
    pub async fn clear_taint(&self, job: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: u32 = conn.srem(keys::tainted(), job).await?;
        Ok(())
    }

    /// Removes worker `id` at once (it is shutting down).
    pub async fn leave(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .hdel(keys::members(), id)
            .zrem(keys::heartbeats(), id)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Advertises that worker `id` now holds inputs routed to the shards `added` and no longer
    /// to those in `dropped`. Workers send changes only, so advertising costs in proportion to
    /// cache churn; what a worker that died advertised stays behind, and readers discount it
    /// against the live set ([`Membership::holders`]).
    pub async fn advertise(&self, id: &str, added: &[u32], dropped: &[u32]) -> Result<(), StoreError> {
        if added.is_empty() && dropped.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for &shard in added {
            pipe.sadd(keys::holders(shard), id).ignore();
        }
        for &shard in dropped {
            pipe.srem(keys::holders(shard), id).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// For each of `shards`, in that order, the workers among `live` that advertise holding its
    /// data. Advertisements of workers no longer registered at all (they left, or died long
    /// enough ago to be forgotten by [`Membership::live`]) are removed on the way.
    pub async fn holders(&self, shards: &[u32], live: &[Member]) -> Result<Vec<BTreeSet<String>>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &shard in shards {
            pipe.smembers(keys::holders(shard));
        }
        let mut conn = self.conn.clone();
        let advertised: Vec<BTreeSet<String>> = pipe.query_async(&mut conn).await?;
        let alive: BTreeSet<&str> = live.iter().map(|m| m.info.id.as_str()).collect();
        let absent: BTreeSet<&String> = advertised.iter().flatten().filter(|id| !alive.contains(id.as_str())).collect();
        if !absent.is_empty() {
            let absent: Vec<&String> = absent.into_iter().collect();
            let registered: Vec<bool> = {
                let mut pipe = redis::pipe();
                for id in &absent {
                    pipe.hexists(keys::members(), *id);
                }
                pipe.query_async(&mut conn).await?
            };
            let forgotten: Vec<&String> =
                absent.iter().zip(registered).filter(|(_, registered)| !registered).map(|(id, _)| *id).collect();
            if !forgotten.is_empty() {
                let mut pipe = redis::pipe();
                for (&shard, ids) in shards.iter().zip(&advertised) {
                    let gone: Vec<&&String> = forgotten.iter().filter(|id| ids.contains(**id)).collect();
                    if !gone.is_empty() {
                        pipe.srem(keys::holders(shard), gone).ignore();
                    }
                }
                pipe.query_async::<()>(&mut conn).await?;
            }
        }
        Ok(advertised
            .into_iter()
            .map(|ids| ids.into_iter().filter(|id| alive.contains(id.as_str())).collect())
            .collect())
    }

    /// The workers heard from within `within`, most recently seen first. Registrations older
    /// than ten times that are removed on the way (workers that died without leaving).
    pub async fn live(&self, within: Duration) -> Result<Vec<Member>, StoreError> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let window = within.as_millis() as u64;
        let forgotten: Vec<String> =
            conn.zrangebyscore(keys::heartbeats(), "-inf", now.saturating_sub(window * 10)).await?;
        if !forgotten.is_empty() {
            redis::pipe()
                .atomic()
                .hdel(keys::members(), &forgotten)
                .zrem(keys::heartbeats(), &forgotten)
                .query_async::<()>(&mut conn)
                .await?;
        }
        let seen: Vec<(String, u64)> =
            conn.zrevrangebyscore_withscores(keys::heartbeats(), "+inf", now.saturating_sub(window)).await?;
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
        let infos: Vec<Option<String>> =
            redis::cmd("HMGET").arg(keys::members()).arg(&ids).query_async(&mut conn).await?;
        seen.iter()
            .zip(infos)
            .filter_map(|((id, last_seen_ms), json)| json.map(|json| (id, *last_seen_ms, json)))
            .map(|(id, last_seen_ms, json)| {
                let info = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                    key: format!("{} {id}", keys::members()),
                    reason: e.to_string(),
                })?;
                Ok(Member { info, last_seen_ms })
            })
            .collect()
    }
}
