//! Redis crashing and coming back: accepted jobs are not lost, and the gateway and workers carry
//! on without being restarted.

use std::time::Duration;

use serde_json::json;
use shoal_jobs::{Fsync, JobState};
use shoal_testkit::{Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_accepted_before_a_redis_crash_run_after_it() {
    // fsync on every write: with `everysec`, up to the last second of writes may be lost to a
    // crash (see docs/reliability.md), which is exactly what this test must not allow.
    let mut stack =
        Stack::start(StackOptions { workers: 0, fsync: Fsync::Always, ..StackOptions::default() }).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(stack.submit_ok(&json!({"program": program.to_string(), "args": [n.to_string()]})).await.unwrap());
    }

    tokio::task::block_in_place(|| stack.redis.restart()).unwrap();

    stack.start_worker("after-crash");
    for id in &ids {
        let job = stack.wait_terminal(id, WAIT).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.executions.len(), 1, "run once: {job:?}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_and_a_worker_carry_on_across_a_redis_restart() {
    let mut stack = Stack::start(StackOptions { fsync: Fsync::Always, ..StackOptions::default() }).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let before = stack.submit_ok(&json!({"program": program.to_string()})).await.unwrap();
    assert_eq!(stack.wait_terminal(&before, WAIT).await.unwrap().state, JobState::Succeeded);

    tokio::task::block_in_place(|| stack.redis.restart()).unwrap();

    // The gateway reconnects by itself: a submission may fail while it does, never hang.
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        match stack.submit(&json!({"program": program.to_string(), "args": ["after"]})).await {
            Ok((status, body)) if status == 202 => break body["id"].as_str().unwrap().to_string(),
            Ok((status, body)) => assert_eq!(status, 503, "only 'unavailable' while reconnecting: {body}"),
            Err(e) => panic!("the gateway answers while Redis restarts: {e}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the gateway never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let job = stack.wait_terminal(&after, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "the worker reconnected and ran it: {job:?}");
    assert_eq!(stack.job(&before).await.unwrap().state, JobState::Succeeded, "earlier results survive");
    stack.shutdown().await;
}
