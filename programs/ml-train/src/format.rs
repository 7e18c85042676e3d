//! A result's files: `model.json` (what the weights are), `weights.bin` (the weights) and
//! `metrics.json` (what the run claims). The format is described in the crate's README.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::{CLASSES, FEATURES, MAX_PIXEL};
use crate::model::Mlp;
use crate::Error;

/// `model.json`'s `format`: the layout below, version 1.
pub const FORMAT: &str = "shoal-ml-mlp/1";
/// The header file's name.
pub const MODEL_FILE: &str = "model.json";
/// The weights file's name.
pub const WEIGHTS_FILE: &str = "weights.bin";
/// The claims file's name.
pub const METRICS_FILE: &str = "metrics.json";
/// The most hidden units a header may declare: far above any useful size, it bounds what a
/// hostile header can make a reader allocate.
pub const MAX_HIDDEN: usize = 4096;

/// `model.json`: the shapes of the tensors concatenated in `weights.bin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT`].
    pub format: String,
    /// `mlp-64-<hidden>-10`.
    pub model: String,
    /// Input features: 64.
    pub inputs: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Output classes: 10.
    pub classes: usize,
    /// The hidden layer's activation: `relu`.
    pub activation: String,
    /// What pixel counts are multiplied by before the first layer: 1/16.
    pub input_scale: f64,
    /// How each number is stored: `f64le`.
    pub dtype: String,
    /// The tensors in file order, each row-major.
    pub tensors: Vec<Tensor>,
}

/// One tensor in `weights.bin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// `w1`, `b1`, `w2` or `b2`.
    pub name: String,
    /// Its dimensions, outermost first.
    pub shape: Vec<usize>,
}

/// `metrics.json`: what a run reports about itself. The comparator recomputes the figures from
/// the weights; only `epochs` and the training parameters cannot be checked that way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The model's name, as in `model.json`.
    pub model: String,
    /// Correct held-out rows divided by held-out rows.
    pub held_out_accuracy: f64,
    /// Mean cross-entropy (nats) over the held-out rows.
    pub held_out_loss: f64,
    /// Mean cross-entropy (nats) over the training rows, after the last epoch.
    pub train_loss: f64,
    /// Passes over the training rows.
    pub epochs: u32,
    /// Rows trained on.
    pub train_rows: usize,
    /// Rows held out.
    pub held_out_rows: usize,
    /// Gradient descent's step size.
    pub learning_rate: f64,
    /// Rows per gradient step.
    pub batch_size: usize,
    /// The seed of the ChaCha8 generator that drew the initial weights and the shuffles.
    pub seed: u64,
    /// Where the seed came from: `argument` (`--seed`) or `host` (WASI randomness).
    pub seed_source: String,
}

fn tensors(hidden: usize) -> Vec<Tensor> {
    let tensor = |name: &str, shape: &[usize]| Tensor { name: name.into(), shape: shape.to_vec() };
    vec![
        tensor("w1", &[hidden, FEATURES]),
        tensor("b1", &[hidden]),
        tensor("w2", &[CLASSES, hidden]),
        tensor("b2", &[CLASSES]),
    ]
}

/// The header describing `model`.
pub fn header(model: &Mlp) -> Header {
    Header {
        format: FORMAT.into(),
        model: model.name(),
        inputs: FEATURES,
        hidden: model.hidden,
        classes: CLASSES,
        activation: "relu".into(),
        input_scale: 1.0 / f64::from(MAX_PIXEL),
        dtype: "f64le".into(),
        tensors: tensors(model.hidden),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    fs::write(path, bytes).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("plain structs serialise");
    bytes.push(b'\n');
    bytes
}

/// Writes `model.json` and `weights.bin` of `model` into `dir`.
pub fn write_model(dir: &Path, model: &Mlp) -> Result<(), Error> {
    write_file(&dir.join(MODEL_FILE), &json_bytes(&header(model)))?;
    let bytes: Vec<u8> =
        [&model.w1, &model.b1, &model.w2, &model.b2].into_iter().flatten().flat_map(|w| w.to_le_bytes()).collect();
    write_file(&dir.join(WEIGHTS_FILE), &bytes)
}

/// Writes `metrics.json` into `dir`.
pub fn write_metrics(dir: &Path, metrics: &Metrics) -> Result<(), Error> {
    write_file(&dir.join(METRICS_FILE), &json_bytes(metrics))
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Reads `metrics.json` from `dir`.
pub fn read_metrics(dir: &Path) -> Result<Metrics, Error> {
    let path = dir.join(METRICS_FILE);
    serde_json::from_slice(&read_file(&path)?).map_err(|e| Error::Format { path, message: e.to_string() })
}

/// Reads the model in `dir`, refusing a header other than the one [`write_model`] writes for its
/// hidden size, a `weights.bin` of the wrong length, and weights that are not finite numbers.
pub fn read_model(dir: &Path) -> Result<Mlp, Error> {
    let header_path = dir.join(MODEL_FILE);
    let bad = |path: &Path, message: String| Error::Format { path: path.to_path_buf(), message };
    let header: Header =
        serde_json::from_slice(&read_file(&header_path)?).map_err(|e| bad(&header_path, e.to_string()))?;
    if !(1..=MAX_HIDDEN).contains(&header.hidden) {
        return Err(bad(&header_path, format!("{} hidden units, expected 1 to {MAX_HIDDEN}", header.hidden)));
    }
    let mut model = Mlp { hidden: header.hidden, w1: Vec::new(), b1: Vec::new(), w2: Vec::new(), b2: Vec::new() };
    let expected = self::header(&model);
    if header != expected {
        return Err(bad(&header_path, format!("not the {FORMAT} header of a {} model", expected.model)));
    }
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = read_file(&weights_path)?;
    let sizes = expected.tensors.iter().map(|t| t.shape.iter().product::<usize>());
    let count: usize = sizes.clone().sum();
    if bytes.len() != count * 8 {
        return Err(bad(&weights_path, format!("{} bytes, expected {} ({count} f64)", bytes.len(), count * 8)));
    }
    let mut numbers = bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunks")));
    if let Some(position) = numbers.clone().position(|w| !w.is_finite()) {
        return Err(bad(&weights_path, format!("weight {position} is not a finite number")));
    }
    for (tensor, size) in [&mut model.w1, &mut model.b1, &mut model.w2, &mut model.b2].into_iter().zip(sizes) {
        tensor.extend(numbers.by_ref().take(size));
    }
    Ok(model)
}
