//! A short latency run against real processes: two low rates on debug stacks, then the BullMQ
//! baseline (needs `npm ci --prefix loadtest/bullmq`; `make js-peers` does). Every job must be
//! seen finished with the right output, both systems reported at both rates, and the phase
//! breakdown must count the timed jobs alone (the warm-up taken off).

use shoal_loadtest::latency::shoal::WaitMethod;
use shoal_loadtest::{Mode, RunReport};

use crate::common::{assert_fields, latency, one_stack_at_a_time};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_latency_run_reports_both_systems_and_where_the_time_went() {
    let _stack = one_stack_at_a_time().await;
    let out = tempfile::tempdir().unwrap();
    let prefix = out.path().join("latency");
    let (options, command) = latency(&["--rates=20,40", "--secs=2", "--drain-secs=20", "--inputs=4"]);
    let report = options.run(command).await.unwrap();
    report.write(&prefix).unwrap();
    assert!(report.passed(), "{}", report.summary());
    // This gateway holds a submission's answer until its job ends.
    assert_eq!(report.wait, Some(WaitMethod::OnSubmit));

    assert_eq!(report.shoal.len(), 2);
    for (step, rate) in report.shoal.iter().zip([20.0, 40.0]) {
        assert_eq!(step.offered_per_s, rate);
        assert_eq!(
            (step.planned, step.completed, step.unfinished),
            ((rate * 2.0) as usize, step.planned, 0),
            "{step:#?}"
        );
        assert_eq!((step.refused, step.failed, step.wrong), (0, 0, 0), "{step:#?}");
        assert!(step.p50_ms <= step.p95_ms && step.p95_ms <= step.p99_ms && step.p99_ms <= step.max_ms);
        assert!(step.cpu_s.contains_key("gateway") && step.cpu_s.contains_key("redis"), "{:?}", step.cpu_s);
        let breakdown = step.breakdown.as_ref().expect("a breakdown");
        let count = |phases: &[shoal_loadtest::latency::phases::PhaseFigures], name: &str| {
            phases.iter().find(|p| p.phase == name).map_or(0, |p| p.count)
        };
        // One run and one settle per timed job: the warm-up's are taken off.
        for phase in ["begin", "run", "import", "receipt", "finish", "delivery"] {
            assert_eq!(count(&breakdown.worker, phase), step.completed as u64, "{phase}: {breakdown:#?}");
        }
        // On one Redis node the settle acknowledged each entry: none was left to acknowledge.
        assert_eq!(count(&breakdown.worker, "ack"), 0, "{breakdown:#?}");
        assert_eq!(count(&breakdown.gateway, "store"), step.submitted as u64, "{breakdown:#?}");
        assert_eq!(breakdown.dominant.len(), 3, "{breakdown:#?}");
        // Every job took scripts (its creation, start and finish) and a stream entry.
        let calls = |command: &str| breakdown.redis_commands.get(command).map_or(0, |c| c.calls);
        assert!(calls("evalsha") >= 3 * step.completed as u64, "{:#?}", breakdown.redis_commands);
        assert!(calls("xadd") >= step.completed as u64, "{:#?}", breakdown.redis_commands);
    }
    let baseline = report.bullmq.as_ref().expect("the BullMQ baseline ran");
    let rates: Vec<f64> = baseline.steps.iter().map(|s| s.offered_per_s).collect();
    assert_eq!(rates, [20.0, 40.0]);
    assert!(baseline.steps.iter().all(|s| s.completed == s.planned && s.unfinished == 0), "{baseline:#?}");
    assert_eq!(report.ratios.len(), 2);
    // Rates this low are sustained by both.
    assert_eq!(report.bullmq_max_sustainable_per_s, Some(40.0));

    let json = assert_fields(
        &out.path().join("latency.json"),
        &["command", "wait", "shoal", "bullmq", "ratios", "shoal_max_sustainable_per_s", "breakdown_at_per_s"],
    );
    assert_eq!(json["shoal"][0]["completed"], 40);
    let markdown = std::fs::read_to_string(out.path().join("latency.md")).unwrap();
    assert!(
        markdown.contains("| 20 | BullMQ |")
            && markdown.contains("## Where a Shoal job's time goes")
            && markdown.contains("| evalsha |"),
        "{markdown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memoised_repeats_are_all_answered_from_the_memo_and_timed_by_the_gateway() {
    let _stack = one_stack_at_a_time().await;
    let out = tempfile::tempdir().unwrap();
    let prefix = out.path().join("memoised");
    let (options, command) = latency(&["--memoised=50", "--workers=1", "--inputs=1"]);
    let report = options.run(command).await.unwrap();
    report.write(&prefix).unwrap();
    assert!(report.passed(), "{}", report.summary());
    assert!(report.shoal.is_empty() && report.bullmq.is_none(), "the memoised repeats alone");

    let memoised = report.memoised.as_ref().expect("the memoised repeats ran");
    assert_eq!((memoised.repeats, memoised.memoised, memoised.other), (50, 50, 0), "{memoised:#?}");
    // Every answer carried the gateway's own time, which the client's round trip contains.
    for spread in [&memoised.server, &memoised.admit, &memoised.store, &memoised.client] {
        assert_eq!(spread.count, 50, "{memoised:#?}");
        assert!(spread.p50_ms > 0.0 && spread.p50_ms <= spread.p99_ms && spread.p99_ms <= spread.max_ms);
    }
    assert!(memoised.server.mean_ms < memoised.client.mean_ms, "{memoised:#?}");
    assert!(memoised.admit.mean_ms + memoised.store.mean_ms <= memoised.server.mean_ms, "{memoised:#?}");
    // The histogram counts the timed repeats alone (the warm-up and the first job taken off).
    assert_eq!(memoised.histogram_count, 50, "{memoised:#?}");
    assert!(memoised.phases.iter().any(|p| p.phase == "store" && p.count == 50), "{memoised:#?}");

    let json = assert_fields(&out.path().join("memoised.json"), &["command", "memoised"]);
    assert_eq!(json["memoised"]["memoised"], 50);
    let markdown = std::fs::read_to_string(out.path().join("memoised.md")).unwrap();
    assert!(markdown.contains("## Memoised repeats") && markdown.contains("| server time | 50 |"), "{markdown}");
}
