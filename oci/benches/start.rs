//! Per-job start of a container next to a WebAssembly instantiation, measured
//! in the same process: a trivial command (`true`) run by [`OciRuntime`] from
//! a cold layer cache (the image's layers not yet unpacked) and from a warm
//! one (a cache hit), against `shoal_runtime::Runtime::run` of an empty
//! `_start` (the baseline) and compiling that module. Each job, as the worker
//! runs it, opens the image layout (manifest and config checked against their
//! digests), prepares it and runs it with a writable `/outputs`; fetching the
//! image's blocks is not included.
//!
//! Needs root, runc and busybox-static (`scripts/install-deps.sh`). Run with
//! `cargo bench -p shoal-oci --bench start`; `SHOAL_BENCH_JSON=FILE` also
//! writes the figures as JSON, and `SHOAL_SKLEARN_IMAGE=DIR` (the layout of
//! `scripts/build-sklearn-image.sh`) adds that image's rows.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_oci::{Image, OciConfig, OciRuntime};
use shoal_runtime::{Invocation, Mount, Program, Runtime, RuntimeConfig};

/// `(module (memory (export "memory") 1) (func (export "_start")))`, encoded by
/// hand: the crate has no WebAssembly text parser.
const EMPTY_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, 1 page
    0x07, 0x13, 0x02, // export section: two exports
    0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, // "memory": memory 0
    0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // "_start": function 0
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: an empty body
];

/// Rounds of the busybox rows; each round runs every row, so that a busy
/// host's slow spells fall on all of them alike.
const ROUNDS: usize = 20;
/// Per round: WebAssembly runs take microseconds, containers tens of milliseconds.
const WASM_PER_ROUND: usize = 25;
const CACHED_PER_ROUND: usize = 3;
/// Rounds of the scikit-learn rows (a cold start unpacks hundreds of megabytes).
const SKLEARN_ROUNDS: usize = 3;

struct Row {
    name: String,
    times: Vec<Duration>,
}

impl Row {
    fn new(name: &str, mut times: Vec<Duration>) -> Row {
        times.sort();
        Row { name: name.to_owned(), times }
    }

    fn mean(&self) -> Duration {
        self.times.iter().sum::<Duration>() / self.times.len() as u32
    }

    fn median(&self) -> Duration {
        self.times[(self.times.len() - 1) / 2]
    }
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let scratch = tempfile::Builder::new().prefix("shoal-start-bench").tempdir().expect("temp dir");
    let busybox = busybox_image(scratch.path());
    let sklearn = std::env::var_os("SHOAL_SKLEARN_IMAGE").map(PathBuf::from);

    let wasm = Runtime::new(RuntimeConfig::default()).expect("wasm runtime");
    let cache = scratch.path().join("cache");
    let oci = OciRuntime::new(OciConfig::new(scratch.path().join("state"), &cache))
        .expect("container runtime (root, runc and scripts/install-deps.sh needed)");
    let outputs = scratch.path().join("outputs");

    let mut rows = Vec::new();
    tokio.block_on(async {
        // Warm-up, so that neither side pays for first-use costs in its rows.
        let program = wasm.compile(EMPTY_WASM).expect("compiles");
        wasm_run(&wasm, &program, &outputs).await;
        container_job(&oci, &busybox, &outputs).await;

        let mut compile = Vec::new();
        let mut instantiate = Vec::new();
        let mut busybox_cached = Vec::new();
        let mut busybox_cold = Vec::new();
        for _ in 0..ROUNDS {
            compile.push(timed(|| drop(wasm.compile(EMPTY_WASM).expect("compiles"))));
            for _ in 0..WASM_PER_ROUND {
                let started = Instant::now();
                wasm_run(&wasm, &program, &outputs).await;
                instantiate.push(started.elapsed());
            }
            busybox_cached.extend(cached(&oci, &busybox, &outputs, CACHED_PER_ROUND).await);
            busybox_cold.push(cold(&oci, &cache, &busybox, &outputs).await);
        }
        rows.push(Row::new("wasm: compile the module", compile));
        rows.push(Row::new("wasm: instantiate + run (baseline)", instantiate));
        rows.push(Row::new("busybox: container, cached layers", busybox_cached));
        rows.push(Row::new("busybox: container, cold layers", busybox_cold));
        if let Some(sklearn) = &sklearn {
            let mut sklearn_cached = Vec::new();
            let mut sklearn_cold = Vec::new();
            for _ in 0..SKLEARN_ROUNDS {
                sklearn_cold.push(cold(&oci, &cache, sklearn, &outputs).await);
                sklearn_cached.extend(cached(&oci, sklearn, &outputs, CACHED_PER_ROUND).await);
            }
            rows.push(Row::new("sklearn: container, cached layers", sklearn_cached));
            rows.push(Row::new("sklearn: container, cold layers", sklearn_cold));
        }
    });

