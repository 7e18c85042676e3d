//! Shoal's edge worker.
//!
//! A worker reads jobs from its shard streams ([`shoal_jobs::ShardReader`]), records each attempt
//! as an [`Execution`], fetches the program and inputs through verified block sources
//! ([`shoal_content::source::SourceChain`]), keeps them in size-weighted caches
//! ([`cache`]), runs the program in the shared deterministic runtime ([`shoal_runtime`]),
//! imports `/outputs`, stdout and stderr as UnixFS, and settles the job in one atomic step
//! before acknowledging the stream entry. A worker that dies mid-job leaves the entry pending and
//! the job `running` with its execution visible; another worker takes the entry over once it
//! has gone unrenewed for the visibility timeout (see `docs/reliability.md`).

pub mod cache;
pub mod execute;
pub mod fanout;
pub mod retry;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use shoal_content::source::{HttpGatewaySource, SourceChain};
use shoal_content::{BlockSource, BlockStore, FsBlockStore};
use shoal_jobs::backlog::{longest, oldest_waiting, take_unread};
use shoal_jobs::{
    keys, now_ms, shard_backlogs, Candidate, Delivery, FanOutStore, HotPolicy, HotShards, JobStore, Lane, Member,
    Membership, RedisConnection, ShardAssignment, ShardBacklog, ShardQueue, ShardReader, ShardRouter, StoreError,
    WorkerInfo,
};
use shoal_runtime::{Runtime, RuntimeConfig};
use tokio::sync::{watch, Semaphore};
use tracing::{error, info, warn};

use crate::cache::{InputCache, ProgramCache};
use crate::execute::{Executor, Settled};
use crate::retry::with_retries;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's identity, used as its consumer name and in executions.
    pub id: String,
    /// Where Redis is: one URL, or several comma-separated seed nodes of a Redis Cluster.
    pub redis_url: String,
    /// How many shard streams exist; the worker reads all of them.
    pub shards: u32,
    /// How many jobs run at once.
    pub concurrency: usize,
    /// The local block store: a cache of fetched blocks and where outputs are written.
    pub store_dir: PathBuf,
    /// Trustless gateways to fetch blocks from, tried in order after the local store.
    pub gateways: Vec<String>,
    /// Scratch space for materialised inputs and outputs.
    pub work_dir: PathBuf,
    /// Bytes of materialised inputs kept on disk between jobs.
    pub input_cache_bytes: u64,
    /// Bytes of compiled programs kept in memory.
    pub program_cache_bytes: u64,
    /// How long fetching a job's program and inputs may take before the job fails.
    pub fetch_timeout: Duration,
    /// How long one stream read blocks waiting for work.
    pub poll_block: Duration,
    /// How long an entry another worker read may go unrenewed before this worker takes it
    /// over: that worker is taken for dead or hung. Running jobs renew their entries every
    /// third of this.
    pub visibility_timeout: Duration,
    /// How often the worker refreshes its registration ([`shoal_jobs::Membership`]).
    pub heartbeat: Duration,
    /// Labels it registers with (region, hardware, …).
    pub labels: BTreeMap<String, String>,
    /// How many workers read each shard ([`ShardAssignment`]); this worker reads the shards it
    /// ranks among the first that many for.
    pub shard_replicas: usize,
    /// When idle, take unread work from a shard this worker does not read once that shard has
    /// at least this many unread entries…
    pub steal_min_backlog: u64,
    /// …or once its oldest unread entry has waited this long (its readers are gone or stuck).
    pub steal_after: Duration,
    /// How often finished tasks of fanned-out jobs are gathered (by one worker at a time).
    pub gather_every: Duration,
    /// A shard with more unread entries than this per reader is hot and gets another reader,
    /// preferably a worker that holds its data ([`shoal_jobs::hot`]); so does one with work
    /// waiting whose owner has missed a heartbeat…
    pub hot_backlog: u64,
    /// …up to this many readers in all; [`WorkerConfig::shard_replicas`] or fewer turns hot
    /// replicas off.
    pub max_shard_readers: usize,
}

