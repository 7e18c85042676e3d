//! Landsat 8 scene loading for Shoal's guest programs.
//!
//! Reads a Level-1 scene directory as USGS distributes it (one uint16 GeoTIFF
//! per band, `<scene id>_B<n>.TIF`, the `_BQA.TIF` quality band and the
//! `_MTL.txt` calibration metadata) and turns digital numbers into physical
//! quantities: top-of-atmosphere reflectance and brightness temperature.
//! Everything here is plain `std` so it compiles for `wasm32-wasip1` and for
//! the host (where `cargo test` runs it on the real sample scene).

mod image;
mod metadata;
mod quality;
mod scene;
mod stats;

pub use image::{encode_png, true_colour, PngError, RasterKind};
pub use metadata::{Metadata, MetadataError, ReflectanceCalibration, ThermalCalibration};
pub use quality::{Confidence, QualityFlags};
pub use scene::{Band, Scene, SceneError};
pub use stats::percentile;
