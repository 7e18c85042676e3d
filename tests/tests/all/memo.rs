//! Memoisation by invocation CID: a tenant's identical submission of a run whose result the
//! verifier accepted is answered at once from it (201, `memoised_from`), nothing run; a result
//! not accepted — unverified, vouched for, still awaiting its verdict, withdrawn, reopened, a
//! lie — never answers; a spec can opt out; nondeterministic runs and other tenants' runs never
//! answer.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_jobs::{
    Acceptance, Job, JobState, JobStore, RedisConnection, Role, Verification, VerificationOutcome, WorkerKey,
};
use shoal_testkit::{api_key, keyed_client, Stack, StackOptions};

use crate::verification::{job_and_wrong_result, report_as, Signing};

const WAIT: Duration = Duration::from_secs(120);

/// An echo-hash run over a small file, verified as `mode` says.
async fn spec(stack: &Stack, mode: &str) -> Value {
    let program = stack.add_program("echo-hash").await.unwrap();
    let input = stack.add_bytes(b"remember me\n").await.unwrap();
    json!({
        "program": program.to_string(),
        "inputs": [{"cid": input.to_string()}],
        "args": [mode],
        "verification": {"mode": mode},
    })
}

/// Submits `spec`: the answer's status and job.
async fn submit(stack: &Stack, spec: &Value) -> (StatusCode, Job) {
    let (status, body) = stack.submit(spec).await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    (status, serde_json::from_value(body).unwrap())
}

/// Submits `spec` and checks it was queued to run, not answered from a memo.
async fn submit_queued(stack: &Stack, spec: &Value) -> String {
    let (status, job) = submit(stack, spec).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job:?}");
    assert_eq!((job.state, job.memoised_from), (JobState::Queued, None));
    job.id
}

/// Submits `spec` and checks it was answered from job `from`'s result.
async fn submit_memoised(stack: &Stack, spec: &Value, from: &Job) -> Job {
    let (status, job) = submit(stack, spec).await;
    assert_eq!(status, StatusCode::CREATED, "{job:?}");
    assert_eq!(job.memoised_from.as_deref(), Some(from.id.as_str()));
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result, from.result, "the accepted run's result");
    assert_eq!(job.invocation, from.invocation);
    assert!(job.executions.is_empty(), "nothing ran");
    job
}

async fn accepted(stack: &Stack, id: &str) -> Job {
    stack.wait_until(id, WAIT, |job| job.acceptance().is_some_and(Acceptance::is_accepted)).await.unwrap()
}

