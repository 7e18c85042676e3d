//! Helpers shared by the store tests on one node and on a cluster.

use std::collections::BTreeSet;

use shoal_jobs::{Created, JobSpec, JobStore};

/// Creates `spec` `racers` times at once under one idempotency key; returns how many calls
/// created a job and the ids all calls returned.
pub async fn race_creates(store: &JobStore, spec: &JobSpec, key: &str, racers: usize) -> (usize, BTreeSet<String>) {
    let results = futures::future::join_all((0..racers).map(|_| store.create(spec, 0, Some(key)))).await;
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
