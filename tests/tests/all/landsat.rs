//! Cloud detection on the real Landsat scene through the whole system, compared with the same
//! program run directly under the runtime crate; and the cloud pipeline's stages (detect, remove
//! over a threshold, summary) over tiles of it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::MemoryBlockStore;
use shoal_jobs::JobState;
use shoal_runtime::{Invocation, Limits, Mount, Runtime, RuntimeConfig};
use shoal_testkit::{program_bytes, repo_root, Stack, StackOptions};

pub(crate) const SCENE: &str = "data/landsat/LC80200392015216LGN00";
const WAIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_detect_gives_the_same_output_cid_through_the_system_and_directly() {
    let scene = repo_root().join(SCENE);
    assert!(scene.is_dir(), "{} is missing: run scripts/fetch-data.sh (make test does)", scene.display());

    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let scene_cid = stack.add_path(&scene).await.unwrap();
    let program = stack.add_program("cloud-detect").await.unwrap();
    let id = stack
        .submit_ok(
            &json!({"program": program.to_string(), "inputs": [{"cid": scene_cid.to_string(), "path": "/inputs"}]}),
        )
        .await
        .unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let through_system = job.result.unwrap().output;

    // The outputs a person checks by eye, and the statistics, are in the result.
    let mask = stack.read(through_system.cid(), "mask.png").await.unwrap();
    assert_eq!(&mask[..8], b"\x89PNG\r\n\x1a\n");
    let stats: serde_json::Value =
        serde_json::from_slice(&stack.read(through_system.cid(), "stats.json").await.unwrap()).unwrap();
    let fraction = stats["cloud_fraction"].as_f64().unwrap();
    assert!(fraction > 0.01 && fraction < 0.5, "a field of cumulus covers part of the crop: {fraction}");
    stack.shutdown().await;

    // The same program, scene and limits, run directly: argv[0] is the program CID, as the
    // worker passes it. The invocation is spelled out here rather than taken from the worker, so
    // a mistake there would show as a different CID.
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let compiled = runtime.compile(&program_bytes("cloud-detect")).unwrap();
    let outputs = tempfile::tempdir().unwrap();
    let defaults = shoal_jobs::Limits::default();
    let outcome = runtime
        .run(
            &compiled,
            Invocation {
                entrypoint: "_start".into(),
                args: vec![program.to_string()],
                env: BTreeMap::new(),
                mounts: vec![
                    Mount { host: scene.clone(), guest: "/inputs".into(), writable: false },
                    Mount { host: outputs.path().to_path_buf(), guest: "/outputs".into(), writable: true },
                ],
                limits: Limits {
                    fuel: defaults.fuel,
                    memory_bytes: defaults.memory_bytes,
                    wall_time: Duration::from_millis(defaults.wall_time_ms),
                    stdout_bytes: defaults.log_bytes as usize,
                    stderr_bytes: defaults.log_bytes as usize,
                    output_bytes: defaults.output_bytes,
                    ..Limits::default()
                },
                determinism: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 0);
    let options = ImportOptions { include_hidden: true, ..ImportOptions::default() };
    let direct = unixfs::import_path(outputs.path(), &options, &MemoryBlockStore::new()).await.unwrap().root;
    assert_eq!(through_system.to_string(), direct.to_string());
}

/// Side of the tiles cut from the real crop, in 30 m pixels.
const TILE: u32 = 128;

/// Tiles (row, column) of the real crop: two one above the other in the dense western end of the
/// band of cumulus, one further east in its thinner middle, and one of clear fields in the
/// south-east. cloud-detect finds less cloud in a small tile than in the whole crop (its
/// thresholds adapt to the tile's clear pixels): 9.0 %, 8.9 %, 4.5 % and 0.01 %.
pub(crate) const TILES: [(u32, u32); 4] = [(128, 0), (256, 0), (128, 128), (448, 384)];

/// The cloud pipeline's condition for removing clouds (`jobs/tests/fixtures/cloud-pipeline.json`).
pub(crate) const THRESHOLD: f64 = 0.05;

/// Writes the `TILE`-pixel window at (`row`, `col`) of the scene in `scene` into `dir`: each band
/// on the 30 m grid cropped into an uncompressed uint16 TIFF (the 15 m panchromatic band, which
/// cloud-detect does not read, left out) and the MTL as it is.
pub(crate) fn cut_tile(scene: &Path, row: u32, col: u32, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for entry in fs::read_dir(scene).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".TIF") {
            fs::copy(&path, dir.join(&name)).unwrap();
            continue;
        }
        let mut decoder = tiff::decoder::Decoder::new(File::open(&path).unwrap()).unwrap();
        let (width, height) = decoder.dimensions().unwrap();
        if (width, height) != (627, 603) {
            continue; // B8, on the 15 m grid (this crop is 627 × 603 at 30 m)
        }
        let tiff::decoder::DecodingResult::U16(pixels) = decoder.read_image().unwrap() else {
            panic!("{name} is not uint16");
        };
        let window: Vec<u16> = (row..row + TILE)
            .flat_map(|r| {
                let start = (r * width + col) as usize;
                pixels[start..start + TILE as usize].to_vec()
            })
            .collect();
        let mut encoder = tiff::encoder::TiffEncoder::new(File::create(dir.join(&name)).unwrap()).unwrap();
        encoder.write_image::<tiff::encoder::colortype::Gray16>(TILE, TILE, &window).unwrap();
    }
}

