//! `replicated` verification: asking distinct workers to run a job again, and deciding once
//! they have. Replicas that all agree leave the job `replicated` (spot-checked by re-execution
//! at the sample rate); any disagreement is settled by the verifier's own re-execution, and
//! every worker that signed a result other than the verifier's is quarantined — the first
//! worker and the replicas' alike, so colluders that agree on a lie are caught together.

use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::{
    keys::Lock, with_retries, Candidate, Created, ExecutionResult, Idempotency, Job, JobState, Membership,
    ReplicationStore, ShardAssignment, StoreError, VerificationOutcome, VerificationPolicy,
};
use tracing::{info, warn};

use crate::compare::judge_of;
use crate::verify::{act_on, check_receipt, quarantine, recompute, settling_execution};
use crate::Verifier;

/// Replicas asked beyond the `replicas - 1` a job needs, for those that cannot count (run by a
/// worker that had already run the job, lost, unvouched); past them the verifier re-executes
/// the job itself.
const EXTRA_REPLICAS: usize = 3;

/// Waiting jobs looked at per round.
const JOBS_PER_ROUND: usize = 64;

/// Asks for the replicas `job` still lacks (`replicas - 1` in all) and puts it on the waiting
/// set. Safe to repeat: each replica is created once, under an idempotency key of its own.
pub(crate) async fn ask(verifier: &Verifier, job: &Job, replicas: u32) -> Result<(), StoreError> {
    let store = ReplicationStore::new(verifier.executor.jobs().connection());
    let asked = with_retries("replicas", || store.replicas(&job.id)).await?;
    let mut ran: Vec<String> = job.executions.iter().map(|e| e.worker.clone()).collect();
    for n in asked.len()..(replicas as usize).saturating_sub(1) {
        ran.push(ask_one(verifier, &store, job, n, &ran).await?);
    }
    with_retries("wait", || store.wait(&job.id)).await
}

/// Creates (once) and queues `job`'s `n`th replica: the same program and inputs, no
/// verification of its own, on a shard read by a worker the verifier picks at random among the
/// live ones that have not run the job (`ran`) — so workers cannot choose to replicate each
/// other. A replica that still reaches a worker that ran the job (a steal, a change of owner)
/// does not count, and another is asked for. Returns the worker it was meant for.
async fn ask_one(
    verifier: &Verifier,
    store: &ReplicationStore,
    job: &Job,
    n: usize,
    ran: &[String],
) -> Result<String, StoreError> {
    let jobs = verifier.executor.jobs();
    let queue = verifier.executor.queue();
    let (meant_for, shard) = replica_shard(verifier, ran).await?;
    let mut spec = job.spec.clone();
    spec.verification = VerificationPolicy::None;
    // A replica is the verifier's own check: its owner is told of the job, not of the replica.
    spec.notify = None;
    let key = format!("shoal-replica:{}:{n}", job.id);
    let (Created::New(replica) | Created::Existing(replica)) = with_retries("create replica", || {
        jobs.submit(queue, &spec, shard, &job.tenant, Some(Idempotency::Internal(&key)))
    })
    .await?;
    info!(job = %job.id, replica = %replica.id, shard = replica.shard, worker = %meant_for, "replica asked for");
    with_retries("add_replica", || store.add_replica(&job.id, &replica.id)).await?;
    Ok(meant_for)
}

/// A live, unquarantined worker that is none of `ran`, picked at random, and a shard it reads;
/// any shard if there is no such worker.
async fn replica_shard(verifier: &Verifier, ran: &[String]) -> Result<(String, u32), StoreError> {
    let membership = Membership::new(verifier.executor.jobs().connection());
    let window = Membership::live_window(verifier.heartbeat);
    let quarantined = with_retries("quarantined", || membership.quarantined()).await?;
    let live: Vec<Candidate> = with_retries("live", || membership.live(window))
        .await?
        .into_iter()
        .filter(|m| !quarantined.contains_key(&m.info.id))
        .map(|m| Candidate::new(&m.info.id, m.info.capacity))
        .collect();
    let others: Vec<&Candidate> = live.iter().filter(|c| !ran.contains(&c.id)).collect();
    let any = || ("(any)".to_string(), rand::random::<u32>() % verifier.shards.max(1));
    let Some(chosen) = (!others.is_empty()).then(|| others[rand::random::<u32>() as usize % others.len()]) else {
        return Ok(any());
    };
    let theirs = ShardAssignment::new(verifier.shards, 1).shards_of(&chosen.id, &live);
    Ok(match theirs.len() {
        0 => any(),
        len => (chosen.id.clone(), theirs[rand::random::<u32>() as usize % len]),
    })
}

