//! The sandbox, checked from inside busybox containers run by runc. Needs
//! root and runc (scripts/install-deps.sh installs it); without runc every
//! test fails and says so.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::busybox_image;
use shoal_oci::{ContainerError, Image, OciConfig, OciRuntime, UnpackedImage};
use shoal_runtime::{FailureKind, Invocation, Limits, Mount, Outcome};

/// A runtime with its own state and cache directories, and the busybox image prepared.
struct Sandbox {
    runtime: OciRuntime,
    image: Image,
    unpacked: UnpackedImage,
    dir: tempfile::TempDir,
}

fn sandbox_with(configure: impl FnOnce(&mut OciConfig)) -> Sandbox {
    let runc_found =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("runc").is_file()));
    assert!(runc_found, "runc is not installed: run scripts/install-deps.sh (as root)");
    let dir = tempfile::tempdir().unwrap();
    let mut config = OciConfig::new(dir.path().join("state"), dir.path().join("cache"));
    configure(&mut config);
    let runtime = OciRuntime::new(config).expect("the runtime starts (as root, with runc installed)");
    let image = Image::open(busybox_image()).unwrap();
    let unpacked = runtime.prepare(&image).unwrap();
    Sandbox { runtime, image, unpacked, dir }
}

fn sandbox() -> Sandbox {
    sandbox_with(|_| {})
}

fn script(script: &str) -> Invocation {
    Invocation {
        args: vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()],
        limits: Limits { memory_bytes: 128 << 20, wall_time: Duration::from_secs(20), ..Limits::default() },
        ..Invocation::default()
    }
}

impl Sandbox {
    async fn run(&self, invocation: &Invocation) -> Result<Outcome, ContainerError> {
        self.runtime.run(&self.image, &self.unpacked, invocation).await
    }

