//! Training on the real handwritten digits and comparing results, as ordinary jobs on a stack:
//! `ml-train` twice with different seeds, then `ml-compare` over the two outputs (they agree)
//! and over one output against a copy whose `metrics.json` claims more than its weights achieve
//! (it must not). Then the training as a nondeterministic job, verified by the verifier under
//! each comparison — tolerance, the comparator, a quorum of replicas — and the pinned sandbox of
//! a deterministic one. (Liars under these comparisons are the byzantine harness's: see
//! `loadtest`.)
//!
//! The digits are not committed: `scripts/fetch-data.sh` fetches them (the Makefile runs it
//! before the tests).

use std::path::PathBuf;
use std::time::Duration;

use cid::Cid;
use serde_json::{json, Value};
use shoal_jobs::{Compared, ExecutionOutcome, ExecutionResult, FailureReason, Job, JobState, VerificationOutcome};
use shoal_testkit::{repo_root, Stack, StackOptions};

/// Each run of the default configuration must reach this held-out accuracy
/// (`programs/ml-train/README.md`).
const ACCURACY_BAR: f64 = 0.93;
/// ml-train's wasm needs about a tenth of the default fuel; this leaves room without letting a
/// runaway loop go on for long.
const FUEL: u64 = 20_000_000_000;

fn digits_dir() -> PathBuf {
    let dir = repo_root().join("data/digits");
    assert!(dir.join("digits.csv").is_file(), "{} is missing: run scripts/fetch-data.sh", dir.display());
    dir
}

/// Runs `spec` and returns its state and the last execution's completed result (any exit code).
async fn run(stack: &Stack, spec: &Value) -> (JobState, Option<FailureReason>, ExecutionResult) {
    let id = stack.submit_ok(spec).await.unwrap();
    let job = stack.wait_terminal(&id, Duration::from_secs(300)).await.unwrap();
    let completed = job.executions.iter().rev().find_map(|execution| match &execution.outcome {
        Some(ExecutionOutcome::Completed(result)) => Some(result.clone()),
        _ => None,
    });
    let result = completed.unwrap_or_else(|| panic!("the program ran to completion: {job:?}"));
    (job.state, job.failure.map(|f| f.reason), result)
}

