//! Parser for the `_MTL.txt` metadata file of a pre-collection Landsat 8 scene.

use std::collections::BTreeMap;

/// Linear rescaling of one reflective band's digital numbers to
/// top-of-atmosphere reflectance (before the sun-angle correction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReflectanceCalibration {
    /// `REFLECTANCE_MULT_BAND_n`.
    pub mult: f64,
    /// `REFLECTANCE_ADD_BAND_n`.
    pub add: f64,
}

/// Constants that turn one thermal band's digital numbers into at-sensor
/// brightness temperature: radiance rescaling, then the inverse Planck
/// function with the band's `K1`/`K2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThermalCalibration {
    /// `RADIANCE_MULT_BAND_n`, W/(m² sr µm) per DN.
    pub radiance_mult: f64,
    /// `RADIANCE_ADD_BAND_n`, W/(m² sr µm).
    pub radiance_add: f64,
    /// `K1_CONSTANT_BAND_n`, W/(m² sr µm).
    pub k1: f64,
    /// `K2_CONSTANT_BAND_n`, kelvin.
    pub k2: f64,
}

/// The values of an MTL file that the guest programs need.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// `LANDSAT_SCENE_ID`, e.g. `LC80200392015216LGN00`.
    pub scene_id: String,
    /// `DATE_ACQUIRED`, e.g. `2015-08-04`.
    pub date_acquired: String,
    /// `SUN_ELEVATION` at the scene centre, degrees.
    pub sun_elevation_deg: f64,
    /// Calibration of the reflective bands 1–9, index 0 is band 1.
    pub reflectance: [ReflectanceCalibration; 9],
    /// Calibration of thermal band 10.
    pub thermal_b10: ThermalCalibration,
}

/// Why an MTL file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A key the calibration needs is absent.
    #[error("MTL metadata lacks {key}")]
    MissingKey {
        /// The missing key, e.g. `SUN_ELEVATION`.
        key: String,
    },
    /// A numeric key holds something that is not a number.
    #[error("MTL metadata key {key} has non-numeric value {value:?}")]
    NotANumber {
        /// The key.
        key: String,
        /// Its raw value.
        value: String,
    },
    /// The sun elevation is not in (0°, 90°]: at or below the horizon the
    /// sun-angle correction of reflectance is undefined.
    #[error("SUN_ELEVATION {0}° is outside (0°, 90°]; reflectance is undefined")]
    SunElevationOutOfRange(f64),
}

impl Metadata {
    /// Parses the `KEY = VALUE` lines of an MTL file (groups are flattened:
    /// the keys used here are unique across groups).
    pub fn parse(text: &str) -> Result<Metadata, MetadataError> {
        let values: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.trim(), value.trim().trim_matches('"')))
            .collect();
        let text_value = |key: &str| -> Result<String, MetadataError> {
            values
                .get(key)
                .map(|v| (*v).to_owned())
                .ok_or_else(|| MetadataError::MissingKey {
                    key: key.to_owned(),
                })
        };
        let number = |key: &str| -> Result<f64, MetadataError> {
            let raw = text_value(key)?;
            raw.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or(MetadataError::NotANumber {
                    key: key.to_owned(),
                    value: raw,
                })
        };

        let sun_elevation_deg = number("SUN_ELEVATION")?;
        if sun_elevation_deg <= 0.0 || sun_elevation_deg > 90.0 {
            return Err(MetadataError::SunElevationOutOfRange(sun_elevation_deg));
        }
        let mut reflectance = [ReflectanceCalibration {
            mult: 0.0,
            add: 0.0,
        }; 9];
        for (index, calibration) in reflectance.iter_mut().enumerate() {
            let band = index + 1;
            calibration.mult = number(&format!("REFLECTANCE_MULT_BAND_{band}"))?;
            calibration.add = number(&format!("REFLECTANCE_ADD_BAND_{band}"))?;
        }
        Ok(Metadata {
            scene_id: text_value("LANDSAT_SCENE_ID")?,
            date_acquired: text_value("DATE_ACQUIRED")?,
            sun_elevation_deg,
            reflectance,
            thermal_b10: ThermalCalibration {
                radiance_mult: number("RADIANCE_MULT_BAND_10")?,
                radiance_add: number("RADIANCE_ADD_BAND_10")?,
                k1: number("K1_CONSTANT_BAND_10")?,
                k2: number("K2_CONSTANT_BAND_10")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal_mtl() -> String {
        let mut text = String::from(
            "GROUP = L1_METADATA_FILE\n  LANDSAT_SCENE_ID = \"LC8TEST\"\n  DATE_ACQUIRED = 2015-08-04\n  SUN_ELEVATION = 30.0\n",
        );
        for band in 1..=9 {
            text.push_str(&format!("    REFLECTANCE_MULT_BAND_{band} = 2.0000E-05\n"));
            text.push_str(&format!("    REFLECTANCE_ADD_BAND_{band} = -0.100000\n"));
        }
        text.push_str("RADIANCE_MULT_BAND_10 = 3.3420E-04\nRADIANCE_ADD_BAND_10 = 0.10000\n");
        text.push_str("K1_CONSTANT_BAND_10 = 774.8853\nK2_CONSTANT_BAND_10 = 1321.0789\nEND\n");
        text
    }

    #[test]
    fn parses_calibration_and_strips_quotes() {
        let metadata = Metadata::parse(&minimal_mtl()).unwrap();
        assert_eq!(metadata.scene_id, "LC8TEST");
        assert_eq!(metadata.sun_elevation_deg, 30.0);
        assert_eq!(
            metadata.reflectance[8],
            ReflectanceCalibration {
                mult: 2.0e-5,
                add: -0.1
            }
        );
        assert_eq!(metadata.thermal_b10.k2, 1321.0789);
    }

    #[test]
    fn missing_key_is_named() {
        let text = minimal_mtl().replace("SUN_ELEVATION = 30.0\n", "");
        let error = Metadata::parse(&text).unwrap_err();
        assert!(matches!(error, MetadataError::MissingKey { ref key } if key == "SUN_ELEVATION"));
    }

    #[test]
    fn garbage_number_and_night_scene_are_rejected() {
        let text = minimal_mtl().replace(
            "K1_CONSTANT_BAND_10 = 774.8853",
            "K1_CONSTANT_BAND_10 = abc",
        );
        assert!(matches!(
            Metadata::parse(&text),
            Err(MetadataError::NotANumber { .. })
        ));
        let night = minimal_mtl().replace("SUN_ELEVATION = 30.0", "SUN_ELEVATION = -5.0");
        assert!(matches!(
            Metadata::parse(&night),
            Err(MetadataError::SunElevationOutOfRange(_))
        ));
    }
}
