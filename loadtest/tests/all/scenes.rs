//! `shoal-loadtest scenes` at a small size: 40 real-format scenes cut from the real Landsat crop,
//! one fanned-out job over them on 3 worker processes, cold then warm.

use shoal_loadtest::adversary::AdversaryKind;
use shoal_loadtest::chaos::options::VerificationMode;
use shoal_loadtest::scenes::tiles::{plan, SourceScene};
use shoal_loadtest::scenes::{default_source, ScenesOptions, ScenesProgram};
use shoal_loadtest::{Mode, RunReport};

use crate::common::{one_stack_at_a_time, read_json};

fn options(home: &std::path::Path) -> ScenesOptions {
    ScenesOptions {
        scenes: 40,
        tile: 32,
        workers: 3,
        worker_concurrency: 2,
        shards: 256,
        input_cache_bytes: 1 << 30,
        program: ScenesProgram::EchoHash,
        source: None,
        shoal: None,
        programs: None,
        home: Some(home.to_path_buf()),
        deadline_secs: 120,
        min_local_rate: 0.9,
        verifiers: 0,
        verification: VerificationMode::None,
        adversaries: Vec::new(),
        reference: false,
        report: None,
        quiet: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_scenes_fan_out_gather_every_entry_and_run_where_their_data_is_when_warm() {
    let _stack = one_stack_at_a_time().await;
    let home = tempfile::tempdir().unwrap();
    let report = options(home.path()).run("test".into()).await.unwrap();

    // A tile is a scene cloud-detect reads: the cloudiest tile gives a 32×32 mask and a cloud
    // fraction in [0, 1] from its own statistics.
    let check = &report.tile_check;
    assert_eq!(check.state, "succeeded", "{check:?}");
    assert_eq!(check.mask_size, Some((32, 32)), "{check:?}");
    assert!(check.bqa_cloud_fraction > 0.0, "the cloudiest of 40 tiles spread over the crop has BQA cloud: {check:?}");
    let fraction = check.cloud_fraction.expect("stats.json has cloud_fraction");
    assert!((0.0..=1.0).contains(&fraction), "{check:?}");
    // The mask is 0/255 only and agrees with the program's own pixel count.
    assert!(check.mask_cloud_pixels.is_some(), "{check:?}");
    assert_eq!(check.mask_cloud_pixels, check.stats_cloud_pixels, "{check:?}");
    assert!(check.ok, "{check:?}");

    for run in [&report.cold, &report.warm] {
        assert_eq!(run.job_state, "succeeded", "{} run: {:?}", run.run, run.base.examples);
        assert_eq!(run.entries, 40, "{} run", run.run);
        // Every entry is exactly the DAG echo-hash writes for its scene's files.
        assert_eq!(run.entries_ok, 40, "{} run: {:?}", run.run, run.base.examples);
        assert_eq!(run.base.submitted, 40);
        assert_eq!(run.base.succeeded, 40);
        assert_eq!((run.base.failed, run.base.lost, run.base.wrong, run.base.duplicates), (0, 0, 0, 0));
    }
    assert_eq!(report.cold.cache_hit_rate, 0.0, "nothing is cached on a fresh stack");
    assert!(report.warm.local_task_rate >= 0.9, "warm local task rate {}", report.warm.local_task_rate);
    assert!(report.passed, "{:?}", report.problems);
    assert_eq!(report.catalogue_files, 40 * 13);

    // The report's files say the same.
    let prefix = home.path().join("report");
    report.write(&prefix).unwrap();
    let json = read_json(&prefix.with_extension("json"));
    assert_eq!(json["entries"], 40);
    assert_eq!(json["warm"]["succeeded"], 40);
    assert_eq!(json["workers"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_detect_fanned_out_among_liars_gathers_only_verified_masks() {
    let _stack = one_stack_at_a_time().await;
    let home = tempfile::tempdir().unwrap();
    let options = ScenesOptions {
        program: ScenesProgram::CloudDetect,
        verifiers: 1,
        verification: VerificationMode::Always,
        adversaries: vec![AdversaryKind::Liar, AdversaryKind::Colluding],
        reference: true,
        // The adversaries' shards move when they are caught: the warm run's locality is not
        // what this test is about.
        min_local_rate: 0.0,
        ..options(home.path())
    };
    let report = options.run("test".into()).await.unwrap();
    for run in [&report.cold, &report.warm] {
        assert_eq!(run.job_state, "succeeded", "{} run: {:?}", run.run, run.base.examples);
        // Every task's result is the harness's own run of cloud-detect on its scene, accepted,
        // and gathered as it is.
        assert_eq!(
            (run.base.succeeded, run.base.wrong, run.base.wrong_accepted),
            (40, 0, 0),
            "{:?}",
            run.base.examples
        );
        assert_eq!((run.base.accepted, run.entries_ok), (40, 40), "{} run: {:?}", run.run, run.base.acceptance);
    }
    // The liars got work (the cold run corrected some of it) and are caught.
    assert!(
        report.cold.base.acceptance.get("corrected").copied().unwrap_or(0) > 0,
        "{:?}",
        report.cold.base.acceptance
    );
    assert_eq!(report.quarantined, report.adversaries, "{:?}", report.problems);
    assert!(report.passed, "{:?}", report.problems);
}

#[test]
fn a_tile_holds_every_band_at_the_window_size_and_the_scene_mtl() {
    let source = SourceScene::open(&default_source()).unwrap();
    let plan = plan(source.width, source.height, 48, 100).unwrap();
    let (row, col) = plan.windows[57];
    let files = source.tile_files(row, col, 48).unwrap();
    assert_eq!(files.len(), 13);
    for (name, bytes) in &files {
        assert!(name.starts_with("LC80200392015216LGN00_"), "{name}");
        if let Some(band) = name.strip_suffix(".TIF") {
            let mut decoder = tiff::decoder::Decoder::new(std::io::Cursor::new(bytes)).unwrap();
            let side = if band.ends_with("_B8") { 96 } else { 48 };
            assert_eq!(decoder.dimensions().unwrap(), (side, side), "{name}");
            assert_eq!(decoder.colortype().unwrap(), tiff::ColorType::Gray(16), "{name}");
            assert!(decoder.find_tag(tiff::tags::Tag::GeoKeyDirectoryTag).unwrap().is_some(), "{name}: no GeoKeys");
        } else {
            let mtl = std::fs::read(default_source().join("LC80200392015216LGN00_MTL.txt")).unwrap();
            assert_eq!(bytes, &mtl, "the MTL is the scene's own");
        }
    }
    // Neighbouring windows hold different pixels.
    let (r2, c2) = plan.windows[58];
    assert_ne!(source.tile_files(r2, c2, 48).unwrap()[0].1, files[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_detect_fanned_out_over_scenes_writes_a_mask_for_each() {
    let _stack = one_stack_at_a_time().await;
    let home = tempfile::tempdir().unwrap();
    let options = ScenesOptions { scenes: 12, program: ScenesProgram::CloudDetect, ..options(home.path()) };
    let report = options.run("test".into()).await.unwrap();
    for run in [&report.cold, &report.warm] {
        assert_eq!(run.job_state, "succeeded", "{} run: {:?}", run.run, run.base.examples);
        assert_eq!(run.entries, 12, "{} run", run.run);
        // Every entry holds a 32×32 mask.png: each task found its scene one level down.
        assert_eq!(run.entries_ok, 12, "{} run: {:?}", run.run, run.base.examples);
    }
    assert!(report.passed, "{:?}", report.problems);
}
