//! ml-compare on real ml-train results (`data/digits/digits.csv`, fetched by
//! `scripts/fetch-data.sh`): two honest runs agree; each forged result is caught, although a
//! check of the two `metrics.json` alone (claimed accuracies within the tolerance) passes it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ml_compare::{compare, CannotCompare, Comparison, Options, Reason, DEFAULT_ACCURACY_TOLERANCE};
use ml_train::format::{self, Metrics};
use ml_train::{Mlp, TrainConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn digits() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/digits/digits.csv");
    assert!(path.is_file(), "{} is missing: run scripts/fetch-data.sh first", path.display());
    path
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ml-compare-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn train(name: &str, seed: u64, epochs: u32) -> PathBuf {
    let outputs = scratch_dir(name);
    let config = TrainConfig { epochs, ..TrainConfig::default() };
    ml_train::run(&ml_train::Options { data: digits(), outputs: outputs.clone(), config, seed: Some(seed) }).unwrap();
    outputs
}

/// Two honest runs of the default configuration, trained once for all tests.
fn honest() -> &'static (PathBuf, PathBuf) {
    static RUNS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUNS.get_or_init(|| (train("honest-1", 1, 30), train("honest-2", 2, 30)))
}

fn metrics(dir: &Path) -> Metrics {
    format::read_metrics(dir).unwrap()
}

/// A copy of `weights_from`'s model with `metrics` as its claims.
fn forge(name: &str, weights_from: &Path, metrics: &Metrics) -> PathBuf {
    let dir = scratch_dir(name);
    for file in [format::MODEL_FILE, format::WEIGHTS_FILE] {
        fs::copy(weights_from.join(file), dir.join(file)).unwrap();
    }
    format::write_metrics(&dir, metrics).unwrap();
    dir
}

fn run(a: &Path, b: &Path) -> Comparison {
    let options = Options {
        data: digits(),
        a: a.to_path_buf(),
        b: b.to_path_buf(),
        accuracy_tolerance: DEFAULT_ACCURACY_TOLERANCE,
        epochs: None,
    };
    compare(&options).unwrap()
}

/// What a comparison of the two `metrics.json` alone would decide: the claimed accuracies
/// within the tolerance.
fn metrics_alone_agree(a: &Path, b: &Path) -> bool {
    (metrics(a).held_out_accuracy - metrics(b).held_out_accuracy).abs() <= DEFAULT_ACCURACY_TOLERANCE
}

/// Asserts the comparator refuses `forged` (as result B) for `reason`, while the claims alone pass.
fn assert_caught(forged: &Path, reason: Reason) {
    let (one, _) = honest();
    assert!(metrics_alone_agree(one, forged), "the claims alone would already catch this one");
    let comparison = run(one, forged);
    assert!(!comparison.agree);
    assert_eq!(comparison.failures.len(), 1, "{:?}", comparison.failures);
    assert_eq!(
        (comparison.failures[0].result, comparison.failures[0].reason),
        ("b", reason),
        "{:?}",
        comparison.failures
    );
}

#[test]
fn two_honest_runs_agree() {
    let (one, two) = honest();
    let comparison = run(one, two);
    assert!(comparison.agree, "{:?}", comparison.failures);
    assert_eq!((comparison.train_rows, comparison.held_out_rows), (1438, 359));
    let recomputed = comparison.a.recomputed.unwrap();
    // Trained and checked by the same build: the recomputation is the claim, bit for bit.
    assert_eq!(recomputed.held_out_accuracy, metrics(one).held_out_accuracy);
    assert_eq!(recomputed.held_out_loss, metrics(one).held_out_loss);
    assert_eq!(recomputed.train_loss, metrics(one).train_loss);
    assert!(comparison.accuracy_gap.unwrap() <= DEFAULT_ACCURACY_TOLERANCE);
}

#[test]
fn fabricated_accuracy_is_caught() {
    let (one, _) = honest();
    let mut claims = metrics(one);
    claims.held_out_accuracy += 0.01;
    assert_caught(&forge("raised", one, &claims), Reason::ClaimedAccuracyMismatch);
}

#[test]
fn one_epoch_weights_claiming_the_full_runs_metrics_are_caught() {
    let (one, _) = honest();
    let short = train("one-epoch", 1, 1);
    assert_caught(&forge("one-epoch-claiming-30", &short, &metrics(one)), Reason::ClaimedAccuracyMismatch);
}

#[test]
fn another_runs_weights_under_swapped_metrics_are_caught() {
    let (one, two) = honest();
    assert_caught(&forge("swapped", two, &metrics(one)), Reason::ClaimedAccuracyMismatch);
    // Two runs often score the same count of held-out rows; then the loss gives the swap away.
    let (same_count, _) = (3..40)
        .map(|seed| (train(&format!("seed-{seed}"), seed, 30), seed))
        .find(|(dir, _)| metrics(dir).held_out_accuracy == metrics(one).held_out_accuracy)
        .expect("some seed scores as many rows as seed 1");
    assert_caught(&forge("swapped-same-count", &same_count, &metrics(one)), Reason::ClaimedLossMismatch);
}

#[test]
fn random_weights_are_caught() {
    let (one, _) = honest();
    let dir = scratch_dir("random");
    format::write_model(&dir, &Mlp::init(32, &mut ChaCha8Rng::seed_from_u64(99))).unwrap();
    format::write_metrics(&dir, &metrics(one)).unwrap();
    assert_caught(&dir, Reason::ClaimedAccuracyMismatch);
    let recomputed = run(one, &dir).b.recomputed.unwrap();
    assert!(recomputed.held_out_accuracy < 0.3, "{recomputed:?}");
}

