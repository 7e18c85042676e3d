//! The committed guest programs (`programs/wasm/*.wasm`) against their
//! manifest and under Shoal's own runtime.
//!
//! * every module matches the size, sha256 and CID that `programs/manifest.json`
//!   records, the CID recomputed here with `shoal-content` (the manifest's was
//!   written by `scripts/guest-toolchain.sh`, an independent implementation);
//! * each sandbox test program fails in the way it was written to (trap, fuel,
//!   memory, stack, output cap) and `echo-hash`'s report is exactly what this
//!   test computes for itself;
//! * `cloud-detect` runs on the real Landsat 8 crop, then `cloud-remove` on its
//!   result, and `cell-count` on the real microscopy image, with the figures
//!   their READMEs state.
//!
//! The Landsat crop is not committed: `scripts/fetch-data.sh` fetches it (the
//! Makefile runs it before the tests).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use shoal_content::unixfs::{import_path, import_reader, ImportOptions};
use shoal_content::MemoryBlockStore;
use shoal_runtime::{
    FailureKind, GuestFailure, Invocation, Limits, Mount, Outcome, Program, RunError, Runtime, RuntimeConfig,
    GUEST_WALL_CLOCK,
};
use shoal_testkit::repo_root;

use crate::sha256_hex;

/// Every module the guest workspace builds, in manifest order.
const PROGRAMS: [&str; 14] = [
    "cloud-detect",
    "cloud-remove",
    "cloud-summary",
    "cell-count",
    "echo-hash",
    "trap",
    "infinite-loop",
    "memory-bomb",
    "huge-output",
    "stack-overflow",
    "nondeterministic",
    "abuse",
    "ml-train",
    "ml-compare",
];

/// kubo's chunk size: a module up to this size is a single raw block.
const CHUNK_BYTES: u64 = 256 * 1024;

const SCENE_ID: &str = "LC80200392015216LGN00";

#[derive(Debug, Deserialize)]
struct Manifest {
    target: String,
    programs: Vec<ManifestEntry>,
}

#[derive(Debug, Deserialize)]
struct ManifestEntry {
    name: String,
    file: String,
    size: u64,
    sha256: String,
    cid: String,
}

fn programs_dir() -> PathBuf {
    repo_root().join("programs")
}

fn manifest() -> Result<Manifest> {
    let path = programs_dir().join("manifest.json");
    let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The CID `ipfs add --cid-version=1` gives `bytes`, computed by shoal-content.
async fn unixfs_cid(bytes: &[u8]) -> Result<String> {
    let store = MemoryBlockStore::new();
    let imported = import_reader(bytes, &ImportOptions::default(), &store).await?;
    Ok(imported.root.to_string())
}

/// One runtime for the tests of this module, as a worker has: they run
/// concurrently and share its instance slots.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("default runtime"))
}

fn compile(name: &str) -> Result<Program> {
    let path = programs_dir().join("wasm").join(format!("{name}.wasm"));
    let wasm = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(runtime().compile(&wasm)?)
}

/// Limits generous enough for every program here, so each test tightens
/// only the one it is about.
fn roomy_limits() -> Limits {
    Limits {
        fuel: 500_000_000_000,
        memory_bytes: 1 << 30,
        wall_time: Duration::from_secs(600),
        stdout_bytes: 1 << 20,
        stderr_bytes: 1 << 20,
        output_bytes: 256 << 20,
        ..Limits::default()
    }
}

fn invocation(args: &[&str], mounts: Vec<Mount>, limits: Limits) -> Invocation {
    Invocation { args: args.iter().map(|arg| (*arg).to_owned()).collect(), mounts, limits, ..Invocation::default() }
}

fn mount(host: &Path, guest: &str, writable: bool) -> Mount {
    Mount { host: host.to_path_buf(), guest: guest.to_owned(), writable }
}

