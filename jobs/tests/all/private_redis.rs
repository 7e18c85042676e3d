//! The private `redis-server`: no one gets in without logging in, each role's user reaches only
//! the keys and commands it needs, what was written survives a crash, and a server a killed
//! stack left behind does not run beside the next.

use redis::AsyncCommands;
use shoal_jobs::keys::{self, RedisRole};
use shoal_jobs::{ApiKeys, Created, Fsync, RedisConnection, RedisServer, Role, Tenant};

/// The error code of `result`, which must be an error.
fn refused<T: std::fmt::Debug>(result: redis::RedisResult<T>) -> String {
    let error = result.expect_err("Redis refused");
    error.code().unwrap_or_default().to_string()
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test]
async fn a_client_without_credentials_or_with_wrong_ones_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port())).unwrap();
    let mut conn = anonymous.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(refused(redis::cmd("PING").query_async::<String>(&mut conn).await), "NOAUTH");
    assert_eq!(refused(conn.get::<_, Option<String>>("anything").await), "NOAUTH");

    let wrong = redis::Client::open(format!("redis://worker:guess@127.0.0.1:{}/", server.port())).unwrap();
    let error = wrong.get_multiplexed_async_connection().await.expect_err("a wrong password is refused");
    assert_eq!(error.kind(), redis::ErrorKind::AuthenticationFailed, "{error}");

    // The data directory and the credentials are the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    for path in [dir.path().to_path_buf(), dir.path().join("credentials.json"), dir.path().join("users.acl")] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is readable by others ({mode:o})", path.display());
    }
}

