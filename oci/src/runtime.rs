//! Running a container: the per-run bundle (an overlay root over the cached
//! layers), `runc run`, limits, failure mapping and cleanup.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_spec::runtime::LinuxSeccomp;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use shoal_runtime::{FailureKind, GuestFailure, Invocation, Outcome, DEFAULT_ENTRYPOINT};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::error::{ContainerError, ImageError};
use crate::image::Image;
use crate::seccomp::{load_profile, DEFAULT_SECCOMP_PROFILE};
use crate::spec::{self, RunSpec, CGROUP_PARENT};
use crate::unpack::{LayerCache, UnpackedImage};

/// Container ids (and run directories) all start with this, so stale ones
/// are recognised at startup.
const ID_PREFIX: &str = "shoal-";
/// Guest paths a job may not mount over: the sandbox's own mounts.
const RESERVED_PATHS: [&str; 5] = ["/", "/proc", "/sys", "/dev", "/tmp"];
/// How long a killed container gets to be reaped before the run gives up waiting.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// The smallest memory limit accepted: below it runc's own setup in the
/// container's cgroup can be OOM-killed, which would look like the job's fault.
const MIN_MEMORY_BYTES: u64 = 8 << 20;

/// How the container runtime is set up on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciConfig {
    /// Per-run bundles and runc's state (`runc --root`). Owned by one
    /// process: [`OciRuntime::new`] removes whatever it finds there.
    pub state_dir: PathBuf,
    /// The layer cache (see [`LayerCache`]); may outlive the process.
    pub cache_dir: PathBuf,
    /// The runc binary.
    pub runc: PathBuf,
    /// The moby-format seccomp profile to apply.
    pub seccomp_profile: PathBuf,
    /// The unprivileged uid the job runs as (and that owns its writable mounts).
    pub uid: u32,
    /// The job's gid.
    pub gid: u32,
    /// Most processes and threads the container may have at once.
    pub pids_max: i64,
    /// CPU time per wall-clock second, in thousandths of a CPU (1000 = one CPU).
    pub cpu_millis: u64,
    /// Size of the `/tmp` tmpfs, in bytes (counted against the memory limit).
    pub tmp_bytes: u64,
}

impl OciConfig {
    /// The defaults under the given directories: runc from `PATH`, the
    /// containers-common seccomp profile, uid/gid 65534 (`nobody`), 256
    /// processes, one CPU, 64 MiB of `/tmp`.
    pub fn new(state_dir: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        OciConfig {
            state_dir: state_dir.into(),
            cache_dir: cache_dir.into(),
            runc: PathBuf::from("runc"),
            seccomp_profile: PathBuf::from(DEFAULT_SECCOMP_PROFILE),
            uid: 65534,
            gid: 65534,
            pids_max: 256,
            cpu_millis: 1000,
            tmp_bytes: 64 << 20,
        }
    }
}

/// Runs OCI images with runc under the sandbox contract (see the crate docs).
#[derive(Debug)]
pub struct OciRuntime {
    config: OciConfig,
    cache: LayerCache,
    seccomp: LinuxSeccomp,
    runc_root: PathBuf,
    runs: PathBuf,
    swap_accounting: bool,
}

impl OciRuntime {
    /// Checks that runc runs, loads the seccomp profile, opens the layer
    /// cache and cleans up what a previous process left in the state
    /// directory ([`OciRuntime::cleanup_stale`]). Needs root.
    pub fn new(config: OciConfig) -> Result<OciRuntime, ContainerError> {
        let version = std::process::Command::new(&config.runc).arg("--version").output().map_err(|e| {
            ContainerError::host(
                "starting runc",
                format!("{}: {e}; install it with scripts/install-deps.sh", config.runc.display()),
            )
        })?;
        if !version.status.success() {
            return Err(ContainerError::host("starting runc", String::from_utf8_lossy(&version.stderr)));
        }
        let seccomp = load_profile(&config.seccomp_profile).map_err(|e| ContainerError::host("loading seccomp", e))?;
        let cache =
            LayerCache::open(&config.cache_dir).map_err(|e| ContainerError::host("opening the layer cache", e))?;
        let runc_root = config.state_dir.join("runc");
        let runs = config.state_dir.join("runs");
        for dir in [&runc_root, &runs] {
            fs::create_dir_all(dir).map_err(|e| ContainerError::host("creating the state directory", e))?;
        }
        let swap_accounting = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
            || Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let runtime = OciRuntime { config, cache, seccomp, runc_root, runs, swap_accounting };
        let cleaned = runtime.cleanup_stale()?;
        if cleaned > 0 {
            tracing::warn!(containers = cleaned, "removed containers left by a previous process");
        }
        Ok(runtime)
    }

