//! The whole key layout on a real three-node Redis Cluster started by the test: job records,
//! shard streams, verification and dead-letter streams, the worker registry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use shoal_jobs::*;

use crate::common::{self, client_key, completed, execution, spec, tenant, PROGRAM};

/// Shards used by the stream tests: many more than nodes, as in production.
const SHARDS: u32 = 16;

struct Cluster {
    _dir: tempfile::TempDir,
    cluster: RedisCluster,
    conn: RedisConnection,
    /// Slot ranges (inclusive) and the port of the node serving them, from `CLUSTER NODES`.
    slots: Vec<(u16, u16, u16)>,
    /// A plain connection to the first node, for `CLUSTER KEYSLOT`.
    admin: MultiplexedConnection,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let cluster = RedisCluster::start(dir.path()).unwrap();
        let conn = RedisConnection::open(&cluster.urls()).await.unwrap();
        assert!(conn.is_cluster());
        let mut admin = node_connection(&cluster, cluster.ports()[0]).await;
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut admin).await.unwrap();
        let slots = parse_cluster_nodes(&nodes);
        assert_eq!(slots.iter().map(|&(from, to, _)| u32::from(to - from) + 1).sum::<u32>(), 16384);
        Cluster { _dir: dir, cluster, conn, slots, admin }
    }

    fn client(&self) -> ClusterClient {
        ClusterClient::new(self.cluster.urls()).unwrap()
    }

    /// The port of the node that holds `key`, after checking that the server hashes it to the
    /// slot [`keys::cluster_slot`] computes.
    async fn node_of(&mut self, key: &str) -> u16 {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut self.admin).await.unwrap();
        assert_eq!(slot, keys::cluster_slot(key), "{key}");
        self.slots.iter().find(|&&(from, to, _)| (from..=to).contains(&slot)).map(|&(_, _, port)| port).unwrap()
    }
}

