//! Small real-format scenes cut from one real Landsat 8 scene: every band cropped to the same
//! window, written as a uint16 GeoTIFF under the USGS file name, beside the scene's own MTL.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::encoder::{colortype, TiffEncoder};
use tiff::tags::Tag;

use crate::error::{LoadtestError, Result};

/// The GeoTIFF tags that place a band on the ground, as the source band carries them.
#[derive(Debug, Clone, Default)]
struct GeoTags {
    /// `ModelPixelScaleTag`: metres per pixel (x, y, z).
    pixel_scale: Option<Vec<f64>>,
    /// `ModelTiepointTag`: raster (i, j, k) ↔ model (x, y, z).
    tiepoint: Option<Vec<f64>>,
    /// `GeoKeyDirectoryTag`: the projection (UTM 16N here).
    key_directory: Option<Vec<u16>>,
    /// `GeoDoubleParamsTag`.
    double_params: Option<Vec<f64>>,
    /// `GeoAsciiParamsTag`.
    ascii_params: Option<String>,
}

/// One band of the source scene.
#[derive(Debug, Clone)]
struct Band {
    /// File name suffix after the scene id (`B1`, …, `B11`, `BQA`).
    suffix: String,
    width: u32,
    height: u32,
    pixels: Vec<u16>,
    geo: GeoTags,
}

/// The scene tiles are cut from, all bands in memory.
#[derive(Debug, Clone)]
pub struct SourceScene {
    /// The scene id (`LC80200392015216LGN00`), the prefix of every file name.
    pub id: String,
    /// Columns of the 30 m grid.
    pub width: u32,
    /// Rows of the 30 m grid.
    pub height: u32,
    bands: Vec<Band>,
    mtl: Vec<u8>,
}

/// A file of a tile: its name and SHA-256 (hex), what a hashing program reports for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileFile {
    /// File name inside the tile's directory.
    pub name: String,
    /// SHA-256 of its bytes, lower-case hex.
    pub sha256_hex: String,
}

/// A written tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// Directory (and fan-out entry) name: `<scene id>_r<row>_c<col>`, offsets in 30 m pixels.
    pub name: String,
    /// Its files, sorted by name.
    pub files: Vec<TileFile>,
    /// Bytes of its files.
    pub bytes: u64,
}

/// Where the tiles are cut: windows of `tile` × `tile` pixels (30 m grid) at a regular stride.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TilePlan {
    /// Window side in 30 m pixels.
    pub tile: u32,
    /// Distance between neighbouring windows, in pixels: the largest giving enough windows.
    pub stride: u32,
    /// Top-left corners (row, column), in row-major order.
    pub windows: Vec<(u32, u32)>,
}

/// `count` windows of side `tile` over a `width` × `height` grid, at the largest stride that
/// gives that many and spread evenly over the windows at that stride (row-major), so the tiles
/// cover the whole scene and no two share an offset (and so their content differs).
pub fn plan(width: u32, height: u32, tile: u32, count: usize) -> Result<TilePlan> {
    if tile == 0 || tile > width || tile > height {
        return Err(LoadtestError::Invalid(format!("a {tile}-pixel tile does not fit a {width}×{height} scene")));
    }
    let fits = |stride: u32| ((height - tile) / stride + 1) as usize * ((width - tile) / stride + 1) as usize;
    let stride = (1..=tile.max(1)).rev().find(|&s| fits(s) >= count).ok_or_else(|| {
        LoadtestError::Invalid(format!(
            "{count} distinct {tile}-pixel windows do not fit a {width}×{height} scene (at most {})",
            fits(1)
        ))
    })?;
    let columns = ((width - tile) / stride + 1) as usize;
    // Spread evenly over every window at that stride, so a few tiles still cover the scene.
    let all = fits(stride);
    let windows = (0..count)
        .map(|k| {
            let n = k * all / count;
            (((n / columns) as u32) * stride, ((n % columns) as u32) * stride)
        })
        .collect();
    Ok(TilePlan { tile, stride, windows })
}

fn tiff_error(path: &Path) -> impl Fn(tiff::TiffError) -> LoadtestError + '_ {
    move |source| LoadtestError::Tiff { path: path.to_owned(), source }
}

fn read_band(path: &Path, suffix: String) -> Result<Band> {
    let file = File::open(path).map_err(|e| LoadtestError::io(format!("opening {}", path.display()), e))?;
    let mut decoder = Decoder::new(BufReader::new(file)).map_err(tiff_error(path))?;
    let (width, height) = decoder.dimensions().map_err(tiff_error(path))?;
    let geo = GeoTags {
        pixel_scale: decoder.find_tag(Tag::ModelPixelScaleTag).ok().flatten().and_then(|v| v.into_f64_vec().ok()),
        tiepoint: decoder.find_tag(Tag::ModelTiepointTag).ok().flatten().and_then(|v| v.into_f64_vec().ok()),
        key_directory: decoder.find_tag(Tag::GeoKeyDirectoryTag).ok().flatten().and_then(|v| v.into_u16_vec().ok()),
        double_params: decoder.find_tag(Tag::GeoDoubleParamsTag).ok().flatten().and_then(|v| v.into_f64_vec().ok()),
        ascii_params: decoder.find_tag(Tag::GeoAsciiParamsTag).ok().flatten().and_then(|v| v.into_string().ok()),
    };
    let pixels = match decoder.read_image().map_err(tiff_error(path))? {
        DecodingResult::U16(pixels) => pixels,
        _ => return Err(LoadtestError::Invalid(format!("{} is not a uint16 band", path.display()))),
    };
    Ok(Band { suffix, width, height, pixels, geo })
}

