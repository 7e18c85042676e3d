//! `cloud-summary`: the fan-in stage of the cloud pipeline. From every scene's `cloud-detect`
//! output and the `cloud-remove` output of the scenes that were cleared, it writes a table of
//! cloud fractions (CSV and JSON) and a contact sheet of the cleared scenes.
//!
//! Both input directories hold one subdirectory per scene, named as the scene (the layout of a
//! pipeline's `<stage>.all`). A missing directory counts as empty: a fan-in over no files, or a
//! condition no scene met, leaves nothing to mount.

mod font;

use std::fs;
use std::io::{BufReader, ErrorKind};
use std::path::{Path, PathBuf};

use landsat::{encode_png, PngError, RasterKind};
use serde::Serialize;

/// The table, one row per scene: `scene,cloud_fraction,cleared`.
pub const CSV_NAME: &str = "summary.csv";
/// The same rows with counts and the contact sheet's layout.
pub const JSON_NAME: &str = "summary.json";
/// The grid of cleared scenes.
pub const SHEET_NAME: &str = "contact-sheet.png";
/// What `cloud-detect` writes per scene and this program reads.
pub const STATS_NAME: &str = "stats.json";
/// What `cloud-remove` writes per scene and the contact sheet shows.
pub const CLEAR_NAME: &str = "clear.png";

/// Largest thumbnail side, in pixels.
const MAX_CELL: usize = 128;
/// Smallest thumbnail side: below it a scene is unrecognisable anyway.
const MIN_CELL: usize = 16;
/// The sheet's width is kept near this many pixels by shrinking thumbnails, so that thousands
/// of cleared scenes still give a PNG the guest's memory can hold.
const MAX_SHEET_WIDTH: usize = 4096;
/// Margin around and between cells.
const PAD: usize = 4;
/// Two label lines under each thumbnail: the scene and its cloud fraction.
const LABEL_HEIGHT: usize = 2 * (font::HEIGHT + 2);
const BACKGROUND: [u8; 3] = [255, 255, 255];
/// Behind a thumbnail, so a scene narrower than its cell shows where it ends.
const CELL_BACKGROUND: [u8; 3] = [224, 224, 224];
const TEXT: [u8; 3] = [0, 0, 0];
/// Where `clear.png` is transparent (cloud removed, or fill): a colour no landscape has.
const REMOVED: [u8; 3] = [255, 0, 255];

/// Why the summary could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// What was written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An input directory holds something other than one directory per scene.
    #[error(
        "{path} is not a scene's directory (each entry must be a directory named as the scene)"
    )]
    NotASceneDirectory {
        /// The entry.
        path: PathBuf,
    },
    /// A scene's name is not UTF-8, so it cannot go into the CSV or JSON.
    #[error("{path}: scene names must be UTF-8")]
    NonUtf8Name {
        /// The entry.
        path: PathBuf,
    },
    /// `stats.json` is not JSON with a `cloud_fraction` between 0 and 1.
    #[error("{path}: {reason}")]
    Stats {
        /// The stats file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A cleared scene has no detection result, so it has no cloud fraction.
    #[error("scene {scene:?} was cleared but has no cloud-detect output")]
    ClearedWithoutDetection {
        /// The scene.
        scene: String,
    },
    /// A cleared scene's image is not a decodable PNG.
    #[error("cannot decode {path}: {source}")]
    Decode {
        /// The image.
        path: PathBuf,
        /// The underlying error.
        source: png::DecodingError,
    },
    /// The contact sheet could not be encoded.
    #[error(transparent)]
    Encode(#[from] PngError),
    /// The JSON summary could not be serialised.
    #[error("cannot serialise the summary: {0}")]
    Json(#[from] serde_json::Error),
}

/// One scene's row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SceneRow {
    /// The scene's name: its directory's name in the inputs.
    pub scene: String,
    /// `cloud_fraction` from its `stats.json`.
    pub cloud_fraction: f64,
    /// Whether `cloud-remove` ran on it (it has an entry among the cleared scenes).
    pub cleared: bool,
}

/// Scene counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Scenes detected.
    pub scenes: usize,
    /// Of those, scenes cleared.
    pub cleared: usize,
    /// Of those, scenes left as they were.
    pub not_cleared: usize,
}

