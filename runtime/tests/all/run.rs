//! End-to-end behaviour of `Runtime::run` with small WAT guests.

use std::fs;
use std::time::Duration;

use rand::rngs::ChaCha20Rng;
use rand::{RngExt, SeedableRng};
use shoal_runtime::{
    Determinism, FailureKind, Invocation, Mount, RunError, Runtime, RuntimeConfig, GUEST_MONOTONIC_STEP_NANOS,
    GUEST_RANDOM_SEED, GUEST_WALL_CLOCK,
};

use crate::common::{self, compile, invocation, run_failing, run_ok, runtime};

fn mount(dir: &tempfile::TempDir, guest: &str, writable: bool) -> Mount {
    Mount { host: dir.path().to_path_buf(), guest: guest.to_owned(), writable }
}

/// Writes a line to stdout and to `result.txt` in the first preopen. The
/// `path_open` flags 9 are O_CREAT|O_TRUNC and the rights 64 are FD_WRITE.
const HELLO: &str = r#"
  (data (i32.const 64) "hello from wasm\n")
  (data (i32.const 96) "result.txt")
  (func (export "_start")
    (call $check (call $write (i32.const 1) (i32.const 64) (i32.const 16)))
    (call $check (call $write
      (call $open (i32.const 96) (i32.const 10) (i32.const 9) (i64.const 64))
      (i32.const 64) (i32.const 16))))
"#;

/// Writes a line to stdout only.
const HELLO_STDOUT: &str = r#"
  (data (i32.const 64) "hello from wasm\n")
  (func (export "_start")
    (call $check (call $write (i32.const 1) (i32.const 64) (i32.const 16))))
"#;

#[tokio::test]
async fn hello_world_writes_stdout_and_an_output_file() {
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.mounts.push(mount(&outputs, "/outputs", true));

    let outcome = run_ok(&runtime(), HELLO, inv).await;

    assert_eq!(outcome.exit_code, 0);
    assert_eq!(&outcome.stdout[..], b"hello from wasm\n");
    assert!(outcome.stderr.is_empty());
    assert!(!outcome.stdout_truncated);
    assert!(outcome.fuel_consumed > 0);
    let written = fs::read(outputs.path().join("result.txt")).expect("output file exists");
    assert_eq!(written, b"hello from wasm\n");
}

/// Records the thread it is dropped on.
struct DroppedOn(std::sync::mpsc::Sender<Option<String>>);

impl Drop for DroppedOn {
    fn drop(&mut self) {
        let _ = self.0.send(std::thread::current().name().map(str::to_owned));
    }
}

