//! Shoal's verifier: checks every succeeded job's signed receipt, re-executes a sample, and acts
//! on what it finds.
//!
//! Workers put every job that succeeded (unless its spec says `verification: none`) on their
//! shard's verification stream. A verifier reads those streams through its consumer group and
//! first checks the receipt of the execution that settled the job ([`shoal_jobs::SignedReceipt`]):
//! a result not vouched for by its worker's registered key is `refused`, counted against the
//! worker, and replaced by the verifier's own run. It then picks the jobs to re-execute — all of
//! them for `always`, every *tainted* one (its worker was caught since), and for `sampled` a
//! deterministic draw (by a hash of the job id) at the rate its [`Sampler`] gives the worker —
//! and re-executes each through the worker's own [`Executor::run_spec`], so fetching, the runtime
//! and output import are the very same code. The verdict ([`VerificationOutcome`]) goes into the
//! job record: `agreed`, `vouched` (not sampled), `disagreed` (with both results: the job is
//! corrected to the verifier's, and the worker, which signed the wrong one, is quarantined and
//! everything it settled tainted), `refused` or `inconclusive`.
//!
//! Several verifiers may share the streams (one consumer group): each renews its claim while it
//! re-executes, and takes over what a dead one left pending past the visibility timeout, so a
//! verifier crash loses no verification.

use std::time::Duration;

use sha2::{Digest, Sha256};
use shoal_jobs::{
    now_ms, with_retries, Delivery, Execution, ExecutionOutcome, ExecutionResult, Failure, Job, JobState, Lane,
    Membership, Quarantine, ReceiptError, ShardQueue, ShardReader, StoreError, Verification, VerificationOutcome,
    VerificationPolicy,
};
use shoal_worker::{Executor, WorkerConfig, WorkerError};
use tracing::{info, warn};

/// How a verifier is set up.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Where it fetches and runs: the same settings a worker takes (its `id` names the verifier).
    pub worker: WorkerConfig,
    /// Fraction of `sampled` jobs re-executed, from 0 to 1; with reputation-weighted sampling,
    /// the floor no worker's rate falls below.
    pub sample_rate: f64,
    /// Reputation-weighted sampling: a new worker's results are all re-executed, and its rate
    /// halves with every this many agreed re-executions, down to [`VerifierConfig::sample_rate`].
    /// `None`: every worker at [`VerifierConfig::sample_rate`].
    pub reputation_halving: Option<u64>,
    /// Refused receipts after which the worker they name is quarantined; 0: never.
    pub refusals_to_quarantine: u64,
}

impl VerifierConfig {
    /// Refused receipts that quarantine a worker unless configured otherwise. One refusal may be
    /// a framing (anyone who can write a job record can name any worker); a worker whose
    /// results keep failing their receipt check forges, replays or is broken, and its results
    /// are worth nothing either way.
    pub const DEFAULT_REFUSALS_TO_QUARANTINE: u64 = 3;

    /// A verifier of `worker`'s settings, re-executing `sample_rate` of `sampled` results,
    /// every worker alike, quarantining after [`Self::DEFAULT_REFUSALS_TO_QUARANTINE`] refusals.
    pub fn new(worker: WorkerConfig, sample_rate: f64) -> VerifierConfig {
        VerifierConfig {
            worker,
            sample_rate,
            reputation_halving: None,
            refusals_to_quarantine: Self::DEFAULT_REFUSALS_TO_QUARANTINE,
        }
    }

    /// The sampler this configuration describes.
    pub fn sampler(&self) -> Box<dyn Sampler> {
        match self.reputation_halving {
            None => Box::new(FixedRate(self.sample_rate)),
            Some(halving) => Box::new(ReputationWeighted { floor: self.sample_rate, halving: halving.max(1) }),
        }
    }
}

/// A sampler and the verifier's secret: which `sampled` results it re-executes; and the
/// verifier's patience with refused receipts.
struct Sampling {
    sampler: Box<dyn Sampler>,
    /// Drawn when the verifier starts and never shared, so workers cannot predict the sample.
    secret: [u8; 32],
    /// [`VerifierConfig::refusals_to_quarantine`].
    refusals_to_quarantine: u64,
}

impl Sampling {
    /// Whether to re-execute job `job_id`, settled by a worker with `agreed` agreed results.
    fn sampled(&self, job_id: &str, agreed: u64) -> bool {
        sampled(&self.secret, job_id, self.sampler.rate(agreed))
    }
}

/// Which `sampled` results the verifier re-executes: the one place a sampling strategy plugs in.
/// (`always` results, tainted ones and every result of a quarantined worker are re-executed
/// whatever it says; `none` results only when tainted or their worker is quarantined.)
pub trait Sampler: Send + Sync {
    /// The probability of re-executing a result of a worker the verifier has agreed with
    /// `agreed` times before.
    fn rate(&self, agreed: u64) -> f64;
}

