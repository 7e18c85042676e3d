//! Work that outlives its worker: a killed or hung worker's job is taken over by another and
//! finishes once; a job whose workers keep dying ends in the dead-letter stream with its reason.

use std::time::Duration;

use serde_json::json;
use shoal_jobs::{FailureReason, JobState, ShardQueue};
use shoal_testkit::{Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(120);
const VISIBILITY: Duration = Duration::from_secs(2);

/// Fuel for a run of a few seconds of the infinite loop, ending in `fuel_exhausted`: a long job
/// with a deterministic end.
const LONG_RUN_FUEL: u64 = 10_000_000_000;

fn options() -> StackOptions {
    StackOptions { workers: 0, visibility_timeout: VISIBILITY, ..StackOptions::default() }
}

fn long_job(program: &str, max_attempts: u32) -> serde_json::Value {
    json!({
        "program": program,
        "limits": {"fuel": LONG_RUN_FUEL, "wall_time_ms": 600_000},
        "retry": {"max_attempts": max_attempts},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_workers_job_is_taken_over_and_finishes_once() {
    let mut stack = Stack::start(options()).await.unwrap();
    let program = stack.add_program("infinite-loop").await.unwrap().to_string();
    let doomed = stack.spawn_worker_process("doomed").unwrap();
    let id = stack.submit_ok(&long_job(&program, 3)).await.unwrap();
    stack.wait_until(&id, WAIT, |job| job.state == JobState::Running).await.unwrap();
    stack.kill_worker_process(doomed).unwrap();

    stack.start_worker("survivor");
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.failure.as_ref().map(|f| f.reason), Some(FailureReason::FuelExhausted), "{job:?}");
    let workers: Vec<&str> = job.executions.iter().map(|e| e.worker.as_str()).collect();
    assert_eq!(workers, ["doomed", "survivor"]);
    assert!(job.executions[0].outcome.is_none() && job.executions[1].outcome.is_some());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_workers_job_is_reclaimed_and_its_late_result_changes_nothing() {
    let mut stack = Stack::start(options()).await.unwrap();
    let program = stack.add_program("infinite-loop").await.unwrap().to_string();
    let hung = stack.spawn_worker_process("hung").unwrap();
    let id = stack.submit_ok(&long_job(&program, 3)).await.unwrap();
    stack.wait_until(&id, WAIT, |job| job.state == JobState::Running).await.unwrap();
    stack.signal_worker_process(hung, "STOP").unwrap();

    stack.start_worker("healthy");
    let settled = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(settled.executions.len(), 2, "{settled:?}");
    assert_eq!(settled.executions[1].worker, "healthy");

    // The hung worker wakes up, finishes its copy and records it; the job does not change.
    stack.signal_worker_process(hung, "CONT").unwrap();
    let both = stack.wait_until(&id, WAIT, |job| job.executions.iter().all(|e| e.outcome.is_some())).await.unwrap();
    assert_eq!(both.state, settled.state);
    assert_eq!(both.failure, settled.failure);
    assert_eq!(both.result, settled.result);
    assert_eq!(both.updated_at_ms, settled.updated_at_ms, "the late result did not settle the job again");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_workers_keep_dying_is_dead_lettered_with_its_reason() {
    let mut stack = Stack::start(options()).await.unwrap();
    let program = stack.add_program("infinite-loop").await.unwrap().to_string();
    let id = stack.submit_ok(&long_job(&program, 2)).await.unwrap();
    for attempt in 1..=2 {
        let pid = stack.spawn_worker_process(&format!("doomed-{attempt}")).unwrap();
        stack.wait_until(&id, WAIT, |job| job.executions.len() == attempt).await.unwrap();
        stack.kill_worker_process(pid).unwrap();
    }

    stack.start_worker("last");
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    let failure = job.failure.clone().unwrap();
    assert_eq!(failure.reason, FailureReason::WorkerLost);
    assert!(failure.message.contains("2 times"), "{}", failure.message);
    assert_eq!(job.executions.len(), 2, "not started a third time: {job:?}");

    let client = redis::Client::open(stack.redis.url()).unwrap();
    let queue = ShardQueue::new(client.get_connection_manager().await.unwrap());
    let dead = queue.dead_letters(job.shard).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, id);
    assert!(dead[0].1.starts_with("worker_lost"), "{dead:?}");
    assert_eq!(queue.len(job.shard).await.unwrap(), 0, "the entry left the shard stream");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_stored_but_never_queued_is_requeued_and_run() {
    let mut stack = Stack::start(options()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap().to_string();
    // A gateway that died between storing the job and queueing it.
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let jobs = shoal_jobs::JobStore::new(client.get_connection_manager().await.unwrap());
    let spec = shoal_jobs::JobSpec::from_json(json!({"program": program}).to_string().as_bytes()).unwrap();
    let shoal_jobs::Created::New(job) =
        jobs.create(&spec, 1, &shoal_testkit::TEST_TENANT.parse().unwrap(), None).await.unwrap()
    else {
        panic!("new job")
    };
    assert!(jobs.unqueued(Duration::ZERO, 10).await.unwrap().contains(&(job.id.clone(), 1)));

    stack.start_worker("requeuer");
    let done = stack.wait_terminal(&job.id, WAIT).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.executions.len(), 1);
    assert!(jobs.unqueued(Duration::ZERO, 10).await.unwrap().is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_queued_twice_runs_once() {
    let mut stack = Stack::start(options()).await.unwrap();
    let program = stack.add_program("infinite-loop").await.unwrap().to_string();
    let id = stack.submit_ok(&long_job(&program, 3)).await.unwrap();
    let shard = stack.job(&id).await.unwrap().shard;
    // A second entry for the same job, as a re-queue racing a late first entry would make.
    let client = redis::Client::open(stack.redis.url()).unwrap();
    ShardQueue::new(client.get_connection_manager().await.unwrap()).enqueue(shard, &id).await.unwrap();

    stack.start_worker("one");
    stack.start_worker("two");
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.executions.len(), 1, "the duplicate entry was not run: {job:?}");
    let queue = ShardQueue::new(client.get_connection_manager().await.unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    while queue.len(shard).await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "both entries are acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_past_its_total_timeout_fails_with_deadline_exceeded() {
    let stack = Stack::start(StackOptions { workers: 1, ..options() }).await.unwrap();
    let program = stack.add_program("infinite-loop").await.unwrap().to_string();
    let id = stack
        .submit_ok(&json!({
            "program": program,
            // Runs for several seconds on an idle machine, well past its one-second total
            // timeout and the sweeps (every half visibility timeout, jittered) that enforce it.
            "limits": {"fuel": 8 * LONG_RUN_FUEL, "wall_time_ms": 600_000},
            "retry": {"total_timeout_ms": 1_000},
        }))
        .await
        .unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.failure.map(|f| f.reason), Some(FailureReason::DeadlineExceeded));
    assert!(job.updated_at_ms >= job.created_at_ms + 1_000, "not before its deadline");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_execution_is_retried_only_after_its_backoff() {
    let mut stack = Stack::start(options()).await.unwrap();
    let program = stack.add_program("infinite-loop").await.unwrap().to_string();
    let doomed = stack.spawn_worker_process("doomed").unwrap();
    let mut spec = long_job(&program, 3);
    // At least 4 s (8 s × a jitter of 0.5 to 1.5), twice the visibility timeout.
    spec["retry"]["backoff_ms"] = json!(8_000);
    let id = stack.submit_ok(&spec).await.unwrap();
    stack.wait_until(&id, WAIT, |job| job.state == JobState::Running).await.unwrap();
    stack.kill_worker_process(doomed).unwrap();

    stack.start_worker("survivor");
    let job = stack.wait_until(&id, WAIT, |job| job.executions.len() == 2).await.unwrap();
    let gap = job.executions[1].started_at_ms - job.executions[0].started_at_ms;
    assert!(gap >= 4_000, "retried {gap} ms after the first start");
    assert!(gap <= 12_000 + 2 * VISIBILITY.as_millis() as u64, "not much later either: {gap} ms");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_told_to_stop_stops_within_its_drain_and_leaves_its_job_to_another() {
    let mut stack = Stack::start(options()).await.unwrap();
    let spin = stack.add_program("infinite-loop").await.unwrap();
    let pid = stack.spawn_worker_process("drainer").unwrap();
    let spec = json!({
        "program": spin.to_string(),
        "limits": {"fuel": 10_000_000_000_000u64, "wall_time_ms": 300_000},
        "verification": {"mode": "none"},
    });
    let id = stack.submit_ok(&spec).await.unwrap();
    stack.wait_until(&id, WAIT, |job| job.state == JobState::Running).await.unwrap();

    let told = std::time::Instant::now();
    stack.signal_worker_process(pid, "TERM").unwrap();
    let exited = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.is_empty() || status.contains("State:\tZ")
    };
    while !exited(pid) {
        assert!(told.elapsed() < Duration::from_secs(30), "the worker ignored SIGTERM for 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the worker stopped {:?} after SIGTERM (drain 10 s)", told.elapsed());
    assert!(told.elapsed() >= Duration::from_secs(9), "it gave its job the drain time first");
    let job = stack.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Running, "the job is not failed by a shutdown: {job:?}");

    // Another worker takes it over once the visibility timeout has passed.
    stack.start_worker("successor");
    let job = stack.wait_until(&id, WAIT, |job| job.executions.iter().any(|e| e.worker == "successor")).await.unwrap();
    assert_eq!(job.state, JobState::Running);
    let cancelled = stack.http.delete(format!("{}/v1/jobs/{id}", stack.gateway)).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    stack.shutdown().await;
}