impl WorkerConfig {
    /// The URLs in [`WorkerConfig::redis_url`]: one for a single node, several for a cluster.
    pub fn redis_urls(&self) -> Vec<String> {
        self.redis_url.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_string).collect()
    }

    /// Defaults for a worker named `id` against `redis_url`, keeping its files under `home`.
    pub fn new(id: &str, redis_url: &str, home: &std::path::Path) -> WorkerConfig {
        WorkerConfig {
            id: id.to_string(),
            redis_url: redis_url.to_string(),
            shards: 256,
            concurrency: 2,
            store_dir: home.join("blocks"),
            gateways: Vec::new(),
            work_dir: home.join("work").join(id),
            input_cache_bytes: 4 << 30,
            program_cache_bytes: 512 << 20,
            fetch_timeout: Duration::from_secs(60),
            poll_block: Duration::from_secs(1),
            visibility_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            labels: BTreeMap::new(),
            shard_replicas: 1,
            steal_min_backlog: 4,
            steal_after: Duration::from_secs(5),
            gather_every: Duration::from_millis(500),
            hot_backlog: 8,
            max_shard_readers: 4,
        }
    }
}

/// Why a worker could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The content layer failed to open its store or a source.
    #[error(transparent)]
    Content(#[from] shoal_content::ContentError),
    /// The wasm runtime could not be created.
    #[error("creating the wasm runtime: {0}")]
    Runtime(#[from] shoal_runtime::RuntimeError),
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Executor {
    /// The executor `config` describes, over its Redis: job records, the local block store in
    /// front of the configured gateways, a runtime sized for the concurrency, and the caches.
    /// Creates the shard streams' consumer groups if missing.
    pub async fn open(config: &WorkerConfig) -> Result<Executor, WorkerError> {
        let conn = RedisConnection::open(&config.redis_urls()).await?;
        let queue = ShardQueue::new(conn.clone());
        queue.ensure_groups(config.shards).await?;
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|source| WorkerError::Io { context: format!("creating {}", config.work_dir.display()), source })?;
        let store: Arc<dyn BlockStore> = Arc::new(FsBlockStore::open(&config.store_dir)?);
        let mut sources: Vec<Arc<dyn BlockSource>> = Vec::new();
        for url in &config.gateways {
            sources.push(Arc::new(HttpGatewaySource::new(url)?));
        }
        let chain = SourceChain::new(sources).with_cache(store.clone());
        let runtime = Runtime::new(RuntimeConfig {
            max_concurrent_instances: config.concurrency as u32,
            ..RuntimeConfig::default()
        })?;
        Ok(Executor {
            worker: config.id.clone(),
            jobs: JobStore::new(conn.clone()),
            fanouts: FanOutStore::new(conn),
            router: ShardRouter::new(config.shards),
            queue,
            chain: Arc::new(chain),
            store,
            runtime,
            programs: ProgramCache::new(config.program_cache_bytes),
            inputs: InputCache::new(config.work_dir.join("inputs"), config.input_cache_bytes).map_err(|source| {
                WorkerError::Io { context: format!("preparing {}", config.work_dir.display()), source }
            })?,
            scratch: config.work_dir.join("runs"),
            fetch_timeout: config.fetch_timeout,
        })
    }
}

/// What runs one delivered job and stores its outcome: the real [`Executor`], or a stand-in
/// that models fetching and running (the scale simulation in `shoal-loadtest`), so both share
/// one worker loop — placement, stealing, claims, recovery.
pub trait Execute: Send + Sync + 'static {
    /// Runs the delivered job once and settles it, as [`Executor::execute`] does.
    fn execute(&self, delivery: &Delivery) -> impl Future<Output = Result<Settled, StoreError>> + Send;

    /// The inputs this worker holds now. The shards they route to are advertised (so hot ones
    /// can be given to this worker as an extra reader) and preferred when it steals. None unless
    /// the executor keeps inputs.
    fn held_inputs(&self) -> Vec<Cid> {
        Vec::new()
    }
}

impl Execute for Executor {
    fn execute(&self, delivery: &Delivery) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        Executor::execute(self, delivery)
    }

    fn held_inputs(&self) -> Vec<Cid> {
        self.inputs.held()
    }
}

/// Runs a worker until `shutdown` resolves, then finishes the jobs it has started.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let executor = Arc::new(Executor::open(&config).await?);
    let gathering = tokio::spawn(fanout::gatherer(executor.clone(), config.gather_every));
    let (jobs, queue) = (executor.jobs.clone(), executor.queue.clone());
    let served = serve(&config, jobs, queue, executor, shutdown).await;
    gathering.abort();
    served
}

