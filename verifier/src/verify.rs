//! Deciding on one delivered result: its receipt, the strategy's decision, the re-execution
//! and the comparison, and acting on the verdict (correcting the job, quarantining the worker,
//! tainting what it settled).

use shoal_jobs::{
    now_ms, with_retries, Compared, Delivery, Execution, ExecutionOutcome, ExecutionResult, Failure, Job, JobState,
    Membership, Quarantine, ReceiptError, StoreError, Verification, VerificationOutcome,
};
use shoal_worker::{Executor, GatherError};
use tracing::{info, warn};

use crate::compare::judge_of;
use crate::replicate;
use crate::strategy::Decision;
use crate::Verifier;

/// Checks one delivered job and records the verdict: its receipt always; its result by
/// re-execution if it is in the sample or tainted (its worker was caught since). A result that
/// disagrees, or is not vouched for by its worker's receipt, is corrected to the verifier's own
/// re-execution; a worker caught with a result it signed is quarantined and everything it
/// settled before becomes tainted.
pub(crate) async fn verify(verifier: &Verifier, delivery: &Delivery) -> Result<(), StoreError> {
    let executor = &verifier.executor;
    let Some(job) = with_retries("get", || executor.jobs().get(&delivery.job_id)).await? else {
        warn!(job = %delivery.job_id, "job to verify no longer exists");
        return Ok(());
    };
    let membership = Membership::new(executor.jobs().connection());
    let tainted = with_retries("is_tainted", || membership.is_tainted(&job.id)).await?;
    // A job reaches the verifier more than once (a redelivery, a tainted re-queue, a crash
    // before the acknowledgement): a verdict stands unless the result is tainted and was never
    // re-executed — a result the verifier ran (agreed, corrected) needs no second look.
    let reexecuted = job
        .verification
        .as_ref()
        .is_some_and(|v| v.corrected.is_some() || v.failed.is_some() || v.outcome == VerificationOutcome::Agreed);
    if job.state == JobState::Failed {
        if job.verification.is_none() || tainted {
            verify_failure(verifier, &membership, &job).await?;
        }
    } else if job.spec.fan_out.is_some() {
        // A fan-out's gathered output is no execution's: its tasks are verified one by one, and
        // the gathering is checked by gathering again.
        if job.state == JobState::Succeeded && (job.verification.is_none() || tainted) {
            verify_gathered(verifier, &membership, &job).await?;
        }
    } else if (job.verification.is_none() || tainted) && !reexecuted {
        verify_result(verifier, &membership, &job, tainted).await?;
    }
    // Verified now, whether it was tainted before or became so when its worker was caught on it.
    with_retries("clear_taint", || membership.clear_taint(&job.id)).await
}

/// Decides on a job's result as its policy's strategy says (re-executing it whatever the
/// strategy says if `tainted` or its worker is quarantined), and acts on the verdict; a
/// replicated job's verdict comes once its replicas have run ([`replicate`]).
async fn verify_result(
    verifier: &Verifier,
    membership: &Membership,
    job: &Job,
    tainted: bool,
) -> Result<(), StoreError> {
    let executor = &verifier.executor;
    let worker = settling_execution(job).map(|e| e.worker.clone()).unwrap_or_default();
    // Every result of a quarantined worker is re-executed, also those it settled after it was
    // caught (the taint covers only what it had settled by then).
    let quarantined = with_retries("quarantined", || membership.quarantined()).await?.contains_key(&worker);
    let decision = if tainted || quarantined {
        Some(Decision::Reexecute)
    } else {
        let agreed = with_retries("agreed", || membership.agreed(&worker)).await?;
        verifier.strategies.decide(job, agreed)
    };
    let Some(decision) = decision.filter(|_| job.state == JobState::Succeeded) else { return Ok(()) };
    // Every settled result's receipt is checked, whatever the decision: it costs no
    // re-execution.
    let (outcome, compared) = match (check_receipt(membership, job).await?, decision) {
        (Err(refused), _) => (refused, Vec::new()),
        (Ok(()), Decision::Vouch) => (VerificationOutcome::Vouched, Vec::new()),
        (Ok(()), Decision::Reexecute) => recompute(executor, job).await,
        (Ok(()), Decision::Replicate { replicas }) => return replicate::ask(verifier, job, replicas).await,
    };
    act_on(verifier, membership, job, outcome, Vec::new(), compared).await
}

