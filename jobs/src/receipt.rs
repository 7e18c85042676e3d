//! Worker identity and signed receipts.
//!
//! Every worker holds an ed25519 key ([`WorkerKey`], created on first start and kept in its
//! home) and registers its public half with its id ([`crate::Membership::bind_key`]): the first
//! key an id registers is the id's for good. Every execution it settles carries a
//! [`SignedReceipt`]: the job, the invocation CID, the execution, the worker, its key, the times
//! and the outcome (output CIDs included), signed over the receipt's canonical JSON. The signed
//! receipt's own canonical JSON is a raw IPFS block, so a receipt is named by a CID
//! ([`SignedReceipt::cid`]), fetchable from the content server and checkable offline
//! (`shoal receipt verify`).
//!
//! [`SignedReceipt::check`] is what the trusted side (the verifier) applies before it accepts an
//! execution: a valid signature by the key registered for the worker, over exactly the execution
//! recorded in the job. A worker cannot sign for another id (the key is bound), replay another
//! job's receipt (the job, execution and outcome are inside), or alter its outcome afterwards.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use cid::Cid;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use multihash_codetable::{Code, MultihashDigest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{ContentId, Execution, ExecutionOutcome, Job};

/// Multicodec of a raw block: a receipt is its canonical JSON as one raw block.
const RAW_CODEC: u64 = 0x55;

/// A worker's signing key.
pub struct WorkerKey {
    signing: SigningKey,
}

impl fmt::Debug for WorkerKey {
    /// Shows the public half only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerKey").field("public", &self.public().to_string()).finish()
    }
}

impl WorkerKey {
    /// A new random key.
    pub fn generate() -> WorkerKey {
        WorkerKey { signing: SigningKey::from_bytes(&rand::random::<[u8; 32]>()) }
    }

    /// The key kept at `path` (its 32-byte secret in hex), created there — readable by its owner
    /// only — if there is none yet.
    pub fn load_or_create(path: &Path) -> Result<WorkerKey, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let seed: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| KeyError::Malformed { path: path.display().to_string() })?;
                Ok(WorkerKey { signing: SigningKey::from_bytes(&seed) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = WorkerKey::generate();
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                write_secret(path, &hex::encode(key.signing.to_bytes())).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The public half, which the worker registers with its id.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// Signs `receipt`, which must name this key.
    pub fn sign(&self, receipt: Receipt) -> SignedReceipt {
        debug_assert_eq!(receipt.key, self.public(), "a receipt is signed by the key it names");
        let signature = self.signing.sign(&receipt.canonical());
        SignedReceipt { receipt, signature: hex::encode(signature.to_bytes()) }
    }
}

/// Writes a secret file readable by its owner only.
fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Why a worker key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("worker key {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold 32 bytes in hex.
    #[error("worker key {path} is not a 32-byte secret in hex")]
    Malformed {
        /// The key file.
        path: String,
    },
}

/// A worker's public key, written `ed25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = ReceiptError;

    fn from_str(text: &str) -> Result<PublicKey, ReceiptError> {
        let malformed = || ReceiptError::Malformed(format!("{text:?} is not an ed25519:<hex> public key"));
        let bytes: [u8; 32] = text
            .strip_prefix("ed25519:")
            .and_then(|hex_digits| hex::decode(hex_digits).ok())
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(malformed)?;
        VerifyingKey::from_bytes(&bytes).map(PublicKey).map_err(|_| malformed())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a worker states about one execution of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The job.
    pub job: String,
    /// The job spec's invocation CID: what was run.
    pub invocation: ContentId,
    /// The execution (unique within the job).
    pub execution: String,
    /// The worker that ran it.
    pub worker: String,
    /// The key that signs: the one registered for the receipt's `worker`.
    #[schema(value_type = String)]
    pub key: PublicKey,
    /// When the worker started it, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// When it finished.
    pub finished_at_ms: u64,
    /// What it produced (output, stdout and stderr CIDs, exit code, fuel) or why it failed.
    pub outcome: ExecutionOutcome,
}

impl Receipt {
    /// The receipt for `execution` of `job`, run by the holder of `key`; `None` while the
    /// execution is unfinished.
    pub fn of(job: &Job, execution: &Execution, key: PublicKey) -> Option<Receipt> {
        Receipt::of_job(&job.id, job.invocation, execution, key)
    }

    /// [`Receipt::of`] job `job` by its id and invocation CID, without its record at hand.
    pub fn of_job(job: &str, invocation: ContentId, execution: &Execution, key: PublicKey) -> Option<Receipt> {
        Some(Receipt {
            job: job.to_string(),
            invocation,
            execution: execution.id.clone(),
            worker: execution.worker.clone(),
            key,
            started_at_ms: execution.started_at_ms,
            finished_at_ms: execution.finished_at_ms?,
            outcome: execution.outcome.clone()?,
        })
    }

    /// The bytes signed: the receipt's JSON, fields in declaration order.
    fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Receipt always serialises")
    }
}

