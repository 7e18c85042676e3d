//! The job store and shard queue against a real `redis-server` started by the test.

use std::time::Duration;

use shoal_jobs::*;

use crate::common::{self, client_key, completed, execution, spec, tenant, PROGRAM};

async fn setup() -> (tempfile::TempDir, RedisServer, redis::Client, JobStore, ShardQueue) {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let conn = client.get_connection_manager().await.unwrap();
    (dir, server, client, JobStore::new(conn.clone()), ShardQueue::new(conn))
}

#[tokio::test]
async fn idempotency_key_returns_the_same_job_and_rejects_a_different_spec() {
    let (_dir, _server, _client, store, _queue) = setup().await;
    let Created::New(first) = store.create(&spec(&["a"]), 3, &tenant(), client_key(&tenant(), "key-1")).await.unwrap()
    else {
        panic!("not new")
    };
    let Created::Existing(again) =
        store.create(&spec(&["a"]), 3, &tenant(), client_key(&tenant(), "key-1")).await.unwrap()
    else {
        panic!("not existing")
    };
    assert_eq!(first.id, again.id);
    let err = store.create(&spec(&["b"]), 3, &tenant(), client_key(&tenant(), "key-1")).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyConflict { ref job, .. } if *job == first.id), "{err}");
    let Created::New(other) = store.create(&spec(&["a"]), 3, &tenant(), None).await.unwrap() else { panic!("not new") };
    assert_ne!(other.id, first.id);
}

#[tokio::test]
async fn a_submission_claims_its_idempotency_key_as_it_stores_and_queues_its_job() {
    let (_dir, _server, client, store, queue) = setup().await;
    let tenant = tenant();
    let Created::New(first) = store.submit(&queue, &spec(&["a"]), 3, &tenant, client_key(&tenant, "k")).await.unwrap()
    else {
        panic!("not new")
    };
    let Created::Existing(again) =
        store.submit(&queue, &spec(&["a"]), 3, &tenant, client_key(&tenant, "k")).await.unwrap()
    else {
        panic!("not existing")
    };
    assert_eq!(again.id, first.id);
    let err = store.submit(&queue, &spec(&["b"]), 3, &tenant, client_key(&tenant, "k")).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyConflict { ref job, .. } if *job == first.id), "{err}");

    let spec_c = spec(&["c"]);
    let racers = futures::future::join_all(
        (0..8).map(|_| store.submit(&queue, &spec_c, 3, &tenant, client_key(&tenant, "raced"))),
    )
    .await;
    let created: Vec<Created> = racers.into_iter().map(Result::unwrap).collect();
    assert_eq!(created.iter().filter(|c| matches!(c, Created::New(_))).count(), 1, "one racer stores the job");
    let ids: std::collections::BTreeSet<&str> =
        created.iter().map(|(Created::New(job) | Created::Existing(job))| job.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "and every racer answers it");
    assert_eq!(queue.len(3).await.unwrap(), 2, "each job is queued once");

    // A key claimed by a request that died before storing its job: the next stores it, under
    // the claimed id.
    let spec_d = spec(&["d"]);
    let claimed_id = "01JZ0000000000000000000000";
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = keys::idempotency(Idempotency::Client { tenant: &tenant, key: "orphan" });
    let _: () =
        redis::AsyncCommands::set(&mut conn, &key, format!("{claimed_id} {}", spec_d.invocation_cid())).await.unwrap();
    let Created::New(resumed) = store.submit(&queue, &spec_d, 3, &tenant, client_key(&tenant, "orphan")).await.unwrap()
    else {
        panic!("not new")
    };
    assert_eq!(resumed.id, claimed_id);
    assert_eq!(queue.len(3).await.unwrap(), 3);
}

#[tokio::test]
async fn on_one_node_the_create_script_counts_submissions_against_the_tenants_quota() {
    let (_dir, _server, _client, store, queue) = setup().await;
    common::submissions_past_the_quota_are_refused_and_store_nothing(&store, &queue, 3).await;
}

