//! Per-run overhead of `Runtime::run` (fresh store, instantiation from the
//! pre-linked pool, a trivial `_start`, result hand-back), next to baselines
//! measured in the same process: compiling the same module, and spawning and
//! joining a bare thread (each run gets its own thread).
//!
//! Run with `cargo bench -p shoal-runtime --bench instantiate`.

use std::time::{Duration, Instant};

use shoal_runtime::{Invocation, Program, Runtime, RuntimeConfig};

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

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("tokio runtime");
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
    tokio.block_on(async {
        report("run: empty _start", sequential_runs(&runtime, &empty).await);
        report("run: one fd_write to stdout", sequential_runs(&runtime, &hello).await);

        let started = Instant::now();
        let handles: Vec<_> = (0..RUNS)
            .map(|_| {
                let runtime = runtime.clone();
                let program = hello.clone();
                tokio::spawn(async move { runtime.run(&program, invocation()).await })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task").expect("run");
        }
        let elapsed = started.elapsed();
        println!(
            "{:<40} {RUNS} runs in {elapsed:.2?}: {:.0} runs/s",
            "throughput: concurrent fd_write runs",
            RUNS as f64 / elapsed.as_secs_f64()
        );
    });
}

async fn sequential_runs(runtime: &Runtime, program: &Program) -> Vec<Duration> {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let outcome = runtime.run(program, invocation()).await.expect("run");
        times.push(started.elapsed());
        assert_eq!(outcome.exit_code, 0);
    }
    times
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