#[tokio::test]
async fn what_follows_a_run_runs_on_the_guests_thread_once_it_exited_and_never_after_a_failure() {
    let runtime = runtime();
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.mounts.push(mount(&outputs, "/outputs", true));
    let program = compile(&runtime, HELLO);
    let written = outputs.path().join("result.txt");
    let (outcome, (thread, seen, stdout)) = runtime
        .run_then(&program, inv, move |outcome| {
            (std::thread::current().name().map(str::to_owned), fs::read(&written).ok(), outcome.stdout.clone())
        })
        .await
        .unwrap();
    assert_eq!(thread.as_deref(), Some("shoal-guest"), "on the guest's thread, not the caller's");
    assert_eq!(seen.as_deref(), Some(&b"hello from wasm\n"[..]), "after the guest wrote its outputs");
    assert_eq!(stdout, outcome.stdout);

    // What follows is not held to the guest's wall time: taking longer than the limit and its
    // grace, it still answers.
    let mut quick = invocation();
    quick.limits.wall_time = Duration::from_millis(100);
    let slow_after = runtime
        .run_then(&compile(&runtime, HELLO_STDOUT), quick, |_| std::thread::sleep(Duration::from_millis(1_500)))
        .await;
    assert!(slow_after.is_ok(), "{slow_after:?}");

    // A guest that traps: what would follow is dropped unrun, on the guest's thread.
    let (dropped, on) = std::sync::mpsc::channel();
    let guard = DroppedOn(dropped);
    let trapping = compile(&runtime, r#"(func (export "_start") (unreachable))"#);
    let (ran_tx, ran) = std::sync::mpsc::channel();
    let failed = runtime
        .run_then(&trapping, invocation(), move |_| {
            let _ = ran_tx.send(());
            drop(guard);
        })
        .await;
    assert!(matches!(failed, Err(RunError::Guest(_))), "{failed:?}");
    assert_eq!(on.recv_timeout(Duration::from_secs(10)).unwrap().as_deref(), Some("shoal-guest"));
    assert!(ran.try_recv().is_err(), "nothing follows a failed run");
}

#[tokio::test]
async fn reads_a_file_from_a_read_only_mount() {
    let inputs = tempfile::tempdir().expect("tempdir");
    fs::write(inputs.path().join("in.txt"), b"input bytes from the host").expect("write input");
    let mut inv = invocation();
    inv.mounts.push(mount(&inputs, "/inputs", false));
    // Opens `in.txt` with no flags and the FD_READ right (2).
    let body = r#"
      (data (i32.const 96) "in.txt")
      (func (export "_start")
        (local $fd i32)
        (local.set $fd (call $open (i32.const 96) (i32.const 6) (i32.const 0) (i64.const 2)))
        (i32.store (i32.const 16) (i32.const 1024))
        (i32.store (i32.const 20) (i32.const 4096))
        (call $check (call $fd_read (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))
        (call $check (call $write (i32.const 1) (i32.const 1024) (i32.load (i32.const 24)))))
    "#;

    let outcome = run_ok(&runtime(), body, inv).await;

    assert_eq!(outcome.exit_code, 0);
    assert_eq!(&outcome.stdout[..], b"input bytes from the host");
}

#[tokio::test]
async fn writing_to_a_read_only_mount_fails() {
    let inputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.mounts.push(mount(&inputs, "/inputs", false));

    let outcome = run_ok(&runtime(), HELLO, inv).await;

    // `$check` exits with the errno of the refused `path_open`.
    assert_ne!(outcome.exit_code, 0);
    assert!(!inputs.path().join("result.txt").exists());
}

#[tokio::test]
async fn trap_reports_the_trap_code_and_the_stderr_tail() {
    let body = r#"
      (data (i32.const 64) "thread 'main' panicked: boom\n")
      (func $fail (unreachable))
      (func (export "_start")
        (call $check (call $write (i32.const 2) (i32.const 64) (i32.const 29)))
        (call $fail))
    "#;

    let failure = run_failing(&runtime(), body, invocation()).await;

    let FailureKind::Trap { message } = &failure.kind else {
        panic!("expected a trap, got {:?}", failure.kind);
    };
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains("wasm backtrace"), "{message}");
    assert!(message.contains("thread 'main' panicked: boom"), "{message}");
    assert_eq!(&failure.stderr[..], b"thread 'main' panicked: boom\n");
    assert!(failure.fuel_consumed > 0);
}

const INFINITE_LOOP: &str = r#"(func (export "_start") (loop (br 0)))"#;

#[tokio::test]
async fn infinite_loop_exhausts_its_fuel() {
    let mut inv = invocation();
    inv.limits.fuel = 1_000_000;

    let failure = run_failing(&runtime(), INFINITE_LOOP, inv).await;

    assert_eq!(failure.kind, FailureKind::FuelExhausted { fuel: 1_000_000 });
    assert_eq!(failure.fuel_consumed, 1_000_000);
    assert!(failure.kind.is_deterministic());
}

#[tokio::test]
async fn wall_time_limit_stops_a_guest_with_plenty_of_fuel() {
    let mut inv = invocation();
    inv.limits.fuel = 1 << 62;
    inv.limits.wall_time = Duration::from_millis(200);

    let failure = run_failing(&runtime(), INFINITE_LOOP, inv).await;

    assert_eq!(failure.kind, FailureKind::Timeout { wall_time: Duration::from_millis(200) });
    assert!(!failure.kind.is_deterministic());
    assert!(failure.duration >= Duration::from_millis(200));
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    // Grows by 16 pages (1 MiB) until refused, then aborts like Rust's
    // allocation-failure handler does.
    let body = r#"
      (func (export "_start")
        (loop $grow
          (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        (unreachable))
    "#;
    let mut inv = invocation();
    inv.limits.memory_bytes = 8 << 20;

    let failure = run_failing(&runtime(), body, inv).await;

    assert_eq!(failure.kind, FailureKind::MemoryLimit { limit_bytes: 8 << 20 });
}

#[tokio::test]
async fn module_needing_more_initial_memory_than_allowed_hits_the_memory_limit() {
    let body = r#"(func (export "run"))"#;
    let runtime = runtime();
    // 300 pages (~19 MiB) are more than the 16 MiB limit.
    let wasm = wat::parse_str(format!("(module (memory 300) {body})")).expect("wat");
    let program = runtime.compile(&wasm).expect("compiles");
    let inv = Invocation { entrypoint: "run".into(), ..invocation() };

    let err = runtime.run(&program, inv).await.expect_err("must fail");

    assert_eq!(
        err.guest_failure().map(|failure| &failure.kind),
        Some(&FailureKind::MemoryLimit { limit_bytes: 16 << 20 })
    );
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack() {
    let body = r#"
      (func $recurse (param i64) (result i64)
        (i64.add (i64.const 1) (call $recurse (local.get 0))))
      (func (export "_start") (drop (call $recurse (i64.const 0))))
    "#;

    let failure = run_failing(&runtime(), body, invocation()).await;

    assert_eq!(failure.kind, FailureKind::StackOverflow);
}

#[tokio::test]
async fn huge_stdout_is_capped_and_marked_truncated() {
    // 10,000 lines of 16 bytes, far more than the 1,000 bytes kept.
    let body = r#"
      (data (i32.const 64) "0123456789abcde\n")
      (func (export "_start")
        (local $i i32)
        (loop $more
          (call $check (call $write (i32.const 1) (i32.const 64) (i32.const 16)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 10000)))))
    "#;
    let mut inv = invocation();
    inv.limits.stdout_bytes = 1000;

    let outcome = run_ok(&runtime(), body, inv).await;

    assert_eq!(outcome.exit_code, 0);
    assert!(outcome.stdout_truncated);
    let expected = "0123456789abcde\n".repeat(10_000);
    assert_eq!(&outcome.stdout[..], &expected.as_bytes()[..1000]);
}

#[tokio::test]
async fn one_write_over_the_limit_is_refused() {
    // One 64 KiB write past a 1000-byte limit: refused before it is made.
    let body = r#"
      (data (i32.const 96) "big.bin")
      (func (export "_start")
        (call $check (call $write
          (call $open (i32.const 96) (i32.const 7) (i32.const 9) (i64.const 64))
          (i32.const 0) (i32.const 65536))))
    "#;
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.limits.output_bytes = 1000;
    inv.mounts.push(mount(&outputs, "/outputs", true));

    let failure = run_failing(&runtime(), body, inv).await;

    assert_eq!(failure.kind, FailureKind::OutputLimit { limit_bytes: 1000, written: 65536 });
    assert_eq!(fs::metadata(outputs.path().join("big.bin")).expect("opened").len(), 0, "the write was not made");
}

#[tokio::test]
async fn outputs_growing_past_the_limit_stop_the_guest_at_the_write_that_crosses_it() {
    // 1,000 writes of 1 KiB; the limit is 10 KiB: the eleventh write is not
    // made, so exactly the limit reaches the disk.
    let body = r#"
      (data (i32.const 96) "stream.bin")
      (func (export "_start")
        (local $fd i32) (local $i i32)
        (local.set $fd (call $open (i32.const 96) (i32.const 10) (i32.const 9) (i64.const 64)))
        (loop $more
          (call $check (call $write (local.get $fd) (i32.const 1024) (i32.const 1024)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 1000)))))
    "#;
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.limits.output_bytes = 10 << 10;
    inv.mounts.push(mount(&outputs, "/outputs", true));

    let failure = run_failing(&runtime(), body, inv).await;

    assert_eq!(failure.kind, FailureKind::OutputLimit { limit_bytes: 10 << 10, written: 11 << 10 });
    let on_disk = fs::metadata(outputs.path().join("stream.bin")).expect("file").len();
    assert_eq!(on_disk, 10 << 10);
}

#[tokio::test]
async fn bytes_that_are_not_wasm_are_an_invalid_module() {
    let err = runtime().compile(b"#!/bin/sh\necho not wasm\n").expect_err("must be rejected");
    assert!(matches!(&err, RunError::InvalidModule { reason } if reason.contains("magic")), "{err}");
}

#[tokio::test]
async fn truncated_wasm_is_an_invalid_module() {
    let wasm = common::module(HELLO);
    let err = runtime().compile(&wasm[..wasm.len() / 2]).expect_err("must be rejected");
    assert!(matches!(err, RunError::InvalidModule { .. }), "{err}");
}

#[tokio::test]
async fn imports_other_than_wasi_are_an_invalid_module() {
    let wasm = wat::parse_str(r#"(module (import "env" "net_connect" (func)))"#).expect("wat");
    let err = runtime().compile(&wasm).expect_err("must be rejected");
    assert!(matches!(&err, RunError::InvalidModule { reason } if reason.contains("net_connect")), "{err}");
}

#[tokio::test]
async fn missing_entrypoint_lists_the_exported_functions() {
    let runtime = runtime();
    let program = compile(&runtime, r#"(func (export "run")) (func (export "add") (param i32))"#);

    let err = runtime.run(&program, invocation()).await.expect_err("no _start");

    match err {
        RunError::MissingEntrypoint { name, available } => {
            assert_eq!(name, "_start");
            assert_eq!(available, ["run", "add"]);
        }
        other => panic!("expected MissingEntrypoint, got {other:?}"),
    }
    // An export with parameters cannot be an entrypoint either.
    let with_params = Invocation { entrypoint: "add".into(), ..invocation() };
    let err = runtime.run(&program, with_params).await.expect_err("has params");
    assert!(matches!(err, RunError::MissingEntrypoint { .. }), "{err}");
}

#[tokio::test]
async fn named_entrypoint_runs_that_export() {
    let body = r#"
      (data (i32.const 64) "A")
      (data (i32.const 65) "B")
      (func (export "_start") (drop (call $write (i32.const 1) (i32.const 64) (i32.const 1))))
      (func (export "other") (drop (call $write (i32.const 1) (i32.const 65) (i32.const 1))))
    "#;
    let inv = Invocation { entrypoint: "other".into(), ..invocation() };

    let outcome = run_ok(&runtime(), body, inv).await;

    assert_eq!(&outcome.stdout[..], b"B");
}

#[tokio::test]
async fn proc_exit_status_is_the_exit_code() {
    let body = r#"(func (export "_start") (call $proc_exit (i32.const 3)) (unreachable))"#;

    let outcome = run_ok(&runtime(), body, invocation()).await;

    assert_eq!(outcome.exit_code, 3);
}

#[tokio::test]
async fn bad_invocations_are_rejected_before_running() {
    let runtime = runtime();
    let program = compile(&runtime, HELLO);
    let missing_dir = Invocation {
        mounts: vec![Mount { host: "/nonexistent/shoal/outputs".into(), guest: "/outputs".into(), writable: true }],
        ..invocation()
    };
    let too_much_memory = {
        let mut inv = invocation();
        inv.limits.memory_bytes = runtime.config().max_memory_bytes + 1;
        inv
    };
    let bad_env = {
        let mut inv = invocation();
        inv.env.insert("A=B".into(), "c".into());
        inv
    };
    for inv in [missing_dir, too_much_memory, bad_env] {
        let err = runtime.run(&program, inv).await.expect_err("must be rejected");
        assert!(matches!(err, RunError::InvalidInvocation { .. }), "{err}");
    }
}

#[tokio::test]
async fn program_from_another_runtime_is_rejected() {
    let program = compile(&runtime(), HELLO);
    let err = runtime().run(&program, invocation()).await.expect_err("must be rejected");
    assert!(matches!(err, RunError::InvalidInvocation { .. }), "{err}");
}

/// Prints the wall clock, two monotonic readings and 32 random bytes as raw
/// little-endian bytes.
const CLOCKS_AND_RANDOM: &str = r#"
  (func (export "_start")
    (call $check (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1024)))
    (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1032)))
    (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1040)))
    (call $check (call $random_get (i32.const 1048) (i32.const 32)))
    (call $check (call $write (i32.const 1) (i32.const 1024) (i32.const 56))))