    // Ratios of medians and of minimums: a busy host's stalls land in the means
    // of the short rows.
    let baseline_row = rows.iter().find(|row| row.name.contains("baseline")).expect("baseline row");
    let (baseline, baseline_min) = (baseline_row.median(), baseline_row.times[0]);
    let ratio = |row: &Row| row.median().as_secs_f64() / baseline.as_secs_f64();
    let min_ratio = |row: &Row| row.times[0].as_secs_f64() / baseline_min.as_secs_f64();
    println!("ratios: median / median of the baseline, minimum / minimum of the baseline");
    for row in &rows {
        println!(
            "{:<36} n={:<4} median {:>9.2?} min {:>9.2?} max {:>9.2?} mean {:>9.2?}  {:>7.1}x / {:>7.1}x",
            row.name,
            row.times.len(),
            row.median(),
            row.times[0],
            row.times[row.times.len() - 1],
            row.mean(),
            ratio(row),
            min_ratio(row)
        );
    }
    if let Some(path) = std::env::var_os("SHOAL_BENCH_JSON") {
        let micros = |d: Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
        let json = serde_json::json!({
            "benchmark": "cargo bench -p shoal-oci --bench start",
            "runc": version("runc"),
            "kernel": version("uname"),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "load_average_at_end": fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "busybox_image": image_summary(&busybox),
            "sklearn_image": sklearn.as_deref().map(image_summary),
            "rows": rows.iter().map(|row| serde_json::json!({
                "name": row.name,
                "runs": row.times.len(),
                "median_us": micros(row.median()),
                "min_us": micros(row.times[0]),
                "max_us": micros(row.times[row.times.len() - 1]),
                "mean_us": micros(row.mean()),
                "median_ratio_to_wasm_instantiate": (ratio(row) * 10.0).round() / 10.0,
                "min_ratio_to_wasm_instantiate": (min_ratio(row) * 10.0).round() / 10.0,
            })).collect::<Vec<_>>(),
        });
        fs::write(&path, serde_json::to_string_pretty(&json).expect("json") + "\n").expect("write the JSON");
    }
}

/// The busybox image of `scripts/build-test-image.sh`, built under `dir`.
fn busybox_image(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-image.sh");
    let out = dir.join("busybox-layout");
    let status = Command::new("bash").arg(script).arg(&out).status().expect("run build-test-image.sh");
    assert!(status.success(), "scripts/build-test-image.sh failed; run scripts/install-deps.sh (busybox-static)");
    out
}

async fn wasm_run(runtime: &Runtime, program: &Program, outputs: &Path) {
    let outcome = runtime.run(program, invocation(vec!["bench".to_owned()], outputs)).await.expect("wasm run");
    assert_eq!(outcome.exit_code, 0);
}

/// One job as the worker runs it: open the layout, prepare (unpack or find
/// the layers), run `true`.
async fn container_job(runtime: &OciRuntime, layout: &Path, outputs: &Path) {
    let image = Image::open(layout).expect("image");
    let unpacked = runtime.prepare(&image).expect("prepare");
    let outcome = runtime.run(&image, &unpacked, &invocation(vec!["true".to_owned()], outputs)).await.expect("run");
    assert_eq!(outcome.exit_code, 0, "stderr: {}", String::from_utf8_lossy(&outcome.stderr));
}

/// `runs` jobs whose layers are in the cache (the first, untimed, puts them there).
async fn cached(runtime: &OciRuntime, layout: &Path, outputs: &Path, runs: usize) -> Vec<Duration> {
    container_job(runtime, layout, outputs).await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        container_job(runtime, layout, outputs).await;
        times.push(started.elapsed());
    }
    times
}

/// One job from an empty layer cache (the blobs stay in the page cache: this
/// is unpacking, not reading from disk).
async fn cold(runtime: &OciRuntime, cache: &Path, layout: &Path, outputs: &Path) -> Duration {
    // The cache keeps no state but its directory: emptying `layers/` makes every layer a miss.
    let layers = cache.join("layers");
    fs::remove_dir_all(&layers).expect("empty the layer cache");
    fs::create_dir(&layers).expect("empty the layer cache");
    let started = Instant::now();
    container_job(runtime, layout, outputs).await;
    started.elapsed()
}

fn invocation(args: Vec<String>, outputs: &Path) -> Invocation {
    // Each run gets a fresh, empty /outputs, as a job does.
    let _ = fs::remove_dir_all(outputs);
    fs::create_dir_all(outputs).expect("outputs");
    Invocation {
        args,
        mounts: vec![Mount { host: outputs.to_path_buf(), guest: "/outputs".to_owned(), writable: true }],
        ..Invocation::default()
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn version(program: &str) -> String {
    let arg = if program == "uname" { "-r" } else { "--version" };
    Command::new(program)
        .arg(arg)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// The image's layer count and compressed size.
fn image_summary(layout: &Path) -> serde_json::Value {
    let image = Image::open(layout).expect("image");
    let bytes: u64 = image.layers().iter().map(|layer| layer.size).sum();
    serde_json::json!({ "layers": image.layers().len(), "compressed_bytes": bytes })
}
