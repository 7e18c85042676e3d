//! The records of `replicated` verification ([`crate::VerificationPolicy::Replicated`]): which
//! replica jobs the verifier asked for each job, and which jobs wait for theirs.
//!
//! A replica is an ordinary job of the same program and inputs (with no verification of its
//! own), placed on a shard of its own; nothing in its record points back. The verifier lists a
//! job's replicas beside the job's record and puts the job on the waiting set; a verifier (one
//! at a time, under [`crate::keys::Lock::Replication`]) visits the waiting jobs, and decides on
//! each once its replicas have all finished.

use redis::AsyncCommands;

use crate::connection::RedisConnection;
use crate::error::StoreError;
use crate::keys;
use crate::store::now_ms;

/// The replication records in Redis. Cheap to clone.
#[derive(Clone)]
pub struct ReplicationStore {
    conn: RedisConnection,
}

impl ReplicationStore {
    /// A store over `conn`.
    pub fn new(conn: impl Into<RedisConnection>) -> ReplicationStore {
        ReplicationStore { conn: conn.into() }
    }

    /// The replica jobs asked for job `id` so far, oldest first.
    pub async fn replicas(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.lrange(keys::replicas(id), 0, -1).await?)
    }

    /// Records `replica` as asked for job `id`.
    pub async fn add_replica(&self, id: &str, replica: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.rpush(keys::replicas(id), replica).await?;
        Ok(())
    }

    /// Puts job `id` on the waiting set (again: its score is kept).
    pub async fn wait(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 =
            redis::cmd("ZADD").arg(keys::replicating()).arg("NX").arg(now_ms()).arg(id).query_async(&mut conn).await?;
        Ok(())
    }

    /// Up to `limit` waiting jobs, longest waiting first.
    pub async fn waiting(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.zrange(keys::replicating(), 0, limit.max(1) as isize - 1).await?)
    }

    /// Takes job `id` off the waiting set: it has its verdict.
    pub async fn done(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.zrem(keys::replicating(), id).await?;
        Ok(())
    }
}