#[tokio::test]
async fn racing_pipeline_creates_with_one_key_store_one_pipeline_of_one_spec() {
    let (_dir, _server, client, _store, _queue) = setup().await;
    let pipelines = PipelineStore::new(client.get_connection_manager().await.unwrap());
    let tenant = tenant();
    let spec = |tag: &str| {
        let body = serde_json::json!({
            "inputs": {"scenes": PROGRAM},
            "stages": [{"name": "count", "program": PROGRAM, "args": [tag],
                        "inputs": [{"from": "pipeline.scenes", "path": "/inputs"}]}]
        });
        PipelineSpec::from_json(body.to_string().as_bytes()).unwrap()
    };
    let (a, b) = (spec("a"), spec("b"));
    // The third key was claimed by a request that died before storing its pipeline: every racer
    // then finds it claimed and nothing stored, and stores the pipeline under the claimed id.
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let orphan = keys::pipeline_idempotency(&tenant, "orphaned");
    let _: () = redis::AsyncCommands::set(&mut conn, &orphan, "01JZ0000000000000000000001").await.unwrap();
    for (round, key) in ["same-spec", "two-specs", "orphaned"].into_iter().enumerate() {
        let racers = futures::future::join_all((0..8).map(|n| {
            let spec = if round > 0 && n % 2 == 1 { &b } else { &a };
            pipelines.create(spec, &tenant, Some(key))
        }))
        .await;
        let new: Vec<&Pipeline> = racers
            .iter()
            .filter_map(|created| match created {
                Ok(PipelineCreated::New(pipeline)) => Some(pipeline),
                _ => None,
            })
            .collect();
        assert_eq!(new.len(), 1, "{key}: one racer stores the pipeline");
        let stored = pipelines.load(&new[0].id).await.unwrap().unwrap();
        assert_eq!(stored.spec, new[0].spec, "{key}: as the racer that stored it said");
        for created in &racers {
            match created {
                Ok(PipelineCreated::New(pipeline) | PipelineCreated::Existing(pipeline)) => {
                    assert_eq!((&pipeline.id, &pipeline.spec), (&stored.id, &stored.spec), "{key}")
                }
                Err(StoreError::IdempotencyConflict { job, .. }) => {
                    assert_eq!(*job, stored.id, "{key}: a conflict names the stored pipeline")
                }
                Err(e) => panic!("{key}: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn a_finished_job_is_never_changed_by_a_duplicate_result() {
    let (_dir, _server, _client, store, _queue) = setup().await;
    let Created::New(job) = store.create(&spec(&[]), 0, &tenant(), None).await.unwrap() else { panic!() };
    assert_eq!(job.state, JobState::Queued);
    let Started::Running(running) = store.start_execution(&job.id, &execution("e1", None)).await.unwrap() else {
        panic!()
    };
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.executions.len(), 1);

    let first = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    let second = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354";
    let state = store.finish_execution(&job.id, &execution("e1", Some(completed(0, first)))).await.unwrap();
    assert_eq!(state, JobState::Succeeded);
    // A duplicate delivery ran again and got a different answer: recorded, but the job holds.
    let state = store.finish_execution(&job.id, &execution("e2", Some(completed(0, second)))).await.unwrap();
    assert_eq!(state, JobState::Succeeded);
    let done = store.get(&job.id).await.unwrap().unwrap();
    assert_eq!(done.result.unwrap().output.to_string(), first);
    assert_eq!(done.executions.len(), 2);
    assert!(matches!(
        store.start_execution(&job.id, &execution("e3", None)).await.unwrap(),
        Started::AlreadyFinished(JobState::Succeeded)
    ));

    let (running, _) = store.list(None, JobState::Running, 10, None).await.unwrap();
    assert!(running.is_empty());
    let (succeeded, _) = store.list(None, JobState::Succeeded, 10, None).await.unwrap();
    assert_eq!(succeeded.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(), vec![job.id.as_str()]);
}

#[tokio::test]
async fn non_zero_exit_fails_the_job_with_its_reason() {
    let (_dir, _server, _client, store, _queue) = setup().await;
    let Created::New(job) = store.create(&spec(&[]), 0, &tenant(), None).await.unwrap() else { panic!() };
    store.start_execution(&job.id, &execution("e1", None)).await.unwrap();
    let state = store.finish_execution(&job.id, &execution("e1", Some(completed(3, PROGRAM)))).await.unwrap();
    assert_eq!(state, JobState::Failed);
    let failed = store.get(&job.id).await.unwrap().unwrap();
    let failure = failed.failure.unwrap();
    assert_eq!(failure.reason, FailureReason::NonZeroExit);
    assert!(failure.message.contains('3'), "{}", failure.message);
}

#[tokio::test]
async fn listing_pages_through_jobs_newest_first() {
    let (_dir, _server, _client, store, _queue) = setup().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let Created::New(job) = store.create(&spec(&[&i.to_string()]), 0, &tenant(), None).await.unwrap() else {
            panic!()
        };
        ids.push(job.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seen = common::list_all(&store, JobState::Queued, 3).await;
    ids.reverse();
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn deliveries_of_several_shards_are_acked_together_and_only_they() {
    let (_dir, _server, client, _store, queue) = setup().await;
    queue.ensure_groups(3).await.unwrap();
    for (shard, job) in [(0, "a0"), (0, "b0"), (1, "a1"), (2, "kept")] {
        queue.enqueue(shard, job).await.unwrap();
    }
    let mut reader = ShardReader::connect(&client, &[0, 1, 2], "w1", Duration::from_millis(200)).await.unwrap();
    let mut deliveries = reader.next(8).await.unwrap();
    assert_eq!(deliveries.len(), 4);
    deliveries.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    let kept = deliveries.pop().unwrap();
    assert_eq!(kept.job_id, "kept");
    queue.ack_many(&deliveries).await.unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (shard, pending_left, entries_left) in [(0, 0, 0), (1, 0, 0), (2, 1, 1)] {
        let pending: redis::streams::StreamPendingReply = redis::AsyncCommands::xpending(
            &mut conn,
            shoal_jobs::keys::shard_stream(shard),
            shoal_jobs::keys::WORKER_GROUP,
        )
        .await
        .unwrap();
        assert_eq!((pending.count(), queue.len(shard).await.unwrap()), (pending_left, entries_left), "shard {shard}");
    }
    queue.ack_many(&[]).await.unwrap();
}

#[tokio::test]
async fn a_delivery_stays_pending_until_acked() {
    let (_dir, _server, client, _store, queue) = setup().await;
    queue.ensure_groups(2).await.unwrap();
    queue.ensure_groups(2).await.unwrap();
    queue.enqueue(1, "job-a").await.unwrap();
    let mut reader = ShardReader::connect(&client, &[0, 1], "w1", Duration::from_millis(1500)).await.unwrap();
    let deliveries = reader.next(4).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!((delivery.shard, delivery.job_id.as_str()), (1, "job-a"));
    // Nothing new: the block time passes (longer than redis-rs's default 500 ms timeout).
    assert!(reader.next(4).await.unwrap().is_empty());
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pending: redis::streams::StreamPendingReply =
        redis::AsyncCommands::xpending(&mut conn, shoal_jobs::keys::shard_stream(1), shoal_jobs::keys::WORKER_GROUP)
            .await
            .unwrap();
    assert_eq!(pending.count(), 1);
    queue.ack(delivery).await.unwrap();
    let pending: redis::streams::StreamPendingReply =
        redis::AsyncCommands::xpending(&mut conn, shoal_jobs::keys::shard_stream(1), shoal_jobs::keys::WORKER_GROUP)
            .await
            .unwrap();
    assert_eq!(pending.count(), 0);
    assert_eq!(queue.len(1).await.unwrap(), 0);
}

#[tokio::test]
async fn a_quarantined_consumers_entries_are_taken_at_once_and_no_one_elses() {
    let (_dir, _server, client, _store, queue) = setup().await;
    queue.ensure_groups(2).await.unwrap();
    queue.enqueue(0, "bad-a").await.unwrap();
    queue.enqueue(1, "bad-b").await.unwrap();
    let block = Duration::from_millis(200);
    let mut bad = ShardReader::connect(&client, &[0, 1], "bad", block).await.unwrap();
    assert_eq!(bad.next(2).await.unwrap().len(), 2);
    queue.enqueue(1, "good-c").await.unwrap();
    let mut good = ShardReader::connect(&client, &[0, 1], "good", block).await.unwrap();
    assert_eq!(good.next(2).await.unwrap().len(), 1);
    // Just read, so not idle at all: only a take-over by consumer name moves them.
    let taken = queue.take_from(Lane::Jobs, &[0, 1], "bad", "sweeper", 10).await.unwrap();
    let mut jobs: Vec<&str> = taken.iter().map(|d| d.job_id.as_str()).collect();
    jobs.sort_unstable();
    assert_eq!(jobs, ["bad-a", "bad-b"]);
    assert!(queue.take_from(Lane::Jobs, &[0, 1], "bad", "sweeper", 10).await.unwrap().is_empty());
    // The sweeper holds them now, as pending entries to run and acknowledge.
    let mut sweeper = ShardReader::connect(&client, &[0, 1], "sweeper", block).await.unwrap();
    assert_eq!(sweeper.pending(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn listing_keeps_jobs_created_in_the_same_millisecond_across_pages() {
    let (_dir, _server, client, store, _) = setup().await;
    // Four ids of one tag, two of them in one millisecond, indexed directly so the times are
    // exact (page boundaries fall inside that millisecond).
    let mut ids: Vec<String> = Vec::new();
    while ids.len() < 4 {
        let id = ulid::Ulid::new().to_string();
        if keys::job_tag(&id) == keys::job_tag(ids.first().unwrap_or(&id)) {
            ids.push(id);
        }
    }
    let times = [1000u64, 1000, 999, 998];
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let index = keys::state_index(&keys::job_tag(&ids[0]), JobState::Queued);
    for (id, ms) in ids.iter().zip(times) {
        let _: () = redis::cmd("ZADD").arg(&index).arg(ms).arg(id).query_async(&mut conn).await.unwrap();
    }
    let mut expected: Vec<(u64, String)> = times.iter().copied().zip(ids.iter().cloned()).collect();
    expected.sort_by(|a, b| b.cmp(a));
    for limit in [1, 2, 3] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = store.list(None, JobState::Queued, limit, cursor).await.unwrap();
            assert!(page.len() <= limit);
            seen.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "limit {limit}");
    }
}

#[tokio::test]
async fn concurrent_creates_with_one_key_store_and_report_one_new_job() {
    let (_dir, _server, _client, store, _) = setup().await;
    for round in 0..200 {
        let key = format!("race-{round}");
        let spec = spec(&["race"]);
        let (new, ids) = common::race_creates(&store, &spec, &key, 8).await;
        assert_eq!(new, 1, "round {round}: exactly one request queues the job");
        assert_eq!(ids.len(), 1, "round {round}: one job");
    }
}

#[tokio::test]
async fn the_live_set_holds_workers_that_beat_and_drops_those_that_leave_or_go_quiet() {
    let (_dir, _server, client, _, _) = setup().await;
    let members = Membership::new(client.get_connection_manager().await.unwrap());
    let info = |id: &str| WorkerInfo {
        id: id.into(),
        capacity: 4,
        cache_bytes: 1 << 30,
        labels: [("region".to_string(), "eu".to_string())].into(),
        shards: 16,
        started_at_ms: now_ms(),
    };
    members.heartbeat(&info("a")).await.unwrap();
    members.heartbeat(&info("b")).await.unwrap();
    let live = members.live(Duration::from_secs(10)).await.unwrap();
    let ids: std::collections::BTreeSet<String> = live.iter().map(|m| m.info.id.clone()).collect();
    assert_eq!(ids, ["a".to_string(), "b".to_string()].into());
    assert_eq!(live[0].info.labels["region"], "eu");

    members.leave("a").await.unwrap();
    let live = members.live(Duration::from_secs(10)).await.unwrap();
    assert_eq!(live.iter().map(|m| m.info.id.as_str()).collect::<Vec<_>>(), ["b"]);

    // `b` stops beating: out of a 200 ms window, then forgotten at ten windows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(members.live(Duration::from_millis(200)).await.unwrap().is_empty());
    assert_eq!(members.live(Duration::from_secs(10)).await.unwrap().len(), 1, "still registered");
    assert!(members.live(Duration::from_millis(20)).await.unwrap().is_empty());
    assert!(members.live(Duration::from_secs(10)).await.unwrap().is_empty(), "forgotten after ten windows");
}

#[tokio::test]
async fn a_hot_shard_gets_extra_readers_holders_first_and_the_publication_expires() {
    let (_dir, _server, client, _, queue) = setup().await;
    let conn = client.get_connection_manager().await.unwrap();
    let members = Membership::new(conn.clone());
    for id in ["a", "b", "c", "d"] {
        let info = WorkerInfo {
            id: id.into(),
            capacity: 1,
            cache_bytes: 1 << 30,
            labels: Default::default(),
            shards: 8,
            started_at_ms: now_ms(),
        };
        members.heartbeat(&info).await.unwrap();
    }
    let live = members.live(Duration::from_secs(10)).await.unwrap();
    let candidates: Vec<Candidate> = live.iter().map(|m| Candidate::new(&m.info.id, m.info.capacity)).collect();
    let assignment = ShardAssignment::new(8, 1);
    let (hot, cold) = (5, 2);
    // The worst-ranked non-owner of the hot shard holds its data: holding must beat rank.
    let ranked = ShardAssignment::new(8, 4).owners(hot, &candidates);
    let (owner, holder) = (ranked[0].id.clone(), ranked[3].id.clone());
    members.advertise(&holder, &[hot, cold], &[]).await.unwrap();
    members.advertise("d", &[], &[]).await.unwrap();
    for n in 0..20 {
        queue.enqueue(hot, &format!("job-{n}")).await.unwrap();
    }
    queue.enqueue(cold, "job-cold").await.unwrap();

    let policy = HotPolicy { backlog_per_reader: 8, max_readers: 3, suspect_after: Duration::from_secs(60) };
    let conn = RedisConnection::from(conn);
    let picked =
        HotShards::refresh(&conn, &members, &assignment, &policy, &live, Duration::from_secs(10)).await.unwrap();
    let extra = &picked.extra_readers[&hot];
    assert_eq!(picked.extra_readers.len(), 1, "only the shard past 8 unread per reader is hot: {picked:?}");
    assert_eq!(extra.len(), 2, "20 unread at 8 per reader want 3 readers, the owner and two more");
    assert_eq!(extra[0], holder, "the worker holding the data is picked first");
    assert_eq!(extra[1], ranked[1].id, "then the next-ranked");
    assert!(!extra.contains(&owner));
    assert_eq!(HotShards::read(&conn).await.unwrap(), picked);
    assert_eq!(picked.shards_for(&holder), vec![hot]);

    // The cold shard's owner misses a heartbeat: its one waiting entry gets an extra reader
    // too, the holder of its data first.
    let cold_owner = assignment.owners(cold, &candidates)[0].id.clone();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let late = now_ms() - 2_000;
    redis::AsyncCommands::zadd::<_, _, _, ()>(&mut raw, keys::heartbeats(), &cold_owner, late).await.unwrap();
    let live = members.live(Duration::from_secs(10)).await.unwrap();
    let suspicious = HotPolicy { suspect_after: Duration::from_secs(1), ..policy };
    let picked =
        HotShards::refresh(&conn, &members, &assignment, &suspicious, &live, Duration::from_secs(10)).await.unwrap();
    let want = if cold_owner == holder {
        ShardAssignment::new(8, 2).owners(cold, &candidates)[1].id.clone()
    } else {
        holder.clone()
    };
    assert_eq!(picked.extra_readers.get(&cold), Some(&vec![want]), "{picked:?}");
    assert_eq!(picked.extra_readers[&hot].len(), 2);
    let empty = (0..8).find(|s| *s != hot && *s != cold && assignment.owners(*s, &candidates)[0].id == cold_owner);
    if let Some(empty) = empty {
        assert!(!picked.extra_readers.contains_key(&empty), "a suspect's shard with nothing waiting keeps its owner");
    }

    // The holder leaves: its advertisements go once it is no longer registered.
    members.leave(&holder).await.unwrap();
    let live = members.live(Duration::from_secs(10)).await.unwrap();
    let holders = members.holders(&[hot, cold], &live).await.unwrap();
    assert!(holders.iter().all(|h| h.is_empty()), "{holders:?}");
    let left: Vec<String> = redis::AsyncCommands::smembers(&mut raw, keys::holders(hot)).await.unwrap();
    assert!(left.is_empty(), "a departed worker's advertisement is removed: {left:?}");

    // Published for 200 ms only: then every shard falls back to its owners.
    HotShards::refresh(&conn, &members, &assignment, &policy, &live, Duration::from_millis(200)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(HotShards::read(&conn).await.unwrap(), HotShards::default());
}

/// The jobs `worker` is remembered to have settled: what quarantining it now taints.
async fn settled_by(conn: RedisConnection, worker: &str) -> Vec<String> {
    let why = Quarantine { reason: "test".into(), job: String::new(), verifier: "v".into(), at_ms: 0, settled: 0 };
    let (_, tainted) = Membership::new(conn).quarantine(worker, why).await.unwrap();
    tainted
}

#[tokio::test]
async fn on_one_node_the_finish_script_acknowledges_the_delivery_with_the_outcome() {
    let (_dir, server, client, store, queue) = setup().await;
    queue.ensure_groups(4).await.unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut reader =
        ShardReader::open(&[server.url()], Lane::Jobs, &[2], "w1", Duration::from_millis(500)).await.unwrap();
    let mut pending = async || -> u64 {
        let reply: redis::streams::StreamPendingReply =
            redis::AsyncCommands::xpending(&mut conn, keys::shard_stream(2), keys::WORKER_GROUP).await.unwrap();
        reply.count() as u64 + queue.len(2).await.unwrap()
    };
    let mut delivered = async |name: &str| {
        let Created::New(job) = store.submit(&queue, &spec(&[name]), 2, &tenant(), None).await.unwrap() else {
            panic!("not new")
        };
        let delivery = reader.next(10).await.unwrap().remove(0);
        store.start_delivered(&job.id, &delivery.entry, &execution("e1", None)).await.unwrap();
        (job, delivery)
    };

    let (job, delivery) = delivered("one").await;
    assert_eq!(pending().await, 2, "pending, and still on its stream");
    let done = execution("e1", Some(completed(0, PROGRAM)));
    assert_eq!(
        store.finish_delivered(&job.id, &done, true, Some(&delivery)).await.unwrap(),
        (JobState::Succeeded, true)
    );
    assert_eq!(pending().await, 0, "acknowledged and deleted");
    // A retried call finds the job finished, and acknowledges again, harmlessly.
    assert_eq!(
        store.finish_delivered(&job.id, &done, true, Some(&delivery)).await.unwrap(),
        (JobState::Succeeded, true)
    );

    // An outcome nobody answers for: acknowledged too, not recorded against its worker.
    let (failing, delivery) = delivered("two").await;
    let failed = execution("e1", Some(completed(1, PROGRAM)));
    let finished = store.finish_delivered(&failing.id, &failed, false, Some(&delivery)).await.unwrap();
    assert_eq!((finished, pending().await), ((JobState::Failed, true), 0));

    // A delivery of a job with no record stays pending, for whoever finds out more.
    queue.enqueue(2, "ghost").await.unwrap();
    let ghost = reader.next(10).await.unwrap().remove(0);
    let missing = store.finish_delivered("ghost", &done, true, Some(&ghost)).await.unwrap_err();
    assert!(matches!(missing, StoreError::JobNotFound(_)), "{missing}");
    assert_eq!(pending().await, 2);
    assert_eq!(settled_by(store.connection(), "w1").await, vec![job.id.clone()]);
}

#[tokio::test]
async fn on_one_node_a_submission_is_queued_and_a_claim_recorded_by_the_job_scripts_themselves() {
    let (_dir, server, _client, store, queue) = setup().await;
    queue.ensure_groups(4).await.unwrap();
    let Created::New(job) = store.submit(&queue, &spec(&["one"]), 2, &tenant(), None).await.unwrap() else {
        panic!("not new")
    };
    // The create script put it on its stream and recorded the entry: what a worker reads is it.
    assert!(store.is_enqueued(&job.id).await.unwrap());
    let mut reader =
        ShardReader::open(&[server.url()], Lane::Jobs, &[2], "w1", Duration::from_millis(500)).await.unwrap();
    let deliveries = reader.next(10).await.unwrap();
    assert_eq!(deliveries.iter().map(|d| d.job_id.as_str()).collect::<Vec<_>>(), vec![job.id.as_str()]);
    assert_eq!(queue.len(2).await.unwrap(), 1, "queued once, not again after the script");
    assert!(matches!(
        store.start_delivered(&job.id, &deliveries[0].entry, &execution("e1", None)).await.unwrap(),
        Started::Running(_)
    ));

    // The finish script records the job against the worker that settled it, and only then: a
    // late claim on the finished job is not recorded, nor is an unclaimed finish.
    let state = store.finish_claimed(&job.id, &execution("e1", Some(completed(0, PROGRAM)))).await.unwrap();
    assert_eq!(state, JobState::Succeeded);
    let late = Execution { worker: "w2".into(), ..execution("e3", Some(completed(0, PROGRAM))) };
    assert_eq!(store.finish_claimed(&job.id, &late).await.unwrap(), JobState::Succeeded);
    let Created::New(unclaimed) = store.create(&spec(&["two"]), 1, &tenant(), None).await.unwrap() else { panic!() };
    let unclaimed_run = Execution { worker: "w3".into(), ..execution("e4", Some(completed(0, PROGRAM))) };
    store.finish_execution(&unclaimed.id, &unclaimed_run).await.unwrap();
    assert_eq!(settled_by(store.connection(), "w1").await, vec![job.id.clone()]);
    assert!(settled_by(store.connection(), "w2").await.is_empty());
    assert!(settled_by(store.connection(), "w3").await.is_empty());
}
