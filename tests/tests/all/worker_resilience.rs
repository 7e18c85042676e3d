//! A worker under trouble that is not the job's: its host failing (out of file descriptors,
//! disk space) retries the job as another attempt instead of failing it for good.

use std::time::Duration;

use serde_json::json;
use shoal_jobs::{ExecutionOutcome, FailureReason, JobState};
use shoal_testkit::{Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_failure_is_retried_as_another_attempt_not_a_final_failure() {
    let options = StackOptions { workers: 0, visibility_timeout: Duration::from_secs(2), ..StackOptions::default() };
    let mut stack = Stack::start(options).await.unwrap();
    // The worker's scratch directory for runs is a file: every run fails to create its
    // outputs with an I/O error, as it would out of file descriptors or disk space.
    let work = tempfile::tempdir().unwrap();
    let mut config = stack.worker_config("w");
    config.work_dir = work.path().join("work");
    std::fs::create_dir_all(&config.work_dir).unwrap();
    let blocker = config.work_dir.join("runs");
    std::fs::write(&blocker, b"not a directory").unwrap();
    stack.start_worker_with(config);

    let program = stack.add_program("echo-hash").await.unwrap();
    let id = stack
        .submit_ok(&json!({"program": program.to_string(), "retry": {"max_attempts": 5, "backoff_ms": 100}}))
        .await
        .unwrap();
    let failed_attempt = |job: &shoal_jobs::Job| {
        job.executions
            .iter()
            .any(|e| matches!(&e.outcome, Some(ExecutionOutcome::Failed(f)) if f.reason == FailureReason::Internal))
    };
    let job = stack.wait_until(&id, WAIT, |job| failed_attempt(job) || job.state.is_terminal()).await.unwrap();
    assert_eq!(job.state, JobState::Running, "a host failure does not end the job: {job:?}");
    let Some(ExecutionOutcome::Failed(failure)) = &job.executions[0].outcome else { panic!("{job:?}") };
    assert!(failure.message.contains("Not a directory"), "{}", failure.message);

    // The host recovers; the next attempt succeeds.
    std::fs::remove_file(&blocker).unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert!(job.executions.len() >= 2, "{job:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_failing_every_attempt_fails_the_job_as_internal_after_max_attempts() {
    let options = StackOptions { workers: 0, visibility_timeout: Duration::from_secs(1), ..StackOptions::default() };
    let mut stack = Stack::start(options).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut config = stack.worker_config("w");
    config.work_dir = work.path().join("work");
    std::fs::create_dir_all(&config.work_dir).unwrap();
    std::fs::write(config.work_dir.join("runs"), b"not a directory").unwrap();
    stack.start_worker_with(config);

    let program = stack.add_program("echo-hash").await.unwrap();
    let spec = json!({"program": program.to_string(), "retry": {"max_attempts": 2, "backoff_ms": 100}});
    let id = stack.submit_ok(&spec).await.unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert_eq!(job.executions.len(), 2, "{job:?}");
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, FailureReason::Internal, "{}", failure.message);
    assert!(failure.message.contains("each of the 2 attempts"), "{}", failure.message);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_waiting_for_missing_content_do_not_hold_up_the_others() {
    // One worker, one slot, a minute's fetch timeout; four jobs naming content nobody has are
    // read first, then an ordinary one.
    let options = StackOptions { concurrency: 1, fetch_timeout: Duration::from_secs(60), ..StackOptions::default() };
    let stack = Stack::start(options).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap().to_string();
    let mut waiting = Vec::new();
    for n in 0..4 {
        let missing = format!("never uploaded {n}");
        let cid = shoal_content::Block::encode(shoal_content::Codec::Raw, missing.into_bytes()).cid().to_string();
        let id = stack.submit_ok(&json!({"program": program, "inputs": [{"cid": cid}]})).await.unwrap();
        stack.wait_until(&id, WAIT, |job| job.state == JobState::Running).await.unwrap();
        waiting.push(id);
    }

    let started = std::time::Instant::now();
    let other = stack.submit_ok(&json!({"program": program})).await.unwrap();
    let job = stack.wait_terminal(&other, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "the ordinary job took {:?}", started.elapsed());
    for id in &waiting {
        let job = stack.job(id).await.unwrap();
        assert_eq!(job.state, JobState::Running, "still waiting for its content: {job:?}");
    }
    stack.shutdown().await;
}
