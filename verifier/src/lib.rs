//! Shoal's verifier: checks every succeeded job's signed receipt, decides how far to check its
//! result, and acts on what it finds.
//!
//! Workers put every job that succeeded (unless its spec says `verification: none`) on their
//! shard's verification stream. A verifier reads those streams through its consumer group and
//! first checks the receipt of the execution that settled the job ([`shoal_jobs::SignedReceipt`]):
//! a result not vouched for by its worker's registered key is `refused`, counted against the
//! worker, and replaced by the verifier's own run. The job's policy then selects a [`Strategy`]
//! (the one place a strategy plugs in), which decides: re-execute (`always`; `sampled` at the
//! rate its [`Sampler`] gives the worker, drawn with a secret only the verifier holds), vouch
//! (`unsampled`), or replicate (`replicated`: distinct workers run it again, [`replicate`]).
//! Every *tainted* result (its worker was caught since) and every result of a quarantined worker
//! is re-executed whatever the strategy says. Re-execution goes through the worker's own
//! [`Executor::run_spec`], so fetching, the runtime and output import are the very same code.
//! Two results are compared as the spec's `compare` says, through the one [`Judge`] trait:
//! byte equality ([`ExactMatch`], the default), numbers of named output files within
//! tolerances ([`WithinTolerance`]) or the user's comparator program ([`ComparatorProgram`]);
//! every comparison is recorded with the verdict.
//! The verdict ([`VerificationOutcome`](shoal_jobs::VerificationOutcome)) goes into the job
//! record: `agreed`, `vouched`, `replicated`, `disagreed` (with both results: the job is
//! corrected to the verifier's, and the worker, which signed the wrong one, is quarantined and
//! everything it settled tainted), `contradicted`, `refused` or `inconclusive`.
//!
//! Several verifiers may share the streams (one consumer group): each renews its claim while it
//! re-executes, and takes over what a dead one left pending past the visibility timeout, so a
//! verifier crash loses no verification.
//!
//! - `strategy`: [`Strategy`], [`Decision`], the strategies and samplers.
//! - `compare`: [`Judge`] and the comparisons.
//! - `verify`: one delivered result: receipt, decision, re-execution, verdict, quarantine.
//! - `replicate`: asking for replicas and deciding once they ran.

mod compare;
mod replicate;
mod strategy;
mod verify;

use std::time::Duration;

use std::sync::Arc;

pub use compare::{judge_of, ComparatorProgram, ExactMatch, Judge, WithinTolerance, OTHER_MOUNT, REPORTED_MOUNT};
use shoal_jobs::{with_retries, Delivery, Lane, ShardQueue, ShardReader, StoreError};
use shoal_worker::{Executor, WorkerConfig, WorkerError};
use strategy::Strategies;
pub use strategy::{
    sampled, Decision, FixedRate, Replication, ReputationWeighted, Sampler, Sampling, Standing, Strategy,
    TrustedReexecution,
};
use tracing::{info, warn};

/// How often waiting replicated jobs are looked at.
const REPLICATION_SWEEP: Duration = Duration::from_millis(500);

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

/// A running verifier: its executor (the workers' own), its strategies and its limits.
pub(crate) struct Verifier {
    pub(crate) executor: Executor,
    pub(crate) strategies: Strategies,
    /// [`VerifierConfig::refusals_to_quarantine`].
    pub(crate) refusals_to_quarantine: u64,
    /// Shard streams, to place replicas on.
    pub(crate) shards: u32,
    /// How long a claim (an entry, a lock) lasts unrenewed.
    pub(crate) visibility: Duration,
    /// The workers' heartbeat interval, to tell the live ones.
    pub(crate) heartbeat: Duration,
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

/// Runs a verifier until `shutdown` resolves, finishing the verification in progress.
pub async fn run(config: VerifierConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), VerifierError> {
    if !(0.0..=1.0).contains(&config.sample_rate) {
        return Err(VerifierError::InvalidSampleRate(config.sample_rate));
    }
    let urls = config.worker.redis_urls();
    let executor = Executor::open(&config.worker).await?;
    let verifier = Arc::new(Verifier {
        executor,
        strategies: Strategies::new(config.sampler(), rand::random()),
        refusals_to_quarantine: config.refusals_to_quarantine,
        shards: config.worker.shards,
        visibility: config.worker.visibility_timeout,
        heartbeat: config.worker.heartbeat,
    });
    let executor = &verifier.executor;
    // A verifier that died while re-queueing a caught worker's results left some of them
    // tainted and off the streams: every verifier puts what is still tainted back as it starts.
    let membership = shoal_jobs::Membership::new(executor.jobs().connection());
    let tainted = with_retries("tainted", || membership.tainted()).await?;
    verify::requeue(executor, tainted.iter()).await?;
    let _sweeper = Background(tokio::spawn(replicate::sweeper(verifier.clone(), REPLICATION_SWEEP)));
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
            Background(tokio::spawn(renew(executor.queue().clone(), id.clone(), deliveries.clone(), visibility / 3)));
        for delivery in &deliveries {
            verify::verify(&verifier, delivery).await?;
            with_retries("ack", || executor.queue().ack(delivery)).await?;
        }
        drop(renewal);
    }
    Ok(())
}

/// A background task of the verifier (renewing a read's claims, sweeping replicated jobs),
/// stopped when dropped, however the work it serves ends.
struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_sampler_is_reputation_weighted_when_asked() {
        let worker = WorkerConfig::new("v", "redis://127.0.0.1:1/", std::path::Path::new("/tmp"));
        let plain = VerifierConfig::new(worker.clone(), 0.05);
        assert_eq!(plain.sampler().rate(0), 0.05);
        let weighted = VerifierConfig { reputation_halving: Some(10), ..VerifierConfig::new(worker, 0.05) };
        assert_eq!(weighted.sampler().rate(0), 1.0);
        assert_eq!(weighted.sampler().rate(10_000), 0.05);
    }
}