#[tokio::test]
async fn each_role_reaches_only_its_keys_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let keys_store = ApiKeys::new(RedisConnection::open(&[server.url()]).await.unwrap());
    let tenant: Tenant = "acme".parse().unwrap();
    keys_store.create(&tenant, Role::Tenant).await.unwrap();

    let mut worker = connect(&server.url_for(RedisRole::Worker)).await;
    // A worker reads no API key and writes no verdict on workers.
    assert_eq!(refused(worker.hgetall::<_, Vec<(String, String)>>(keys::api_keys()).await), "NOPERM");
    assert_eq!(refused(worker.hset::<_, _, _, ()>(keys::quarantined(), "w1", "{}").await), "NOPERM");
    assert_eq!(refused(worker.hdel::<_, _, ()>(keys::quarantined(), "w1").await), "NOPERM");
    assert_eq!(refused(worker.hset::<_, _, _, ()>(keys::api_keys(), "x", "{}").await), "NOPERM");
    assert_eq!(refused(worker.hset::<_, _, _, ()>(keys::quotas(), "acme", "{}").await), "NOPERM");
    // It binds its key once and cannot rebind or unbind one, nor undo what it settled, nor
    // read, acknowledge or delete the verifier's queue.
    let _: bool = worker.hset_nx(keys::worker_keys(), "w1", "ed25519:aa").await.unwrap();
    assert_eq!(refused(worker.hset::<_, _, _, ()>(keys::worker_keys(), "w1", "ed25519:bb").await), "NOPERM");
    assert_eq!(refused(worker.hdel::<_, _, ()>(keys::worker_keys(), "w1").await), "NOPERM");
    let bound: Option<String> = worker.hget(keys::worker_keys(), "w1").await.unwrap();
    assert_eq!(bound.as_deref(), Some("ed25519:aa"));
    let _: () = worker.lpush(keys::settled_by("w1"), "job-1").await.unwrap();
    assert_eq!(refused(worker.del::<_, ()>(keys::settled_by("w1")).await), "NOPERM");
    // A script naming the list beside a job's keys, as the finish script does, may add to it,
    // and no more.
    let job_key = keys::JobKeys::of("01JDXZ5Q8K3M2N4P6R8T0V2X4Z").job;
    let add = redis::Script::new("return redis.call('LPUSH', KEYS[2], ARGV[1])");
    let added: i64 =
        add.key(&job_key).key(keys::settled_by("w1")).arg("job-2").invoke_async(&mut worker).await.unwrap();
    assert_eq!(added, 2);
    let erase = redis::Script::new("return redis.call('DEL', KEYS[2])");
    let erased = erase.key(&job_key).key(keys::settled_by("w1")).invoke_async::<i64>(&mut worker).await;
    assert!(erased.is_err(), "{erased:?}");
    let mut admin = connect(&server.url()).await;
    let kept: Vec<String> = admin.lrange(keys::settled_by("w1"), 0, -1).await.unwrap();
    assert_eq!(kept, ["job-2", "job-1"]);
    let entry: String = worker.xadd(keys::verify_stream(0), "*", &[("job", "job-1")]).await.unwrap();
    assert_eq!(refused(worker.xdel::<_, _, ()>(keys::verify_stream(0), &[&entry]).await), "NOPERM");
    assert_eq!(
        refused(worker.xrange_all::<_, redis::streams::StreamRangeReply>(keys::verify_stream(0)).await),
        "NOPERM"
    );
    // It reads quarantine and quotas, and works on jobs and its registration.
    let _: Vec<(String, String)> = worker.hgetall(keys::quarantined()).await.unwrap();
    let _: Option<String> = worker.hget(keys::quotas(), "acme").await.unwrap();
    let job = keys::JobKeys::of("01JDXZ5Q8K3M2N4P6R8T0V2X4Z");
    let _: () = worker.hset(&job.job, "state", "queued").await.unwrap();
    let _: () = worker.hset(keys::members(), "w1", "{}").await.unwrap();
    // No role but the admin runs administrative or dangerous commands.
    for role in [RedisRole::Gateway, RedisRole::Worker, RedisRole::Verifier] {
        let mut conn = connect(&server.url_for(role)).await;
        assert_eq!(refused(redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await), "NOPERM", "{role:?}");
        assert_eq!(refused(redis::cmd("CONFIG").arg("GET").arg("*").query_async::<()>(&mut conn).await), "NOPERM");
        assert_eq!(refused(redis::cmd("KEYS").arg("*").query_async::<Vec<String>>(&mut conn).await), "NOPERM");
    }

    // The gateway reads API keys but cannot make one; the verifier writes verdicts.
    let mut gateway = connect(&server.url_for(RedisRole::Gateway)).await;
    let stored: Vec<(String, String)> = gateway.hgetall(keys::api_keys()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(refused(gateway.hset::<_, _, _, ()>(keys::api_keys(), "x", "{}").await), "NOPERM");
    assert_eq!(refused(gateway.hset::<_, _, _, ()>(keys::quarantined(), "w1", "{}").await), "NOPERM");
    let mut verifier = connect(&server.url_for(RedisRole::Verifier)).await;
    let _: () = verifier.hset(keys::quarantined(), "w1", "{}").await.unwrap();
    assert_eq!(refused(verifier.hgetall::<_, Vec<(String, String)>>(keys::api_keys()).await), "NOPERM");

    // A restart keeps the users and their passwords.
    server.restart().unwrap();
    let mut again = connect(&server.url_for(RedisRole::Worker)).await;
    assert_eq!(refused(again.hgetall::<_, Vec<(String, String)>>(keys::api_keys()).await), "NOPERM");
    let _: () = again.hset(&job.job, "state", "running").await.unwrap();
    let kept: Vec<(String, String)> = again.hgetall(keys::quarantined()).await.unwrap();
    assert_eq!(kept, [("w1".to_string(), "{}".to_string())], "the data outlives the restart");
}

