//! Guests that sleep, block or flood their outputs: the wall clock, the output
//! bytes and the output files limits hold against them.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use shoal_runtime::{FailureKind, Mount, Runtime, RuntimeConfig};

use crate::common::{compile, invocation, run_failing, run_ok, runtime};

/// `O_NONBLOCK` on Linux.
const O_NONBLOCK: i32 = 0o4000;

fn outputs_mount(dir: &tempfile::TempDir) -> Mount {
    Mount { host: dir.path().to_path_buf(), guest: "/outputs".to_owned(), writable: true }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// `(call $clock_sub ptr userdata clock timeout flags)` stores a clock
/// subscription (48 bytes) at `ptr`.
const CLOCK_SUB: &str = r#"
  (func $clock_sub (param $at i32) (param $userdata i64) (param $clock i32) (param $timeout i64) (param $flags i32)
    (i64.store (local.get $at) (local.get $userdata))
    (i32.store8 offset=8 (local.get $at) (i32.const 0))
    (i32.store offset=16 (local.get $at) (local.get $clock))
    (i64.store offset=24 (local.get $at) (local.get $timeout))
    (i64.store offset=32 (local.get $at) (i64.const 0))
    (i32.store16 offset=40 (local.get $at) (local.get $flags)))
"#;

/// Reads the monotonic clock, sleeps 120 s (one relative clock subscription,
/// what Rust's `thread::sleep` does), reads it again; prints both readings,
/// the event count and the event.
const SLEEP_120S: &str = r#"
  (func (export "_start")
    (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1024)))
    (call $clock_sub (i32.const 2048) (i64.const 7) (i32.const 1) (i64.const 120000000000) (i32.const 0))
    (call $check (call $poll_oneoff (i32.const 2048) (i32.const 4096) (i32.const 1) (i32.const 1040)))
    (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1032)))
    (call $check (call $write (i32.const 1) (i32.const 1024) (i32.const 20)))
    (call $check (call $write (i32.const 1) (i32.const 4096) (i32.const 32))))
"#;

#[tokio::test]
async fn a_nondeterministic_sleep_takes_real_time_up_to_the_wall_clock_limit() {
    let mut inv = invocation();
    inv.determinism = shoal_runtime::Determinism::Nondeterministic;
    inv.limits.wall_time = Duration::from_millis(600);
    let started = Instant::now();

    let outcome = run_ok(&runtime(), &format!("{CLOCK_SUB}{SLEEP_120S}"), inv).await;

    // The 120 s sleep ends at the wall-clock limit; the guest then exits before the epoch
    // deadline catches it (its last calls take microseconds).
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(550) && elapsed < Duration::from_secs(30), "took {elapsed:?}");
    let slept = u64_at(&outcome.stdout, 8) - u64_at(&outcome.stdout, 0);
    assert!((550_000_000..30_000_000_000).contains(&slept), "the guest saw {slept} ns pass");
}

#[tokio::test]
async fn a_sleep_costs_no_real_time_and_advances_the_guests_clock() {
    let mut inv = invocation();
    inv.limits.wall_time = Duration::from_secs(2);
    let started = Instant::now();

    let outcome = run_ok(&runtime(), &format!("{CLOCK_SUB}{SLEEP_120S}"), inv).await;

    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    let out = &outcome.stdout;
    let (before, after) = (u64_at(out, 0), u64_at(out, 8));
    assert!(after - before >= 120_000_000_000, "the guest saw {} ns pass", after - before);
    assert_eq!(u32::from_le_bytes(out[16..20].try_into().expect("4 bytes")), 1, "one event");
    let event = &out[20..52];
    assert_eq!(u64_at(event, 0), 7, "the subscription's userdata");
    assert_eq!(&event[8..11], &[0, 0, 0], "no error, a clock event");
}

#[tokio::test]
async fn sleeps_are_deterministic() {
    let runtime = runtime();
    let body = format!("{CLOCK_SUB}{SLEEP_120S}");
    let a = run_ok(&runtime, &body, invocation()).await;
    let b = run_ok(&runtime, &body, invocation()).await;
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.fuel_consumed, b.fuel_consumed);
}

