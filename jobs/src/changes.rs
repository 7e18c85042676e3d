//! Job changes as they happen, for clients that wait for results instead of polling.
//!
//! The script that changes a job (a move between states, or the verifier's verdict) counts the
//! change in the job's `seq`, keeps it in the job's changes list ([`keys::JobKeys::changes`],
//! the latest [`keys::CHANGES_KEPT`]) and publishes it on [`keys::CHANGES_CHANNEL`], all in the
//! one atomic step. [`follow_changes`] hears what is published, to wake waiters at once;
//! [`JobStore::changes`] reads what a job kept, for a client resuming after a change it saw and
//! for a waiter that may have missed messages (pub/sub keeps nothing for a subscriber that was
//! away: every (re)subscription is announced as [`Heard::Subscribed`] so waiters read again).

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::StoreError;
use crate::keys::{self, JobKeys};
use crate::model::JobState;
use crate::store::JobStore;
use crate::tenants::Tenant;

/// One change of a job: it moved to `state`, or (with `verdict`) the verifier decided on it,
/// leaving it in `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = JobChange)]
pub struct Change {
    /// The job's id.
    pub job: String,
    /// The change's number among the job's changes, from 1 (its creation, `queued`).
    pub seq: u64,
    /// The job's state after the change.
    pub state: JobState,
    /// The verifier's verdict (`agreed`, `vouched`, `disagreed`, …) when the change is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

impl Change {
    /// Parses a kept change of job `job`: `<seq> <state>[ <verdict>]`.
    pub fn parse_entry(job: &str, entry: &str) -> Result<Change, String> {
        let mut words = entry.split(' ');
        let seq = words.next().unwrap_or_default();
        let seq = seq.parse().map_err(|e| format!("change number {seq:?}: {e}"))?;
        let state = words.next().ok_or("no state")?.parse()?;
        let verdict = words.next().map(str::to_string);
        if words.next().is_some() {
            return Err(format!("more words than `<seq> <state>[ <verdict>]` in {entry:?}"));
        }
        Ok(Change { job: job.to_string(), seq, state, verdict })
    }

    /// Parses a published change: `<id> <tenant> <seq> <state>[ <verdict>]` (`-` for a job
    /// without a tenant).
    pub fn parse_published(message: &str) -> Result<(Option<Tenant>, Change), String> {
        let mut words = message.splitn(3, ' ');
        let (Some(job), Some(tenant), Some(entry)) = (words.next(), words.next(), words.next()) else {
            return Err(format!("{message:?} is not `<id> <tenant> <seq> <state>`"));
        };
        let tenant = if tenant == "-" { None } else { Some(tenant.parse()?) };
        Ok((tenant, Change::parse_entry(job, entry)?))
    }

    /// Whether the job has ended with this change (it may still get a verdict).
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }
}

impl JobStore {
    /// The changes job `id` kept (its latest [`keys::CHANGES_KEPT`]), oldest first; none for a
    /// job that does not exist.
    pub async fn changes(&self, id: &str) -> Result<Vec<Change>, StoreError> {
        let key = JobKeys::of(id).changes;
        let mut conn = self.connection();
        let entries: Vec<String> = redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await?;
        entries
            .iter()
            .map(|entry| {
                Change::parse_entry(id, entry).map_err(|reason| StoreError::Corrupt { key: key.clone(), reason })
            })
            .collect()
    }
}

/// What [`follow_changes`] hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Subscribed, the first time or again after the connection was lost: whatever was
    /// published in between was missed, so whoever waits should read the job again.
    Subscribed,
    /// A job of `tenant` changed.
    Changed {
        /// The job's tenant (`None` for a record without one).
        tenant: Option<Tenant>,
        /// The change.
        change: Change,
    },
}

