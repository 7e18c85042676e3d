//! The worker loop: join the membership, read this worker's shards (and steal when idle), run
//! what it reads up to its concurrency, renew its claims, take over dead workers' entries and
//! sweep lost submissions, until shutdown.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use shoal_jobs::{
    longest, now_ms, oldest_waiting, shard_backlogs, take_unread, with_retries, Delivery, JobState, JobStore, Lane,
    Membership, PublicKey, ShardBacklog, ShardQueue, ShardReader, StoreError,
};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::acks::Acks;
use crate::config::{WorkerConfig, WorkerError};
use crate::execute::{Executor, Settled};
use crate::phases::{self, Phase};
use crate::placement::{beat, Placement};
use crate::slot::Slot;
use crate::{fanout, pipeline};

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

    /// The key its receipts are signed with, bound to the worker's id when it joins (a worker
    /// under an id bound to another key does not start). None for an executor that signs no
    /// receipts anyone checks.
    fn public_key(&self) -> Option<PublicKey> {
        None
    }
}

impl Execute for Executor {
    fn execute(&self, delivery: &Delivery) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        Executor::execute(self, delivery)
    }

    fn held_inputs(&self) -> Vec<Cid> {
        self.inputs.held()
    }

    fn public_key(&self) -> Option<PublicKey> {
        Some(Executor::public_key(self))
    }
}

/// Runs a worker until `shutdown` resolves, then finishes the jobs it has started.
pub async fn run(config: WorkerConfig, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    if let Some(addr) = config.metrics_addr {
        phases::serve_metrics(addr).await?;
    }
    let executor = Arc::new(Executor::open(&config).await?);
    let gathering = tokio::spawn(fanout::gatherer(executor.clone(), config.gather_every));
    let driving = tokio::spawn(pipeline::driver(executor.clone(), config.gather_every));
    let (jobs, queue) = (executor.jobs.clone(), executor.queue.clone());
    let served = serve(&config, jobs, queue, executor, shutdown).await;
    gathering.abort();
    driving.abort();
    served
}

/// Entries a worker is running now, by shard and entry id (entry ids are unique only within one
/// stream): they are renewed while they run, must not be started twice when the pending list is
/// re-read, and are stopped through their [`Notify`] when their job is cancelled.
pub(crate) type InFlight = Arc<Mutex<HashMap<(u32, String), (Delivery, Arc<Notify>)>>>;

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
    let membership = Membership::new(jobs.connection());
    let held = executor.clone();
    let placement =
        Arc::new(Placement::new(&config, jobs.clone(), membership.clone(), Box::new(move || held.held_inputs())));
    // Before this worker binds its key or joins: a worker whose settles Redis would refuse must
    // take no jobs. Redis grants every shard's job stream by one pattern, so the first shard,
    // which every layout has, stands for all.
    with_retries("check_settle_permitted", || jobs.check_settle_permitted(&config.id, 0)).await?;
    if let Some(key) = executor.public_key() {
        with_retries("bind_key", || membership.bind_key(&config.id, &key)).await?;
    }
    // Join before reading anything, so the first reads are of this worker's own shards.
    let first = with_retries("join", || placement.refresh()).await?;
    let (assigned_tx, assigned) = watch::channel(first);
    let heart = tokio::spawn(beat(placement.clone(), config.heartbeat, assigned_tx));
    let in_flight = InFlight::default();
    let renewer = tokio::spawn(renew_claims(
        queue.clone(),
        config.id.clone(),
        in_flight.clone(),
        placement.clone(),
        config.visibility_timeout / 3,
    ));
    let canceller = tokio::spawn(stop_cancelled(jobs.clone(), in_flight.clone(), config.cancel_check));
    let (acks, acker) = Acks::start(queue.clone(), in_flight.clone());
    let mut pull = Pull::start(config.clone(), jobs, queue, assigned, in_flight).await?;
    info!(worker = %config.id, shards = pull.owned.len(), concurrency = config.concurrency, "worker started");

    tokio::pin!(shutdown);
    loop {
        pull.follow_assignment().await;
        // Only read as many entries as there are free slots: the rest stay on the stream for
        // other workers instead of waiting here.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = pull.slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let free = pull.slots.available_permits() + 1;
        // A quarantined worker takes nothing over and steals nothing: it only finishes its own.
        let trusted = !placement.is_quarantined();
        let reclaim = trusted && !pull.resume_pending && Instant::now() >= pull.next_reclaim;
        let mut sweeper = false;
        let read = tokio::select! {
            _ = &mut shutdown => break,
            read = pull.read(reclaim, free, &mut sweeper) => read,
        };
        let Some(mut deliveries) = pull.received(read).await else { continue };
        if reclaim {
            pull.after_reclaim(deliveries.len(), free, sweeper).await;
        } else if trusted && !pull.resume_pending && deliveries.is_empty() && Instant::now() >= pull.next_steal {
            deliveries = pull.steal_when_idle(&placement.held_shards(), free).await;
        }
        pull.dispatch(&executor, &acks, deliveries, permit).await;
    }
    info!(worker = %config.id, "shutting down: waiting for running jobs");
    let all = pull.slots.acquire_many(config.concurrency.max(1) as u32);
    if tokio::time::timeout(config.drain_timeout, all).await.is_err() {
        let left: Vec<String> = pull
            .in_flight
            .lock()
            .expect("in-flight set is never poisoned")
            .values()
            .map(|(d, _)| d.job_id.clone())
            .collect();
        warn!(?left, "running jobs outlasted the drain; stopped and left for another worker to take over");
        pull.running.abort_all();
        while pull.running.join_next().await.is_some() {}
    }
    // What the runs settled is acknowledged; a run still waiting for content holds no slot and
    // is stopped with `pull`, its entry left pending.
    acker.close(config.drain_timeout).await;
    renewer.abort();
    canceller.abort();
    heart.abort();
    if let Err(e) = placement.withdraw().await {
        warn!(error = %e, "could not withdraw what this worker advertised holding; it is removed once it is forgotten");
    }
    if let Err(e) = membership.leave(&config.id).await {
        warn!(error = %e, "could not deregister; the registration expires by itself");
    }
    Ok(())
}

