//! Helpers shared by the store tests on one node (`redis_store`) and on a cluster (`cluster`).

use std::collections::BTreeSet;

use shoal_jobs::{
    now_ms, ClientSubmission, ContentId, Created, Execution, ExecutionOutcome, ExecutionResult, Idempotency, JobSpec,
    JobState, JobStore, ShardQueue, StoreError, Tenant,
};

/// The tenant the store tests' jobs belong to.
pub(crate) fn tenant() -> Tenant {
    "acme".parse().unwrap()
}

/// `key` as the tenant of [`tenant`] would send it.
pub(crate) fn client_key<'a>(tenant: &'a Tenant, key: &'a str) -> Option<Idempotency<'a>> {
    Some(Idempotency::Client { tenant, key })
}

/// Creates `spec` `racers` times at once under one idempotency key; returns how many calls
/// created a job and the ids all calls returned.
pub(crate) async fn race_creates(
    store: &JobStore,
    spec: &JobSpec,
    key: &str,
    racers: usize,
) -> (usize, BTreeSet<String>) {
    let tenant = tenant();
    let results =
        futures::future::join_all((0..racers).map(|_| store.create(spec, 0, &tenant, client_key(&tenant, key)))).await;
    let mut ids = BTreeSet::new();
    let mut new = 0;
    for result in results {
        match result.unwrap() {
            Created::New(job) => {
                new += 1;
                ids.insert(job.id);
            }
            Created::Existing(job) => {
                ids.insert(job.id);
            }
        }
    }
    (new, ids)
}

/// The program CID the store tests' specs name (the `hello world` vector; never run).
pub(crate) const PROGRAM: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

/// A spec of [`PROGRAM`] with `args`.
pub(crate) fn spec(args: &[&str]) -> JobSpec {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    JobSpec::from_json(format!(r#"{{"program":"{PROGRAM}","args":[{}]}}"#, args.join(",")).as_bytes()).unwrap()
}

/// An execution `id` by worker `w1`, finished now if it has an `outcome`.
pub(crate) fn execution(id: &str, outcome: Option<ExecutionOutcome>) -> Execution {
    Execution {
        id: id.into(),
        worker: "w1".into(),
        started_at_ms: now_ms(),
        finished_at_ms: outcome.as_ref().map(|_| now_ms()),
        outcome,
        receipt: None,
    }
}

/// A completed outcome with exit code `exit_code` whose output, stdout and stderr are `output`.
pub(crate) fn completed(exit_code: i32, output: &str) -> ExecutionOutcome {
    let cid: ContentId = output.parse().unwrap();
    ExecutionOutcome::Completed(ExecutionResult {
        exit_code,
        output: cid,
        stdout: cid,
        stderr: cid,
        fuel_consumed: 7,
        fetch_ms: 1,
        run_ms: 2,
        inputs_cached: 0,
    })
}

/// Every job in `state`, newest first, read page by page (`page` at a time) through the cursor.
pub(crate) async fn list_all(store: &JobStore, state: JobState, page: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (listed, next) = store.list(None, state, page, cursor).await.unwrap();
        assert!(listed.len() <= page);
        seen.extend(listed.into_iter().map(|(_, id)| id));
        match next {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
}

/// Five submissions of one tenant within one second, under a quota of three a second: the first
/// three are stored and queued on `shard`, the others refused with nothing stored; a repeat of an
/// idempotency key counts too, and another tenant is not held back.
pub(crate) async fn submissions_past_the_quota_are_refused_and_store_nothing(
    store: &JobStore,
    queue: &ShardQueue,
    shard: u32,
) {
    // Early in a second, so that all of them fall within it.
    let into_second = now_ms() % 1000;
    if into_second > 200 {
        tokio::time::sleep(std::time::Duration::from_millis(1000 - into_second)).await;
    }
    let (tenant, other): (Tenant, Tenant) = (tenant(), "other".parse().unwrap());
    let how = ClientSubmission { memo_ttl: None, submissions_per_sec: Some(3) };
    let mut made = Vec::new();
    for n in 0..4 {
        let key = format!("q{}", n.min(2));
        made.push(store.submit_client(queue, &spec(&[&key]), shard, &tenant, client_key(&tenant, &key), how).await);
    }
    made.push(store.submit_client(queue, &spec(&["q4"]), shard, &tenant, None, how).await);
    let kinds: Vec<&str> = made
        .iter()
        .map(|made| match made {
            Ok(Created::New(_)) => "new",
            Ok(Created::Existing(_)) => "existing",
            Err(StoreError::RateLimited { per_sec: 3, .. }) => "refused",
            Err(e) => panic!("{e}"),
        })
        .collect();
    assert_eq!(kinds, ["new", "new", "new", "refused", "refused"]);
    assert_eq!(queue.len(shard).await.unwrap(), 3);
    assert_eq!(store.outstanding(&tenant).await.unwrap(), 3, "a refused submission stores no job");
    let Created::New(_) = store.submit_client(queue, &spec(&["o"]), shard, &other, None, how).await.unwrap() else {
        panic!("another tenant's submission was not stored")
    };
}
