//! The lies that fit the ML training job (`programs/ml-train`): results in its own format
//! (`model.json`, `weights.bin`, `metrics.json`, format `shoal-ml-mlp/1`) that look like a
//! training run's but are not what the job asked for. Each forged output directory is imported
//! into the worker's block store as the executor imports outputs, so its CID is real and its
//! files can be read by anyone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::FsBlockStore;
use shoal_jobs::{now_ms, ContentId, ExecutionResult, Failure, FailureReason, Job, JobSpec};
use shoal_worker::Executor;

use super::{digest_u64, AdversaryKind};

/// ml-train's defaults (its README): what a job that does not name them asks for.
const DEFAULT_EPOCHS: u32 = 30;
const DEFAULT_HIDDEN: usize = 32;
const DEFAULT_LEARNING_RATE: f64 = 0.1;
const DEFAULT_BATCH_SIZE: usize = 16;
/// The digits split: every 5th of 1,797 rows held out.
const TRAIN_ROWS: usize = 1438;
const HELD_OUT_ROWS: usize = 359;
const FEATURES: usize = 64;
const CLASSES: usize = 10;
/// The files of a result, as ml-train names them.
const MODEL_FILE: &str = "model.json";
const WEIGHTS_FILE: &str = "weights.bin";
const METRICS_FILE: &str = "metrics.json";
/// The most bytes of a result file read back (weights of 32 hidden units are 19,280 bytes).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// `model.json`, field for field and in ml-train's order, so a forged one reads the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: String,
    model: String,
    inputs: usize,
    hidden: usize,
    classes: usize,
    activation: String,
    input_scale: f64,
    dtype: String,
    tensors: Vec<Tensor>,
}

/// One tensor's entry in `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tensor {
    name: String,
    shape: Vec<usize>,
}

/// `metrics.json`, field for field and in ml-train's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Metrics {
    model: String,
    held_out_accuracy: f64,
    held_out_loss: f64,
    train_loss: f64,
    epochs: u32,
    train_rows: usize,
    held_out_rows: usize,
    learning_rate: f64,
    batch_size: usize,
    seed: u64,
    seed_source: String,
}

impl Metrics {
    /// The line ml-train prints when it is done, so that a forged result's stdout tells the same
    /// story as its `metrics.json`.
    fn stdout_line(&self) -> String {
        format!(
            "ml-train: {} after {} epochs (seed {} from {}): held-out accuracy {:.4} over {} rows, held-out loss \
             {:.4}, train loss {:.4}\n",
            self.model,
            self.epochs,
            self.seed,
            self.seed_source,
            self.held_out_accuracy,
            self.held_out_rows,
            self.held_out_loss,
            self.train_loss
        )
    }
}

/// The value of option `flag` in a job's arguments (`--epochs 30`), if given.
fn asked<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1)).map(String::as_str)
}

/// `args` with option `flag` set to `value`, replacing it if present.
fn with_option(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = args.to_vec();
    match args.iter().position(|arg| arg == flag) {
        Some(at) if at + 1 < args.len() => args[at + 1] = value.to_string(),
        _ => args.splice(0..0, [flag.to_string(), value.to_string()]).for_each(drop),
    }
    args
}

/// A small generator for the forgeries' numbers (no cryptographic quality needed: the numbers
/// only have to look like a run's), seeded per job.
struct SplitMix(u64);