    /// Runs a shell script that must exit 0; returns its stdout.
    async fn sh(&self, invocation: &Invocation) -> String {
        let outcome = self.run(invocation).await.unwrap();
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        assert_eq!(outcome.exit_code, 0, "stderr: {stderr}");
        String::from_utf8(outcome.stdout.to_vec()).unwrap()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The containers running now (their bundles).
    fn running(&self) -> Vec<String> {
        fs::read_dir(self.state().join("runs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    /// Nothing of any run left: no bundle, no runc container, no mount
    /// under the state directory, no process running `marker`, no cgroup
    /// of the containers `ids`.
    fn assert_nothing_left(&self, marker: &str, ids: &[String]) {
        for id in ids {
            for controller in fs::read_dir("/sys/fs/cgroup").unwrap() {
                let cgroup = controller.unwrap().path().join("shoal-oci").join(id);
                assert!(!cgroup.exists(), "cgroup {} left", cgroup.display());
            }
        }
        assert_eq!(fs::read_dir(self.state().join("runs")).unwrap().count(), 0, "no bundle left");
        assert_eq!(fs::read_dir(self.state().join("runc")).unwrap().count(), 0, "no runc state left");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(self.state().to_str().unwrap()), "no mount left:\n{mounts}");
        assert!(processes_running(marker).is_empty(), "no process left: {:?}", processes_running(marker));
    }
}

fn processes_running(marker: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(marker) && !cmdline.contains("sandbox-"))
        .collect()
}

fn failure_kind(result: Result<Outcome, ContainerError>) -> FailureKind {
    match result {
        Err(ContainerError::Guest(failure)) => failure.kind,
        other => panic!("expected a guest failure, got {other:?}"),
    }
}

#[tokio::test]
async fn the_root_filesystem_is_read_only() {
    let sandbox = sandbox();
    let out = sandbox.sh(&script("touch /new 2>&1; touch /bin/busybox 2>&1; echo done")).await;
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
    // The cached layer is untouched too.
    assert!(!sandbox.unpacked.layer_dirs[0].join("new").exists());
}

#[tokio::test]
async fn inputs_are_read_only_and_outputs_writable() {
    let sandbox = sandbox();
    let inputs = tempfile::tempdir().unwrap();
    fs::write(inputs.path().join("data.txt"), "input data").unwrap();
    let outputs = tempfile::tempdir().unwrap();
    let mut invocation =
        script("cat /inputs/data.txt; echo; touch /inputs/new 2>&1; rm /inputs/data.txt 2>&1; echo result > /outputs/r.txt; ls -ln /outputs");
    invocation.mounts = vec![
        Mount { host: inputs.path().to_path_buf(), guest: "/inputs".to_owned(), writable: false },
        Mount { host: outputs.path().to_path_buf(), guest: "/outputs".to_owned(), writable: true },
    ];
    let out = sandbox.sh(&invocation).await;
    assert!(out.starts_with("input data\n"), "{out}");
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
    assert!(out.contains("65534"), "the output belongs to the sandbox user: {out}");
    assert_eq!(fs::read_to_string(inputs.path().join("data.txt")).unwrap(), "input data");
    assert!(!inputs.path().join("new").exists());
    assert_eq!(fs::read_to_string(outputs.path().join("r.txt")).unwrap(), "result\n");
}

#[tokio::test]
async fn tmp_is_writable_up_to_its_size() {
    let sandbox = sandbox_with(|config| config.tmp_bytes = 1 << 20);
    let out = sandbox
        .sh(&script("echo small > /tmp/a && cat /tmp/a; dd if=/dev/zero of=/tmp/big bs=1024 count=2048 2>&1; true"))
        .await;
    assert!(out.starts_with("small\n"), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
}

#[tokio::test]
async fn the_network_is_loopback_only() {
    let sandbox = sandbox();
    let out = sandbox.sh(&script("ls /sys/class/net; nc -w 2 1.1.1.1 80 </dev/null 2>&1; echo nc=$?")).await;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("lo"), "{out}");
    assert!(out.contains("Network is unreachable"), "{out}");
}

#[tokio::test]
async fn the_process_is_unprivileged() {
    let sandbox = sandbox();
    let out = sandbox
        .sh(&script(concat!(
            "id -u; id -g; awk '/open files/ {print $4}' /proc/self/limits; ",
            "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
        )))
        .await;
    let fields: Vec<&str> = out.lines().map(|line| line.split_whitespace().last().unwrap()).collect();
    assert_eq!(
        fields,
        ["65534", "65534", "1024", "0000000000000000", "0000000000000000", "0000000000000000", "1", "2"],
        "{out}"
    );
}

#[tokio::test]
async fn the_seccomp_profile_blocks_privileged_calls() {
    let sandbox = sandbox();
    // Creating a user namespace needs no capability (the host allows it),
    // and the containers-common profile allows unshare(2): only the hardened
    // filter stops it.
    let out = sandbox.sh(&script("unshare -r true 2>&1; echo status $?; unshare -n true 2>&1; echo status $?")).await;
    assert_eq!(out.matches("Operation not permitted").count(), 2, "{out}");
    assert_eq!(out.matches("status 1").count(), 2, "{out}");
}

#[tokio::test]
async fn the_pids_limit_stops_a_fork_bomb() {
    let sandbox = sandbox_with(|config| config.pids_max = 32);
    let outcome = sandbox.run(&script("for i in $(seq 100); do sleep 30 & done; echo all started")).await.unwrap();
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    assert_ne!(outcome.exit_code, 0);
    assert!(stderr.contains("can't fork"), "{stderr}");
    assert!(!String::from_utf8_lossy(&outcome.stdout).contains("all started"));
}

#[tokio::test]
async fn a_fork_bomb_stays_within_the_pids_limit() {
    let sandbox = sandbox_with(|config| config.pids_max = 32);
    // The bomb in a subshell; the container's init stays alive without forking.
    let mut invocation = script("(bomb() { bomb | bomb & }; bomb) 2>/dev/null; while :; do :; done");
    invocation.limits.wall_time = Duration::from_secs(3);
    let (result, counts) = tokio::join!(sandbox.run(&invocation), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let id = sandbox.running().pop().expect("the container runs");
        let pids = Path::new("/sys/fs/cgroup/pids/shoal-oci").join(&id);
        let counts = (
            fs::read_to_string(pids.join("pids.current")).unwrap(),
            fs::read_to_string(pids.join("pids.events")).unwrap(),
        );
        (id, counts)
    });
    let (id, (current, events)) = counts;
    assert!(current.trim().parse::<u64>().unwrap() <= 32, "pids.current {current}");
    let refused: u64 = events.trim().strip_prefix("max ").unwrap().parse().unwrap();
    assert!(refused > 0, "forks were refused: {events}");
    assert_eq!(failure_kind(result), FailureKind::Timeout { wall_time: Duration::from_secs(3) });
    sandbox.assert_nothing_left("bomb", &[id]);
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let sandbox = sandbox();
    let mut invocation = script("dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived");
    invocation.limits.memory_bytes = 32 << 20;
    let kind = failure_kind(sandbox.run(&invocation).await);
    assert_eq!(kind, FailureKind::MemoryLimit { limit_bytes: 32 << 20 });
}

#[tokio::test]
async fn sleeping_forever_times_out_and_leaves_nothing() {
    let sandbox = sandbox();
    let mut invocation = script("echo started; sleep 987651");
    invocation.limits.wall_time = Duration::from_secs(2);
    let (result, ids) = tokio::join!(sandbox.run(&invocation), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sandbox.running()
    });
    let Err(ContainerError::Guest(failure)) = result else { panic!("expected a timeout, got {result:?}") };
    assert_eq!(failure.kind, FailureKind::Timeout { wall_time: Duration::from_secs(2) });
    assert_eq!(&failure.stdout[..], b"started\n", "what it wrote before the kill is kept");
    assert_eq!(ids.len(), 1, "the container was running");
    sandbox.assert_nothing_left("987651", &ids);
}

#[tokio::test]
async fn a_dropped_run_leaves_nothing() {
    let sandbox = sandbox();
    let invocation = script("sleep 987652");
    let mut run = Box::pin(sandbox.run(&invocation));
    assert!(tokio::time::timeout(Duration::from_secs(2), &mut run).await.is_err(), "still running");
    let ids = sandbox.running();
    assert_eq!(ids.len(), 1, "the container was running");
    drop(run);
    sandbox.assert_nothing_left("987652", &ids);
}