/// Checks a failure a worker reported (a trap, fuel, memory, a non-zero exit: what every honest
/// worker would meet too) by running the job: if it succeeds, the worker made the failure up —
/// it is quarantined and the job corrected to the verifier's result (a fan-out, which never
/// fails that way, runs again). A failure that is not vouched for by its worker's receipt is
/// refused and counted, and checked all the same.
async fn verify_failure(verifier: &Verifier, membership: &Membership, job: &Job) -> Result<(), StoreError> {
    let executor = &verifier.executor;
    let Some(execution) = job.executions.iter().rev().find(|e| e.outcome.is_some()) else { return Ok(()) };
    let worker = execution.worker.clone();
    if let Err(e) = receipt_of(membership, job, execution).await? {
        warn!(job = %job.id, %worker, reason = %e, "the receipt of a failure is REFUSED");
        with_retries("count_refusal", || membership.count_refusal(&worker)).await?;
    }
    if job.spec.fan_out.is_some() {
        warn!(job = %job.id, %worker, "a fan-out reported failed by its program; running it again");
        return run_again(executor, membership, &worker, job, "reported a failure for a fan-out it never fanned out")
            .await;
    }
    let failure = job.failure.clone().unwrap_or_else(|| Failure {
        reason: shoal_jobs::FailureReason::Internal,
        message: "failed without a recorded failure".into(),
        stderr: None,
        fuel_consumed: None,
    });
    let (outcome, corrected) = match rerun(executor, job).await {
        Rerun::Succeeded(result) => {
            warn!(job = %job.id, %worker, "verified: the failure was made up (DENIED); job corrected");
            quarantine(executor, membership, &worker, job, "reported a failure that re-execution does not have")
                .await?;
            (VerificationOutcome::Denied { worker, failure }, Some(result))
        }
        Rerun::Failed(_) => {
            with_retries("count_agreed", || membership.count_agreed(&worker)).await?;
            (VerificationOutcome::Agreed, None)
        }
        Rerun::Inconclusive(reason) => (VerificationOutcome::Inconclusive { reason }, None),
    };
    let verification = Verification {
        verifier: executor.id().to_string(),
        at_ms: now_ms(),
        outcome,
        corrected,
        failed: None,
        replicas: Vec::new(),
        compared: Vec::new(),
    };
    with_retries("record_verification", || executor.jobs().record_verification(&job.id, &verification)).await
}

/// Checks a fanned-out job's result by gathering its tasks' recorded outputs again: the
/// gathered directory is the same whoever builds it, so a result that differs was not the
/// gather's (it is corrected, and the worker named for the job quarantined), and one reported
/// for a job that never fanned out was made up (the worker is quarantined and the job runs
/// again, to be fanned out by another).
async fn verify_gathered(verifier: &Verifier, membership: &Membership, job: &Job) -> Result<(), StoreError> {
    let Some(reported) = job.result.clone() else { return Ok(()) };
    let worker = settling_execution(job).map_or_else(|| "(unknown)".to_string(), |e| e.worker.clone());
    let executor = &verifier.executor;
    let outcome = match executor.regather(&job.id).await {
        Ok(Some(output)) if output == reported.output => VerificationOutcome::Agreed,
        Ok(Some(output)) => VerificationOutcome::Disagreed {
            worker,
            recomputed: Box::new(ExecutionResult { output, ..reported.clone() }),
            reported: Box::new(reported),
        },
        Ok(None) => {
            warn!(job = %job.id, %worker, "a fan-out reported succeeded without fanning out; running it again");
            return run_again(executor, membership, &worker, job, "reported a fan-out it never fanned out").await;
        }
        Err(GatherError::Store(e)) => return Err(e),
        Err(e) => VerificationOutcome::Inconclusive { reason: format!("gathering again: {e}") },
    };
    act_on(verifier, membership, job, outcome, Vec::new(), Vec::new()).await
}

/// Quarantines `worker`, which made up how `job` finished, and runs the job again.
async fn run_again(
    executor: &Executor,
    membership: &Membership,
    worker: &str,
    job: &Job,
    reason: &str,
) -> Result<(), StoreError> {
    quarantine(executor, membership, worker, job, reason).await?;
    if with_retries("reopen", || executor.jobs().reopen(&job.id)).await? {
        with_retries("enqueue", || executor.jobs().enqueue(executor.queue(), &job.id, job.shard)).await?;
    }
    Ok(())
}

