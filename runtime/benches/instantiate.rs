//! Per-run overhead of `Runtime::run` (fresh store, instantiation from the
//! pre-linked pool, a trivial `_start`, result hand-back), next to baselines
//! measured in the same process: compiling the same module, and spawning and
//! joining a bare thread. The "echo-hash" case is the shape of a typical tiny
//! job end to end: it reads a 1 KiB input from a read-only mount, hashes it
//! and writes the hash to a file in a writable mount (whose outputs the
//! runtime then measures).
//!
//! Run with `cargo bench -p shoal-runtime --bench instantiate`.

use std::path::Path;
use std::time::{Duration, Instant};

use shoal_runtime::{Invocation, Mount, Program, Runtime, RuntimeConfig};

const RUNS: usize = 2_000;

/// A command whose `_start` returns at once.
const EMPTY: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// A command that writes one line to stdout, to include a WASI call.
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 17)
  (data (i32.const 64) "hello from wasm\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Reads `/in/input` (fd 4) into 1024.., FNV-1a hashes what was read and
/// writes the 4-byte hash to `/out/hash` (fd 3). 17 pages of memory, as a
/// small Rust guest has (1 MiB shadow stack plus data). Any WASI error traps.
const ECHO_HASH: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 17)
  (data (i32.const 64) "input")
  (data (i32.const 80) "hash")
  (func $check (param $errno i32) (if (local.get $errno) (then unreachable)))
  (func (export "_start")
    (local $fd i32) (local $i i32) (local $end i32) (local $hash i32)
    ;; Rights: FD_READ (1 << 1).
    (call $check (call $path_open (i32.const 4) (i32.const 0) (i32.const 64) (i32.const 5)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 12)))
    (local.set $fd (i32.load (i32.const 12)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 1024))
    (call $check (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $check (call $fd_close (local.get $fd)))
    (local.set $i (i32.const 1024))
    (local.set $end (i32.add (i32.const 1024) (i32.load (i32.const 8))))
    (local.set $hash (i32.const 0x811c9dc5))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $hash (i32.mul (i32.xor (local.get $hash) (i32.load8_u (local.get $i))) (i32.const 0x01000193)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const 16) (local.get $hash))
    ;; O_CREAT | O_TRUNC; rights: FD_WRITE (1 << 6).
    (call $check (call $path_open (i32.const 3) (i32.const 0) (i32.const 80) (i32.const 4)
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 12)))
    (local.set $fd (i32.load (i32.const 12)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 4))
    (call $check (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $check (call $fd_close (local.get $fd)))))"#;

fn main() {
    let tokio =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().expect("tokio runtime");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let empty_wasm = wat::parse_str(EMPTY).expect("wat");
    let hello_wasm = wat::parse_str(HELLO).expect("wat");

    let compile_times: Vec<Duration> =
        (0..50).map(|_| timed(|| drop(runtime.compile(&empty_wasm).expect("compiles")))).collect();
    report("baseline: compile trivial module", compile_times);

    let spawn_times: Vec<Duration> =
        (0..RUNS).map(|_| timed(|| std::thread::spawn(|| ()).join().expect("thread"))).collect();
    report("baseline: spawn + join a thread", spawn_times);

    let empty = runtime.compile(&empty_wasm).expect("compiles");
    let hello = runtime.compile(&hello_wasm).expect("compiles");
    let echo_hash = runtime.compile(&wat::parse_str(ECHO_HASH).expect("wat")).expect("compiles");
    let inputs = tempfile::tempdir().expect("input dir");
    std::fs::write(inputs.path().join("input"), [0x5a; 1024]).expect("input file");
    let outputs = tempfile::tempdir().expect("output dir");
    let echo_hash_invocation = || Invocation {
        mounts: vec![mount(outputs.path(), "/out", true), mount(inputs.path(), "/in", false)],
        ..invocation()
    };
    tokio.block_on(async {
        report("run: empty _start", sequential_runs(&runtime, &empty, invocation).await);
        report("run: one fd_write to stdout", sequential_runs(&runtime, &hello, invocation).await);
        report(
            "run: echo-hash (read 1 KiB, write file)",
            sequential_runs(&runtime, &echo_hash, echo_hash_invocation).await,
        );
        let written = std::fs::read(outputs.path().join("hash")).expect("echo-hash wrote its output");
        assert_eq!(written.len(), 4);

        concurrent_runs("throughput: concurrent fd_write runs", &runtime, &hello, invocation).await;
        concurrent_runs("throughput: concurrent echo-hash runs", &runtime, &echo_hash, echo_hash_invocation).await;
    });
}

fn mount(host: &Path, guest: &str, writable: bool) -> Mount {
    Mount { host: host.to_owned(), guest: guest.to_owned(), writable }
}

async fn sequential_runs(runtime: &Runtime, program: &Program, invocation: impl Fn() -> Invocation) -> Vec<Duration> {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let outcome = runtime.run(program, invocation()).await.expect("run");
        times.push(started.elapsed());
        assert_eq!(outcome.exit_code, 0);
    }
    times
}

/// Runs `program` [`RUNS`] times at once and prints the runs a second.
async fn concurrent_runs(label: &str, runtime: &Runtime, program: &Program, invocation: impl Fn() -> Invocation) {
    let started = Instant::now();
    let handles: Vec<_> = (0..RUNS)
        .map(|_| {
            let (runtime, program, invocation) = (runtime.clone(), program.clone(), invocation());
            tokio::spawn(async move { runtime.run(&program, invocation).await })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task").expect("run");
    }
    let elapsed = started.elapsed();
    println!("{label:<40} {RUNS} runs in {elapsed:.2?}: {:.0} runs/s", RUNS as f64 / elapsed.as_secs_f64());
}

fn invocation() -> Invocation {
    Invocation { args: vec!["bench".to_owned()], ..Invocation::default() }
}

fn timed(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let percentile = |p: usize| times[(times.len() - 1) * p / 100];
    println!(
        "{name:<40} n={:<5} mean {mean:>10.2?}  p50 {:>10.2?}  p99 {:>10.2?}",
        times.len(),
        percentile(50),
        percentile(99)
    );
}
