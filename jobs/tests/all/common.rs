//! Helpers shared by the store tests on one node (`redis_store`) and on a cluster (`cluster`).

use std::collections::BTreeSet;

use shoal_jobs::{
    now_ms, ContentId, Created, Execution, ExecutionOutcome, ExecutionResult, Idempotency, JobSpec, JobState, JobStore,
    Tenant,
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
