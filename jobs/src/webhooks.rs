//! Webhook events and their delivery attempts in Redis ([`WebhookStore`]).
//!
//! A job whose spec has `notify` gets an entry on its tag's events stream
//! ([`keys::events_stream`]) from the very script that ends it (or records the verifier's
//! verdict), so no event is lost between the change and its announcement. Gateways read the
//! streams through one consumer group, deliver, and acknowledge an entry once it is delivered or
//! given up on; an entry whose gateway died is taken over after a while, and delivered again
//! under the same webhook id.

use std::time::Duration;

use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::connection::{Batch, RedisConnection};
use crate::error::StoreError;
use crate::keys::{self, WEBHOOK_GROUP};
use crate::model::WebhookEvent;

/// One event to deliver: which job, what happened, and where the entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The events stream holding it.
    pub stream: String,
    /// Its entry id there.
    pub entry: String,
    /// The job.
    pub job: String,
    /// What happened.
    pub event: WebhookEvent,
}

impl WebhookDelivery {
    /// The webhook id receivers deduplicate by: the same for every attempt at this event.
    pub fn webhook_id(&self) -> String {
        format!("msg_{}_{}", self.job, self.entry)
    }
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttempt {
    /// The webhook id (the same on retries).
    pub webhook_id: String,
    /// The event.
    pub event: WebhookEvent,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it was made (ms since the Unix epoch).
    pub at_ms: u64,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What came of it.
    pub outcome: AttemptOutcome,
}

/// What came of a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed; another attempt follows.
    Retrying,
    /// It failed and was the last: the event is recorded as undelivered.
    GaveUp,
}

/// Attempts kept per job.
const ATTEMPTS_KEPT: isize = 50;

/// Webhook events and delivery attempts. Cheap to clone.
#[derive(Clone)]
pub struct WebhookStore {
    conn: RedisConnection,
}

impl WebhookStore {
    /// The store over `conn`.
    pub fn new(conn: impl Into<RedisConnection>) -> WebhookStore {
        WebhookStore { conn: conn.into() }
    }

    /// Creates the consumer group on every events stream, from the start of each, if missing.
    pub async fn ensure_groups(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        for tag in keys::all_job_tags() {
            let created: redis::RedisResult<()> =
                conn.xgroup_create_mkstream(keys::events_stream(&tag), WEBHOOK_GROUP, "0").await;
            match created {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Up to `count` new events from each events stream for `consumer`.
    pub async fn read(&self, consumer: &str, count: usize) -> Result<Vec<WebhookDelivery>, StoreError> {
        let mut batch = Batch::new();
        let streams: Vec<String> = keys::all_job_tags().map(|tag| keys::events_stream(&tag)).collect();
        for stream in &streams {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP").arg(WEBHOOK_GROUP).arg(consumer).arg("COUNT").arg(count);
            read.arg("STREAMS").arg(stream).arg(">");
            batch.add(stream, read);
        }
        let replies: Vec<Option<StreamReadReply>> = self.conn.query_batch(&batch).await?;
        let mut deliveries = Vec::new();
        for (stream, reply) in streams.iter().zip(replies) {
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                deliveries.extend(decode(stream, &entry));
            }
        }
        Ok(deliveries)
    }

    /// Takes over for `consumer` up to `count` events per stream that another gateway (or this
    /// one, before a restart) left unacknowledged for `min_idle`.
    pub async fn take_over(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let mut batch = Batch::new();
        let streams: Vec<String> = keys::all_job_tags().map(|tag| keys::events_stream(&tag)).collect();
        for stream in &streams {
            let mut claim = redis::cmd("XAUTOCLAIM");
            claim.arg(stream).arg(WEBHOOK_GROUP).arg(consumer).arg(min_idle.as_millis() as u64).arg("0");
            claim.arg(StreamAutoClaimOptions::default().count(count));
            batch.add(stream, claim);
        }
        let replies: Vec<StreamAutoClaimReply> = self.conn.query_batch(&batch).await?;
        Ok(streams
            .iter()
            .zip(replies)
            .flat_map(|(stream, reply)| {
                reply.claimed.iter().filter_map(|entry| decode(stream, entry)).collect::<Vec<_>>()
            })
            .collect())
    }

    /// Acknowledges and removes a delivered (or given up) event.
    pub async fn done(&self, delivery: &WebhookDelivery) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic().xack(&delivery.stream, WEBHOOK_GROUP, &[&delivery.entry]).ignore();
        pipe.xdel(&delivery.stream, &[&delivery.entry]).ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Records an attempt at delivering one of job `job`'s events.
    pub async fn record_attempt(&self, job: &str, attempt: &WebhookAttempt) -> Result<(), StoreError> {
        let key = keys::webhook_attempts(job);
        let json = serde_json::to_string(attempt).expect("a WebhookAttempt always serialises");
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.rpush(&key, json).ignore().ltrim(&key, -ATTEMPTS_KEPT, -1).ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Job `job`'s delivery attempts, oldest first (the last [`ATTEMPTS_KEPT`]).
    pub async fn attempts(&self, job: &str) -> Result<Vec<WebhookAttempt>, StoreError> {
        let key = keys::webhook_attempts(job);
        let mut conn = self.conn.clone();
        let stored: Vec<String> = conn.lrange(&key, 0, -1).await?;
        stored
            .iter()
            .map(|json| {
                serde_json::from_str(json).map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })
            })
            .collect()
    }
}

/// The event an entry holds; `None` for one that does not decode (it is left pending, and seen
/// in the stream by an operator, rather than dropped silently).
fn decode(stream: &str, entry: &StreamId) -> Option<WebhookDelivery> {
    let job: String = entry.get("job")?;
    let event: String = entry.get("event")?;
    let event = event.parse().ok()?;
    Some(WebhookDelivery { stream: stream.to_string(), entry: entry.id.clone(), job, event })
}