/// The reading side of the worker loop: which shards it reads, its reader over them, its slots,
/// and when it next takes over others' entries or steals.
struct Pull {
    config: WorkerConfig,
    jobs: JobStore,
    queue: ShardQueue,
    urls: Vec<String>,
    assigned: watch::Receiver<Vec<u32>>,
    owned: Vec<u32>,
    reader: ShardReader,
    slots: Arc<Semaphore>,
    /// Places for deliveries waiting for content without a slot ([`crate::slot`]).
    waiting: Arc<Semaphore>,
    in_flight: InFlight,
    /// The tasks running deliveries, so a shutdown can stop those that outlast the drain.
    running: JoinSet<()>,
    /// Read this worker id's own pending entries first (a restart, a lost connection, a new
    /// assignment).
    resume_pending: bool,
    next_reclaim: Instant,
    next_steal: Instant,
    /// Steal attempts in a row that found nothing (capped), spacing the next ones out.
    misses: u32,
}

impl Pull {
    async fn start(
        config: WorkerConfig,
        jobs: JobStore,
        queue: ShardQueue,
        mut assigned: watch::Receiver<Vec<u32>>,
        in_flight: InFlight,
    ) -> Result<Pull, WorkerError> {
        let urls = config.redis_urls();
        let owned = assigned.borrow_and_update().clone();
        let reader = ShardReader::open(&urls, Lane::Jobs, &owned, &config.id, config.poll_block).await?;
        Ok(Pull {
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            waiting: Arc::new(Semaphore::new(config.max_waiting_for_content)),
            running: JoinSet::new(),
            config,
            jobs,
            queue,
            urls,
            assigned,
            owned,
            reader,
            in_flight,
            resume_pending: true,
            next_reclaim: Instant::now(),
            next_steal: Instant::now(),
            misses: 0,
        })
    }

    /// Switches the reader to the latest assignment, if it changed.
    async fn follow_assignment(&mut self) {
        if !self.assigned.has_changed().unwrap_or(false) {
            return;
        }
        let shards = self.assigned.borrow_and_update().clone();
        match ShardReader::open(&self.urls, Lane::Jobs, &shards, &self.config.id, self.config.poll_block).await {
            Ok(fresh) => {
                info!(from = self.owned.len(), to = shards.len(), "shard assignment changed");
                self.reader = fresh;
                self.owned = shards;
                self.resume_pending = true;
            }
            Err(e) => warn!(error = %e, "could not switch to the new shard assignment; keeping the old one"),
        }
    }

    /// Reads up to `free` entries: taken over from dead workers when `reclaim` (`sweeper` then
    /// says whether this worker holds the sweep lock), else this worker's pending ones, else new
    /// ones.
    async fn read(&mut self, reclaim: bool, free: usize, sweeper: &mut bool) -> Result<Vec<Delivery>, StoreError> {
        if reclaim {
            take_over(&self.jobs, &self.queue, &self.config, &self.owned, free, sweeper).await
        } else if self.owned.is_empty() {
            // No shard of its own (more workers than shards): it only steals.
            if !self.resume_pending {
                tokio::time::sleep(self.config.poll_block).await;
            }
            Ok(Vec::new())
        } else if self.resume_pending {
            self.reader.pending(free).await
        } else {
            self.reader.next(free).await
        }
    }

