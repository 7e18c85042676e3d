//! The simulation's workload on real processes (`--workload locality`), so the two can be
//! compared: a catalogue of real blobs in the stack's block store, users with programs of their
//! own (echo-hash with distinct arguments), items drawn with the simulation's Zipf popularity
//! and permutation ([`crate::workload::draw`]), each user keeping a bounded number of jobs
//! outstanding, and `shoal worker` processes whose input caches decide the hit rate.
//!
//! Item `n` has the size the simulation's catalogue gives item `n` for the same seed and mean
//! ([`crate::sim::Catalogue`]); its bytes are generated from the seed and imported as UnixFS, so
//! its CID is real and every job's output CID is known in advance. A two-input program mounts
//! the next item at `/neighbour`: it is fetched and cached like the first (the simulation's
//! neighbouring tile), but echo-hash hashes only `/inputs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use futures::StreamExt;
use indicatif::ProgressBar;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::FsBlockStore;
use shoal_jobs::with_retries;
use shoal_jobs::{now_ms, Job, JobStore, Membership};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::{Api, Submitted};
use crate::chaos::faults::inject_faults;
use crate::chaos::options::Options;
use crate::chaos::setup::{drain, Setup};
use crate::error::{LoadtestError, Result};
use crate::figures::{assess_jobs, Assessed, FaultRecord, Report};
use crate::locality::{sample_live, Locality, LocalityTally, BY_JOBS};
use crate::sim::catalogue::Catalogue;
use crate::workload::{draw, programs_of, user_seed, Popularity, SplitMix};

/// Pause between rounds of reading the outstanding jobs.
const WATCH_PAUSE: Duration = Duration::from_millis(20);
/// Outstanding jobs read at once.
const WATCH_PARALLEL: usize = 16;
/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// The workers' heartbeat when not configured (`shoal worker`'s default).
const DEFAULT_HEARTBEAT_MS: u64 = 5000;
/// How long the worker processes have to join the membership.
const WORKERS_READY: Duration = Duration::from_secs(60);

/// The catalogue as added to the store: every item's CID and size, and the output echo-hash
/// produces over it.
#[derive(Debug, Clone)]
pub struct RealCatalogue {
    /// Item CIDs by item number.
    pub cids: Vec<Cid>,
    /// Item sizes in bytes.
    pub sizes: Vec<u64>,
    /// The output CID of echo-hash with the item mounted at `/inputs`.
    pub expected: Vec<Cid>,
}

impl RealCatalogue {
    /// The sum of the items' sizes.
    pub fn bytes(&self) -> u64 {
        self.sizes.iter().sum()
    }
}

/// The bytes of item `n` of a catalogue seeded `seed`, `len` long.
pub fn item_bytes(seed: u64, n: u64, len: u64) -> Vec<u8> {
    SplitMix::new(seed ^ 0x1_7E45 ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).bytes(len as usize)
}

/// Adds `items` items of `mean` bytes on average to `store`: item `n` gets the size the
/// simulation's catalogue of the same seed and mean gives its item `n`.
pub async fn add_catalogue(store: &FsBlockStore, items: u64, mean: u64, seed: u64) -> Result<RealCatalogue> {
    let model = Catalogue::new(items.max(1) * mean.max(1), mean.max(1), seed);
    let mut catalogue = RealCatalogue { cids: Vec::new(), sizes: Vec::new(), expected: Vec::new() };
    for n in 0..model.items() {
        let size = model.size_of(&model.cid(n));
        let bytes = item_bytes(seed, n, size);
        let cid = unixfs::import_reader(&bytes[..], &ImportOptions::default(), store)
            .await
            .map_err(|source| LoadtestError::content(format!("importing catalogue item {n}"), source))?
            .root;
        // echo-hash over a single file mounted at /inputs, which the worker names by its CID.
        let name = cid.to_string();
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let expected =
            crate::workload::expected_tree(&[(format!("{name}.sha256"), format!("{digest}  {name}\n").into_bytes())])
                .await?;
        catalogue.cids.push(cid);
        catalogue.sizes.push(size);
        catalogue.expected.push(expected);
    }
    Ok(catalogue)
}

