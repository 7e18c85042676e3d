//! Webhook delivery: every gateway reads the job events streams through one consumer group and
//! POSTs each event to its job's `notify.url`, signed the Standard Webhooks way with the
//! tenant's secret, retried with exponential backoff for a bounded time. Every attempt is
//! recorded on the job (`GET /v1/jobs/{id}` shows them as `webhook_attempts`).
//!
//! Targets are checked after DNS resolution, and the connection goes to the very address that
//! was checked (no second lookup a DNS server could answer differently), with redirects not
//! followed: loopback, private, link-local (cloud metadata), shared, multicast and unspecified
//! addresses are refused unless [`GatewayConfig::webhook_allowed_networks`] lets them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use serde_json::json;
use sha2::Sha256;
use shoal_jobs::{
    now_ms, ApiKeys, AttemptOutcome, Job, JobStore, StoreError, WebhookAttempt, WebhookDelivery, WebhookStore,
};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::GatewayConfig;

/// Attempts per event: the first and then retries after 1, 2, 4 … 128 s (about 4 minutes).
const MAX_ATTEMPTS: u32 = 9;
/// The first retry's wait; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long a receiver has to answer one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// An event left unacknowledged this long by its gateway (one that died) is taken over; longer
/// than the retries of a live gateway take.
const TAKE_OVER_AFTER: Duration = Duration::from_secs(600);
/// How often the streams are read for new events when the last read found none.
const POLL: Duration = Duration::from_millis(500);
/// Attempts (HTTP requests) in flight at once per gateway; a delivery waiting to retry holds none.
const IN_FLIGHT: usize = 64;
/// Deliveries a gateway holds at once, retries waiting included; it reads no more events until
/// some are done.
const HELD: usize = 4096;

/// Why an attempt failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    /// The URL names a host that must not be called (loopback, private, metadata, …).
    #[error("refused: {0}")]
    Refused(String),
    /// The tenant has no webhook secret to sign with.
    #[error("tenant {0} has no webhook secret (an operator makes one with `shoal tenants webhook-secret {0}`)")]
    NoSecret(String),
    /// Looking the host up, connecting or sending failed.
    #[error("{0}")]
    Failed(String),
    /// The receiver answered, but not 2xx.
    #[error("the receiver answered {0}")]
    Status(u16),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which addresses webhooks may be sent to.
#[derive(Debug, Clone)]
pub(crate) struct TargetPolicy {
    allowed: Vec<IpNet>,
}

impl TargetPolicy {
    pub(crate) fn new(allowed: &[IpNet]) -> TargetPolicy {
        TargetPolicy { allowed: allowed.to_vec() }
    }

    /// Whether `ip` may be called: a public address, or one the operator allowed.
    pub(crate) fn permits(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip)) || is_public(ip)
    }
}

/// Whether `ip` is a global unicast address: not loopback, private, link-local (which holds
/// cloud metadata services), shared (CGNAT), documentation, benchmarking, multicast, broadcast
/// or unspecified. IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
// Hand-written: `IpAddr::is_global` is still unstable, and these few ranges are all it takes.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || a == 0
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let embedded = |high: u16, low: u16| {
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
            };
            match segments {
                // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they carry.
                [0x64, 0xff9b, 0, 0, 0, 0, high, low] => embedded(high, low),
                [0x2002, high, low, ..] => embedded(high, low),
                // IPv4-compatible (::/96), local NAT64 (64:ff9b:1::/48), Teredo (2001::/32).
                [0, 0, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 1, ..] | [0x2001, 0, ..] => false,
                [first, second, ..] => {
                    !(v6.is_loopback()
                        || v6.is_multicast()
                        || (first & 0xfe00) == 0xfc00
                        || (first & 0xffc0) == 0xfe80
                        || (first & 0xffc0) == 0xfec0
                        || (first == 0x2001 && second == 0x0db8))
                }
            }
        }
    }
}

/// The Standard Webhooks signature of `body` sent as `id` at `timestamp` with `secret`
/// (`whsec_<base64 key>`): `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub(crate) fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> Option<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", engine.encode(mac.finalize().into_bytes())))
}

