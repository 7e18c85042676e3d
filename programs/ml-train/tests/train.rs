//! ml-train on the real digits (`data/digits/digits.csv`, fetched by `scripts/fetch-data.sh`):
//! the split, the accuracy bar, different weights from different seeds, identical bytes from
//! the same seed, and the binary's arguments.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ml_train::{data, format, Options, TrainConfig};

/// The held-out accuracy every run of the default configuration must reach.
const ACCURACY_BAR: f64 = 0.93;

fn digits() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/digits/digits.csv");
    assert!(path.is_file(), "{} is missing: run scripts/fetch-data.sh first", path.display());
    path
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ml-train-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn train(seed: u64, name: &str) -> (ml_train::Metrics, PathBuf) {
    let outputs = scratch_dir(name);
    let options =
        Options { data: digits(), outputs: outputs.clone(), config: TrainConfig::default(), seed: Some(seed) };
    (ml_train::run(&options).unwrap(), outputs)
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    [format::MODEL_FILE, format::WEIGHTS_FILE, format::METRICS_FILE]
        .iter()
        .map(|f| fs::read(dir.join(f)).unwrap())
        .collect()
}

#[test]
fn every_fifth_row_is_held_out() {
    let dataset = data::load(&digits()).unwrap();
    assert_eq!((dataset.train.len(), dataset.held_out.len()), (1438, 359));
    // Row 5 of the file (index 4) is the first held out; its label is the CSV's last field.
    let text = fs::read_to_string(digits()).unwrap();
    let fifth_label: usize = text.lines().nth(4).unwrap().rsplit(',').next().unwrap().parse().unwrap();
    assert_eq!(dataset.held_out[0].label, fifth_label);
    // A directory holding digits.csv is read as the file.
    assert_eq!(data::load(digits().parent().unwrap()).unwrap().held_out.len(), 359);
}

#[test]
fn different_seeds_give_different_weights_and_both_reach_the_bar() {
    let (one, one_dir) = train(1, "seed1");
    let (two, two_dir) = train(2, "seed2");
    for metrics in [&one, &two] {
        assert!(metrics.held_out_accuracy >= ACCURACY_BAR, "{metrics:?}");
        assert_eq!((metrics.train_rows, metrics.held_out_rows, metrics.epochs), (1438, 359, 30));
        assert_eq!(metrics.model, "mlp-64-32-10");
        assert_eq!(metrics.seed_source, "argument");
    }
    assert_ne!(fs::read(one_dir.join("weights.bin")).unwrap(), fs::read(two_dir.join("weights.bin")).unwrap());
    // What is written is what was measured: the weights read back give the same figures.
    let dataset = data::load(&digits()).unwrap();
    let model = format::read_model(&one_dir).unwrap();
    assert_eq!(model.evaluate(&dataset.held_out).accuracy(), one.held_out_accuracy);
    assert_eq!(model.evaluate(&dataset.held_out).loss, one.held_out_loss);
    assert_eq!(format::read_metrics(&one_dir).unwrap(), one);
}

#[test]
fn the_same_seed_gives_identical_bytes() {
    let (_, first) = train(7, "same-a");
    let (_, second) = train(7, "same-b");
    assert_eq!(files(&first), files(&second));
}

#[test]
fn host_randomness_seeds_the_run_and_is_recorded() {
    let outputs = scratch_dir("host");
    let options =
        Options { data: digits(), outputs, config: TrainConfig { epochs: 2, ..TrainConfig::default() }, seed: None };
    let host = ml_train::run(&options).unwrap();
    assert_eq!(host.seed_source, "host");
    // The recorded seed reproduces the run.
    let again =
        ml_train::run(&Options { seed: Some(host.seed), outputs: scratch_dir("host-again"), ..options }).unwrap();
    assert_eq!(again.held_out_loss, host.held_out_loss);
}

#[test]
fn the_binary_takes_its_options_and_refuses_bad_ones() {
    let outputs = scratch_dir("binary");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_ml-train")).args(args).output().unwrap();
    let ok = run(&[
        "--epochs",
        "3",
        "--learning-rate",
        "0.05",
        "--seed",
        "5",
        digits().to_str().unwrap(),
        outputs.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let metrics = format::read_metrics(&outputs).unwrap();
    assert_eq!((metrics.epochs, metrics.learning_rate, metrics.seed), (3, 0.05, 5));
    assert_eq!(run(&["--epochs", "many"]).status.code(), Some(2));
    assert_eq!(run(&["--learning-rate", "-1"]).status.code(), Some(2));
    let missing = run(&["--seed", "1", "/nonexistent/digits.csv", outputs.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn malformed_rows_are_refused_with_their_line() {
    let row = |label: &str| format!("{}{label}\n", "0,".repeat(64));
    let error = data::parse(&format!("{}{}", row("3"), row("12"))).unwrap_err().to_string();
    assert!(error.contains("line 2") && error.contains("label"), "{error}");
    let error = data::parse("1,2,3\n").unwrap_err().to_string();
    assert!(error.contains("3 fields"), "{error}");
    let error = data::parse(&format!("17,{}", row("1").split_once(',').unwrap().1)).unwrap_err().to_string();
    assert!(error.contains("above 16"), "{error}");
}