#[tokio::test]
async fn a_poll_on_several_clocks_wakes_for_the_earliest() {
    // An absolute monotonic deadline far away, and two 5 s relative ones (one
    // on each clock): the 5 s ones fire, in order, and 5 s pass.
    let body = format!(
        r#"{CLOCK_SUB}
      (func (export "_start")
        (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1024)))
        (call $clock_sub (i32.const 2048) (i64.const 1) (i32.const 1) (i64.const 1000000000000000000) (i32.const 1))
        (call $clock_sub (i32.const 2096) (i64.const 2) (i32.const 1) (i64.const 5000000000) (i32.const 0))
        (call $clock_sub (i32.const 2144) (i64.const 3) (i32.const 0) (i64.const 5000000000) (i32.const 0))
        (call $check (call $poll_oneoff (i32.const 2048) (i32.const 4096) (i32.const 3) (i32.const 1040)))
        (call $check (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1032)))
        (call $check (call $write (i32.const 1) (i32.const 1024) (i32.const 20)))
        (call $check (call $write (i32.const 1) (i32.const 4096) (i32.const 64))))
    "#
    );

    let outcome = run_ok(&runtime(), &body, invocation()).await;

    let out = &outcome.stdout;
    let passed = u64_at(out, 8) - u64_at(out, 0);
    assert!((5_000_000_000..6_000_000_000).contains(&passed), "{passed} ns passed");
    assert_eq!(u32::from_le_bytes(out[16..20].try_into().expect("4 bytes")), 2, "two events");
    assert_eq!((u64_at(out, 20), u64_at(out, 52)), (2, 3));
}

#[tokio::test]
async fn the_wall_clock_limit_holds_for_a_guest_blocked_in_a_host_call() {
    // Opening a FIFO no one writes to blocks in the host, where the epoch
    // deadline cannot reach the guest. `run` still ends at the limit.
    let inputs = tempfile::tempdir().expect("tempdir");
    let fifo = inputs.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let (release, released) = std::sync::mpsc::channel::<()>();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            // Told to, or after a while at the latest (so a runtime that waits
            // for the guest fails this test instead of hanging it), open the
            // FIFO for writing: the guest's open returns.
            let _ = released.recv_timeout(Duration::from_secs(30));
            let _ = fs::OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(&fifo);
        })
    };
    let body = r#"
      (data (i32.const 96) "pipe")
      (func (export "_start")
        (drop (call $open (i32.const 96) (i32.const 4) (i32.const 0) (i64.const 2))))
    "#;
    let runtime =
        Runtime::new(RuntimeConfig { max_concurrent_instances: 1, ..RuntimeConfig::default() }).expect("runtime");
    let mut inv = invocation();
    inv.limits.wall_time = Duration::from_millis(500);
    inv.mounts.push(Mount { host: inputs.path().to_path_buf(), guest: "/inputs".into(), writable: false });
    let started = Instant::now();

    let failure = run_failing(&runtime, body, inv).await;

    assert_eq!(failure.kind, FailureKind::Timeout { wall_time: Duration::from_millis(500) });
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // Once the host call returns, the guest stops and its instance slot is
    // free again for the next run.
    release.send(()).expect("writer waits");
    writer.join().expect("writer thread");
    let next = run_ok(&runtime, r#"(func (export "_start"))"#, invocation()).await;
    assert_eq!(next.exit_code, 0);
}

/// Writes `$n` times `$len` bytes from address 1024 to `flood.bin`.
const FLOOD: &str = r#"
  (data (i32.const 96) "flood.bin")
  (func $flood (param $n i32) (param $len i32)
    (local $fd i32) (local $i i32)
    (drop (memory.grow (i32.const 80)))
    (local.set $fd (call $open (i32.const 96) (i32.const 9) (i32.const 9) (i64.const 64)))
    (loop $more
      (call $check (call $write (local.get $fd) (i32.const 1024) (local.get $len)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (local.get $n)))))
"#;

