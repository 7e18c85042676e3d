//! `ml-compare`: decides whether two `ml-train` results agree. Each result's claims
//! (`metrics.json`) are checked against figures recomputed from its own weights on the fixed
//! held-out split; then the two recomputed accuracies must lie within a tolerance of each other.
//! The contract (paths, exit codes, reasons) is in the crate's README.

use std::path::{Path, PathBuf};

use ml_train::data::{self, Dataset};
use ml_train::format::{self, Metrics};
use ml_train::Error;
use serde::Serialize;

/// A claimed accuracy may differ from the recomputed one by this much: both are a count divided
/// by the same row count, so an honest claim is equal, up to float printing at most.
pub const ACCURACY_EPSILON: f64 = 1e-6;
/// A claimed loss may differ from the recomputed one by this fraction of it: the same sums in the
/// same order give the same bits, but a result trained natively and checked in wasm (or the
/// reverse) sees another libm's `exp` and `ln`.
pub const LOSS_RELATIVE_EPSILON: f64 = 1e-4;
/// The default `--accuracy-tolerance`: 100 honest runs of the default configuration, each
/// against its own honest re-run (`docs/verification/`), scored 0.942–0.978 and differed by up to
/// 0.031 — so 0.03 falsely refused about one pair in a hundred; 1-epoch weights score 0.05 and more
/// below every honest run.
pub const DEFAULT_ACCURACY_TOLERANCE: f64 = 0.04;

/// One comparison.
#[derive(Debug, Clone)]
pub struct Options {
    /// The digits CSV, or a directory holding `digits.csv`.
    pub data: PathBuf,
    /// Result A's directory.
    pub a: PathBuf,
    /// Result B's directory.
    pub b: PathBuf,
    /// How far apart the two recomputed held-out accuracies may be.
    pub accuracy_tolerance: f64,
    /// The epochs both results must claim, when the caller knows the job's arguments.
    pub epochs: Option<u32>,
}

/// Why a result, or the pair, was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// `model.json` or `weights.bin` is absent.
    MissingWeights,
    /// `model.json` or `weights.bin` is not the format `ml-train` writes (or a weight is not finite).
    MalformedWeights,
    /// `metrics.json` is absent.
    MissingMetrics,
    /// `metrics.json` is not `ml-train`'s metrics, or a figure in it is not a finite number.
    MalformedMetrics,
    /// The claimed model is not the one the header describes.
    ClaimedModelMismatch,
    /// The claimed row counts are not the split's.
    ClaimedRowsMismatch,
    /// The claimed held-out accuracy is not what the weights achieve.
    ClaimedAccuracyMismatch,
    /// The claimed held-out loss is not what the weights give.
    ClaimedLossMismatch,
    /// The claimed training loss is not what the weights give.
    ClaimedTrainLossMismatch,
    /// The claimed epochs are not those asked for, or the two results claim different ones.
    EpochsMismatch,
    /// The two results are different models (hidden units), so not runs of the same job.
    ModelMismatch,
    /// The two results claim different training settings (learning rate, batch size): a result
    /// of another job.
    SettingsMismatch,
    /// Both results are self-consistent but their accuracies are further apart than allowed.
    AccuracyGap,
}

/// A refusal: which result (`a`, `b`, or `both` for the pair), why, and the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// `a`, `b` or `both`.
    pub result: &'static str,
    /// The reason's name.
    pub reason: Reason,
    /// The figures, for a person.
    pub detail: String,
}

/// Figures recomputed from a result's weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Recomputed {
    /// Correct held-out rows.
    pub held_out_correct: usize,
    /// `held_out_correct / held_out_rows`.
    pub held_out_accuracy: f64,
    /// Mean held-out cross-entropy.
    pub held_out_loss: f64,
    /// Mean training cross-entropy.
    pub train_loss: f64,
}

/// What was found about one result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultReport {
    /// Its directory.
    pub path: String,
    /// Its `metrics.json`, when it could be read.
    pub claimed: Option<Metrics>,
    /// The figures of its weights, when they could be read.
    pub recomputed: Option<Recomputed>,
}