async fn store(stack: &Stack) -> JobStore {
    JobStore::new(RedisConnection::open(&[stack.redis.url()]).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeat_of_an_accepted_run_is_answered_from_its_result() {
    let stack = Stack::start(StackOptions { verifier: Some(0.0), ..StackOptions::default() }).await.unwrap();
    let spec = spec(&stack, "always").await;
    let first = submit_queued(&stack, &spec).await;
    let first = accepted(&stack, &first).await;
    assert_eq!(first.acceptance(), Some(Acceptance::Verified));

    let repeat = submit_memoised(&stack, &spec, &first).await;
    let status: Value =
        stack.http.get(format!("{}/v1/jobs/{}", stack.gateway, repeat.id)).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["acceptance"], "verified", "{status}");
    assert_eq!(status["memoised_from"], first.id.as_str());
    let output = stack.read(first.result.as_ref().unwrap().stdout.cid(), "").await.unwrap();
    let result: Value = stack
        .http
        .get(format!("{}/v1/jobs/{}/result", stack.gateway, repeat.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["stdout"], first.result.as_ref().unwrap().stdout.to_string(), "{result}");
    assert!(String::from_utf8_lossy(&output).contains("always"), "the run's own stdout");

    // An Idempotency-Key is honoured: the memoised job is the key's job.
    let keyed = || stack.http.post(format!("{}/v1/jobs", stack.gateway)).header("Idempotency-Key", "k1").json(&spec);
    let once = keyed().send().await.unwrap();
    assert_eq!(once.status(), StatusCode::CREATED);
    let once: Job = once.json().await.unwrap();
    assert_eq!(once.memoised_from.as_deref(), Some(first.id.as_str()));
    let again = keyed().send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Job>().await.unwrap().id, once.id);

    // Opting out runs the program again (a spec of its own: its own invocation CID).
    let mut opted_out = spec.clone();
    opted_out["memoise"] = json!(false);
    let rerun = submit_queued(&stack, &opted_out).await;
    let rerun = stack.wait_terminal(&rerun, WAIT).await.unwrap();
    assert_eq!(rerun.executions.len(), 1);
    assert_eq!(rerun.result.as_ref().map(|r| r.stdout), first.result.as_ref().map(|r| r.stdout));
    assert_ne!(rerun.invocation, first.invocation);

    // Another tenant's identical submission learns nothing of this tenant's jobs: it runs.
    let key = api_key(&stack.redis.url(), "other", Role::Tenant).await.unwrap();
    let other = keyed_client(reqwest::Client::builder(), &key).unwrap();
    let theirs = other.post(format!("{}/v1/jobs", stack.gateway)).json(&spec).send().await.unwrap();
    assert_eq!(theirs.status(), StatusCode::ACCEPTED);
    let theirs: Job = theirs.json().await.unwrap();
    assert_eq!((theirs.state, theirs.memoised_from), (JobState::Queued, None));
    stack.wait_terminal(&theirs.id, WAIT).await.unwrap();

    let metrics = stack.http.get(format!("{}/metrics", stack.gateway)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("shoal_gateway_jobs_memoised_total 2\n"), "{metrics}");
    assert!(metrics.contains("shoal_gateway_submit_duration_seconds_count{outcome=\"memoised\"} 2\n"), "{metrics}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_not_accepted_never_answer() {
    let mut stack = Stack::start(StackOptions::default()).await.unwrap();
    // No verification: never accepted.
    let unverified = spec(&stack, "none").await;
    let first = submit_queued(&stack, &unverified).await;
    let first = stack.wait_terminal(&first, WAIT).await.unwrap();
    assert_eq!(first.acceptance(), Some(Acceptance::Unverified));
    submit_queued(&stack, &unverified).await;

    // Succeeded, but the verifier has not had its say yet.
    let always = spec(&stack, "always").await;
    let pending = submit_queued(&stack, &always).await;
    let pending = stack.wait_terminal(&pending, WAIT).await.unwrap();
    assert_eq!(pending.acceptance(), Some(Acceptance::Pending));
    let second = submit_queued(&stack, &always).await;

    // Vouched for by the worker's receipt, not re-executed (sampled at rate 0).
    stack.start_verifier("verifier", 0.0);
    let sampled = spec(&stack, "sampled").await;
    let vouched = submit_queued(&stack, &sampled).await;
    let vouched = stack.wait_until(&vouched, WAIT, |job| job.verification.is_some()).await.unwrap();
    assert_eq!(vouched.acceptance(), Some(Acceptance::Unsampled));
    submit_queued(&stack, &sampled).await;

    // Once the verifier accepted them, the last accepted answers.
    let pending = accepted(&stack, &pending.id).await;
    let second = accepted(&stack, &second).await;
    let (status, repeat) = submit(&stack, &always).await;
    assert_eq!(status, StatusCode::CREATED);
    let from = [&pending, &second].into_iter().find(|job| Some(&job.id) == repeat.memoised_from.as_ref());
    assert_eq!(repeat.result, from.expect("memoised from one of the two").result);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawn_or_reopened_result_no_longer_answers() {
    let stack = Stack::start(StackOptions { verifier: Some(0.0), ..StackOptions::default() }).await.unwrap();
    let spec = spec(&stack, "always").await;
    let first = submit_queued(&stack, &spec).await;
    let first = accepted(&stack, &first).await;
    submit_memoised(&stack, &spec, &first).await;

    // A later verdict that does not accept it (a re-verification that could not re-execute).
    let jobs = store(&stack).await;
    let inconclusive = Verification {
        outcome: VerificationOutcome::Inconclusive { reason: "content gone".into() },
        ..first.verification.clone().unwrap()
    };
    jobs.record_verification(&first.id, &inconclusive).await.unwrap();
    let second = submit_queued(&stack, &spec).await;
    let second = accepted(&stack, &second).await;
    submit_memoised(&stack, &spec, &second).await;

    // Reopened (the verifier found how it finished made up): it answers no more.
    assert!(jobs.reopen(&second.id).await.unwrap());
    submit_queued(&stack, &spec).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lie_never_answers_only_its_correction() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let (id, wrong) = job_and_wrong_result(&stack).await;
    let liar = WorkerKey::generate();
    report_as(&stack, &id, "liar", Signing::Registered(&liar), &wrong).await;
    let spec = json!({"program": stack.add_program("echo-hash").await.unwrap().to_string(), "args": ["x"],
                      "verification": {"mode": "always"}});
    // Before the verdict the lie is only the liar's word.
    submit_queued(&stack, &spec).await;

    stack.start_verifier("verifier", 0.0);
    let corrected = accepted(&stack, &id).await;
    assert_eq!(corrected.acceptance(), Some(Acceptance::Corrected));
    assert!(matches!(corrected.verification.as_ref().unwrap().outcome, VerificationOutcome::Disagreed { .. }));
    let repeat = submit_memoised(&stack, &spec, &corrected).await;
    assert_ne!(repeat.result.as_ref(), Some(&wrong), "the verifier's result, never the lie");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nondeterministic_runs_never_answer() {
    let stack = Stack::start(StackOptions { verifier: Some(0.0), ..StackOptions::default() }).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    // A comparator that always agrees (echo-hash exits 0): the result is accepted, yet a
    // nondeterministic program's next run may rightly differ.
    let spec = json!({
        "program": program.to_string(),
        "determinism": "nondeterministic",
        "verification": {"mode": "always", "compare": {"kind": "comparator", "program": program.to_string()}},
    });
    let first = submit_queued(&stack, &spec).await;
    let first = accepted(&stack, &first).await;
    assert_eq!(first.acceptance(), Some(Acceptance::Verified));
    submit_queued(&stack, &spec).await;
    stack.shutdown().await;
}