    /// The layer cache.
    pub fn cache(&self) -> &LayerCache {
        &self.cache
    }

    /// Unpacks (or finds in the cache) the image's layers. Blocking: call it
    /// from a blocking thread.
    pub fn prepare(&self, image: &Image) -> Result<UnpackedImage, ImageError> {
        self.cache.unpack(image)
    }

    /// Removes every container, mount, cgroup and run directory under the
    /// state directory: what a process killed mid-run left behind. A
    /// container still running (its watchdog killed too, say with the
    /// worker's whole process group) is killed, every process in its cgroups
    /// with it, and the orphaned `runc run` then exits by itself. Called by
    /// [`OciRuntime::new`]; returns how many runs were cleaned up.
    pub fn cleanup_stale(&self) -> Result<usize, ContainerError> {
        let mut ids: Vec<String> = Vec::new();
        for dir in [&self.runs, &self.runc_root] {
            let entries = fs::read_dir(dir).map_err(|e| ContainerError::host("listing stale runs", e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(ID_PREFIX) && !ids.contains(&name) {
                    ids.push(name);
                }
            }
        }
        for id in &ids {
            teardown(&self.config.runc, &self.runc_root, &self.runs, id);
        }
        Ok(ids.len())
    }

    /// Runs `image` (prepared by [`OciRuntime::prepare`]) once.
    ///
    /// The command is `invocation.args` (`args[0]` the executable, looked up
    /// in the image's `PATH`), or the image's entrypoint and cmd when empty;
    /// the environment is the image's plus the invocation's. Mounts are bind
    /// mounts, read-only unless writable; a writable mount's directory is
    /// given to the sandbox user. `entrypoint` must be the default and
    /// `fuel` is ignored: containers are not metered.
    ///
    /// A non-zero exit is an [`Outcome`]; a memory, time or output limit, or
    /// a death by signal, is a [`ContainerError::Guest`] (runc reports a
    /// death by signal N as status 128 + N, so a status above 128 is read as
    /// one: [`FailureKind::Trap`]). Whatever happens,
    /// including the returned future being dropped, the container, its
    /// mounts, cgroups and processes are gone when this returns.
    ///
    /// If this process dies mid-run (SIGKILL, the OOM killer), the
    /// container dies with it: a watchdog process (`sh`, waiting on a pipe
    /// only this process writes to) deletes it with `runc delete --force`
    /// when the pipe closes, killing its processes and removing its cgroups.
    /// Without it the container would run on, and `runc run`, reparented,
    /// with it, until it ended by itself. The overlay mount and the bundle
    /// stay until the next [`OciRuntime::cleanup_stale`].
    pub async fn run(
        &self,
        image: &Image,
        unpacked: &UnpackedImage,
        invocation: &Invocation,
    ) -> Result<Outcome, ContainerError> {
        validate(invocation)?;
        let id = format!("{ID_PREFIX}{}", ulid::Ulid::new().to_string().to_lowercase());
        let bundle = self.runs.join(&id);
        let guard = RunGuard {
            runc: self.config.runc.clone(),
            runc_root: self.runc_root.clone(),
            runs: self.runs.clone(),
            id: id.clone(),
            armed: true,
        };
        for dir in ["rootfs", "upper", "work"] {
            fs::create_dir_all(bundle.join(dir)).map_err(|e| ContainerError::host("creating the bundle", e))?;
        }
        mount_root(&bundle, &unpacked.layer_dirs)?;
        for writable in invocation.mounts.iter().filter(|m| m.writable) {
            rustix::fs::chown(
                &writable.host,
                Some(rustix::fs::Uid::from_raw(self.config.uid)),
                Some(rustix::fs::Gid::from_raw(self.config.gid)),
            )
            .map_err(|e| ContainerError::host("giving a writable mount to the sandbox user", e))?;
        }
        let spec = spec::build(
            &self.config,
            &RunSpec {
                id: &id,
                image: image.config(),
                invocation,
                seccomp: &self.seccomp,
                swap_accounting: self.swap_accounting,
            },
        )?;
        let spec_json = serde_json::to_vec_pretty(&spec).map_err(|e| ContainerError::host("writing config.json", e))?;
        fs::write(bundle.join("config.json"), spec_json).map_err(|e| ContainerError::host("writing config.json", e))?;

        // Spawned before runc, so there is no moment when the container runs unwatched.
        let _watchdog = watchdog(&self.config.runc, &self.runc_root, &id)?;
        let started = Instant::now();
        let log = bundle.join("runc.log");
        // `--keep`: runc leaves the stopped container (and its cgroup) for us
        // to read its memory events before deleting it.
        let mut child = Command::new(&self.config.runc)
            .arg("--root")
            .arg(&self.runc_root)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "run", "--keep", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ContainerError::host("starting runc", e))?;
        // Captured by tasks of their own, so that what a container wrote
        // before it was killed is kept.
        let stdout = tokio::spawn(capture(child.stdout.take(), invocation.limits.stdout_bytes));
        let stderr = tokio::spawn(capture(child.stderr.take(), invocation.limits.stderr_bytes));
        let wall_time = invocation.limits.wall_time;
        let limits = &invocation.limits;
        let writable: Vec<PathBuf> = invocation.mounts.iter().filter(|m| m.writable).map(|m| m.host.clone()).collect();
        let stop = async {
            tokio::select! {
                () = tokio::time::sleep(wall_time) => FailureKind::Timeout { wall_time },
                kind = watch_outputs(writable.clone(), limits.output_bytes, limits.output_files) => kind,
            }
        };
        let (status, stopped) = tokio::select! {
            status = child.wait() => (status, None),
            kind = stop => {
                kill(&self.config.runc, &self.runc_root, &id).await;
                let reaped = tokio::time::timeout(KILL_GRACE, child.wait()).await;
                (reaped.unwrap_or_else(|_| Err(io::Error::other("runc did not exit after the kill"))), Some(kind))
            }
        };
        let status = status.map_err(|e| ContainerError::host("waiting for runc", e))?;
        // The pipes close once every process of the container is dead, which
        // the end of its pid namespace's init guarantees.
        let (stdout, stdout_truncated) = collect(stdout).await;
        let (stderr, stderr_truncated) = collect(stderr).await;
        let duration = started.elapsed();
        let oom_kills = oom_kills(&id);
        let runc_error = runc_error(&log);
        let outputs = output_usage(&writable);
        guard.finish().await;

        let failure = |kind: FailureKind| {
            ContainerError::Guest(Box::new(GuestFailure {
                kind,
                fuel_consumed: 0,
                stdout: Bytes::from(stdout.clone()),
                stderr: Bytes::from(stderr.clone()),
                stdout_truncated,
                stderr_truncated,
                duration,
            }))
        };
        if let Some(kind) = stopped {
            return Err(failure(kind));
        }
        if oom_kills > 0 {
            return Err(failure(FailureKind::MemoryLimit { limit_bytes: invocation.limits.memory_bytes }));
        }
        if let Some(message) = runc_error {
            // runc itself failed: the process never started (a command that
            // does not exist or is not executable is the image's fault).
            return Err(if message.contains("exec:") || message.contains("executable file not found") {
                ContainerError::InvalidProgram { reason: message }
            } else {
                ContainerError::host("running runc", message)
            });
        }
        let (bytes, files) = outputs.map_err(|e| ContainerError::host("measuring the outputs", e))?;
        if bytes > invocation.limits.output_bytes {
            return Err(failure(FailureKind::OutputLimit {
                limit_bytes: invocation.limits.output_bytes,
                written: bytes,
            }));
        }
        if files > invocation.limits.output_files {
            return Err(failure(FailureKind::OutputFilesLimit { limit_files: invocation.limits.output_files, files }));
        }
        // runc reports a death by signal N as 128 + N, like a shell.
        let exit_code = status.code().unwrap_or(-1);
        if exit_code > 128 {
            return Err(failure(FailureKind::Trap { message: format!("killed by signal {}", exit_code - 128) }));
        }
        Ok(Outcome {
            exit_code,
            fuel_consumed: 0,
            stdout: Bytes::from(stdout),
            stderr: Bytes::from(stderr),
            stdout_truncated,
            stderr_truncated,
            duration,
        })
    }
}

