//! Per-job cost of publishing a tiny job's results into an [`FsBlockStore`]: an outputs
//! directory holding one 80-byte file, a few hundred bytes of stdout and an empty stderr, as a
//! worker imports them after each run. Each import's contents differ (as jobs' outputs do) but
//! the empty stderr, whose block every job shares.
//!
//! Reports wall time per job (one job at a time, and eight at once) and the process's CPU time
//! per job, for the three imported each by itself (at once, as the worker did) and together
//! ([`import_many`], as it does now), alternated in the same run. Run with `cargo bench -p shoal-content --bench small_import`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use shoal_content::unixfs::{import_many, import_path, import_reader, ImportOptions, ImportSource};
use shoal_content::FsBlockStore;

const JOBS: usize = 2_000;

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let scratch = tempfile::tempdir().expect("temp dir");
    let store = FsBlockStore::open(scratch.path().join("blocks")).expect("store");
    tokio.block_on(async {
        // Warm-up: the store's shard directories exist after a while in a real worker.
        run(&store, scratch.path(), "warm-up", 1, 0, false).await;
        let mut round = 1;
        for (label, parallel) in [("one job at a time", 1), ("eight jobs at once", 8)] {
            let (mut each, mut together) = (Vec::new(), Vec::new());
            // Alternated, so the machine's drift falls on both alike.
            for _ in 0..2 {
                each.push(
                    run(&store, scratch.path(), &format!("{label}, each by itself"), parallel, round, false).await,
                );
                together
                    .push(run(&store, scratch.path(), &format!("{label}, together"), parallel, round + 1, true).await);
                round += 2;
            }
            let sum = |runs: &[(Duration, Duration)], pick: fn(&(Duration, Duration)) -> Duration| {
                runs.iter().map(pick).sum::<Duration>().as_secs_f64()
            };
            println!(
                "{label}: together / each by itself — mean wall {:.2}×, CPU {:.2}×",
                sum(&together, |r| r.0) / sum(&each, |r| r.0),
                sum(&together, |r| r.1) / sum(&each, |r| r.1),
            );
        }
    });
}

/// Imports `JOBS` jobs' results, `parallel` at once, `together` with one importer or each by itself;
/// `round` keeps contents unique across calls. Returns the mean wall time and the CPU per job.
async fn run(
    store: &FsBlockStore,
    scratch: &Path,
    label: &str,
    parallel: usize,
    round: usize,
    together: bool,
) -> (Duration, Duration) {
    let dirs: Vec<(PathBuf, Vec<u8>)> = (0..JOBS)
        .map(|i| {
            let dir = scratch.join(format!("out-{round}-{i}"));
            std::fs::create_dir_all(&dir).expect("outputs dir");
            let hash = format!("{:064x}\n", (round * JOBS + i) as u128 * 0x9e37_79b9_7f4a_7c15);
            std::fs::write(dir.join("hash.txt"), &hash.as_bytes()[..80.min(hash.len())]).expect("output");
            let stdout = format!("job {round}-{i}: read 1024 bytes, wrote hash.txt\n").repeat(6).into_bytes();
            (dir, stdout)
        })
        .collect();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut jobs = futures::stream::iter(dirs.into_iter().map(|(dir, stdout)| async move {
        let started = Instant::now();
        let opts = ImportOptions { include_hidden: true, ..ImportOptions::default() };
        if together {
            let sources = vec![
                ImportSource::Path(dir),
                ImportSource::Bytes(stdout.into()),
                ImportSource::Bytes(Default::default()),
            ];
            import_many(sources, &opts, store).await.expect("outputs and logs");
        } else {
            let (outputs, stdout, stderr) = tokio::join!(
                import_path(&dir, &opts, store),
                import_reader(&stdout[..], &opts, store),
                import_reader(&b""[..], &opts, store)
            );
            outputs.expect("outputs");
            stdout.expect("stdout");
            stderr.expect("stderr");
        }
        started.elapsed()
    }))
    .buffer_unordered(parallel);
    let mut times = Vec::with_capacity(JOBS);
    while let Some(took) = jobs.next().await {
        times.push(took);
    }
    let wall = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    times.sort();
    let mean = times.iter().sum::<Duration>() / JOBS as u32;
    println!(
        "{label:<20} per job: mean {mean:>9.1?}  p50 {:>9.1?}  p99 {:>9.1?}  | {:>6.0} jobs/s  CPU {:>6.1?}/job",
        times[JOBS / 2],
        times[JOBS * 99 / 100],
        JOBS as f64 / wall.as_secs_f64(),
        cpu / JOBS as u32,
    );
    (mean, cpu / JOBS as u32)
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (clock ticks of
/// 10 ms, fine over a run of seconds); written by hand to need no crate for one number.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}
