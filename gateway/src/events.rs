//! Results without polling: long-polls (`?wait=` on a job's status and result) and
//! Server-Sent Events of one job's changes (`/v1/jobs/{id}/events`) or of every job the caller
//! may see (`/v1/events`).
//!
//! Each gateway holds one subscription to the job changes the state scripts publish
//! ([`shoal_jobs::follow_changes`]) and hands each change to whoever waits for its job, in
//! memory: nothing here polls Redis. What pub/sub does not keep, the job does: its latest
//! changes, numbered, which a stream resuming after `Last-Event-ID` reads, and which every
//! waiter reads again whenever the subscription was made afresh (it may have missed some).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use shoal_jobs::{follow_changes, redis_urls, Change, Heard, Job, JobStore, Principal, Role};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::api_error::{ApiError, Envelope};
use crate::connections::Draining;
use crate::jobs::{self, JobId, JobNotFound};
use crate::AppState;

/// The longest a long-poll waits, whatever `wait` asks.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// Changes a `/v1/events` stream may fall behind by before it is told to read afresh.
const ALL_CHANGES_BACKLOG: usize = 4096;

/// Events an SSE stream may have written ahead of its client.
const STREAM_BUFFER: usize = 64;

/// Parses a `wait` parameter: whole seconds (`30s`, or `30`) or milliseconds (`500ms`), at most
/// [`MAX_WAIT`] (a longer wait is cut to it).
pub(crate) fn parse_wait(raw: &str) -> Result<Duration, String> {
    let (number, millis_per_unit) = match raw.strip_suffix("ms") {
        Some(number) => (number, 1),
        None => (raw.strip_suffix('s').unwrap_or(raw), 1000),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("wait must be a whole number of seconds (`30s`) or milliseconds (`500ms`), not {raw:?}"));
    }
    let amount: u64 = number.parse().unwrap_or(u64::MAX);
    Ok(Duration::from_millis(amount.saturating_mul(millis_per_unit)).min(MAX_WAIT))
}

/// The `wait` a request's query asks for, zero without a valid one: how much longer than the
/// request timeout its answer may take.
pub(crate) fn requested_wait(query: Option<&str>) -> Duration {
    let Some(query) = query else { return Duration::ZERO };
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "wait")
        .and_then(|(_, value)| parse_wait(&value).ok())
        .unwrap_or_default()
}

/// The `wait` parameter of a route, as a 400 naming it if it does not parse.
pub(crate) fn wait_parameter(raw: Option<&str>) -> Result<Option<Duration>, ApiError> {
    raw.map(|raw| parse_wait(raw).map_err(|reason| ApiError::invalid_parameter("wait", reason))).transpose()
}

/// The gateway's subscription to job changes and who waits for them. Dropping it ends the
/// subscription.
pub(crate) struct Changes {
    hub: Arc<Hub>,
    subscription: tokio::task::JoinHandle<()>,
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.subscription.abort();
    }
}

/// Whoever waits, by what they wait for.
struct Hub {
    /// The latest change of each job somebody waits for.
    jobs: Mutex<HashMap<String, watch::Sender<Option<Change>>>>,
    /// Every change, for `/v1/events` streams.
    all: broadcast::Sender<Heard>,
    /// Counts subscriptions: a new one may have missed changes.
    subscriptions: watch::Sender<u64>,
}

impl Hub {
    fn heard(&self, heard: Heard) {
        if let Heard::Changed { change, .. } = &heard {
            let jobs = self.jobs.lock().expect("no waiter panics holding the lock");
            if let Some(waiters) = jobs.get(&change.job) {
                waiters.send_replace(Some(change.clone()));
            }
        } else {
            self.subscriptions.send_modify(|count| *count += 1);
        }
        if self.all.receiver_count() > 0 {
            // Fails only when every stream has gone meanwhile.
            let _ = self.all.send(heard);
        }
    }
}