async fn run_ok(program: &Program, invocation: Invocation) -> Result<Outcome> {
    let outcome = runtime().run(program, invocation).await?;
    ensure!(
        outcome.exit_code == 0,
        "exit code {}; stderr: {}",
        outcome.exit_code,
        String::from_utf8_lossy(&outcome.stderr)
    );
    Ok(outcome)
}

async fn run_failing(program: &Program, invocation: Invocation) -> Result<GuestFailure> {
    match runtime().run(program, invocation).await {
        Err(RunError::Guest(failure)) => Ok(*failure),
        Err(other) => bail!("expected a guest failure, got the error {other}"),
        Ok(outcome) => bail!(
            "expected a guest failure, got exit code {} with stdout {:?}",
            outcome.exit_code,
            String::from_utf8_lossy(&outcome.stdout)
        ),
    }
}

fn scene_dir() -> Result<PathBuf> {
    let dir = repo_root().join("data/landsat").join(SCENE_ID);
    ensure!(
        dir.join(format!("{SCENE_ID}_MTL.txt")).is_file(),
        "the Landsat scene is missing from {}: run scripts/fetch-data.sh",
        dir.display()
    );
    Ok(dir)
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(bytes: &[u8]) -> Result<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    ensure!(bytes.len() > 24 && bytes.starts_with(SIGNATURE) && &bytes[12..16] == b"IHDR", "not a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    Ok((be(16), be(20)))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn number(value: &serde_json::Value, pointer: &str) -> Result<f64> {
    value.pointer(pointer).and_then(serde_json::Value::as_f64).with_context(|| format!("no number at {pointer}"))
}

#[tokio::test]
async fn committed_modules_match_their_manifest_sha256_and_cid() -> Result<()> {
    let manifest = manifest()?;
    assert_eq!(manifest.target, "wasm32-wasip1");
    let names: Vec<&str> = manifest.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, PROGRAMS, "manifest lists other programs");

    let mut mismatches = Vec::new();
    for entry in &manifest.programs {
        let path = programs_dir().join(&entry.file);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (size, sha256, cid) = (bytes.len() as u64, sha256_hex(&bytes), unixfs_cid(&bytes).await?);
        if (size, &sha256, &cid) != (entry.size, &entry.sha256, &entry.cid) {
            mismatches.push(format!(
                "{}: file has size {size}, sha256 {sha256}, cid {cid}; manifest says {}, {}, {}",
                entry.name, entry.size, entry.sha256, entry.cid
            ));
        }
        // kubo's layout: one chunk is a raw block, more are a dag-pb root.
        let prefix = if size <= CHUNK_BYTES { "bafkrei" } else { "bafybei" };
        assert!(cid.starts_with(prefix), "{}: {cid} for {size} bytes", entry.name);
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    Ok(())
}

#[tokio::test]
async fn echo_hash_reports_exactly_its_arguments_environment_and_digests() -> Result<()> {
    let inputs = tempfile::tempdir()?;
    fs::write(inputs.path().join("b.txt"), b"hello world\n")?;
    fs::write(inputs.path().join("a-empty"), b"")?;
    fs::create_dir(inputs.path().join("sub"))?;
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(inputs.path().join("sub/c.bin"), &binary)?;
    let outputs = tempfile::tempdir()?;

    let program = compile("echo-hash")?;
    let mut call = invocation(
        &["echo-hash", "--flag", "two words", ""],
        vec![mount(inputs.path(), "/inputs", false), mount(outputs.path(), "/outputs", true)],
        roomy_limits(),
    );
    call.env = BTreeMap::from([("ZETA".to_owned(), "last".to_owned()), ("ALPHA".to_owned(), "a=b".to_owned())]);
    let first = run_ok(&program, call.clone()).await?;

    let files =
        [("a-empty", sha256_hex(b"")), ("b.txt", sha256_hex(b"hello world\n")), ("sub/c.bin", sha256_hex(&binary))];
    let mut expected =
        String::from("arg[0]=echo-hash\narg[1]=--flag\narg[2]=two words\narg[3]=\nenv ALPHA=a=b\nenv ZETA=last\n");
    for (path, digest) in &files {
        expected.push_str(&format!("{digest}  {path}\n"));
        assert_eq!(fs::read_to_string(outputs.path().join(format!("{path}.sha256")))?, format!("{digest}  {path}\n"));
    }
    assert_eq!(String::from_utf8_lossy(&first.stdout), expected);
    assert!(first.stderr.is_empty());

    // Same program, same inputs, a fresh outputs directory (existing outputs
    // would take other code paths): same fuel, same bytes.
    let fresh_outputs = tempfile::tempdir()?;
    call.mounts[1] = mount(fresh_outputs.path(), "/outputs", true);
    let again = run_ok(&program, call).await?;
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(again.fuel_consumed, first.fuel_consumed);
    assert_eq!(
        fs::read(fresh_outputs.path().join("sub/c.bin.sha256"))?,
        fs::read(outputs.path().join("sub/c.bin.sha256"))?
    );
    Ok(())
}

#[tokio::test]
async fn trap_program_traps_with_its_panic_message() -> Result<()> {
    let failure = run_failing(&compile("trap")?, invocation(&["trap"], vec![], roomy_limits())).await?;
    match &failure.kind {
        FailureKind::Trap { message } => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(message.contains("deliberate trap"), "{message}");
        }
        other => panic!("expected a trap, got {other}"),
    }
    assert!(String::from_utf8_lossy(&failure.stderr).contains("deliberate trap"));
    Ok(())
}

