//! `cloud-detect`: cloud mask of a Landsat 8 scene.
//!
//! Reads a Level-1 scene directory, runs the simplified Fmask cascade of
//! [`cascade`] and writes `mask.png`, `preview.png` and `stats.json` (see
//! [`run`]). The cascade is scored against the cloud confidence that USGS
//! ships in the scene's own BQA band.

pub mod agreement;
pub mod cascade;

use std::fs;
use std::path::{Path, PathBuf};

use landsat::{encode_png, true_colour, Confidence, PngError, RasterKind, Scene, SceneError};
use serde::Serialize;

use crate::agreement::{agreement, Agreement};
use crate::cascade::{classify, Classification, SceneThresholds, Thresholds, FMASK};

/// Why the program failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudDetectError {
    /// The input is not a readable Landsat 8 scene.
    #[error(transparent)]
    Scene(#[from] SceneError),
    /// An output image could not be encoded.
    #[error("cannot encode {name}: {source}")]
    Png {
        /// Output file name.
        name: &'static str,
        /// Encoder error.
        source: PngError,
    },
    /// Statistics could not be serialised.
    #[error("cannot serialise stats.json: {0}")]
    Json(#[from] serde_json::Error),
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Pixel counts over the scene.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PixelCounts {
    /// Every pixel of the grid.
    pub total: u64,
    /// Pixels without data (excluded from everything below).
    pub fill: u64,
    /// Pixels that passed the potential-cloud tests of pass 1.
    pub potential_cloud: u64,
    /// Cloud pixels (white in `mask.png`).
    pub cloud: u64,
    /// Valid pixels that are not cloud (black in `mask.png`).
    pub clear: u64,
    /// Pixels of the separate cirrus layer.
    pub cirrus: u64,
}

/// Agreement with one layer of the BQA band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BqaComparison {
    /// What the reference is.
    pub reference: &'static str,
    /// Share of valid pixels the reference flags.
    pub reference_fraction: f64,
    /// The scores.
    #[serde(flatten)]
    pub agreement: Agreement,
}

/// Everything `stats.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// `LANDSAT_SCENE_ID` from the MTL file.
    pub scene_id: String,
    /// `DATE_ACQUIRED` from the MTL file.
    pub date_acquired: String,
    /// Grid width in pixels.
    pub width: usize,
    /// Grid height in pixels.
    pub height: usize,
    /// Cloud pixels over valid pixels.
    pub cloud_fraction: f64,
    /// Cirrus pixels over valid pixels.
    pub cirrus_fraction: f64,
    /// Pixel counts.
    pub pixels: PixelCounts,
    /// The cascade's fixed constants.
    pub thresholds: Thresholds,
    /// The cascade's scene-adaptive values (`null`: no clear land, so the
    /// potential-cloud mask was used as is).
    pub scene_thresholds: Option<SceneThresholds>,
    /// `mask.png` against BQA high-confidence cloud.
    pub bqa_cloud_agreement: BqaComparison,
    /// The cirrus layer against BQA high-confidence cirrus.
    pub bqa_cirrus_agreement: BqaComparison,
}

/// Loads the scene in `scene_dir`, classifies it with the published Fmask
/// constants and writes into `output_dir`:
/// - `mask.png`: 8-bit grey, scene size, cloud 255 and everything else 0;
/// - `preview.png`: the true-colour scene (left) beside the same scene with
///   cloud tinted red (right); the cirrus layer is only counted, because at
///   this scene's 46 % it would hide the picture;
/// - `stats.json`: [`Stats`], pretty-printed.
pub fn run(scene_dir: &Path, output_dir: &Path) -> Result<Stats, CloudDetectError> {
    let scene = Scene::open(scene_dir)?;
    let classification = classify(&scene, &FMASK);
    let stats = statistics(&scene, &classification, FMASK);

    let (width, height) = (scene.width(), scene.height());
    let mask: Vec<u8> = classification
        .cloud
        .iter()
        .map(|&c| if c { 255 } else { 0 })
        .collect();
    let mask_png = encode_png(width, height, RasterKind::Gray, &mask).map_err(|source| {
        CloudDetectError::Png {
            name: "mask.png",
            source,
        }
    })?;
    let preview = side_by_side_preview(&scene, &classification);
    let preview_png =
        encode_png(width * 2, height, RasterKind::Rgb, &preview).map_err(|source| {
            CloudDetectError::Png {
                name: "preview.png",
                source,
            }
        })?;
    let mut stats_json = serde_json::to_vec_pretty(&stats)?;
    stats_json.push(b'\n');

    fs::create_dir_all(output_dir).map_err(|source| CloudDetectError::Write {
        path: output_dir.to_owned(),
        source,
    })?;
    for (name, bytes) in [
        ("mask.png", &mask_png),
        ("preview.png", &preview_png),
        ("stats.json", &stats_json),
    ] {
        let path = output_dir.join(name);
        fs::write(&path, bytes).map_err(|source| CloudDetectError::Write { path, source })?;
    }
    Ok(stats)
}