    /// The entries read, or `None` after a failed read (having reconnected if it could).
    async fn received(&mut self, read: Result<Vec<Delivery>, StoreError>) -> Option<Vec<Delivery>> {
        match read {
            Ok(deliveries) => Some(deliveries),
            Err(e) => {
                warn!(error = %e, "reading shard streams failed; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (urls, config) = (&self.urls, &self.config);
                if let Ok(fresh) = ShardReader::open(urls, Lane::Jobs, &self.owned, &config.id, config.poll_block).await
                {
                    self.reader = fresh;
                    self.resume_pending = true;
                }
                None
            }
        }
    }

    /// After taking over `taken` entries: when to look again, and the sweep if this worker
    /// holds its lock.
    async fn after_reclaim(&mut self, taken: usize, free: usize, sweeper: bool) {
        // Look again soon while there is more to take over, else after half a timeout,
        // jittered so that workers started together do not all scan at once.
        let pause = if taken < free {
            (self.config.visibility_timeout / 2).mul_f64(0.75 + jitter() / 2.0)
        } else {
            Duration::ZERO
        };
        self.next_reclaim = Instant::now() + pause;
        if taken > 0 {
            info!(count = taken, "took over entries of a dead or hung worker");
        }
        if sweeper {
            if let Err(e) = sweep(&self.jobs, &self.queue, &self.config).await {
                warn!(error = %e, "sweeping lost and overdue jobs failed; trying again later");
            }
        }
    }

    /// Work stolen from shards this worker does not read, preferring those whose data it holds
    /// (`held`); and when to look next.
    async fn steal_when_idle(&mut self, held: &HashSet<u32>, free: usize) -> Vec<Delivery> {
        let stolen = match steal(&self.jobs, &self.config, &self.owned, held, free).await {
            Ok(stolen) => stolen,
            Err(e) => {
                warn!(error = %e, "looking for work to steal failed; trying again later");
                Vec::new()
            }
        };
        // Nothing to steal: look less often (up to every 8 polls, jittered), so thousands of
        // idle workers do not load Redis more than the work does; look again at once after a
        // find.
        self.misses = if stolen.is_empty() { (self.misses + 1).min(3) } else { 0 };
        let spacing = ((1u32 << self.misses) - 1) as f64 * (0.5 + jitter());
        self.next_steal = Instant::now() + self.config.poll_block.mul_f64(spacing);
        stolen
    }

    /// Starts each delivery not already running on its own task, each holding a slot (`permit`
    /// first) — given back while it waits for content ([`crate::slot`]).
    async fn dispatch<E: Execute>(
        &mut self,
        executor: &Arc<E>,
        acks: &Acks,
        deliveries: Vec<Delivery>,
        permit: OwnedSemaphorePermit,
    ) {
        let deliveries: Vec<Delivery> = {
            let mut running = self.in_flight.lock().expect("in-flight set is never poisoned");
            deliveries
                .into_iter()
                .filter(|d| match running.entry((d.shard, d.entry.clone())) {
                    Entry::Occupied(_) => false,
                    Entry::Vacant(slot) => {
                        slot.insert((d.clone(), Arc::default()));
                        true
                    }
                })
                .collect()
        };
        if self.resume_pending && deliveries.is_empty() {
            self.resume_pending = false;
        }
        let mut permit = Some(permit);
        for delivery in deliveries {
            let permit = match permit.take() {
                Some(permit) => permit,
                None => self.slots.clone().acquire_owned().await.expect("semaphore is never closed"),
            };
            let (executor, acks) = (executor.clone(), acks.clone());
            let queue = self.queue.clone();
            let in_flight = self.in_flight.clone();
            let cancelled = in_flight
                .lock()
                .expect("in-flight set is never poisoned")
                .get(&(delivery.shard, delivery.entry.clone()))
                .map(|(_, cancelled)| cancelled.clone())
                .unwrap_or_default();
            // Finished tasks are reaped here, before the next is added.
            while self.running.try_join_next().is_some() {}
            let (slots, waiting) = (self.slots.clone(), self.waiting.clone());
            self.running.spawn(Slot::hold(permit, slots, waiting, async move {
                let handed_to_acks = tokio::select! {
                    handed = handle(executor.as_ref(), &queue, &acks, &delivery) => handed,
                    // Dropping the run stops the guest; the job is final already, so its entry
                    // is done with.
                    _ = cancelled.notified() => {
                        info!(job = %delivery.job_id, "stopped a job that was cancelled");
                        if let Err(e) = with_retries("ack", || queue.ack(&delivery)).await {
                            warn!(job = %delivery.job_id, error = %e, "ack failed; the entry is skipped when delivered again");
                        }
                        false
                    }
                };
                // An entry handed to be acknowledged leaves the set once it is.
                if !handed_to_acks {
                    in_flight
                        .lock()
                        .expect("in-flight set is never poisoned")
                        .remove(&(delivery.shard, delivery.entry.clone()));
                }
            }));
        }
    }
}

/// A uniform draw from [0, 1), for spreading out workers started together.
fn jitter() -> f64 {
    (ulid::Ulid::new().random() % 1000) as f64 / 1000.0
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
/// only one worker at a time pays for looking at every shard. The sweeper also takes every
/// entry a quarantined worker holds, without waiting.
async fn take_over(
    jobs: &JobStore,
    queue: &ShardQueue,
    config: &WorkerConfig,
    owned: &[u32],
    count: usize,
    sweeper: &mut bool,
) -> Result<Vec<Delivery>, StoreError> {
    let mut taken = queue.reclaim(Lane::Jobs, owned, &config.id, config.visibility_timeout, count).await?;
    *sweeper = jobs.take_requeue_lock(&config.id, config.visibility_timeout / 2).await?;
    if *sweeper && taken.len() < count {
        let all: Vec<u32> = (0..config.shards).collect();
        let pending: Vec<u32> =
            shard_backlogs(&jobs.connection(), &all).await?.iter().filter(|b| b.pending > 0).map(|b| b.shard).collect();
        // A quarantined worker's entries are taken at once, however recently it renewed them.
        for quarantined in Membership::new(jobs.connection()).quarantined().await?.keys() {
            if taken.len() < count && *quarantined != config.id {
                let from = queue.take_from(Lane::Jobs, &pending, quarantined, &config.id, count - taken.len()).await?;
                if !from.is_empty() {
                    warn!(worker = %quarantined, count = from.len(), "took over a quarantined worker's entries");
                }
                taken.extend(from);
            }
        }
        let others: Vec<u32> = pending.into_iter().filter(|shard| !owned.contains(shard)).collect();
        if taken.len() < count {
            taken.extend(
                queue.reclaim(Lane::Jobs, &others, &config.id, config.visibility_timeout, count - taken.len()).await?,
            );
        }
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
/// worker takes a long job over while it still runs — unless it is quarantined.
async fn renew_claims(
    queue: ShardQueue,
    consumer: String,
    in_flight: InFlight,
    placement: Arc<Placement>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        // A quarantined worker's entries are taken from it; renewing would claim them back.
        if placement.is_quarantined() {
            continue;
        }
        let running: Vec<Delivery> =
            in_flight.lock().expect("in-flight set is never poisoned").values().map(|(d, _)| d.clone()).collect();
        if running.is_empty() {
            continue;
        }
        if let Err(e) = queue.renew(&consumer, &running).await {
            warn!(error = %e, "renewing claims failed; retrying at the next tick");
        }
    }
}

/// Looks at the states of the jobs this worker is running, every `every`, and stops those that
/// were cancelled.
async fn stop_cancelled(jobs: JobStore, in_flight: InFlight, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let running: Vec<(String, Arc<Notify>)> = in_flight
            .lock()
            .expect("in-flight set is never poisoned")
            .values()
            .map(|(d, cancelled)| (d.job_id.clone(), cancelled.clone()))
            .collect();
        if running.is_empty() {
            continue;
        }
        let ids: Vec<String> = running.iter().map(|(id, _)| id.clone()).collect();
        match jobs.states(&ids).await {
            Ok(states) => {
                for ((_, cancelled), state) in running.iter().zip(states) {
                    if state == Some(JobState::Cancelled) {
                        cancelled.notify_one();
                    }
                }
            }
            Err(e) => warn!(error = %e, "looking for cancelled jobs failed; looking again at the next tick"),
        }
    }
}

/// Runs `delivery` and settles its entry; true if it was handed to `acks`.
async fn handle<E: Execute>(executor: &E, queue: &ShardQueue, acks: &Acks, delivery: &Delivery) -> bool {
    if let Some(queued) = phases::queued_for(&delivery.entry, now_ms()) {
        phases::observe(Phase::Queued, queued);
    }
    let started = Instant::now();
    match executor.execute(delivery).await {
        Ok(Settled::AttemptsExhausted { attempts }) => {
            let reason = format!("worker_lost: started {attempts} times, never finished");
            if let Err(e) = with_retries("dead_letter", || queue.dead_letter(delivery, &reason)).await {
                warn!(job = %delivery.job_id, error = %e, "dead-lettering failed; the entry stays pending");
            }
            false
        }
        Ok(Settled::Later) => false,
        Ok(Settled::Acknowledged) => {
            phases::observe(Phase::Delivery, started.elapsed());
            false
        }
        // The result is durably stored: only now is the entry acknowledged.
        Ok(Settled::Done) => {
            let handed = acks.settled(delivery.clone());
            phases::observe(Phase::Delivery, started.elapsed());
            handed
        }
        Err(e) => {
            error!(job = %delivery.job_id, error = %e, "could not record the job's result; leaving it pending");
            false
        }
    }
}