#[tokio::test]
async fn a_new_runtime_cleans_up_after_a_killed_one() {
    let sandbox = sandbox();
    let invocation = script("sleep 987653");
    let mut run = Box::pin(sandbox.run(&invocation));
    assert!(tokio::time::timeout(Duration::from_secs(2), &mut run).await.is_err());
    assert!(!processes_running("987653").is_empty(), "the container runs");
    let ids = sandbox.running();
    // As if the process had been SIGKILLed: nothing of the run is dropped.
    std::mem::forget(run);
    let config = OciConfig::new(sandbox.state(), sandbox.dir.path().join("cache"));
    let restarted = OciRuntime::new(config).unwrap();
    assert_eq!(restarted.cleanup_stale().unwrap(), 0, "the first cleanup removed everything");
    sandbox.assert_nothing_left("987653", &ids);
}

#[tokio::test]
async fn exit_codes_and_capped_logs_are_reported() {
    let sandbox = sandbox();
    let mut invocation = script("yes | head -c 5000; echo oops >&2; exit 3");
    invocation.limits.stdout_bytes = 100;
    let outcome = sandbox.run(&invocation).await.unwrap();
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(outcome.stdout.len(), 100);
    assert!(outcome.stdout_truncated);
    assert_eq!(&outcome.stderr[..], b"oops\n");
    assert!(!outcome.stderr_truncated);
}

#[tokio::test]
async fn outputs_over_the_limit_fail() {
    let sandbox = sandbox();
    let outputs = tempfile::tempdir().unwrap();
    let mut invocation = script("head -c 5000 /dev/zero > /outputs/big");
    invocation.mounts =
        vec![Mount { host: outputs.path().to_path_buf(), guest: "/outputs".to_owned(), writable: true }];
    invocation.limits.output_bytes = 1000;
    let kind = failure_kind(sandbox.run(&invocation).await);
    assert_eq!(kind, FailureKind::OutputLimit { limit_bytes: 1000, written: 5000 });
}

#[tokio::test]
async fn writing_outputs_without_end_is_stopped_at_the_limit() {
    let sandbox = sandbox();
    let outputs = tempfile::tempdir().unwrap();
    let mut invocation = script("while true; do head -c 100000 /dev/zero >> /outputs/big; done");
    invocation.mounts =
        vec![Mount { host: outputs.path().to_path_buf(), guest: "/outputs".to_owned(), writable: true }];
    invocation.limits.output_bytes = 1 << 20;
    let kind = failure_kind(sandbox.run(&invocation).await);
    assert!(
        matches!(kind, FailureKind::OutputLimit { limit_bytes: 1048576, written } if written > 1 << 20),
        "{kind:?}"
    );
    sandbox.assert_nothing_left("/outputs/big", &[]);
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_an_invalid_program() {
    let sandbox = sandbox();
    let invocation = Invocation { args: vec!["/bin/no-such-command".to_owned()], ..script("") };
    let error = sandbox.run(&invocation).await.unwrap_err();
    assert!(matches!(error, ContainerError::InvalidProgram { .. }), "{error:?}");
    assert!(error.to_string().contains("no-such-command"), "{error}");
    sandbox.assert_nothing_left("no-such-command", &[]);
}

#[tokio::test]
async fn a_second_run_unpacks_nothing() {
    let sandbox = sandbox();
    assert_eq!(sandbox.unpacked.layers_unpacked, 1);
    let again = sandbox.runtime.prepare(&sandbox.image).unwrap();
    assert_eq!(again.layers_unpacked, 0);
    assert_eq!(sandbox.runtime.cache().layers_unpacked(), 1);
    assert_eq!(sandbox.sh(&script("echo hello")).await, "hello\n");
    assert_eq!(sandbox.sh(&script("echo again")).await, "again\n");
    assert_eq!(sandbox.runtime.cache().layers_unpacked(), 1);
}

#[test]
fn the_image_command_runs_when_the_invocation_names_none() {
    // The test image's Cmd is /bin/sh, which exits at once on empty stdin.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sandbox = sandbox();
    let outcome = runtime.block_on(sandbox.run(&Invocation { args: Vec::new(), ..script("") })).unwrap();
    assert_eq!(outcome.exit_code, 0);
}

#[tokio::test]
async fn mounts_over_the_sandbox_or_relative_are_refused() {
    let sandbox = sandbox();
    let host = tempfile::tempdir().unwrap();
    for guest in ["/proc", "/tmp/x", "inputs", "/a/../proc", "/"] {
        let mut invocation = script("true");
        invocation.mounts = vec![Mount { host: host.path().to_path_buf(), guest: guest.to_owned(), writable: false }];
        let error = sandbox.run(&invocation).await.unwrap_err();
        assert!(matches!(error, ContainerError::InvalidInvocation { .. }), "{guest}: {error:?}");
    }
    sandbox.assert_nothing_left("no-such-marker", &[]);
}