/// Counts pixels and scores the classification against the BQA band.
pub fn statistics(scene: &Scene, classification: &Classification, thresholds: Thresholds) -> Stats {
    let pixels = scene.pixel_count();
    let count = |layer: &[bool]| {
        layer
            .iter()
            .zip(&classification.fill)
            .filter(|(&on, &fill)| on && !fill)
            .count() as u64
    };
    let fill = classification.fill.iter().filter(|&&f| f).count() as u64;
    let valid = pixels as u64 - fill;
    let cloud = count(&classification.cloud);
    let cirrus = count(&classification.cirrus);
    let fraction = |n: u64| {
        if valid == 0 {
            0.0
        } else {
            n as f64 / valid as f64
        }
    };

    let compare = |mask: &[bool],
                   reference_name: &'static str,
                   reference_of: fn(landsat::QualityFlags) -> Confidence| {
        let reference: Vec<bool> = (0..pixels)
            .map(|p| reference_of(scene.quality(p)) == Confidence::High)
            .collect();
        BqaComparison {
            reference: reference_name,
            reference_fraction: fraction(count(&reference)),
            agreement: agreement(mask, &reference, &classification.fill),
        }
    };
    Stats {
        scene_id: scene.metadata.scene_id.clone(),
        date_acquired: scene.metadata.date_acquired.clone(),
        width: scene.width(),
        height: scene.height(),
        cloud_fraction: fraction(cloud),
        cirrus_fraction: fraction(cirrus),
        pixels: PixelCounts {
            total: pixels as u64,
            fill,
            potential_cloud: classification.potential_cloud_count as u64,
            cloud,
            clear: valid - cloud,
            cirrus,
        },
        thresholds,
        scene_thresholds: classification.scene_thresholds,
        bqa_cloud_agreement: compare(
            &classification.cloud,
            "BQA cloud confidence high (bits 14-15 = 3)",
            landsat::QualityFlags::cloud,
        ),
        bqa_cirrus_agreement: compare(
            &classification.cirrus,
            "BQA cirrus confidence high (bits 12-13 = 3)",
            landsat::QualityFlags::cirrus,
        ),
    }
}

/// Colour and opacity of the cloud tint in the preview.
const CLOUD_TINT: ([f32; 3], f32) = ([255.0, 40.0, 40.0], 0.6);

fn side_by_side_preview(scene: &Scene, classification: &Classification) -> Vec<u8> {
    let (width, height) = (scene.width(), scene.height());
    let rgb = true_colour(scene);
    let (colour, alpha) = CLOUD_TINT;
    let mut preview = Vec::with_capacity(width * 2 * height * 3);
    for row in 0..height {
        let row_pixels = &rgb[row * width * 3..(row + 1) * width * 3];
        preview.extend_from_slice(row_pixels);
        for (column, original) in row_pixels.chunks_exact(3).enumerate() {
            if classification.cloud[row * width + column] {
                preview.extend(
                    original
                        .iter()
                        .zip(colour)
                        .map(|(&o, c)| (f32::from(o) * (1.0 - alpha) + c * alpha).round() as u8),
                );
            } else {
                preview.extend_from_slice(original);
            }
        }
    }
    preview
}
