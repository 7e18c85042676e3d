//! `cloud-remove`: the true-colour composite of a Landsat 8 scene as an RGBA
//! PNG whose cloudy pixels (non-zero in a `cloud-detect` mask) are fully
//! transparent, ready to be layered over a clear acquisition.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use landsat::{encode_png, true_colour, PngError, RasterKind, Scene, SceneError};

/// Name of the image written into the output directory.
pub const OUTPUT_NAME: &str = "clear.png";
/// Name of the mask looked for when the mask path is a directory.
pub const MASK_NAME: &str = "mask.png";

/// Why the program failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudRemoveError {
    /// The scene could not be loaded.
    #[error(transparent)]
    Scene(#[from] SceneError),
    /// The mask file could not be opened.
    #[error("cannot open mask {path}: {source}")]
    OpenMask {
        /// The mask path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The mask is not a decodable PNG.
    #[error("cannot decode mask {path}: {source}")]
    DecodeMask {
        /// The mask path.
        path: PathBuf,
        /// The decoder's error.
        source: png::DecodingError,
    },
    /// The mask is not 8-bit greyscale.
    #[error("mask {path} is {found}, expected 8-bit greyscale as cloud-detect writes")]
    MaskFormat {
        /// The mask path.
        path: PathBuf,
        /// Colour type and depth found.
        found: String,
    },
    /// The mask and the scene have different sizes.
    #[error(
        "mask {path} is {mask_width}×{mask_height} but the scene is {scene_width}×{scene_height}"
    )]
    SizeMismatch {
        /// The mask path.
        path: PathBuf,
        /// Mask width.
        mask_width: usize,
        /// Mask height.
        mask_height: usize,
        /// Scene width.
        scene_width: usize,
        /// Scene height.
        scene_height: usize,
    },
    /// The output could not be encoded.
    #[error("cannot encode {OUTPUT_NAME}: {0}")]
    Encode(#[from] PngError),
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What [`run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Pixels made transparent (cloud or fill).
    pub transparent: usize,
    /// Pixels in the image.
    pub total: usize,
}

/// A decoded 8-bit greyscale mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// One byte per pixel, row by row; non-zero means cloud.
    pub pixels: Vec<u8>,
}

/// Reads `mask` (a PNG, or a directory holding [`MASK_NAME`]).
pub fn read_mask(mask: &Path) -> Result<(PathBuf, Mask), CloudRemoveError> {
    let path = if mask.is_dir() {
        mask.join(MASK_NAME)
    } else {
        mask.to_owned()
    };
    let file = File::open(&path).map_err(|source| CloudRemoveError::OpenMask {
        path: path.clone(),
        source,
    })?;
    let decode_error = |source| CloudRemoveError::DecodeMask {
        path: path.clone(),
        source,
    };
    let mut reader = png::Decoder::new(BufReader::new(file))
        .read_info()
        .map_err(decode_error)?;
    let (colour, depth) = reader.output_color_type();
    if (colour, depth) != (png::ColorType::Grayscale, png::BitDepth::Eight) {
        return Err(CloudRemoveError::MaskFormat {
            path,
            found: format!("{colour:?} {depth:?}"),
        });
    }
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).map_err(decode_error)?;
    pixels.truncate(frame.buffer_size());
    Ok((
        path,
        Mask {
            width: frame.width as usize,
            height: frame.height as usize,
            pixels,
        },
    ))
}

/// Combines a true-colour composite (RGB bytes) with a mask into RGBA bytes:
/// alpha 0 where the mask is non-zero or the pixel is fill, 255 elsewhere.
pub fn apply_mask(rgb: &[u8], mask: &[u8], fill: impl Fn(usize) -> bool) -> (Vec<u8>, usize) {
    let mut transparent = 0;
    let mut rgba = Vec::with_capacity(mask.len() * 4);
    for (pixel, (colour, &cloud)) in rgb.chunks_exact(3).zip(mask).enumerate() {
        let hidden = cloud != 0 || fill(pixel);
        transparent += usize::from(hidden);
        if hidden {
            // Fully transparent pixels carry no colour, which also compresses better.
            rgba.extend_from_slice(&[0, 0, 0, 0]);
        } else {
            rgba.extend_from_slice(colour);
            rgba.push(255);
        }
    }
    (rgba, transparent)
}

/// Loads the scene in `scene_dir` and the mask at `mask`, and writes
/// [`OUTPUT_NAME`] into `output_dir`.
pub fn run(scene_dir: &Path, mask: &Path, output_dir: &Path) -> Result<Summary, CloudRemoveError> {
    let scene = Scene::open(scene_dir)?;
    let (mask_path, mask) = read_mask(mask)?;
    if (mask.width, mask.height) != (scene.width(), scene.height()) {
        return Err(CloudRemoveError::SizeMismatch {
            path: mask_path,
            mask_width: mask.width,
            mask_height: mask.height,
            scene_width: scene.width(),
            scene_height: scene.height(),
        });
    }
    let (rgba, transparent) = apply_mask(&true_colour(&scene), &mask.pixels, |p| scene.is_fill(p));
    let encoded = encode_png(scene.width(), scene.height(), RasterKind::Rgba, &rgba)?;
    fs::create_dir_all(output_dir).map_err(|source| CloudRemoveError::Write {
        path: output_dir.to_owned(),
        source,
    })?;
    let path = output_dir.join(OUTPUT_NAME);
    fs::write(&path, encoded).map_err(|source| CloudRemoveError::Write { path, source })?;
    Ok(Summary {
        transparent,
        total: scene.pixel_count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_and_fill_pixels_become_transparent() {
        let rgb = [10, 20, 30, 40, 50, 60, 70, 80, 90];
        let mask = [0, 255, 0];
        let (rgba, transparent) = apply_mask(&rgb, &mask, |p| p == 2);
        assert_eq!(rgba, [10, 20, 30, 255, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(transparent, 2);
    }

    #[test]
    fn non_grey_mask_is_rejected() {
        let dir = std::env::temp_dir().join(format!("cloud-remove-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let rgb_png = encode_png(2, 1, RasterKind::Rgb, &[0; 6]).unwrap();
        fs::write(dir.join(MASK_NAME), rgb_png).unwrap();
        assert!(matches!(
            read_mask(&dir),
            Err(CloudRemoveError::MaskFormat { .. })
        ));
        fs::write(dir.join(MASK_NAME), b"not a png").unwrap();
        assert!(matches!(
            read_mask(&dir),
            Err(CloudRemoveError::DecodeMask { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
