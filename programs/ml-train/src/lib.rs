//! `ml-train`: a one-hidden-layer perceptron trained on scikit-learn's copy of the UCI handwritten
//! digits, from random initial weights and a random row order each epoch, so two runs give
//! different weights (and nearly the same accuracy). The library also serves `ml-compare`, which
//! reads the weights back and recomputes the figures.

pub mod data;
pub mod format;
pub mod model;

use std::fs;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use format::Metrics;
pub use model::{Evaluation, Mlp, TrainConfig};

/// What can go wrong reading data or results, or writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The digits CSV is not 65 small integers a row.
    #[error("digits data, line {line}: {message}")]
    Data {
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A result file is not in the format `ml-train` writes.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The host gave no randomness.
    #[error("no host randomness: {0}")]
    Random(getrandom::Error),
}

/// One training run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The CSV, or a directory holding `digits.csv`.
    pub data: PathBuf,
    /// Where `model.json`, `weights.bin` and `metrics.json` go.
    pub outputs: PathBuf,
    /// Epochs, step size, batch and hidden size.
    pub config: TrainConfig,
    /// The generator's seed; `None` draws one from the host (WASI `random_get`).
    pub seed: Option<u64>,
}

/// Trains as `options` say and writes the model and `metrics.json` into `options.outputs`.
pub fn run(options: &Options) -> Result<Metrics, Error> {
    let dataset = data::load(&options.data)?;
    let (seed, seed_source) = match options.seed {
        Some(seed) => (seed, "argument"),
        None => (getrandom::u64().map_err(Error::Random)?, "host"),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let model = model::train(&dataset.train, &options.config, &mut rng);
    let train = model.evaluate(&dataset.train);
    let held_out = model.evaluate(&dataset.held_out);
    let metrics = Metrics {
        model: model.name(),
        held_out_accuracy: held_out.accuracy(),
        held_out_loss: held_out.loss,
        train_loss: train.loss,
        epochs: options.config.epochs,
        train_rows: train.rows,
        held_out_rows: held_out.rows,
        learning_rate: options.config.learning_rate,
        batch_size: options.config.batch_size,
        seed,
        seed_source: seed_source.into(),
    };
    create_dir(&options.outputs)?;
    format::write_model(&options.outputs, &model)?;
    format::write_metrics(&options.outputs, &metrics)?;
    Ok(metrics)
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })
}