/// Where the contact sheet puts the cleared scenes: row-major, in the table's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SheetLayout {
    /// The PNG's file name.
    pub file: String,
    /// Cells per row.
    pub columns: usize,
    /// Rows of cells.
    pub rows: usize,
    /// Thumbnail side in pixels (each thumbnail fits a square this size, aspect kept).
    pub cell: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// The scenes shown, in cell order.
    pub scenes: Vec<String>,
}

/// Everything `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Every scene, sorted by name.
    pub scenes: Vec<SceneRow>,
    /// How many scenes, cleared and not.
    pub counts: Counts,
    /// The contact sheet.
    pub contact_sheet: SheetLayout,
}

/// Reads the scenes under `detected` (each with `stats.json`) and `cleared` (each with
/// `clear.png`), and writes [`CSV_NAME`], [`JSON_NAME`] and [`SHEET_NAME`] into `outputs`.
pub fn run(detected: &Path, cleared: &Path, outputs: &Path) -> Result<Summary, SummaryError> {
    let detected_scenes = scene_dirs(detected)?;
    let cleared_scenes = scene_dirs(cleared)?;
    if let Some((scene, _)) = cleared_scenes.iter().find(|(scene, _)| {
        detected_scenes
            .binary_search_by(|(name, _)| name.cmp(scene))
            .is_err()
    }) {
        return Err(SummaryError::ClearedWithoutDetection {
            scene: scene.clone(),
        });
    }

    let mut rows = Vec::with_capacity(detected_scenes.len());
    for (scene, dir) in &detected_scenes {
        rows.push(SceneRow {
            scene: scene.clone(),
            cloud_fraction: cloud_fraction(&dir.join(STATS_NAME))?,
            cleared: cleared_scenes.iter().any(|(name, _)| name == scene),
        });
    }
    let images: Vec<(String, String, Image)> = cleared_scenes
        .iter()
        .map(|(scene, dir)| {
            let fraction = rows
                .iter()
                .find(|row| &row.scene == scene)
                .map_or(0.0, |row| row.cloud_fraction);
            let label = format!("{:.1}% cloud", fraction * 100.0);
            Ok((scene.clone(), label, read_image(&dir.join(CLEAR_NAME))?))
        })
        .collect::<Result<_, SummaryError>>()?;
    let (layout, sheet) = contact_sheet(&images)?;

    let counts = Counts {
        scenes: rows.len(),
        cleared: images.len(),
        not_cleared: rows.len() - images.len(),
    };
    let summary = Summary {
        scenes: rows,
        counts,
        contact_sheet: layout,
    };
    let mut json = serde_json::to_vec_pretty(&summary)?;
    json.push(b'\n');
    write(&outputs.join(CSV_NAME), csv(&summary.scenes).as_bytes())?;
    write(&outputs.join(JSON_NAME), &json)?;
    write(&outputs.join(SHEET_NAME), &sheet)?;
    Ok(summary)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SummaryError> {
    fs::write(path, bytes).map_err(|source| SummaryError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The scene directories under `dir`, sorted by name; none if `dir` does not exist.
fn scene_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, SummaryError> {
    let read_error = |source| SummaryError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Err(error) if is_absent(&error) => return Ok(Vec::new()),
        other => other.map_err(read_error)?,
    };
    let mut scenes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_error)?;
        let path = entry.path();
        if !entry.file_type().map_err(read_error)?.is_dir() {
            return Err(SummaryError::NotASceneDirectory { path });
        }
        let Ok(name) = entry.file_name().into_string() else {
            return Err(SummaryError::NonUtf8Name { path });
        };
        scenes.push((name, path));
    }
    // Directory order is the file system's; the outputs must not depend on it.
    scenes.sort();
    Ok(scenes)
}

/// WASI's `ENOTCAPABLE` (wasi-libc's value).
const ENOTCAPABLE: i32 = 76;

/// Whether `error`, from listing an input directory, means there is none: the path does not
/// exist, or (under WASI) lies outside every preopened directory, as an input the job did not
/// mount at all does.
fn is_absent(error: &std::io::Error) -> bool {
    error.kind() == ErrorKind::NotFound
        || (cfg!(target_os = "wasi") && error.raw_os_error() == Some(ENOTCAPABLE))
}

