//! The cloud tests: a simplified Fmask (Zhu & Woodcock 2012, "Object-based
//! cloud and cloud shadow detection in Landsat imagery", RSE 118) without the
//! shadow/snow stages and without the final dilation, plus a separate cirrus
//! layer from band 9.
//!
//! Pass 1 flags *potential cloud pixels* (PCP) with fixed spectral tests.
//! Pass 2 adapts to the scene: the clear-sky land pixels of pass 1 give a
//! temperature range, and a pixel is cloud when it is both colder and
//! spectrally flatter than most clear land. All constants are the published
//! Fmask ones; none was fitted to the sample scene.

use landsat::{percentile, Band, Scene};
use serde::Serialize;

/// The fixed constants of the cascade.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Basic test: clouds are bright at 2.2 µm (band 7 TOA reflectance above this).
    pub swir2_reflectance_min: f32,
    /// Basic test: clouds are colder than this, °C (band 10 brightness temperature).
    pub brightness_temperature_max_c: f32,
    /// Basic test: NDSI below this (excludes snow).
    pub ndsi_max: f32,
    /// Basic test: NDVI below this (excludes dense vegetation).
    pub ndvi_max: f32,
    /// Whiteness test: clouds are flat across the visible bands; the summed
    /// relative deviation of bands 2–4 from their mean stays below this.
    pub whiteness_max: f32,
    /// Haze-optimised transform: `B2 − 0.5·B4 − offset > 0` for haze and cloud.
    pub hot_offset: f32,
    /// NIR/SWIR1 ratio (B5/B6) above this: excludes bright rock and desert.
    pub nir_swir1_ratio_min: f32,
    /// Margin in °C widening the clear-land temperature range in pass 2.
    pub temperature_margin_c: f32,
    /// Percentile of clear-sky land defining the "cold" and "warm" ends of the
    /// temperature range (and the lower end is `100 −` this).
    pub clear_land_percentile: f64,
    /// Added to the clear-land percentile of cloud probability to get the
    /// scene's cloud probability threshold.
    pub probability_margin: f32,
    /// A land pixel with a cloud probability above this is cloud even if it
    /// failed pass 1.
    pub probability_certain: f32,
    /// A pixel colder than the clear-land low temperature by more than this
    /// (°C) is cloud whatever its spectrum.
    pub very_cold_margin_c: f32,
    /// Fixed cloud probability threshold over water.
    pub water_probability_threshold: f32,
    /// Water: NIR reflectance that saturates the water brightness probability.
    pub water_nir_saturation: f32,
    /// Cirrus layer: band 9 TOA reflectance above this. Clear air absorbs
    /// 1.37 µm almost completely (water vapour), so clear pixels stay below
    /// about 0.01 and only high ice cloud reflects.
    pub cirrus_reflectance_min: f32,
}

/// The published Fmask constants (Zhu & Woodcock 2012) and the usual 0.01
/// band-9 cirrus threshold.
pub const FMASK: Thresholds = Thresholds {
    swir2_reflectance_min: 0.03,
    brightness_temperature_max_c: 27.0,
    ndsi_max: 0.8,
    ndvi_max: 0.8,
    whiteness_max: 0.7,
    hot_offset: 0.08,
    nir_swir1_ratio_min: 0.75,
    temperature_margin_c: 4.0,
    clear_land_percentile: 82.5,
    probability_margin: 0.2,
    probability_certain: 0.99,
    very_cold_margin_c: 35.0,
    water_probability_threshold: 0.5,
    water_nir_saturation: 0.11,
    cirrus_reflectance_min: 0.01,
};

