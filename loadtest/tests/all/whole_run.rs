//! A whole harness run against real processes: 200 jobs through the HTTP API while a worker is
//! SIGKILLed (and restarted under its id) and Redis is killed and restarted.

use shoal_loadtest::{Mode, RunReport};

use crate::common::{assert_fields, chaos, one_stack_at_a_time};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_jobs_survive_a_worker_kill_and_a_redis_restart() {
    let _stack = one_stack_at_a_time().await;
    let out = tempfile::tempdir().unwrap();
    let prefix = out.path().join("report");
    let (options, command) = chaos(&[
        "--jobs=200",
        "--rate=40",
        "--workers=2",
        "--kill-every-secs=1.5",
        "--max-kills=1",
        "--replace=same-id",
        "--restart-redis-at=3",
        "--stall-secs=30",
        "--deadline-secs=80",
        "--quiet",
    ]);
    let report = options.run(command).await.unwrap();
    report.write(&prefix).unwrap();

    let kinds: Vec<(&str, bool)> = report.faults_injected.iter().map(|f| (f.kind.as_str(), f.ok)).collect();
    assert_eq!(kinds, [("kill_worker", true), ("restart_redis", true)], "{:#?}", report.faults_injected);
    assert_eq!(report.submitted, 200, "{report:#?}");
    assert_eq!(report.lost, 0, "{report:#?}");
    assert_eq!(report.wrong, 0, "{report:#?}");
    assert_eq!(report.duplicates, 0, "{report:#?}");
    assert_eq!(report.succeeded, report.submitted, "{report:#?}");
    assert!(report.p50_ms <= report.p95_ms && report.p95_ms <= report.p99_ms);

    // The JSON carries the figures under their documented names; the other two files exist.
    let json = assert_fields(
        &out.path().join("report.json"),
        &[
            "command",
            "submitted",
            "succeeded",
            "failed",
            "failed_by_reason",
            "lost",
            "wrong",
            "duplicates",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "throughput_per_s",
            "faults_injected",
        ],
    );
    assert_eq!(json["succeeded"], 200);
    let markdown = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(markdown.contains("| lost | 0 |"), "{markdown}");
    let svg = std::fs::read_to_string(out.path().join("report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("200 jobs"), "{svg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_result_is_decided_on_while_workers_and_verifiers_are_killed() {
    let _stack = one_stack_at_a_time().await;
    let (options, command) = chaos(&[
        "--jobs=150",
        "--rate=50",
        "--workers=2",
        "--huge-every=0",
        "--verifiers=2",
        "--verification=always",
        "--kill-every-secs=1.5",
        "--max-kills=2",
        "--replace=new-id",
        "--kill-verifier-every-secs=1",
        "--visibility-timeout-secs=2",
        "--stall-secs=40",
        "--deadline-secs=120",
        "--quiet",
    ]);
    let report = options.run(command).await.unwrap();
    let verifier_kills = report.faults_injected.iter().filter(|f| f.kind == "kill_verifier" && f.ok).count();
    assert!(verifier_kills >= 2, "{:#?}", report.faults_injected);
    assert_eq!(report.submitted, 150, "{report:#?}");
    assert_eq!((report.lost, report.wrong, report.wrong_accepted), (0, 0, 0), "{:?}", report.examples);
    // Every result re-executed and agreed with, though verifiers died mid-verification.
    assert_eq!(report.accepted, 150, "{:?}", report.acceptance);
    assert_eq!(report.acceptance.get("verified"), Some(&150), "{:?}", report.acceptance);
    assert!(report.clean(), "{:?}", report.examples);
}