async fn json_file(stack: &Stack, root: &Cid, path: &str) -> Value {
    serde_json::from_slice(&stack.read(root, path).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_trainings_agree_under_the_comparator_and_a_fabricated_claim_is_caught() {
    let digits = digits_dir();
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let data = stack.add_path(&digits).await.unwrap().to_string();
    let train = stack.add_program("ml-train").await.unwrap().to_string();
    let compare = stack.add_program("ml-compare").await.unwrap().to_string();

    let mut outputs = Vec::new();
    for seed in ["1", "2"] {
        let spec = json!({
            "program": train,
            "args": ["--seed", seed],
            "inputs": [{"cid": data, "path": "/inputs"}],
            "limits": {"fuel": FUEL},
        });
        let (state, _, result) = run(&stack, &spec).await;
        assert_eq!(state, JobState::Succeeded, "{result:?}");
        let metrics = json_file(&stack, result.output.cid(), "metrics.json").await;
        let accuracy = metrics["held_out_accuracy"].as_f64().unwrap();
        assert!(accuracy >= ACCURACY_BAR, "seed {seed}: {metrics}");
        assert_eq!(metrics["seed"].to_string(), seed);
        assert_eq!((metrics["epochs"].as_u64(), metrics["held_out_rows"].as_u64()), (Some(30), Some(359)));
        eprintln!("ml-train --seed {seed}: accuracy {accuracy}, {} fuel, {} ms", result.fuel_consumed, result.run_ms);
        outputs.push(*result.output.cid());
    }
    let (a, b) = (outputs[0], outputs[1]);
    assert_ne!(
        stack.read(&a, "weights.bin").await.unwrap(),
        stack.read(&b, "weights.bin").await.unwrap(),
        "different seeds give different weights"
    );

    let comparison = |b: &Cid| {
        json!({
            "program": compare,
            "inputs": [
                {"cid": data, "path": "/inputs"},
                {"cid": a.to_string(), "path": "/results/a"},
                {"cid": b.to_string(), "path": "/results/b"},
            ],
            "limits": {"fuel": FUEL},
        })
    };
    let (state, _, result) = run(&stack, &comparison(&b)).await;
    let line = String::from_utf8(stack.read(result.stdout.cid(), "").await.unwrap()).unwrap();
    assert_eq!((state, result.exit_code), (JobState::Succeeded, 0), "{line}");
    let written = json_file(&stack, result.output.cid(), "comparison.json").await;
    assert_eq!(written["agree"], true, "{written}");
    eprintln!("ml-compare, honest pair: {} fuel, {} ms", result.fuel_consumed, result.run_ms);

    // B's weights under a claim 0.02 better than they are: within the accuracy tolerance of A,
    // so comparing the two metrics.json alone would pass it.
    let forged_dir = tempfile::tempdir().unwrap();
    for file in ["model.json", "weights.bin"] {
        std::fs::write(forged_dir.path().join(file), stack.read(&b, file).await.unwrap()).unwrap();
    }
    let mut claims = json_file(&stack, &b, "metrics.json").await;
    claims["held_out_accuracy"] = json!(claims["held_out_accuracy"].as_f64().unwrap() + 0.02);
    std::fs::write(forged_dir.path().join("metrics.json"), serde_json::to_vec_pretty(&claims).unwrap()).unwrap();
    let forged = stack.add_path(forged_dir.path()).await.unwrap();

    let (state, failure, result) = run(&stack, &comparison(&forged)).await;
    let line: Value = serde_json::from_slice(&stack.read(result.stdout.cid(), "").await.unwrap()).unwrap();
    assert_eq!((state, failure, result.exit_code), (JobState::Failed, Some(FailureReason::NonZeroExit), 1), "{line}");
    assert_eq!((line["result"].as_str(), line["reason"].as_str()), (Some("b"), Some("claimed_accuracy_mismatch")));
    stack.shutdown().await;
}

/// The training job over `data`, nondeterministic, verified as `verification` says.
fn nondeterministic_training(train: &str, data: &str, verification: Value) -> Value {
    json!({
        "program": train,
        "determinism": "nondeterministic",
        "inputs": [{"cid": data, "path": "/inputs"}],
        "limits": {"fuel": FUEL},
        "writes": ["model.json", "weights.bin", "metrics.json"],
        "verification": verification,
    })
}

/// The tolerance the verifier holds two honest trainings' accuracies to (`ml-compare`'s own
/// default: 100 honest pairs differed by up to 0.031, docs/verification/).
fn accuracy_within() -> Value {
    json!({"kind": "tolerance", "fields": [{"file": "metrics.json", "json": "/held_out_accuracy", "absolute": 0.04}]})
}

async fn verified(stack: &Stack, id: &str) -> Job {
    stack.wait_until(id, Duration::from_secs(300), |job| job.verification.is_some()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nondeterministic_training_is_verified_by_tolerance_by_its_comparator_and_by_a_quorum() {
    let digits = digits_dir();
    // Three workers, for replicas on distinct workers; the verifier never spot-checks agreeing
    // replicas (rate 0), so their verdict is theirs alone.
    let stack =
        Stack::start(StackOptions { workers: 3, verifier: Some(0.0), ..StackOptions::default() }).await.unwrap();
    let data = stack.add_path(&digits).await.unwrap().to_string();
    let train = stack.add_program("ml-train").await.unwrap().to_string();
    let compare = stack.add_program("ml-compare").await.unwrap().to_string();

    let by_tolerance = json!({"mode": "always", "compare": accuracy_within()});
    let by_comparator = json!({"mode": "always", "compare": {"kind": "comparator", "program": compare}});
    let by_quorum = json!({"mode": "replicated", "replicas": 3, "quorum": 2, "compare": accuracy_within()});
    let mut ids = Vec::new();
    for verification in [by_tolerance, by_comparator, by_quorum] {
        ids.push(stack.submit_ok(&nondeterministic_training(&train, &data, verification)).await.unwrap());
    }
    let mut seeds = Vec::new();
    for (id, kind) in ids.iter().zip(["tolerance", "comparator", "quorum"]) {
        let job = verified(&stack, id).await;
        assert_eq!(job.state, JobState::Succeeded, "{kind}: {job:?}");
        let verification = job.verification.as_ref().unwrap();
        let metrics = json_file(&stack, job.result.as_ref().unwrap().output.cid(), "metrics.json").await;
        assert_eq!(metrics["seed_source"], "host", "{kind}: no --seed, so the seed came from the host: {metrics}");
        seeds.push(metrics["seed"].as_u64().unwrap());
        eprintln!("{kind}: {}", serde_json::to_string(verification).unwrap());
        match kind {
            "tolerance" => {
                assert_eq!(verification.outcome, VerificationOutcome::Agreed, "{verification:?}");
                let [Compared::Tolerance { against, agree: true, checks }] = &verification.compared[..] else {
                    panic!("{verification:?}")
                };
                assert_eq!((against.as_str(), checks.len()), ("re-execution", 1));
                assert_eq!(checks[0].field, "metrics.json#/held_out_accuracy");
                let (reported, other) = (checks[0].reported.unwrap(), checks[0].other.unwrap());
                assert!(checks[0].within && (reported - other).abs() <= 0.04, "{checks:?}");
                assert_eq!(reported, metrics["held_out_accuracy"].as_f64().unwrap());
            }
            "comparator" => {
                assert_eq!(verification.outcome, VerificationOutcome::Agreed, "{verification:?}");
                let [Compared::Comparator { agree: true, exit_code: 0, said, output, .. }] = &verification.compared[..]
                else {
                    panic!("{verification:?}")
                };
                let line: Value = serde_json::from_str(said).unwrap();
                assert_eq!(line["agree"], true, "{said}");
                let written = json_file(&stack, output.cid(), "comparison.json").await;
                // The comparator recomputed both results' accuracies from their weights.
                assert_eq!(written["a"]["recomputed"]["held_out_accuracy"], metrics["held_out_accuracy"], "{written}");
            }
            _ => {
                let VerificationOutcome::Replicated { workers } = &verification.outcome else {
                    panic!("{verification:?}")
                };
                assert!(workers.len() >= 2, "a quorum of 2: {workers:?}");
                assert!(verification.replicas.len() >= 2, "{verification:?}");
                assert!(verification.compared.iter().all(|c| matches!(c, Compared::Tolerance { .. })));
                assert!(verification.compared.iter().filter(|c| c.agree()).count() >= 1, "{verification:?}");
            }
        }
    }
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), 3, "each nondeterministic run drew its own seed");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deterministic_job_never_sees_the_hosts_randomness_and_bad_comparisons_are_refused() {
    let digits = digits_dir();
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let data = stack.add_path(&digits).await.unwrap().to_string();
    let train = stack.add_program("ml-train").await.unwrap().to_string();
    // Twice the same deterministic training without --seed, and once with a differing argument
    // so the job is not deduplicated: the seed it draws from "the host" is the pinned stream's.
    let mut results = Vec::new();
    for epochs in ["30", "29"] {
        let spec = json!({
            "program": train,
            "args": ["--epochs", epochs],
            "inputs": [{"cid": data, "path": "/inputs"}],
            "limits": {"fuel": FUEL},
            "verification": {"mode": "none"},
        });
        let (state, _, result) = run(&stack, &spec).await;
        assert_eq!(state, JobState::Succeeded, "{result:?}");
        results.push(json_file(&stack, result.output.cid(), "metrics.json").await);
    }
    assert_eq!(results[0]["seed_source"], "host");
    assert_eq!(results[0]["seed"], results[1]["seed"], "the pinned sandbox's randomness: {results:?}");
    // A nondeterministic refusal: a job cannot ask for host randomness while keeping byte
    // equality as its check.
    let (status, body) = stack
        .submit(&json!({"program": train, "determinism": "nondeterministic", "inputs": [{"cid": data}]}))
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 400, "{body}");
    assert_eq!(body["error"]["field"], "verification.compare", "{body}");
    // A comparator that is not a module, found by the gateway through its content sources.
    let text = stack.add_bytes(b"#!/bin/sh\nexit 0\n").await.unwrap().to_string();
    for (comparator, says) in [(&data, "a UnixFS directory, not a file"), (&text, "does not start with wasm's magic")] {
        let verification = json!({"mode": "always", "compare": {"kind": "comparator", "program": comparator}});
        let (status, body) = stack.submit(&nondeterministic_training(&train, &data, verification)).await.unwrap();
        assert_eq!(status.as_u16(), 400, "{body}");
        assert_eq!(body["error"]["field"], "verification.compare.program", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{body}");
    }
    stack.shutdown().await;
}
