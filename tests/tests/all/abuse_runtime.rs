//! Guests that attack the worker rather than compute: sleeping, flooding their outputs with
//! bytes or files, and a module crafted to compile slowly. Each must end by its limit, with a
//! clear reason, without holding the worker.

use std::time::{Duration, Instant};

use serde_json::json;
use shoal_jobs::{FailureReason, JobState};
use shoal_testkit::{Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(120);

/// Submits `spec` and waits for the job to finish.
async fn run(stack: &Stack, spec: serde_json::Value) -> shoal_jobs::Job {
    let id = stack.submit_ok(&spec).await.unwrap();
    stack.wait_terminal(&id, WAIT).await.unwrap()
}

async fn stdout_of(stack: &Stack, job: &shoal_jobs::Job) -> String {
    let stdout = job.result.as_ref().expect("a result").stdout;
    String::from_utf8(stack.read(stdout.cid(), "").await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sleeping_guests_neither_wait_nor_hold_the_worker() {
    // One worker with two slots; two guests sleeping 120 s with a 2 s wall-clock limit, then
    // an ordinary job. A sleep is virtual time in the sandbox: all three finish at once.
    let options = StackOptions { concurrency: 2, fetch_timeout: Duration::from_secs(60), ..StackOptions::default() };
    let stack = Stack::start(options).await.unwrap();
    let abuse = stack.add_program("abuse").await.unwrap().to_string();
    let echo = stack.add_program("echo-hash").await.unwrap().to_string();
    let started = Instant::now();
    let sleep = json!({"program": abuse, "args": ["sleep", "120"], "limits": {"wall_time_ms": 2000}});
    let sleepers = [stack.submit_ok(&sleep).await.unwrap(), stack.submit_ok(&sleep).await.unwrap()];
    let other = stack.submit_ok(&json!({"program": echo})).await.unwrap();

    for id in sleepers {
        let job = stack.wait_terminal(&id, WAIT).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(stdout_of(&stack, &job).await, "slept 120\n", "the guest's clock moved on by its sleep");
    }
    let job = stack.wait_terminal(&other, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_flood_stops_at_the_write_that_crosses_the_output_limit() {
    // 1,920 writes of 1 MiB against a 1 MiB limit: the second write is refused before it is
    // made, so the outputs never held more than the limit.
    let options = StackOptions { fetch_timeout: Duration::from_secs(60), ..StackOptions::default() };
    let stack = Stack::start(options).await.unwrap();
    let program = stack.add_program("huge-output").await.unwrap().to_string();

    let job =
        run(&stack, json!({"program": program, "args": ["1920M", "0"], "limits": {"output_bytes": 1u64 << 20}})).await;

    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, FailureReason::OutputLimit, "{}", failure.message);
    assert!(failure.message.contains("would hold 2097152 bytes"), "{}", failure.message);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_output_files_publish_and_one_too_many_fails_clearly() {
    let options = StackOptions { fetch_timeout: Duration::from_secs(60), ..StackOptions::default() };
    let stack = Stack::start(options).await.unwrap();
    let abuse = stack.add_program("abuse").await.unwrap().to_string();

    let job =
        run(&stack, json!({"program": abuse, "args": ["files", "20000"], "limits": {"wall_time_ms": 60_000}})).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let output = job.result.as_ref().unwrap().output;
    assert_eq!(stack.read(output.cid(), "f19999").await.unwrap(), b"", "every file is published");

    let limit = shoal_runtime::DEFAULT_OUTPUT_FILES;
    let job = run(&stack, json!({"program": abuse, "args": ["files", (limit + 10).to_string()]})).await;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, FailureReason::OutputLimit, "{}", failure.message);
    let expected = format!("would hold {} files and directories, more than the limit of {limit}", limit + 1);
    assert!(failure.message.contains(&expected), "{}", failure.message);
    stack.shutdown().await;
}

/// A valid module whose one function is `size` bytes of loops over many locals: cheap to send,
/// slow for Cranelift to compile.
fn slow_to_compile(size: usize) -> Vec<u8> {
    fn leb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u64, out);
        out.extend_from_slice(body);
    }
    const LOCALS: u64 = 2000;
    let mut code = Vec::with_capacity(size + 16);
    code.extend_from_slice(&[1]);
    leb(LOCALS, &mut code);
    code.push(0x7e); // i64
                     // Many small loops, each reading and writing a few of many locals: every local stays live
                     // across every loop, and Cranelift's time grows with locals × loops (measured here: 64 KiB
                     // in ~8 s, 256 KiB in ~100 s).
    let mut round: u64 = 0;
    while code.len() < size {
        code.extend_from_slice(&[0x03, 0x40]); // loop (no result)
        for k in 0..3 {
            code.push(0x20); // local.get
            leb((round * 31 + k * 977) % LOCALS, &mut code);
        }
        code.extend_from_slice(&[0x7c, 0x7c]); // i64.add twice
        code.push(0x22); // local.tee
        leb((round * 17 + 11) % LOCALS, &mut code);
        code.extend_from_slice(&[0xa7, 0x0d, 0x00, 0x0b]); // i32.wrap_i64; br_if 0; end
        round += 1;
    }
    code.push(0x0b); // end
    let mut body = Vec::new();
    leb(code.len() as u64, &mut body);
    body.extend_from_slice(&code);

    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module); // type 0: () -> ()
    section(3, &[1, 0], &mut module); // one function of type 0
    section(7, &[1, 6, b'_', b's', b't', b'a', b'r', b't', 0, 0], &mut module); // export "_start"
    let mut codes = vec![1];
    codes.extend_from_slice(&body);
    section(10, &codes, &mut module);
    module
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_program_that_compiles_too_slowly_fails_clearly_and_is_not_compiled_again() {
    let options = StackOptions { workers: 0, fetch_timeout: Duration::from_secs(60), ..StackOptions::default() };
    let mut stack = Stack::start(options).await.unwrap();
    let mut config = stack.worker_config("worker-0");
    config.compile_timeout = Duration::from_secs(3);
    stack.start_worker_with(config);
    let slow = stack.add_bytes(&slow_to_compile(SLOW_MODULE_BYTES)).await.unwrap().to_string();

    let started = Instant::now();
    let job = run(&stack, json!({"program": slow})).await;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, FailureReason::Timeout, "{}", failure.message);
    assert!(!failure.reason.is_deterministic(), "another worker may be fast enough");
    assert!(failure.message.contains("compile budget"), "{}", failure.message);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());

    // Asked again while (or after) it compiles in the background: refused without compiling.
    let job = run(&stack, json!({"program": slow})).await;
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, FailureReason::Timeout, "{}", failure.message);
    assert!(failure.message.contains("not compiled again"), "{}", failure.message);

    // Ordinary programs still compile and run.
    let echo = stack.add_program("echo-hash").await.unwrap().to_string();
    let job = run(&stack, json!({"program": echo})).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    stack.shutdown().await;
}

/// Size of the slow module: seconds of compilation here, far past the test's budget.
const SLOW_MODULE_BYTES: usize = 80 << 10;
