//! Byzantine workers as real processes (`shoal-loadtest adversary-worker`) among honest ones:
//! every kind that lies is caught — liars, lazy and colluding workers, a sleeper that turns and
//! a rare liar are quarantined, and so is a forger once its receipts have been refused three
//! times — and no accepted result is wrong.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use shoal_jobs::{Acceptance, ContentId, ExecutionOutcome, JobSpec, Membership};
use shoal_loadtest::adversary::accepted_wrongly;
use shoal_loadtest::{Mode, RunReport};
use shoal_testkit::{Stack, StackOptions};

use crate::common::{assert_fields, byzantine, one_stack_at_a_time};

/// Kills the adversary processes however the test ends.
struct Adversaries(Vec<Child>);

impl Drop for Adversaries {
    fn drop(&mut self) {
        for child in &mut self.0 {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_of_adversary_is_caught_and_no_wrong_result_is_accepted() {
    let _one = one_stack_at_a_time().await;
    // Many shards, so that shard ownership gives every one of the nine workers a fair share.
    let options = StackOptions { workers: 2, shards: 256, ..StackOptions::default() };
    let mut stack = Stack::start(options.clone()).await.unwrap();
    let home = stack.worker_config("any").store_dir.parent().unwrap().to_path_buf();
    let kinds = [
        ("liar", "liar"),
        ("lazy", "lazy"),
        ("colluder-1", "colluding"),
        ("colluder-2", "colluding"),
        ("sleeper", "sleeper"),
        ("rare", "rare"),
        ("forger", "forger"),
    ];
    let mut adversaries = Adversaries(Vec::new());
    for (id, kind) in kinds {
        let child = Command::new(env!("CARGO_BIN_EXE_shoal-loadtest"))
            .args(["adversary-worker", "--kind", kind, "--id", id, "--redis", &stack.redis.url()])
            .arg("--home")
            .arg(&home)
            .args(["--shards", &options.shards.to_string(), "--heartbeat-ms", "500", "--honest-for", "1"])
            // Half, not 1 %: with a share of some twenty executions, a quarter still left one run in
            // a few hundred without a lie, and then the test proves nothing.
            .args(["--lie-percent", "50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        adversaries.0.push(child);
    }
    // Every worker registered before the jobs come, so each gets shards.
    tokio::time::sleep(options.heartbeat * 3).await;

    let program = stack.add_program("echo-hash").await.unwrap();
    let reference = shoal_worker::Executor::open(&stack.worker_config("reference")).await.unwrap();
    let mut expected: BTreeMap<String, ContentId> = BTreeMap::new();
    for n in 0..200 {
        let input = stack.add_bytes(format!("byzantine {n}\n").as_bytes()).await.unwrap();
        let spec = json!({"program": program.to_string(), "inputs": [{"cid": input.to_string()}], "verification": {"mode": "always"}});
        let honest = reference
            .run_spec(&JobSpec::from_json(spec.to_string().as_bytes()).unwrap(), &format!("ref-{n}"))
            .await
            .unwrap();
        expected.insert(stack.submit_ok(&spec).await.unwrap(), honest.output);
    }
    stack.start_verifier("verifier", 0.0);

    // Every job ends accepted (verified, or corrected after a lie), and none wrongly.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut jobs = Vec::new();
    for id in expected.keys() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let job =
            stack.wait_until(id, remaining, |job| job.acceptance().is_some_and(Acceptance::is_accepted)).await.unwrap();
        assert!(!accepted_wrongly(&job, &expected[id]), "a wrong result was accepted: {job:?}");
        jobs.push(job);
    }
    // The liars each settled at least one lie (the test is not vacuous) and are quarantined;
    // the forger's receipts are refused and counted, and it is quarantined at the third.
    let conn = redis::Client::open(stack.redis.url()).unwrap().get_connection_manager().await.unwrap();
    let membership = Membership::new(conn);
    let quarantined = membership.quarantined().await.unwrap();
    let refusals = membership.refusals().await.unwrap();
    for (id, _) in kinds {
        let ran = jobs.iter().flat_map(|job| job.executions.iter()).filter(|e| e.worker == id).count();
        let lies = jobs
            .iter()
            .flat_map(|job| job.executions.iter().map(move |e| (job, e)))
            .filter(|(_, e)| e.worker == id)
            .filter(
                |(job, e)| matches!(&e.outcome, Some(ExecutionOutcome::Completed(r)) if r.output != expected[&job.id]),
            )
            .count();
        if id == "forger" {
            assert!(refusals.get(id).copied().unwrap_or(0) >= 3, "the forger's receipts are refused: {refusals:?}");
            assert!(quarantined[id].reason.contains("receipts were refused"), "{quarantined:?}");
        } else {
            assert!(lies >= 1, "{id} settled no lie in {ran} executions: the test would prove nothing");
            assert!(quarantined.contains_key(id), "{id} lied {lies} times and is not quarantined: {quarantined:?}");
        }
        assert!(!refusals.contains_key(id) || id == "forger", "{id}'s genuine receipts are accepted: {refusals:?}");
    }
    assert!(!quarantined.keys().any(|id| id.starts_with("worker-")), "no honest worker is quarantined");
    drop(adversaries);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_byzantine_run_measures_against_its_honest_baseline_and_reports_who_was_caught_when() {
    let _one = one_stack_at_a_time().await;
    let out = tempfile::tempdir().unwrap();
    let prefix = out.path().join("report");
    let work = out.path().join("work");
    let (options, command) = byzantine(&[
        "--jobs=150",
        "--workers=6",
        "--malicious-fraction=0.34",
        "--kinds=colluding,forger",
        "--verifiers=1",
        "--huge-every=0",
        "--heartbeat-ms=500",
        "--stall-secs=60",
        "--deadline-secs=200",
        "--quiet",
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    let report = options.run(command).await.unwrap();
    report.write(&prefix).unwrap();

    assert_eq!((report.workers, report.malicious), (6, 2));
    assert_eq!(report.adversary_kinds, ["colluding", "forger"]);
    assert_eq!(report.verification, "always", "a byzantine run verifies every result unless told otherwise");
    assert_eq!(report.submitted, 150, "{:?}", report.run.examples);
    assert_eq!((report.wrong_accepted, report.lost), (0, 0), "{:?}", report.run.examples);
    assert_eq!(report.accepted, 150, "every result accepted, the adversaries' corrected: {:?}", report.acceptance);
    assert!(report.corrected > 0, "the adversaries got work and lied: {:?}", report.verdicts);
    assert!(report.uncaught().is_empty(), "{:?}", report.quarantined);
    assert!(report.honest_quarantined.is_empty(), "{:?}", report.honest_quarantined);
    for caught in &report.quarantined {
        assert!(caught.caught_after_jobs.is_some_and(|n| n <= 150), "{caught:?}");
    }
    let forger = report.quarantined.iter().find(|c| c.kind == "forger").unwrap();
    assert!(forger.reason.as_deref().is_some_and(|r| r.contains("receipts were refused")), "{forger:?}");
    // Every result re-executed once by the verifier, none twice.
    assert!((1.0..1.2).contains(&report.reexecutions_per_job), "{}", report.reexecutions_per_job);
    let baseline = report.baseline.as_ref().expect("an honest baseline ran first");
    assert_eq!((baseline.submitted, baseline.accepted, baseline.wrong_accepted), (150, 150, 0));
    assert!(report.throughput_ratio.is_some_and(|r| r > 0.0), "{:?}", report.throughput_ratio);

    assert_fields(
        &prefix.with_extension("json"),
        &[
            "workers",
            "malicious_fraction",
            "adversary_kinds",
            "submitted",
            "accepted",
            "wrong_accepted",
            "succeeded",
            "throughput_per_s",
            "honest_throughput_per_s",
            "quarantined",
            "tainted_corrected",
            "reexecutions_per_job",
        ],
    );
    assert!(prefix.with_extension("md").exists());
}