#[tokio::test]
async fn big_writes_stop_at_the_output_limit_before_reaching_the_disk() {
    // 60 writes of 4 MiB against a 10 MiB limit: two are made, the third
    // would cross the limit and is not.
    let body = format!(r#"{FLOOD} (func (export "_start") (call $flood (i32.const 60) (i32.const 4194304)))"#);
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.limits.memory_bytes = 8 << 20;
    inv.limits.output_bytes = 10 << 20;
    inv.mounts.push(outputs_mount(&outputs));

    let failure = run_failing(&runtime(), &body, inv).await;

    assert_eq!(failure.kind, FailureKind::OutputLimit { limit_bytes: 10 << 20, written: 12 << 20 });
    assert!(failure.kind.is_deterministic());
    assert_eq!(fs::metadata(outputs.path().join("flood.bin")).expect("file").len(), 8 << 20);
}

#[tokio::test]
async fn holes_and_truncation_count_towards_the_output_limit() {
    // A one-byte write at 1 GiB, and growing a file to 2 MiB, would each make
    // the file larger than the 1 MiB limit (apparent sizes are published).
    let pwrite = r#"
      (data (i32.const 96) "sparse.bin")
      (func (export "_start")
        (i32.store (i32.const 16) (i32.const 1024))
        (i32.store (i32.const 20) (i32.const 1))
        (call $check (call $fd_pwrite
          (call $open (i32.const 96) (i32.const 10) (i32.const 9) (i64.const 64))
          (i32.const 16) (i32.const 1) (i64.const 1073741824) (i32.const 24))))
    "#;
    let truncate = r#"
      (data (i32.const 96) "sparse.bin")
      (func (export "_start")
        (call $check (call $fd_filestat_set_size
          (call $open (i32.const 96) (i32.const 10) (i32.const 9) (i64.const 4194368))
          (i64.const 2097152))))
    "#;
    for (body, would_hold) in [(pwrite, (1 << 30) + 1), (truncate, 2 << 20)] {
        let outputs = tempfile::tempdir().expect("tempdir");
        let mut inv = invocation();
        inv.mounts.push(outputs_mount(&outputs));

        let failure = run_failing(&runtime(), body, inv).await;

        assert_eq!(failure.kind, FailureKind::OutputLimit { limit_bytes: 1 << 20, written: would_hold });
        assert_eq!(fs::metadata(outputs.path().join("sparse.bin")).expect("file").len(), 0);
    }
}

#[tokio::test]
async fn deleted_outputs_make_room_again() {
    // Writes and deletes a 1 KiB scratch file 50 times under a 1.5 KiB limit.
    let body = r#"
      (data (i32.const 96) "scratch")
      (func (export "_start")
        (local $fd i32) (local $i i32)
        (loop $more
          (local.set $fd (call $open (i32.const 96) (i32.const 7) (i32.const 9) (i64.const 64)))
          (call $check (call $write (local.get $fd) (i32.const 1024) (i32.const 1024)))
          (call $check (call $fd_close (local.get $fd)))
          (call $check (call $path_unlink_file (i32.const 3) (i32.const 96) (i32.const 7)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 50)))))
    "#;
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.limits.output_bytes = 1536;
    inv.limits.output_files = 1;
    inv.mounts.push(outputs_mount(&outputs));

    let outcome = run_ok(&runtime(), body, inv).await;

    assert_eq!(outcome.exit_code, 0);
}

#[tokio::test]
async fn a_write_to_a_file_with_two_names_counts_twice() {
    // `b` names `a`'s file: 1 KiB written to it is published twice, past a 1.5 KiB limit.
    let body = r#"
      (data (i32.const 96) "a")
      (data (i32.const 100) "b")
      (func (export "_start")
        (local $fd i32)
        (local.set $fd (call $open (i32.const 96) (i32.const 1) (i32.const 9) (i64.const 64)))
        (call $check (call $path_link (i32.const 3) (i32.const 0) (i32.const 96) (i32.const 1)
          (i32.const 3) (i32.const 100) (i32.const 1)))
        (call $check (call $write (local.get $fd) (i32.const 1024) (i32.const 1024))))
    "#;
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.limits.output_bytes = 1536;
    inv.mounts.push(outputs_mount(&outputs));

    let failure = run_failing(&runtime(), body, inv).await;

    assert_eq!(failure.kind, FailureKind::OutputLimit { limit_bytes: 1536, written: 2048 });
    assert_eq!(fs::metadata(outputs.path().join("b")).expect("the second name").len(), 0, "nothing written");
}