fn cloud_fraction(path: &Path) -> Result<f64, SummaryError> {
    let bytes = fs::read(path).map_err(|source| SummaryError::Read {
        path: path.to_owned(),
        source,
    })?;
    let stats_error = |reason: String| SummaryError::Stats {
        path: path.to_owned(),
        reason,
    };
    let stats: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|error| stats_error(error.to_string()))?;
    match stats
        .get("cloud_fraction")
        .and_then(serde_json::Value::as_f64)
    {
        Some(fraction) if (0.0..=1.0).contains(&fraction) => Ok(fraction),
        _ => Err(stats_error(format!(
            "cloud_fraction must be a number from 0 to 1, found {}",
            stats
                .get("cloud_fraction")
                .unwrap_or(&serde_json::Value::Null)
        ))),
    }
}

/// The table as CSV, with a header line.
fn csv(rows: &[SceneRow]) -> String {
    let mut out = String::from("scene,cloud_fraction,cleared\n");
    for row in rows {
        // `{}` prints an f64 in its shortest form that parses back to the same value.
        out += &format!(
            "{},{},{}\n",
            csv_field(&row.scene),
            row.cloud_fraction,
            if row.cleared { "yes" } else { "no" }
        );
    }
    out
}

/// `field` quoted as RFC 4180 requires when it holds a comma, quote or line break.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// An 8-bit RGBA raster.
struct Image {
    width: usize,
    height: usize,
    rgba: Vec<u8>,
}

/// Reads a PNG of any colour type and depth as 8-bit RGBA.
fn read_image(path: &Path) -> Result<Image, SummaryError> {
    let file = fs::File::open(path).map_err(|source| SummaryError::Read {
        path: path.to_owned(),
        source,
    })?;
    let decode_error = |source| SummaryError::Decode {
        path: path.to_owned(),
        source,
    };
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(decode_error)?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).map_err(decode_error)?;
    pixels.truncate(frame.buffer_size());
    let rgba = match frame.color_type {
        png::ColorType::Rgba => pixels,
        png::ColorType::Rgb => pixels
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => pixels
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        // Indexed is expanded to RGB(A) by the transformation, so only grey is left.
        _ => pixels.iter().flat_map(|&g| [g, g, g, 255]).collect(),
    };
    Ok(Image {
        width: frame.width as usize,
        height: frame.height as usize,
        rgba,
    })
}

/// `image` composited over [`REMOVED`] and resized to fit a `side` × `side` square, aspect
/// kept: each thumbnail pixel is the mean of the source pixels it covers (or the nearest one,
/// when enlarging). Returns width, height and RGB bytes.
fn thumbnail(image: &Image, side: usize) -> (usize, usize, Vec<u8>) {
    let longest = image.width.max(image.height).max(1);
    let fit = |length: usize| ((length * side + longest / 2) / longest).max(1);
    let (width, height) = (fit(image.width), fit(image.height));
    let span = |index: usize, to: usize, from: usize| {
        let start = index * from / to;
        (start, ((index + 1) * from / to).max(start + 1))
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let (top, bottom) = span(y, height, image.height);
        for x in 0..width {
            let (left, right) = span(x, width, image.width);
            let mut sums = [0u64; 3];
            for row in top..bottom {
                for column in left..right {
                    let pixel = &image.rgba[(row * image.width + column) * 4..][..4];
                    let alpha = u64::from(pixel[3]);
                    for (sum, (&value, &under)) in sums.iter_mut().zip(pixel.iter().zip(&REMOVED)) {
                        *sum += (u64::from(value) * alpha + u64::from(under) * (255 - alpha) + 127)
                            / 255;
                    }
                }
            }
            let count = ((bottom - top) * (right - left)) as u64;
            rgb.extend(sums.map(|sum| ((sum + count / 2) / count) as u8));
        }
    }
    (width, height, rgb)
}

