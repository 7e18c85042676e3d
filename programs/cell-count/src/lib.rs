//! `cell-count`: counts hematoxylin-stained nuclei in a brightfield H-DAB
//! immunohistochemistry image (e.g. scikit-image's `ihc.png`).
//!
//! Pipeline: colour deconvolution → hematoxylin and DAB amounts; 3×3 mean;
//! foreground where hematoxylin exceeds its Otsu threshold *and* dominates
//! DAB (nuclei are blue, the immunostain brown); 8-connected components;
//! components smaller than [`MIN_AREA_PX`] dropped as debris.

pub mod deconvolution;
pub mod segmentation;

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::deconvolution::Deconvolution;
use crate::segmentation::{box_mean_3x3, label_components, otsu_threshold, Component};

/// Smallest component kept, in pixels. At `ihc.png`'s scale a nucleus is
/// roughly 6–12 px across (≈ 30–100 px²); fragments below 20 px are specks of
/// stain or edges of out-of-focus nuclei.
pub const MIN_AREA_PX: usize = 20;

/// Why the program failed.
#[derive(Debug, thiserror::Error)]
pub enum CellCountError {
    /// The input path could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The input directory does not hold exactly one PNG.
    #[error("input directory {dir} must hold exactly one .png file, found {found:?}")]
    NoSingleImage {
        /// The directory.
        dir: PathBuf,
        /// The PNG files found.
        found: Vec<String>,
    },
    /// The image is not a decodable PNG.
    #[error("cannot decode {path}: {source}")]
    Decode {
        /// The image.
        path: PathBuf,
        /// The decoder's error.
        source: png::DecodingError,
    },
    /// The image is not colour (deconvolution needs RGB).
    #[error("{path} is {found}; colour deconvolution needs an RGB or RGBA image")]
    NotColour {
        /// The image.
        path: PathBuf,
        /// Its colour type.
        found: String,
    },
    /// Hematoxylin is uniform, so there is nothing to threshold.
    #[error("{path}: the hematoxylin channel is uniform; no nuclei can be separated")]
    Uniform {
        /// The image.
        path: PathBuf,
    },
    /// An output image could not be encoded.
    #[error("cannot encode {name}: {source}")]
    Encode {
        /// The output name.
        name: &'static str,
        /// The encoder's error.
        source: png::EncodingError,
    },
    /// `count.json` could not be serialised.
    #[error("cannot serialise count.json: {0}")]
    Json(#[from] serde_json::Error),
    /// An output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A decoded 8-bit RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB bytes, row by row.
    pub pixels: Vec<u8>,
}

/// One counted nucleus in `count.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Nucleus {
    /// Its label in `labels.png` (colours are derived from it).
    pub label: u32,
    /// Area in pixels.
    pub area_px: usize,
    /// Centroid column, pixels from the left edge.
    pub x: f64,
    /// Centroid row, pixels from the top edge.
    pub y: f64,
}

/// Summary of the areas of the counted nuclei.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AreaSummary {
    /// Smallest area, px.
    pub min: usize,
    /// Median area, px (lower median for an even count).
    pub median: usize,
    /// Mean area, px.
    pub mean: f64,
    /// Largest area, px.
    pub max: usize,
}

/// Everything `count.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    /// File name of the analysed image.
    pub image: String,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Number of nuclei.
    pub count: usize,
    /// Otsu threshold of the smoothed hematoxylin amount (OD units).
    pub hematoxylin_threshold: f32,
    /// Minimum area kept, px.
    pub min_area_px: usize,
    /// Share of the image that passed the threshold before the area filter.
    pub foreground_fraction: f64,
    /// Area statistics (`null` when nothing was counted).
    pub area_px: Option<AreaSummary>,
    /// Every nucleus, in label order.
    pub nuclei: Vec<Nucleus>,
}