/// One job of the run.
#[derive(Debug, Clone)]
pub struct LocalityJob {
    /// Who submitted it.
    pub user: usize,
    /// Which program.
    pub program: usize,
    /// The items it reads.
    pub items: Vec<u64>,
    /// The spec POSTed.
    pub spec: Value,
    /// The output a correct run produces.
    pub expected_output: Cid,
}

/// The job program `program` of `user` runs over `items`.
pub fn job_spec(echo_hash: &Cid, catalogue: &RealCatalogue, user: usize, program: usize, items: &[u64]) -> LocalityJob {
    let mounts = ["/inputs", "/neighbour"];
    let inputs: Vec<Value> = items
        .iter()
        .zip(mounts)
        .map(|(&n, path)| json!({"cid": catalogue.cids[n as usize].to_string(), "path": path}))
        .collect();
    let spec = json!({
        "program": echo_hash.to_string(),
        "args": ["--program", program.to_string()],
        "env": {"LOADTEST_USER": user.to_string()},
        "inputs": inputs,
        "verification": {"mode": "none"},
    });
    LocalityJob { user, program, items: items.to_vec(), spec, expected_output: catalogue.expected[items[0] as usize] }
}

/// Runs the locality workload: catalogue and program into the store, the stack up, users
/// submitting in a closed loop for `--duration-secs`, then every job checked and counted.
pub async fn run(options: &Options, command: String, setup: Setup) -> Result<Report> {
    let o = options;
    if o.users == 0 || o.distinct_programs == 0 || o.workers == 0 {
        return Err(LoadtestError::Setup("--users, --distinct-programs and --workers must be at least 1".into()));
    }
    let Setup { started_at_unix_s, deadline, .. } = setup;
    let (home, store) = (&setup.home, &setup.store);
    log(o, &format!("adding {} catalogue items of {} B on average", o.catalogue_items, o.item_bytes));
    let catalogue = add_catalogue(store, o.catalogue_items, o.item_bytes, o.seed).await?;
    let wasm_path = setup.programs.join("echo-hash.wasm");
    let wasm =
        std::fs::read(&wasm_path).map_err(|e| LoadtestError::io(format!("reading {}", wasm_path.display()), e))?;
    let echo_hash = unixfs::import_reader(&wasm[..], &ImportOptions::default(), store)
        .await
        .map_err(|source| LoadtestError::content("importing echo-hash.wasm", source))?
        .root;

    let stack = Arc::new(setup.start_stack(o).await?);
    let api = Api::new(stack.gateway_url(), stack.api_key())?;
    let client =
        redis::Client::open(stack.redis_url()).map_err(|e| LoadtestError::store("opening the Redis URL", e))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(20)))
        .set_connection_timeout(Some(Duration::from_secs(10)));
    let conn = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| LoadtestError::store("connecting to Redis", e))?;
    let jobs = JobStore::new(conn.clone());

    let live: Arc<Mutex<Vec<(u64, usize)>>> = Arc::default();
    let heartbeat = Duration::from_millis(o.heartbeat_ms.unwrap_or(DEFAULT_HEARTBEAT_MS));
    let membership = Membership::new(conn);
    // Submitting starts once every worker process has joined, as the simulation's in-process
    // workers have when it starts: process start-up is not what is compared.
    let starting = Instant::now();
    loop {
        let joined = membership.live(Membership::live_window(heartbeat)).await.map(|l| l.len()).unwrap_or(0);
        if joined >= o.workers {
            break;
        }
        if starting.elapsed() >= WORKERS_READY {
            return Err(LoadtestError::Setup(format!(
                "{joined} of {} workers joined within {WORKERS_READY:?}; see {}/logs",
                o.workers,
                home.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sampler = tokio::spawn(sample_live(membership, Membership::live_window(heartbeat), live.clone()));
    log(
        o,
        &format!(
            "{} workers joined in {:.1} s; submitting for {} s",
            o.workers,
            starting.elapsed().as_secs_f64(),
            o.duration_secs
        ),
    );

    let t0 = Instant::now();
    let t0_ms = now_ms();
    let (done_tx, done_rx) = watch::channel(false);
    let faults = tokio::spawn(inject_faults(stack.clone(), o.clone(), t0, deadline, done_rx, ProgressBar::hidden()));
    let until = (t0 + Duration::from_secs_f64(o.duration_secs.max(0.0))).min(deadline);
    let planned = Arc::new(AtomicUsize::new(0));
    let (watch_tx, watch_rx) = mpsc::unbounded_channel();
    let popularity = Popularity::new(catalogue.cids.len() as u64, o.seed);
    let run_id = format!("{started_at_unix_s:x}");
    let catalogue = Arc::new(catalogue);
    let mut users = JoinSet::new();
    for user in 0..o.users {
        users.spawn(submit_user(User {
            user,
            own: programs_of(user, o.users, o.distinct_programs),
            popularity,
            catalogue: catalogue.clone(),
            echo_hash,
            api: api.clone(),
            permits: Arc::new(Semaphore::new(o.outstanding_per_user.max(1))),
            planned: planned.clone(),
            max_jobs: o.jobs,
            until,
            // Unanswered this long after submitting ends, a submission is given up (the stall
            // limit), so a stack that stopped answering ends the run instead of hanging it.
            deadline: (until + Duration::from_secs(o.stall_secs)).min(deadline),
            key_prefix: format!("locality-{run_id}-{user}"),
            seed: user_seed(o.seed, user),
            watch: watch_tx.clone(),
        }));
    }
    drop(watch_tx);

    let (finished, ended_early) = watch_jobs(o, &jobs, watch_rx, t0, deadline, &planned).await;
    let duration_s = t0.elapsed().as_secs_f64();
    done_tx.send(true).ok();
    let mut submissions: Vec<(usize, LocalityJob, Submitted)> = Vec::new();
    while let Some(joined) = users.join_next().await {
        submissions.extend(joined.map_err(|e| LoadtestError::Setup(format!("a submitter panicked: {e}")))?);
    }
    submissions.sort_by_key(|(n, _, _)| *n);
    let faults: Vec<FaultRecord> =
        faults.await.map_err(|e| LoadtestError::Setup(format!("the fault injector panicked: {e}")))?;
    sampler.abort();

    // Jobs not seen finished are read once more: one that finished meanwhile counts.
    let records: Vec<Option<Job>> = futures::stream::iter(submissions.iter().map(|(_, _, s)| s.id()))
        .map(|id| {
            let (jobs, finished) = (jobs.clone(), &finished);
            async move {
                let id = id?;
                match finished.get(id) {
                    Some(job) => Some(job.clone()),
                    None => with_retries("reading a job", || jobs.get(id)).await.ok().flatten(),
                }
            }
        })
        .buffered(WATCH_PARALLEL)
        .collect()
        .await;
    let listed = api.all_job_ids(Instant::now() + Duration::from_secs(60)).await;
    stack.shutdown();

    let base = Report::empty(command, started_at_unix_s, submissions.len());
    let mut report = Report::of_faulted_run(base, duration_s, ended_early, faults, stack.workers_reclaim());
    let mut tally = LocalityTally::new(t0_ms, (o.bucket_secs.max(0.1) * 1000.0) as u64);
    let assessed = submissions.iter().zip(&records).map(|((_, job, submitted), record)| Assessed {
        kind: format!("program-{}", job.program),
        expected: &job.expected_output,
        submitted,
        record: record.as_ref(),
    });
    assess_jobs(&mut report, assessed, &mut tally);
    report.count_unreturned(listed, &submissions.iter().filter_map(|(_, _, s)| s.id()).collect());
    let live = live.lock().expect("never poisoned").clone();
    report.locality = Some(Locality {
        workers: o.workers,
        catalogue_bytes: catalogue.bytes(),
        catalogue_items: catalogue.cids.len() as u64,
        cache_bytes: o.cache_bytes.unwrap_or(0),
        cache_hit_rate: tally.cache_hit_rate(),
        local_task_rate: tally.local_task_rate(),
        users: o.users,
        programs: o.distinct_programs,
        outstanding_per_user: o.outstanding_per_user,
        shards: o.shards,
        execution_times: tally.times(),
        series: tally.series(&live),
        bucket_s: tally.bucket_s(),
        by_jobs: tally.by_jobs(BY_JOBS),
        jobs: tally.records().to_vec(),
    });
    log(
        o,
        &format!(
            "locality: hit rate {:.1}% local {:.1}% over {} succeeded jobs",
            tally.cache_hit_rate() * 100.0,
            tally.local_task_rate() * 100.0,
            report.succeeded
        ),
    );
    Ok(report)
}

fn log(options: &Options, line: &str) {
    if !options.quiet {
        eprintln!("{line}");
    }
}

/// What one user's submitter needs.
struct User {
    user: usize,
    own: Vec<usize>,
    popularity: Popularity,
    catalogue: Arc<RealCatalogue>,
    echo_hash: Cid,
    api: Api,
    permits: Arc<Semaphore>,
    planned: Arc<AtomicUsize>,
    max_jobs: usize,
    until: Instant,
    deadline: Instant,
    key_prefix: String,
    seed: u64,
    /// Accepted jobs go to the watcher with the permit it releases when they finish.
    watch: mpsc::UnboundedSender<(String, OwnedSemaphorePermit)>,
}

/// Submits one user's jobs until `until` (or the job limit), each holding one of its permits
/// until it finishes. Returns every submission with its number over the whole run.
async fn submit_user(u: User) -> Vec<(usize, LocalityJob, Submitted)> {
    let mut rng = SplitMix::new(u.seed);
    let mut in_flight = JoinSet::new();
    let mut done = Vec::new();
    loop {
        let permit = tokio::select! {
            permit = u.permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = tokio::time::sleep_until(u.until) => break,
        };
        if Instant::now() >= u.until {
            break;
        }
        let n = u.planned.fetch_add(1, Ordering::Relaxed);
        if u.max_jobs > 0 && n >= u.max_jobs {
            break;
        }
        let drawn = draw(&u.own, &u.popularity, &mut rng);
        let job = job_spec(&u.echo_hash, &u.catalogue, u.user, drawn.program, &drawn.items);
        let (api, key, deadline, watch) = (u.api.clone(), format!("{}-{n}", u.key_prefix), u.deadline, u.watch.clone());
        in_flight.spawn(async move {
            let submitted = api.submit(&job.spec, &key, deadline).await;
            if let Some(id) = submitted.id() {
                // A closed watcher (the run ending) drops the permit with the message.
                watch.send((id.to_string(), permit)).ok();
            }
            (n, job, submitted)
        });
        while let Some(joined) = in_flight.try_join_next() {
            done.extend(joined.ok());
        }
    }
    while let Some(joined) = in_flight.join_next().await {
        done.extend(joined.ok());
    }
    done
}

/// Reads every outstanding job each round until all have finished, releasing each one's permit
/// when it has; stops early at the deadline or after `--stall-secs` without a job finishing
/// once submitting is over. Returns the finished jobs' records by id and why waiting stopped
/// early, if it did.
async fn watch_jobs(
    o: &Options,
    jobs: &JobStore,
    mut accepted: mpsc::UnboundedReceiver<(String, OwnedSemaphorePermit)>,
    t0: Instant,
    deadline: Instant,
    planned: &AtomicUsize,
) -> (HashMap<String, Job>, Option<String>) {
    let stall = Duration::from_secs(o.stall_secs);
    let mut pending: HashMap<String, OwnedSemaphorePermit> = HashMap::new();
    let mut finished: HashMap<String, Job> = HashMap::new();
    let mut submitting = true;
    let mut last_progress = Instant::now();
    let mut last_log = Instant::now();
    let ended_early = loop {
        let submitted_all = drain(&mut accepted, |(id, permit)| {
            pending.insert(id, permit);
        });
        if submitted_all && submitting {
            submitting = false;
            last_progress = Instant::now();
        }
        if !submitting && pending.is_empty() {
            break None;
        }
        if Instant::now() >= deadline {
            break Some(format!("deadline of {} s reached with {} jobs unfinished", o.deadline_secs, pending.len()));
        }
        if !submitting && last_progress.elapsed() >= stall {
            break Some(format!("no job finished for {} s; {} jobs unfinished", o.stall_secs, pending.len()));
        }
        if !o.quiet && last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            eprintln!(
                "t={:.0}s planned {} finished {} outstanding {}",
                t0.elapsed().as_secs_f64(),
                planned.load(Ordering::Relaxed),
                finished.len(),
                pending.len()
            );
        }
        let ids: Vec<String> = pending.keys().cloned().collect();
        let reads: Vec<(String, Option<Job>)> = futures::stream::iter(ids)
            .map(|id| async move {
                let job = jobs.get(&id).await.ok().flatten();
                (id, job)
            })
            .buffer_unordered(WATCH_PARALLEL)
            .collect()
            .await;
        for (id, job) in reads {
            if let Some(job) = job.filter(|job| job.state.is_terminal()) {
                // Dropping the permit lets its user submit the next job.
                pending.remove(&id);
                finished.insert(id, job);
                last_progress = Instant::now();
            }
        }
        tokio::time::sleep(WATCH_PAUSE).await;
    };
    (finished, ended_early)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_content::MemoryBlockStore;

    #[test]
    fn items_are_deterministic_and_distinct() {
        assert_eq!(item_bytes(1, 3, 100), item_bytes(1, 3, 100));
        assert_ne!(item_bytes(1, 3, 100), item_bytes(1, 4, 100));
        assert_ne!(item_bytes(1, 3, 100), item_bytes(2, 3, 100));
        assert_eq!(item_bytes(1, 3, 77).len(), 77);
    }

    #[tokio::test]
    async fn the_catalogue_has_the_simulations_sizes_and_echo_hash_expectations() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlockStore::open(dir.path()).unwrap();
        let catalogue = add_catalogue(&store, 6, 300_000, 5).await.unwrap();
        let model = Catalogue::new(6 * 300_000, 300_000, 5);
        for n in 0..6u64 {
            let size = model.size_of(&model.cid(n));
            assert_eq!(catalogue.sizes[n as usize], size);
            assert!((150_000..450_000).contains(&size));
            // The stored item is the generated bytes.
            let cid = catalogue.cids[n as usize];
            let bytes: Vec<u8> = unixfs::cat(Arc::new(store.clone()), cid)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .map(|chunk| chunk.unwrap())
                .flat_map(|chunk| chunk.to_vec())
                .collect();
            assert_eq!(bytes, item_bytes(5, n, size));
            // The expected output holds `<cid>.sha256` with the digest of those bytes.
            let memory = MemoryBlockStore::new();
            let name = cid.to_string();
            let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            let tree = crate::workload::expected_tree_into(
                &[(format!("{name}.sha256"), format!("{digest}  {name}\n").into_bytes())],
                &memory,
            )
            .await
            .unwrap();
            assert_eq!(tree, catalogue.expected[n as usize]);
        }
        assert_eq!(catalogue.bytes(), catalogue.sizes.iter().sum::<u64>());
    }

    #[test]
    fn a_two_input_job_mounts_the_neighbour_and_expects_the_first_items_output() {
        let catalogue = RealCatalogue {
            cids: (0..3u8).map(|n| crate::sim::catalogue::raw_cid(&[n])).collect(),
            sizes: vec![1, 1, 1],
            expected: (10..13u8).map(|n| crate::sim::catalogue::raw_cid(&[n])).collect(),
        };
        let program = crate::sim::catalogue::raw_cid(b"echo-hash");
        let job = job_spec(&program, &catalogue, 2, 5, &[1, 2]);
        let inputs = job.spec["inputs"].as_array().unwrap();
        assert_eq!(inputs[0]["path"], "/inputs");
        assert_eq!(inputs[1]["path"], "/neighbour");
        assert_eq!(inputs[1]["cid"], catalogue.cids[2].to_string());
        assert_eq!(job.expected_output, catalogue.expected[1]);
        assert_eq!(job.spec["args"], json!(["--program", "5"]));
        shoal_jobs::JobSpec::from_json(job.spec.to_string().as_bytes()).unwrap();
    }
}