/// Looks at the jobs waiting for replicas every `every` until aborted; one verifier at a time.
pub(crate) async fn sweeper(verifier: Arc<Verifier>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if let Err(e) = sweep(&verifier, verifier.visibility).await {
            warn!(error = %e, "looking at replicated jobs failed; trying again next round");
        }
    }
}

/// One round, if this verifier gets the lock (held up to `hold`): decides on every waiting job
/// whose replicas have all finished.
async fn sweep(verifier: &Verifier, hold: Duration) -> Result<(), StoreError> {
    let executor = &verifier.executor;
    if !executor.jobs().take_lock(Lock::Replication, executor.id(), hold).await? {
        return Ok(());
    }
    let store = ReplicationStore::new(executor.jobs().connection());
    for id in store.waiting(JOBS_PER_ROUND).await? {
        if decide(verifier, &store, &id).await? {
            with_retries("done", || store.done(&id)).await?;
        }
    }
    Ok(())
}

/// What a replica's worker signed for.
enum Claim {
    /// Success with this result.
    Succeeded(Box<ExecutionResult>),
    /// A deterministic failure: the program fails everywhere.
    Failed,
}

/// A replica that counts: run by a worker distinct from the others, not quarantined, under a
/// valid receipt.
struct Counted {
    worker: String,
    replica: Job,
    claim: Claim,
}