fn validate(invocation: &Invocation) -> Result<(), ContainerError> {
    let invalid = |reason: String| Err(ContainerError::InvalidInvocation { reason });
    if invocation.entrypoint != DEFAULT_ENTRYPOINT {
        return invalid(format!("containers have no entrypoint `{}`; name the command in args", invocation.entrypoint));
    }
    if invocation.args.iter().chain(invocation.env.keys()).chain(invocation.env.values()).any(|s| s.contains('\0')) {
        return invalid("an argument or environment variable contains a NUL byte".to_owned());
    }
    if invocation.limits.memory_bytes < MIN_MEMORY_BYTES || invocation.limits.wall_time.is_zero() {
        return invalid(format!(
            "the memory limit must be at least {MIN_MEMORY_BYTES} bytes and the wall-clock limit above zero"
        ));
    }
    if invocation.env.keys().any(|k| k.is_empty() || k.contains('=')) {
        return invalid("an environment variable name is empty or contains `=`".to_owned());
    }
    for mount in &invocation.mounts {
        let guest = Path::new(&mount.guest);
        if !guest.is_absolute() || guest.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return invalid(format!("mount path {} must be absolute, without `..`", mount.guest));
        }
        if RESERVED_PATHS
            .iter()
            .any(|reserved| guest == Path::new(reserved) || (*reserved != "/" && guest.starts_with(reserved)))
        {
            return invalid(format!("mount path {} is reserved for the sandbox", mount.guest));
        }
        if !mount.host.exists() || (mount.writable && !mount.host.is_dir()) {
            return invalid(format!("mount source {} does not exist or is not a directory", mount.host.display()));
        }
    }
    Ok(())
}

