//! Placement by data locality on a real stack: the same input keeps reaching the worker that
//! cached it, shards move when workers join and leave, and work stranded on a shard whose
//! reader is gone is stolen by an idle worker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cid::Cid;
use serde_json::{json, Value};
use shoal_jobs::{
    now_ms, Candidate, ExecutionOutcome, Job, JobSpec, JobState, Membership, ShardAssignment, ShardRouter, WorkerInfo,
};
use shoal_testkit::{Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(120);

fn spec(program: &Cid, input: &Cid, tag: &str) -> Value {
    json!({"program": program.to_string(), "args": [tag], "inputs": [{"cid": input.to_string()}]})
}

/// The shard a spec is routed to, as the gateway routes it.
fn shard_of(spec: &Value, shards: u32) -> u32 {
    ShardRouter::new(shards).route(&JobSpec::from_json(spec.to_string().as_bytes()).unwrap())
}

/// The live workers as the gateway lists them, once exactly `ids` are live.
async fn live_workers(stack: &Stack, ids: &[&str]) -> Vec<Candidate> {
    let deadline = Instant::now() + WAIT;
    loop {
        let body: Value =
            stack.http.get(format!("{}/v1/workers", stack.gateway)).send().await.unwrap().json().await.unwrap();
        let mut live: Vec<Candidate> = body["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| Candidate::new(w["id"].as_str().unwrap(), w["capacity"].as_u64().unwrap() as u32))
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        let mut want: Vec<&str> = ids.to_vec();
        want.sort();
        if live.iter().map(|c| c.id.as_str()).eq(want.iter().copied()) {
            return live;
        }
        assert!(Instant::now() < deadline, "live workers never became {ids:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The one completed execution of a succeeded job: (worker, inputs it had cached).
fn ran_on(job: &Job) -> (String, u32) {
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let completed: Vec<_> = job
        .executions
        .iter()
        .filter_map(|e| match &e.outcome {
            Some(ExecutionOutcome::Completed(result)) => Some((e.worker.clone(), result.inputs_cached)),
            _ => None,
        })
        .collect();
    assert_eq!(completed.len(), 1, "{job:?}");
    completed[0].clone()
}

async fn run_all(stack: &Stack, specs: &[Value]) -> Vec<Job> {
    let mut ids = Vec::new();
    for spec in specs {
        ids.push(stack.submit_ok(spec).await.unwrap());
    }
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(stack.wait_terminal(&id, WAIT).await.unwrap());
    }
    jobs
}

/// Registers "ghost": a worker that beats its heartbeat but never reads (hung, or overloaded),
/// with a capacity that makes it own nearly every shard. It beats until the handle is aborted.
async fn start_ghost(stack: &Stack, options: &StackOptions) -> tokio::task::JoinHandle<()> {
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let membership = Membership::new(client.get_connection_manager().await.unwrap());
    let ghost = WorkerInfo {
        id: "ghost".into(),
        capacity: 10_000,
        cache_bytes: 0,
        labels: BTreeMap::new(),
        shards: options.shards,
        started_at_ms: now_ms(),
    };
    membership.heartbeat(&ghost).await.unwrap();
    tokio::spawn(async move {
        loop {
            membership.heartbeat(&ghost).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Waits until the workers have had time to see the membership settle (three heartbeats).
async fn settle(options: &StackOptions) {
    tokio::time::sleep(options.heartbeat * 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_input_keeps_reaching_the_worker_that_cached_it() {
    let options = StackOptions { workers: 3, shards: 32, ..StackOptions::default() };
    let stack = Stack::start(options.clone()).await.unwrap();
    let live = live_workers(&stack, &["worker-0", "worker-1", "worker-2"]).await;
    settle(&options).await;
    let program = stack.add_program("echo-hash").await.unwrap();
    let mut inputs = Vec::new();
    for n in 0..12 {
        inputs.push(stack.add_bytes(format!("scene {n}").as_bytes()).await.unwrap());
    }
    let assignment = ShardAssignment::new(options.shards, 1);

    let first: Vec<Value> = inputs.iter().map(|input| spec(&program, input, "first")).collect();
    let second: Vec<Value> = inputs.iter().map(|input| spec(&program, input, "second")).collect();
    let first_jobs = run_all(&stack, &first).await;
    let second_jobs = run_all(&stack, &second).await;

    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for ((spec, first), second) in first.iter().zip(&first_jobs).zip(&second_jobs) {
        let owner = assignment.owners(shard_of(spec, options.shards), &live)[0].id.clone();
        let (first_worker, _) = ran_on(first);
        let (second_worker, cached) = ran_on(second);
        assert_eq!(first_worker, owner, "a job runs on the worker that reads its input's shard");
        assert_eq!(second_worker, first_worker, "the same input goes back to the same worker");
        assert_eq!(cached, 1, "and finds its input cached there");
        *per_worker.entry(owner).or_default() += 1;
    }
    assert!(per_worker.len() >= 2, "twelve inputs spread over more than one worker: {per_worker:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_move_to_a_joining_worker_and_back_when_it_leaves() {
    let options = StackOptions { workers: 2, shards: 16, ..StackOptions::default() };
    let mut stack = Stack::start(options.clone()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let two = live_workers(&stack, &["worker-0", "worker-1"]).await;

    // A third worker joins, as a process that can be told to leave.
    let pid = stack.spawn_worker_process("joiner").unwrap();
    let three = live_workers(&stack, &["worker-0", "worker-1", "joiner"]).await;
    settle(&options).await;
    let assignment = ShardAssignment::new(options.shards, 1);
    let taken = assignment.shards_of("joiner", &three);
    assert!(!taken.is_empty(), "the joiner takes a share of the shards");
    assert_eq!(assignment.moved(&two, &three), taken.len(), "only the joiner's share moved");

    // Inputs whose shards the joiner took run there.
    let mut joiner_specs = Vec::new();
    for n in 0.. {
        let input = stack.add_bytes(format!("join {n}").as_bytes()).await.unwrap();
        let spec = spec(&program, &input, "join");
        if taken.contains(&shard_of(&spec, options.shards)) {
            joiner_specs.push(spec);
            if joiner_specs.len() == 3 {
                break;
            }
        }
    }
    for job in run_all(&stack, &joiner_specs).await {
        assert_eq!(ran_on(&job).0, "joiner");
    }

    // It leaves cleanly (SIGTERM): its shards go back to the two, which run the same inputs.
    stack.signal_worker_process(pid, "TERM").unwrap();
    live_workers(&stack, &["worker-0", "worker-1"]).await;
    settle(&options).await;
    let again: Vec<Value> = joiner_specs
        .iter()
        .map(|spec| {
            let mut spec = spec.clone();
            spec["args"] = json!(["after-leave"]);
            spec
        })
        .collect();
    for (spec, job) in again.iter().zip(run_all(&stack, &again).await) {
        let owner = &assignment.owners(shard_of(spec, options.shards), &two)[0].id;
        assert_eq!(&ran_on(&job).0, owner, "the leaver's shard is read by its next-ranked worker");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_on_a_shard_nobody_reads_is_stolen_by_an_idle_worker() {
    let options = StackOptions { workers: 0, shards: 8, ..StackOptions::default() };
    let mut stack = Stack::start(options.clone()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();

    // A registered worker that never reads (hung, or overloaded), weighted to own most shards.
    let beating = start_ghost(&stack, &options).await;
    let mut config = stack.worker_config("thief");
    config.steal_after = Duration::from_secs(1);
    stack.start_worker_with(config);
    let live = live_workers(&stack, &["ghost", "thief"]).await;
    settle(&options).await;

    let assignment = ShardAssignment::new(options.shards, 1);
    let mut specs = Vec::new();
    for n in 0..3 {
        let input = stack.add_bytes(format!("stranded {n}").as_bytes()).await.unwrap();
        let spec = spec(&program, &input, "stranded");
        if assignment.owners(shard_of(&spec, options.shards), &live)[0].id == "ghost" {
            specs.push(spec);
        }
    }
    assert!(!specs.is_empty(), "the ghost owns nearly every shard");
    for job in run_all(&stack, &specs).await {
        assert_eq!(ran_on(&job).0, "thief", "stranded work is stolen, never lost");
    }
    beating.abort();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_worker_steals_first_where_it_already_holds_the_data() {
    let options = StackOptions { workers: 0, shards: 16, ..StackOptions::default() };
    let mut stack = Stack::start(options.clone()).await.unwrap();
    let echo = stack.add_program("echo-hash").await.unwrap();
    let spin = stack.add_program("infinite-loop").await.unwrap();

    // A registered worker that never reads, weighted to own nearly every shard.
    let beating = start_ghost(&stack, &options).await;
    let mut config = stack.worker_config("thief");
    config.concurrency = 1;
    config.steal_after = Duration::from_secs(1);
    config.steal_min_backlog = 2;
    stack.start_worker_with(config);
    let live = live_workers(&stack, &["ghost", "thief"]).await;
    settle(&options).await;
    let assignment = ShardAssignment::new(options.shards, 1);
    let ghost_owns = |spec: &Value| assignment.owners(shard_of(spec, options.shards), &live)[0].id == "ghost";

    // Two inputs on two different shards of the ghost's.
    let mut picked: Vec<(Cid, u32)> = Vec::new();
    for n in 0.. {
        let input = stack.add_bytes(format!("data {n}").as_bytes()).await.unwrap();
        let probe = spec(&echo, &input, "probe");
        let shard = shard_of(&probe, options.shards);
        if ghost_owns(&probe) && picked.iter().all(|(_, s)| *s != shard) {
            picked.push((input, shard));
            if picked.len() == 2 {
                break;
            }
        }
    }
    let (held, other) = (picked[0].0, picked[1].0);

    // The thief takes a stranded job over `held`, and so comes to hold it.
    let warm = run_all(&stack, &[spec(&echo, &held, "warm")]).await;
    assert_eq!(ran_on(&warm[0]).0, "thief");

    // While it is busy with a long job, backlogs build on both shards, the longer one on the
    // shard whose data it does not hold.
    let long = json!({"program": spin.to_string(), "args": ["long"], "inputs": [{"cid": held.to_string()}],
        "limits": {"fuel": 10_000_000_000_000u64, "wall_time_ms": 3000}, "retry": {"max_attempts": 1}});
    let long = stack.submit_ok(&long).await.unwrap();
    stack.wait_until(&long, WAIT, |job| job.state == JobState::Running).await.unwrap();
    let mut later = Vec::new();
    for n in 0..3 {
        later.push((other, stack.submit_ok(&spec(&echo, &other, &format!("other {n}"))).await.unwrap()));
    }
    for n in 0..2 {
        later.push((held, stack.submit_ok(&spec(&echo, &held, &format!("held {n}"))).await.unwrap()));
    }
    assert_eq!(stack.wait_terminal(&long, WAIT).await.unwrap().state, JobState::Failed, "the long job times out");

    let mut started = Vec::new();
    for (input, id) in &later {
        let job = stack.wait_terminal(id, WAIT).await.unwrap();
        assert_eq!(ran_on(&job).0, "thief");
        started.push((job.executions[0].started_at_ms, *input));
    }
    started.sort();
    assert_eq!(started[0].1, held, "the first job it steals is one whose data it holds: {started:?}");
    beating.abort();
    stack.shutdown().await;
}

/// Runs 12 jobs of 400 ms each over one input on three workers that never steal, and returns
/// which worker ran each, with the input's shard. With `max_shard_readers` of 1 only the shard's owner
/// reads it.
async fn spread_of_a_hot_input(max_shard_readers: usize) -> (BTreeMap<String, usize>, Stack, u32) {
    let options = StackOptions { workers: 0, shards: 16, ..StackOptions::default() };
    let mut stack = Stack::start(options.clone()).await.unwrap();
    let spin = stack.add_program("infinite-loop").await.unwrap();
    for id in ["a", "b", "c"] {
        let mut config = stack.worker_config(id);
        config.concurrency = 1;
        // Stealing off: only hot replicas may spread the shard's work.
        config.steal_min_backlog = u64::MAX;
        config.steal_after = Duration::from_secs(3600);
        config.hot_backlog = 2;
        config.max_shard_readers = max_shard_readers;
        stack.start_worker_with(config);
    }
    live_workers(&stack, &["a", "b", "c"]).await;
    settle(&options).await;
    let input = stack.add_bytes(b"a scene everyone wants").await.unwrap();
    let specs: Vec<Value> = (0..12)
        .map(|n| {
            json!({"program": spin.to_string(), "args": [format!("hot {n}")], "inputs": [{"cid": input.to_string()}],
                "limits": {"fuel": 10_000_000_000_000u64, "wall_time_ms": 400}, "retry": {"max_attempts": 1}})
        })
        .collect();
    let shard = shard_of(&specs[0], options.shards);
    let mut ids = Vec::new();
    for spec in &specs {
        ids.push(stack.submit_ok(spec).await.unwrap());
    }
    if max_shard_readers > 1 {
        // The gateway shows the shard as hot, with its extra readers, while its backlog lasts.
        let deadline = Instant::now() + WAIT;
        loop {
            let body: Value =
                stack.http.get(format!("{}/v1/workers", stack.gateway)).send().await.unwrap().json().await.unwrap();
            if body["hot_shards"][shard.to_string()].as_array().is_some_and(|readers| !readers.is_empty()) {
                break;
            }
            assert!(Instant::now() < deadline, "shard {shard} never showed as hot: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut ran = BTreeMap::new();
    for id in ids {
        let job = stack.wait_terminal(&id, WAIT).await.unwrap();
        assert_eq!(job.state, JobState::Failed, "each job runs until its wall-time limit: {job:?}");
        assert_eq!(job.executions.len(), 1, "{job:?}");
        *ran.entry(job.executions[0].worker.clone()).or_insert(0) += 1;
    }
    (ran, stack, shard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_input_is_served_by_more_than_one_worker_and_its_holders_are_advertised() {
    let (alone, stack, _) = spread_of_a_hot_input(1).await;
    assert_eq!(alone.len(), 1, "without hot replicas the owner alone runs them: {alone:?}");
    stack.shutdown().await;

    let (spread, stack, shard) = spread_of_a_hot_input(3).await;
    eprintln!("12 jobs over one hot input ran on {spread:?}; with hot replicas off, on {alone:?}");
    assert!(spread.len() >= 2, "a backlog of 12 at 2 per reader gets more readers: {spread:?}");
    // Every worker that ran one holds the input now, and advertises it.
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let membership = Membership::new(client.get_connection_manager().await.unwrap());
    let deadline = Instant::now() + WAIT;
    loop {
        let live = membership.live(Duration::from_secs(10)).await.unwrap();
        let holders = membership.holders(&[shard], &live).await.unwrap().remove(0);
        if spread.keys().all(|worker| holders.contains(worker)) {
            break;
        }
        assert!(Instant::now() < deadline, "holders {holders:?} never covered {spread:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.shutdown().await;
}
