//! The classifier: 64 inputs → `hidden` ReLU units → 10 softmax outputs, trained by mini-batch
//! stochastic gradient descent on the mean cross-entropy.
//!
//! Everything runs in one thread in a fixed order, so given the generator's seed the weights are
//! the same bits on every run of the same build. (Natively and in wasm they may differ in the last
//! bits: `exp` and `ln` come from the platform's libm.)

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Example, CLASSES, FEATURES};

/// A one-hidden-layer perceptron. Matrices are row-major, one row per output unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// Hidden units.
    pub hidden: usize,
    /// Input → hidden weights, `hidden × FEATURES`.
    pub w1: Vec<f64>,
    /// Hidden biases, `hidden`.
    pub b1: Vec<f64>,
    /// Hidden → output weights, `CLASSES × hidden`.
    pub w2: Vec<f64>,
    /// Output biases, `CLASSES`.
    pub b2: Vec<f64>,
}

/// How training runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training rows.
    pub epochs: u32,
    /// The step size of gradient descent.
    pub learning_rate: f64,
    /// Rows per gradient step.
    pub batch_size: usize,
    /// Hidden units.
    pub hidden: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { epochs: 30, learning_rate: 0.1, batch_size: 16, hidden: 32 }
    }
}

/// Accuracy and mean cross-entropy of a model on some rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Rows whose most probable digit (the first one on a tie) is their label.
    pub correct: usize,
    /// Rows evaluated.
    pub rows: usize,
    /// Mean cross-entropy, in nats.
    pub loss: f64,
}

impl Evaluation {
    /// `correct / rows`.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.rows as f64
    }
}

/// A model's intermediate values for one row, reused across rows.
struct Activations {
    hidden_pre: Vec<f64>,
    hidden: Vec<f64>,
    logits: [f64; CLASSES],
}

impl Mlp {
    /// Random initial weights: He-uniform for the ReLU layer, Glorot-uniform for the output
    /// layer, zero biases.
    pub fn init(hidden: usize, rng: &mut ChaCha8Rng) -> Self {
        let he = (6.0 / FEATURES as f64).sqrt();
        let glorot = (6.0 / (hidden + CLASSES) as f64).sqrt();
        Self {
            hidden,
            w1: (0..hidden * FEATURES).map(|_| rng.random_range(-he..he)).collect(),
            b1: vec![0.0; hidden],
            w2: (0..CLASSES * hidden).map(|_| rng.random_range(-glorot..glorot)).collect(),
            b2: vec![0.0; CLASSES],
        }
    }

    /// The model's name in `metrics.json` and `model.json`: `mlp-64-<hidden>-10`.
    pub fn name(&self) -> String {
        format!("mlp-{FEATURES}-{}-{CLASSES}", self.hidden)
    }

    fn activations(&self) -> Activations {
        Activations { hidden_pre: vec![0.0; self.hidden], hidden: vec![0.0; self.hidden], logits: [0.0; CLASSES] }
    }

    fn forward(&self, pixels: &[f64; FEATURES], act: &mut Activations) {
        for (j, row) in self.w1.chunks_exact(FEATURES).enumerate() {
            let pre = self.b1[j] + dot(row, pixels);
            act.hidden_pre[j] = pre;
            act.hidden[j] = pre.max(0.0);
        }
        for (k, row) in self.w2.chunks_exact(self.hidden).enumerate() {
            act.logits[k] = self.b2[k] + dot(row, &act.hidden);
        }
    }

    /// Accuracy and mean cross-entropy on `examples`.
    pub fn evaluate(&self, examples: &[Example]) -> Evaluation {
        let mut act = self.activations();
        let (mut correct, mut total_loss) = (0, 0.0);
        for example in examples {
            self.forward(&example.pixels, &mut act);
            let predicted = (1..CLASSES).fold(0, |best, k| if act.logits[k] > act.logits[best] { k } else { best });
            correct += usize::from(predicted == example.label);
            total_loss += log_sum_exp(&act.logits) - act.logits[example.label];
        }
        Evaluation { correct, rows: examples.len(), loss: total_loss / examples.len() as f64 }
    }
}

/// Trains a fresh model on `train`: initial weights, then each epoch's row order, drawn from `rng`.
pub fn train(train: &[Example], config: &TrainConfig, rng: &mut ChaCha8Rng) -> Mlp {
    let mut model = Mlp::init(config.hidden, rng);
    let mut gradient = Mlp {
        hidden: config.hidden,
        w1: vec![0.0; model.w1.len()],
        b1: vec![0.0; model.b1.len()],
        w2: vec![0.0; model.w2.len()],
        b2: vec![0.0; model.b2.len()],
    };
    let mut act = model.activations();
    let mut hidden_delta = vec![0.0; config.hidden];
    let mut order: Vec<usize> = (0..train.len()).collect();
    for _ in 0..config.epochs {
        order.shuffle(rng);
        for batch in order.chunks(config.batch_size.max(1)) {
            for grad in [&mut gradient.w1, &mut gradient.b1, &mut gradient.w2, &mut gradient.b2] {
                grad.fill(0.0);
            }
            for &index in batch {
                let example = &train[index];
                model.forward(&example.pixels, &mut act);
                // d(cross-entropy)/d(logit k) = softmax_k − [k = label].
                let lse = log_sum_exp(&act.logits);
                let mut out_delta = [0.0; CLASSES];
                for (k, delta) in out_delta.iter_mut().enumerate() {
                    *delta = (act.logits[k] - lse).exp() - if k == example.label { 1.0 } else { 0.0 };
                }
                hidden_delta.fill(0.0);
                for (k, &delta) in out_delta.iter().enumerate() {
                    gradient.b2[k] += delta;
                    let row = k * config.hidden..(k + 1) * config.hidden;
                    for ((g, w), (h, hd)) in gradient.w2[row.clone()]
                        .iter_mut()
                        .zip(&model.w2[row])
                        .zip(act.hidden.iter().zip(hidden_delta.iter_mut()))
                    {
                        *g += delta * h;
                        *hd += delta * w;
                    }
                }
                for (j, hd) in hidden_delta.iter().enumerate() {
                    if act.hidden_pre[j] <= 0.0 {
                        continue;
                    }
                    gradient.b1[j] += hd;
                    for (g, x) in gradient.w1[j * FEATURES..(j + 1) * FEATURES].iter_mut().zip(&example.pixels) {
                        *g += hd * x;
                    }
                }
            }
            let step = config.learning_rate / batch.len() as f64;
            for (weights, grad) in [
                (&mut model.w1, &gradient.w1),
                (&mut model.b1, &gradient.b1),
                (&mut model.w2, &gradient.w2),
                (&mut model.b2, &gradient.b2),
            ] {
                for (w, g) in weights.iter_mut().zip(grad) {
                    *w -= step * g;
                }
            }
        }
    }
    model
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// ln Σ exp(z), shifted by the maximum so no term overflows.
fn log_sum_exp(logits: &[f64; CLASSES]) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + logits.iter().map(|z| (z - max).exp()).sum::<f64>().ln()
}