/// `comparison.json`: the verdict and every figure it rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// True when no failure was found.
    pub agree: bool,
    /// Every failure found, result A's first.
    pub failures: Vec<Failure>,
    /// The tolerance the accuracies were held to.
    pub accuracy_tolerance: f64,
    /// |A's recomputed accuracy − B's|, when both could be recomputed.
    pub accuracy_gap: Option<f64>,
    /// Rows trained on, per the split.
    pub train_rows: usize,
    /// Rows held out, per the split.
    pub held_out_rows: usize,
    /// Result A.
    pub a: ResultReport,
    /// Result B.
    pub b: ResultReport,
}

/// The comparator could not compare: its own inputs are missing or unreadable, so no result
/// can be blamed.
#[derive(Debug, thiserror::Error)]
pub enum CannotCompare {
    /// The training data is absent or not the digits CSV.
    #[error("training data: {0}")]
    Data(Error),
    /// A result's directory is not there.
    #[error("result {name} is not mounted: {} is not a directory", path.display())]
    MissingResult {
        /// `a` or `b`.
        name: &'static str,
        /// The directory looked for.
        path: PathBuf,
    },
}

impl CannotCompare {
    /// The reason's name in the JSON line: `missing_data` or `missing_result`.
    pub fn reason(&self) -> &'static str {
        match self {
            CannotCompare::Data(_) => "missing_data",
            CannotCompare::MissingResult { .. } => "missing_result",
        }
    }
}

/// Compares the two results `options` names.
pub fn compare(options: &Options) -> Result<Comparison, CannotCompare> {
    let dataset = data::load(&options.data).map_err(CannotCompare::Data)?;
    for (name, path) in [("a", &options.a), ("b", &options.b)] {
        if !path.is_dir() {
            return Err(CannotCompare::MissingResult { name, path: path.clone() });
        }
    }
    let mut failures = Vec::new();
    let a = check_result("a", &options.a, &dataset, options.epochs, &mut failures);
    let b = check_result("b", &options.b, &dataset, options.epochs, &mut failures);
    let accuracy_gap = match (&a.recomputed, &b.recomputed) {
        (Some(ra), Some(rb)) => Some((ra.held_out_accuracy - rb.held_out_accuracy).abs()),
        _ => None,
    };
    // The pair is judged only when each result stands on its own.
    if failures.is_empty() {
        let (ca, cb) = (a.claimed.as_ref().expect("checked"), b.claimed.as_ref().expect("checked"));
        // B is the verifier's run of the job as asked: a result of another configuration, however
        // honest, is not this job's.
        if ca.model != cb.model {
            failures.push(Failure {
                result: "both",
                reason: Reason::ModelMismatch,
                detail: format!("a is {}, b {}", ca.model, cb.model),
            });
        }
        if ca.epochs != cb.epochs {
            failures.push(Failure {
                result: "both",
                reason: Reason::EpochsMismatch,
                detail: format!("a claims {} epochs, b {}", ca.epochs, cb.epochs),
            });
        }
        if (ca.learning_rate, ca.batch_size) != (cb.learning_rate, cb.batch_size) {
            failures.push(Failure {
                result: "both",
                reason: Reason::SettingsMismatch,
                detail: format!(
                    "a claims learning rate {} and batches of {}, b {} and {}",
                    ca.learning_rate, ca.batch_size, cb.learning_rate, cb.batch_size
                ),
            });
        }
        let gap = accuracy_gap.expect("both recomputed");
        if gap.is_nan() || gap > options.accuracy_tolerance {
            failures.push(Failure {
                result: "both",
                reason: Reason::AccuracyGap,
                detail: format!(
                    "held-out accuracies {:.6} and {:.6} are {gap:.6} apart, more than {}",
                    a.recomputed.expect("checked").held_out_accuracy,
                    b.recomputed.expect("checked").held_out_accuracy,
                    options.accuracy_tolerance
                ),
            });
        }
    }
    Ok(Comparison {
        agree: failures.is_empty(),
        failures,
        accuracy_tolerance: options.accuracy_tolerance,
        accuracy_gap,
        train_rows: dataset.train.len(),
        held_out_rows: dataset.held_out.len(),
        a,
        b,
    })
}