/// The worker loop over `executor`: joins the membership, reads its shards (and steals when
/// idle), runs what it reads up to its concurrency, renews its claims, takes over dead workers'
/// entries and sweeps lost submissions, until `shutdown` resolves; then finishes the jobs it has
/// started and leaves. `jobs` and `queue` are over the Redis of `config`.
pub async fn serve<E: Execute>(
    config: &WorkerConfig,
    jobs: JobStore,
    queue: ShardQueue,
    executor: Arc<E>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let config = config.clone();
    let urls = config.redis_urls();

    let membership = Membership::new(jobs.connection());
    let info = WorkerInfo {
        id: config.id.clone(),
        capacity: config.concurrency as u32,
        cache_bytes: config.input_cache_bytes,
        labels: config.labels.clone(),
        shards: config.shards,
        started_at_ms: now_ms(),
    };
    let held = executor.clone();
    let placement = Arc::new(Placement {
        jobs: jobs.clone(),
        membership: membership.clone(),
        info,
        assignment: ShardAssignment::new(config.shards, config.shard_replicas),
        policy: HotPolicy {
            backlog_per_reader: config.hot_backlog,
            max_readers: config.max_shard_readers,
            // One heartbeat missed, with room for a late one.
            suspect_after: config.heartbeat * 2,
        },
        router: ShardRouter::new(config.shards),
        held: Box::new(move || held.held_inputs()),
        advertised: Mutex::default(),
        every: config.heartbeat,
    });
    // Join before reading anything, so the first reads are of this worker's own shards.
    let first = with_retries("join", || placement.refresh()).await?;
    let (assigned_tx, mut assigned) = watch::channel(first);
    let heart = tokio::spawn(beat(placement.clone(), config.heartbeat, assigned_tx));
    let mut owned = assigned.borrow_and_update().clone();
    let mut reader = ShardReader::open(&urls, Lane::Jobs, &owned, &config.id, config.poll_block).await?;

    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // Entries this worker is running now, by shard and entry id (entry ids are unique only
    // within one stream): they are renewed while they run, and must not be started twice when
    // the pending list is re-read.
    let in_flight: Arc<Mutex<HashMap<(u32, String), Delivery>>> = Arc::default();
    let renewer =
        tokio::spawn(renew_claims(queue.clone(), config.id.clone(), in_flight.clone(), config.visibility_timeout / 3));
    // Start by taking back what this worker id left pending (a restart, a lost connection).
    let mut resume_pending = true;
    let mut next_reclaim = tokio::time::Instant::now();
    let (mut next_steal, mut misses) = (tokio::time::Instant::now(), 0u32);
    info!(worker = %config.id, shards = owned.len(), concurrency = config.concurrency, "worker started");
    tokio::pin!(shutdown);
    loop {
        if assigned.has_changed().unwrap_or(false) {
            let shards = assigned.borrow_and_update().clone();
            match ShardReader::open(&urls, Lane::Jobs, &shards, &config.id, config.poll_block).await {
                Ok(fresh) => {
                    info!(from = owned.len(), to = shards.len(), "shard assignment changed");
                    reader = fresh;
                    owned = shards;
                    resume_pending = true;
                }
                Err(e) => warn!(error = %e, "could not switch to the new shard assignment; keeping the old one"),
            }
        }
        // Only read as many entries as there are free slots: the rest stay on the stream for
        // other workers instead of waiting here.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let free = slots.available_permits() + 1;
        let reclaim = !resume_pending && tokio::time::Instant::now() >= next_reclaim;
        let mut sweeper = false;
        let read = tokio::select! {
            _ = &mut shutdown => break,
            read = async {
                if reclaim {
                    take_over(&jobs, &queue, &config, &owned, free, &mut sweeper).await
                } else if owned.is_empty() {
                    // No shard of its own (more workers than shards): it only steals.
                    if !resume_pending {
                        tokio::time::sleep(config.poll_block).await;
                    }
                    Ok(Vec::new())
                } else if resume_pending {
                    reader.pending(free).await
                } else {
                    reader.next(free).await
                }
            } => read,
        };
        let mut deliveries = match read {
            Ok(deliveries) => deliveries,
            Err(e) => {
                warn!(error = %e, "reading shard streams failed; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(fresh) = ShardReader::open(&urls, Lane::Jobs, &owned, &config.id, config.poll_block).await {
                    reader = fresh;
                    resume_pending = true;
                }
                continue;
            }
        };
        if reclaim {
            // Look again soon while there is more to take over, else after half a timeout,
            // jittered so that workers started together do not all scan at once.
            let jitter = (ulid::Ulid::new().random() % 1000) as f64 / 1000.0;
            let pause = if deliveries.len() < free {
                (config.visibility_timeout / 2).mul_f64(0.75 + jitter / 2.0)
            } else {
                Duration::ZERO
            };
            next_reclaim = tokio::time::Instant::now() + pause;
            if !deliveries.is_empty() {
                info!(count = deliveries.len(), "took over entries of a dead or hung worker");
            }
            if sweeper {
                if let Err(e) = sweep(&jobs, &queue, &config).await {
                    warn!(error = %e, "sweeping lost and overdue jobs failed; trying again later");
                }
            }
        } else if !resume_pending && deliveries.is_empty() && tokio::time::Instant::now() >= next_steal {
            let held: HashSet<u32> = placement.held_shards();
            match steal(&jobs, &config, &owned, &held, free).await {
                Ok(stolen) => deliveries = stolen,
                Err(e) => warn!(error = %e, "looking for work to steal failed; trying again later"),
            }
            // Nothing to steal: look less often (up to every 8 polls, jittered), so thousands of
            // idle workers do not load Redis more than the work does; look again at once after
            // a find.
            misses = if deliveries.is_empty() { (misses + 1).min(3) } else { 0 };
            let jitter = 0.5 + (ulid::Ulid::new().random() % 1000) as f64 / 1000.0;
            next_steal =
                tokio::time::Instant::now() + config.poll_block.mul_f64(((1u32 << misses) - 1) as f64 * jitter);
        }
        let deliveries: Vec<Delivery> = {
            let mut running = in_flight.lock().expect("in-flight set is never poisoned");
            deliveries.into_iter().filter(|d| running.insert((d.shard, d.entry.clone()), d.clone()).is_none()).collect()
        };
        if resume_pending && deliveries.is_empty() {
            resume_pending = false;
        }
        let mut permit = Some(permit);
        for delivery in deliveries {
            let permit = match permit.take() {
                Some(permit) => permit,
                None => slots.clone().acquire_owned().await.expect("semaphore is never closed"),
            };
            let executor = executor.clone();
            let queue = queue.clone();
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                handle(executor.as_ref(), &queue, &delivery).await;
                in_flight
                    .lock()
                    .expect("in-flight set is never poisoned")
                    .remove(&(delivery.shard, delivery.entry.clone()));
                drop(permit);
            });
        }
    }
    info!(worker = %config.id, "shutting down: waiting for running jobs");
    let _all = slots.acquire_many(config.concurrency.max(1) as u32).await;
    renewer.abort();
    heart.abort();
    if let Err(e) = placement.withdraw().await {
        warn!(error = %e, "could not withdraw what this worker advertised holding; it is removed once it is forgotten");
    }
    if let Err(e) = membership.leave(&config.id).await {
        warn!(error = %e, "could not deregister; the registration expires by itself");
    }
    Ok(())
}

