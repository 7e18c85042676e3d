//! One connection type for a single Redis node and for a Redis Cluster.
//!
//! [`RedisConnection`] is what the store, the queue and the membership registry talk through.
//! Commands and scripts go through it unchanged: every script and transaction Shoal sends
//! touches keys of one slot (see [`crate::keys`]), so the cluster client routes each by its
//! first key. Only batches of independent commands over many slots differ: the cluster client
//! refuses a pipeline that spans slots, so [`Batch`] splits them into one pipeline per slot.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

use crate::error::StoreError;
use crate::keys;

/// A connection to Shoal's Redis: one node, or a cluster of them. Cheap to clone: clones share
/// the underlying (auto-reconnecting, multiplexed) connections.
#[derive(Clone)]
pub enum RedisConnection {
    /// A single Redis node, through a reconnecting connection manager.
    Single(ConnectionManager),
    /// A Redis Cluster: commands are routed to the node owning their keys' slot.
    Cluster(ClusterConnection),
}

/// The Redis URLs in `spec`: one URL for a single node, several comma-separated for the seed
/// nodes of a Redis Cluster. The one place a `--redis` value is read.
pub fn redis_urls(spec: &str) -> Vec<String> {
    spec.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_string).collect()
}

/// Where `urls` point, for messages: host and port of each, never a password.
pub fn redis_addresses(urls: &[String]) -> String {
    let addresses: Vec<String> = urls
        .iter()
        .map(|url| match redis::Client::open(url.as_str()) {
            Ok(client) => client.get_connection_info().addr().to_string(),
            Err(_) => "(unparsable URL)".to_string(),
        })
        .collect();
    addresses.join(", ")
}

/// How patiently a [`RedisConnection`] talks to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a reply may take.
    pub response_timeout: Duration,
    /// How often a failed command is retried on a fresh connection before its error is
    /// returned; `None` keeps the client's default.
    pub retries: Option<usize>,
}

impl Default for ConnectOptions {
    /// Patient: workers send batches over thousands of shards or tasks, which a busy Redis can
    /// take longer than redis-rs's default half second to answer, and a timed-out batch is only
    /// sent again.
    fn default() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: RedisConnection::RESPONSE_TIMEOUT,
            response_timeout: RedisConnection::RESPONSE_TIMEOUT,
            retries: None,
        }
    }
}

impl ConnectOptions {
    /// Quick to give up: one retry, each wait at most `timeout` — for a request handler that
    /// should answer 503 at once rather than hang on a reconnect.
    pub fn fail_fast(timeout: Duration) -> ConnectOptions {
        ConnectOptions { connect_timeout: timeout, response_timeout: timeout, retries: Some(1) }
    }
}

impl RedisConnection {
    /// Connects to the Redis at `urls` with [`ConnectOptions::default`]: one URL is a single
    /// node; several are seed nodes of a cluster (any of its nodes will do; the client discovers
    /// the rest). No URL at all is the cluster client's configuration error.
    pub async fn open(urls: &[String]) -> Result<RedisConnection, StoreError> {
        RedisConnection::open_with(urls, ConnectOptions::default()).await
    }

    /// Connects to the Redis at `urls` as [`RedisConnection::open`] does, with `options`: the
    /// one place connections are built.
    pub async fn open_with(urls: &[String], options: ConnectOptions) -> Result<RedisConnection, StoreError> {
        match urls {
            [url] => {
                let mut config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(Some(options.response_timeout));
                if let Some(retries) = options.retries {
                    config = config.set_number_of_retries(retries).set_max_delay(options.response_timeout);
                }
                Ok(ConnectionManager::new_with_config(redis::Client::open(url.as_str())?, config).await?.into())
            }
            _ => {
                let mut builder = ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.response_timeout);
                if let Some(retries) = options.retries {
                    builder = builder.retries(retries as u32);
                }
                Ok(builder.build()?.get_async_connection().await?.into())
            }
        }
    }

    /// How long [`RedisConnection::open`]'s connections wait for a reply.
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }

    /// Runs the independent commands of `batch` and returns their replies in order: one
    /// pipeline on a single node; on a cluster, one pipeline per slot, all in flight at once.
    pub async fn query_batch<T: FromRedisValue>(&self, batch: &Batch) -> RedisResult<Vec<T>> {
        // An empty pipeline is not a command Redis accepts ("empty command").
        if batch.commands.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            RedisConnection::Single(conn) => {
                let mut pipe = redis::pipe();
                for (_, cmd) in &batch.commands {
                    pipe.add_command(cmd.clone());
                }
                pipe.query_async(&mut conn.clone()).await
            }
            RedisConnection::Cluster(conn) => query_batch_cluster(conn, batch).await,
        }
    }

    /// Up to `per_set` members of each of `sets`, drawn at random, read in one batch (the
    /// notice sets fan-outs and pipelines keep per job tag), each with its set.
    pub async fn sample_sets(&self, sets: Vec<String>, per_set: usize) -> RedisResult<Vec<(String, Vec<String>)>> {
        let mut batch = Batch::new();
        for set in &sets {
            batch.add(set, redis::cmd("SRANDMEMBER").arg(set).arg(per_set).clone());
        }
        let members: Vec<Vec<String>> = self.query_batch(&batch).await?;
        Ok(sets.into_iter().zip(members).collect())
    }
}

/// Runs `batch` on a cluster: one pipeline per slot, sent concurrently, replies put back in the
/// batch's order.
pub(crate) async fn query_batch_cluster<T: FromRedisValue>(
    conn: &ClusterConnection,
    batch: &Batch,
) -> RedisResult<Vec<T>> {
    let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (index, (slot, _)) in batch.commands.iter().enumerate() {
        by_slot.entry(*slot).or_default().push(index);
    }
    // Spawned so that the slots' pipelines are in flight together; the set aborts them if the
    // caller gives up waiting.
    let mut tasks = tokio::task::JoinSet::new();
    for indexes in by_slot.into_values() {
        let mut pipe = Pipeline::with_capacity(indexes.len());
        for &index in &indexes {
            pipe.add_command(batch.commands[index].1.clone());
        }
        let mut conn = conn.clone();
        tasks.spawn(async move { pipe.query_async::<Vec<Value>>(&mut conn).await.map(|values| (indexes, values)) });
    }
    let mut replies: Vec<Option<Value>> = vec![None; batch.commands.len()];
    while let Some(joined) = tasks.join_next().await {
        // Nothing else can cancel these tasks, so a join error is a panic: pass it on.
        let (indexes, values) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        for (index, value) in indexes.into_iter().zip(values) {
            replies[index] = Some(value);
        }
    }
    replies.into_iter().map(|value| Ok(redis::from_redis_value(value.unwrap_or(Value::Nil))?)).collect()
}

/// Independent commands, each touching keys of one slot (not necessarily the same slot for
/// all), for [`RedisConnection::query_batch`]. Not a transaction: each command stands alone.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    commands: Vec<(u16, Cmd)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds `cmd`, whose keys all live in the slot of `key`.
    pub fn add(&mut self, key: &str, cmd: Cmd) -> &mut Batch {
        self.commands.push((keys::cluster_slot(key), cmd));
        self
    }

    /// The number of commands in the batch.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether the batch holds no command.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(conn: ConnectionManager) -> RedisConnection {
        RedisConnection::Single(conn)
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(conn: ClusterConnection) -> RedisConnection {
        RedisConnection::Cluster(conn)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(conn) => conn.get_db(),
            RedisConnection::Cluster(conn) => conn.get_db(),
        }
    }
}