/// A plain connection, as the admin, to the node of `cluster` on `port`.
async fn node_connection(cluster: &RedisCluster, port: u16) -> MultiplexedConnection {
    let node = cluster.nodes().iter().find(|node| node.port() == port).expect("a node of the cluster");
    let client = redis::Client::open(node.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// `(first slot, last slot, port)` of every slot range in a `CLUSTER NODES` reply.
fn parse_cluster_nodes(reply: &str) -> Vec<(u16, u16, u16)> {
    let mut ranges = Vec::new();
    for line in reply.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields[1].split('@').next().unwrap();
        let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
        for range in &fields[8..] {
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            ranges.push((from.parse().unwrap(), to.parse().unwrap(), port));
        }
    }
    ranges
}

/// Reads from `reader` until `total` deliveries came, checking no read returns more than asked.
async fn read_all(reader: &mut ShardReader, total: usize, count: usize) -> Vec<Delivery> {
    let mut all = Vec::new();
    while all.len() < total {
        let read = reader.next(count).await.unwrap();
        assert!(!read.is_empty(), "{} of {total} deliveries came, then nothing", all.len());
        assert!(read.len() <= count, "asked for {count}, got {}", read.len());
        all.extend(read);
    }
    all
}

/// Entries of shard `shard`'s job stream pending for `consumer`.
async fn pending_count(conn: &mut RedisConnection, shard: u32, consumer: &str) -> usize {
    let reply: redis::streams::StreamPendingCountReply = redis::AsyncCommands::xpending_consumer_count(
        conn,
        keys::shard_stream(shard),
        keys::WORKER_GROUP,
        "-",
        "+",
        1000,
        consumer,
    )
    .await
    .unwrap();
    reply.ids.len()
}

#[tokio::test]
async fn shard_streams_spread_over_the_nodes_and_deliver_ack_reclaim_and_dead_letter() {
    let mut cluster = Cluster::start().await;
    let queue = ShardQueue::new(cluster.conn.clone());
    queue.ensure_groups(SHARDS).await.unwrap();
    queue.ensure_groups(SHARDS).await.unwrap();

    // Each shard's streams sit on the node owning their slot (asked of that node directly,
    // which answers MOVED for keys it does not hold), and the shards use every node.
    let mut nodes_used = BTreeSet::new();
    for shard in 0..SHARDS {
        let jobs = keys::shard_stream(shard);
        let port = cluster.node_of(&jobs).await;
        assert_eq!(cluster.node_of(&keys::verify_stream(shard)).await, port);
        assert_eq!(cluster.node_of(&keys::dead_letter_stream(shard)).await, port);
        let kind: String = redis::cmd("TYPE")
            .arg(&jobs)
            .query_async(&mut node_connection(&cluster.cluster, port).await)
            .await
            .unwrap();
        assert_eq!(kind, "stream", "{jobs} on node {port}");
        nodes_used.insert(port);
    }
    assert!(nodes_used.len() >= 2, "shard streams on nodes {nodes_used:?}");
    assert_eq!(nodes_used.len(), RedisCluster::NODES, "16 tags land on every one of 3 nodes");

    // One job per shard, and two more on shard 0: 18 entries over all nodes.
    let mut expected = BTreeMap::new();
    for shard in 0..SHARDS {
        let job = format!("job-{shard}");
        queue.enqueue(shard, &job).await.unwrap();
        expected.insert(job, shard);
    }
    for extra in ["job-0b", "job-0c"] {
        queue.enqueue(0, extra).await.unwrap();
        expected.insert(extra.to_string(), 0);
    }
    let shards: Vec<u32> = (0..SHARDS).collect();
    let block = Duration::from_millis(1500);
    let mut reader = ShardReader::connect_cluster(&cluster.client(), Lane::Jobs, &shards, "w1", block).await.unwrap();
    let first = reader.next(5).await.unwrap();
    assert_eq!(first.len(), 5, "a read takes exactly what it asks for when more is waiting");
    let mut delivered = first;
    delivered.extend(read_all(&mut reader, expected.len() - 5, 4).await);
    let got: BTreeMap<String, u32> = delivered.iter().map(|d| (d.job_id.clone(), d.shard)).collect();
    assert_eq!(got, expected);
    assert_eq!(delivered.len(), expected.len(), "no entry delivered twice");
    assert!(delivered.iter().all(|d| d.lane == Lane::Jobs));
    // Nothing new: the read waits out its block time (longer than redis-rs's 500 ms timeout).
    assert!(reader.next(4).await.unwrap().is_empty());

    // A reconnecting worker finds what it was given, every entry once, in pages of any size.
    let mut again = ShardReader::connect_cluster(&cluster.client(), Lane::Jobs, &shards, "w1", block).await.unwrap();
    let pending = again.pending(100).await.unwrap();
    // Entry ids are per stream: two shards' streams can hold the same id.
    let pending_entries: BTreeSet<(u32, &str)> = pending.iter().map(|d| (d.shard, d.entry.as_str())).collect();
    let delivered_entries: BTreeSet<(u32, &str)> = delivered.iter().map(|d| (d.shard, d.entry.as_str())).collect();
    assert_eq!(pending.len(), expected.len());
    assert_eq!(pending_entries, delivered_entries);
    assert_eq!(again.pending(3).await.unwrap().len(), 3);

    // Acknowledging removes the entry from its stream and the group's pending list.
    let zero: Vec<&Delivery> = delivered.iter().filter(|d| d.shard == 0).collect();
    assert_eq!(zero.len(), 3);
    queue.ack(zero[0]).await.unwrap();
    assert_eq!(queue.len(0).await.unwrap(), 2);
    assert_eq!(pending_count(&mut cluster.conn, 0, "w1").await, 2);

    // Another worker takes over what w1 left pending, on every node; renewing keeps it.
    let left = expected.len() - 1;
    let taken = queue.reclaim(Lane::Jobs, &shards, "w2", Duration::ZERO, 100).await.unwrap();
    assert_eq!(taken.len(), left);
    assert!(taken.iter().all(|d| (d.shard, &d.entry) != (0, &zero[0].entry)));
    queue.renew("w2", &taken).await.unwrap();
    for shard in 0..SHARDS {
        assert_eq!(pending_count(&mut cluster.conn, shard, "w1").await, 0, "shard {shard}");
    }
    assert_eq!(pending_count(&mut cluster.conn, 0, "w2").await, 2);
    let mut w2 = ShardReader::connect_cluster(&cluster.client(), Lane::Jobs, &shards, "w2", block).await.unwrap();
    assert_eq!(w2.pending(100).await.unwrap().len(), left);

    // A delivery that cannot run moves to its shard's dead-letter stream, acknowledged.
    let doomed = taken.iter().find(|d| d.shard == 7).unwrap();
    queue.dead_letter(doomed, "program not found").await.unwrap();
    assert_eq!(queue.dead_letters(7).await.unwrap(), vec![(doomed.job_id.clone(), "program not found".to_string())]);
    assert_eq!(queue.len(7).await.unwrap(), 0);
    assert_eq!(pending_count(&mut cluster.conn, 7, "w2").await, 0);
    assert!(queue.dead_letters(8).await.unwrap().is_empty());

    // The verification lane: its own streams and group, on the same nodes as the shards.
    for shard in [1, 5, 9, 13] {
        queue.enqueue_verification(shard, &format!("verify-{shard}")).await.unwrap();
    }
    let mut verifier =
        ShardReader::connect_cluster(&cluster.client(), Lane::Verify, &shards, "v1", block).await.unwrap();
    let checks = read_all(&mut verifier, 4, 10).await;
    let got: BTreeSet<(u32, String)> = checks.iter().map(|d| (d.shard, d.job_id.clone())).collect();
    let want: BTreeSet<(u32, String)> = [1, 5, 9, 13].map(|s| (s, format!("verify-{s}"))).into();
    assert_eq!(got, want);
    assert!(checks.iter().all(|d| d.lane == Lane::Verify));
    for check in &checks {
        queue.ack(check).await.unwrap();
    }
    assert!(verifier.pending(10).await.unwrap().is_empty());
    assert_eq!(queue.len(1).await.unwrap(), 1, "the job stream is untouched by the verification lane");
}

#[tokio::test]
async fn jobs_are_created_once_and_change_state_atomically_on_a_cluster() {
    let mut cluster = Cluster::start().await;
    let store = JobStore::new(cluster.conn.clone());
    let queue = ShardQueue::new(store.connection());
    queue.ensure_groups(SHARDS).await.unwrap();

    let Created::New(plain) = store.create(&spec(&["plain"]), 3, &tenant(), None).await.unwrap() else {
        panic!("not new")
    };
    assert_eq!(store.get(&plain.id).await.unwrap().unwrap(), plain);
    assert!(!store.is_enqueued(&plain.id).await.unwrap());

    let Created::New(first) = store.create(&spec(&["a"]), 3, &tenant(), client_key(&tenant(), "key-1")).await.unwrap()
    else {
        panic!("not new")
    };
    let Created::Existing(again) =
        store.create(&spec(&["a"]), 3, &tenant(), client_key(&tenant(), "key-1")).await.unwrap()
    else {
        panic!("not existing")
    };
    assert_eq!(again.id, first.id);
    let err = store.create(&spec(&["b"]), 3, &tenant(), client_key(&tenant(), "key-1")).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyConflict { ref job, .. } if *job == first.id), "{err}");

    // Concurrent submissions with one key: one job, reported new once — including when the
    // key's record and the job's keys live on different nodes.
    let mut across_nodes = 0;
    for round in 0..100 {
        let key = format!("race-{round}");
        let spec = spec(&["race"]);
        let (new, ids) = common::race_creates(&store, &spec, &key, 8).await;
        assert_eq!(new, 1, "round {round}: exactly one request queues the job");
        assert_eq!(ids.len(), 1, "round {round}: one job");
        let id = ids.into_iter().next().unwrap();
        if cluster.node_of(&keys::idempotency(Idempotency::Client { tenant: &tenant(), key: &key })).await
            != cluster.node_of(&keys::JobKeys::of(&id).job).await
        {
            across_nodes += 1;
        }
    }
    assert!(across_nodes > 0, "no round had its key and job on different nodes");

    // Queue, deliver, start, finish, acknowledge.
    let entry = store.enqueue(&queue, &plain.id, plain.shard).await.unwrap();
    assert!(store.is_enqueued(&plain.id).await.unwrap());
    let shards: Vec<u32> = (0..SHARDS).collect();
    let block = Duration::from_millis(1000);
    let mut reader = ShardReader::connect_cluster(&cluster.client(), Lane::Jobs, &shards, "w1", block).await.unwrap();
    let deliveries = reader.next(10).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!((delivery.shard, delivery.job_id.as_str(), delivery.entry.as_str()), (3, plain.id.as_str(), &*entry));
    let Started::Running(running) = store.start_delivered(&plain.id, &entry, &execution("e1", None)).await.unwrap()
    else {
        panic!("not started")
    };
    assert_eq!(running.state, JobState::Running);
    assert_eq!(store.start_delivered(&plain.id, "1-1", &execution("e2", None)).await.unwrap(), Started::Duplicate);
    let state = store.finish_execution(&plain.id, &execution("e1", Some(completed(0, PROGRAM)))).await.unwrap();
    assert_eq!(state, JobState::Succeeded);
    // A late duplicate result is recorded but does not change the finished job.
    let state = store.finish_execution(&plain.id, &execution("e3", Some(completed(1, PROGRAM)))).await.unwrap();
    assert_eq!(state, JobState::Succeeded);
    queue.ack(delivery).await.unwrap();
    assert_eq!(queue.len(3).await.unwrap(), 0);

    // The verifier's path: the verification stream, then the verdict on the job.
    queue.enqueue_verification(plain.shard, &plain.id).await.unwrap();
    let mut verifier = ShardReader::open(&cluster.cluster.urls(), Lane::Verify, &shards, "v1", block).await.unwrap();
    let checks = verifier.next(10).await.unwrap();
    assert_eq!(checks.iter().map(|d| (d.lane, d.job_id.as_str())).collect::<Vec<_>>(), [(Lane::Verify, &*plain.id)]);
    let verdict = Verification {
        verifier: "v1".into(),
        at_ms: now_ms(),
        outcome: VerificationOutcome::Agreed,
        corrected: None,
        failed: None,
        replicas: Vec::new(),
        compared: Vec::new(),
    };
    store.record_verification(&plain.id, &verdict).await.unwrap();
    queue.ack(&checks[0]).await.unwrap();
    // Replicated verification's records: a job's replicas beside it, the waiting set apart.
    let replication = ReplicationStore::new(cluster.conn.clone());
    replication.add_replica(&plain.id, "replica-1").await.unwrap();
    replication.wait(&plain.id).await.unwrap();
    assert_eq!(replication.replicas(&plain.id).await.unwrap(), ["replica-1"]);
    assert_eq!(replication.waiting(10).await.unwrap(), std::slice::from_ref(&plain.id));
    replication.done(&plain.id).await.unwrap();
    assert!(replication.waiting(10).await.unwrap().is_empty());
    let done = store.get(&plain.id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.executions.len(), 2);
    assert_eq!(done.verification, Some(verdict));
    let missing = store.record_verification("no-such-job", &done.verification.unwrap()).await.unwrap_err();
    assert!(matches!(missing, StoreError::JobNotFound(_)), "{missing}");
}