/// Width, height and RGB bytes of a PNG.
fn decode_rgb(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(png_bytes).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.color_type, frame.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
    pixels.truncate(frame.buffer_size());
    (frame.width, frame.height, pixels)
}

/// Runs one job to success and returns its output's root.
async fn run_job(stack: &Stack, spec: &serde_json::Value) -> cid::Cid {
    let id = stack.submit_ok(spec).await.unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    let result = job.result.clone().unwrap();
    let stderr = stack.read(result.stderr.cid(), "").await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{spec}: {}: {job:?}", String::from_utf8_lossy(&stderr));
    *result.output.cid()
}

/// The cloud pipeline by hand, stage by stage, each stage's fan-in directory assembled from the
/// outputs as a pipeline gathers them (`<stage>.all`: a subdirectory per tile, named as the tile).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_summary_tables_every_tile_and_shows_the_cleared_ones() {
    let scene = repo_root().join(SCENE);
    assert!(scene.is_dir(), "{} is missing: run scripts/fetch-data.sh (make test does)", scene.display());
    let work = tempfile::tempdir().unwrap();
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let detect = stack.add_program("cloud-detect").await.unwrap();
    let remove = stack.add_program("cloud-remove").await.unwrap();
    let summary = stack.add_program("cloud-summary").await.unwrap();

    let mut tiles = Vec::new();
    for (row, col) in TILES {
        let name = format!("LC80200392015216LGN00_r{row:03}_c{col:03}");
        let dir = work.path().join("tiles").join(&name);
        cut_tile(&scene, row, col, &dir);
        tiles.push((name, stack.add_path(&dir).await.unwrap()));
    }
    let mut fractions = BTreeMap::new();
    for (name, tile) in &tiles {
        let spec = json!({"program": detect.to_string(), "inputs": [{"cid": tile.to_string(), "path": "/inputs"}]});
        let detected = run_job(&stack, &spec).await;
        let dir = work.path().join("detected").join(name);
        fs::create_dir_all(&dir).unwrap();
        for file in ["mask.png", "preview.png", "stats.json"] {
            fs::write(dir.join(file), stack.read(&detected, file).await.unwrap()).unwrap();
        }
        let stats: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("stats.json")).unwrap()).unwrap();
        let fraction = stats["cloud_fraction"].as_f64().unwrap();
        fractions.insert(name.clone(), fraction);
        if fraction > THRESHOLD {
            let spec = json!({"program": remove.to_string(), "inputs": [
                {"cid": tile.to_string(), "path": "/inputs"},
                {"cid": detected.to_string(), "path": "/mask"},
            ]});
            let removed = run_job(&stack, &spec).await;
            let dir = work.path().join("cleared").join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("clear.png"), stack.read(&removed, "clear.png").await.unwrap()).unwrap();
        }
    }
    eprintln!("cloud fractions of the tiles: {fractions:?}");
    let cleared: Vec<&String> = fractions.iter().filter(|(_, &f)| f > THRESHOLD).map(|(name, _)| name).collect();
    assert_eq!(cleared.len(), 2, "the two western tiles are over {THRESHOLD}, the others are not: {fractions:?}");

    let detected_all = stack.add_path(&work.path().join("detected")).await.unwrap();
    let cleared_all = stack.add_path(&work.path().join("cleared")).await.unwrap();
    let spec = json!({"program": summary.to_string(), "inputs": [
        {"cid": detected_all.to_string(), "path": "/detected"},
        {"cid": cleared_all.to_string(), "path": "/cleared"},
    ]});
    let output = run_job(&stack, &spec).await;

    // The table: every tile in name order, its fraction exactly detect's, cleared as the
    // threshold says.
    let csv = String::from_utf8(stack.read(&output, "summary.csv").await.unwrap()).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("scene,cloud_fraction,cleared"));
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert_eq!(rows.len(), fractions.len(), "{csv}");
    for (row, (name, &fraction)) in rows.iter().zip(&fractions) {
        assert_eq!(row[0], name);
        assert_eq!(row[1].parse::<f64>().unwrap(), fraction, "{csv}");
        assert_eq!(row[2], if fraction > THRESHOLD { "yes" } else { "no" });
    }
    let json: serde_json::Value = serde_json::from_slice(&stack.read(&output, "summary.json").await.unwrap()).unwrap();
    assert_eq!(json["counts"], json!({"scenes": 4, "cleared": 2, "not_cleared": 2}));
    assert_eq!(json["contact_sheet"]["scenes"], json!(cleared));

    // The contact sheet: two 128-pixel cells side by side, each over two label lines, 4 px apart;
    // the removed clouds show magenta. It is the picture in docs/images.
    let sheet = stack.read(&output, "contact-sheet.png").await.unwrap();
    let (width, height, rgb) = decode_rgb(&sheet);
    assert_eq!((json["contact_sheet"]["columns"].as_u64(), json["contact_sheet"]["rows"].as_u64()), (Some(2), Some(1)));
    assert_eq!((width, height), (4 + 2 * (128 + 4), 4 + 128 + 14 + 4));
    let magenta = rgb.chunks_exact(3).filter(|pixel| *pixel == [255, 0, 255]).count();
    assert!(magenta > 0, "cleared tiles have clouds removed");
    assert_eq!(sheet, fs::read(repo_root().join("docs/images/pipeline-summary.png")).unwrap());

    // A fan-in over nothing: no tiles detected, no cleared directory mounted at all.
    let empty = work.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let none = stack.add_path(&empty).await.unwrap();
    let spec = json!({"program": summary.to_string(), "inputs": [{"cid": none.to_string(), "path": "/detected"}]});
    let output = run_job(&stack, &spec).await;
    assert_eq!(stack.read(&output, "summary.csv").await.unwrap(), b"scene,cloud_fraction,cleared\n");
    let json: serde_json::Value = serde_json::from_slice(&stack.read(&output, "summary.json").await.unwrap()).unwrap();
    assert_eq!(json["counts"], json!({"scenes": 0, "cleared": 0, "not_cleared": 0}));
    assert_eq!(json["scenes"], json!([]));
    let (width, height, _) = decode_rgb(&stack.read(&output, "contact-sheet.png").await.unwrap());
    assert_eq!((width, height), (4, 4));
    stack.shutdown().await;
}
