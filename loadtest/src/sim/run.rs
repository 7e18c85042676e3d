//! One simulated run: Redis, a gateway and N worker loops in this process; users submitting
//! over HTTP; workers joining on a schedule; every job's record read and checked at the end.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shoal_jobs::with_retries;
use shoal_jobs::{now_ms, Fsync, Job, JobStore, Membership, RedisServer, ShardQueue};
use shoal_worker::WorkerConfig;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::{Api, Submitted};
use crate::driver::Mode;
use crate::error::{LoadtestError, Result};
use crate::figures::{assess_jobs, Assessed, Report, MAX_EXAMPLES};
use crate::locality::{sample_live, LocalityTally, BY_JOBS};
use crate::sim::catalogue::Catalogue;
use crate::sim::executor::{Completion, CostModel, SimulatedExecutor};
use crate::sim::options::SimOptions;
use crate::sim::report::SimReport;
use crate::sim::workload::{next_job, programs, SimJob};
use crate::workload::{programs_of, user_seed, Popularity, SplitMix};

/// Job records read at once at the end.
const READ_PARALLEL: usize = 32;
/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Time allowed for workers to finish their running jobs at the end.
const WORKER_STOP: Duration = Duration::from_secs(60);

/// Which user a submitted job belongs to, and which jobs have finished, so a user's outstanding
/// bound is released exactly once per job whichever of "accepted" and "finished" is heard first.
#[derive(Default)]
struct Tracker {
    owner: HashMap<String, usize>,
    finished: HashSet<String>,
}

/// One planned submission and how it went.
struct Submission {
    job: SimJob,
    submitted: Submitted,
}

/// A started worker: how to stop it and its loop.
struct RunningWorker {
    id: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::result::Result<(), shoal_worker::WorkerError>>,
}

/// Everything the workers of the run share.
struct WorkerFactory {
    options: SimOptions,
    redis_url: String,
    pool: Vec<ConnectionManager>,
    model: CostModel,
    home: std::path::PathBuf,
    completions: mpsc::UnboundedSender<Completion>,
}

impl WorkerFactory {
    /// Starts worker number `n` (its own id, cache and blocking reader; a shared connection).
    fn start(&self, n: usize) -> RunningWorker {
        let id = format!("sim-{n:04}");
        let o = &self.options;
        let mut config = WorkerConfig::new(&id, &self.redis_url, &self.home);
        config.shards = o.shards;
        config.concurrency = o.concurrency;
        config.input_cache_bytes = o.cache;
        config.poll_block = Duration::from_millis(o.poll_block_ms);
        config.visibility_timeout = Duration::from_secs(o.visibility_timeout_secs);
        config.heartbeat = Duration::from_secs_f64(o.heartbeat_secs);
        config.shard_replicas = o.shard_replicas;
        config.steal_min_backlog = o.steal_min_backlog;
        config.steal_after = Duration::from_secs_f64(o.steal_after_secs);
        config.hot_backlog = o.hot_backlog;
        config.max_shard_readers = o.max_shard_readers;
        let conn = self.pool[n % self.pool.len()].clone();
        let jobs = JobStore::new(conn.clone());
        let queue = ShardQueue::new(conn);
        let executor =
            Arc::new(SimulatedExecutor::new(&id, jobs.clone(), o.cache, self.model, self.completions.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            shoal_worker::serve(&config, jobs, queue, executor, async {
                stopped.await.ok();
            })
            .await
        });
        RunningWorker { id, stop, task }
    }
}

/// A Redis connection for the harness and the workers: commands may wait behind thousands of
/// others, so it waits longer than redis-rs's 500 ms default.
async fn connect(client: &redis::Client) -> Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(20)))
        .set_connection_timeout(Some(Duration::from_secs(10)));
    ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|e| LoadtestError::store("connecting to Redis", e))
}

impl Mode for SimOptions {
    type Report = SimReport;
    const LOG_LEVEL: &'static str = "error";

    fn report_prefix(&self) -> Option<&std::path::Path> {
        self.report.as_deref()
    }

    async fn run(&self, command: String) -> Result<SimReport> {
        run_sim(self, command).await
    }
}