impl SplitMix {
    fn for_job(job: &Job) -> SplitMix {
        SplitMix(digest_u64(format!("{} {}", job.id, now_ms()).as_bytes()))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Why a forgery could not be made: the execution then fails as the worker's own fault, so the
/// harness sees a failed job rather than an honest result counted as a lie that got through.
fn forging_failed(message: String) -> Failure {
    Failure {
        reason: FailureReason::Internal,
        message: format!("forging: {message}"),
        stderr: None,
        fuel_consumed: None,
    }
}

/// The failure of an ML adversary built without [`super::Adversary::forging_into`]: it has
/// nowhere to import its forgeries.
pub(super) fn unprepared(kind: AdversaryKind) -> Failure {
    forging_failed(format!("the {} adversary was given no block store to forge into", kind.name()))
}

/// The ML adversaries' means: the worker's block store (to import forged outputs into) and the
/// stolen-weights cache.
pub(super) struct MlForger {
    store: FsBlockStore,
    /// Fabricated metrics' raise of the claimed accuracy; `None`: drawn per job.
    raise: Option<f64>,
    /// Stolen weights' results by program and inputs (arguments ignored).
    by_program_and_inputs: Mutex<HashMap<String, ExecutionResult>>,
}

impl MlForger {
    /// Forges into the block store at `store_dir` (the worker's); fabricated metrics raise the
    /// claimed accuracy by `raise`, or by 0.02–0.05 drawn per job.
    pub(super) fn open(store_dir: &Path, raise: Option<f64>) -> Result<MlForger, String> {
        let store = FsBlockStore::open(store_dir).map_err(|e| format!("opening {}: {e}", store_dir.display()))?;
        Ok(MlForger { store, raise, by_program_and_inputs: Mutex::new(HashMap::new()) })
    }

    /// The result `kind` (an ML kind) reports for `job`.
    pub(super) async fn result(
        &self,
        executor: &Executor,
        kind: AdversaryKind,
        job: &Job,
        execution_id: &str,
    ) -> Result<ExecutionResult, Failure> {
        match kind {
            AdversaryKind::FabricatedMetrics => {
                let result = executor.run_spec(&job.spec, execution_id).await?;
                let raise = self.raise.unwrap_or_else(|| SplitMix::for_job(job).uniform(0.02, 0.05));
                self.rewrite_metrics(executor, result, |m| m.held_out_accuracy = (m.held_out_accuracy + raise).min(1.0))
                    .await
            }
            AdversaryKind::FewEpochs => {
                let epochs = asked(&job.spec.args, "--epochs").and_then(|e| e.parse().ok()).unwrap_or(DEFAULT_EPOCHS);
                let one_epoch = JobSpec { args: with_option(&job.spec.args, "--epochs", "1"), ..job.spec.clone() };
                let result = executor.run_spec(&one_epoch, execution_id).await?;
                self.rewrite_metrics(executor, result, |m| m.epochs = epochs).await
            }
            AdversaryKind::StolenWeights => {
                let key = format!(
                    "{} {}",
                    job.spec.program,
                    serde_json::to_string(&job.spec.inputs).expect("input specs serialise")
                );
                let cached = self.by_program_and_inputs.lock().expect("never poisoned").get(&key).cloned();
                match cached {
                    Some(stolen) => Ok(stolen),
                    None => {
                        let result = executor.run_spec(&job.spec, execution_id).await?;
                        self.by_program_and_inputs.lock().expect("never poisoned").insert(key, result.clone());
                        Ok(result)
                    }
                }
            }
            AdversaryKind::RandomWeights => self.random_weights(job).await,
            other => Err(forging_failed(format!("{} is not an ML adversary", other.name()))),
        }
    }

    /// `result` with its `metrics.json` changed by `change` (and its stdout to match), the
    /// output re-imported; a result that did not exit 0 is left alone.
    async fn rewrite_metrics(
        &self,
        executor: &Executor,
        mut result: ExecutionResult,
        change: impl FnOnce(&mut Metrics),
    ) -> Result<ExecutionResult, Failure> {
        if result.exit_code != 0 {
            return Ok(result);
        }
        let read = |file: &'static str| executor.read_output(&result.output, file, MAX_FILE_BYTES);
        let (model, weights, metrics) = (read(MODEL_FILE).await, read(WEIGHTS_FILE).await, read(METRICS_FILE).await);
        let (model, weights, metrics) =
            (model.map_err(forging_failed)?, weights.map_err(forging_failed)?, metrics.map_err(forging_failed)?);
        let mut metrics: Metrics =
            serde_json::from_slice(&metrics).map_err(|e| forging_failed(format!("reading {METRICS_FILE}: {e}")))?;
        change(&mut metrics);
        result.output = self.import_result(&model, &weights, &metrics).await?;
        result.stdout = self.import_bytes(metrics.stdout_line().as_bytes()).await?;
        Ok(result)
    }

    /// A result of random weights, without running anything: the shape the job asked for
    /// (`--hidden`), each weight drawn from ml-train's initial range, and a `metrics.json` with
    /// the figures of a good run — 341 to 347 of the 359 held-out rows right (0.950 to 0.967).
    async fn random_weights(&self, job: &Job) -> Result<ExecutionResult, Failure> {
        let args = &job.spec.args;
        let hidden = asked(args, "--hidden").and_then(|h| h.parse().ok()).unwrap_or(DEFAULT_HIDDEN);
        let mut draw = SplitMix::for_job(job);
        let header = header(hidden);
        // Per tensor, ml-train's initial ranges: He for the first layer, Glorot for the second.
        let (first, second) = ((6.0 / FEATURES as f64).sqrt(), (6.0 / (hidden + CLASSES) as f64).sqrt());
        let mut weights = Vec::new();
        for (tensor, range) in header.tensors.iter().zip([first, first, second, second]) {
            for _ in 0..tensor.shape.iter().product::<usize>() {
                weights.extend_from_slice(&draw.uniform(-range, range).to_le_bytes());
            }
        }
        let metrics = Metrics {
            model: header.model.clone(),
            held_out_accuracy: (341 + draw.next_u64() % 7) as f64 / HELD_OUT_ROWS as f64,
            held_out_loss: draw.uniform(0.09, 0.13),
            train_loss: draw.uniform(0.03, 0.05),
            epochs: asked(args, "--epochs").and_then(|e| e.parse().ok()).unwrap_or(DEFAULT_EPOCHS),
            train_rows: TRAIN_ROWS,
            held_out_rows: HELD_OUT_ROWS,
            learning_rate: asked(args, "--learning-rate").and_then(|r| r.parse().ok()).unwrap_or(DEFAULT_LEARNING_RATE),
            batch_size: asked(args, "--batch-size").and_then(|b| b.parse().ok()).unwrap_or(DEFAULT_BATCH_SIZE),
            seed: draw.next_u64(),
            seed_source: "host".into(),
        };
        let model = pretty(&header);
        Ok(ExecutionResult {
            exit_code: 0,
            output: self.import_result(&model, &weights, &metrics).await?,
            stdout: self.import_bytes(metrics.stdout_line().as_bytes()).await?,
            stderr: self.import_bytes(b"").await?,
            // About what a real run of the default configuration reports (ml-train's README).
            fuel_consumed: 4_550_000_000 + draw.next_u64() % 50_000_000,
            fetch_ms: 0,
            run_ms: 900 + draw.next_u64() % 200,
            inputs_cached: 1,
        })
    }

    /// Writes a result directory and imports it as the executor imports outputs.
    async fn import_result(&self, model: &[u8], weights: &[u8], metrics: &Metrics) -> Result<ContentId, Failure> {
        let dir = tempfile::tempdir().map_err(|e| forging_failed(format!("a scratch directory: {e}")))?;
        for (file, bytes) in [(MODEL_FILE, model), (WEIGHTS_FILE, weights), (METRICS_FILE, &pretty(metrics))] {
            std::fs::write(dir.path().join(file), bytes).map_err(|e| forging_failed(format!("writing {file}: {e}")))?;
        }
        let options = ImportOptions { include_hidden: true, ..ImportOptions::default() };
        let imported = unixfs::import_path(dir.path(), &options, &self.store)
            .await
            .map_err(|e| forging_failed(format!("importing the result: {e}")))?;
        Ok(ContentId(imported.root))
    }

    /// Imports `bytes` as the executor imports a run's stdout and stderr.
    async fn import_bytes(&self, bytes: &[u8]) -> Result<ContentId, Failure> {
        let imported = unixfs::import_reader(bytes, &ImportOptions::default(), &self.store)
            .await
            .map_err(|e| forging_failed(format!("importing a log: {e}")))?;
        Ok(ContentId(imported.root))
    }
}

/// The `model.json` ml-train writes for `hidden` hidden units.
fn header(hidden: usize) -> Header {
    let tensor = |name: &str, shape: &[usize]| Tensor { name: name.into(), shape: shape.to_vec() };
    Header {
        format: "shoal-ml-mlp/1".into(),
        model: format!("mlp-{FEATURES}-{hidden}-{CLASSES}"),
        inputs: FEATURES,
        hidden,
        classes: CLASSES,
        activation: "relu".into(),
        input_scale: 1.0 / 16.0,
        dtype: "f64le".into(),
        tensors: vec![
            tensor("w1", &[hidden, FEATURES]),
            tensor("b1", &[hidden]),
            tensor("w2", &[CLASSES, hidden]),
            tensor("b2", &[CLASSES]),
        ],
    }
}

/// Pretty JSON and a newline, as ml-train writes its files.
fn pretty(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("plain structs serialise");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options_are_read_and_replaced_where_the_job_gives_them() {
        let given = args(&["--hidden", "16", "--epochs", "30"]);
        assert_eq!(asked(&given, "--epochs"), Some("30"));
        assert_eq!(asked(&given, "--seed"), None);
        assert_eq!(with_option(&given, "--epochs", "1"), args(&["--hidden", "16", "--epochs", "1"]));
        assert_eq!(with_option(&args(&["/data"]), "--epochs", "1"), args(&["--epochs", "1", "/data"]));
    }

    #[test]
    fn a_forged_header_has_the_shapes_of_the_weights_drawn_for_it() {
        let header = header(32);
        let count: usize = header.tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
        // ml-train's README: 19,280 bytes of weights for 32 hidden units.
        assert_eq!(count * 8, 19_280);
        assert_eq!(header.model, "mlp-64-32-10");
    }
}
