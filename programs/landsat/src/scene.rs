//! A Landsat 8 scene directory loaded into memory.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use tiff::decoder::{Decoder, DecodingResult};
use tiff::ColorType;

use crate::metadata::{Metadata, MetadataError};
use crate::quality::QualityFlags;

/// The reflective OLI bands the guest programs use (the 15 m panchromatic
/// band 8 has a different grid and is not loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    /// Band 1, 0.43–0.45 µm.
    CoastalAerosol,
    /// Band 2, 0.45–0.51 µm.
    Blue,
    /// Band 3, 0.53–0.59 µm.
    Green,
    /// Band 4, 0.64–0.67 µm.
    Red,
    /// Band 5, 0.85–0.88 µm.
    NearInfrared,
    /// Band 6, 1.57–1.65 µm.
    ShortwaveInfrared1,
    /// Band 7, 2.11–2.29 µm.
    ShortwaveInfrared2,
    /// Band 9, 1.36–1.38 µm, absorbed by water vapour: only high clouds show.
    Cirrus,
}

impl Band {
    /// Every reflective band that [`Scene::open`] loads, in storage order.
    pub const ALL: [Band; 8] = [
        Band::CoastalAerosol,
        Band::Blue,
        Band::Green,
        Band::Red,
        Band::NearInfrared,
        Band::ShortwaveInfrared1,
        Band::ShortwaveInfrared2,
        Band::Cirrus,
    ];

    /// The OLI band number, as in file names and MTL keys.
    pub fn number(self) -> u8 {
        match self {
            Band::CoastalAerosol => 1,
            Band::Blue => 2,
            Band::Green => 3,
            Band::Red => 4,
            Band::NearInfrared => 5,
            Band::ShortwaveInfrared1 => 6,
            Band::ShortwaveInfrared2 => 7,
            Band::Cirrus => 9,
        }
    }

    fn storage_index(self) -> usize {
        Band::ALL
            .iter()
            .position(|b| *b == self)
            .unwrap_or_default()
    }
}

/// Why a scene directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// The directory itself could not be listed.
    #[error("cannot list scene directory {path}: {source}")]
    ListDirectory {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No file of the directory ends with the expected suffix.
    #[error("scene directory {dir} has no file ending in {suffix} (case-insensitive)")]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The suffix looked for, e.g. `_B4.TIF`.
        suffix: String,
    },
    /// Several files end with the same suffix, so the scene is ambiguous.
    #[error("scene directory {dir} has several files ending in {suffix}: {first} and {second}")]
    AmbiguousFile {
        /// The directory.
        dir: PathBuf,
        /// The suffix looked for.
        suffix: String,
        /// One match.
        first: String,
        /// Another match.
        second: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The MTL file is unusable.
    #[error("bad metadata in {path}: {source}")]
    Metadata {
        /// The MTL file.
        path: PathBuf,
        /// What is wrong with it.
        source: MetadataError,
    },
    /// A band file is not a readable TIFF.
    #[error("cannot decode TIFF {path}: {source}")]
    Tiff {
        /// The band file.
        path: PathBuf,
        /// The decoder's error.
        source: tiff::TiffError,
    },
    /// A band is a TIFF but not single-channel uint16, as Level-1 bands are.
    #[error("{path} is {found}, expected single-channel 16-bit grey")]
    UnexpectedPixelType {
        /// The band file.
        path: PathBuf,
        /// What the file holds.
        found: String,
    },
    /// Bands of one scene must share one 30 m grid.
    #[error("{path} is {found_width}×{found_height} pixels but the scene's other bands are {width}×{height}")]
    SizeMismatch {
        /// The odd band file.
        path: PathBuf,
        /// Its width.
        found_width: usize,
        /// Its height.
        found_height: usize,
        /// The scene's width.
        width: usize,
        /// The scene's height.
        height: usize,
    },
}

/// A Level-1 scene: digital numbers of the reflective bands, thermal band 10
/// and the BQA band on one grid, plus the MTL calibration.
#[derive(Debug, Clone)]
pub struct Scene {
    /// The scene's calibration metadata.
    pub metadata: Metadata,
    width: usize,
    height: usize,
    reflective: Vec<Vec<u16>>,
    thermal_b10: Vec<u16>,
    quality: Vec<u16>,
    sin_sun_elevation: f64,
}

impl Scene {
    /// Loads the scene in `dir`: the file ending `_MTL.txt`, the bands ending
    /// `_B1.TIF` … `_B7.TIF`, `_B9.TIF`, `_B10.TIF` and `_BQA.TIF`
    /// (case-insensitive, so USGS names and lower-case copies both work).
    /// When `dir` holds no MTL file but exactly one directory, the scene is
    /// looked for there: a task of a job fanned out over a directory of scenes
    /// sees its scene mounted one level down, under the scene's name.
    pub fn open(dir: &Path) -> Result<Scene, SceneError> {
        let (dir, names) = scene_files(dir)?;
        let dir = dir.as_path();
        let mtl_path = find_by_suffix(dir, &names, "_MTL.txt")?;
        let mtl_text = fs::read_to_string(&mtl_path).map_err(|source| SceneError::Read {
            path: mtl_path.clone(),
            source,
        })?;
        let metadata = Metadata::parse(&mtl_text).map_err(|source| SceneError::Metadata {
            path: mtl_path,
            source,
        })?;

        let mut grid: Option<(usize, usize)> = None;
        let mut load = |suffix: String| -> Result<Vec<u16>, SceneError> {
            let path = find_by_suffix(dir, &names, &suffix)?;
            let (width, height, pixels) = read_u16_tiff(&path)?;
            match grid {
                None => grid = Some((width, height)),
                Some((w, h)) if (w, h) != (width, height) => {
                    return Err(SceneError::SizeMismatch {
                        path,
                        found_width: width,
                        found_height: height,
                        width: w,
                        height: h,
                    })
                }
                Some(_) => {}
            }
            Ok(pixels)
        };
        let reflective = Band::ALL
            .iter()
            .map(|band| load(format!("_B{}.TIF", band.number())))
            .collect::<Result<Vec<_>, _>>()?;
        let thermal_b10 = load("_B10.TIF".to_owned())?;
        let quality = load("_BQA.TIF".to_owned())?;
        let (width, height) = grid.unwrap_or_default();
        let sin_sun_elevation = metadata.sun_elevation_deg.to_radians().sin();
        Ok(Scene {
            metadata,
            width,
            height,
            reflective,
            thermal_b10,
            quality,
            sin_sun_elevation,
        })
    }