/// Runs the simulation `options` describes; `command` is recorded in the report.
async fn run_sim(options: &SimOptions, command: String) -> Result<SimReport> {
    let o = options;
    let initial = o.initial_workers.unwrap_or(o.workers).min(o.workers);
    if o.workers == 0 || o.users == 0 || o.programs == 0 || o.concurrency == 0 {
        return Err(LoadtestError::Invalid("workers, users, programs and concurrency must be at least 1".into()));
    }
    if initial == 0 {
        return Err(LoadtestError::Invalid("at least one worker must start at the beginning".into()));
    }
    let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(o.deadline_secs);
    let _temporary;
    let home = match &o.work_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = tempfile::tempdir().map_err(|e| LoadtestError::io("creating the run's home", e))?;
            let path = dir.path().to_path_buf();
            _temporary = dir;
            path
        }
    };
    let catalogue = Catalogue::new(o.catalogue, o.item, o.seed);
    let catalogue_bytes = catalogue.total_bytes();
    let model = CostModel {
        time_scale: o.time_scale,
        bandwidth_bytes_per_s: o.bandwidth as f64,
        fetch_latency: Duration::from_millis(o.latency_ms),
        compute_min: Duration::from_secs_f64(o.compute_min_secs),
        compute_max: Duration::from_secs_f64(o.compute_max_secs.max(o.compute_min_secs)),
        mean_item_bytes: catalogue.mean_bytes(),
    };

    let redis = RedisServer::start(&home.join("redis"), Fsync::EverySec)?;
    let client = redis::Client::open(redis.url()).map_err(|e| LoadtestError::store("opening the Redis URL", e))?;
    let control = connect(&client).await?;

    let mut gateway_config = shoal_gateway::GatewayConfig::new(redis.url(), o.shards);
    gateway_config.max_backlog = None;
    gateway_config.redis_timeout = Duration::from_secs(20);
    gateway_config.request_timeout = Duration::from_secs(60);
    let router = shoal_gateway::router(gateway_config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| LoadtestError::io("binding the gateway's port", e))?;
    let gateway_url =
        format!("http://{}", listener.local_addr().map_err(|e| LoadtestError::io("reading the gateway's port", e))?);
    let (gateway_stop, gateway_stopped) = oneshot::channel::<()>();
    let gateway = tokio::spawn(shoal_gateway::serve(listener, router, async {
        gateway_stopped.await.ok();
    }));
    let key = shoal_testkit::api_key(&redis.url(), shoal_testkit::TEST_TENANT, shoal_jobs::Role::Operator).await?;
    let api = Api::new(gateway_url, &key)?;

    let mut pool = Vec::with_capacity(o.redis_connections.max(1));
    for _ in 0..o.redis_connections.max(1) {
        pool.push(connect(&client).await?);
    }
    let (completions_tx, mut completions) = mpsc::unbounded_channel();
    let factory = Arc::new(WorkerFactory {
        options: o.clone(),
        redis_url: redis.url(),
        pool,
        model,
        home: home.clone(),
        completions: completions_tx,
    });
    let spread = Duration::from_secs_f64(o.start_spread_secs.max(0.0));
    let workers: Arc<Mutex<Vec<RunningWorker>>> = Arc::default();
    start_workers(&factory, &workers, 0..initial, spread).await;
    log(o, &format!("{initial} workers started; submitting for {} s", o.duration_secs));

    let t0 = Instant::now();
    let t0_ms = now_ms();
    let joining = (initial < o.workers).then(|| {
        let (factory, workers) = (factory.clone(), workers.clone());
        let (from, to, join_at) = (initial, o.workers, o.join_at_secs);
        let quiet = o.quiet;
        tokio::spawn(async move {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(join_at)).await;
            if !quiet {
                eprintln!("{} workers joining", to - from);
            }
            start_workers(&factory, &workers, from..to, spread).await;
        })
    });
    let live_samples: Arc<Mutex<Vec<(u64, usize)>>> = Arc::default();
    let sampler = tokio::spawn(sample_live(
        Membership::new(control.clone()),
        Membership::live_window(Duration::from_secs_f64(o.heartbeat_secs)),
        live_samples.clone(),
    ));

    // Submitting: one task per user, each bounded by its own outstanding permits.
    let tracker: Arc<Mutex<Tracker>> = Arc::default();
    let permits: Vec<Arc<Semaphore>> =
        (0..o.users).map(|_| Arc::new(Semaphore::new(o.outstanding_per_user.max(1)))).collect();
    let planned = Arc::new(AtomicUsize::new(0));
    let submit_until = t0 + Duration::from_secs_f64(o.duration_secs);
    let all_programs = programs(o.programs, o.seed);
    let popularity = Popularity::new(catalogue.items(), o.seed);
    let run_id = format!("{started_at_unix_s:x}");
    let mut users = JoinSet::new();
    for (user, user_permits) in permits.iter().enumerate() {
        let own = programs_of(user, o.users, o.programs);
        let context = UserContext {
            user,
            own,
            programs: all_programs.clone(),
            catalogue,
            popularity,
            api: api.clone(),
            permits: user_permits.clone(),
            tracker: tracker.clone(),
            planned: planned.clone(),
            max_jobs: o.max_jobs,
            interval: o.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(o.users as f64 / r)),
            until: submit_until.min(deadline),
            // A submission unanswered this long after submitting ends is given up (the stall
            // limit), so a stack that stopped answering ends the run instead of hanging it.
            deadline: (submit_until + Duration::from_secs(o.stall_secs)).min(deadline),
            key_prefix: format!("sim-{run_id}-{user}"),
            seed: user_seed(o.seed, user),
        };
        users.spawn(submit_user(context));
    }

    // Waiting: completions release permits; the run ends when every accepted job has finished.
    let mut submissions: Vec<Submission> = Vec::new();
    let mut submitting = true;
    let mut finished = 0usize;
    let mut last_progress = Instant::now();
    let mut last_log = Instant::now();
    let stall = Duration::from_secs(o.stall_secs);
    let ended_early = loop {
        tokio::select! {
            completion = completions.recv() => {
                let Some(completion) = completion else { break Some("every worker stopped".to_string()) };
                if !completion.state.is_terminal() {
                    continue;
                }
                let owner = {
                    let mut t = tracker.lock().expect("the tracker is never poisoned");
                    if t.finished.insert(completion.job_id.clone()) {
                        finished += 1;
                        t.owner.remove(&completion.job_id)
                    } else {
                        None
                    }
                };
                // Unknown owner: the job finished before its submission returned; the submitter
                // releases the permit when it sees the id is finished.
                if let Some(user) = owner {
                    permits[user].add_permits(1);
                }
                last_progress = Instant::now();
            }
            joined = users.join_next(), if submitting => {
                match joined {
                    Some(Ok(mut done)) => submissions.append(&mut done),
                    Some(Err(e)) => return Err(LoadtestError::Invalid(format!("a submitter panicked: {e}"))),
                    None => {
                        submitting = false;
                        last_progress = Instant::now();
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let accepted = submissions.iter().filter(|s| s.submitted.id().is_some()).count();
        if !submitting && finished >= accepted {
            break None;
        }
        if Instant::now() >= deadline {
            break Some(format!(
                "deadline of {} s reached with {} jobs unfinished",
                o.deadline_secs,
                accepted - finished
            ));
        }
        if !submitting && last_progress.elapsed() >= stall {
            break Some(format!("no job finished for {} s; {} jobs unfinished", o.stall_secs, accepted - finished));
        }
        if !o.quiet && last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            let live = live_samples.lock().expect("never poisoned").last().map_or(0, |s| s.1);
            eprintln!(
                "t={:.0}s planned {} finished {finished} live workers {live}",
                t0.elapsed().as_secs_f64(),
                planned.load(Ordering::Relaxed),
            );
        }
    };
    let duration_s = t0.elapsed().as_secs_f64();
    if let Some(joining) = joining {
        joining.abort();
        joining.await.ok();
    }
    sampler.abort();
    log(o, "stopping workers");
    let stopped: Vec<RunningWorker> = std::mem::take(&mut *workers.lock().expect("never poisoned"));
    let started = stopped.len();
    // All at once: each finishes its running jobs, and a hung one must not hold up the rest.
    let ends = futures::future::join_all(stopped.into_iter().map(|w| {
        w.stop.send(()).ok();
        async move { (w.id, tokio::time::timeout(WORKER_STOP, w.task).await) }
    }))
    .await;
    let worker_errors: Vec<String> = ends
        .into_iter()
        .filter_map(|(id, end)| match end {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(format!("worker {id} stopped with an error: {e}")),
            Ok(Err(e)) => Some(format!("worker {id} panicked: {e}")),
            Err(_) => Some(format!("worker {id} did not stop within {WORKER_STOP:?}")),
        })
        .collect();

    log(o, "reading every job");
    let jobs = JobStore::new(control);
    let records: Vec<Option<Job>> = futures::stream::iter(submissions.iter().map(|s| s.submitted.id()))
        .map(|id| {
            let jobs = jobs.clone();
            async move {
                match id {
                    // Retried like the workers' own writes; a record still unreadable counts as lost.
                    Some(id) => with_retries("reading a job", || jobs.get(id)).await.ok().flatten(),
                    None => None,
                }
            }
        })
        .buffered(READ_PARALLEL)
        .collect()
        .await;
    let listed = api.all_job_ids(Instant::now() + Duration::from_secs(120)).await;
    gateway_stop.send(()).ok();
    gateway.await.ok();
    drop(redis);

    let live = live_samples.lock().expect("never poisoned").clone();
    let mut report = assess(o, command, started_at_unix_s, &submissions, &records, t0_ms, &live);
    report.base.duration_s = duration_s;
    report.base.ended_early = ended_early;
    report.workers = started;
    report.initial_workers = initial;
    report.join_at_s = (initial < o.workers).then_some(o.join_at_secs);
    report.catalogue_bytes = catalogue_bytes;
    report.catalogue_items = catalogue.items();
    for error in worker_errors.into_iter().take(MAX_EXAMPLES) {
        report.base.examples.push(error);
    }
    report.base.count_unreturned(listed, &submissions.iter().filter_map(|s| s.submitted.id()).collect());
    report.base.examples.truncate(MAX_EXAMPLES);
    Ok(report)
}

fn log(options: &SimOptions, line: &str) {
    if !options.quiet {
        eprintln!("{line}");
    }
}

/// Starts workers `range`, spread evenly over `spread`.
async fn start_workers(
    factory: &WorkerFactory,
    workers: &Mutex<Vec<RunningWorker>>,
    range: std::ops::Range<usize>,
    spread: Duration,
) {
    let count = range.len().max(1) as u32;
    let started = Instant::now();
    for (i, n) in range.enumerate() {
        tokio::time::sleep_until(started + spread * i as u32 / count).await;
        let worker = factory.start(n);
        workers.lock().expect("never poisoned").push(worker);
    }
}

/// What one user's submitter needs.
struct UserContext {
    user: usize,
    own: Vec<usize>,
    programs: Vec<crate::sim::workload::Program>,
    catalogue: Catalogue,
    popularity: Popularity,
    api: Api,
    permits: Arc<Semaphore>,
    tracker: Arc<Mutex<Tracker>>,
    planned: Arc<AtomicUsize>,
    max_jobs: usize,
    interval: Option<Duration>,
    until: Instant,
    deadline: Instant,
    key_prefix: String,
    seed: u64,
}

/// Submits one user's jobs until `until` (or the job limit), each holding one of its permits
/// until it finishes. Returns every submission.
async fn submit_user(c: UserContext) -> Vec<Submission> {
    let mut rng = SplitMix::new(c.seed);
    let mut in_flight = JoinSet::new();
    let mut done = Vec::new();
    let mut next_at = Instant::now();
    for n in 0.. {
        if let Some(interval) = c.interval {
            tokio::time::sleep_until(next_at.min(c.until)).await;
            next_at += interval;
        }
        let permit = tokio::select! {
            permit = c.permits.acquire() => permit.expect("the semaphore is never closed"),
            _ = tokio::time::sleep_until(c.until) => break,
        };
        if Instant::now() >= c.until || (c.max_jobs > 0 && c.planned.fetch_add(1, Ordering::Relaxed) >= c.max_jobs) {
            break;
        }
        if c.max_jobs == 0 {
            c.planned.fetch_add(1, Ordering::Relaxed);
        }
        // Released when the job finishes (or at once if it is refused).
        permit.forget();
        let job = next_job(c.user, &c.own, &c.programs, &c.catalogue, &c.popularity, &mut rng);
        let (api, key, tracker, permits, user, deadline) =
            (c.api.clone(), format!("{}-{n}", c.key_prefix), c.tracker.clone(), c.permits.clone(), c.user, c.deadline);
        in_flight.spawn(async move {
            let submitted = api.submit(&job.spec, &key, deadline).await;
            let release = match submitted.id() {
                Some(id) => {
                    let mut t = tracker.lock().expect("never poisoned");
                    // It may have finished before its id came back.
                    if t.finished.contains(id) {
                        true
                    } else {
                        t.owner.insert(id.to_string(), user);
                        false
                    }
                }
                None => true,
            };
            if release {
                permits.add_permits(1);
            }
            Submission { job, submitted }
        });
        while let Some(joined) = in_flight.try_join_next() {
            if let Ok(submission) = joined {
                done.push(submission);
            }
        }
    }
    while let Some(joined) = in_flight.join_next().await {
        if let Ok(submission) = joined {
            done.push(submission);
        }
    }
    done
}

/// Checks every job against its expected output and builds the report (without the run-level
/// fields the caller fills in).
fn assess(
    o: &SimOptions,
    command: String,
    started_at_unix_s: u64,
    submissions: &[Submission],
    records: &[Option<Job>],
    t0_ms: u64,
    live: &[(u64, usize)],
) -> SimReport {
    let mut base = Report { workers_reclaim: true, ..Report::empty(command, started_at_unix_s, submissions.len()) };
    let mut tally = LocalityTally::new(t0_ms, (o.bucket_secs.max(0.1) * 1000.0) as u64);
    let jobs = submissions.iter().zip(records).map(|(s, record)| Assessed {
        kind: format!("program-{}", s.job.program),
        expected: &s.job.expected_output,
        submitted: &s.submitted,
        record: record.as_ref(),
    });
    assess_jobs(&mut base, jobs, &mut tally);
    SimReport {
        local_task_rate: tally.local_task_rate(),
        cache_hit_rate: tally.cache_hit_rate(),
        base,
        workers: 0,
        initial_workers: 0,
        join_at_s: None,
        catalogue_bytes: 0,
        catalogue_items: 0,
        users: o.users,
        programs: o.programs,
        shards: o.shards,
        time_scale: o.time_scale,
        peak_live_workers: live.iter().map(|s| s.1).max().unwrap_or(0),
        execution_times: tally.times(),
        settings: settings(o),
        series: tally.series(live),
        bucket_s: tally.bucket_s(),
        by_jobs: tally.by_jobs(BY_JOBS),
    }
}

/// The options as `name = value` lines.
fn settings(o: &SimOptions) -> Vec<String> {
    vec![
        format!(
            "workers = {} (initial {:?}, join at {} s, spread {} s)",
            o.workers, o.initial_workers, o.join_at_secs, o.start_spread_secs
        ),
        format!("concurrency per worker = {}", o.concurrency),
        format!(
            "users = {}, programs = {}, outstanding per user = {}, rate = {:?}",
            o.users, o.programs, o.outstanding_per_user, o.rate
        ),
        format!("catalogue = {} B in items of {} B mean, cache per worker = {} B", o.catalogue, o.item, o.cache),
        format!(
            "bandwidth = {} B/s, latency = {} ms, compute {}–{} s per mean item (simulated)",
            o.bandwidth, o.latency_ms, o.compute_min_secs, o.compute_max_secs
        ),
        format!("time scale = {}", o.time_scale),
        format!(
            "shards = {}, replicas = {}, heartbeat = {} s, poll block = {} ms, visibility timeout = {} s",
            o.shards, o.shard_replicas, o.heartbeat_secs, o.poll_block_ms, o.visibility_timeout_secs
        ),
        format!(
            "steal at backlog {} or after {} s, hot at {} unread per reader up to {} readers, redis connections = {}",
            o.steal_min_backlog, o.steal_after_secs, o.hot_backlog, o.max_shard_readers, o.redis_connections
        ),
        format!("duration = {} s, max jobs = {}, seed = {}", o.duration_secs, o.max_jobs, o.seed),
    ]
}
