//! Shared helpers: a small runtime, WAT guests and default invocations.

use std::time::Duration;

use shoal_runtime::{GuestFailure, Invocation, Limits, Outcome, Program, RunError, Runtime, RuntimeConfig};

/// WASI imports and helpers shared by the guest modules. Memory layout:
/// 0..8 a scratch iovec, 8 `nwritten`/`nread`, 12 an opened fd, 16..24 a
/// second iovec, 24 its count; test data from 64; buffers from 1024.
pub(crate) const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; Writes `len` bytes at `ptr` to `fd`, returning the errno.
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  ;; Exits with the errno if it is not 0 (success).
  (func $check (param $errno i32)
    (if (local.get $errno) (then (call $proc_exit (local.get $errno)))))
  ;; Opens the file named by `ptr`/`len` in the first preopen (fd 3) with the
  ;; given open flags and rights; returns the new fd or exits with the errno.
  (func $open (param $ptr i32) (param $len i32) (param $oflags i32) (param $rights i64) (result i32)
    (call $check (call $path_open (i32.const 3) (i32.const 0) (local.get $ptr) (local.get $len)
      (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 12)))
    (i32.load (i32.const 12)))
"#;

/// A module made of [`PRELUDE`] plus `body`.
pub(crate) fn module(body: &str) -> Vec<u8> {
    let text = format!("(module {PRELUDE} {body})");
    wat::parse_str(&text).unwrap_or_else(|err| panic!("invalid test WAT: {err}\n{text}"))
}

/// A runtime small enough for tests.
pub(crate) fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig { max_concurrent_instances: 4, max_memory_bytes: 64 << 20, ..RuntimeConfig::default() })
        .expect("test runtime")
}

/// Compiles a module made of [`PRELUDE`] plus `body`.
pub(crate) fn compile(runtime: &Runtime, body: &str) -> Program {
    runtime.compile(&module(body)).expect("test module compiles")
}

/// An invocation with small limits.
pub(crate) fn invocation() -> Invocation {
    Invocation {
        args: vec!["guest".to_owned()],
        limits: Limits {
            fuel: 50_000_000,
            memory_bytes: 16 << 20,
            wall_time: Duration::from_secs(30),
            stdout_bytes: 64 << 10,
            stderr_bytes: 64 << 10,
            output_bytes: 1 << 20,
            output_files: 1_000,
        },
        ..Invocation::default()
    }
}

/// Runs a module made of [`PRELUDE`] plus `body`, which must end normally.
pub(crate) async fn run_ok(runtime: &Runtime, body: &str, invocation: Invocation) -> Outcome {
    let program = compile(runtime, body);
    runtime.run(&program, invocation).await.unwrap_or_else(|err| panic!("run failed: {err:?}"))
}

/// Runs a module made of [`PRELUDE`] plus `body`, which must fail in the guest.
pub(crate) async fn run_failing(runtime: &Runtime, body: &str, invocation: Invocation) -> GuestFailure {
    let program = compile(runtime, body);
    match runtime.run(&program, invocation).await {
        Err(RunError::Guest(failure)) => *failure,
        other => panic!("expected a guest failure, got {other:?}"),
    }
}