/// What a gateway needs to deliver webhooks.
#[derive(Clone)]
pub(crate) struct Deliverer {
    events: WebhookStore,
    jobs: JobStore,
    keys: ApiKeys,
    policy: TargetPolicy,
    consumer: String,
    slots: Arc<Semaphore>,
    held: Arc<Semaphore>,
}

impl Deliverer {
    pub(crate) fn new(events: WebhookStore, jobs: JobStore, keys: ApiKeys, config: &GatewayConfig) -> Deliverer {
        Deliverer {
            events,
            jobs,
            keys,
            policy: TargetPolicy::new(&config.webhook_allowed_networks),
            consumer: format!("gateway-{}", ulid::Ulid::new()),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            held: Arc::new(Semaphore::new(HELD)),
        }
    }

    /// Reads and delivers events until the task is dropped.
    pub(crate) async fn run(self) {
        if let Err(e) = shoal_jobs::with_retries("webhook groups", || self.events.ensure_groups()).await {
            warn!(error = %e, "cannot create the webhook consumer groups; webhooks are not delivered");
            return;
        }
        let mut next_take_over = tokio::time::Instant::now();
        loop {
            // Room for more deliveries, or wait for some to end before reading more.
            let room = self.held.available_permits().min(IN_FLIGHT);
            if room == 0 {
                tokio::time::sleep(POLL).await;
                continue;
            }
            let mut found = match self.events.read(&self.consumer, room).await {
                Ok(found) => found,
                Err(e) => {
                    warn!(error = %e, "reading webhook events failed; trying again");
                    Vec::new()
                }
            };
            if tokio::time::Instant::now() >= next_take_over {
                next_take_over += TAKE_OVER_AFTER / 10;
                match self.events.take_over(&self.consumer, TAKE_OVER_AFTER, IN_FLIGHT).await {
                    Ok(taken) => found.extend(taken),
                    Err(e) => warn!(error = %e, "taking over webhook events failed; trying again"),
                }
            }
            if found.is_empty() {
                tokio::time::sleep(POLL).await;
            }
            for delivery in found {
                let permit = self.held.clone().acquire_owned().await.expect("the semaphore is never closed");
                let deliverer = self.clone();
                tokio::spawn(async move {
                    deliverer.deliver(&delivery).await;
                    drop(permit);
                });
            }
        }
    }