impl SourceScene {
    /// Reads the scene in `dir`: `<id>_B1.TIF` … `<id>_B11.TIF`, `<id>_BQA.TIF` and
    /// `<id>_MTL.txt`, where `<id>` is the directory's name.
    pub fn open(dir: &Path) -> Result<SourceScene> {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| LoadtestError::Invalid(format!("{} has no scene id as its name", dir.display())))?;
        let suffixes = (1..=11).map(|n| format!("B{n}")).chain(std::iter::once("BQA".to_string()));
        let bands = suffixes
            .map(|suffix| read_band(&dir.join(format!("{id}_{suffix}.TIF")), suffix))
            .collect::<Result<Vec<_>>>()?;
        let grid = bands.iter().find(|b| b.suffix == "B1").map(|b| (b.width, b.height)).unwrap_or_default();
        for band in &bands {
            // B8 (panchromatic, 15 m) covers the 30 m grid at twice the resolution (this crop's
            // has one row more); every other band is on the grid.
            let factor = band.width.checked_div(grid.0).unwrap_or(0);
            if factor == 0 || band.width != grid.0 * factor || band.height < grid.1 * factor {
                return Err(LoadtestError::Invalid(format!(
                    "band {} is {}×{}, not a whole multiple of the {}×{} grid",
                    band.suffix, band.width, band.height, grid.0, grid.1
                )));
            }
        }
        let mtl_path = dir.join(format!("{id}_MTL.txt"));
        let mtl =
            std::fs::read(&mtl_path).map_err(|e| LoadtestError::io(format!("reading {}", mtl_path.display()), e))?;
        Ok(SourceScene { id, width: grid.0, height: grid.1, bands, mtl })
    }

    /// Pixels of the window at (`row`, `col`) that the BQA band flags as high-confidence cloud
    /// (bits 14–15 = 3, pre-collection layout): USGS's own assessment, to pick a cloudy tile.
    pub fn bqa_cloud_pixels(&self, row: u32, col: u32, tile: u32) -> usize {
        let Some(bqa) = self.bands.iter().find(|b| b.suffix == "BQA") else { return 0 };
        (row..row + tile)
            .flat_map(|r| (col..col + tile).map(move |c| (r * bqa.width + c) as usize))
            .filter(|&i| bqa.pixels[i] >> 14 == 3)
            .count()
    }

    /// The name of the tile at (`row`, `col`).
    pub fn tile_name(&self, row: u32, col: u32) -> String {
        format!("{}_r{row:03}_c{col:03}", self.id)
    }

    /// The files of the `tile`-pixel tile at (`row`, `col`) of the 30 m grid: each band cropped
    /// (B8 at twice the offset and size), with its GeoTIFF tags and the tiepoint moved to the
    /// tile's corner; and the MTL, unchanged.
    pub fn tile_files(&self, row: u32, col: u32, tile: u32) -> Result<Vec<(String, Vec<u8>)>> {
        let mut files = Vec::with_capacity(self.bands.len() + 1);
        for band in &self.bands {
            let factor = band.width / self.width;
            let (top, left, side) = (row * factor, col * factor, tile * factor);
            let mut pixels = Vec::with_capacity((side * side) as usize);
            for r in top..top + side {
                let start = (r * band.width + left) as usize;
                pixels.extend_from_slice(&band.pixels[start..start + side as usize]);
            }
            let name = format!("{}_{}.TIF", self.id, band.suffix);
            let bytes = encode_band(&band.geo, left, top, side, &pixels)
                .map_err(|source| LoadtestError::Tiff { path: PathBuf::from(&name), source })?;
            files.push((name, bytes));
        }
        files.push((format!("{}_MTL.txt", self.id), self.mtl.clone()));
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }

    /// Writes the tiles of `plan` under `dir` (one directory per tile) and returns them in
    /// plan order, spread over `threads` threads.
    pub fn write_tiles(&self, plan: &TilePlan, dir: &Path, threads: usize) -> Result<Vec<Tile>> {
        std::fs::create_dir_all(dir).map_err(|e| LoadtestError::io(format!("creating {}", dir.display()), e))?;
        let chunk = plan.windows.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = plan
                .windows
                .chunks(chunk)
                .map(|windows| {
                    scope.spawn(move || {
                        windows.iter().map(|&(r, c)| self.write_tile(r, c, plan.tile, dir)).collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut tiles = Vec::with_capacity(plan.windows.len());
            for handle in handles {
                tiles.extend(
                    handle.join().map_err(|_| LoadtestError::Invalid("a tile-writing thread panicked".into()))??,
                );
            }
            Ok(tiles)
        })
    }

    fn write_tile(&self, row: u32, col: u32, tile: u32, dir: &Path) -> Result<Tile> {
        let name = self.tile_name(row, col);
        let tile_dir = dir.join(&name);
        std::fs::create_dir_all(&tile_dir)
            .map_err(|e| LoadtestError::io(format!("creating {}", tile_dir.display()), e))?;
        let mut files = Vec::new();
        let mut bytes = 0;
        for (file, content) in self.tile_files(row, col, tile)? {
            let path = tile_dir.join(&file);
            std::fs::write(&path, &content).map_err(|e| LoadtestError::io(format!("writing {}", path.display()), e))?;
            bytes += content.len() as u64;
            files.push(TileFile { name: file, sha256_hex: sha256_hex(&content) });
        }
        Ok(Tile { name, files, bytes })
    }
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A single-strip uncompressed uint16 GeoTIFF of `pixels` (`side` × `side`), whose corner is
/// pixel (`left`, `top`) of the band it was cut from.
fn encode_band(geo: &GeoTags, left: u32, top: u32, side: u32, pixels: &[u16]) -> tiff::TiffResult<Vec<u8>> {
    let mut buffer = Cursor::new(Vec::new());
    {
        let mut encoder = TiffEncoder::new(&mut buffer)?;
        let mut image = encoder.new_image::<colortype::Gray16>(side, side)?;
        let directory = image.encoder();
        if let Some(scale) = &geo.pixel_scale {
            directory.write_tag(Tag::ModelPixelScaleTag, &scale[..])?;
        }
        if let Some(tiepoint) = &geo.tiepoint {
            let mut moved = tiepoint.clone();
            // The tiepoint ties raster (i, j) to model (x, y); the tile's (0, 0) is the source's
            // (left, top), so move the model point by that many pixels (y grows downwards in
            // raster space and upwards in UTM).
            if let (Some(scale), true) = (&geo.pixel_scale, moved.len() >= 6) {
                moved[3] += (f64::from(left) - moved[0]) * scale[0];
                moved[4] -= (f64::from(top) - moved[1]) * scale[1];
                moved[0] = 0.0;
                moved[1] = 0.0;
            }
            directory.write_tag(Tag::ModelTiepointTag, &moved[..])?;
        }
        if let Some(keys) = &geo.key_directory {
            directory.write_tag(Tag::GeoKeyDirectoryTag, &keys[..])?;
        }
        if let Some(doubles) = &geo.double_params {
            directory.write_tag(Tag::GeoDoubleParamsTag, &doubles[..])?;
        }
        if let Some(ascii) = &geo.ascii_params {
            directory.write_tag(Tag::GeoAsciiParamsTag, ascii.as_str())?;
        }
        image.rows_per_strip(side)?;
        image.write_data(pixels)?;
    }
    Ok(buffer.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stride_is_the_largest_that_gives_enough_distinct_windows() {
        let plan = plan(627, 603, 32, 10_000).unwrap();
        assert_eq!(plan.windows.len(), 10_000);
        // Stride 5: 115 rows × 120 columns = 13,800 windows; stride 6 gives 96 × 100 = 9,600.
        assert_eq!(plan.stride, 5);
        // Spread over the whole scene, not the first rows only.
        assert_eq!(plan.windows[0], (0, 0));
        assert!(plan.windows.last().unwrap().0 >= 603 - 32 - 5);
        let few = super::plan(627, 603, 32, 40).unwrap();
        assert!(few.windows.last().unwrap().0 >= 603 - 32 - 32, "{:?}", few.windows.last());
        let mut distinct = plan.windows.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 10_000);
        assert!(plan.windows.iter().all(|&(r, c)| r + 32 <= 603 && c + 32 <= 627));
        // Stride 1 gives 572 × 596 = 340,912 windows at most.
        assert_eq!(super::plan(627, 603, 32, 340_912).unwrap().stride, 1);
        assert!(super::plan(627, 603, 32, 340_913).is_err());
    }

    #[test]
    fn a_cut_band_reads_back_as_the_window_of_the_source() {
        let geo = GeoTags {
            pixel_scale: Some(vec![30.0, 30.0, 0.0]),
            tiepoint: Some(vec![0.0, 0.0, 0.0, 384000.0, 3469500.0, 0.0]),
            ..GeoTags::default()
        };
        let pixels: Vec<u16> = (0..16u16).map(|v| v * 1000 + 7).collect();
        let bytes = encode_band(&geo, 10, 20, 4, &pixels).unwrap();
        let mut decoder = Decoder::new(Cursor::new(bytes)).unwrap();
        assert_eq!(decoder.dimensions().unwrap(), (4, 4));
        let tiepoint = decoder.get_tag_f64_vec(Tag::ModelTiepointTag).unwrap();
        assert_eq!(tiepoint, vec![0.0, 0.0, 0.0, 384300.0, 3468900.0, 0.0]);
        match decoder.read_image().unwrap() {
            DecodingResult::U16(read) => assert_eq!(read, pixels),
            _ => panic!("not uint16"),
        }
    }
}