/// Records `outcome` for `job` (with the `replicas` run for it and the comparisons it rests on),
/// correcting its result and quarantining its worker when the outcome says so (a refusal only
/// once its worker has [`crate::VerifierConfig::refusals_to_quarantine`] of them).
pub(crate) async fn act_on(
    verifier: &Verifier,
    membership: &Membership,
    job: &Job,
    outcome: VerificationOutcome,
    replicas: Vec<String>,
    compared: Vec<Compared>,
) -> Result<(), StoreError> {
    let executor = &verifier.executor;
    let refusals_to_quarantine = verifier.refusals_to_quarantine;
    let (corrected, failed) = match &outcome {
        VerificationOutcome::Agreed
        | VerificationOutcome::Vouched
        | VerificationOutcome::Replicated { .. }
        | VerificationOutcome::Denied { .. }
        | VerificationOutcome::Inconclusive { .. } => (None, None),
        VerificationOutcome::Disagreed { recomputed, .. } => (Some((**recomputed).clone()), None),
        VerificationOutcome::Contradicted { failure, .. } => (None, Some(failure.clone())),
        // Not vouched for: the verifier's own run replaces it, whether or not it differs.
        VerificationOutcome::Refused { .. } => match rerun(executor, job).await {
            Rerun::Succeeded(result) => (Some(result), None),
            Rerun::Failed(failure) => (None, Some(failure)),
            Rerun::Inconclusive(_) => (None, None),
        },
    };
    match &outcome {
        VerificationOutcome::Agreed => {
            info!(job = %job.id, "verified: agreed");
            if let Some(execution) = settling_execution(job) {
                with_retries("count_agreed", || membership.count_agreed(&execution.worker)).await?;
            }
        }
        VerificationOutcome::Vouched => {}
        // Recorded by `verify_failure`, not here.
        VerificationOutcome::Denied { .. } => {}
        VerificationOutcome::Replicated { workers } => info!(job = %job.id, ?workers, "replicas agreed"),
        VerificationOutcome::Disagreed { worker, .. } => {
            warn!(job = %job.id, %worker, "verified: DISAGREED; result corrected");
            // The receipt was checked first: the worker signed this wrong result itself.
            quarantine(executor, membership, worker, job, "signed a result that re-execution contradicts").await?;
        }
        VerificationOutcome::Contradicted { worker, failure, .. } => {
            warn!(job = %job.id, %worker, reason = %failure.reason, "verified: CONTRADICTED; job failed");
            quarantine(executor, membership, worker, job, "signed a success that re-execution contradicts").await?;
        }
        VerificationOutcome::Refused { worker, reason } => {
            // Not quarantined on one alone: whoever wrote the record may not be the worker it
            // names (a forger framing an honest worker). Repeated, they quarantine it.
            warn!(job = %job.id, %worker, %reason, "receipt REFUSED; result corrected");
            let refusals = with_retries("count_refusal", || membership.count_refusal(worker)).await?;
            if refusals_to_quarantine > 0 && refusals >= refusals_to_quarantine {
                let why = format!("{refusals} of its receipts were refused, the last: {reason}");
                quarantine(executor, membership, worker, job, &why).await?;
            }
        }
        VerificationOutcome::Inconclusive { reason } => warn!(job = %job.id, %reason, "verification inconclusive"),
    }
    let verification = Verification {
        verifier: executor.id().to_string(),
        at_ms: now_ms(),
        outcome,
        corrected,
        failed,
        replicas,
        compared,
    };
    with_retries("record_verification", || executor.jobs().record_verification(&job.id, &verification)).await
}

/// Quarantines `worker`, caught on `job`, and puts every job it settled before back on the
/// verification streams as tainted.
pub(crate) async fn quarantine(
    executor: &Executor,
    membership: &Membership,
    worker: &str,
    job: &Job,
    reason: &str,
) -> Result<(), StoreError> {
    let why = Quarantine {
        reason: reason.to_string(),
        job: job.id.clone(),
        verifier: executor.id().to_string(),
        at_ms: now_ms(),
        settled: 0,
    };
    let (newly, tainted) = with_retries("quarantine", || membership.quarantine(worker, why.clone())).await?;
    if !newly {
        // Its results were re-queued when it was first caught (or, if the verifier doing that
        // died, by the next verifier to start): re-queueing them on every later catch would cost
        // the square of what it settled.
        return Ok(());
    }
    warn!(%worker, job = %job.id, tainted = tainted.len(), "worker QUARANTINED; re-verifying what it settled");
    requeue(executor, tainted.iter().filter(|id| **id != job.id)).await
}

