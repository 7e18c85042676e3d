//! Tenants on a whole stack: cancelling running work frees the worker at once, a fan-out's
//! tasks are cancelled with it, a fan-out over nothing settles at once without stopping anyone
//! else's, and a tenant's fan-out width quota holds.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_jobs::{ApiKeys, FanOutStore, JobState, Quotas, RedisConnection, Role, Tenant};
use shoal_testkit::{api_key, keyed_client, Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(120);

async fn cancel(stack: &Stack, id: &str) -> Value {
    let response = stack.http.delete(format!("{}/v1/jobs/{id}", stack.gateway)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A job that would spin for hours: the most fuel a spec may ask and five minutes of wall clock.
fn spinning(program: &cid::Cid, tag: &str) -> Value {
    json!({
        "program": program.to_string(),
        "args": [tag],
        "limits": {"fuel": 10_000_000_000_000u64, "wall_time_ms": 300_000},
        "verification": {"mode": "none"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_running_job_stops_it_and_frees_its_slot() {
    let stack = Stack::start(StackOptions { workers: 1, concurrency: 1, ..StackOptions::default() }).await.unwrap();
    let spin = stack.add_program("infinite-loop").await.unwrap();
    let echo = stack.add_program("echo-hash").await.unwrap();
    let id = stack.submit_ok(&spinning(&spin, "cancel me")).await.unwrap();
    stack.wait_until(&id, WAIT, |job| job.state == JobState::Running).await.unwrap();
    // The one slot is taken: this job waits behind the spinning one.
    let input = stack.add_bytes(b"after the cancel").await.unwrap();
    let after = json!({
        "program": echo.to_string(),
        "env": {"ECHO_HASH_INPUT": "/in"},
        "inputs": [{"cid": input.to_string(), "path": "/in"}],
        "verification": {"mode": "none"},
    });
    let waiting = stack.submit_ok(&after).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.job(&waiting).await.unwrap().state, JobState::Queued);

    let cancelled_at = Instant::now();
    let answer = cancel(&stack, &id).await;
    assert_eq!(answer["state"], "cancelled");
    assert_eq!(answer["failure"]["reason"], "cancelled");
    let done = stack.wait_terminal(&waiting, WAIT).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    eprintln!("the queued job finished {:?} after the cancel", cancelled_at.elapsed());
    assert_eq!(stack.job(&id).await.unwrap().state, JobState::Cancelled, "a cancelled job stays cancelled");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_fan_out_cancels_its_tasks() {
    let stack = Stack::start(StackOptions { workers: 1, concurrency: 1, ..StackOptions::default() }).await.unwrap();
    let spin = stack.add_program("infinite-loop").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for n in 0..6 {
        std::fs::write(dir.path().join(format!("part-{n}")), format!("part {n}")).unwrap();
    }
    let parts = stack.add_path(dir.path()).await.unwrap();
    let mut spec = spinning(&spin, "fan");
    spec["inputs"] = json!([{"cid": parts.to_string(), "path": "/parts"}]);
    spec["fan_out"] = json!({});
    let id = stack.submit_ok(&spec).await.unwrap();
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let fanouts = FanOutStore::new(client.get_connection_manager().await.unwrap());
    let deadline = Instant::now() + WAIT;
    while fanouts.tasks(&id).await.unwrap().len() < 6 {
        assert!(Instant::now() < deadline, "the job never fanned out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cancel(&stack, &id).await["state"], "cancelled");
    for task in fanouts.tasks(&id).await.unwrap() {
        let task = stack.wait_terminal(&task.job, WAIT).await.unwrap();
        assert_eq!(task.state, JobState::Cancelled, "{task:?}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_over_nothing_settles_at_once_and_others_still_gather() {
    let stack = Stack::start(StackOptions { workers: 2, ..StackOptions::default() }).await.unwrap();
    let echo = stack.add_program("echo-hash").await.unwrap();
    let empty = tempfile::tempdir().unwrap();
    let empty = stack.add_path(empty.path()).await.unwrap();
    let full = tempfile::tempdir().unwrap();
    for n in 0..3 {
        std::fs::write(full.path().join(format!("scene-{n}.tif")), format!("scene {n}")).unwrap();
    }
    let full = stack.add_path(full.path()).await.unwrap();
    let spec = |dir: &cid::Cid, glob: &str| {
        json!({
            "program": echo.to_string(),
            "env": {"ECHO_HASH_INPUT": "/in"},
            "inputs": [{"cid": dir.to_string(), "path": "/in"}],
            "fan_out": {"glob": glob},
            "verification": {"mode": "none"},
        })
    };
    // Over an empty directory, and over a glob matching nothing: each settles with an empty
    // directory and no tasks.
    let mut nothing = Vec::new();
    for spec in [spec(&empty, "*"), spec(&full, "*.jp2")] {
        nothing.push(stack.submit_ok(&spec).await.unwrap());
    }
    for id in &nothing {
        let job = stack.wait_terminal(id, WAIT).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let output = job.result.unwrap().output;
        assert!(shoal_content::unixfs::list(stack.store.as_ref(), output.cid()).await.unwrap().is_empty());
        let status: Value =
            stack.http.get(format!("{}/v1/jobs/{id}", stack.gateway)).send().await.unwrap().json().await.unwrap();
        assert_eq!((status["tasks"]["total"].as_u64(), status["tasks"]["tasks"].as_u64()), (Some(0), Some(0)));
    }
    // A fan-out submitted afterwards gathers as ever.
    let id = stack.submit_ok(&spec(&full, "*.tif")).await.unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let listing = shoal_content::unixfs::list(stack.store.as_ref(), job.result.unwrap().output.cid()).await.unwrap();
    assert_eq!(listing.len(), 3);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_wider_than_its_tenants_quota_fails_clearly() {
    let stack = Stack::start(StackOptions { workers: 1, ..StackOptions::default() }).await.unwrap();
    let narrow: Tenant = "narrow".parse().unwrap();
    let keys = ApiKeys::new(RedisConnection::open(&[stack.redis.url()]).await.unwrap());
    keys.set_quotas(&narrow, &Quotas { max_fan_out: Some(2), ..Quotas::default() }).await.unwrap();
    let key = api_key(&stack.redis.url(), "narrow", Role::Tenant).await.unwrap();
    let client = keyed_client(reqwest::Client::builder(), &key).unwrap();
    let echo = stack.add_program("echo-hash").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for n in 0..3 {
        std::fs::write(dir.path().join(format!("f{n}")), format!("{n}")).unwrap();
    }
    let files = stack.add_path(dir.path()).await.unwrap();
    let spec = json!({
        "program": echo.to_string(),
        "inputs": [{"cid": files.to_string(), "path": "/in"}],
        "fan_out": {},
    });
    let job: Value =
        client.post(format!("{}/v1/jobs", stack.gateway)).json(&spec).send().await.unwrap().json().await.unwrap();
    let job = stack.wait_terminal(job["id"].as_str().unwrap(), WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, shoal_jobs::FailureReason::QuotaExceeded, "{}", failure.message);
    assert!(failure.message.contains("3 files") && failure.message.contains("narrow"), "{}", failure.message);

    // Its tasks count towards the tenant's outstanding jobs, as submissions do: the fan-out (1)
    // and its 3 tasks pass a limit of 3.
    let crowded: Tenant = "crowded".parse().unwrap();
    keys.set_quotas(&crowded, &Quotas { max_outstanding: Some(3), ..Quotas::default() }).await.unwrap();
    let key = api_key(&stack.redis.url(), "crowded", Role::Tenant).await.unwrap();
    let client = keyed_client(reqwest::Client::builder(), &key).unwrap();
    let job: Value =
        client.post(format!("{}/v1/jobs", stack.gateway)).json(&spec).send().await.unwrap().json().await.unwrap();
    let job = stack.wait_terminal(job["id"].as_str().unwrap(), WAIT).await.unwrap();
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, shoal_jobs::FailureReason::QuotaExceeded, "{}", failure.message);
    assert!(failure.message.contains("limit of 3"), "{}", failure.message);
    stack.shutdown().await;
}