/// Mounts the container's root: an overlay of the cached layers (read-only
/// lower directories, shared by all runs) with a per-run upper directory.
///
/// runc creates the mountpoints of `/proc`, `/tmp`, the inputs and
/// `/outputs` inside the root before making it read-only; with an overlay
/// those directories land in the per-run upper directory, so the cached
/// layers are never modified, and a run costs one mount instead of a copy
/// of the image.
fn mount_root(bundle: &Path, layer_dirs: &[PathBuf]) -> Result<(), ContainerError> {
    // overlayfs lists the topmost layer first.
    let lower: Vec<String> = layer_dirs.iter().rev().map(|dir| dir.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        bundle.join("upper").display(),
        bundle.join("work").display()
    );
    let options = std::ffi::CString::new(options).map_err(|e| ContainerError::host("mounting the root", e))?;
    mount("overlay", bundle.join("rootfs"), "overlay", MountFlags::NODEV | MountFlags::NOSUID, options.as_c_str())
        .map_err(|e| ContainerError::host("mounting the overlay root (is overlayfs available?)", e))
}

/// Starts the watchdog of container `id` (see [`OciRuntime::run`]). Its
/// stdin is a pipe whose write end only this process holds (std opens pipes
/// close-on-exec, so no other child inherits it): at end of file, this
/// process being gone, it deletes the container. When the run ends, it is
/// killed when dropped, before it reads anything.
///
/// A parent-death signal on runc would not do: runc killed cannot pass the
/// kill on, and the container's init, in its own pid namespace, would run on.
fn watchdog(runc: &Path, runc_root: &Path, id: &str) -> Result<tokio::process::Child, ContainerError> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"read -r _ || exec "$0" --root "$1" delete --force "$2""#)
        .arg(runc)
        .arg(runc_root)
        .arg(id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ContainerError::host("starting the container's watchdog", e))
}

/// Kills every process of the container.
async fn kill(runc: &Path, runc_root: &Path, id: &str) {
    let killed = Command::new(runc)
        .arg("--root")
        .arg(runc_root)
        .args(["kill", "--all", id, "KILL"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(error) = killed {
        tracing::warn!(%id, %error, "runc kill failed; the cleanup deletes the container");
    }
}

/// The result of a capture task; nothing if it failed.
async fn collect(task: tokio::task::JoinHandle<(Vec<u8>, bool)>) -> (Vec<u8>, bool) {
    match tokio::time::timeout(KILL_GRACE, task).await {
        Ok(Ok(captured)) => captured,
        _ => (Vec::new(), false),
    }
}

/// Reads a stream to its end, keeping at most `cap` bytes; true if more came.
async fn capture(stream: Option<impl AsyncRead + Unpin>, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let Some(mut stream) = stream else { return (kept, truncated) };
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                let room = cap - kept.len();
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

/// The container cgroup's OOM kill count, from the cgroup v1 memory
/// controller or cgroup v2's `memory.events`; 0 if neither can be read.
/// An exit status of 137 alone would confuse an OOM kill with any SIGKILL.
fn oom_kills(id: &str) -> u64 {
    let v1 = format!("/sys/fs/cgroup/memory/{CGROUP_PARENT}/{id}/memory.oom_control");
    let v2 = format!("/sys/fs/cgroup/{CGROUP_PARENT}/{id}/memory.events");
    [v1, v2]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| line.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()))
                .collect::<Vec<_>>()
        })
        .sum()
}

/// runc's own error, from its JSON log, if it failed to run the container.
fn runc_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["level"] == "error" || entry["level"] == "fatal")
        .filter_map(|entry| entry["msg"].as_str().map(str::to_owned))
        .next_back()
}