/// The physical quantities of one pixel that the tests look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelFeatures {
    /// TOA reflectance of band 2 (blue).
    pub blue: f32,
    /// TOA reflectance of band 3 (green).
    pub green: f32,
    /// TOA reflectance of band 4 (red).
    pub red: f32,
    /// TOA reflectance of band 5 (near infrared).
    pub nir: f32,
    /// TOA reflectance of band 6 (shortwave infrared 1).
    pub swir1: f32,
    /// TOA reflectance of band 7 (shortwave infrared 2).
    pub swir2: f32,
    /// TOA reflectance of band 9 (cirrus).
    pub cirrus: f32,
    /// Band 10 brightness temperature, °C.
    pub temperature_c: f32,
}

impl PixelFeatures {
    /// Reads the features of `pixel` from a scene.
    pub fn of(scene: &Scene, pixel: usize) -> PixelFeatures {
        PixelFeatures {
            blue: scene.reflectance(Band::Blue, pixel),
            green: scene.reflectance(Band::Green, pixel),
            red: scene.reflectance(Band::Red, pixel),
            nir: scene.reflectance(Band::NearInfrared, pixel),
            swir1: scene.reflectance(Band::ShortwaveInfrared1, pixel),
            swir2: scene.reflectance(Band::ShortwaveInfrared2, pixel),
            cirrus: scene.reflectance(Band::Cirrus, pixel),
            temperature_c: scene.brightness_temperature_celsius(pixel),
        }
    }

    /// Normalised difference vegetation index, `(B5 − B4) / (B5 + B4)`.
    pub fn ndvi(&self) -> f32 {
        normalised_difference(self.nir, self.red)
    }

    /// Normalised difference snow index, `(B3 − B6) / (B3 + B6)`.
    pub fn ndsi(&self) -> f32 {
        normalised_difference(self.green, self.swir1)
    }

    /// Summed absolute deviation of bands 2–4 from their mean, relative to
    /// the mean: 0 for a perfectly grey/white pixel.
    pub fn whiteness(&self) -> f32 {
        let mean = (self.blue + self.green + self.red) / 3.0;
        if mean <= 0.0 {
            return f32::INFINITY; // black or invalid: certainly not white
        }
        ((self.blue - mean).abs() + (self.green - mean).abs() + (self.red - mean).abs()) / mean
    }

    /// Haze-optimised transform, `B2 − 0.5·B4`.
    pub fn hot(&self) -> f32 {
        self.blue - 0.5 * self.red
    }

    /// Fmask's water test.
    pub fn is_water(&self) -> bool {
        let ndvi = self.ndvi();
        (ndvi < 0.01 && self.nir < 0.11) || (ndvi > 0.0 && ndvi < 0.1 && self.nir < 0.05)
    }

    /// Pass 1: does the pixel pass every potential-cloud test?
    pub fn is_potential_cloud(&self, t: &Thresholds) -> bool {
        let basic = self.swir2 > t.swir2_reflectance_min
            && self.temperature_c < t.brightness_temperature_max_c
            && self.ndsi() < t.ndsi_max
            && self.ndvi() < t.ndvi_max;
        let nir_swir1_ratio = if self.swir1 > 0.0 {
            self.nir / self.swir1
        } else {
            f32::INFINITY
        };
        basic
            && self.whiteness() < t.whiteness_max
            && self.hot() - t.hot_offset > 0.0
            && nir_swir1_ratio > t.nir_swir1_ratio_min
    }

    /// Spectral variability probability: 1 for a flat (cloud-like) spectrum,
    /// lower as vegetation, snow or colour make the spectrum vary.
    pub fn variability_probability(&self) -> f32 {
        1.0 - self
            .ndvi()
            .abs()
            .max(self.ndsi().abs())
            .max(self.whiteness())
    }
}

fn normalised_difference(a: f32, b: f32) -> f32 {
    let sum = a + b;
    if sum == 0.0 {
        0.0
    } else {
        (a - b) / sum
    }
}