"#;

#[tokio::test]
async fn clocks_and_random_are_fixed() {
    let outcome = run_ok(&runtime(), CLOCKS_AND_RANDOM, invocation()).await;

    let word = |i: usize| u64::from_le_bytes(outcome.stdout[i..i + 8].try_into().expect("8 bytes"));
    assert_eq!(u128::from(word(0)), GUEST_WALL_CLOCK.as_nanos());
    assert_eq!(word(16) - word(8), GUEST_MONOTONIC_STEP_NANOS);
    // wasmtime-wasi draws random bytes one `u8` sample at a time.
    let expected_random: Vec<u8> = ChaCha20Rng::from_seed(GUEST_RANDOM_SEED).random_iter::<u8>().take(32).collect();
    assert_eq!(&outcome.stdout[24..56], &expected_random[..]);
}

#[tokio::test]
async fn a_nondeterministic_run_sees_the_hosts_clocks_and_fresh_randomness() {
    let runtime = runtime();
    let inv = Invocation { determinism: Determinism::Nondeterministic, ..invocation() };
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let a = run_ok(&runtime, CLOCKS_AND_RANDOM, inv.clone()).await;
    let b = run_ok(&runtime, CLOCKS_AND_RANDOM, inv).await;
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();

    let word = |outcome: &shoal_runtime::Outcome, i: usize| {
        u64::from_le_bytes(outcome.stdout[i..i + 8].try_into().expect("8 bytes"))
    };
    for outcome in [&a, &b] {
        let wall = u128::from(word(outcome, 0));
        assert!((before..=after).contains(&wall), "the host's wall clock: {wall} not in {before}..={after}");
        assert!(word(outcome, 16) >= word(outcome, 8), "a monotonic clock");
    }
    assert_ne!(&a.stdout[24..56], &b.stdout[24..56], "each run draws its own random bytes");
    let pinned: Vec<u8> = ChaCha20Rng::from_seed(GUEST_RANDOM_SEED).random_iter::<u8>().take(32).collect();
    assert_ne!(&a.stdout[24..56], &pinned[..], "not the deterministic sandbox's stream");
}