/// Puts the jobs `ids` back on the verification streams.
pub(crate) async fn requeue<'a>(executor: &Executor, ids: impl Iterator<Item = &'a String>) -> Result<(), StoreError> {
    for id in ids {
        if let Some(job) = with_retries("get", || executor.jobs().get(id)).await? {
            with_retries("enqueue_verification", || executor.queue().enqueue_verification(job.shard, id)).await?;
        }
    }
    Ok(())
}

/// The execution that settled `job`: the first that completed with the reported result.
pub(crate) fn settling_execution(job: &Job) -> Option<&Execution> {
    let reported = job.result.as_ref()?;
    job.executions.iter().find(|e| matches!(&e.outcome, Some(ExecutionOutcome::Completed(r)) if r == reported))
}

/// Whether the execution that settled `job` carries a valid receipt of its worker: signed by the
/// key bound to the worker's id, for this very job, execution and outcome.
pub(crate) async fn check_receipt(
    membership: &Membership,
    job: &Job,
) -> Result<Result<(), VerificationOutcome>, StoreError> {
    let Some(execution) = settling_execution(job) else {
        return Ok(Err(VerificationOutcome::Refused {
            worker: "(unknown)".into(),
            reason: "no recorded execution produced the reported result".into(),
        }));
    };
    let checked = receipt_of(membership, job, execution).await?;
    Ok(checked.map_err(|e| VerificationOutcome::Refused { worker: execution.worker.clone(), reason: e.to_string() }))
}

/// Whether `execution` of `job` carries a valid receipt of its worker.
async fn receipt_of(
    membership: &Membership,
    job: &Job,
    execution: &Execution,
) -> Result<Result<(), ReceiptError>, StoreError> {
    let registered = with_retries("key_of", || membership.key_of(&execution.worker)).await?;
    Ok(match &execution.receipt {
        None => Err(ReceiptError::Missing),
        Some(receipt) => receipt.check(job, execution, registered.as_ref()),
    })
}

/// What the verifier's own run of a job came to.
pub(crate) enum Rerun {
    /// It exited 0 with this result.
    Succeeded(ExecutionResult),
    /// It failed as it would on every honest worker: a non-zero exit or a deterministic failure.
    Failed(Failure),
    /// It could not tell (content unavailable, the wall clock, the host), for this reason.
    Inconclusive(String),
}

/// Runs `job` as the verifier: the same fetch, runtime and output import as a worker's.
pub(crate) async fn rerun(executor: &Executor, job: &Job) -> Rerun {
    match executor.run_spec(&job.spec, &format!("verify-{}", ulid::Ulid::new())).await {
        Ok(result) if result.exit_code == 0 => Rerun::Succeeded(result),
        Ok(result) => Rerun::Failed(Failure::non_zero_exit(&result)),
        Err(failure) if failure.reason.is_deterministic() => Rerun::Failed(failure),
        Err(failure) => Rerun::Inconclusive(format!("re-execution failed ({}): {}", failure.reason, failure.message)),
    }
}

/// Re-executes `job` and compares with the result that settled it, under the spec's
/// comparison; the verdict and the comparison it rests on.
pub(crate) async fn recompute(executor: &Executor, job: &Job) -> (VerificationOutcome, Vec<Compared>) {
    let Some(reported) = job.result.clone() else {
        let reason = "the job succeeded without a recorded result".into();
        return (VerificationOutcome::Inconclusive { reason }, Vec::new());
    };
    let worker = settling_execution(job).map_or_else(|| "(unknown)".to_string(), |e| e.worker.clone());
    let recomputed = match rerun(executor, job).await {
        Rerun::Succeeded(result) => result,
        // The worker claimed success; the program in fact fails, everywhere.
        Rerun::Failed(failure) => {
            return (VerificationOutcome::Contradicted { worker, reported: Box::new(reported), failure }, Vec::new())
        }
        Rerun::Inconclusive(reason) => return (VerificationOutcome::Inconclusive { reason }, Vec::new()),
    };
    let judge = judge_of(job.spec.verification.compare());
    match judge.judge(executor, job, &reported, &recomputed, "re-execution").await {
        Ok(compared) if compared.agree() => (VerificationOutcome::Agreed, vec![compared]),
        Ok(compared) => {
            let outcome = VerificationOutcome::Disagreed {
                worker,
                reported: Box::new(reported),
                recomputed: Box::new(recomputed),
            };
            (outcome, vec![compared])
        }
        Err(reason) => (VerificationOutcome::Inconclusive { reason }, Vec::new()),
    }
}