/// Scene-adaptive values pass 2 derived from the clear pixels of pass 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SceneThresholds {
    /// Low percentile (17.5th) of clear-sky land brightness temperature, °C.
    pub clear_land_temperature_low_c: f32,
    /// High percentile (82.5th) of clear-sky land brightness temperature, °C.
    pub clear_land_temperature_high_c: f32,
    /// Cloud probability above which a potential cloud pixel over land is cloud.
    pub land_probability_threshold: f32,
    /// 82.5th percentile of clear-sky water temperature, °C; `None` when the
    /// scene has no clear water (then the water branch is not used).
    pub clear_water_temperature_c: Option<f32>,
}

/// Result of running the cascade over a scene. Vectors are per pixel, row by row.
#[derive(Debug, Clone)]
pub struct Classification {
    /// Cloud (the mask the program writes).
    pub cloud: Vec<bool>,
    /// Cirrus (band 9 test), reported separately from `cloud`.
    pub cirrus: Vec<bool>,
    /// Pixels without data, neither cloud nor clear.
    pub fill: Vec<bool>,
    /// Pixels that passed pass 1.
    pub potential_cloud_count: usize,
    /// Pass 2's scene-adaptive values; `None` when the scene has no clear-sky
    /// land, in which case every potential cloud pixel is cloud.
    pub scene_thresholds: Option<SceneThresholds>,
}