/// Creates `$n` files named `aaa`, `aab`, … (closing each).
const MANY_FILES: &str = r#"
  (func $files (param $n i32)
    (local $i i32)
    (loop $more
      (i32.store8 (i32.const 96) (i32.add (i32.const 97) (i32.div_u (local.get $i) (i32.const 676))))
      (i32.store8 (i32.const 97) (i32.add (i32.const 97) (i32.rem_u (i32.div_u (local.get $i) (i32.const 26)) (i32.const 26))))
      (i32.store8 (i32.const 98) (i32.add (i32.const 97) (i32.rem_u (local.get $i) (i32.const 26))))
      (call $check (call $fd_close (call $open (i32.const 96) (i32.const 3) (i32.const 5) (i64.const 64))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (local.get $n)))))
"#;

#[tokio::test]
async fn the_file_past_the_output_files_limit_is_not_made() {
    let body = format!(r#"{MANY_FILES} (func (export "_start") (call $files (i32.const 1000)))"#);
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.limits.output_files = 100;
    inv.mounts.push(outputs_mount(&outputs));

    let failure = run_failing(&runtime(), &body, inv).await;

    assert_eq!(failure.kind, FailureKind::OutputFilesLimit { limit_files: 100, files: 101 });
    assert!(failure.kind.is_deterministic());
    assert_eq!(fs::read_dir(outputs.path()).expect("list").count(), 100);
}

#[tokio::test]
async fn directories_count_as_output_files_and_reopening_a_file_does_not() {
    let body = r#"
      (data (i32.const 96) "x")
      (data (i32.const 100) "dir")
      (func (export "_start")
        ;; O_CREAT three times: one file.
        (call $check (call $fd_close (call $open (i32.const 96) (i32.const 1) (i32.const 1) (i64.const 64))))
        (call $check (call $fd_close (call $open (i32.const 96) (i32.const 1) (i32.const 1) (i64.const 64))))
        (call $check (call $fd_close (call $open (i32.const 96) (i32.const 1) (i32.const 1) (i64.const 64))))
        (call $check (call $path_create_directory (i32.const 3) (i32.const 100) (i32.const 3))))
    "#;
    let outputs = tempfile::tempdir().expect("tempdir");
    let mut inv = invocation();
    inv.limits.output_files = 1;
    inv.mounts.push(outputs_mount(&outputs));

    let failure = run_failing(&runtime(), body, inv).await;

    assert_eq!(failure.kind, FailureKind::OutputFilesLimit { limit_files: 1, files: 2 });
    let mut names: Vec<_> =
        fs::read_dir(outputs.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    assert_eq!(names, ["x"]);
}

#[tokio::test]
async fn dropping_a_run_stops_the_guest_and_frees_its_slot() {
    // One instance slot; a guest that would spin for an hour.
    let runtime =
        Runtime::new(RuntimeConfig { max_concurrent_instances: 1, ..RuntimeConfig::default() }).expect("runtime");
    let spin = compile(&runtime, r#"(func (export "_start") (loop $forever (br $forever)))"#);
    let mut inv = invocation();
    inv.limits.fuel = u64::MAX / 2;
    inv.limits.wall_time = Duration::from_secs(3600);
    let abandoned = tokio::time::timeout(Duration::from_millis(300), runtime.run(&spin, inv)).await;
    assert!(abandoned.is_err(), "the spinning guest ended by itself");

    // The next run gets the slot as soon as the spinning guest has stopped.
    let started = Instant::now();
    let next =
        tokio::time::timeout(Duration::from_secs(60), run_ok(&runtime, r#"(func (export "_start"))"#, invocation()))
            .await
            .expect("the slot was freed");
    assert_eq!(next.exit_code, 0);
    assert!(started.elapsed() < Duration::from_secs(10), "waited {:?} for the slot", started.elapsed());
}