/// The contact sheet of `scenes` (name, caption, image): cells of one thumbnail over two label
/// lines, in a near-square grid, row-major. With no scenes, a blank `PAD` × `PAD` image.
fn contact_sheet(
    scenes: &[(String, String, Image)],
) -> Result<(SheetLayout, Vec<u8>), SummaryError> {
    let count = scenes.len();
    let columns = (0..=count).find(|c| c * c >= count).unwrap_or(count);
    let rows = if count == 0 {
        0
    } else {
        count.div_ceil(columns)
    };
    let cell = (MAX_SHEET_WIDTH / columns.max(1))
        .saturating_sub(PAD)
        .clamp(MIN_CELL, MAX_CELL);
    let width = PAD + columns * (cell + PAD);
    let height = PAD + rows * (cell + LABEL_HEIGHT + PAD);
    let mut canvas = Canvas {
        width,
        rgb: BACKGROUND.repeat(width * height),
    };
    for (index, (scene, caption, image)) in scenes.iter().enumerate() {
        let left = PAD + (index % columns) * (cell + PAD);
        let top = PAD + (index / columns) * (cell + LABEL_HEIGHT + PAD);
        canvas.fill(left, top, cell, cell, CELL_BACKGROUND);
        let (thumb_width, thumb_height, thumb) = thumbnail(image, cell);
        canvas.paste(
            left + (cell - thumb_width) / 2,
            top + (cell - thumb_height) / 2,
            thumb_width,
            &thumb,
        );
        canvas.text(left, top + cell + 2, cell, scene);
        canvas.text(left, top + cell + 2 + font::HEIGHT + 2, cell, caption);
    }
    let png = encode_png(width, height, RasterKind::Rgb, &canvas.rgb)?;
    let layout = SheetLayout {
        file: SHEET_NAME.to_owned(),
        columns,
        rows,
        cell,
        width,
        height,
        scenes: scenes.iter().map(|(scene, _, _)| scene.clone()).collect(),
    };
    Ok((layout, png))
}