#[tokio::test]
async fn each_role_leaves_the_notices_of_the_tasks_it_makes_countable() {
    use shoal_jobs::{ExecutionOutcome, ExecutionResult, JobStore, ShardQueue, TaskOf, Verification};
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let store = |role| {
        let url = server.url_for(role);
        async move { JobStore::new(RedisConnection::open(&[url]).await.unwrap()) }
    };
    let (worker, verifier, gateway) =
        (store(RedisRole::Worker).await, store(RedisRole::Verifier).await, store(RedisRole::Gateway).await);
    let queue = ShardQueue::new(RedisConnection::open(&[server.url_for(RedisRole::Worker)]).await.unwrap());
    let tenant: Tenant = "acme".parse().unwrap();
    // Tasks of a job whose policy (the default, sampled) asks for verification, and a plain job.
    let spec = crate::common::spec(&[]);
    let mut ids = Vec::new();
    for key in ["a", "b"] {
        let of = TaskOf { job: "fanned", key };
        let Created::New(task) = worker.submit_task(&queue, &spec, 0, &tenant, None, of).await.unwrap() else {
            panic!("a new task")
        };
        ids.push(task.id);
    }
    let Created::New(plain) = worker.create(&spec, 0, &tenant, None).await.unwrap() else { panic!("a new job") };
    let mut admin = connect(&server.url()).await;
    // The worker settles a task and the plain job: nothing to count before the verdict.
    let result = ExecutionResult {
        exit_code: 0,
        output: crate::common::PROGRAM.parse().unwrap(),
        stdout: crate::common::PROGRAM.parse().unwrap(),
        stderr: crate::common::PROGRAM.parse().unwrap(),
        fuel_consumed: 1,
        fetch_ms: 0,
        run_ms: 0,
        inputs_cached: 0,
    };
    for id in [&ids[0], &plain.id] {
        let done = crate::common::execution("e1", Some(ExecutionOutcome::Completed(result.clone())));
        worker.finish_execution(id, &done).await.unwrap();
    }
    assert!(noticed(&mut admin).await.is_empty(), "a success awaiting its verdict is not countable");
    // The verifier's verdict makes it countable; the gateway's cancel the other.
    let verdict = Verification {
        verifier: "v1".into(),
        at_ms: 0,
        outcome: shoal_jobs::VerificationOutcome::Vouched,
        corrected: None,
        failed: None,
        replicas: Vec::new(),
        compared: Vec::new(),
    };
    for id in [&ids[0], &plain.id] {
        verifier.record_verification(id, &verdict).await.unwrap();
    }
    gateway.cancel(&ids[1], "no longer wanted").await.unwrap();
    assert_eq!(noticed(&mut admin).await, ["fanned/a", "fanned/b"], "a plain job leaves none");
}

#[tokio::test]
async fn each_role_runs_the_scripts_that_count_queue_settle_and_acknowledge_a_job() {
    use shoal_jobs::{ClientSubmission, JobState, JobStore, Lane, ShardQueue, ShardReader};
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let gateway = RedisConnection::open(&[server.url_for(RedisRole::Gateway)]).await.unwrap();
    let worker = RedisConnection::open(&[server.url_for(RedisRole::Worker)]).await.unwrap();
    let queue = ShardQueue::new(worker.clone());
    queue.ensure_groups(1).await.unwrap();
    let (gateway, worker) = (JobStore::new(gateway), JobStore::new(worker));
    let tenant: Tenant = "acme".parse().unwrap();
    // The gateway's create script counts the submission and queues the job; the worker's finish
    // script records the job against it and acknowledges the entry.
    let how = ClientSubmission { memo_ttl: None, submissions_per_sec: Some(100) };
    let spec = crate::common::spec(&["acl"]);
    let Created::New(job) = gateway.submit_client(&queue, &spec, 0, &tenant, None, how).await.unwrap() else {
        panic!("a new job")
    };
    let block = std::time::Duration::from_millis(500);
    let mut reader =
        ShardReader::open(&[server.url_for(RedisRole::Worker)], Lane::Jobs, &[0], "w1", block).await.unwrap();
    let delivery = reader.next(4).await.unwrap().remove(0);
    worker.start_delivered(&job.id, &delivery.entry, &crate::common::execution("e1", None)).await.unwrap();
    let done = crate::common::execution("e1", Some(crate::common::completed(0, crate::common::PROGRAM)));
    let finished = worker.finish_delivered(&job.id, &done, true, Some(&delivery)).await.unwrap();
    assert_eq!(finished, (JobState::Succeeded, true));
    assert_eq!(queue.len(0).await.unwrap(), 0, "acknowledged and deleted");
}