/// Runs both passes over every pixel of `scene`.
pub fn classify(scene: &Scene, t: &Thresholds) -> Classification {
    let pixels = scene.pixel_count();
    let fill: Vec<bool> = (0..pixels).map(|p| scene.is_fill(p)).collect();
    let features: Vec<PixelFeatures> = (0..pixels).map(|p| PixelFeatures::of(scene, p)).collect();
    let potential: Vec<bool> = features
        .iter()
        .zip(&fill)
        .map(|(f, &fill)| !fill && f.is_potential_cloud(t))
        .collect();
    let water: Vec<bool> = features.iter().map(PixelFeatures::is_water).collect();
    let cirrus = features
        .iter()
        .zip(&fill)
        .map(|(f, &fill)| !fill && f.cirrus > t.cirrus_reflectance_min)
        .collect();
    let potential_cloud_count = potential.iter().filter(|&&p| p).count();

    let clear = |p: usize| !fill[p] && !potential[p];
    let mut clear_land_temperatures: Vec<f32> = (0..pixels)
        .filter(|&p| clear(p) && !water[p])
        .map(|p| features[p].temperature_c)
        .collect();
    let low_percentile = 100.0 - t.clear_land_percentile;
    let (Some(low_c), Some(high_c)) = (
        percentile(&mut clear_land_temperatures, low_percentile),
        percentile(&mut clear_land_temperatures, t.clear_land_percentile),
    ) else {
        return Classification {
            cloud: potential,
            cirrus,
            fill,
            potential_cloud_count,
            scene_thresholds: None,
        };
    };

    // Temperature probability: 1 at the warm end of clear land (+margin),
    // falling linearly as the pixel gets colder; may exceed 1 or go negative.
    let cold_end = low_c - t.temperature_margin_c;
    let warm_end = high_c + t.temperature_margin_c;
    let land_probability = |f: &PixelFeatures| {
        (warm_end - f.temperature_c) / (warm_end - cold_end) * f.variability_probability()
    };
    let mut clear_land_probabilities: Vec<f32> = (0..pixels)
        .filter(|&p| clear(p) && !water[p])
        .map(|p| land_probability(&features[p]))
        .collect();
    let land_threshold = percentile(&mut clear_land_probabilities, t.clear_land_percentile)
        .map_or(f32::INFINITY, |p| p + t.probability_margin);

    let mut clear_water_temperatures: Vec<f32> = (0..pixels)
        .filter(|&p| clear(p) && water[p])
        .map(|p| features[p].temperature_c)
        .collect();
    let water_temperature = percentile(&mut clear_water_temperatures, t.clear_land_percentile);
    let water_probability = |f: &PixelFeatures, water_c: f32| {
        let temperature = (water_c - f.temperature_c) / t.temperature_margin_c;
        let brightness = f.nir.min(t.water_nir_saturation) / t.water_nir_saturation;
        temperature * brightness
    };

    let very_cold_c = low_c - t.very_cold_margin_c;
    let cloud = (0..pixels)
        .map(|p| {
            if fill[p] {
                return false;
            }
            let f = &features[p];
            if f.temperature_c < very_cold_c {
                return true;
            }
            match (water[p], water_temperature) {
                (true, Some(water_c)) => {
                    potential[p] && water_probability(f, water_c) > t.water_probability_threshold
                }
                _ => {
                    let probability = land_probability(f);
                    (potential[p] && probability > land_threshold)
                        || probability > t.probability_certain
                }
            }
        })
        .collect();

    Classification {
        cloud,
        cirrus,
        fill,
        potential_cloud_count,
        scene_thresholds: Some(SceneThresholds {
            clear_land_temperature_low_c: low_c,
            clear_land_temperature_high_c: high_c,
            land_probability_threshold: land_threshold,
            clear_water_temperature_c: water_temperature,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Typical TOA reflectances (Landsat 8, mid-latitude summer).
    const CUMULUS: PixelFeatures = PixelFeatures {
        blue: 0.35,
        green: 0.34,
        red: 0.33,
        nir: 0.36,
        swir1: 0.28,
        swir2: 0.18,
        cirrus: 0.004,
        temperature_c: 2.0,
    };
    const FOREST: PixelFeatures = PixelFeatures {
        blue: 0.07,
        green: 0.06,
        red: 0.04,
        nir: 0.30,
        swir1: 0.14,
        swir2: 0.05,
        cirrus: 0.002,
        temperature_c: 24.0,
    };
    const LAKE: PixelFeatures = PixelFeatures {
        blue: 0.08,
        green: 0.06,
        red: 0.04,
        nir: 0.02,
        swir1: 0.01,
        swir2: 0.005,
        cirrus: 0.001,
        temperature_c: 22.0,
    };

    #[test]
    fn bright_cold_flat_pixel_is_potential_cloud() {
        assert!(CUMULUS.is_potential_cloud(&FMASK));
        assert!(CUMULUS.whiteness() < 0.1);
        assert!(CUMULUS.variability_probability() > 0.85);
    }

    #[test]
    fn vegetation_and_water_are_not_potential_cloud() {
        assert!(
            !FOREST.is_potential_cloud(&FMASK),
            "dark blue band fails HOT"
        );
        assert!(FOREST.ndvi() > 0.7);
        assert!(!FOREST.is_water());
        assert!(
            !LAKE.is_potential_cloud(&FMASK),
            "dark SWIR2 fails the basic test"
        );
        assert!(LAKE.is_water());
    }

    #[test]
    fn each_basic_test_can_veto() {
        let warm = PixelFeatures {
            temperature_c: 30.0,
            ..CUMULUS
        };
        assert!(!warm.is_potential_cloud(&FMASK));
        let snow = PixelFeatures {
            swir1: 0.02,
            ..CUMULUS
        };
        assert!(snow.ndsi() > 0.8);
        assert!(!snow.is_potential_cloud(&FMASK));
        let coloured = PixelFeatures {
            red: 0.10,
            ..CUMULUS
        };
        assert!(coloured.whiteness() > 0.7);
        assert!(!coloured.is_potential_cloud(&FMASK));
    }

    #[test]
    fn degenerate_reflectances_do_not_produce_nan() {
        let black = PixelFeatures {
            blue: 0.0,
            green: 0.0,
            red: 0.0,
            nir: 0.0,
            swir1: 0.0,
            swir2: 0.0,
            cirrus: 0.0,
            temperature_c: 0.0,
        };
        assert_eq!(black.ndvi(), 0.0);
        assert!(!black.is_potential_cloud(&FMASK));
        assert!(!black.variability_probability().is_nan());
    }
}