    /// Columns of the 30 m grid.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows of the 30 m grid.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Number of pixels, `width × height`; pixel indices run row by row.
    pub fn pixel_count(&self) -> usize {
        self.width * self.height
    }

    /// True when the pixel holds no measurement: BQA fill, or a zero DN in
    /// any loaded band (Level-1 products use DN 0 only for fill).
    pub fn is_fill(&self, pixel: usize) -> bool {
        self.quality(pixel).is_fill()
            || self.thermal_b10[pixel] == 0
            || self.reflective.iter().any(|band| band[pixel] == 0)
    }

    /// Top-of-atmosphere reflectance with the sun-elevation correction:
    /// `(mult · DN + add) / sin(sun elevation)` (USGS Landsat 8 handbook).
    pub fn reflectance(&self, band: Band, pixel: usize) -> f32 {
        let calibration = self.metadata.reflectance[usize::from(band.number() - 1)];
        let dn = f64::from(self.reflective[band.storage_index()][pixel]);
        ((calibration.mult * dn + calibration.add) / self.sin_sun_elevation) as f32
    }

    /// At-sensor brightness temperature of band 10 in °C:
    /// `K2 / ln(K1 / L + 1) − 273.15` with radiance `L = mult · DN + add`.
    pub fn brightness_temperature_celsius(&self, pixel: usize) -> f32 {
        let thermal = self.metadata.thermal_b10;
        let radiance =
            thermal.radiance_mult * f64::from(self.thermal_b10[pixel]) + thermal.radiance_add;
        (thermal.k2 / (thermal.k1 / radiance).ln_1p() - 273.15) as f32
    }

    /// The BQA flags of a pixel.
    pub fn quality(&self, pixel: usize) -> QualityFlags {
        QualityFlags(self.quality[pixel])
    }
}

/// The directory holding the scene and its file names: `dir`, or its only
/// subdirectory when `dir` has no MTL file (see [`Scene::open`]).
fn scene_files(dir: &Path) -> Result<(PathBuf, Vec<String>), SceneError> {
    let names = list_files(dir)?;
    let has_mtl = names
        .iter()
        .any(|name| name.to_ascii_lowercase().ends_with("_mtl.txt"));
    if !has_mtl {
        let subdirs: Vec<&String> = names.iter().filter(|name| dir.join(name).is_dir()).collect();
        if let [only] = subdirs.as_slice() {
            let inner = dir.join(only);
            let names = list_files(&inner)?;
            return Ok((inner, names));
        }
    }
    Ok((dir.to_owned(), names))
}

fn list_files(dir: &Path) -> Result<Vec<String>, SceneError> {
    let list_error = |source| SceneError::ListDirectory {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    // Directory order is filesystem-specific; sorting keeps error messages stable.
    names.sort();
    Ok(names)
}

fn find_by_suffix(dir: &Path, names: &[String], suffix: &str) -> Result<PathBuf, SceneError> {
    let suffix_lower = suffix.to_ascii_lowercase();
    let mut matches = names
        .iter()
        .filter(|name| name.to_ascii_lowercase().ends_with(&suffix_lower));
    let first = matches.next().ok_or_else(|| SceneError::MissingFile {
        dir: dir.to_owned(),
        suffix: suffix.to_owned(),
    })?;
    if let Some(second) = matches.next() {
        return Err(SceneError::AmbiguousFile {
            dir: dir.to_owned(),
            suffix: suffix.to_owned(),
            first: first.clone(),
            second: second.clone(),
        });
    }
    Ok(dir.join(first))
}

fn read_u16_tiff(path: &Path) -> Result<(usize, usize, Vec<u16>), SceneError> {
    let file = File::open(path).map_err(|source| SceneError::Read {
        path: path.to_owned(),
        source,
    })?;
    let tiff_error = |source| SceneError::Tiff {
        path: path.to_owned(),
        source,
    };
    let mut decoder = Decoder::new(BufReader::new(file)).map_err(tiff_error)?;
    let colour = decoder.colortype().map_err(tiff_error)?;
    if colour != ColorType::Gray(16) {
        return Err(SceneError::UnexpectedPixelType {
            path: path.to_owned(),
            found: format!("{colour:?}"),
        });
    }
    let (width, height) = decoder.dimensions().map_err(tiff_error)?;
    match decoder.read_image().map_err(tiff_error)? {
        DecodingResult::U16(pixels) => Ok((width as usize, height as usize, pixels)),
        _ => Err(SceneError::UnexpectedPixelType {
            path: path.to_owned(),
            found: "16-bit samples that are not unsigned integers".to_owned(),
        }),
    }
}