/// How often the subscription is checked with a PING: a connection that died silently (its
/// host gone, no reset) is noticed within this and [`PING_TIMEOUT`].
const PING_EVERY: Duration = Duration::from_secs(10);
/// How long a PING or a (re)connection may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Subscribes to [`keys::CHANGES_CHANNEL`] on the Redis at `urls` and calls `on` with every
/// change published, until dropped; a lost connection is made again (to the next URL of a
/// cluster's seeds: a classic PUBLISH reaches every node), and each subscription is announced
/// with [`Heard::Subscribed`]. One connection of its own, since a subscribed connection can
/// send nothing else; it has no response timeout of redis-rs's (which would cut a quiet
/// subscription), so it is checked with a PING every [`PING_EVERY`].
pub async fn follow_changes(urls: Vec<String>, mut on: impl FnMut(Heard) + Send) {
    let mut backoff = Duration::from_millis(100);
    for url in urls.iter().cycle() {
        match subscribe(url).await {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                on(Heard::Subscribed);
                let error = listen(pubsub, &mut on).await;
                tracing::warn!(address = %keys_free_address(url), %error, "job changes: subscription lost; subscribing again");
            }
            Err(error) => {
                tracing::warn!(address = %keys_free_address(url), %error, "job changes: cannot subscribe; trying again");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The address of `url` for logs, never its password.
fn keys_free_address(url: &str) -> String {
    crate::redis_addresses(&[url.to_string()])
}

async fn subscribe(url: &str) -> Result<redis::aio::PubSub, StoreError> {
    let client = redis::Client::open(url)?;
    let subscribing = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(keys::CHANGES_CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "no subscription within 5 s");
    let subscribed =
        tokio::time::timeout(PING_TIMEOUT, subscribing).await.map_err(|_| redis::RedisError::from(timed_out()))?;
    Ok(subscribed?)
}

/// Passes on what `pubsub` hears until its connection fails; returns why.
async fn listen(pubsub: redis::aio::PubSub, on: &mut (impl FnMut(Heard) + Send)) -> String {
    let (mut sink, mut messages) = pubsub.split();
    let mut pings = tokio::time::interval(PING_EVERY);
    pings.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return "the connection closed".to_string() };
                let payload = String::from_utf8_lossy(message.get_payload_bytes());
                match Change::parse_published(&payload) {
                    Ok((tenant, change)) => on(Heard::Changed { tenant, change }),
                    Err(error) => tracing::warn!(%error, "job changes: ignored a malformed message"),
                }
            }
            _ = pings.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return error.to_string(),
                    Err(_) => return format!("no answer to a PING within {PING_TIMEOUT:?}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_changes_parse() {
        let change = Change::parse_entry("J", "3 succeeded").unwrap();
        assert_eq!(change, Change { job: "J".into(), seq: 3, state: JobState::Succeeded, verdict: None });
        let verdict = Change::parse_entry("J", "4 failed contradicted").unwrap();
        assert_eq!(verdict.verdict.as_deref(), Some("contradicted"));
        assert_eq!(verdict.state, JobState::Failed);
        for bad in ["", "x queued", "1", "1 sleeping", "1 failed contradicted extra"] {
            assert!(Change::parse_entry("J", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn published_changes_parse_with_their_tenant() {
        let (tenant, change) = Change::parse_published("01J acme 2 running").unwrap();
        assert_eq!(tenant, Some("acme".parse().unwrap()));
        assert_eq!((change.job.as_str(), change.seq, change.state), ("01J", 2, JobState::Running));
        let (tenant, _) = Change::parse_published("01J - 1 queued").unwrap();
        assert_eq!(tenant, None);
        assert!(Change::parse_published("01J acme").is_err());
        assert!(Change::parse_published("01J Not_A_Tenant! 1 queued").is_err());
    }

    #[test]
    fn the_scripts_spell_the_channel_and_the_kept_count_of_the_layout() {
        let states = crate::store::STATES;
        assert!(states.contains(&format!("'PUBLISH', '{}'", keys::CHANGES_CHANNEL)));
        assert!(states.contains(&format!("> {} then", keys::CHANGES_KEPT)));
    }
}
