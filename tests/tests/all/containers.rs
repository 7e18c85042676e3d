//! Container jobs (`"runtime": "oci"`) through a whole stack: the busybox test image of
//! `scripts/build-test-image.sh`, imported as a directory and named by its CID, run by the
//! worker under runc over an input, its output read back; re-executed by the verifier and
//! compared within a tolerance; and the ways such a job fails — not an image, a command the
//! image lacks, a non-zero exit, a worker that cannot run containers; and a worker process
//! killed while its container runs, which leaves neither the container nor the job behind.
//!
//! Needs root, runc and busybox-static (`scripts/install-deps.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_jobs::{Compared, ExecutionOutcome, FailureReason, Job, JobState, VerificationOutcome};
use shoal_testkit::{Stack, StackOptions};

use busybox::busybox_image;

const WAIT: Duration = Duration::from_secs(120);

#[path = "../../../oci/tests/common/busybox.rs"]
mod busybox;

/// A container job over the busybox image running `script` with `sh -c`.
fn shell_job(image: &str, script: &str, inputs: Value, verification: Value) -> Value {
    json!({
        "runtime": "oci",
        "program": image,
        "command": ["/bin/sh", "-c", script],
        "determinism": "nondeterministic",
        "inputs": inputs,
        "limits": {"memory_bytes": 128 << 20, "wall_time_ms": 60_000},
        "verification": verification,
    })
}

async fn run(stack: &Stack, spec: &Value) -> Job {
    let id = stack.submit_ok(spec).await.unwrap();
    stack.wait_terminal(&id, WAIT).await.unwrap()
}