/// Decides on job `id` if its replicas have all finished; whether it is done waiting.
async fn decide(verifier: &Verifier, store: &ReplicationStore, id: &str) -> Result<bool, StoreError> {
    let executor = &verifier.executor;
    let jobs = executor.jobs();
    let Some(job) = with_retries("get", || jobs.get(id)).await? else { return Ok(true) };
    let VerificationPolicy::Replicated { replicas: wanted, quorum, compare } = &job.spec.verification else {
        return Ok(true);
    };
    let (wanted, quorum) = (*wanted as usize, quorum.map(|q| q as usize));
    let (Some(reported), Some(first)) = (job.result.clone(), settling_execution(&job).map(|e| e.worker.clone())) else {
        return Ok(true);
    };
    if job.state != JobState::Succeeded || job.verification.is_some() {
        return Ok(true);
    }
    let ids = with_retries("replicas", || store.replicas(id)).await?;
    let mut replicas = Vec::new();
    for replica in &ids {
        match with_retries("get", || jobs.get(replica)).await? {
            Some(replica) if !replica.state.is_terminal() => return Ok(false),
            Some(replica) => replicas.push(replica),
            None => {}
        }
    }
    let membership = Membership::new(jobs.connection());
    let quarantined = with_retries("quarantined", || membership.quarantined()).await?;
    let replicas_ran: Vec<String> =
        replicas.iter().flat_map(|r| r.executions.iter().map(|e| e.worker.clone())).collect();
    let mut counted: Vec<Counted> = Vec::new();
    for replica in replicas {
        let claim = match replica.state {
            JobState::Succeeded => match &replica.result {
                Some(result) => Claim::Succeeded(Box::new(result.clone())),
                None => continue,
            },
            JobState::Failed if replica.failure.as_ref().is_some_and(|f| f.reason.is_deterministic()) => Claim::Failed,
            // Lost, timed out, cancelled: says nothing about the result.
            _ => continue,
        };
        let Some(worker) = replica.executions.last().map(|e| e.worker.clone()) else { continue };
        let distinct = worker != first && !counted.iter().any(|c| c.worker == worker);
        if !distinct || quarantined.contains_key(&worker) {
            continue;
        }
        if matches!(claim, Claim::Succeeded(_)) && check_receipt(&membership, &replica).await?.is_err() {
            with_retries("count_refusal", || membership.count_refusal(&worker)).await?;
            continue;
        }
        counted.push(Counted { worker, replica, claim });
    }
    // Each counted replica judged against the reported result, under the spec's comparison; one
    // that cannot be judged counts as dissent, which only the verifier's own run can settle.
    let judge = judge_of(compare);
    let mut compared = Vec::new();
    let mut agrees = Vec::with_capacity(counted.len());
    for c in &counted {
        let agree = match &c.claim {
            Claim::Succeeded(result) => match judge.judge(executor, &job, &reported, result, &c.replica.id).await {
                Ok(judged) => {
                    let agree = judged.agree();
                    compared.push(judged);
                    agree
                }
                Err(reason) => {
                    warn!(job = %job.id, replica = %c.replica.id, %reason, "a replica could not be compared");
                    false
                }
            },
            Claim::Failed => false,
        };
        agrees.push(agree);
    }
    let agreeing = 1 + agrees.iter().filter(|a| **a).count();
    let dissent = agrees.iter().any(|a| !a);
    // Without a quorum every replica must agree; with one, `quorum` agreeing executions carry it
    // and dissenters (honest variance, or liars outvoted) are recorded, not quarantined — unless
    // a spot check (the verifier's own run) backs the reported result against them.
    let carried = match quorum {
        None => !dissent && agreeing >= wanted,
        Some(quorum) => agreeing >= quorum,
    };
    let outcome = if carried {
        let agreed = with_retries("agreed", || membership.agreed(&first)).await?;
        if verifier.strategies.spot_check(&job, agreed) {
            let (outcome, judged) = recompute(executor, &job).await;
            compared.extend(judged);
            outcome
        } else {
            let mut workers = vec![first.clone()];
            workers.extend(counted.iter().zip(&agrees).filter(|(_, agree)| **agree).map(|(c, _)| c.worker.clone()));
            // Remembered as theirs too: if any of them is caught, this result is re-verified.
            for worker in &workers[1..] {
                with_retries("record_settled", || membership.record_settled(worker, &job.id)).await?;
            }
            VerificationOutcome::Replicated { workers }
        }
    } else if (quorum.is_some() || !dissent) && counted.len() + 1 < wanted && ids.len() + 1 < wanted + EXTRA_REPLICAS {
        let mut ran: Vec<String> = job.executions.iter().map(|e| e.worker.clone()).collect();
        ran.extend(replicas_ran);
        ask_one(verifier, store, &job, ids.len(), &ran).await?;
        return Ok(false);
    } else {
        if dissent {
            warn!(job = %job.id, "replicas DISAGREE; re-executing to settle it");
        } else {
            warn!(job = %job.id, asked = ids.len(), "too few distinct replicas; re-executing instead");
        }
        let (outcome, judged) = recompute(executor, &job).await;
        compared.extend(judged);
        outcome
    };
    // Every replica that signed something other than what re-execution found is caught too (the
    // first worker is, in `act_on`).
    for (c, agreed_with_reported) in counted.iter().zip(&agrees) {
        let wrong = match (&outcome, &c.claim) {
            (VerificationOutcome::Agreed, _) => !agreed_with_reported,
            (VerificationOutcome::Disagreed { recomputed, .. }, Claim::Succeeded(result)) => {
                match judge.judge(executor, &job, recomputed, result, &c.replica.id).await {
                    Ok(judged) => !judged.agree(),
                    // Not caught on a comparison that could not be made.
                    Err(_) => false,
                }
            }
            (VerificationOutcome::Disagreed { .. }, Claim::Failed) => true,
            (VerificationOutcome::Contradicted { .. }, claim) => matches!(claim, Claim::Succeeded(_)),
            _ => false,
        };
        if wrong {
            let why = "signed a replica's result that re-execution contradicts";
            quarantine(executor, &membership, &c.worker, &c.replica, why).await?;
        }
    }
    act_on(verifier, &membership, &job, outcome, ids, compared).await?;
    Ok(true)
}