#[tokio::test]
async fn memoised_answers_work_on_a_cluster() {
    let mut cluster = Cluster::start().await;
    let store = JobStore::new(cluster.conn.clone());
    let queue = ShardQueue::new(store.connection());
    queue.ensure_groups(SHARDS).await.unwrap();
    let ttl = Duration::from_secs(60);
    let mut nodes = BTreeSet::new();
    for n in 0..6 {
        let spec = spec(&["memo", &n.to_string()]);
        let Created::New(first) = store.submit_memoised(&queue, &spec, 1, &tenant(), None, ttl).await.unwrap() else {
            panic!("not new")
        };
        assert_eq!((first.state, first.memoised_from.as_deref()), (JobState::Queued, None));
        nodes.insert(cluster.node_of(&keys::JobKeys::of(&first.id).job).await);
        store.start_execution(&first.id, &execution("e1", None)).await.unwrap();
        store.finish_execution(&first.id, &execution("e1", Some(completed(0, PROGRAM)))).await.unwrap();
        // Succeeded but not yet accepted: it runs again.
        let Created::New(second) = store.submit_memoised(&queue, &spec, 1, &tenant(), None, ttl).await.unwrap() else {
            panic!("not new")
        };
        assert_eq!(second.memoised_from, None);
        let verdict = Verification {
            verifier: "v1".into(),
            at_ms: now_ms(),
            outcome: VerificationOutcome::Agreed,
            corrected: None,
            failed: None,
            replicas: Vec::new(),
            compared: Vec::new(),
        };
        store.record_verification(&first.id, &verdict).await.unwrap();
        let Created::New(answer) = store.submit_memoised(&queue, &spec, 1, &tenant(), None, ttl).await.unwrap() else {
            panic!("not new")
        };
        assert_eq!(answer.memoised_from.as_deref(), Some(first.id.as_str()));
        assert_eq!((answer.state, answer.verification.as_ref()), (JobState::Succeeded, Some(&verdict)));
        assert_eq!(answer.result, store.get(&first.id).await.unwrap().unwrap().result);
        assert_eq!(store.states(std::slice::from_ref(&answer.id)).await.unwrap(), [Some(JobState::Succeeded)]);
        // Reopened, it answers no more.
        assert!(store.reopen(&first.id).await.unwrap());
        let Created::New(rerun) = store.submit_memoised(&queue, &spec, 1, &tenant(), None, ttl).await.unwrap() else {
            panic!("not new")
        };
        assert_eq!(rerun.memoised_from, None);
    }
    assert!(nodes.len() > 1, "memoised jobs spread over the nodes: {nodes:?}");
}

