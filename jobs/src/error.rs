//! Errors of the job model and the Redis layer.

/// A job spec that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The body is not JSON at all.
    #[error("malformed JSON: {reason}")]
    MalformedJson {
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A field is missing, unknown, of the wrong type or out of range.
    #[error("{}{reason}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Field {
        /// The field's path (`inputs[0].cid`), empty for the top level.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The spec's arguments, environment and inputs together are larger than
    /// [`crate::JobSpec::MAX_PAYLOAD_BYTES`]: every listing, status and worker reads the spec
    /// back, so its size is bounded however large a body the gateway takes.
    #[error("{field}: {reason}")]
    TooLarge {
        /// The largest of `args`, `env` and `inputs`, the one to shrink first.
        field: String,
        /// The sizes and the limit.
        reason: String,
    },
}

/// A failure talking to Redis or reading what it holds.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or refused a command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A record in Redis does not decode: written by another version, or corrupted.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The Redis key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No such job.
    #[error("job {0} not found")]
    JobNotFound(String),
    /// The worker id is registered with another key: a second worker under the same id, or a
    /// key lost and made anew (the operator must free the id).
    #[error("worker id {worker:?} is registered with another key ({registered})")]
    KeyConflict {
        /// The worker id.
        worker: String,
        /// The key registered for it.
        registered: String,
    },
    /// The idempotency key was used before with a different spec.
    #[error("idempotency key {key:?} was used for job {job} with a different spec")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The job it names.
        job: String,
    },
    /// Redis refused this client's user something its role needs (`NOPERM`): the server's ACL
    /// is not the one this version writes — a Redis left running from an older version, say.
    #[error(
        "Redis refused {what} ({source}); write the ACL file this version makes (`shoal redis-acl`) \
         and have Redis read it (`ACL LOAD` as the admin, or a restart)"
    )]
    NotPermitted {
        /// What was refused.
        what: String,
        /// Redis's answer.
        source: redis::RedisError,
    },
    /// The submission was past its tenant's submissions a second; nothing was stored.
    #[error("tenant {tenant} may submit {per_sec} jobs per second; submit again in a second")]
    RateLimited {
        /// The tenant.
        tenant: String,
        /// Its quota.
        per_sec: u64,
    },
}

impl StoreError {
    /// Whether the failure is Redis being away for a moment — the connection dropped or was
    /// refused, a timeout, or Redis still loading its data after a restart — so the same command
    /// is worth sending again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.code() == Some("LOADING")
            }
            _ => false,
        }
    }
}