/// Reads one result, recomputes its figures and adds a failure for the first claim that does not
/// hold (missing or malformed files first).
fn check_result(
    name: &'static str,
    dir: &Path,
    dataset: &Dataset,
    epochs: Option<u32>,
    failures: &mut Vec<Failure>,
) -> ResultReport {
    let mut report = ResultReport { path: dir.display().to_string(), claimed: None, recomputed: None };
    let model = format::read_model(dir);
    if let Ok(model) = &model {
        let held_out = model.evaluate(&dataset.held_out);
        report.recomputed = Some(Recomputed {
            held_out_correct: held_out.correct,
            held_out_accuracy: held_out.accuracy(),
            held_out_loss: held_out.loss,
            train_loss: model.evaluate(&dataset.train).loss,
        });
    }
    let claimed = format::read_metrics(dir);
    if let Ok(claimed) = &claimed {
        report.claimed = Some(claimed.clone());
    }
    let fail = |reason, detail: String| Failure { result: name, reason, detail };
    let failure = match (model, claimed) {
        (Err(e), _) => {
            Some(fail(missing_or_malformed(&e, Reason::MissingWeights, Reason::MalformedWeights), e.to_string()))
        }
        (_, Err(e)) => {
            Some(fail(missing_or_malformed(&e, Reason::MissingMetrics, Reason::MalformedMetrics), e.to_string()))
        }
        (Ok(model), Ok(claimed)) => {
            let recomputed = report.recomputed.expect("weights read");
            check_claims(&claimed, &model.name(), &recomputed, dataset, epochs)
                .map(|(reason, detail)| fail(reason, detail))
        }
    };
    failures.extend(failure);
    report
}

fn missing_or_malformed(error: &Error, missing: Reason, malformed: Reason) -> Reason {
    match error {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => missing,
        _ => malformed,
    }
}

/// The first claim of `claimed` that the recomputation (or the split, or the asked epochs) refutes.
fn check_claims(
    claimed: &Metrics,
    model: &str,
    recomputed: &Recomputed,
    dataset: &Dataset,
    epochs: Option<u32>,
) -> Option<(Reason, String)> {
    let figures = [claimed.held_out_accuracy, claimed.held_out_loss, claimed.train_loss];
    if figures.iter().any(|f| !f.is_finite()) {
        return Some((Reason::MalformedMetrics, format!("figures {figures:?} are not all finite numbers")));
    }
    if claimed.model != model {
        return Some((Reason::ClaimedModelMismatch, format!("claims {}, the weights are {model}", claimed.model)));
    }
    if (claimed.train_rows, claimed.held_out_rows) != (dataset.train.len(), dataset.held_out.len()) {
        return Some((
            Reason::ClaimedRowsMismatch,
            format!(
                "claims {} training and {} held-out rows, the split has {} and {}",
                claimed.train_rows,
                claimed.held_out_rows,
                dataset.train.len(),
                dataset.held_out.len()
            ),
        ));
    }
    if (claimed.held_out_accuracy - recomputed.held_out_accuracy).abs() > ACCURACY_EPSILON {
        return Some((
            Reason::ClaimedAccuracyMismatch,
            format!(
                "claims held-out accuracy {}, the weights achieve {} ({} of {} rows)",
                claimed.held_out_accuracy,
                recomputed.held_out_accuracy,
                recomputed.held_out_correct,
                dataset.held_out.len()
            ),
        ));
    }
    if !relatively_close(claimed.held_out_loss, recomputed.held_out_loss) {
        return Some((
            Reason::ClaimedLossMismatch,
            format!("claims held-out loss {}, the weights give {}", claimed.held_out_loss, recomputed.held_out_loss),
        ));
    }
    if !relatively_close(claimed.train_loss, recomputed.train_loss) {
        return Some((
            Reason::ClaimedTrainLossMismatch,
            format!("claims training loss {}, the weights give {}", claimed.train_loss, recomputed.train_loss),
        ));
    }
    match epochs {
        Some(expected) if claimed.epochs != expected => {
            Some((Reason::EpochsMismatch, format!("claims {} epochs, the job asked for {expected}", claimed.epochs)))
        }
        _ => None,
    }
}

fn relatively_close(claimed: f64, recomputed: f64) -> bool {
    (claimed - recomputed).abs() <= LOSS_RELATIVE_EPSILON * recomputed.abs()
}