/// This worker's place among the live workers: its registration, what it advertises holding,
/// and the shards it reads — its own, plus the hot shards it was picked for.
struct Placement {
    jobs: JobStore,
    membership: Membership,
    info: WorkerInfo,
    assignment: ShardAssignment,
    policy: HotPolicy,
    router: ShardRouter,
    /// The inputs the executor holds now.
    held: Box<dyn Fn() -> Vec<Cid> + Send + Sync>,
    /// The shards this worker last advertised holding data of.
    advertised: Mutex<BTreeSet<u32>>,
    /// The heartbeat interval.
    every: Duration,
}

impl Placement {
    /// Beats the heartbeat, advertises what changed in the cache, then works out the shards this
    /// worker reads among the live set.
    async fn refresh(&self) -> Result<Vec<u32>, StoreError> {
        self.membership.heartbeat(&self.info).await?;
        // Three missed heartbeats and a worker is taken for gone.
        let live_within = self.every * 3;
        let live = self.membership.live(live_within).await?;
        self.advertise().await?;
        let candidates: Vec<Candidate> = live.iter().map(|m| Candidate::new(&m.info.id, m.info.capacity)).collect();
        let mut shards = self.assignment.shards_of(&self.info.id, &candidates);
        if self.policy.max_readers > self.assignment.replicas() {
            shards.extend(self.hot_shards(&live, live_within).await?.shards_for(&self.info.id));
            shards.sort_unstable();
            shards.dedup();
        }
        Ok(shards)
    }