/// Resolves the input: a PNG file, or a directory holding exactly one.
pub fn find_image(input: &Path) -> Result<PathBuf, CellCountError> {
    let read_error = |source| CellCountError::Read {
        path: input.to_owned(),
        source,
    };
    if !fs::metadata(input).map_err(read_error)?.is_dir() {
        return Ok(input.to_owned());
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(input).map_err(read_error)? {
        let name = entry
            .map_err(read_error)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.to_ascii_lowercase().ends_with(".png") {
            found.push(name);
        }
    }
    found.sort();
    match found.as_slice() {
        [single] => Ok(input.join(single)),
        _ => Err(CellCountError::NoSingleImage {
            dir: input.to_owned(),
            found,
        }),
    }
}

/// Decodes a PNG into 8-bit RGB (alpha dropped, palettes and 16-bit expanded).
pub fn read_rgb(path: &Path) -> Result<RgbImage, CellCountError> {
    let file = File::open(path).map_err(|source| CellCountError::Read {
        path: path.to_owned(),
        source,
    })?;
    let decode_error = |source| CellCountError::Decode {
        path: path.to_owned(),
        source,
    };
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(decode_error)?;
    let (colour, _) = reader.output_color_type();
    let channels = match colour {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => {
            return Err(CellCountError::NotColour {
                path: path.to_owned(),
                found: format!("{other:?}"),
            })
        }
    };
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).map_err(decode_error)?;
    let pixels = buffer[..frame.buffer_size()]
        .chunks_exact(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Ok(RgbImage {
        width: frame.width as usize,
        height: frame.height as usize,
        pixels,
    })
}

/// The segmentation of one image.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// Label per pixel, 0 = background.
    pub labels: Vec<u32>,
    /// The kept components.
    pub components: Vec<Component>,
    /// Otsu threshold of the smoothed hematoxylin amount.
    pub threshold: f32,
    /// Pixels above threshold before the area filter.
    pub foreground_pixels: usize,
}

/// Segments nuclei; `None` when the hematoxylin channel is uniform.
pub fn segment(image: &RgbImage) -> Option<Segmentation> {
    let deconvolution = Deconvolution::new();
    let (hematoxylin, dab): (Vec<f32>, Vec<f32>) = image
        .pixels
        .chunks_exact(3)
        .map(|p| {
            let stains = deconvolution.unmix([p[0], p[1], p[2]]);
            (stains.hematoxylin, stains.dab)
        })
        .unzip();
    let hematoxylin = box_mean_3x3(&hematoxylin, image.width, image.height);
    let dab = box_mean_3x3(&dab, image.width, image.height);
    let threshold = otsu_threshold(&hematoxylin)?;
    let foreground: Vec<bool> = hematoxylin
        .iter()
        .zip(&dab)
        .map(|(&h, &d)| h > threshold && h > d)
        .collect();
    let foreground_pixels = foreground.iter().filter(|&&f| f).count();
    let (labels, components) =
        label_components(&foreground, image.width, image.height, MIN_AREA_PX);
    Some(Segmentation {
        labels,
        components,
        threshold,
        foreground_pixels,
    })
}

/// A distinct, deterministic colour for a label: hues spaced by the golden
/// angle so neighbouring labels differ clearly.
pub fn label_colour(label: u32) -> [u8; 3] {
    if label == 0 {
        return [0, 0, 0];
    }
    let hue = (f64::from(label) * 0.618_033_988_749_895).fract() * 6.0;
    let (saturation, value) = (0.75, 1.0);
    let sector = hue.floor();
    let f = hue - sector;
    let (p, q, t) = (
        value * (1.0 - saturation),
        value * (1.0 - saturation * f),
        value * (1.0 - saturation * (1.0 - f)),
    );
    let (r, g, b) = match sector as u8 {
        0 => (value, t, p),
        1 => (q, value, p),
        2 => (p, value, t),
        3 => (p, q, value),
        4 => (t, p, value),
        _ => (value, p, q),
    };
    [r, g, b].map(|c| (c * 255.0).round() as u8)
}