/// Every worker alike.
#[derive(Debug, Clone, Copy)]
pub struct FixedRate(pub f64);

impl Sampler for FixedRate {
    fn rate(&self, _agreed: u64) -> f64 {
        self.0
    }
}

/// New workers fully sampled; the rate halves with every `halving` agreed re-executions, never
/// below `floor`. A worker earns trust only by results the verifier re-ran, and a sleeper that
/// turns later is still sampled at the floor, and caught there.
#[derive(Debug, Clone, Copy)]
pub struct ReputationWeighted {
    /// The lowest rate.
    pub floor: f64,
    /// Agreed re-executions per halving of the rate.
    pub halving: u64,
}

impl Sampler for ReputationWeighted {
    fn rate(&self, agreed: u64) -> f64 {
        let halvings = (agreed / self.halving.max(1)).min(1023) as i32;
        0.5f64.powi(halvings).max(self.floor)
    }
}

/// Why a verifier stopped.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The sample rate is not a fraction.
    #[error("sample rate must be between 0 and 1, got {0}")]
    InvalidSampleRate(f64),
    /// Setting up the executor failed.
    #[error(transparent)]
    Setup(#[from] WorkerError),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether job `job_id` is in the sample of `rate`, drawn with `secret`: a keyed hash of the id,
/// so the same verifier (and a rerun of it) picks the same jobs, while a worker, which does not
/// know the secret, cannot tell which of its results will be re-executed.
pub fn sampled(secret: &[u8; 32], job_id: &str, rate: f64) -> bool {
    let digest = Sha256::new().chain_update(secret).chain_update(job_id.as_bytes()).finalize();
    let draw = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
    draw < rate
}

/// Runs a verifier until `shutdown` resolves, finishing the verification in progress.
pub async fn run(config: VerifierConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), VerifierError> {
    if !(0.0..=1.0).contains(&config.sample_rate) {
        return Err(VerifierError::InvalidSampleRate(config.sample_rate));
    }
    let urls = config.worker.redis_urls();
    let sampling = Sampling {
        sampler: config.sampler(),
        secret: rand::random(),
        refusals_to_quarantine: config.refusals_to_quarantine,
    };
    let executor = Executor::open(&config.worker).await?;
    let shards: Vec<u32> = (0..config.worker.shards).collect();
    let id = config.worker.id.clone();
    let mut reader = ShardReader::open(&urls, Lane::Verify, &shards, &id, config.worker.poll_block).await?;
    let mut resume_pending = true;
    let visibility = config.worker.visibility_timeout;
    let mut next_reclaim = tokio::time::Instant::now();
    info!(verifier = %id, sample_rate = config.sample_rate, "verifier started");
    tokio::pin!(shutdown);
    loop {
        // Several verifiers share the streams; one that died (or hangs) leaves its entries
        // pending, and another takes them over once unrenewed past the visibility timeout.
        let reclaim = !resume_pending && tokio::time::Instant::now() >= next_reclaim;
        let read = tokio::select! {
            _ = &mut shutdown => break,
            read = async {
                if reclaim {
                    executor.queue().reclaim(Lane::Verify, &shards, &id, visibility, 1).await
                } else if resume_pending {
                    reader.pending(1).await
                } else {
                    reader.next(1).await
                }
            } => read,
        };
        let deliveries = match read {
            Ok(deliveries) => deliveries,
            Err(e) => {
                warn!(error = %e, "reading verification streams failed; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(fresh) = ShardReader::open(&urls, Lane::Verify, &shards, &id, config.worker.poll_block).await
                {
                    reader = fresh;
                    resume_pending = true;
                }
                continue;
            }
        };
        if reclaim {
            if deliveries.is_empty() {
                next_reclaim = tokio::time::Instant::now() + visibility / 2;
            } else {
                info!(count = deliveries.len(), "took over verifications of a dead or hung verifier");
            }
        } else if deliveries.is_empty() {
            resume_pending = false;
        }
        // A read may return an entry per stream: all of them are renewed while they wait and
        // run, so no other verifier takes them over meanwhile.
        let renewal =
            Renewal(tokio::spawn(renew(executor.queue().clone(), id.clone(), deliveries.clone(), visibility / 3)));
        for delivery in &deliveries {
            verify(&executor, delivery, &sampling).await?;
            with_retries("ack", || executor.queue().ack(delivery)).await?;
        }
        drop(renewal);
    }
    Ok(())
}

/// The renewal of a read's claims, stopped when dropped, however the verification ends.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews `consumer`'s claims on `deliveries` every `every` until aborted.
async fn renew(queue: ShardQueue, consumer: String, deliveries: Vec<Delivery>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        if let Err(e) = queue.renew(&consumer, &deliveries).await {
            warn!(error = %e, "renewing the verifications' claims failed; retrying");
        }
    }
}

/// Checks one delivered job and records the verdict: its receipt always; its result by
/// re-execution if it is in the sample or tainted (its worker was caught since). A result that
/// disagrees, or is not vouched for by its worker's receipt, is corrected to the verifier's own
/// re-execution; a worker caught with a result it signed is quarantined and everything it
/// settled before becomes tainted.
async fn verify(executor: &Executor, delivery: &Delivery, sampling: &Sampling) -> Result<(), StoreError> {
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
    // A fan-out's gathered output is no execution's: its tasks are verified one by one.
    let fanned_out = job.spec.fan_out.is_some();
    if (job.verification.is_some() && !tainted) || reexecuted || fanned_out {
        if tainted {
            with_retries("clear_taint", || membership.clear_taint(&job.id)).await?;
        }
        return Ok(());
    }
    let worker = settling_execution(&job).map(|e| e.worker.clone()).unwrap_or_default();
    // Every result of a quarantined worker is re-executed, also those it settled after it was
    // caught (the taint covers only what it had settled by then).
    let quarantined = with_retries("quarantined", || membership.quarantined()).await?.contains_key(&worker);
    if job.spec.verification == VerificationPolicy::None && !tainted && !quarantined {
        return Ok(());
    }
    let chosen = tainted
        || quarantined
        || match job.spec.verification {
            VerificationPolicy::Always => true,
            VerificationPolicy::Sampled => {
                let agreed = with_retries("agreed", || membership.agreed(&worker)).await?;
                sampling.sampled(&job.id, agreed)
            }
            VerificationPolicy::None => false,
        };
    if job.state == JobState::Succeeded {
        // Every settled result's receipt is checked, sampled or not: it costs no re-execution.
        let outcome = match check_receipt(executor, &job).await? {
            Err(refused) => refused,
            Ok(()) if !chosen => VerificationOutcome::Vouched,
            Ok(()) => recompute(executor, &job).await,
        };
        act_on(executor, &membership, &job, outcome, sampling.refusals_to_quarantine).await?;
    }
    // Verified now, whether it was tainted before or became so when its worker was caught on it.
    with_retries("clear_taint", || membership.clear_taint(&job.id)).await?;
    Ok(())
}

/// Records `outcome` for `job`, correcting its result and quarantining its worker when the
/// outcome says so (a refusal only once its worker has `refusals_to_quarantine` of them).
async fn act_on(
    executor: &Executor,
    membership: &Membership,
    job: &Job,
    outcome: VerificationOutcome,
    refusals_to_quarantine: u64,
) -> Result<(), StoreError> {
    let (corrected, failed) = match &outcome {
        VerificationOutcome::Agreed | VerificationOutcome::Vouched | VerificationOutcome::Inconclusive { .. } => {
            (None, None)
        }
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
    let verification =
        Verification { verifier: executor.id().to_string(), at_ms: now_ms(), outcome, corrected, failed };
    with_retries("record_verification", || executor.jobs().record_verification(&job.id, &verification)).await
}

/// Quarantines `worker`, caught on `job`, and puts every job it settled before back on the
/// verification streams as tainted.
async fn quarantine(
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
    if newly {
        warn!(%worker, job = %job.id, tainted = tainted.len(), "worker QUARANTINED; re-verifying what it settled");
    }
    // Re-queued on every catch, not only the first: a verifier that died half-way through left
    // the rest still tainted. Each is verified once; a repeat finds its verdict and stops.
    for id in tainted.iter().filter(|id| **id != job.id) {
        if let Some(other) = with_retries("get", || executor.jobs().get(id)).await? {
            with_retries("enqueue_verification", || executor.queue().enqueue_verification(other.shard, id)).await?;
        }
    }
    Ok(())
}

/// The execution that settled `job`: the first that completed with the reported result.
fn settling_execution(job: &Job) -> Option<&Execution> {
    let reported = job.result.as_ref()?;
    job.executions.iter().find(|e| matches!(&e.outcome, Some(ExecutionOutcome::Completed(r)) if r == reported))
}

/// Whether the execution that settled `job` carries a valid receipt of its worker: signed by the
/// key bound to the worker's id, for this very job, execution and outcome.
async fn check_receipt(executor: &Executor, job: &Job) -> Result<Result<(), VerificationOutcome>, StoreError> {
    let Some(execution) = settling_execution(job) else {
        return Ok(Err(VerificationOutcome::Refused {
            worker: "(unknown)".into(),
            reason: "no recorded execution produced the reported result".into(),
        }));
    };
    let membership = Membership::new(executor.jobs().connection());
    let registered = with_retries("key_of", || membership.key_of(&execution.worker)).await?;
    let checked = match &execution.receipt {
        None => Err(ReceiptError::Missing),
        Some(receipt) => receipt.check(job, execution, registered.as_ref()),
    };
    Ok(checked.map_err(|e| VerificationOutcome::Refused { worker: execution.worker.clone(), reason: e.to_string() }))
}

/// What the verifier's own run of a job came to.
enum Rerun {
    /// It exited 0 with this result.
    Succeeded(ExecutionResult),
    /// It failed as it would on every honest worker: a non-zero exit or a deterministic failure.
    Failed(Failure),
    /// It could not tell (content unavailable, the wall clock, the host), for this reason.
    Inconclusive(String),
}

/// Runs `job` as the verifier: the same fetch, runtime and output import as a worker's.
async fn rerun(executor: &Executor, job: &Job) -> Rerun {
    match executor.run_spec(&job.spec, &format!("verify-{}", ulid::Ulid::new())).await {
        Ok(result) if result.exit_code == 0 => Rerun::Succeeded(result),
        Ok(result) => Rerun::Failed(Failure::non_zero_exit(&result)),
        Err(failure) if failure.reason.is_deterministic() => Rerun::Failed(failure),
        Err(failure) => Rerun::Inconclusive(format!("re-execution failed ({}): {}", failure.reason, failure.message)),
    }
}

/// Re-executes `job` and compares with the result that settled it.
async fn recompute(executor: &Executor, job: &Job) -> VerificationOutcome {
    let Some(reported) = job.result.clone() else {
        return VerificationOutcome::Inconclusive { reason: "the job succeeded without a recorded result".into() };
    };
    let worker = settling_execution(job).map_or_else(|| "(unknown)".to_string(), |e| e.worker.clone());
    let recomputed = match rerun(executor, job).await {
        Rerun::Succeeded(result) => result,
        // The worker claimed success; the program in fact fails, everywhere.
        Rerun::Failed(failure) => {
            return VerificationOutcome::Contradicted { worker, reported: Box::new(reported), failure }
        }
        Rerun::Inconclusive(reason) => return VerificationOutcome::Inconclusive { reason },
    };
    let same = recomputed.exit_code == reported.exit_code
        && recomputed.fuel_consumed == reported.fuel_consumed
        && recomputed.output == reported.output
        && recomputed.stdout == reported.stdout
        && recomputed.stderr == reported.stderr;
    if same {
        return VerificationOutcome::Agreed;
    }
    VerificationOutcome::Disagreed { worker, reported: Box::new(reported), recomputed: Box::new(recomputed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reputation_starts_at_full_sampling_and_falls_to_the_floor() {
        let sampler = ReputationWeighted { floor: 0.05, halving: 10 };
        assert_eq!(sampler.rate(0), 1.0, "a new worker is fully sampled");
        assert_eq!(sampler.rate(9), 1.0);
        assert_eq!(sampler.rate(10), 0.5);
        assert_eq!(sampler.rate(30), 0.125);
        assert_eq!(sampler.rate(1_000), 0.05, "never below the floor");
        assert_eq!(sampler.rate(u64::MAX), 0.05);
        assert_eq!(FixedRate(0.2).rate(0), 0.2);
        let config = VerifierConfig {
            reputation_halving: Some(10),
            ..VerifierConfig::new(WorkerConfig::new("v", "redis://127.0.0.1:1/", std::path::Path::new("/tmp")), 0.05)
        };
        assert_eq!(config.sampler().rate(0), 1.0);
    }

    #[test]
    fn sampling_is_deterministic_and_close_to_the_rate() {
        let ids: Vec<String> = (0..20_000).map(|n| format!("job-{n}")).collect();
        let (secret, other) = ([7u8; 32], [8u8; 32]);
        let picked = ids.iter().filter(|id| sampled(&secret, id, 0.1)).count();
        assert!((1_700..=2_300).contains(&picked), "{picked} of 20000 at rate 0.1");
        assert!(ids.iter().all(|id| sampled(&secret, id, 0.1) == sampled(&secret, id, 0.1)));
        assert!(ids.iter().all(|id| sampled(&secret, id, 1.0)));
        assert!(!ids.iter().any(|id| sampled(&secret, id, 0.0)));
        // Another secret draws another sample: without it, the sample cannot be predicted.
        let same = ids.iter().filter(|id| sampled(&secret, id, 0.1) && sampled(&other, id, 0.1)).count();
        assert!(same < picked / 2, "{same} of {picked} picked under both secrets");
    }
}