/// Doubles the number in `/inputs/number.txt`: a line of text, and the number in JSON beside a
/// random nonce, so that two honest runs agree on `/doubled` but differ byte for byte.
const DOUBLE: &str = r#"n=$(cat /inputs/number.txt)
echo "doubled: $((n * 2))" > /outputs/result.txt
nonce=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '{"doubled": %d, "nonce": "%s"}\n' "$((n * 2))" "$nonce" > /outputs/result.json"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_job_reads_its_input_writes_its_output_and_is_verified_within_a_tolerance() {
    let stack = Stack::start(StackOptions { verifier: Some(0.0), ..StackOptions::default() }).await.unwrap();
    let image = stack.add_path(busybox_image()).await.unwrap().to_string();
    let number = stack.add_bytes(b"21\n").await.unwrap().to_string();
    let inputs = json!([{"cid": number, "path": "/inputs", "name": "number.txt"}]);

    let job = run(&stack, &shell_job(&image, DOUBLE, inputs.clone(), json!({"mode": "none"}))).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let result = job.result.as_ref().unwrap();
    assert_eq!(result.exit_code, 0);
    assert_eq!(stack.read(result.output.cid(), "result.txt").await.unwrap(), b"doubled: 42\n");

    // Re-executed by the verifier through the worker's own executor: the nonces differ, the
    // compared number does not.
    let mut spec = shell_job(
        &image,
        DOUBLE,
        inputs,
        json!({"mode": "always", "compare": {"kind": "tolerance", "fields": [
            {"file": "result.json", "json": "/doubled", "absolute": 0}
        ]}}),
    );
    spec["writes"] = json!(["result.txt", "result.json"]);
    let id = stack.submit_ok(&spec).await.unwrap();
    let job = stack.wait_until(&id, WAIT, |job| job.verification.is_some()).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let verification = job.verification.as_ref().unwrap();
    assert_eq!(verification.outcome, VerificationOutcome::Agreed, "{verification:?}");
    let [Compared::Tolerance { against, agree: true, checks }] = &verification.compared[..] else {
        panic!("{verification:?}")
    };
    assert_eq!((against.as_str(), checks[0].field.as_str()), ("re-execution", "result.json#/doubled"));
    assert_eq!((checks[0].reported, checks[0].other), (Some(42.0), Some(42.0)), "{checks:?}");
    let written: Value =
        serde_json::from_slice(&stack.read(job.result.as_ref().unwrap().output.cid(), "result.json").await.unwrap())
            .unwrap();
    assert_eq!(written["doubled"], 42, "{written}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_job_fails_clearly_on_a_bad_image_a_missing_command_and_a_non_zero_exit() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let image = stack.add_path(busybox_image()).await.unwrap().to_string();
    let plain = tempfile::tempdir().unwrap();
    std::fs::write(plain.path().join("notes.txt"), "not an image\n").unwrap();
    let plain = stack.add_path(plain.path()).await.unwrap().to_string();
    let none = json!({"mode": "none"});

    let job = run(&stack, &shell_job(&plain, "true", json!([]), none.clone())).await;
    let failure = job.failure.as_ref().unwrap();
    assert_eq!((job.state, failure.reason), (JobState::Failed, FailureReason::InvalidProgram), "{job:?}");
    assert!(failure.message.contains(&format!("program {plain} is not a usable OCI image")), "{}", failure.message);
    assert!(failure.message.contains("no `oci-layout` file"), "{}", failure.message);

    let mut missing = shell_job(&image, "", json!([]), none.clone());
    missing["command"] = json!(["/bin/no-such-command"]);
    let job = run(&stack, &missing).await;
    let failure = job.failure.as_ref().unwrap();
    assert_eq!((job.state, failure.reason), (JobState::Failed, FailureReason::InvalidProgram), "{job:?}");
    assert!(failure.message.contains("/bin/no-such-command"), "{}", failure.message);

    let job = run(&stack, &shell_job(&image, "echo giving up >&2; exit 3", json!([]), none)).await;
    let failure = job.failure.as_ref().unwrap();
    assert_eq!((job.state, failure.reason), (JobState::Failed, FailureReason::NonZeroExit), "{job:?}");
    let exit_codes: Vec<i32> = job
        .executions
        .iter()
        .filter_map(|execution| match &execution.outcome {
            Some(ExecutionOutcome::Completed(result)) => Some(result.exit_code),
            _ => None,
        })
        .collect();
    assert_eq!(exit_codes, [3], "{job:?}");
    let stderr = stack.read(failure.stderr.unwrap().cid(), "").await.unwrap();
    assert_eq!(stderr, b"giving up\n");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_without_runc_leaves_container_jobs_as_a_failure_of_its_host() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let mut config = stack.worker_config("no-runc");
    config.runc = PathBuf::from("/nonexistent/runc");
    stack.start_worker_with(config);
    let image = stack.add_path(busybox_image()).await.unwrap().to_string();
    // One attempt, so the host's failure is final at once instead of waiting for a takeover.
    let mut spec = shell_job(&image, "true", json!([]), json!({"mode": "none"}));
    spec["retry"] = json!({"max_attempts": 1});
    let job = run(&stack, &spec).await;
    let failure = job.failure.as_ref().unwrap();
    assert_eq!((job.state, failure.reason), (JobState::Failed, FailureReason::Internal), "{job:?}");
    for says in ["this worker cannot run container jobs", "/nonexistent/runc", "the host failed on each of the 1"] {
        assert!(failure.message.contains(says), "{}", failure.message);
    }
    // A WebAssembly job runs there as before.
    let program = stack.add_program("echo-hash").await.unwrap().to_string();
    let hello = json!([{"cid": "bafkqac3imvwgy3zao5xxe3de", "name": "hello"}]);
    let job = run(&stack, &json!({"program": program, "inputs": hello})).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    stack.shutdown().await;
}

/// The pids of processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(marker)
        })
        .collect()
}

/// The container process `pid` runs in: the last part of its cgroup under `shoal-oci`, which is
/// runc's id for it.
fn container_of(pid: u32) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    cgroups
        .lines()
        .find_map(|line| line.split_once("/shoal-oci/").map(|(_, id)| id.trim().to_owned()))
        .unwrap_or_else(|| panic!("process {pid} is in no shoal-oci cgroup: {cgroups}"))
}