/// A receipt and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// What is signed.
    pub receipt: Receipt,
    /// The ed25519 signature of the receipt's canonical JSON by its `key`, in hex.
    pub signature: String,
}

impl SignedReceipt {
    /// The canonical JSON: the bytes of the receipt's block.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a SignedReceipt always serialises")
    }

    /// The receipt read back from its block's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedReceipt, ReceiptError> {
        serde_json::from_slice(bytes).map_err(|e| ReceiptError::Malformed(e.to_string()))
    }

    /// The receipt's CID: a raw block of its canonical JSON (what `ipfs add --cid-version=1
    /// --raw-leaves` gives the same bytes).
    pub fn cid(&self) -> Cid {
        Cid::new_v1(RAW_CODEC, Code::Sha2_256.digest(&self.to_bytes()))
    }

    /// Whether the signature is the named key's over the receipt, nothing else considered.
    pub fn verify_signature(&self) -> Result<(), ReceiptError> {
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| ReceiptError::Malformed("the signature is not 64 bytes in hex".into()))?;
        self.receipt
            .key
            .0
            .verify(&self.receipt.canonical(), &Signature::from_bytes(&bytes))
            .map_err(|_| ReceiptError::BadSignature)
    }

    /// Whether this receipt vouches for `execution` of `job`, signed by `registered`, the key
    /// bound to the execution's worker (`None`: the worker never registered one).
    pub fn check(&self, job: &Job, execution: &Execution, registered: Option<&PublicKey>) -> Result<(), ReceiptError> {
        self.verify_signature()?;
        let receipt = &self.receipt;
        match registered {
            None => return Err(ReceiptError::UnknownWorker { worker: execution.worker.clone() }),
            Some(key) if *key != receipt.key || receipt.worker != execution.worker => {
                return Err(ReceiptError::WrongKey { worker: execution.worker.clone() })
            }
            Some(_) => {}
        }
        if receipt.job != job.id || receipt.execution != execution.id {
            return Err(ReceiptError::NotAssigned { job: receipt.job.clone(), execution: receipt.execution.clone() });
        }
        let mismatch = if receipt.invocation != job.invocation {
            Some("invocation")
        } else if Some(&receipt.outcome) != execution.outcome.as_ref() {
            Some("outcome")
        } else if receipt.started_at_ms != execution.started_at_ms
            || Some(receipt.finished_at_ms) != execution.finished_at_ms
        {
            Some("times")
        } else {
            None
        };
        match mismatch {
            Some(field) => Err(ReceiptError::Mismatch { field }),
            None => Ok(()),
        }
    }
}

