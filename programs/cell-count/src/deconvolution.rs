//! Colour deconvolution (Ruifrok & Johnston 2001, "Quantification of
//! histochemical staining by color deconvolution", Anal. Quant. Cytol.
//! Histol. 23): by Beer–Lambert, the optical density of each RGB channel is
//! a linear mix of the stains' amounts, so inverting the 3×3 matrix of stain
//! colours recovers per-pixel stain amounts.

/// Optical-density colours of hematoxylin, eosin and DAB (rows), as measured
/// by Ruifrok & Johnston; normalised to unit length before use.
const STAIN_OD: [[f64; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Stain amounts of one pixel, in optical-density units (natural log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stains {
    /// Hematoxylin: nuclei (blue-violet).
    pub hematoxylin: f32,
    /// Eosin: cytoplasm and stroma (pink); little in an H-DAB slide.
    pub eosin: f32,
    /// DAB: the immunostained protein (brown).
    pub dab: f32,
}

/// Unmixes RGB pixels into stain amounts.
#[derive(Debug, Clone, Copy)]
pub struct Deconvolution {
    /// Maps an OD row vector (r, g, b) to stain amounts: `stains = od · inverse`.
    inverse: [[f64; 3]; 3],
}

impl Default for Deconvolution {
    fn default() -> Self {
        Deconvolution::new()
    }
}

impl Deconvolution {
    /// The hematoxylin–eosin–DAB unmixing.
    pub fn new() -> Deconvolution {
        let normalised = STAIN_OD.map(|row| {
            let length = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            row.map(|v| v / length)
        });
        Deconvolution {
            inverse: invert(normalised),
        }
    }

    /// Stain amounts of an 8-bit RGB pixel. Optical density is
    /// `−ln((I + 1) / 256)`, so a white pixel is 0 and black stays finite.
    pub fn unmix(&self, rgb: [u8; 3]) -> Stains {
        let od = rgb.map(|v| -((f64::from(v) + 1.0) / 256.0).ln());
        let amount = |stain: usize| {
            (0..3)
                .map(|channel| od[channel] * self.inverse[channel][stain])
                .sum::<f64>() as f32
        };
        Stains {
            hematoxylin: amount(0),
            eosin: amount(1),
            dab: amount(2),
        }
    }
}

/// Inverse of a 3×3 matrix by cofactors. Hand-written: a linear-algebra crate
/// for one fixed, well-conditioned 3×3 inverse would dwarf this program.
fn invert(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let cofactor = |r: usize, c: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
        m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
    };
    let determinant: f64 = (0..3).map(|c| m[0][c] * cofactor(0, c)).sum();
    let mut inverse = [[0.0; 3]; 3];
    for (r, row) in inverse.iter_mut().enumerate() {
        for (c, value) in row.iter_mut().enumerate() {
            // Transposed cofactor (adjugate) over the determinant.
            *value = cofactor(c, r) / determinant;
        }
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let m = [[2.0, 0.5, 1.0], [0.0, 3.0, 0.25], [1.0, 1.0, 4.0]];
        let inverse = invert(m);
        let product = |r: usize, c: usize| (0..3).map(|k| m[r][k] * inverse[k][c]).sum::<f64>();
        for r in 0..3 {
            for c in 0..3 {
                let product = product(r, c);
                let expected = if r == c { 1.0 } else { 0.0 };
                assert!((product - expected).abs() < 1e-12, "({r},{c}) = {product}");
            }
        }
    }

    #[test]
    fn pure_stain_colours_unmix_to_that_stain() {
        let deconvolution = Deconvolution::new();
        assert_eq!(deconvolution.unmix([255, 255, 255]).hematoxylin, 0.0);
        // Synthesise the RGB of one unit of each pure stain from its OD colour.
        for (index, od) in STAIN_OD.iter().enumerate() {
            let length = od.iter().map(|v| v * v).sum::<f64>().sqrt();
            let rgb = od.map(|v| ((-(v / length)).exp() * 256.0 - 1.0).round() as u8);
            let stains = deconvolution.unmix(rgb);
            let amounts = [stains.hematoxylin, stains.eosin, stains.dab];
            assert!(
                (amounts[index] - 1.0).abs() < 0.02,
                "stain {index}: {amounts:?}"
            );
            for (other, amount) in amounts.iter().enumerate().filter(|(o, _)| *o != index) {
                assert!(
                    amount.abs() < 0.02,
                    "stain {index} leaks {amount} into {other}"
                );
            }
        }
    }
}
