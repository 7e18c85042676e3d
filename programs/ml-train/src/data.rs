//! The handwritten digits CSV and its fixed held-out split.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;

/// Pixels per image: 8 × 8 counts of "on" pixels in 4 × 4 blocks, each 0–16.
pub const FEATURES: usize = 64;
/// Digits 0–9.
pub const CLASSES: usize = 10;
/// The largest pixel value; features are scaled by its inverse into [0, 1].
pub const MAX_PIXEL: u8 = 16;
/// Every `HOLD_OUT_EVERY`-th data row (1-based: rows 5, 10, …; 0-based index `i % 5 == 4`) is
/// held out. The split depends on row order alone, never on randomness, so every run and every
/// comparator evaluates the same rows.
pub const HOLD_OUT_EVERY: usize = 5;
/// The file name looked for when the data path is a directory.
pub const DATA_FILE: &str = "digits.csv";

/// One image: its scaled pixels and its digit.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Pixel counts divided by [`MAX_PIXEL`], row-major.
    pub pixels: [f64; FEATURES],
    /// The digit drawn, 0–9.
    pub label: usize,
}

/// The data set split into training and held-out rows, each in file order.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The rows trained on.
    pub train: Vec<Example>,
    /// The rows accuracy is measured on.
    pub held_out: Vec<Example>,
}

/// `path` itself, or `path/digits.csv` when `path` is a directory (a job mounts one at /inputs).
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(DATA_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Reads and splits the CSV at `path` (a file or a directory holding `digits.csv`).
pub fn load(path: &Path) -> Result<Dataset, Error> {
    let file = resolve(path);
    let text = fs::read_to_string(&file).map_err(|source| Error::Io { path: file.clone(), source })?;
    parse(&text)
}

/// Parses rows of 64 pixel counts (0–16) and a label (0–9), comma-separated, no header, and
/// splits them: row `i` (0-based) is held out when `i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1`.
pub fn parse(text: &str) -> Result<Dataset, Error> {
    let mut dataset = Dataset { train: Vec::new(), held_out: Vec::new() };
    for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let bad = |message: String| Error::Data { line: index + 1, message };
        let fields: Vec<&str> = line.trim().split(',').collect();
        if fields.len() != FEATURES + 1 {
            return Err(bad(format!("{} fields, expected {}", fields.len(), FEATURES + 1)));
        }
        let mut pixels = [0.0; FEATURES];
        for (pixel, field) in pixels.iter_mut().zip(&fields) {
            let count: u8 = field.parse().map_err(|_| bad(format!("pixel {field:?} is not an integer")))?;
            if count > MAX_PIXEL {
                return Err(bad(format!("pixel {count} is above {MAX_PIXEL}")));
            }
            *pixel = f64::from(count) / f64::from(MAX_PIXEL);
        }
        let label: usize = fields[FEATURES]
            .parse()
            .ok()
            .filter(|label| *label < CLASSES)
            .ok_or_else(|| bad(format!("label {:?} is not a digit 0-9", fields[FEATURES])))?;
        let example = Example { pixels, label };
        let row = dataset.train.len() + dataset.held_out.len();
        if row % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 {
            dataset.held_out.push(example);
        } else {
            dataset.train.push(example);
        }
    }
    if dataset.train.is_empty() || dataset.held_out.is_empty() {
        return Err(Error::Data { line: 0, message: "too few rows to train and hold out".into() });
    }
    Ok(dataset)
}
