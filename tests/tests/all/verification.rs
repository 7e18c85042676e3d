//! The verifier re-runs succeeded jobs: an honest result is agreed with, a worker that reports
//! a result its program does not produce is caught and named.

use std::time::Duration;

use serde_json::json;
use shoal_jobs::{now_ms, Execution, ExecutionOutcome, JobState, JobStore, ShardQueue, Started, VerificationOutcome};
use shoal_testkit::{Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_honest_result_is_agreed_with() {
    let stack = Stack::start(StackOptions { verifier: Some(0.0), ..StackOptions::default() }).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let input = stack.add_bytes(b"verify me\n").await.unwrap();
    let id = stack
        .submit_ok(&json!({
            "program": program.to_string(),
            "inputs": [{"cid": input.to_string()}],
            "verification": {"mode": "always"},
        }))
        .await
        .unwrap();
    let job = stack.wait_until(&id, WAIT, |job| job.verification.is_some()).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    let verification = job.verification.unwrap();
    assert_eq!(verification.outcome, VerificationOutcome::Agreed);
    assert_eq!(verification.verifier, "verifier");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_reporting_a_false_result_is_caught_and_named() {
    // No honest worker: the test plays a malicious one.
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let id = stack
        .submit_ok(&json!({"program": program.to_string(), "args": ["x"], "verification": {"mode": "always"}}))
        .await
        .unwrap();

    // The liar claims the job and reports the output of another job (same program, other args),
    // a plausible-looking but wrong result.
    let honest_worker = stack.worker_config("reference");
    let reference = shoal_worker::Executor::open(&honest_worker).await.unwrap();
    let other_spec =
        shoal_jobs::JobSpec::from_json(json!({"program": program.to_string(), "args": ["y"]}).to_string().as_bytes())
            .unwrap();
    let wrong = reference.run_spec(&other_spec, "liar-run").await.unwrap();

    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let jobs = JobStore::new(conn.clone());
    let mut execution = Execution {
        id: "liar-1".into(),
        worker: "liar".into(),
        started_at_ms: now_ms(),
        finished_at_ms: None,
        outcome: None,
    };
    let Started::Running(job) = jobs.start_execution(&id, &execution).await.unwrap() else { panic!("job starts") };
    execution.finished_at_ms = Some(now_ms());
    execution.outcome = Some(ExecutionOutcome::Completed(wrong.clone()));
    assert_eq!(jobs.finish_execution(&id, &execution).await.unwrap(), JobState::Succeeded);
    ShardQueue::new(conn).enqueue_verification(job.shard, &id).await.unwrap();

    stack.start_verifier("verifier", 0.0);
    let job = stack.wait_until(&id, WAIT, |job| job.verification.is_some()).await.unwrap();
    match job.verification.unwrap().outcome {
        VerificationOutcome::Disagreed { worker, reported, recomputed } => {
            assert_eq!(worker, "liar");
            assert_eq!(reported.output, wrong.output);
            assert_ne!(recomputed.stdout, wrong.stdout, "the honest run echoes `x`, not `y`");
        }
        other => panic!("the lie is caught: {other:?}"),
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_outside_the_sample_are_not_re_run() {
    let stack = Stack::start(StackOptions { verifier: Some(0.0), ..StackOptions::default() }).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let sampled = stack.submit_ok(&json!({"program": program.to_string(), "args": ["s"]})).await.unwrap();
    let never = stack
        .submit_ok(&json!({"program": program.to_string(), "args": ["n"], "verification": {"mode": "none"}}))
        .await
        .unwrap();
    let always = stack
        .submit_ok(&json!({"program": program.to_string(), "args": ["a"], "verification": {"mode": "always"}}))
        .await
        .unwrap();
    // Once all three succeeded (so each was handed to the verifier or not), the `always` job is
    // verified and every verification stream is empty, the verifier has looked at them all.
    for id in [&sampled, &never] {
        assert_eq!(stack.wait_terminal(id, WAIT).await.unwrap().state, JobState::Succeeded);
    }
    stack.wait_until(&always, WAIT, |job| job.verification.is_some()).await.unwrap();
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut waiting = 0u64;
        for shard in 0..shoal_testkit::SHARDS {
            waiting +=
                redis::AsyncCommands::xlen::<_, u64>(&mut conn, shoal_jobs::keys::verify_stream(shard)).await.unwrap();
        }
        if waiting == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{waiting} verifications never processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in [&sampled, &never] {
        let job = stack.job(id).await.unwrap();
        assert!(job.verification.is_none(), "{job:?}");
    }
    stack.shutdown().await;
}
