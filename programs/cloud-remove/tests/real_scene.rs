//! cloud-remove on the real Landsat 8 crop with a mask from cloud-detect.

use std::fs;
use std::path::PathBuf;

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

#[test]
fn cloudy_pixels_of_the_mask_become_transparent() {
    let root = std::env::temp_dir().join(format!("cloud-remove-real-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let stats = cloud_detect::run(&scene_dir(), &root.join("mask")).unwrap();
    let summary = cloud_remove::run(&scene_dir(), &root.join("mask"), &root.join("out")).unwrap();
    assert_eq!(summary.transparent as u64, stats.pixels.cloud);

    let mut reader = png::Decoder::new(
        fs::File::open(root.join("out").join(cloud_remove::OUTPUT_NAME)).unwrap(),
    )
    .read_info()
    .unwrap();
    let mut rgba = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut rgba).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (627, 603, png::ColorType::Rgba)
    );
    let (_, mask) = cloud_remove::read_mask(&root.join("mask")).unwrap();
    for (pixel, &cloud) in rgba.chunks_exact(4).zip(&mask.pixels) {
        assert_eq!(pixel[3], if cloud == 255 { 0 } else { 255 });
    }
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn mask_of_another_size_is_rejected() {
    let root = std::env::temp_dir().join(format!("cloud-remove-size-{}", std::process::id()));
    fs::create_dir_all(&root).unwrap();
    let small = landsat::encode_png(4, 4, landsat::RasterKind::Gray, &[0; 16]).unwrap();
    fs::write(root.join("mask.png"), small).unwrap();
    let error = cloud_remove::run(&scene_dir(), &root, &root.join("out")).unwrap_err();
    assert!(
        matches!(error, cloud_remove::CloudRemoveError::SizeMismatch { .. }),
        "{error}"
    );
    fs::remove_dir_all(&root).unwrap();
}
