//! Rendering helpers shared by the Landsat programs: a true-colour composite
//! and PNG encoding.

use crate::scene::{Band, Scene};

/// Lower and upper percentiles of the linear contrast stretch: clipping 2 % at
/// each end keeps a few very bright cloud tops or dark shadows from flattening
/// the rest of the picture.
const STRETCH_PERCENTILES: (f64, f64) = (2.0, 98.0);

/// Sample layout of an 8-bit raster handed to [`encode_png`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RasterKind {
    /// One grey byte per pixel.
    Gray,
    /// Red, green, blue bytes per pixel.
    Rgb,
    /// Red, green, blue, alpha bytes per pixel.
    Rgba,
}

impl RasterKind {
    /// Bytes per pixel.
    pub fn channels(self) -> usize {
        match self {
            RasterKind::Gray => 1,
            RasterKind::Rgb => 3,
            RasterKind::Rgba => 4,
        }
    }
}

/// Why a raster could not be encoded as PNG.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    /// The pixel buffer does not match the stated size and layout.
    #[error("raster of {width}×{height} {kind:?} needs {expected} bytes, got {actual}")]
    BufferSize {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Layout.
        kind: RasterKind,
        /// `width × height × channels`.
        expected: usize,
        /// Length of the buffer passed.
        actual: usize,
    },
    /// PNG cannot hold an image this large (or empty).
    #[error("{width}×{height} is not a valid PNG size")]
    Dimensions {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// The encoder failed.
    #[error("PNG encoding failed: {0}")]
    Encode(#[from] png::EncodingError),
}

/// Encodes an 8-bit raster as PNG. The output depends only on the pixels
/// (no timestamps or other ancillary chunks), so it is reproducible.
pub fn encode_png(
    width: usize,
    height: usize,
    kind: RasterKind,
    pixels: &[u8],
) -> Result<Vec<u8>, PngError> {
    let expected = width * height * kind.channels();
    if pixels.len() != expected {
        return Err(PngError::BufferSize {
            width,
            height,
            kind,
            expected,
            actual: pixels.len(),
        });
    }
    let dimension_error = || PngError::Dimensions { width, height };
    let png_width = u32::try_from(width).map_err(|_| dimension_error())?;
    let png_height = u32::try_from(height).map_err(|_| dimension_error())?;
    if png_width == 0 || png_height == 0 {
        return Err(dimension_error());
    }
    let mut encoded = Vec::new();
    let mut encoder = png::Encoder::new(&mut encoded, png_width, png_height);
    encoder.set_color(match kind {
        RasterKind::Gray => png::ColorType::Grayscale,
        RasterKind::Rgb => png::ColorType::Rgb,
        RasterKind::Rgba => png::ColorType::Rgba,
    });
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(encoded)
}

/// True-colour composite (red = band 4, green = band 3, blue = band 2) of
/// TOA reflectance, each band stretched linearly between its 2nd and 98th
/// percentile over the non-fill pixels. Returns RGB bytes, row by row; fill
/// pixels are black.
pub fn true_colour(scene: &Scene) -> Vec<u8> {
    let pixels = scene.pixel_count();
    let mut rgb = vec![0u8; pixels * 3];
    for (channel, band) in [Band::Red, Band::Green, Band::Blue].into_iter().enumerate() {
        let mut values: Vec<f32> = (0..pixels)
            .filter(|&p| !scene.is_fill(p))
            .map(|p| scene.reflectance(band, p))
            .collect();
        let (Some(low), Some(high)) = (
            crate::percentile(&mut values, STRETCH_PERCENTILES.0),
            crate::percentile(&mut values, STRETCH_PERCENTILES.1),
        ) else {
            continue; // all fill: the composite stays black
        };
        let span = (high - low).max(f32::EPSILON);
        for pixel in (0..pixels).filter(|&p| !scene.is_fill(p)) {
            let scaled = (scene.reflectance(band, pixel) - low) / span * 255.0;
            rgb[pixel * 3 + channel] = scaled.round().clamp(0.0, 255.0) as u8;
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_and_rejects_wrong_buffers() {
        let pixels: Vec<u8> = (0..6 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let encoded = encode_png(6, 4, RasterKind::Rgb, &pixels).unwrap();
        let decoder = png::Decoder::new(encoded.as_slice());
        let mut reader = decoder.read_info().unwrap();
        let mut decoded = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut decoded).unwrap();
        assert_eq!(
            (info.width, info.height, info.color_type),
            (6, 4, png::ColorType::Rgb)
        );
        assert_eq!(&decoded[..info.buffer_size()], pixels.as_slice());

        assert!(matches!(
            encode_png(6, 4, RasterKind::Rgba, &pixels),
            Err(PngError::BufferSize { .. })
        ));
        assert!(matches!(
            encode_png(0, 0, RasterKind::Gray, &[]),
            Err(PngError::Dimensions { .. })
        ));
    }
}