    /// The published hot shards; refreshed first by whichever worker gets the hot lock this
    /// heartbeat, so one worker per interval pays for sampling every shard.
    async fn hot_shards(&self, live: &[Member], ttl: Duration) -> Result<HotShards, StoreError> {
        let conn = self.jobs.connection();
        if self.jobs.take_lock(&keys::hot_lock(), &self.info.id, self.every).await? {
            HotShards::refresh(&conn, &self.membership, &self.assignment, &self.policy, live, ttl).await
        } else {
            HotShards::read(&conn).await
        }
    }

    /// Advertises the shards whose data this worker came to hold, and withdraws those it no
    /// longer holds, since the last call.
    async fn advertise(&self) -> Result<(), StoreError> {
        let now: BTreeSet<u32> = (self.held)().iter().map(|cid| self.router.shard_of(cid)).collect();
        let before = self.advertised.lock().expect("advertised set is never poisoned").clone();
        let added: Vec<u32> = now.difference(&before).copied().collect();
        let dropped: Vec<u32> = before.difference(&now).copied().collect();
        self.membership.advertise(&self.info.id, &added, &dropped).await?;
        *self.advertised.lock().expect("advertised set is never poisoned") = now;
        Ok(())
    }

    /// The shards whose data this worker held at its last heartbeat.
    fn held_shards(&self) -> HashSet<u32> {
        self.advertised.lock().expect("advertised set is never poisoned").iter().copied().collect()
    }

    /// Withdraws everything this worker advertised (it is leaving).
    async fn withdraw(&self) -> Result<(), StoreError> {
        let all: Vec<u32> = self.advertised.lock().expect("advertised set is never poisoned").iter().copied().collect();
        self.membership.advertise(&self.info.id, &[], &all).await
    }
}

/// Refreshes the worker's registration every `every`, publishing its shards when they change.
async fn beat(placement: Arc<Placement>, every: Duration, assigned: watch::Sender<Vec<u32>>) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        match placement.refresh().await {
            Ok(shards) => {
                assigned.send_if_modified(|current| {
                    let changed = *current != shards;
                    *current = shards;
                    changed
                });
            }
            Err(e) => warn!(error = %e, "heartbeat failed; keeping the current shards, retrying at the next tick"),
        }
    }
}

/// Shards an idle worker looks at for work to steal, per attempt.
const STEAL_SAMPLE: usize = 64;

/// Work for an idle worker from a shard it does not read. Among the shards whose data it holds
/// (`held`) and [`STEAL_SAMPLE`] others, it takes from the one with the longest backlog of at
/// least [`WorkerConfig::steal_min_backlog`] entries — a held one first, where the inputs are
/// already on its disk — else from one whose oldest unread entry has waited
/// [`WorkerConfig::steal_after`] (its readers are gone or overloaded).
async fn steal(
    jobs: &JobStore,
    config: &WorkerConfig,
    owned: &[u32],
    held: &HashSet<u32>,
    count: usize,
) -> Result<Vec<Delivery>, StoreError> {
    // A sample, from a random place: with thousands of shards and workers, every idle worker
    // scanning every shard each poll would load Redis more than the work does.
    let others: Vec<u32> = (0..config.shards).filter(|shard| !owned.contains(shard)).collect();
    let start = if others.is_empty() { 0 } else { (ulid::Ulid::new().random() % others.len() as u128) as usize };
    let mut sample: Vec<u32> = held.iter().copied().filter(|shard| !owned.contains(shard)).collect();
    sample.sort_unstable();
    sample.extend(others.iter().cycle().skip(start).take(others.len().min(STEAL_SAMPLE)).filter(|s| !held.contains(s)));
    let mut conn = jobs.connection();
    let backlogs = shard_backlogs(&conn, &sample).await?;
    let held_backlogs: Vec<ShardBacklog> = backlogs.iter().filter(|b| held.contains(&b.shard)).cloned().collect();
    let victim = match longest(&held_backlogs, config.steal_min_backlog)
        .or_else(|| longest(&backlogs, config.steal_min_backlog))
    {
        Some(backlog) => Some(backlog.shard),
        None => oldest_waiting(&conn, &backlogs, config.steal_after).await?,
    };
    let Some(shard) = victim else { return Ok(Vec::new()) };
    let stolen = take_unread(&mut conn, shard, &config.id, count).await?;
    if !stolen.is_empty() {
        info!(
            shard,
            count = stolen.len(),
            held = held.contains(&shard),
            "stole work from a shard this worker does not read"
        );
    }
    Ok(stolen)
}