/// How often the writable mounts are measured while a container runs.
const OUTPUT_POLL: Duration = Duration::from_millis(250);

/// Resolves when the writable mounts exceed a limit, with the failure; never
/// otherwise. The kernel cannot enforce these limits on a bind mount, so
/// they are polled: a job stops within [`OUTPUT_POLL`] of crossing one
/// (having written at most what it can write in that time beyond it), and
/// the final check after the run catches the rest.
async fn watch_outputs(writable: Vec<PathBuf>, limit_bytes: u64, limit_files: u64) -> FailureKind {
    if writable.is_empty() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(OUTPUT_POLL).await;
        let dirs = writable.clone();
        // A directory the job is busy changing can fail to list; the next poll retries.
        let Ok(Ok((written, files))) = tokio::task::spawn_blocking(move || output_usage(&dirs)).await else {
            continue;
        };
        if written > limit_bytes {
            return FailureKind::OutputLimit { limit_bytes, written };
        }
        if files > limit_files {
            return FailureKind::OutputFilesLimit { limit_files, files };
        }
    }
}

/// Total bytes and entries in the writable mounts.
fn output_usage(writable: &[PathBuf]) -> io::Result<(u64, u64)> {
    let mut totals = (0, 0);
    let mut pending = writable.to_vec();
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            totals.1 += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                totals.0 += meta.len();
            }
        }
    }
    Ok(totals)
}

/// Tears the run down: [`RunGuard::finish`] on a blocking thread when the
/// run ends, or when dropped, on a panic or when the run's future is dropped
/// midway (then on the dropping thread: a `runc delete` and an unmount, brief).
struct RunGuard {
    runc: PathBuf,
    runc_root: PathBuf,
    runs: PathBuf,
    id: String,
    armed: bool,
}

impl RunGuard {
    async fn finish(mut self) {
        self.armed = false;
        let (runc, runc_root, runs, id) =
            (self.runc.clone(), self.runc_root.clone(), self.runs.clone(), self.id.clone());
        // Runs to the end even if this future is dropped while it waits.
        let finished = tokio::task::spawn_blocking(move || teardown(&runc, &runc_root, &runs, &id)).await;
        if let Err(error) = finished {
            tracing::error!(id = %self.id, %error, "the container teardown failed");
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.armed {
            teardown(&self.runc, &self.runc_root, &self.runs, &self.id);
        }
    }
}

/// Removes container `id`: runc's container (killing its processes), any
/// process left in its cgroups, the cgroups, the overlay mount and the
/// bundle. Idempotent; failures are logged, as there is no one to return
/// them to.
fn teardown(runc: &Path, runc_root: &Path, runs: &Path, id: &str) {
    let deleted = std::process::Command::new(runc)
        .arg("--root")
        .arg(runc_root)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(error) = deleted {
        tracing::warn!(%id, %error, "runc delete failed");
    }
    // Belt and braces for a container runc no longer knows (killed while
    // being created): kill what is left in its cgroups and remove them.
    remove_cgroups(id);
    let bundle = runs.join(id);
    let rootfs = bundle.join("rootfs");
    match unmount(&rootfs, UnmountFlags::DETACH) {
        Ok(()) => {}
        // EINVAL: not a mountpoint (never mounted, or already unmounted).
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => {}
        Err(error) => tracing::warn!(%id, %error, "unmounting the container root failed"),
    }
    // Never remove through a mount that is still there.
    let still_mounted = match (fs::metadata(&bundle), fs::metadata(&rootfs)) {
        (Ok(bundle), Ok(rootfs)) => bundle.dev() != rootfs.dev(),
        _ => false,
    };
    if still_mounted {
        tracing::error!(%id, "the container root is still mounted; keeping its bundle");
    } else if let Err(error) = fs::remove_dir_all(&bundle) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(%id, %error, "removing the bundle failed");
        }
    }
    // runc's state directory, in case runc could not delete it.
    let _ = fs::remove_dir_all(runc_root.join(id));
}

fn remove_cgroups(id: &str) {
    let Ok(controllers) = fs::read_dir("/sys/fs/cgroup") else { return };
    let mut dirs: Vec<PathBuf> = controllers.flatten().map(|c| c.path().join(CGROUP_PARENT).join(id)).collect();
    // Pure cgroup v2: the container's cgroup is directly under the root.
    dirs.push(Path::new("/sys/fs/cgroup").join(CGROUP_PARENT).join(id));
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        for _ in 0..50 {
            let pids = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            if fs::remove_dir(dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
