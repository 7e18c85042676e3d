//! The locality workload on real processes: three `shoal worker`s with small input caches, two
//! users reading a 60-item catalogue of real blobs with Zipf popularity. Needs the `shoal`
//! binary built (`cargo build -p shoal-cli`), like [`crate::whole_run`].

use std::collections::HashSet;

use shoal_loadtest::{Mode, RunReport};

use crate::common::{assert_fields, chaos, one_stack_at_a_time};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locality_rates_are_the_ones_the_job_records_give() {
    let _stack = one_stack_at_a_time().await;
    let out = tempfile::tempdir().unwrap();
    let prefix = out.path().join("locality");
    let (options, command) = chaos(&[
        "--workload=locality",
        "--workers=3",
        "--shards=32",
        "--catalogue-items=60",
        "--item-bytes=100kB",
        "--cache-bytes=1MB",
        "--users=2",
        "--distinct-programs=4",
        "--outstanding-per-user=4",
        "--duration-secs=15",
        "--jobs=0",
        "--heartbeat-ms=1000",
        "--visibility-timeout-secs=30",
        "--stall-secs=30",
        "--deadline-secs=120",
        "--quiet",
    ]);
    let report = options.run(command).await.unwrap();
    report.write(&prefix).unwrap();

    // Every accepted job succeeded once with the output computed here from the item's bytes.
    assert!(report.submitted >= 30, "{report:#?}");
    assert_eq!(report.succeeded, report.submitted, "{:#?}", report.examples);
    assert_eq!((report.failed, report.lost, report.wrong, report.duplicates), (0, 0, 0, 0), "{:#?}", report.examples);
    assert_eq!(report.not_submitted, 0);
    // No execution was repeated, so each job record below is the only execution of its job.
    assert_eq!(report.reexecuted, 0);

    let locality = report.locality.as_ref().expect("a locality run reports locality");
    assert_eq!(locality.workers, 3);
    assert_eq!(locality.catalogue_items, 60);
    assert!((3_000_000..9_000_000).contains(&locality.catalogue_bytes), "{}", locality.catalogue_bytes);
    assert_eq!(locality.jobs.len(), report.succeeded);

    // The reported rates are the ones the per-job records (each execution's `inputs_cached`)
    // give.
    let inputs: usize = locality.jobs.iter().map(|j| j.inputs.len()).sum();
    let cached: u32 = locality.jobs.iter().map(|j| j.inputs_cached).sum();
    let local = locality.jobs.iter().filter(|j| j.inputs_cached as usize == j.inputs.len()).count();
    assert!((locality.cache_hit_rate - cached as f64 / inputs as f64).abs() < 1e-12);
    assert!((locality.local_task_rate - local as f64 / locality.jobs.len() as f64).abs() < 1e-12);
    assert!(locality.jobs.iter().all(|j| j.inputs_cached as usize <= j.inputs.len() && !j.inputs.is_empty()));
    // Popular items come back to the worker that holds them: some hits, not all.
    assert!(locality.cache_hit_rate > 0.0 && locality.cache_hit_rate < 1.0, "{}", locality.cache_hit_rate);

    // A worker cannot hold an item before it first reads it: every (worker, item) pair cost at
    // least one miss, so misses are at least the number of distinct pairs.
    let workers: HashSet<&str> = locality.jobs.iter().map(|j| j.worker.as_str()).collect();
    assert!(workers.iter().all(|w| ["w0", "w1", "w2"].contains(w)), "{workers:?}");
    let pairs: HashSet<(&str, &str)> =
        locality.jobs.iter().flat_map(|j| j.inputs.iter().map(move |i| (j.worker.as_str(), i.as_str()))).collect();
    let misses = inputs - cached as usize;
    assert!(misses >= pairs.len(), "{misses} misses for {} distinct (worker, item) pairs", pairs.len());
    // The series accounts for every job.
    let in_series: f64 = locality.series.iter().map(|b| b.throughput_per_s * locality.bucket_s).sum();
    assert_eq!(in_series.round() as usize, report.succeeded);

    // The JSON carries the figures at the top level, named as in the simulation's report.
    let json = assert_fields(
        &out.path().join("locality.json"),
        &[
            "submitted",
            "succeeded",
            "workers",
            "catalogue_bytes",
            "catalogue_items",
            "cache_hit_rate",
            "local_task_rate",
            "execution_times",
            "series",
        ],
    );
    assert_eq!(json["cache_hit_rate"].as_f64().unwrap(), locality.cache_hit_rate);
    let markdown = std::fs::read_to_string(out.path().join("locality.md")).unwrap();
    assert!(markdown.contains("| local task rate |"), "{markdown}");
}
