//! Training on the real handwritten digits and comparing results, as ordinary jobs on a stack:
//! `ml-train` twice with different seeds, then `ml-compare` over the two outputs (they agree)
//! and over one output against a copy whose `metrics.json` claims more than its weights achieve
//! (it must not).
//!
//! The digits are not committed: `scripts/fetch-data.sh` fetches them (the Makefile runs it
//! before the tests).

use std::path::PathBuf;
use std::time::Duration;

use cid::Cid;
use serde_json::{json, Value};
use shoal_jobs::{ExecutionOutcome, ExecutionResult, FailureReason, JobState};
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