#[tokio::test]
async fn a_worker_is_told_when_an_older_acl_would_refuse_its_settles() {
    use shoal_jobs::{JobStore, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let worker = JobStore::new(RedisConnection::open(&[server.url_for(RedisRole::Worker)]).await.unwrap());
    worker.check_settle_permitted("w1", 3).await.unwrap();
    // The worker's selectors as they were before the finish script acknowledged the entry: the
    // script could not name the shard's stream.
    let mut admin = connect(&server.url_for(RedisRole::Admin)).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(RedisRole::Worker.user())
        .arg("clearselectors")
        .arg("(~shoal:{w}:worker-keys -@all +hsetnx +hget)")
        .arg("(~shoal:{w}:settled:* -@all +lpush +ltrim)")
        .arg("(~shoal:{j*}:* ~shoal:{w}:settled:* -@all +evalsha)")
        .arg("(~shoal:{s*}:verify -@all +xadd +xgroup|create)")
        .query_async(&mut admin)
        .await
        .unwrap();
    let refused = worker.check_settle_permitted("w1", 3).await.unwrap_err();
    assert!(matches!(refused, StoreError::NotPermitted { .. }), "{refused:?}");
    assert!(refused.to_string().contains("`shoal redis-acl`"), "{refused}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut admin).await.unwrap();
    assert!(keys.iter().all(|key| !key.contains("probe")), "the check wrote {keys:?}");
}

/// Every tag's gatherable notices, sorted.
async fn noticed(admin: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut all = Vec::new();
    for tag in keys::all_job_tags() {
        let members: Vec<String> = admin.smembers(keys::gatherable(&tag)).await.unwrap();
        all.extend(members);
    }
    all.sort();
    all
}

#[tokio::test]
async fn what_the_scripts_wrote_outlives_a_crash_and_restart() {
    // Redis replays scripts' effects from the append-only file as transactions, as its
    // `default` user: jobs made by the gateway's user must all come back.
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start(dir.path(), Fsync::Always).unwrap();
    let gateway = RedisConnection::open(&[server.url_for(RedisRole::Gateway)]).await.unwrap();
    let store = shoal_jobs::JobStore::new(gateway);
    let tenant: Tenant = "acme".parse().unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let Created::New(job) = store.create(&crate::common::spec(&[&n.to_string()]), 0, &tenant, None).await.unwrap()
        else {
            panic!("new")
        };
        ids.push(job.id);
    }
    server.kill();
    server.restart().unwrap();
    let admin = shoal_jobs::JobStore::new(RedisConnection::open(&[server.url()]).await.unwrap());
    for id in &ids {
        let job = admin.get(id).await.unwrap().expect("the job is still there");
        assert_eq!(job.tenant, tenant);
    }
    let (listed, _) = admin.list(Some(&tenant), shoal_jobs::JobState::Queued, 10, None).await.unwrap();
    assert_eq!(listed.len(), 5);
}

#[tokio::test]
async fn a_redis_left_running_by_a_killed_stack_is_stopped_before_another_starts() {
    let dir = tempfile::tempdir().unwrap();
    let first = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let orphan: u32 = std::fs::read_to_string(dir.path().join("redis.pid")).unwrap().trim().parse().unwrap();
    // The stack dies without stopping its Redis (kill -9): the server outlives it.
    std::mem::forget(first);
    assert!(std::path::Path::new(&format!("/proc/{orphan}")).exists());

    let second = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let mut conn = connect(&second.url()).await;
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{orphan}/status")).unwrap_or_default();
    assert!(status.is_empty() || status.contains("State:\tZ"), "the orphan still runs: {status}");
}