/// The cgroup directories of container `id` that exist, under any controller (cgroup v1) or
/// the unified hierarchy.
fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(root).unwrap().flatten().map(|c| c.path().join("shoal-oci").join(id)).collect();
    dirs.push(root.join("shoal-oci").join(id));
    dirs.into_iter().filter(|dir| dir.is_dir()).collect()
}

/// Polls `check` every 100 ms until it is true or `limit` passed; whether it became true.
async fn eventually(limit: Duration, check: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// How long the killed worker's container may take to die with it.
const DIES_WITHIN: Duration = Duration::from_secs(4);
/// How long the container job sleeps, on each attempt.
const SLEEP_SECS: u64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_while_its_container_runs_takes_the_container_with_it_and_the_job_is_retried() {
    let mut stack = Stack::start(StackOptions {
        workers: 0,
        visibility_timeout: Duration::from_secs(2),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let image = stack.add_path(busybox_image()).await.unwrap().to_string();
    // The shell's command line carries the marker, so this run's processes are told apart from
    // other tests' containers.
    let marker = format!("killed-worker-marker-{}", std::process::id());
    // The sleep outlasts by far the wait below for the container to die: it must be killed, not
    // end by itself.
    let script = format!(": {marker}; sleep {SLEEP_SECS}; echo finished > /outputs/done.txt");
    let mut spec = shell_job(&image, &script, json!([]), json!({"mode": "none"}));
    spec["retry"] = json!({"max_attempts": 3});
    let doomed = stack.spawn_worker_process("container-host").unwrap();
    let id = stack.submit_ok(&spec).await.unwrap();

    assert!(eventually(WAIT, || !processes_with(&marker).is_empty()).await, "the container never started");
    let shell = processes_with(&marker)[0];
    let container = container_of(shell);
    assert!(!cgroups_of(&container).is_empty());
    let runc_runs = processes_with(&container);
    assert!(!runc_runs.is_empty(), "no runc process runs container {container}");
    stack.kill_worker_process(doomed).unwrap();

    // The container dies with its worker, runc with it: nothing of it keeps running while no
    // worker is there to answer for it.
    let gone = eventually(DIES_WITHIN, || processes_with(&marker).is_empty()).await;
    assert!(gone, "the container's shell outlived its worker: {:?}", processes_with(&marker));
    assert!(
        eventually(DIES_WITHIN, || processes_with(&container).is_empty()).await,
        "runc outlived its worker: {:?}",
        processes_with(&container)
    );

    // Started again over the same work directory, the worker clears what its predecessor left
    // and runs the job again to the end.
    stack.spawn_worker_process("container-host").unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let workers: Vec<&str> = job.executions.iter().map(|e| e.worker.as_str()).collect();
    assert_eq!(workers, ["container-host", "container-host"], "{job:?}");
    assert!(job.executions[0].outcome.is_none(), "{job:?}");
    let output = &job.result.as_ref().unwrap().output;
    assert_eq!(stack.read(output.cid(), "done.txt").await.unwrap(), b"finished\n");

    let work_dir = stack.worker_dir("container-host");
    let state = work_dir.join("containers/state");
    let listed = Command::new("runc").arg("--root").arg(state.join("runc")).args(["list", "-q"]).output().unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "", "containers left in runc's state");
    assert_eq!(std::fs::read_dir(state.join("runs")).unwrap().count(), 0, "bundles left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let work_dir = work_dir.to_str().unwrap();
    let left: Vec<&str> =
        mounts.lines().filter(|line| line.split(' ').nth(4).is_some_and(|at| at.starts_with(work_dir))).collect();
    assert!(left.is_empty(), "mounts left under the work directory: {left:?}");
    assert_eq!(cgroups_of(&container), Vec::<PathBuf>::new(), "cgroups left");
    assert_eq!(processes_with(&marker), Vec::<u32>::new());
    stack.shutdown().await;
}
