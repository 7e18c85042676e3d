//! The gateway's settings and the errors that stop it from starting.

use std::time::Duration;

use shoal_jobs::{StoreError, VerificationPolicy, DEFAULT_MEMO_TTL};

/// How a gateway connects to Redis and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The Redis holding jobs and shard streams, e.g. `redis://127.0.0.1:6379/`; several
    /// comma-separated URLs are seed nodes of a Redis Cluster.
    pub redis_url: String,
    /// How many shard streams jobs are spread over; at least 1, and the same as the workers'
    /// setting (a job is placed by `hash(first input) mod shards`). Set by [`GatewayConfig::new`].
    pub shards: u32,
    /// The largest request body accepted, in bytes; larger ones get 413 without being read.
    /// Default [`GatewayConfig::DEFAULT_MAX_BODY_BYTES`] (1 MiB); at least 1.
    pub max_body_bytes: usize,
    /// How long one request may take, body upload included, before it is answered with 504.
    /// Default [`GatewayConfig::DEFAULT_REQUEST_TIMEOUT`] (30 s).
    pub request_timeout: Duration,
    /// How long one Redis command or connection attempt may take before the request fails with
    /// 503; short, so an unreachable Redis is reported rather than waited on.
    /// Default [`GatewayConfig::DEFAULT_REDIS_TIMEOUT`] (2 s).
    pub redis_timeout: Duration,
    /// Entries outstanding over all shard streams (queued or running) beyond which submissions
    /// are refused with 429 and `Retry-After`; `None` never refuses.
    /// Default [`GatewayConfig::DEFAULT_MAX_BACKLOG`].
    pub max_backlog: Option<u64>,
    /// How often the backlog is sampled for [`GatewayConfig::max_backlog`].
    /// Default [`GatewayConfig::DEFAULT_BACKLOG_SAMPLE_INTERVAL`] (250 ms).
    pub backlog_sample_interval: Duration,
    /// The verification policy of a job whose spec names none: the deployment's default
    /// (`sampled` unless set).
    pub default_verification: VerificationPolicy,
    /// Networks webhooks may be sent to besides public addresses (loopback, private, link-local
    /// and the like are refused otherwise). Empty by default; `shoal dev` allows loopback.
    pub webhook_allowed_networks: Vec<ipnet::IpNet>,
    /// The most connections held open at once; beyond it a new connection is answered 503
    /// `too_many_connections` at once and closed. Keep it below the process's open-file limit
    /// (`ulimit -n`), with room for Redis connections. Applied by [`crate::serve_with`].
    /// Default [`GatewayConfig::default_max_connections`]; at least 1.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers — from when it opens, or
    /// from the end of its previous answer — before it is closed. Applied by
    /// [`crate::serve_with`]. Default [`GatewayConfig::DEFAULT_HEADER_READ_TIMEOUT`] (10 s).
    pub header_read_timeout: Duration,
    /// Trustless gateways (`http://127.0.0.1:8081`) that job inputs and outputs are read from
    /// for `GET /v1/jobs/{id}/files/…`, tried in order, every block verified against its CID.
    /// Empty by default: those endpoints then answer 501 `content_not_configured`.
    pub content_gateways: Vec<String>,
    /// The largest file one request to `GET /v1/jobs/{id}/files/…` streams; a larger one is
    /// answered 413 `file_too_large` (`shoal get` fetches any size).
    /// Default [`GatewayConfig::DEFAULT_MAX_FILE_BYTES`] (64 MiB).
    pub max_file_bytes: u64,
    /// How long an accepted result answers the same tenant's identical submissions
    /// (memoisation by invocation CID; a spec opts out with `"memoise": false`); `None` turns
    /// memoisation off. Default [`GatewayConfig::DEFAULT_MEMO_TTL`] (7 days).
    pub memo_ttl: Option<Duration>,
}

impl GatewayConfig {
    /// The default body limit: 1 MiB, far above any real job spec.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
    /// The default request timeout.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default Redis command and connection timeout.
    pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
    /// The default backlog limit: a million outstanding entries, about 100 MB of Redis memory.
    pub const DEFAULT_MAX_BACKLOG: Option<u64> = Some(1_000_000);
    /// The default backlog sampling interval.
    pub const DEFAULT_BACKLOG_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
    /// The default header-read timeout: ample for any client that means to send a request.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// The most connections [`GatewayConfig::default_max_connections`] allows, however high
    /// the open-file limit.
    pub const MAX_DEFAULT_CONNECTIONS: usize = 10_000;
    /// The default largest file served by one request: 64 MiB, far above a preview image.
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
    /// The default memo expiry: a week.
    pub const DEFAULT_MEMO_TTL: Option<Duration> = Some(DEFAULT_MEMO_TTL);

    /// The default connection limit: three quarters of the process's open-file limit (the rest
    /// is for Redis connections and files), at most [`GatewayConfig::MAX_DEFAULT_CONNECTIONS`];
    /// 768 if the limit cannot be read (three quarters of the common 1024).
    pub fn default_max_connections() -> usize {
        let open_files = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        open_files.map_or(768, |limit| (limit / 4 * 3) as usize).clamp(1, Self::MAX_DEFAULT_CONNECTIONS)
    }

    /// A configuration for the Redis at `redis_url` with `shards` shard streams and every other
    /// setting at its default: 1 MiB bodies, 30 s per request, 2 s per Redis command, at most a
    /// million entries outstanding, 10 s to send a request's headers, connections up to three
    /// quarters of the open-file limit, no content sources, files up to 64 MiB, accepted results
    /// memoised for a week.
    pub fn new(redis_url: impl Into<String>, shards: u32) -> GatewayConfig {
        GatewayConfig {
            redis_url: redis_url.into(),
            shards,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            redis_timeout: Self::DEFAULT_REDIS_TIMEOUT,
            max_backlog: Self::DEFAULT_MAX_BACKLOG,
            backlog_sample_interval: Self::DEFAULT_BACKLOG_SAMPLE_INTERVAL,
            default_verification: VerificationPolicy::default(),
            webhook_allowed_networks: Vec::new(),
            max_connections: Self::default_max_connections(),
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            content_gateways: Vec::new(),
            max_file_bytes: Self::DEFAULT_MAX_FILE_BYTES,
            memo_ttl: Self::DEFAULT_MEMO_TTL,
        }
    }
}

/// Why a gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A setting is out of range.
    #[error("invalid gateway configuration: {0}")]
    InvalidConfig(String),
    /// The Redis URL does not parse, or Redis could not be reached at start-up.
    #[error("cannot connect to Redis at {address}: {source}")]
    Connect {
        /// The server's address (host and port; never the password).
        address: String,
        /// The client's error.
        #[source]
        source: StoreError,
    },
    /// The shard streams' consumer groups could not be created.
    #[error("cannot create the shard streams' consumer groups: {0}")]
    ShardGroups(#[source] StoreError),
}