/// Finds the image at `input`, counts its nuclei and writes into `output_dir`:
/// `labels.png` (each nucleus in its own colour on black), `overlay.png` (the
/// image with nucleus outlines in green, for checking by eye) and `count.json`.
pub fn run(input: &Path, output_dir: &Path) -> Result<Count, CellCountError> {
    let path = find_image(input)?;
    let image = read_rgb(&path)?;
    let segmentation =
        segment(&image).ok_or_else(|| CellCountError::Uniform { path: path.clone() })?;
    let (width, height) = (image.width, image.height);

    let labels_rgb: Vec<u8> = segmentation
        .labels
        .iter()
        .flat_map(|&l| label_colour(l))
        .collect();
    let overlay = outline_overlay(&image, &segmentation.labels);
    let count = summarise(&path, &image, &segmentation);
    let mut json = serde_json::to_vec_pretty(&count)?;
    json.push(b'\n');

    fs::create_dir_all(output_dir).map_err(|source| CellCountError::Write {
        path: output_dir.to_owned(),
        source,
    })?;
    for (name, bytes) in [
        (
            "labels.png",
            encode_rgb_png(width, height, &labels_rgb).map_err(|source| {
                CellCountError::Encode {
                    name: "labels.png",
                    source,
                }
            })?,
        ),
        (
            "overlay.png",
            encode_rgb_png(width, height, &overlay).map_err(|source| CellCountError::Encode {
                name: "overlay.png",
                source,
            })?,
        ),
        ("count.json", json),
    ] {
        let target = output_dir.join(name);
        fs::write(&target, bytes).map_err(|source| CellCountError::Write {
            path: target,
            source,
        })?;
    }
    Ok(count)
}

fn summarise(path: &Path, image: &RgbImage, segmentation: &Segmentation) -> Count {
    let mut areas: Vec<usize> = segmentation.components.iter().map(|c| c.area).collect();
    areas.sort_unstable();
    let area_px = (!areas.is_empty()).then(|| AreaSummary {
        min: areas[0],
        median: areas[(areas.len() - 1) / 2],
        mean: areas.iter().sum::<usize>() as f64 / areas.len() as f64,
        max: areas[areas.len() - 1],
    });
    Count {
        image: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        width: image.width,
        height: image.height,
        count: segmentation.components.len(),
        hematoxylin_threshold: segmentation.threshold,
        min_area_px: MIN_AREA_PX,
        foreground_fraction: segmentation.foreground_pixels as f64
            / (image.width * image.height) as f64,
        area_px,
        nuclei: segmentation
            .components
            .iter()
            .map(|c| Nucleus {
                label: c.label,
                area_px: c.area,
                x: c.centroid.0,
                y: c.centroid.1,
            })
            .collect(),
    }
}

/// The image with every nucleus boundary pixel (a labelled pixel with a
/// 4-neighbour of another label) painted green.
fn outline_overlay(image: &RgbImage, labels: &[u32]) -> Vec<u8> {
    let (width, height) = (image.width, image.height);
    let mut overlay = image.pixels.clone();
    for y in 0..height {
        for x in 0..width {
            let label = labels[y * width + x];
            if label == 0 {
                continue;
            }
            let differs = |nx: usize, ny: usize| labels[ny * width + nx] != label;
            let boundary = x == 0
                || y == 0
                || x + 1 == width
                || y + 1 == height
                || differs(x - 1, y)
                || differs(x + 1, y)
                || differs(x, y - 1)
                || differs(x, y + 1);
            if boundary {
                overlay[(y * width + x) * 3..][..3].copy_from_slice(&[0, 255, 0]);
            }
        }
    }
    overlay
}

fn encode_rgb_png(width: usize, height: usize, rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut encoded = Vec::new();
    // Sizes come from a decoded PNG, so they fit PNG's u32 fields.
    let mut encoder = png::Encoder::new(&mut encoded, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(encoded)
}