#[tokio::test]
async fn listing_requeueing_and_expiry_visit_every_node() {
    let mut cluster = Cluster::start().await;
    let store = JobStore::new(cluster.conn.clone());
    let queue = ShardQueue::new(cluster.conn.clone());
    queue.ensure_groups(SHARDS).await.unwrap();

    let mut ids = Vec::new();
    let mut nodes = BTreeSet::new();
    for i in 0..12 {
        let Created::New(job) = store.create(&spec(&[&i.to_string()]), i % SHARDS, &tenant(), None).await.unwrap()
        else {
            panic!("not new")
        };
        nodes.insert(cluster.node_of(&keys::JobKeys::of(&job.id).job).await);
        ids.push(job.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(nodes.len() >= 2, "12 jobs on nodes {nodes:?}");

    let seen = common::list_all(&store, JobState::Queued, 5).await;
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // None of them reached a stream; once one is queued it is no longer reported.
    let lost: BTreeMap<String, u32> = store.unqueued(Duration::ZERO, 100).await.unwrap().into_iter().collect();
    let created: BTreeMap<String, u32> = ids.iter().cloned().zip((0..12).map(|i| i % SHARDS)).collect();
    assert_eq!(lost, created);
    store.enqueue(&queue, &ids[4], 4).await.unwrap();
    let lost: Vec<String> = store.unqueued(Duration::ZERO, 100).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(lost.len(), 11);
    assert!(!lost.contains(&ids[4]));
    assert!(store.take_requeue_lock("w1", Duration::from_secs(30)).await.unwrap());
    assert!(!store.take_requeue_lock("w2", Duration::from_secs(30)).await.unwrap());

    // A job past its total timeout fails; the others (an hour's timeout) are left alone.
    let mut short = spec(&["short"]);
    short.retry.total_timeout_ms = 1000;
    let Created::New(overdue) = store.create(&short, 0, &tenant(), None).await.unwrap() else { panic!("not new") };
    assert!(store.expire_overdue(100).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.expire_overdue(100).await.unwrap(), vec![overdue.id.clone()]);
    assert!(store.expire_overdue(100).await.unwrap().is_empty(), "expired once");
    let failed = store.get(&overdue.id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.failure.unwrap().reason, FailureReason::DeadlineExceeded);
    let (failed, _) = store.list(None, JobState::Failed, 10, None).await.unwrap();
    assert_eq!(failed.into_iter().map(|(_, id)| id).collect::<Vec<_>>(), [overdue.id]);
    let (queued, _) = store.list(Some(&tenant()), JobState::Queued, 100, None).await.unwrap();
    assert_eq!(queued.len(), 12);
}

#[tokio::test]
async fn the_worker_registry_works_on_a_cluster() {
    let cluster = Cluster::start().await;
    let members = Membership::new(cluster.conn.clone());
    let info = |id: &str| WorkerInfo {
        id: id.into(),
        capacity: 4,
        cache_bytes: 1 << 30,
        labels: [("region".to_string(), "eu".to_string())].into(),
        shards: SHARDS,
        started_at_ms: now_ms(),
    };
    members.heartbeat(&info("a")).await.unwrap();
    members.heartbeat(&info("b")).await.unwrap();
    let live = members.live(Duration::from_secs(10)).await.unwrap();
    let ids: BTreeSet<String> = live.iter().map(|m| m.info.id.clone()).collect();
    assert_eq!(ids, ["a".to_string(), "b".to_string()].into());
    assert_eq!(live[0].info.labels["region"], "eu");
    members.leave("a").await.unwrap();
    let live = members.live(Duration::from_secs(10)).await.unwrap();
    assert_eq!(live.iter().map(|m| m.info.id.as_str()).collect::<Vec<_>>(), ["b"]);
    // `b` stops beating: forgotten once ten windows passed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(members.live(Duration::from_millis(20)).await.unwrap().is_empty());
    assert!(members.live(Duration::from_secs(10)).await.unwrap().is_empty(), "forgotten after ten windows");
}

#[tokio::test]
async fn one_url_is_a_single_node_where_batches_answer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let conn = RedisConnection::open(&[server.url()]).await.unwrap();
    assert!(!conn.is_cluster());
    let mut batch = Batch::new();
    for n in 0..5 {
        let key = format!("shoal:{{t{n}}}:n");
        batch.add(&key, redis::Cmd::incr(&key, n));
    }
    batch.add("shoal:{t3}:n", redis::Cmd::incr("shoal:{t3}:n", 10));
    let counts: Vec<i64> = conn.query_batch(&batch).await.unwrap();
    assert_eq!(counts, [0, 1, 2, 3, 4, 13]);

    let queue = ShardQueue::new(conn);
    queue.ensure_groups(2).await.unwrap();
    queue.enqueue(1, "job-a").await.unwrap();
    let mut reader =
        ShardReader::open(&[server.url()], Lane::Jobs, &[0, 1], "w1", Duration::from_millis(600)).await.unwrap();
    let deliveries = reader.next(4).await.unwrap();
    assert_eq!(deliveries.iter().map(|d| (d.shard, d.job_id.as_str())).collect::<Vec<_>>(), [(1, "job-a")]);
}

#[tokio::test]
async fn batches_answer_in_order_across_the_nodes_of_a_cluster() {
    let mut cluster = Cluster::start().await;
    let mut batch = Batch::new();
    let mut nodes = BTreeSet::new();
    for n in 0..32 {
        let key = format!("shoal:{{t{n}}}:n");
        nodes.insert(cluster.node_of(&key).await);
        batch.add(&key, redis::Cmd::incr(&key, n));
    }
    batch.add("shoal:{t7}:n", redis::Cmd::incr("shoal:{t7}:n", 100));
    assert_eq!(nodes.len(), RedisCluster::NODES);
    let counts: Vec<i64> = cluster.conn.query_batch(&batch).await.unwrap();
    let mut expected: Vec<i64> = (0..32).collect();
    expected.push(107);
    assert_eq!(counts, expected);
    // A plain pipeline over two slots is what the cluster client refuses, hence the batch.
    let refused =
        redis::pipe().incr("shoal:{t1}:n", 1).incr("shoal:{t2}:n", 1).query_async::<Vec<i64>>(&mut cluster.conn).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn on_a_cluster_submissions_are_counted_against_the_tenants_quota_first() {
    let cluster = Cluster::start().await;
    let store = JobStore::new(cluster.conn.clone());
    let queue = ShardQueue::new(store.connection());
    queue.ensure_groups(SHARDS).await.unwrap();
    common::submissions_past_the_quota_are_refused_and_store_nothing(&store, &queue, 5).await;
}

#[tokio::test]
async fn on_a_cluster_finishing_a_delivery_leaves_its_acknowledgement_to_the_caller() {
    let mut cluster = Cluster::start().await;
    let store = JobStore::new(cluster.conn.clone());
    let queue = ShardQueue::new(store.connection());
    queue.ensure_groups(SHARDS).await.unwrap();
    let Created::New(job) = store.submit(&queue, &spec(&["delivered"]), 5, &tenant(), None).await.unwrap() else {
        panic!("not new")
    };
    let block = Duration::from_millis(1500);
    let mut reader = ShardReader::connect_cluster(&cluster.client(), Lane::Jobs, &[5], "w1", block).await.unwrap();
    let delivery = reader.next(4).await.unwrap().remove(0);
    store.start_delivered(&job.id, &delivery.entry, &execution("e1", None)).await.unwrap();
    let done = execution("e1", Some(completed(0, PROGRAM)));
    assert_eq!(
        store.finish_delivered(&job.id, &done, true, Some(&delivery)).await.unwrap(),
        (JobState::Succeeded, false)
    );
    assert_eq!(pending_count(&mut cluster.conn, 5, "w1").await, 1, "the job's slot is not its stream's");
    queue.ack(&delivery).await.unwrap();
    assert_eq!(pending_count(&mut cluster.conn, 5, "w1").await, 0);
}

#[tokio::test]
async fn on_a_cluster_a_submission_is_queued_and_a_claim_recorded_after_the_job_scripts() {
    let cluster = Cluster::start().await;
    let store = JobStore::new(cluster.conn.clone());
    let queue = ShardQueue::new(store.connection());
    queue.ensure_groups(SHARDS).await.unwrap();
    let Created::New(job) = store.submit(&queue, &spec(&["claimed"]), 5, &tenant(), None).await.unwrap() else {
        panic!("not new")
    };
    assert!(store.is_enqueued(&job.id).await.unwrap());
    assert_eq!(queue.len(5).await.unwrap(), 1);
    store.start_execution(&job.id, &execution("e1", None)).await.unwrap();
    let state = store.finish_claimed(&job.id, &execution("e1", Some(completed(0, PROGRAM)))).await.unwrap();
    assert_eq!(state, JobState::Succeeded);
    // A claim of a failure on the succeeded job is not recorded: it did not settle it.
    let failed = Execution { worker: "w2".into(), ..execution("e2", Some(completed(1, PROGRAM))) };
    assert_eq!(store.finish_claimed(&job.id, &failed).await.unwrap(), JobState::Succeeded);
    let why = || Quarantine { reason: "test".into(), job: String::new(), verifier: "v".into(), at_ms: 0, settled: 0 };
    let members = Membership::new(cluster.conn.clone());
    assert_eq!(members.quarantine("w1", why()).await.unwrap().1, vec![job.id.clone()]);
    assert!(members.quarantine("w2", why()).await.unwrap().1.is_empty());
}
