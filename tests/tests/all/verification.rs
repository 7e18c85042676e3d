//! The verifier re-runs succeeded jobs: an honest result is agreed with, a worker that reports
//! a result its program does not produce is caught and named, quarantined, and every result it
//! settled corrected; a result without a valid receipt of its worker (forged, missing) is refused,
//! counted and corrected; a quarantined worker gets no work.

use std::time::Duration;

use serde_json::json;
use shoal_jobs::{
    now_ms, Acceptance, Execution, ExecutionOutcome, ExecutionResult, JobState, JobStore, Lane, Membership, Quarantine,
    Receipt, ReplicationStore, ShardQueue, ShardReader, SignedReceipt, Started, VerificationOutcome, WorkerKey,
};
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
    let verification = job.verification.clone().unwrap();
    assert_eq!(verification.outcome, VerificationOutcome::Agreed);
    assert_eq!(verification.verifier, "verifier");
    assert_eq!(job.acceptance(), Some(Acceptance::Verified));
    // The agreement counts toward the worker's reputation (reputation-weighted sampling).
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    assert_eq!(Membership::new(conn).agreed(&job.executions[0].worker).await.unwrap(), 1);
    stack.shutdown().await;
}

/// How the test's malicious worker signs what it reports.
pub(crate) enum Signing<'a> {
    /// With its own key, registered for its id: a well-formed lie.
    Registered(&'a WorkerKey),
    /// With a key that is not the one registered for the id it claims.
    Forged(&'a WorkerKey),
    /// Not at all.
    Unsigned,
}

/// A job of echo-hash with argument `x`, and the result of the same program with argument `y`:
/// a plausible-looking but wrong result for it. No honest worker runs in the stack.
pub(crate) async fn job_and_wrong_result(stack: &Stack) -> (String, ExecutionResult) {
    let program = stack.add_program("echo-hash").await.unwrap();
    let id = stack
        .submit_ok(&json!({"program": program.to_string(), "args": ["x"], "verification": {"mode": "always"}}))
        .await
        .unwrap();
    let reference = shoal_worker::Executor::open(&stack.worker_config("reference")).await.unwrap();
    let other_spec =
        shoal_jobs::JobSpec::from_json(json!({"program": program.to_string(), "args": ["y"]}).to_string().as_bytes())
            .unwrap();
    (id, reference.run_spec(&other_spec, "liar-run").await.unwrap())
}

/// Plays a malicious worker `worker`: claims job `id`, reports `result` signed as `signing`
/// says, and hands the job to the verifier.
pub(crate) async fn report_as(stack: &Stack, id: &str, worker: &str, signing: Signing<'_>, result: &ExecutionResult) {
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let jobs = JobStore::new(conn.clone());
    let mut execution = Execution {
        id: format!("{worker}-1"),
        worker: worker.into(),
        started_at_ms: now_ms(),
        finished_at_ms: None,
        outcome: None,
        receipt: None,
    };
    let Started::Running(job) = jobs.start_execution(id, &execution).await.unwrap() else { panic!("job starts") };
    execution.finished_at_ms = Some(now_ms());
    execution.outcome = Some(ExecutionOutcome::Completed(result.clone()));
    let signer = match signing {
        Signing::Registered(key) => {
            Membership::new(conn.clone()).bind_key(worker, &key.public()).await.unwrap();
            Some(key)
        }
        Signing::Forged(key) => Some(key),
        Signing::Unsigned => None,
    };
    execution.receipt = signer.map(|key| key.sign(Receipt::of(&job, &execution, key.public()).unwrap()));
    let settled = if result.exit_code == 0 { JobState::Succeeded } else { JobState::Failed };
    assert_eq!(jobs.finish_execution(id, &execution).await.unwrap(), settled);
    // As the worker's settle step does, so a caught worker's earlier results can be found.
    Membership::new(conn.clone()).record_settled(worker, id).await.unwrap();
    ShardQueue::new(conn).enqueue_verification(job.shard, id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caught_liar_is_quarantined_and_everything_it_settled_is_corrected() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let liar = WorkerKey::generate();
    // An earlier lie that sampling (rate 0) would never look at, then one that is always verified.
    let program = stack.add_program("echo-hash").await.unwrap();
    let earlier = stack
        .submit_ok(&json!({"program": program.to_string(), "args": ["x"], "verification": {"mode": "sampled"}}))
        .await
        .unwrap();
    let (caught, wrong) = job_and_wrong_result(&stack).await;
    // Well-formed lies: the receipts are genuine, only re-execution shows the results are false.
    report_as(&stack, &earlier, "liar", Signing::Registered(&liar), &wrong).await;
    report_as(&stack, &caught, "liar", Signing::Registered(&liar), &wrong).await;

    stack.start_verifier("verifier", 0.0);
    for id in [&caught, &earlier] {
        // `earlier` may first be vouched for (not sampled) before the liar is caught on `caught`
        // and it is re-verified as tainted: wait for the verdict that settles it.
        let job = stack
            .wait_until(id, WAIT, |job| {
                job.acceptance().is_some_and(|a| a != Acceptance::Pending && a != Acceptance::Unsampled)
            })
            .await
            .unwrap();
        let verification = job.verification.clone().unwrap();
        match &verification.outcome {
            VerificationOutcome::Disagreed { worker, reported, recomputed } => {
                assert_eq!(worker, "liar");
                assert_eq!(reported.output, wrong.output);
                assert_ne!(recomputed.stdout, wrong.stdout, "the honest run echoes `x`, not `y`");
                // The job now reports the verifier's result; the liar's stays in its execution.
                assert_eq!(verification.corrected.as_ref(), Some(&**recomputed));
                assert_eq!(job.result.as_ref(), Some(&**recomputed));
                assert_eq!(job.acceptance(), Some(Acceptance::Corrected));
                assert!(matches!(&job.executions[0].outcome, Some(ExecutionOutcome::Completed(r)) if *r == wrong));
            }
            other => panic!("the lie in {id} is caught: {other:?}"),
        }
    }
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let membership = Membership::new(conn);
    let quarantined = membership.quarantined().await.unwrap();
    let why = quarantined.get("liar").expect("the liar is quarantined");
    assert_eq!((why.job.as_str(), why.settled), (caught.as_str(), 2));
    assert!(!membership.is_tainted(&earlier).await.unwrap(), "the tainted result was re-verified");

    // Quarantine is durable: it survives Redis being killed and restarted.
    tokio::task::block_in_place(|| stack.redis.restart()).unwrap();
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    assert!(Membership::new(conn).quarantined().await.unwrap().contains_key("liar"));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_success_claimed_for_a_program_that_traps_fails_the_job_and_quarantines_the_worker() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let trap = stack.add_program("trap").await.unwrap();
    let id = stack.submit_ok(&json!({"program": trap.to_string(), "verification": {"mode": "always"}})).await.unwrap();
    // A made-up success for a program that always traps.
    let (_, made_up) = job_and_wrong_result(&stack).await;
    report_as(&stack, &id, "claimer", Signing::Registered(&WorkerKey::generate()), &made_up).await;

    stack.start_verifier("verifier", 0.0);
    let job = stack.wait_until(&id, WAIT, |job| job.verification.is_some()).await.unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert_eq!(job.failure.as_ref().map(|f| f.reason), Some(shoal_jobs::FailureReason::Trap));
    assert!(job.result.is_none(), "the made-up result is no longer reported");
    match job.verification.unwrap().outcome {
        VerificationOutcome::Contradicted { worker, failure, .. } => {
            assert_eq!(worker, "claimer");
            assert_eq!(failure.reason, shoal_jobs::FailureReason::Trap);
        }
        other => panic!("the claim is contradicted: {other:?}"),
    }
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    assert!(Membership::new(conn).quarantined().await.unwrap().contains_key("claimer"));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quarantined_worker_gets_no_work_until_readmitted() {
    let stack = Stack::start(StackOptions { workers: 2, ..StackOptions::default() }).await.unwrap();
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let membership = Membership::new(conn);
    let why = Quarantine {
        reason: "test".into(),
        job: "none".into(),
        verifier: "operator".into(),
        at_ms: now_ms(),
        settled: 0,
    };
    assert_eq!(membership.quarantine("worker-0", why).await.unwrap(), (true, Vec::new()));
    // Two heartbeats: every worker has seen the quarantine and the shards have moved.
    tokio::time::sleep(StackOptions::default().heartbeat * 3).await;
    let program = stack.add_program("echo-hash").await.unwrap();
    let mut ids = Vec::new();
    // Distinct inputs, so the jobs spread over every shard (a job is placed by its first input).
    for n in 0..16 {
        let input = stack.add_bytes(format!("input {n}\n").as_bytes()).await.unwrap();
        let spec = json!({"program": program.to_string(), "inputs": [{"cid": input.to_string()}]});
        ids.push(stack.submit_ok(&spec).await.unwrap());
    }
    let shards: std::collections::BTreeSet<u32> = futures::future::join_all(ids.iter().map(|id| stack.job(id)))
        .await
        .into_iter()
        .map(|j| j.unwrap().shard)
        .collect();
    assert_eq!(shards.len() as u32, shoal_testkit::SHARDS, "the jobs cover every shard");
    for id in &ids {
        let job = stack.wait_terminal(id, WAIT).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded);
        assert!(job.executions.iter().all(|e| e.worker == "worker-1"), "{:?}", job.executions);
    }
    assert!(membership.readmit("worker-0").await.unwrap());
    assert!(membership.quarantined().await.unwrap().is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_missing_receipts_are_refused_and_counted() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let (forged, wrong) = job_and_wrong_result(&stack).await;
    // "reference" registered its key; the forger signs as "reference" with its own.
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    Membership::new(conn).bind_key("reference", &WorkerKey::generate().public()).await.unwrap();
    report_as(&stack, &forged, "reference", Signing::Forged(&WorkerKey::generate()), &wrong).await;
    let (unsigned, wrong) = job_and_wrong_result(&stack).await;
    report_as(&stack, &unsigned, "lazy", Signing::Unsigned, &wrong).await;

    stack.start_verifier("verifier", 0.0);
    for (id, worker, reason) in [
        (&forged, "reference", "not signed by the key registered for worker reference"),
        (&unsigned, "lazy", "the execution carries no receipt"),
    ] {
        let job = stack.wait_until(id, WAIT, |job| job.verification.is_some()).await.unwrap();
        assert_eq!(
            job.verification.unwrap().outcome,
            VerificationOutcome::Refused { worker: worker.into(), reason: reason.into() }
        );
    }
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let refusals = Membership::new(conn).refusals().await.unwrap();
    assert_eq!(refusals.get("reference"), Some(&1));
    assert_eq!(refusals.get("lazy"), Some(&1));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_results_carry_receipts_fetchable_by_cid() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let id = stack.submit_ok(&json!({"program": program.to_string(), "args": ["r"]})).await.unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    let execution = job.executions.last().unwrap();
    let receipt = execution.receipt.as_ref().expect("a settled execution carries a receipt");
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let key = Membership::new(conn).key_of(&execution.worker).await.unwrap();
    receipt.check(&job, execution, key.as_ref()).unwrap();
    // The receipt is also a raw block in the store, named by its CID: what a user fetches.
    let bytes = stack.read(&receipt.cid(), "").await.unwrap();
    assert_eq!(SignedReceipt::from_bytes(&bytes).unwrap(), *receipt);
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
    for id in [&always, &sampled] {
        stack.wait_until(id, WAIT, |job| job.verification.is_some()).await.unwrap();
    }
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
    // Outside the sample: the receipt is checked, nothing re-run; `none`: not even looked at.
    let job = stack.job(&sampled).await.unwrap();
    assert_eq!(job.verification.as_ref().map(|v| &v.outcome), Some(&VerificationOutcome::Vouched), "{job:?}");
    assert_eq!(job.acceptance(), Some(Acceptance::Unsampled));
    let job = stack.job(&never).await.unwrap();
    assert!(job.verification.is_none(), "{job:?}");
    assert_eq!(job.acceptance(), Some(Acceptance::Unverified));
    let job = stack.job(&always).await.unwrap();
    assert_eq!(job.acceptance(), Some(Acceptance::Verified));
    // The result endpoint labels each; only the verified one is accepted.
    for (id, acceptance, accepted) in
        [(&sampled, "unsampled", false), (&never, "unverified", false), (&always, "verified", true)]
    {
        let body: serde_json::Value = stack
            .http
            .get(format!("{}/v1/jobs/{id}/result", stack.gateway))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((body["acceptance"].as_str(), body["accepted"].as_bool()), (Some(acceptance), Some(accepted)));
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_verifiers_pending_verification_is_taken_over() {
    let options = StackOptions { visibility_timeout: Duration::from_secs(2), ..StackOptions::default() };
    let mut stack = Stack::start(options).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let id = stack
        .submit_ok(&json!({"program": program.to_string(), "args": ["v"], "verification": {"mode": "always"}}))
        .await
        .unwrap();
    assert_eq!(stack.wait_terminal(&id, WAIT).await.unwrap().state, JobState::Succeeded);
    // A verifier reads the entry, then dies without acknowledging it.
    let shards: Vec<u32> = (0..shoal_testkit::SHARDS).collect();
    let mut ghost = ShardReader::open(&[stack.redis.url()], Lane::Verify, &shards, "ghost", Duration::from_millis(500))
        .await
        .unwrap();
    let mut read = Vec::new();
    while read.is_empty() {
        read = ghost.next(10).await.unwrap();
    }
    assert_eq!(read.iter().map(|d| d.job_id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    drop(ghost);

    stack.start_verifier("verifier", 0.0);
    let job = stack.wait_until(&id, WAIT, |job| job.verification.is_some()).await.unwrap();
    assert_eq!(job.verification.unwrap().outcome, VerificationOutcome::Agreed);
    stack.shutdown().await;
}

/// A job of echo-hash with argument `arg` under `replicated` verification with 2 replicas.
async fn replicated_job(stack: &Stack, arg: &str) -> String {
    let program = stack.add_program("echo-hash").await.unwrap();
    let spec =
        json!({"program": program.to_string(), "args": [arg], "verification": {"mode": "replicated", "replicas": 2}});
    stack.submit_ok(&spec).await.unwrap()
}

/// The result of echo-hash with argument `arg`, computed by the test: a wrong result for any
/// job of another argument.
async fn result_of(stack: &Stack, arg: &str) -> ExecutionResult {
    let program = stack.add_program("echo-hash").await.unwrap();
    let spec = json!({"program": program.to_string(), "args": [arg]}).to_string();
    let reference = shoal_worker::Executor::open(&stack.worker_config("reference")).await.unwrap();
    reference.run_spec(&shoal_jobs::JobSpec::from_json(spec.as_bytes()).unwrap(), arg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_distinct_workers_agree_and_a_lie_among_them_is_settled_by_re_execution() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let honest = replicated_job(&stack, "h").await;
    let lied = replicated_job(&stack, "x").await;
    report_as(&stack, &lied, "liar", Signing::Registered(&WorkerKey::generate()), &result_of(&stack, "y").await).await;
    stack.start_worker("worker-a");
    stack.start_worker("worker-b");
    stack.start_verifier("verifier", 0.0);

    // Two distinct workers ran the honest job and agreed: `replicated`, which is not `accepted`
    // (colluders in every replica could agree on a lie), and no re-execution by the verifier.
    let job = stack.wait_until(&honest, WAIT, |job| job.verification.is_some()).await.unwrap();
    let verification = job.verification.clone().unwrap();
    let VerificationOutcome::Replicated { workers } = &verification.outcome else {
        panic!("the replicas agree: {verification:?}")
    };
    assert_eq!(workers.len(), 2);
    assert_ne!(workers[0], workers[1], "replicas run on distinct workers");
    assert_eq!(job.acceptance(), Some(Acceptance::Replicated));
    assert!(!Acceptance::Replicated.is_accepted());
    let replica = stack.job(verification.replicas.last().unwrap()).await.unwrap();
    assert_eq!(replica.result.as_ref().map(|r| r.output), job.result.as_ref().map(|r| r.output));

    // The lie disagrees with its honest replica: the verifier's re-execution settles it.
    let job = stack.wait_until(&lied, WAIT, |job| job.verification.is_some()).await.unwrap();
    let verification = job.verification.clone().unwrap();
    assert!(
        matches!(&verification.outcome, VerificationOutcome::Disagreed { worker, .. } if worker == "liar"),
        "{verification:?}"
    );
    assert!(!verification.replicas.is_empty());
    assert_eq!(job.acceptance(), Some(Acceptance::Corrected));
    assert_eq!(job.result.as_ref().map(|r| r.output), Some(result_of(&stack, "x").await.output));
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let quarantined = Membership::new(conn).quarantined().await.unwrap();
    assert_eq!(quarantined.keys().collect::<Vec<_>>(), ["liar"], "the honest replica is not blamed");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn colluders_agreeing_on_a_lie_are_both_caught_by_the_spot_check() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let id = replicated_job(&stack, "x").await;
    let wrong = result_of(&stack, "y").await;
    report_as(&stack, &id, "colluder-1", Signing::Registered(&WorkerKey::generate()), &wrong).await;
    // A verifier that spot-checks every agreement.
    stack.start_verifier("verifier", 1.0);
    // The second colluder answers the replica with the same lie: a naive majority would take it.
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let replication = ReplicationStore::new(conn.clone());
    let deadline = std::time::Instant::now() + WAIT;
    let replica = loop {
        if let Some(replica) = replication.replicas(&id).await.unwrap().first() {
            break replica.clone();
        }
        assert!(std::time::Instant::now() < deadline, "a replica is asked for");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    report_as(&stack, &replica, "colluder-2", Signing::Registered(&WorkerKey::generate()), &wrong).await;

    let job = stack.wait_until(&id, WAIT, |job| job.verification.is_some()).await.unwrap();
    assert!(matches!(job.verification.as_ref().unwrap().outcome, VerificationOutcome::Disagreed { .. }));
    assert_eq!(job.acceptance(), Some(Acceptance::Corrected));
    assert_eq!(job.result.as_ref().map(|r| r.output), Some(result_of(&stack, "x").await.output));
    let quarantined = Membership::new(conn).quarantined().await.unwrap();
    assert_eq!(quarantined.keys().collect::<Vec<_>>(), ["colluder-1", "colluder-2"], "both signed the lie");
    assert_eq!(quarantined["colluder-2"].job, replica, "caught on the replica it signed");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_made_up_failure_is_denied_the_job_corrected_and_the_worker_quarantined() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let (id, honest_elsewhere) = job_and_wrong_result(&stack).await;
    // The liar says the program exited 1 (a failure every honest worker would meet too).
    let failed = ExecutionResult { exit_code: 1, ..honest_elsewhere };
    report_as(&stack, &id, "liar", Signing::Registered(&WorkerKey::generate()), &failed).await;
    assert_eq!(stack.job(&id).await.unwrap().state, JobState::Failed);

    stack.start_verifier("verifier", 0.0);
    let job = stack.wait_until(&id, WAIT, |job| job.verification.is_some()).await.unwrap();
    let verification = job.verification.clone().unwrap();
    assert!(
        matches!(&verification.outcome, VerificationOutcome::Denied { worker, failure } if worker == "liar" && failure.reason == shoal_jobs::FailureReason::NonZeroExit),
        "{verification:?}"
    );
    // The job now succeeds with the verifier's own run, accepted as corrected.
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.failure, None);
    assert_eq!(job.result.as_ref().map(|r| r.exit_code), Some(0));
    assert_eq!(job.acceptance(), Some(Acceptance::Corrected));
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    assert!(Membership::new(conn).quarantined().await.unwrap().contains_key("liar"));
    stack.shutdown().await;
}