#[tokio::test]
async fn infinite_loop_stops_when_its_fuel_runs_out() -> Result<()> {
    let program = compile("infinite-loop")?;
    let budget = 50_000_000;
    let limits = Limits { fuel: budget, ..roomy_limits() };
    let call = invocation(&["infinite-loop"], vec![], limits);
    let failure = run_failing(&program, call.clone()).await?;
    assert_eq!(failure.kind, FailureKind::FuelExhausted { fuel: budget });
    assert_eq!(failure.fuel_consumed, budget);
    assert_eq!(failure.stdout, "infinite-loop: spinning until the host stops me\n");
    // Fuel, not the clock, decides: a second run stops in the same place.
    let again = run_failing(&program, call).await?;
    assert_eq!((again.kind, again.stdout), (failure.kind, failure.stdout));
    Ok(())
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() -> Result<()> {
    let program = compile("memory-bomb")?;
    let limit = 64 << 20;
    let limits = Limits { memory_bytes: limit, ..roomy_limits() };
    let failure = run_failing(&program, invocation(&["memory-bomb"], vec![], limits.clone())).await?;
    assert_eq!(failure.kind, FailureKind::MemoryLimit { limit_bytes: limit });
    let stdout = String::from_utf8_lossy(&failure.stdout);
    assert!(stdout.contains("holding 32 MiB\n"), "{stdout}");
    assert!(!stdout.contains("holding 64 MiB"), "{stdout}");

    // With fallible allocation the guest sees the refusal and exits cleanly.
    let graceful = runtime().run(&program, invocation(&["memory-bomb", "--graceful"], vec![], limits)).await?;
    assert_eq!(graceful.exit_code, 1);
    let stdout = String::from_utf8_lossy(&graceful.stdout);
    assert!(stdout.contains("memory-bomb: allocation failed after"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn stack_overflow_is_reported_as_such() -> Result<()> {
    let program = compile("stack-overflow")?;
    let failure = run_failing(&program, invocation(&["stack-overflow"], vec![], roomy_limits())).await?;
    assert_eq!(failure.kind, FailureKind::StackOverflow);

    // Frames in linear memory run off the shadow stack instead: rustc puts it
    // at the bottom of memory, so that is an out-of-bounds trap.
    let failure =
        run_failing(&program, invocation(&["stack-overflow", "linear-memory"], vec![], roomy_limits())).await?;
    match &failure.kind {
        FailureKind::Trap { message } => {
            assert!(message.contains("out of bounds memory access"), "{message}")
        }
        other => panic!("expected an out-of-bounds trap, got {other}"),
    }
    Ok(())
}

#[tokio::test]
async fn huge_output_is_stopped_at_the_output_cap() -> Result<()> {
    let program = compile("huge-output")?;
    let outputs = tempfile::tempdir()?;
    let cap = 8 << 20;
    let limits = Limits { output_bytes: cap, ..roomy_limits() };
    let failure = run_failing(
        &program,
        invocation(&["huge-output", "1G", "0"], vec![mount(outputs.path(), "/outputs", true)], limits),
    )
    .await?;
    match failure.kind {
        FailureKind::OutputLimit { limit_bytes, written } => {
            assert_eq!(limit_bytes, cap);
            // Stopped long before the gigabyte it meant to write.
            assert!(written > cap && written < 256 << 20, "wrote {written}");
        }
        other => panic!("expected the output limit, got {other}"),
    }

    // Stdout beyond its cap is cut off, not an error.
    let stdout_cap = 64 * 1024;
    let empty_outputs = tempfile::tempdir()?;
    let outcome = run_ok(
        &program,
        invocation(
            &["huge-output", "0", "4M"],
            vec![mount(empty_outputs.path(), "/outputs", true)],
            Limits { stdout_bytes: stdout_cap, ..roomy_limits() },
        ),
    )
    .await?;
    assert!(outcome.stdout_truncated);
    assert_eq!(outcome.stdout.len(), stdout_cap);
    assert!(outcome.stdout.starts_with(b"huge-output stdout line 00000000000000000000 "));
    Ok(())
}

#[tokio::test]
async fn huge_output_within_its_cap_writes_the_ipfs_test_vector() -> Result<()> {
    let outputs = tempfile::tempdir()?;
    run_ok(
        &compile("huge-output")?,
        invocation(&["huge-output", "1M", "0"], vec![mount(outputs.path(), "/outputs", true)], roomy_limits()),
    )
    .await?;
    // 1 MiB with byte i = i % 251: kubo's CIDv1 for it (see shared notes).
    let imported =
        import_path(&outputs.path().join("big.bin"), &ImportOptions::default(), &MemoryBlockStore::new()).await?;
    assert_eq!(imported.root.to_string(), "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau");
    Ok(())
}

#[tokio::test]
async fn nondeterministic_program_is_pinned_by_the_runtime() -> Result<()> {
    let program = compile("nondeterministic")?;
    let call = invocation(&["nondeterministic"], vec![], roomy_limits());
    let first = run_ok(&program, call.clone()).await?;
    let second = run_ok(&program, call).await?;
    assert_eq!(first.stdout, second.stdout);
    let stdout = String::from_utf8_lossy(&first.stdout);
    let wall_clock = format!("wall_clock_ns={}\n", GUEST_WALL_CLOCK.as_nanos());
    assert!(stdout.starts_with(&wall_clock), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn cloud_detect_masks_the_real_scene_in_line_with_bqa() -> Result<()> {
    let scene = scene_dir()?;
    let outputs = tempfile::tempdir()?;
    let outcome = run_ok(
        &compile("cloud-detect")?,
        invocation(
            &["cloud-detect"],
            vec![mount(&scene, "/inputs", false), mount(outputs.path(), "/outputs", true)],
            roomy_limits(),
        ),
    )
    .await?;
    eprintln!(
        "cloud-detect: {} fuel, {:?}: {}",
        outcome.fuel_consumed,
        outcome.duration,
        String::from_utf8_lossy(&outcome.stdout).trim_end()
    );

    let (width, height) = (627, 603);
    let mask = fs::read(outputs.path().join("mask.png"))?;
    assert_eq!(png_size(&mask)?, (width, height));
    let preview = fs::read(outputs.path().join("preview.png"))?;
    assert_eq!(png_size(&preview)?, (2 * width, height));

    let stats = read_json(&outputs.path().join("stats.json"))?;
    assert_eq!(stats["scene_id"], SCENE_ID);
    let cloud_fraction = number(&stats, "/cloud_fraction")?;
    // README: 5.66 %; BQA's high-confidence cloud covers 6.02 % of the crop.
    assert!((0.04..0.08).contains(&cloud_fraction), "cloud fraction {cloud_fraction}");
    let reference = number(&stats, "/bqa_cloud_agreement/reference_fraction")?;
    assert!((reference - 0.0602).abs() < 0.0001, "BQA fraction {reference}");
    // README: accuracy 0.9531, IoU 0.4269; floors as in the program's own test.
    let accuracy = number(&stats, "/bqa_cloud_agreement/accuracy")?;
    let iou = number(&stats, "/bqa_cloud_agreement/iou")?;
    assert!(accuracy > 0.945, "accuracy {accuracy}");
    assert!(iou > 0.41, "IoU {iou}");

    // docs/images/ shows this module's output on this scene, byte for byte.
    for name in ["mask.png", "preview.png"] {
        let committed = repo_root().join("docs/images").join(name);
        let committed = fs::read(&committed).with_context(|| format!("reading {}", committed.display()))?;
        let produced = if name == "mask.png" { &mask } else { &preview };
        assert!(&committed == produced, "docs/images/{name} is not cloud-detect's output");
    }

    // The next job of the pipeline: cloud-remove with this result at /mask.
    let cloud_pixels = number(&stats, "/pixels/cloud")?;
    let cleared = tempfile::tempdir()?;
    let outcome = run_ok(
        &compile("cloud-remove")?,
        invocation(
            &["cloud-remove"],
            vec![
                mount(&scene, "/inputs", false),
                mount(outputs.path(), "/mask", false),
                mount(cleared.path(), "/outputs", true),
            ],
            roomy_limits(),
        ),
    )
    .await?;
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    let expected = format!("{cloud_pixels} of {} pixels transparent", width * height);
    assert!(stdout.contains(&expected), "{stdout}");
    let clear = fs::read(cleared.path().join("clear.png"))?;
    assert_eq!(png_size(&clear)?, (width, height));
    // What the native build of the same sources writes (programs/cloud-remove/README.md).
    assert_eq!(
        sha256_hex(&clear),
        "21f964274b6c1dc498ab9fb3a89c42c1290fc85dd0ec6f767f28d381dd2a8fb7",
        "clear.png differs from the native build's"
    );
    Ok(())
}

#[tokio::test]
async fn cell_count_counts_the_nuclei_of_the_real_image() -> Result<()> {
    let microscopy = repo_root().join("data/microscopy");
    let outputs = tempfile::tempdir()?;
    run_ok(
        &compile("cell-count")?,
        invocation(
            &["cell-count", "/inputs/ihc.png", "/outputs"],
            vec![mount(&microscopy, "/inputs", false), mount(outputs.path(), "/outputs", true)],
            roomy_limits(),
        ),
    )
    .await?;

    for name in ["labels.png", "overlay.png"] {
        let png = fs::read(outputs.path().join(name))?;
        assert_eq!(png_size(&png)?, (512, 512), "{name}");
    }
    let count_json = fs::read(outputs.path().join("count.json"))?;
    // What the native build of the same sources writes (programs/cell-count/README.md).
    assert_eq!(
        sha256_hex(&count_json),
        "2e64325d5af4a207167dad66723dea8f9c3a5c19b64015b0d7a642a42cd0bb83",
        "count.json differs from the native build's"
    );
    let count: serde_json::Value = serde_json::from_slice(&count_json)?;
    let nuclei = count["nuclei"].as_array().context("no nuclei list")?;
    let counted = number(&count, "/count")? as usize;
    assert_eq!(counted, nuclei.len());
    // README: 184 nuclei; its native test keeps the count within 165–205.
    assert!((165..=205).contains(&counted), "{counted} nuclei");
    let min_area = number(&count, "/min_area_px")?;
    for nucleus in nuclei {
        assert!(number(nucleus, "/area_px")? >= min_area, "{nucleus}");
    }
    Ok(())
}
