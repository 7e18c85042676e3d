//! A small scale simulation end to end: 20 in-process workers (5 at the start, 15 joining
//! mid-run) over a synthetic catalogue, jobs submitted over HTTP by three users.

use shoal_loadtest::{Mode, RunReport};

use crate::common::{assert_fields, one_stack_at_a_time, sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_workers_with_fifteen_joining_run_every_job_correctly() {
    let _stack = one_stack_at_a_time().await;
    let out = tempfile::tempdir().unwrap();
    let prefix = out.path().join("sim");
    let (options, command) = sim(&[
        "--workers=20",
        "--initial-workers=5",
        "--join-at-secs=5",
        "--start-spread-secs=1",
        "--duration-secs=12",
        "--catalogue=2TB",
        "--cache=100GB",
        "--shards=256",
        "--heartbeat-secs=1",
        "--bucket-secs=1",
        "--outstanding-per-user=16",
        "--stall-secs=30",
        "--deadline-secs=50",
        "--quiet",
    ]);
    let report = options.run(command).await.unwrap();
    report.write(&prefix).unwrap();
    let base = &report.base;

    assert!(base.submitted > 100, "{report:#?}");
    assert!(report.success_rate() >= 0.999, "{report:#?}");
    // `succeeded` counts only jobs whose output CID is the one computed from the program and
    // inputs here; nothing came back with another.
    assert_eq!(base.wrong, 0, "{:#?}", base.examples);
    assert_eq!(base.duplicates, 0, "{:#?}", base.examples);
    assert_eq!(base.lost, 0, "{:#?}", base.examples);
    assert_eq!(report.workers, 20);
    assert_eq!(report.catalogue_items, 2000);
    assert!((1.9e12..2.1e12).contains(&(report.catalogue_bytes as f64)), "{}", report.catalogue_bytes);
    // Popular items are read again by the worker that read them: some hits, not all.
    assert!(report.cache_hit_rate > 0.0 && report.cache_hit_rate < 1.0, "{}", report.cache_hit_rate);
    assert!(report.local_task_rate > 0.0 && report.local_task_rate <= report.cache_hit_rate + 1e-9);

    // The join shows in the membership: five live workers before it, twenty after.
    let before: Vec<usize> =
        report.series.iter().filter(|b| b.at_s + report.bucket_s <= 4.0).map(|b| b.live_workers).collect();
    let after: Vec<usize> = report.series.iter().filter(|b| b.at_s >= 8.0).map(|b| b.live_workers).collect();
    assert!(!before.is_empty() && before.iter().all(|&n| n <= 5), "{:#?}", report.series);
    assert!(after.contains(&20), "{:#?}", report.series);
    let finished: f64 = report.series.iter().map(|b| b.throughput_per_s * report.bucket_s).sum();
    assert_eq!(finished.round() as usize, base.succeeded);

    // The JSON carries the reliability harness's top-level fields and the scale figures.
    assert_fields(
        &out.path().join("sim.json"),
        &[
            "command",
            "submitted",
            "succeeded",
            "failed",
            "lost",
            "wrong",
            "duplicates",
            "p99_ms",
            "throughput_per_s",
            "faults_injected",
            "workers",
            "catalogue_bytes",
            "cache_hit_rate",
            "local_task_rate",
            "series",
        ],
    );
    let svg = std::fs::read_to_string(out.path().join("sim.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 4, "three series and the live workers");
    assert!(svg.contains(">join</text>"));
    assert!(std::fs::read_to_string(out.path().join("sim.md")).unwrap().contains("| local task rate |"));
}