impl Changes {
    /// Subscribes to the job changes on the Redis of `redis_url` (as the gateway's user).
    pub(crate) fn follow(redis_url: &str) -> Changes {
        let hub = Arc::new(Hub {
            jobs: Mutex::new(HashMap::new()),
            all: broadcast::channel(ALL_CHANGES_BACKLOG).0,
            subscriptions: watch::channel(0).0,
        });
        let heard = hub.clone();
        let subscription = tokio::spawn(follow_changes(redis_urls(redis_url), move |change| heard.heard(change)));
        Changes { hub, subscription }
    }

    /// Starts waiting for changes of job `id` (before reading its state, so nothing is missed).
    fn watch(&self, id: &str) -> JobWatch {
        let mut jobs = self.hub.jobs.lock().expect("no waiter panics holding the lock");
        let changes = jobs.entry(id.to_string()).or_insert_with(|| watch::channel(None).0).subscribe();
        JobWatch {
            hub: self.hub.clone(),
            job: id.to_string(),
            changes,
            subscriptions: self.hub.subscriptions.subscribe(),
        }
    }
}

/// One waiter for one job's changes; stops waiting when dropped.
struct JobWatch {
    hub: Arc<Hub>,
    job: String,
    changes: watch::Receiver<Option<Change>>,
    subscriptions: watch::Receiver<u64>,
}

/// What woke a [`JobWatch`].
enum Woken {
    /// The job's latest change (changes in between may have been skipped).
    Changed(Change),
    /// The subscription was made again: changes may have been missed, read the job again.
    Resubscribed,
}

impl JobWatch {
    async fn next(&mut self) -> Woken {
        tokio::select! {
            changed = self.changes.changed() => match (changed, self.changes.borrow_and_update().clone()) {
                (Ok(()), Some(change)) => Woken::Changed(change),
                // The hub keeps the sender while a receiver lives, and only sends changes.
                _ => Woken::Resubscribed,
            },
            _ = self.subscriptions.changed() => Woken::Resubscribed,
        }
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        let mut jobs = self.hub.jobs.lock().expect("no waiter panics holding the lock");
        // This waiter's receiver is still alive here: it was the last one if it is the only one.
        if jobs.get(&self.job).is_some_and(|waiters| waiters.receiver_count() <= 1) {
            jobs.remove(&self.job);
        }
    }
}

/// Until the gateway drains (never without a [`Draining`], as for a router not served by
/// [`crate::serve`]).
async fn drained(draining: &mut Option<Draining>) {
    match draining {
        Some(draining) => draining.started().await,
        None => std::future::pending().await,
    }
}

/// The job `raw_id` names (as [`jobs::load_job`] finds it) once `done` holds for it, or as it
/// is after `wait` (or when the gateway starts draining). Woken by the job's terminal changes,
/// and after a fresh subscription, which may have missed some; never by polling.
pub(crate) async fn job_when(
    app: &AppState,
    principal: &Principal,
    raw_id: &str,
    wait: Duration,
    mut draining: Option<Draining>,
    done: impl Fn(&Job) -> bool,
) -> Result<Job, ApiError> {
    let deadline = Instant::now() + wait;
    let mut watch = app.changes.watch(&jobs::job_id(raw_id)?);
    loop {
        let job = jobs::load_job(app, principal, raw_id).await?;
        if done(&job) || Instant::now() >= deadline {
            return Ok(job);
        }
        loop {
            tokio::select! {
                woken = watch.next() => match woken {
                    // Only an end or a verdict (itself a change to a terminal state) can make `done` hold.
                    Woken::Changed(change) if !change.is_terminal() => continue,
                    Woken::Changed(_) | Woken::Resubscribed => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = drained(&mut draining) => return jobs::load_job(app, principal, raw_id).await,
            }
        }
    }
}

/// The `Last-Event-ID` a reconnecting client sent: the last change it saw.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let value = value.to_str().unwrap_or_default().trim();
    value.parse().map(Some).map_err(|_| {
        let message =
            format!("Last-Event-ID must be the id of an event this stream sent (a change number), not {value:?}");
        ApiError::invalid_parameter("Last-Event-ID", message)
    })
}