/// Why a receipt does not vouch for an execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The execution carries no receipt.
    #[error("the execution carries no receipt")]
    Missing,
    /// The receipt or a part of it does not parse.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The signature is not the named key's over the receipt.
    #[error("the signature does not match the receipt")]
    BadSignature,
    /// The worker has no registered key.
    #[error("worker {worker} has no registered key")]
    UnknownWorker {
        /// The worker.
        worker: String,
    },
    /// Signed by a key other than the one registered for the worker, or naming another worker.
    #[error("not signed by the key registered for worker {worker}")]
    WrongKey {
        /// The worker the execution is recorded for.
        worker: String,
    },
    /// The receipt is for another job or execution (a replay).
    #[error("the receipt is for job {job} execution {execution}, not this one")]
    NotAssigned {
        /// The job it names.
        job: String,
        /// The execution it names.
        execution: String,
    },
    /// The receipt disagrees with the execution recorded.
    #[error("the receipt's {field} differs from the execution recorded")]
    Mismatch {
        /// Which part differs.
        field: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExecutionResult, JobSpec, JobState};

    fn cid(text: &str) -> ContentId {
        ContentId(Cid::new_v1(RAW_CODEC, Code::Sha2_256.digest(text.as_bytes())))
    }

    fn job_with(execution: &Execution) -> Job {
        let spec = JobSpec::from_json(br#"{"program":"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"}"#)
            .expect("a valid spec");
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "id": "job-1", "invocation": ContentId(spec.invocation_cid()), "spec": spec,
            "tenant": "acme", "state": JobState::Succeeded, "shard": 0,
            "created_at_ms": 1, "updated_at_ms": 2, "executions": [],
        }))
        .expect("a job");
        job.executions.push(execution.clone());
        job
    }

    fn execution(worker: &str, output: &str) -> Execution {
        Execution {
            id: format!("{worker}-1"),
            worker: worker.to_string(),
            started_at_ms: 10,
            finished_at_ms: Some(20),
            outcome: Some(ExecutionOutcome::Completed(ExecutionResult {
                exit_code: 0,
                output: cid(output),
                stdout: cid(""),
                stderr: cid(""),
                fuel_consumed: 7,
                fetch_ms: 1,
                run_ms: 2,
                inputs_cached: 0,
            })),
            receipt: None,
        }
    }

    fn signed(key: &WorkerKey, job: &Job, execution: &Execution) -> SignedReceipt {
        key.sign(Receipt::of(job, execution, key.public()).expect("finished"))
    }

    #[test]
    fn an_honest_receipt_checks_and_round_trips_through_its_block() {
        let key = WorkerKey::generate();
        let execution = execution("w1", "out");
        let job = job_with(&execution);
        let receipt = signed(&key, &job, &execution);
        receipt.check(&job, &execution, Some(&key.public())).unwrap();
        let back = SignedReceipt::from_bytes(&receipt.to_bytes()).unwrap();
        assert_eq!(back, receipt);
        assert_eq!(back.cid(), receipt.cid());
        assert_eq!(receipt.cid().codec(), RAW_CODEC);
    }

    #[test]
    fn forged_replayed_and_altered_receipts_are_refused() {
        let (honest, forger) = (WorkerKey::generate(), WorkerKey::generate());
        let execution = execution("w1", "out");
        let job = job_with(&execution);

        // Signed with another key under the honest worker's id.
        let forged = signed(&forger, &job, &execution);
        assert_eq!(
            forged.check(&job, &execution, Some(&honest.public())),
            Err(ReceiptError::WrongKey { worker: "w1".into() })
        );
        assert_eq!(forged.check(&job, &execution, None), Err(ReceiptError::UnknownWorker { worker: "w1".into() }));

        // The outcome altered after signing.
        let mut altered = signed(&honest, &job, &execution);
        altered.receipt.outcome = execution_outcome_with(&execution, "other");
        assert_eq!(altered.check(&job, &execution, Some(&honest.public())), Err(ReceiptError::BadSignature));

        // A genuine receipt of another execution, replayed.
        let mut other = execution.clone();
        other.id = "w1-2".into();
        let replayed = signed(&honest, &job, &other);
        assert!(matches!(
            replayed.check(&job, &execution, Some(&honest.public())),
            Err(ReceiptError::NotAssigned { .. })
        ));

        // A genuine receipt whose outcome is not what the record says.
        let lied = execution_with_output(&execution, "other");
        let mismatched = signed(&honest, &job, &lied);
        assert_eq!(
            mismatched.check(&job, &execution, Some(&honest.public())),
            Err(ReceiptError::Mismatch { field: "outcome" })
        );

        let mut garbled = signed(&honest, &job, &execution);
        garbled.signature = "00".into();
        assert!(matches!(garbled.check(&job, &execution, Some(&honest.public())), Err(ReceiptError::Malformed(_))));
    }

    fn execution_outcome_with(execution: &Execution, output: &str) -> ExecutionOutcome {
        execution_with_output(execution, output).outcome.expect("finished")
    }

    fn execution_with_output(execution: &Execution, output: &str) -> Execution {
        let mut changed = execution.clone();
        if let Some(ExecutionOutcome::Completed(result)) = &mut changed.outcome {
            result.output = cid(output);
        }
        changed
    }

    #[test]
    fn keys_persist_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("w1.key");
        let first = WorkerKey::load_or_create(&path).unwrap();
        let again = WorkerKey::load_or_create(&path).unwrap();
        assert_eq!(first.public(), again.public());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "nope").unwrap();
        assert!(matches!(WorkerKey::load_or_create(&path), Err(KeyError::Malformed { .. })));
        let public = first.public();
        assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
    }
}