/// Takes over up to `count` entries that dead or hung workers left unrenewed past the
/// visibility timeout: on this worker's own shards (a dead worker's shards come to live workers
/// once the membership drops it), and, for the one worker that gets the sweep lock (`sweeper`
/// says whether this one did), on every other shard with entries pending — so a dead worker's
/// entries wait for the visibility timeout only, not also for its membership to expire, while
/// only one worker at a time pays for looking at every shard.
async fn take_over(
    jobs: &JobStore,
    queue: &ShardQueue,
    config: &WorkerConfig,
    owned: &[u32],
    count: usize,
    sweeper: &mut bool,
) -> Result<Vec<Delivery>, StoreError> {
    let mut taken = queue.reclaim(owned, &config.id, config.visibility_timeout, count).await?;
    *sweeper = jobs.take_requeue_lock(&config.id, config.visibility_timeout / 2).await?;
    if *sweeper && taken.len() < count {
        let all: Vec<u32> = (0..config.shards).filter(|shard| !owned.contains(shard)).collect();
        let pending: Vec<u32> =
            shard_backlogs(&jobs.connection(), &all).await?.iter().filter(|b| b.pending > 0).map(|b| b.shard).collect();
        taken.extend(queue.reclaim(&pending, &config.id, config.visibility_timeout, count - taken.len()).await?);
    }
    Ok(taken)
}

/// Run by the holder of the sweep lock: puts back on their streams the queued jobs whose
/// submission never reached one (older than a visibility timeout, so a submission in progress is
/// left alone), and fails the jobs past their total timeout.
async fn sweep(jobs: &JobStore, queue: &ShardQueue, config: &WorkerConfig) -> Result<(), StoreError> {
    for (job, shard) in jobs.unqueued(config.visibility_timeout, 100).await? {
        let entry = jobs.enqueue(queue, &job, shard).await?;
        warn!(%job, shard, %entry, "re-queued a job whose submission never reached its stream");
    }
    for job in jobs.expire_overdue(100).await? {
        warn!(%job, "failed a job past its total timeout");
    }
    Ok(())
}

/// Renews the claims on the entries this worker is running, every `every`, so that no other
/// worker takes a long job over while it still runs.
async fn renew_claims(
    queue: ShardQueue,
    consumer: String,
    in_flight: Arc<Mutex<HashMap<(u32, String), Delivery>>>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        let running: Vec<Delivery> =
            in_flight.lock().expect("in-flight set is never poisoned").values().cloned().collect();
        if running.is_empty() {
            continue;
        }
        if let Err(e) = queue.renew(&consumer, &running).await {
            warn!(error = %e, "renewing claims failed; retrying at the next tick");
        }
    }
}

async fn handle<E: Execute>(executor: &E, queue: &ShardQueue, delivery: &Delivery) {
    match executor.execute(delivery).await {
        Ok(Settled::AttemptsExhausted { attempts }) => {
            let reason = format!("worker_lost: started {attempts} times, never finished");
            if let Err(e) = with_retries("dead_letter", || queue.dead_letter(delivery, &reason)).await {
                warn!(job = %delivery.job_id, error = %e, "dead-lettering failed; the entry stays pending");
            }
        }
        Ok(Settled::Later) => {}
        // The result is durably stored: only now is the entry acknowledged.
        Ok(Settled::Done) => {
            if let Err(e) = with_retries("ack", || queue.ack(delivery)).await {
                warn!(job = %delivery.job_id, error = %e, "ack failed; the entry stays pending and may run again");
            }
        }
        Err(e) => {
            error!(job = %delivery.job_id, error = %e, "could not record the job's result; leaving it pending");
        }
    }
}
