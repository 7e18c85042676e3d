//! Runs cloud-detect on the real Landsat 8 crop fetched by
//! `scripts/fetch-data.sh` and checks it against USGS's BQA cloud flags.

use std::fs;
use std::path::PathBuf;

use cloud_detect::cascade::{classify, FMASK};
use landsat::Scene;

fn scene_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/landsat/LC80200392015216LGN00");
    assert!(
        dir.is_dir(),
        "{} is missing: run scripts/fetch-data.sh first",
        dir.display()
    );
    dir
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloud-detect-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn scene_loads_with_physically_plausible_values() {
    let scene = Scene::open(&scene_dir()).unwrap();
    // 627 × 603 as reported by the tifffile reader; no fill in this crop.
    assert_eq!((scene.width(), scene.height()), (627, 603));
    assert!((0..scene.pixel_count()).all(|p| !scene.is_fill(p)));
    let temperatures: Vec<f32> = (0..scene.pixel_count())
        .map(|p| scene.brightness_temperature_celsius(p))
        .collect();
    let (min, max) = temperatures
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    // Cumulus tops well below freezing, sunlit ground in an August mid-morning.
    assert!(min > -40.0 && min < -10.0, "coldest {min} °C");
    assert!(max > 20.0 && max < 45.0, "warmest {max} °C");
}

#[test]
fn agreement_with_bqa_stays_at_the_reached_level() {
    let scene = Scene::open(&scene_dir()).unwrap();
    let classification = classify(&scene, &FMASK);
    let stats = cloud_detect::statistics(&scene, &classification, FMASK);
    let cloud = &stats.bqa_cloud_agreement;
    // 22 776 of 378 081 pixels have BQA cloud confidence 3 (counted with NumPy).
    assert_eq!(
        cloud.agreement.true_positive + cloud.agreement.false_negative,
        22_776
    );
    // Reached: accuracy 0.9531, IoU 0.4269 (an independent NumPy version of
    // the cascade gives the same); the margins absorb small deliberate changes.
    assert!(
        cloud.agreement.accuracy > 0.945,
        "accuracy {}",
        cloud.agreement.accuracy
    );
    assert!(cloud.agreement.iou > 0.41, "IoU {}", cloud.agreement.iou);
    assert!(
        stats.cloud_fraction > 0.04 && stats.cloud_fraction < 0.08,
        "cloud fraction {}",
        stats.cloud_fraction
    );
    // BQA's cirrus flag is a band-9 threshold too; ours (0.01) is looser, so it
    // finds all of BQA's cirrus.
    assert!(stats.bqa_cirrus_agreement.agreement.recall > 0.99);
}

#[test]
fn outputs_are_complete_consistent_and_deterministic() {
    let (first, second) = (scratch_dir("a"), scratch_dir("b"));
    let stats = cloud_detect::run(&scene_dir(), &first).unwrap();
    cloud_detect::run(&scene_dir(), &second).unwrap();
    for name in ["mask.png", "preview.png", "stats.json"] {
        assert_eq!(
            fs::read(first.join(name)).unwrap(),
            fs::read(second.join(name)).unwrap(),
            "{name} differs between runs"
        );
    }

    let mut reader = png::Decoder::new(fs::File::open(first.join("mask.png")).unwrap())
        .read_info()
        .unwrap();
    let mut mask = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut mask).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (627, 603, png::ColorType::Grayscale)
    );
    assert!(mask.iter().all(|&v| v == 0 || v == 255));
    assert_eq!(
        mask.iter().filter(|&&v| v == 255).count() as u64,
        stats.pixels.cloud
    );

    let preview = png::Decoder::new(fs::File::open(first.join("preview.png")).unwrap())
        .read_info()
        .unwrap();
    assert_eq!(
        (preview.info().width, preview.info().height),
        (2 * 627, 603)
    );

    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(first.join("stats.json")).unwrap()).unwrap();
    assert_eq!(json["scene_id"], "LC80200392015216LGN00");
    assert_eq!(json["pixels"]["cloud"], stats.pixels.cloud);
    fs::remove_dir_all(&first).unwrap();
    fs::remove_dir_all(&second).unwrap();
}

#[test]
fn missing_band_is_a_clear_error() {
    let dir = scratch_dir("partial");
    fs::create_dir_all(&dir).unwrap();
    for entry in fs::read_dir(scene_dir()).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_name().to_string_lossy().ends_with("_B10.TIF") {
            fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let error = cloud_detect::run(&dir, &dir.join("out"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("_B10.TIF"), "{error}");
    fs::remove_dir_all(&dir).unwrap();
}