#[tokio::test]
async fn same_program_and_inputs_give_identical_results() {
    // Float work, memory growth, clocks and randomness, all fed into stdout.
    let body = r#"
      (func $mix (export "mix") (param $n i32) (result f64)
        (local $acc f64) (local $i i32)
        (loop $more
          (local.set $acc (f64.add (f64.mul (local.get $acc) (f64.const 1.0000001))
            (f64.sqrt (f64.convert_i32_u (local.get $i)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $acc))
      (func (export "_start")
        (drop (memory.grow (i32.const 3)))
        (f64.store (i32.const 1064) (call $mix (i32.const 100000)))
        (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1024)))
        (call $check (call $random_get (i32.const 1032) (i32.const 32)))
        (call $check (call $write (i32.const 1) (i32.const 1024) (i32.const 48))))
    "#;
    let first_runtime = runtime();
    let second_runtime = runtime();
    let inv = invocation();

    let a = run_ok(&first_runtime, body, inv.clone()).await;
    let b = run_ok(&first_runtime, body, inv.clone()).await;
    let c = run_ok(&second_runtime, body, inv).await;

    assert_eq!(a.stdout.len(), 48);
    for other in [&b, &c] {
        assert_eq!(a.stdout, other.stdout);
        assert_eq!(a.fuel_consumed, other.fuel_consumed);
        assert_eq!(a.exit_code, other.exit_code);
    }
}

#[tokio::test]
async fn nans_are_canonicalised() {
    // 0/0 yields 0xffc00000 on x86 (sign bit set) and adding to a NaN with
    // payload 0x200001 propagates that payload; both must come out as the
    // canonical quiet NaN.
    let body = r#"
      (func (export "_start")
        (i32.store (i32.const 1024) (i32.reinterpret_f32
          (f32.div (f32.const 0) (f32.const 0))))
        (i32.store (i32.const 1028) (i32.reinterpret_f32
          (f32.add (f32.const nan:0x200001) (f32.const 1))))
        (i64.store (i32.const 1032) (i64.reinterpret_f64
          (f64.add (f64.const nan:0x4000000000001) (f64.const 1))))
        (call $check (call $write (i32.const 1) (i32.const 1024) (i32.const 16))))
    "#;

    let outcome = run_ok(&runtime(), body, invocation()).await;

    let out = &outcome.stdout;
    let canonical_f32 = f32::NAN.to_bits();
    assert_eq!(canonical_f32, 0x7fc0_0000);
    assert_eq!(u32::from_le_bytes(out[0..4].try_into().expect("4")), canonical_f32);
    assert_eq!(u32::from_le_bytes(out[4..8].try_into().expect("4")), canonical_f32);
    assert_eq!(u64::from_le_bytes(out[8..16].try_into().expect("8")), f64::NAN.to_bits());
}

#[tokio::test]
async fn args_and_env_are_exactly_the_invocations() {
    let imports = r#"
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
    "#;
    let body = r#"
      (func (export "_start")
        (call $check (call $args_sizes_get (i32.const 1024) (i32.const 1028)))
        (call $check (call $args_get (i32.const 2048) (i32.const 4096)))
        (call $check (call $write (i32.const 1) (i32.const 4096) (i32.load (i32.const 1028))))
        (call $check (call $environ_sizes_get (i32.const 1024) (i32.const 1028)))
        (call $check (call $environ_get (i32.const 2048) (i32.const 8192)))
        (call $check (call $write (i32.const 1) (i32.const 8192) (i32.load (i32.const 1028)))))
    "#;
    let mut inv = invocation();
    inv.args = vec!["prog".into(), "--flag".into()];
    inv.env.insert("ZED".into(), "last".into());
    inv.env.insert("ALPHA".into(), "first".into());
    // WAT wants every import before the prelude's definitions.
    let text = format!("(module {imports} {} {body})", common::PRELUDE);
    let runtime = runtime();
    let program = runtime.compile(&wat::parse_str(&text).expect("wat")).expect("compiles");

    let outcome = runtime.run(&program, inv).await.expect("runs");

    assert_eq!(&outcome.stdout[..], b"prog\0--flag\0ALPHA=first\0ZED=last\0");
}

#[tokio::test]
async fn concurrent_runs_beyond_the_pool_size_all_succeed() {
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_instances: 2,
        max_memory_bytes: 16 << 20,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let program = compile(&runtime, HELLO_STDOUT);
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let runtime = runtime.clone();
            let program = program.clone();
            tokio::spawn(async move { runtime.run(&program, invocation()).await })
        })
        .collect();

    for handle in handles {
        let outcome = handle.await.expect("task").expect("run succeeds");
        assert_eq!(&outcome.stdout[..], b"hello from wasm\n");
    }
}
