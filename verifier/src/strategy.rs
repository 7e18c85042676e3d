//! How the verifier decides what to do about a result whose receipt checked out: the
//! [`Strategy`] trait, the one place a verification strategy plugs in, and the strategies a job's
//! [`VerificationPolicy`] selects — trusted re-execution (`always`), sampling with a
//! [`Sampler`] (`sampled`; [`ReputationWeighted`] makes it reputation-weighted) and k-of-n
//! replication across distinct workers (`replicated`).

use sha2::{Digest, Sha256};
use shoal_jobs::{Job, VerificationPolicy};

/// What the verifier does about one settled result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Re-execute it and compare: the trusted check, after which the result is accepted
    /// (`verified`) or replaced (`corrected`).
    Reexecute,
    /// Leave it on its worker's signed word (`unsampled`).
    Vouch,
    /// Have distinct workers run it, `replicas` executions in all, and compare theirs; the
    /// verifier re-executes only if they disagree (or, at its sample rate, to spot-check them).
    Replicate {
        /// Executions in all, the first included.
        replicas: u32,
    },
}

/// What a strategy knows of a result when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    /// The job, as its worker settled it.
    pub job: &'a Job,
    /// Results of the job's worker that the verifier re-executed and agreed with.
    pub agreed: u64,
    /// This verifier's draw for this job: uniform in [0, 1), keyed with a secret only the
    /// verifier holds, so no worker can tell which of its results will be re-executed.
    pub draw: f64,
}

/// The one place a verification strategy plugs in: given a result whose receipt is valid, what
/// to do about it. (Results whose worker was caught since, or is quarantined, are re-executed
/// whatever a strategy says.)
pub trait Strategy: Send + Sync {
    /// The decision for the result `standing` describes.
    fn decide(&self, standing: &Standing<'_>) -> Decision;
}

/// `always`: every result re-executed by the verifier.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustedReexecution;

impl Strategy for TrustedReexecution {
    fn decide(&self, _: &Standing<'_>) -> Decision {
        Decision::Reexecute
    }
}

/// `sampled`: a result re-executed with the probability its [`Sampler`] gives its worker.
pub struct Sampling(pub Box<dyn Sampler>);

impl Strategy for Sampling {
    fn decide(&self, standing: &Standing<'_>) -> Decision {
        if standing.draw < self.0.rate(standing.agreed) {
            Decision::Reexecute
        } else {
            Decision::Vouch
        }
    }
}

/// `replicated`: `replicas` executions by distinct workers in all.
#[derive(Debug, Clone, Copy)]
pub struct Replication {
    /// Executions in all, the first included.
    pub replicas: u32,
}

impl Strategy for Replication {
    fn decide(&self, _: &Standing<'_>) -> Decision {
        Decision::Replicate { replicas: self.replicas }
    }
}

/// How often a worker's results are re-executed: what [`Sampling`] draws against.
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

/// The strategies of one verifier: which one a job's policy selects, and the verifier's secret
/// for its draws.
pub(crate) struct Strategies {
    sampling: Sampling,
    /// Drawn when the verifier starts and never shared, so workers cannot predict the sample.
    secret: [u8; 32],
}

impl Strategies {
    /// Strategies sampling with `sampler`, drawing with `secret`.
    pub(crate) fn new(sampler: Box<dyn Sampler>, secret: [u8; 32]) -> Strategies {
        Strategies { sampling: Sampling(sampler), secret }
    }

    /// What to do about `job`'s result, its worker having `agreed` agreed re-executions;
    /// `None` for a job whose policy asks for no verification.
    pub(crate) fn decide(&self, job: &Job, agreed: u64) -> Option<Decision> {
        let standing = Standing { job, agreed, draw: draw(&self.secret, &job.id) };
        Some(match job.spec.verification {
            VerificationPolicy::None => return None,
            VerificationPolicy::Sampled { .. } => self.sampling.decide(&standing),
            VerificationPolicy::Always { .. } => TrustedReexecution.decide(&standing),
            VerificationPolicy::Replicated { replicas, .. } => Replication { replicas }.decide(&standing),
        })
    }

    /// Whether to spot-check `job`, whose replicas agreed: sampled like a `sampled` result of
    /// its worker.
    pub(crate) fn spot_check(&self, job: &Job, agreed: u64) -> bool {
        let standing = Standing { job, agreed, draw: draw(&self.secret, &job.id) };
        self.sampling.decide(&standing) == Decision::Reexecute
    }
}

/// The draw for job `job_id` with `secret`: a keyed hash of the id mapped to [0, 1), so the same
/// verifier (and a rerun of it) draws the same, while a worker, which does not know the secret,
/// cannot tell.
fn draw(secret: &[u8; 32], job_id: &str) -> f64 {
    let digest = Sha256::new().chain_update(secret).chain_update(job_id.as_bytes()).finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64
}

/// Whether job `job_id` is in the sample of `rate` drawn with `secret`.
pub fn sampled(secret: &[u8; 32], job_id: &str, rate: f64) -> bool {
    draw(secret, job_id) < rate
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

    #[test]
    fn each_policy_selects_its_strategy() {
        let job = |policy: &str| {
            let spec = format!(r#"{{"program": "bafkqaaa", "verification": {policy}}}"#);
            let spec = shoal_jobs::JobSpec::from_json(spec.as_bytes()).unwrap();
            serde_json::from_value::<Job>(serde_json::json!({
                "id": "j", "invocation": "bafkqaaa", "spec": spec, "tenant": "acme", "state": "succeeded",
                "created_at_ms": 0, "updated_at_ms": 0, "shard": 0
            }))
            .unwrap()
        };
        let never = Strategies::new(Box::new(FixedRate(0.0)), [1; 32]);
        let every = Strategies::new(Box::new(FixedRate(1.0)), [1; 32]);
        assert_eq!(never.decide(&job(r#"{"mode": "none"}"#), 0), None);
        assert_eq!(never.decide(&job(r#"{"mode": "always"}"#), 0), Some(Decision::Reexecute));
        assert_eq!(never.decide(&job(r#"{"mode": "sampled"}"#), 0), Some(Decision::Vouch));
        assert_eq!(every.decide(&job(r#"{"mode": "sampled"}"#), 0), Some(Decision::Reexecute));
        assert_eq!(
            never.decide(&job(r#"{"mode": "replicated", "replicas": 3}"#), 0),
            Some(Decision::Replicate { replicas: 3 })
        );
        assert!(every.spot_check(&job(r#"{"mode": "replicated", "replicas": 2}"#), 0));
        assert!(!never.spot_check(&job(r#"{"mode": "replicated", "replicas": 2}"#), 0));
    }
}