/// A change as an SSE event: `state` for a move, `verdict` for the verifier's verdict.
fn event(change: &Change) -> Event {
    let name = if change.verdict.is_some() { "verdict" } else { "state" };
    Event::default().event(name).json_data(change).expect("a Change always serialises")
}

/// An SSE response over what `events` receives, with keep-alive comments.
fn stream(events: mpsc::Receiver<Event>) -> Response {
    let events = futures::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|event| (Ok::<_, Infallible>(event), events))
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /v1/jobs/{id}/events`: the job's changes as Server-Sent Events — each once, in order,
/// with its number as the event id — from the first (or after `Last-Event-ID`) until the job is
/// final (terminal, and decided on by the verifier when it is due); 204 for a job already final
/// with nothing after `Last-Event-ID`, which tells an `EventSource` to stop reconnecting.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    operation_id = "streamJobEvents",
    tag = "jobs",
    security(("api_key" = [])),
    params(
        JobId,
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event seen: the stream resumes \
                                                                after it (an `EventSource` sends it when it \
                                                                reconnects).")
    ),
    responses(
        (status = 200, description = "`text/event-stream`: an event per change — `state` for a move, `verdict` for \
                                      the verifier's verdict — with `id` its number and `data` the change as JSON; \
                                      the stream ends once the job is final (a job the verifier reopens goes on: \
                                      follow it again with `Last-Event-ID`). A job keeps its latest 64 changes; \
                                      one that kept none (answered from a memo) has its state as event 0. Each \
                                      `data` is a `JobChange`.",
            body = String, content_type = "text/event-stream"),
        (status = 204, description = "The job is final and nothing happened after `Last-Event-ID`."),
        (status = 400, description = "`invalid_job_id` (field `id`) or `invalid_parameter` (field \
                                      `Last-Event-ID`).", body = Envelope),
        JobNotFound,
    )
)]
pub(crate) async fn job_events(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    draining: Option<Extension<Draining>>,
) -> Result<Response, ApiError> {
    let seen = last_event_id(&headers)?;
    let job = jobs::load_job(&app, &principal, &id).await?;
    let watch = app.changes.watch(&job.id);
    let mut changes = app.store.changes(&job.id).await?;
    if changes.is_empty() {
        // A job that kept no changes (answered from a memo, or stored before jobs kept them):
        // its state as it is, numbered 0, before the changes it may still have from 1 on.
        changes.push(Change { job: job.id.clone(), seq: 0, state: job.state, verdict: None });
    }
    if job.is_final() && changes.last().is_some_and(|change| seen.is_some_and(|seen| change.seq <= seen)) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (events, received) = mpsc::channel(STREAM_BUFFER);
    let follower = JobFollower { store: app.store.clone(), job: job.id, seen, events, watch };
    tokio::spawn(follower.run(changes, draining.map(|Extension(draining)| draining)));
    Ok(stream(received))
}

/// Writes one job's changes to its SSE stream.
struct JobFollower {
    store: JobStore,
    job: String,
    /// The number of the last change written (or the client saw), if any.
    seen: Option<u64>,
    events: mpsc::Sender<Event>,
    watch: JobWatch,
}

impl JobFollower {
    /// Writes `changes` (what the job kept) and every change after, until the job is final,
    /// the client goes, the gateway drains or Redis fails (the client reconnects then).
    async fn run(mut self, mut changes: Vec<Change>, mut draining: Option<Draining>) {
        loop {
            let mut last = None;
            let seen = self.seen;
            for change in changes.into_iter().filter(|change| seen.is_none_or(|seen| change.seq > seen)) {
                if self.events.send(event(&change).id(change.seq.to_string())).await.is_err() {
                    return;
                }
                self.seen = Some(change.seq);
                last = Some(change);
            }
            if last.is_some_and(|change| change.is_terminal()) {
                match self.store.get(&self.job).await {
                    Ok(Some(job)) if !job.is_final() => {}
                    Ok(_) => return,
                    Err(error) => return tracing::warn!(job = %self.job, %error, "job events: cannot read the job"),
                }
            }
            changes = tokio::select! {
                woken = self.watch.next() => match woken {
                    Woken::Changed(change) if self.seen.is_some_and(|seen| change.seq == seen + 1) => vec![change],
                    Woken::Changed(change) if self.seen.is_some_and(|seen| change.seq <= seen) => Vec::new(),
                    Woken::Changed(_) | Woken::Resubscribed => match self.store.changes(&self.job).await {
                        Ok(changes) => changes,
                        Err(error) => return tracing::warn!(job = %self.job, %error, "job events: cannot read changes"),
                    },
                },
                () = self.events.closed() => return,
                () = drained(&mut draining) => return,
            };
        }
    }
}

/// `GET /v1/events`: changes of every job the caller may see — its tenant's, or an operator's
/// all — as Server-Sent Events, as they happen. Not resumable: events carry no id; a `resync`
/// event (first on connecting, and whenever changes may have been missed) tells the client to
/// read the jobs it shows afresh.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "streamEvents",
    tag = "jobs",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: `state` and `verdict` events as on a job's stream, for \
                                      every job of the caller's tenant (an operator's: every job), without ids; \
                                      `resync` first and whenever changes may have been missed (the gateway \
                                      subscribed again, or the client fell behind): read the listing again. Each \
                                      `data` but a `resync`'s is a `JobChange`.",
            body = String, content_type = "text/event-stream"),
    )
)]
pub(crate) async fn all_events(
    State(app): State<AppState>,
    Extension(principal): Extension<Principal>,
    draining: Option<Extension<Draining>>,
) -> Response {
    let mut heard = app.changes.hub.all.subscribe();
    let mut draining = draining.map(|Extension(draining)| draining);
    let (events, received) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let resync = || Event::default().event("resync").data("read the jobs afresh");
        if events.send(resync()).await.is_err() {
            return;
        }
        loop {
            let event = tokio::select! {
                heard = heard.recv() => match heard {
                    Ok(Heard::Changed { tenant, change }) if may_see(&principal, tenant.as_ref()) => event(&change),
                    Ok(Heard::Changed { .. }) => continue,
                    Ok(Heard::Subscribed) | Err(broadcast::error::RecvError::Lagged(_)) => resync(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = events.closed() => return,
                () = drained(&mut draining) => return,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    });
    stream(received)
}

/// Whether `principal` may see changes of a job of `tenant` (an operator's key: of any job).
fn may_see(principal: &Principal, tenant: Option<&shoal_jobs::Tenant>) -> bool {
    match tenant {
        Some(tenant) => principal.may_access(tenant),
        None => principal.role == Role::Operator,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_takes_seconds_or_milliseconds_up_to_a_minute() {
        assert_eq!(parse_wait("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_wait("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_wait("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_wait("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("3600s"), Ok(MAX_WAIT));
        assert_eq!(parse_wait("99999999999999999999999s"), Ok(MAX_WAIT));
        for bad in ["", "s", "ms", "-1s", "+5s", "1.5s", "5m", "30 s", "thirty"] {
            assert!(parse_wait(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_requested_wait_stretches_the_timeout_only_when_valid() {
        assert_eq!(requested_wait(None), Duration::ZERO);
        assert_eq!(requested_wait(Some("early=true&wait=2s")), Duration::from_secs(2));
        assert_eq!(requested_wait(Some("wait=soon")), Duration::ZERO);
        assert_eq!(requested_wait(Some("wait=120s")), MAX_WAIT);
    }

    #[test]
    fn a_bad_wait_is_a_400_naming_it() {
        let error = wait_parameter(Some("soon")).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.body.field.as_deref(), Some("wait"));
        assert_eq!(wait_parameter(None).unwrap(), None);
    }

    #[test]
    fn last_event_id_is_a_change_number() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).unwrap(), None);
        headers.insert("last-event-id", "7".parse().unwrap());
        assert_eq!(last_event_id(&headers).unwrap(), Some(7));
        headers.insert("last-event-id", "x".parse().unwrap());
        assert_eq!(last_event_id(&headers).unwrap_err().body.field.as_deref(), Some("Last-Event-ID"));
    }
}