#[test]
fn an_honest_but_worse_result_is_caught_by_the_gap_or_its_epochs() {
    let (one, two) = honest();
    let short = train("honest-short", 2, 1);
    let comparison = run(one, &short);
    assert_eq!(comparison.failures[0].reason, Reason::EpochsMismatch);
    // Told nothing about epochs and holding the same count, only the accuracy gap is left.
    let mut claims = metrics(&short);
    claims.epochs = 30;
    let comparison = run(one, &forge("short-claiming-30-epochs", &short, &claims));
    assert_eq!((comparison.failures[0].result, comparison.failures[0].reason), ("both", Reason::AccuracyGap));
    // And a tolerance tighter than two honest runs' difference refuses them too.
    let options = Options { data: digits(), a: one.clone(), b: two.clone(), accuracy_tolerance: 0.001, epochs: None };
    assert_eq!(compare(&options).unwrap().failures[0].reason, Reason::AccuracyGap);
    let options = Options { accuracy_tolerance: DEFAULT_ACCURACY_TOLERANCE, epochs: Some(31), ..options };
    let failures = compare(&options).unwrap().failures;
    assert_eq!(
        failures.iter().map(|f| (f.result, f.reason)).collect::<Vec<_>>(),
        [("a", Reason::EpochsMismatch), ("b", Reason::EpochsMismatch)]
    );
}

#[test]
fn an_honest_result_of_another_configuration_is_not_this_jobs() {
    let (one, _) = honest();
    let mut claims = metrics(one);
    claims.learning_rate = 0.05;
    let comparison = run(one, &forge("other-learning-rate", one, &claims));
    let reasons: Vec<_> = comparison.failures.iter().map(|f| (f.result, f.reason)).collect();
    assert_eq!(reasons, [("both", Reason::SettingsMismatch)], "{comparison:?}");
}

#[test]
fn missing_and_malformed_files_are_named() {
    let (one, _) = honest();
    let no_metrics = forge("no-metrics", one, &metrics(one));
    fs::remove_file(no_metrics.join(format::METRICS_FILE)).unwrap();
    assert_eq!(run(one, &no_metrics).failures[0].reason, Reason::MissingMetrics);

    let truncated = forge("truncated", one, &metrics(one));
    let weights = fs::read(one.join(format::WEIGHTS_FILE)).unwrap();
    fs::write(truncated.join(format::WEIGHTS_FILE), &weights[..weights.len() - 8]).unwrap();
    assert_eq!(run(one, &truncated).failures[0].reason, Reason::MalformedWeights);

    let nan = forge("nan", one, &metrics(one));
    let mut poisoned = weights.clone();
    poisoned[..8].copy_from_slice(&f64::NAN.to_le_bytes());
    fs::write(nan.join(format::WEIGHTS_FILE), poisoned).unwrap();
    assert_eq!(run(one, &nan).failures[0].reason, Reason::MalformedWeights);

    let no_weights = forge("no-weights", one, &metrics(one));
    fs::remove_file(no_weights.join(format::WEIGHTS_FILE)).unwrap();
    assert_eq!(run(&no_weights, one).failures[0].result, "a");
    assert_eq!(run(&no_weights, one).failures[0].reason, Reason::MissingWeights);

    let garbled = forge("garbled", one, &metrics(one));
    fs::write(garbled.join(format::METRICS_FILE), "{\"held_out_accuracy\": 1.0}").unwrap();
    assert_eq!(run(one, &garbled).failures[0].reason, Reason::MalformedMetrics);

    let options = |data: PathBuf, b: PathBuf| Options {
        data,
        a: one.clone(),
        b,
        accuracy_tolerance: DEFAULT_ACCURACY_TOLERANCE,
        epochs: None,
    };
    let missing_data = compare(&options(PathBuf::from("/nonexistent"), one.clone()));
    assert!(matches!(missing_data, Err(CannotCompare::Data(_))), "{missing_data:?}");
    let missing_result = compare(&options(digits(), PathBuf::from("/nonexistent")));
    assert!(matches!(missing_result, Err(CannotCompare::MissingResult { name: "b", .. })), "{missing_result:?}");
}

#[test]
fn the_binary_exits_0_1_or_2_with_one_json_line() {
    let (one, two) = honest();
    let forged = {
        let mut claims = metrics(one);
        claims.held_out_accuracy = 1.0;
        forge("binary-raised", one, &claims)
    };
    let outputs = scratch_dir("binary-out");
    let run = |b: &Path| {
        let paths = [digits(), one.clone(), b.to_path_buf(), outputs.clone()];
        let output = Command::new(env!("CARGO_BIN_EXE_ml-compare")).args(&paths).output().unwrap();
        let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (output.status.code(), line)
    };
    let (code, line) = run(two);
    assert_eq!((code, &line["agree"]), (Some(0), &serde_json::json!(true)), "{line}");
    let written: serde_json::Value =
        serde_json::from_slice(&fs::read(outputs.join("comparison.json")).unwrap()).unwrap();
    assert_eq!(written["agree"], true);
    assert_eq!(written["a"]["recomputed"]["held_out_accuracy"], metrics(one).held_out_accuracy);

    let (code, line) = run(&forged);
    assert_eq!(code, Some(1), "{line}");
    assert_eq!((line["result"].as_str(), line["reason"].as_str()), (Some("b"), Some("claimed_accuracy_mismatch")));

    let (code, line) = run(Path::new("/nonexistent"));
    assert_eq!((code, line["reason"].as_str()), (Some(2), Some("missing_result")));
}
