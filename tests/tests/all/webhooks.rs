//! Webhooks on a whole stack: a job's end and its verdict reach a local receiver, signed so the
//! Standard Webhooks reference verifier (npm `standardwebhooks`, `npm ci --prefix
//! tests/js-webhooks`) accepts them with the tenant's secret; a failing receiver is tried again
//! under the same webhook id; private and metadata addresses are refused.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};
use shoal_jobs::{ApiKeys, JobState, JobStatus, RedisConnection, Tenant};
use shoal_testkit::{Stack, StackOptions, TEST_TENANT};

const WAIT: Duration = Duration::from_secs(120);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }
}

/// A webhook receiver on a loopback port that answers `fail_first` requests with 500, then 200.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let headers = headers
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
                    .collect();
                let mut seen = seen.lock().unwrap();
                seen.push(Received { headers, body });
                if seen.len() <= fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// What the Standard Webhooks reference library makes of `received` with `secret`.
fn reference_verify(secret: &str, received: &Received) -> Result<Value, String> {
    let script = shoal_testkit::repo_root().join("tests/js-webhooks/verify.mjs");
    let headers: serde_json::Map<String, Value> =
        received.headers.iter().map(|(name, value)| (name.clone(), json!(value))).collect();
    let input = json!({"secret": secret, "headers": headers, "body": received.body}).to_string();
    let mut node = Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed (scripts/install-deps.sh)");
    node.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = node.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(serde_json::from_str(&printed).unwrap())
    } else {
        Err(printed)
    }
}

async fn status(stack: &Stack, id: &str) -> JobStatus {
    stack.http.get(format!("{}/v1/jobs/{id}", stack.gateway)).send().await.unwrap().json().await.unwrap()
}

/// Waits until job `id` has `n` webhook attempts recorded; returns its status.
async fn attempts(stack: &Stack, id: &str, n: usize) -> JobStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = status(stack, id).await;
        if status.webhook_attempts.len() >= n {
            return status;
        }
        assert!(Instant::now() < deadline, "only {:?}", status.webhook_attempts);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn secret(stack: &Stack) -> String {
    let keys = ApiKeys::new(RedisConnection::open(&[stack.redis.url()]).await.unwrap());
    keys.new_webhook_secret(&TEST_TENANT.parse::<Tenant>().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jobs_end_and_verdict_arrive_signed_and_a_failing_receiver_is_tried_again() {
    let options = StackOptions {
        workers: 1,
        verifier: Some(1.0),
        webhook_allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.unwrap();
    let secret = secret(&stack).await;
    // The first answer is a 500: the event comes again, with the same id.
    let (url, got) = receiver(1).await;
    let echo = stack.add_program("echo-hash").await.unwrap();
    let spec = json!({
        "program": echo.to_string(),
        "args": ["webhook"],
        "verification": {"mode": "always"},
        "notify": {"url": url},
    });
    let id = stack.submit_ok(&spec).await.unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);

    // job.succeeded (failed once, then delivered) and job.verified.
    let status = attempts(&stack, &id, 3).await;
    let outcomes: Vec<(String, u32, String)> = status
        .webhook_attempts
        .iter()
        .map(|a| (a.event.as_str().to_string(), a.attempt, format!("{:?}", a.outcome)))
        .collect();
    assert!(outcomes.contains(&("job.succeeded".into(), 1, "Retrying".into())), "{outcomes:?}");
    assert!(outcomes.contains(&("job.succeeded".into(), 2, "Delivered".into())), "{outcomes:?}");
    assert!(outcomes.contains(&("job.verified".into(), 1, "Delivered".into())), "{outcomes:?}");
    assert_eq!(
        status.webhook_attempts.iter().find(|a| a.attempt == 1 && a.status.is_some()).unwrap().status,
        Some(500)
    );

    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    let succeeded: Vec<&Received> = received.iter().filter(|r| r.body.contains("job.succeeded")).collect();
    assert_eq!(succeeded.len(), 2);
    assert_eq!(succeeded[0].header("webhook-id"), succeeded[1].header("webhook-id"), "a retry keeps its id");
    for one in &received {
        let payload = reference_verify(&secret, one).unwrap_or_else(|e| panic!("{e}: {one:?}"));
        assert_eq!(payload["data"]["job"], id.as_str());
        assert_eq!(payload["data"]["tenant"], TEST_TENANT);
    }
    let verified = received.iter().find(|r| r.body.contains("job.verified")).unwrap();
    let payload = reference_verify(&secret, verified).unwrap();
    assert_eq!(payload["data"]["acceptance"], "verified");
    assert_eq!(payload["data"]["result"]["output"], json!(job.result.unwrap().output.to_string()));

    // Tampered with, or checked with another secret, it does not verify.
    let mut tampered = verified.clone();
    tampered.body = tampered.body.replace("verified", "corrected");
    assert!(reference_verify(&secret, &tampered).is_err());
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(reference_verify(other, verified).is_err());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_loopback_and_metadata_targets_are_refused() {
    // Nothing allowed besides public addresses: loopback is refused too.
    let stack = Stack::start(StackOptions { workers: 1, ..StackOptions::default() }).await.unwrap();
    secret(&stack).await;
    let (loopback, got) = receiver(0).await;
    let echo = stack.add_program("echo-hash").await.unwrap();
    for (n, url) in
        [loopback.as_str(), "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/hook", "http://[::1]:9/hook"]
            .into_iter()
            .enumerate()
    {
        let spec = json!({
            "program": echo.to_string(),
            "args": [n.to_string()],
            "verification": {"mode": "none"},
            "notify": {"url": url, "events": ["job.succeeded"]},
        });
        let id = stack.submit_ok(&spec).await.unwrap();
        let status = attempts(&stack, &id, 1).await;
        let attempt = &status.webhook_attempts[0];
        assert_eq!(format!("{:?}", attempt.outcome), "GaveUp", "{url}: {attempt:?}");
        assert!(attempt.error.as_deref().unwrap().contains("not a public address"), "{url}: {attempt:?}");
    }
    assert!(got.lock().unwrap().is_empty(), "the loopback receiver was called");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memoised_answer_is_announced_like_a_run() {
    let options = StackOptions {
        workers: 1,
        verifier: Some(1.0),
        webhook_allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.unwrap();
    let secret = secret(&stack).await;
    let (url, got) = receiver(0).await;
    let echo = stack.add_program("echo-hash").await.unwrap();
    let spec = json!({
        "program": echo.to_string(),
        "args": ["memoised"],
        "verification": {"mode": "always"},
        "notify": {"url": url},
    });
    let first = stack.submit_ok(&spec).await.unwrap();
    attempts(&stack, &first, 2).await;

    let (answered, body) = stack.submit(&spec).await.unwrap();
    assert_eq!(answered, reqwest::StatusCode::CREATED, "{body}");
    assert_eq!(body["memoised_from"], first.as_str());
    let id = body["id"].as_str().unwrap();
    let status = attempts(&stack, id, 2).await;
    let mut events: Vec<&str> = status.webhook_attempts.iter().map(|a| a.event.as_str()).collect();
    events.sort();
    assert_eq!(events, ["job.succeeded", "job.verified"]);
    let received = got.lock().unwrap().clone();
    let theirs: Vec<Value> = received
        .iter()
        .map(|one| reference_verify(&secret, one).unwrap())
        .filter(|payload| payload["data"]["job"] == id)
        .collect();
    assert_eq!(theirs.len(), 2);
    assert!(theirs.iter().all(|payload| payload["data"]["acceptance"] == "verified"), "{theirs:?}");
    stack.shutdown().await;
}