    /// Delivers one event, retrying, and records every attempt; acknowledges it at the end.
    async fn deliver(&self, delivery: &WebhookDelivery) {
        let job = match self.jobs.get(&delivery.job).await {
            Ok(job) => job,
            Err(e) => {
                // Left pending: taken over and tried again later.
                warn!(job = %delivery.job, error = %e, "cannot read a webhook's job");
                return;
            }
        };
        let wanted =
            job.as_ref().and_then(|job| job.spec.notify.as_ref()).filter(|n| n.events.contains(&delivery.event));
        if let (Some(job), Some(notify)) = (&job, wanted) {
            let mut backoff = FIRST_BACKOFF;
            for attempt in 1..=MAX_ATTEMPTS {
                let result = {
                    let _slot = self.slots.acquire().await.expect("the semaphore is never closed");
                    self.attempt(job, &notify.url, delivery).await
                };
                // A refused target or a tenant without a secret will not change by waiting.
                let last = attempt == MAX_ATTEMPTS
                    || matches!(result, Err(DeliveryError::Refused(_) | DeliveryError::NoSecret(_)));
                let (status, error, outcome) = match &result {
                    Ok(status) => (Some(*status), None, AttemptOutcome::Delivered),
                    Err(e) => {
                        let status = match e {
                            DeliveryError::Status(status) => Some(*status),
                            _ => None,
                        };
                        (
                            status,
                            Some(e.to_string()),
                            if last { AttemptOutcome::GaveUp } else { AttemptOutcome::Retrying },
                        )
                    }
                };
                let record = WebhookAttempt {
                    webhook_id: delivery.webhook_id(),
                    event: delivery.event,
                    attempt,
                    at_ms: now_ms(),
                    status,
                    error,
                    outcome,
                };
                if let Err(e) = self.events.record_attempt(&job.id, &record).await {
                    warn!(job = %job.id, error = %e, "cannot record a webhook attempt");
                }
                match outcome {
                    AttemptOutcome::Delivered => {
                        info!(job = %job.id, event = delivery.event.as_str(), attempt, "webhook delivered");
                        break;
                    }
                    AttemptOutcome::GaveUp => {
                        warn!(job = %job.id, event = delivery.event.as_str(), attempt, "webhook given up");
                        break;
                    }
                    AttemptOutcome::Retrying => {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
        }
        if let Err(e) = self.events.done(delivery).await {
            warn!(job = %delivery.job, error = %e, "cannot acknowledge a webhook event; it may be sent again");
        }
    }

    /// One attempt: the receiver's 2xx status, or why not.
    async fn attempt(&self, job: &Job, url: &str, delivery: &WebhookDelivery) -> Result<u16, DeliveryError> {
        let secret = self
            .keys
            .webhook_secret(&job.tenant)
            .await?
            .ok_or_else(|| DeliveryError::NoSecret(job.tenant.to_string()))?;
        let target = url::Url::parse(url).map_err(|e| DeliveryError::Refused(format!("{url} is not a URL: {e}")))?;
        let host = target.host_str().ok_or_else(|| DeliveryError::Refused(format!("{url} has no host")))?.to_string();
        let port =
            target.port_or_known_default().ok_or_else(|| DeliveryError::Refused(format!("{url} has no port")))?;
        let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let addresses: Vec<SocketAddr> =
            tokio::time::timeout(ATTEMPT_TIMEOUT, tokio::net::lookup_host((bare_host.as_str(), port)))
                .await
                .map_err(|_| DeliveryError::Failed(format!("looking up {host} took over {ATTEMPT_TIMEOUT:?}")))?
                .map_err(|e| DeliveryError::Failed(format!("looking up {host}: {e}")))?
                .collect();
        let Some(&address) = addresses.first() else {
            return Err(DeliveryError::Failed(format!("{host} has no address")));
        };
        // Every address the name has must be allowed: a name can hold a public and a private one.
        if let Some(refused) = addresses.iter().find(|a| !self.policy.permits(a.ip())) {
            return Err(DeliveryError::Refused(format!(
                "{host} resolves to {}, which is not a public address",
                refused.ip()
            )));
        }
        // No proxy: a proxy would resolve the name itself, past the check.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .resolve(&bare_host, address)
            .build()
            .map_err(|e| DeliveryError::Failed(format!("building the HTTP client: {e}")))?;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let body = serde_json::to_vec(&payload(job, delivery, timestamp)).expect("a payload always serialises");
        let id = delivery.webhook_id();
        let signature = sign(&secret, &id, timestamp, &body)
            .ok_or_else(|| DeliveryError::Failed(format!("the secret of tenant {} is malformed", job.tenant)))?;
        let response = client
            .post(target)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Failed(format!("sending: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}

/// The body of a webhook: the event, when, and the job as it is now (its outputs, failure and
/// verdict, not its spec).
fn payload(job: &Job, delivery: &WebhookDelivery, timestamp: u64) -> serde_json::Value {
    json!({
        "type": delivery.event.as_str(),
        "timestamp": timestamp,
        "data": {
            "job": job.id,
            "tenant": job.tenant,
            "state": job.state,
            "acceptance": job.acceptance(),
            "result": job.result,
            "failure": job.failure,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_unless_allowed() {
        let policy = TargetPolicy::new(&[]);
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "192.0.0.8",
        ] {
            assert!(!policy.permits(refused.parse().unwrap()), "{refused} passed");
        }
        for allowed in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::101:101", "2002:101:101::1"] {
            assert!(policy.permits(allowed.parse().unwrap()), "{allowed} refused");
        }
        let loopback = TargetPolicy::new(&["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        assert!(loopback.permits("127.0.0.1".parse().unwrap()));
        assert!(loopback.permits("::1".parse().unwrap()));
        assert!(!loopback.permits("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn signatures_match_the_standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
