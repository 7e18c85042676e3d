//! The whole system on a local 3-node Redis Cluster: gateway and workers given the seed nodes,
//! jobs spread over shards on every node, a directory fanned out, all results correct.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::{BlockStore, FsBlockStore};
use shoal_gateway::GatewayConfig;
use shoal_jobs::{Job, JobState, RedisCluster};
use shoal_testkit::program_bytes;
use shoal_worker::WorkerConfig;
use tokio::sync::watch;

use crate::sha256_hex;

const SHARDS: u32 = 16;
const WAIT: Duration = Duration::from_secs(120);

/// The job once terminal, by long-poll. A poll that waited must be answered when the settle
/// script published the change — on whichever node the job's slot lives, while the gateway
/// subscribes on one — not when its wait ran out.
async fn wait_terminal(http: &reqwest::Client, gateway: &str, id: &str) -> (Job, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let asked = Instant::now();
        let request = http.get(format!("{gateway}/v1/jobs/{id}?wait=60s"));
        let body: Value = request.send().await.unwrap().json().await.unwrap();
        let job: Job = serde_json::from_value(body.clone()).unwrap();
        if job.state.is_terminal() {
            let late = shoal_jobs::now_ms().saturating_sub(job.updated_at_ms);
            let waited = asked.elapsed() > Duration::from_secs(1);
            assert!(!waited || late < 5000, "job {id} answered {late} ms after it settled: not woken by the change");
            return (job, body);
        }
        assert!(Instant::now() < deadline, "job {id} still {}", job.state);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_and_a_fan_out_run_on_a_three_node_cluster() {
    let home = tempfile::tempdir().unwrap();
    let cluster = tokio::task::spawn_blocking({
        let dir = home.path().join("cluster");
        move || RedisCluster::start(&dir)
    })
    .await
    .unwrap()
    .unwrap();
    let seeds = cluster.urls().join(",");
    let store = std::sync::Arc::new(FsBlockStore::open(home.path().join("blocks")).unwrap());
    let import = |bytes: Vec<u8>| {
        let store = store.clone();
        async move { unixfs::import_reader(&bytes[..], &ImportOptions::default(), store.as_ref() as &dyn BlockStore).await }
    };
    let program = import(program_bytes("echo-hash")).await.unwrap().root;

    let router = shoal_gateway::router(GatewayConfig::new(seeds.clone(), SHARDS)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    let (stop, _) = watch::channel(false);
    let mut stopped = stop.subscribe();
    tokio::spawn(shoal_gateway::serve(listener, router, async move {
        stopped.wait_for(|s| *s).await.ok();
    }));
    let mut workers = Vec::new();
    for n in 0..2 {
        let mut config = WorkerConfig::new(&format!("worker-{n}"), &seeds, home.path());
        config.shards = SHARDS;
        config.heartbeat = Duration::from_millis(500);
        let mut stopped = stop.subscribe();
        workers.push(tokio::spawn(async move {
            shoal_worker::run(config, async move {
                stopped.wait_for(|s| *s).await.ok();
            })
            .await
            .expect("worker runs on the cluster")
        }));
    }
    // A fanned-out job gathers its tasks once the verifier has decided on each.
    let mut config = WorkerConfig::new("verifier", &seeds, home.path());
    config.shards = SHARDS;
    let mut stopped = stop.subscribe();
    workers.push(tokio::spawn(async move {
        shoal_verifier::run(shoal_verifier::VerifierConfig::new(config, 0.0), async move {
            stopped.wait_for(|s| *s).await.ok();
        })
        .await
        .expect("verifier runs on the cluster")
    }));

    let key = shoal_testkit::api_key(&seeds, "test", shoal_jobs::Role::Tenant).await.unwrap();
    let http = shoal_testkit::keyed_client(reqwest::Client::builder(), &key).unwrap();
    let mut submitted = Vec::new();
    for n in 0..12 {
        let bytes = format!("cluster input {n}");
        let input = import(bytes.clone().into_bytes()).await.unwrap().root;
        let spec = json!({"program": program.to_string(), "inputs": [{"cid": input.to_string()}]});
        let job: Value =
            http.post(format!("{gateway}/v1/jobs")).json(&spec).send().await.unwrap().json().await.unwrap();
        submitted.push((job["id"].as_str().unwrap().to_string(), input, bytes));
    }
    let mut shards = std::collections::BTreeSet::new();
    for (id, input, bytes) in &submitted {
        let (job, _) = wait_terminal(&http, &gateway, id).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        shards.insert(job.shard);
        let path = format!("{input}.sha256");
        let digest = unixfs::resolve_path(store.as_ref(), job.result.unwrap().output.cid(), &path).await.unwrap();
        let text = shoal_content::unixfs::cat(store.clone(), digest);
        let text: Vec<bytes::Bytes> = futures::TryStreamExt::try_collect(text).await.unwrap();
        let expected = format!("{}  {input}\n", sha256_hex(bytes.as_bytes()));
        assert_eq!(String::from_utf8(text.concat()).unwrap(), expected);
    }
    let nodes: std::collections::BTreeSet<u16> = shards
        .iter()
        .map(|&shard| shoal_jobs::keys::cluster_slot(&shoal_jobs::keys::shard_stream(shard)))
        // redis-cli splits the slots evenly, in order: 0–5460, 5461–10922, 10923–16383.
        .map(|slot| u16::from(slot > 5460) + u16::from(slot > 10922))
        .collect();
    assert!(nodes.len() >= 2, "the jobs' shards live on more than one node: {shards:?}");

    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c", "d"] {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    let tree = unixfs::import_path(dir.path(), &ImportOptions::default(), store.as_ref() as &dyn BlockStore)
        .await
        .unwrap()
        .root;
    let spec = json!({"program": program.to_string(), "inputs": [{"cid": tree.to_string()}], "fan_out": {}});
    let job: Value = http.post(format!("{gateway}/v1/jobs")).json(&spec).send().await.unwrap().json().await.unwrap();
    let (job, body) = wait_terminal(&http, &gateway, job["id"].as_str().unwrap()).await;
    assert_eq!(job.state, JobState::Succeeded, "{body}");
    assert_eq!(body["tasks"]["succeeded"], 4);

    stop.send(true).ok();
    for worker in workers {
        worker.await.unwrap();
    }
    drop(cluster);
}