/// An RGB raster being drawn on.
struct Canvas {
    width: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: usize, y: usize, colour: [u8; 3]) {
        let at = (y * self.width + x) * 3;
        self.rgb[at..at + 3].copy_from_slice(&colour);
    }

    fn fill(&mut self, left: usize, top: usize, width: usize, height: usize, colour: [u8; 3]) {
        for y in top..top + height {
            for x in left..left + width {
                self.set(x, y, colour);
            }
        }
    }

    /// Copies RGB rows of `width` pixels with their top-left corner at (`left`, `top`).
    fn paste(&mut self, left: usize, top: usize, width: usize, rgb: &[u8]) {
        for (row, pixels) in rgb.chunks_exact(width * 3).enumerate() {
            let at = ((top + row) * self.width + left) * 3;
            self.rgb[at..at + pixels.len()].copy_from_slice(pixels);
        }
    }

    /// Draws `text` from (`left`, `top`), cut at the last whole glyph within `max_width`.
    fn text(&mut self, left: usize, top: usize, max_width: usize, text: &str) {
        for (index, c) in text
            .chars()
            .take((max_width + 1) / font::ADVANCE)
            .enumerate()
        {
            let x0 = left + index * font::ADVANCE;
            for (y, bits) in font::glyph(c).into_iter().enumerate() {
                for x in 0..font::WIDTH {
                    if bits >> (font::WIDTH - 1 - x) & 1 == 1 {
                        self.set(x0 + x, top + y, TEXT);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path =
                std::env::temp_dir().join(format!("cloud-summary-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn detected(root: &Path, scene: &str, stats: &str) {
        let dir = root.join("detected").join(scene);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(STATS_NAME), stats).unwrap();
    }

    /// A cleared scene of `width` × `height` green pixels whose left half is transparent.
    fn cleared(root: &Path, scene: &str, width: usize, height: usize) {
        let dir = root.join("cleared").join(scene);
        fs::create_dir_all(&dir).unwrap();
        let rgba: Vec<u8> = (0..width * height)
            .flat_map(|p| [0, 200, 0, if p % width < width / 2 { 0 } else { 255 }])
            .collect();
        fs::write(
            dir.join(CLEAR_NAME),
            encode_png(width, height, RasterKind::Rgba, &rgba).unwrap(),
        )
        .unwrap();
    }

    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(fs::File::open(path).unwrap())
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (info.width, info.height, pixels)
    }

    #[test]
    fn tables_every_scene_in_name_order_and_shows_the_cleared_ones() {
        let scratch = Scratch::new("three");
        let root = &scratch.0;
        detected(
            root,
            "b,odd",
            r#"{"cloud_fraction": 0.25, "scene_id": "x"}"#,
        );
        detected(root, "a", r#"{"cloud_fraction": 0.0125}"#);
        detected(root, "c", r#"{"cloud_fraction": 0.5}"#);
        cleared(root, "c", 40, 20);
        cleared(root, "b,odd", 300, 300);
        let out = root.join("out");
        fs::create_dir(&out).unwrap();
        let summary = run(&root.join("detected"), &root.join("cleared"), &out).unwrap();

        assert_eq!(
            fs::read_to_string(out.join(CSV_NAME)).unwrap(),
            "scene,cloud_fraction,cleared\na,0.0125,no\n\"b,odd\",0.25,yes\nc,0.5,yes\n"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join(JSON_NAME)).unwrap()).unwrap();
        assert_eq!(
            json["counts"],
            serde_json::json!({"scenes": 3, "cleared": 2, "not_cleared": 1})
        );
        assert_eq!(
            json["scenes"][1],
            serde_json::json!({"scene": "b,odd", "cloud_fraction": 0.25, "cleared": true})
        );
        assert_eq!(
            json["contact_sheet"]["scenes"],
            serde_json::json!(["b,odd", "c"])
        );

        // Two cells side by side; the transparent half of a thumbnail is magenta, the rest green.
        let layout = &summary.contact_sheet;
        assert_eq!((layout.columns, layout.rows, layout.cell), (2, 1, MAX_CELL));
        let (width, height, rgb) = decode(&out.join(SHEET_NAME));
        assert_eq!(
            (width as usize, height as usize),
            (layout.width, layout.height)
        );
        assert_eq!(
            (layout.width, layout.height),
            (
                PAD + 2 * (MAX_CELL + PAD),
                PAD + MAX_CELL + LABEL_HEIGHT + PAD
            )
        );
        let pixel = |x: usize, y: usize| &rgb[(y * layout.width + x) * 3..][..3];
        assert_eq!(pixel(PAD + 10, PAD + 64), REMOVED);
        assert_eq!(pixel(PAD + 118, PAD + 64), [0, 200, 0]);
        // The 40 × 20 scene is scaled up to 128 × 64, centred, on the cell's grey.
        let second = PAD + MAX_CELL + PAD;
        assert_eq!(pixel(second + 100, PAD + 64), [0, 200, 0]);
        assert_eq!(pixel(second + 100, PAD + 10), CELL_BACKGROUND);
        // Each label's first glyph is drawn under its cell.
        let label = (PAD + MAX_CELL + 2..PAD + MAX_CELL + 2 + font::HEIGHT)
            .any(|y| (second..second + font::WIDTH).any(|x| pixel(x, y) == TEXT));
        assert!(label);
    }

    #[test]
    fn no_scenes_give_empty_tables_and_a_blank_sheet() {
        let scratch = Scratch::new("none");
        let out = scratch.0.join("out");
        fs::create_dir(&out).unwrap();
        fs::create_dir(scratch.0.join("detected")).unwrap();
        let summary = run(
            &scratch.0.join("detected"),
            &scratch.0.join("missing"),
            &out,
        )
        .unwrap();
        assert_eq!(
            summary.counts,
            Counts {
                scenes: 0,
                cleared: 0,
                not_cleared: 0
            }
        );
        assert_eq!(
            fs::read_to_string(out.join(CSV_NAME)).unwrap(),
            "scene,cloud_fraction,cleared\n"
        );
        let (width, height, rgb) = decode(&out.join(SHEET_NAME));
        assert_eq!((width as usize, height as usize), (PAD, PAD));
        assert!(rgb.chunks_exact(3).all(|p| p == BACKGROUND));
    }

    #[test]
    fn refuses_inputs_it_cannot_account_for() {
        let scratch = Scratch::new("bad");
        let root = &scratch.0;
        let out = root.join("out");
        fs::create_dir(&out).unwrap();
        detected(root, "a", r#"{"cloud_fraction": 0.1}"#);
        cleared(root, "z", 4, 4);
        let error = run(&root.join("detected"), &root.join("cleared"), &out).unwrap_err();
        assert!(
            matches!(error, SummaryError::ClearedWithoutDetection { ref scene } if scene == "z"),
            "{error}"
        );

        detected(root, "b", r#"{"cloud_fraction": "lots"}"#);
        let error = run(&root.join("detected"), &root.join("none"), &out).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cloud_fraction must be a number from 0 to 1, found \"lots\""),
            "{error}"
        );

        fs::write(root.join("detected").join("notes.txt"), "not a scene").unwrap();
        let error = run(&root.join("detected"), &root.join("none"), &out).unwrap_err();
        assert!(
            matches!(error, SummaryError::NotASceneDirectory { .. }),
            "{error}"
        );
    }
}
