//! The system under test as separate processes the caller can kill: a private Redis, one
//! `shoal gateway` and `shoal worker`s sharing one home (and so one block store); what each
//! process has cost. [`WorkerCommand`] is the one command line of a worker process, which
//! the in-process stack's worker processes use too.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_jobs::keys::RedisRole;
use shoal_jobs::{Fsync, RedisServer};

use crate::error::TestkitError;

/// How long a (re)started gateway has to answer `/healthz`.
const GATEWAY_READY: Duration = Duration::from_secs(30);

/// A `shoal worker` process of a test stack: `shoal --home HOME worker --redis URL --id ID
/// --shards N --concurrency C FLAGS…`, its output appended to a log file or discarded.
#[derive(Debug, Clone, Copy)]
pub struct WorkerCommand<'a> {
    /// The `shoal` binary.
    pub shoal: &'a Path,
    /// The worker's home (its block store is `home/blocks`).
    pub home: &'a Path,
    /// The Redis it works from, logged in as a worker (passed in the environment, where `ps`
    /// does not show the password).
    pub redis_url: &'a str,
    /// Its id.
    pub id: &'a str,
    /// Shard streams.
    pub shards: u32,
    /// Jobs it runs at once.
    pub concurrency: usize,
    /// Further flags of `shoal worker` (`--heartbeat-ms 500`, …).
    pub flags: &'a [String],
    /// Where its stdout and stderr are appended; discarded if none.
    pub log: Option<&'a Path>,
}

impl WorkerCommand<'_> {
    /// Starts the process.
    pub fn spawn(&self) -> Result<Child, TestkitError> {
        let (stdout, stderr) = match self.log {
            Some(path) => {
                let log = open_log(path)?;
                let err = log.try_clone().map_err(|e| TestkitError::io("duplicating a worker log", e))?;
                (Stdio::from(log), Stdio::from(err))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        Command::new(self.shoal)
            .arg("--home")
            .arg(self.home)
            .env("SHOAL_REDIS", self.redis_url)
            .args(["worker", "--id", self.id])
            .args(["--shards", &self.shards.to_string()])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(self.flags)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| TestkitError::io(format!("starting worker {}", self.id), e))
    }
}

/// Opens `path` for appending, creating it if need be.
fn open_log(path: &Path) -> Result<File, TestkitError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TestkitError::io(format!("opening {}", path.display()), e))
}

/// Settings a [`ProcessStack`]'s processes are started with.
#[derive(Debug, Clone)]
pub struct ProcessStackConfig {
    /// The `shoal` binary.
    pub shoal: PathBuf,
    /// Shared home of every worker (block store in `home/blocks`); also holds `redis/` and `logs/`.
    pub home: PathBuf,
    /// Shard streams.
    pub shards: u32,
    /// Jobs each worker runs at once.
    pub worker_concurrency: usize,
    /// Seconds after which a worker reclaims others' pending entries, when workers support it;
    /// the worker's default if none.
    pub visibility_timeout_secs: Option<u64>,
    /// Redis fsync policy.
    pub fsync: Fsync,
    /// Each worker's input cache in bytes (`--input-cache-bytes`); the worker's default if none.
    pub input_cache_bytes: Option<u64>,
    /// Workers' heartbeat in milliseconds (`--heartbeat-ms`); the worker's default if none.
    pub heartbeat_ms: Option<u64>,
}

/// What a process of the stack does besides Redis and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs jobs: a `shoal worker`, or a harness's byzantine worker.
    Worker,
    /// Verifies results: a `shoal verifier`.
    Verifier,
}

/// A worker or verifier process and what has been done to it.
#[derive(Debug)]
struct WorkerProcess {
    id: String,
    role: Role,
    child: Child,
    paused: bool,
}

/// A running stack of processes: a private Redis, one `shoal gateway`, and the `shoal worker`s
/// and `shoal verifier`s started with [`ProcessStack::start_worker`] and
/// [`ProcessStack::start_verifier`] (or any worker-like command, [`ProcessStack::start_process`]),
/// sharing one home. Dropping it kills every process it started.
#[derive(Debug)]
pub struct ProcessStack {
    config: ProcessStackConfig,
    redis: Arc<Mutex<RedisServer>>,
    /// The admin URL, and each role's.
    redis_url: String,
    role_urls: HashMap<RedisRole, String>,
    api_key: String,
    gateway_port: u16,
    gateway: Mutex<Option<Child>>,
    workers: Mutex<Vec<WorkerProcess>>,
    worker_flags: Vec<String>,
    next_worker: Mutex<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a process table leaves it consistent enough to kill from.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ProcessStack {
    /// Starts Redis and the gateway (workers come with [`ProcessStack::start_worker`]).
    pub async fn start(config: ProcessStackConfig) -> Result<ProcessStack, TestkitError> {
        std::fs::create_dir_all(config.home.join("logs"))
            .map_err(|e| TestkitError::io(format!("creating {}/logs", config.home.display()), e))?;
        let redis_dir = config.home.join("redis");
        let fsync = config.fsync;
        let redis = tokio::task::spawn_blocking(move || RedisServer::start(&redis_dir, fsync))
            .await
            .map_err(|e| TestkitError::task("starting redis-server", e))??;
        let redis_url = redis.url();
        let role_urls = RedisRole::ALL.iter().map(|&role| (role, redis.url_for(role))).collect();
        let api_key = crate::api_key(&redis_url, crate::TEST_TENANT, shoal_jobs::Role::Operator).await?;
        let gateway_port = shoal_jobs::free_port()?;
        let worker_flags = worker_flags(&config)?;
        let stack = ProcessStack {
            config,
            redis: Arc::new(Mutex::new(redis)),
            redis_url,
            role_urls,
            api_key,
            gateway_port,
            gateway: Mutex::new(None),
            workers: Mutex::new(Vec::new()),
            worker_flags,
            next_worker: Mutex::new(0),
        };
        stack.spawn_gateway()?;
        stack.wait_gateway().await?;
        Ok(stack)
    }

    /// The gateway's base URL.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    /// The private Redis's URL, logged in as [`RedisRole::Admin`].
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// The private Redis's URL, logged in as `role`'s user.
    pub fn redis_url_for(&self, role: RedisRole) -> String {
        self.role_urls[&role].clone()
    }

    /// An operator's API key for the gateway, of tenant [`crate::TEST_TENANT`].
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Whether workers were given `--visibility-timeout-secs` (their `--help` lists it).
    pub fn workers_reclaim(&self) -> bool {
        self.worker_flags.iter().any(|flag| flag == "--visibility-timeout-secs")
    }

    /// `home/logs/<name>.log`.
    fn log_path(&self, name: &str) -> PathBuf {
        self.config.home.join("logs").join(format!("{name}.log"))
    }

    fn spawn_gateway(&self) -> Result<(), TestkitError> {
        let log = open_log(&self.log_path("gateway"))?;
        let err = log.try_clone().map_err(|e| TestkitError::io("duplicating the gateway log", e))?;
        let child = Command::new(&self.config.shoal)
            .arg("gateway")
            .env("SHOAL_REDIS", self.redis_url_for(RedisRole::Gateway))
            .args(["--listen", &format!("127.0.0.1:{}", self.gateway_port)])
            .args(["--shards", &self.config.shards.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| TestkitError::io(format!("starting {} gateway", self.config.shoal.display()), e))?;
        *lock(&self.gateway) = Some(child);
        Ok(())
    }

    /// Waits until the gateway answers `/healthz` at all (503 while Redis is away counts: it is up).
    async fn wait_gateway(&self) -> Result<(), TestkitError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|source| TestkitError::Http { context: "building an HTTP client".into(), source })?;
        let started = Instant::now();
        while started.elapsed() < GATEWAY_READY {
            if client.get(format!("{}/healthz", self.gateway_url())).send().await.is_ok() {
                return Ok(());
            }
            if let Some(child) = lock(&self.gateway).as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(TestkitError::GatewayExited {
                        status,
                        log: format!("{}/logs/gateway.log", self.config.home.display()),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TestkitError::GatewayNotReady(GATEWAY_READY))
    }

    /// A fresh worker id (`w0`, `w1`, …).
    pub fn new_worker_id(&self) -> String {
        let mut next = lock(&self.next_worker);
        let id = format!("w{}", *next);
        *next += 1;
        id
    }

    /// Starts a worker process named `id`, logging to `home/logs/worker-<id>.log`.
    pub fn start_worker(&self, id: &str) -> Result<(), TestkitError> {
        self.start_worker_with(id, &[])
    }

    /// As [`ProcessStack::start_worker`], with `flags` after the stack's own (a harness's
    /// `--lotus-url …`, say).
    pub fn start_worker_with(&self, id: &str, flags: &[String]) -> Result<(), TestkitError> {
        let log = self.log_path(&format!("worker-{id}"));
        let flags: Vec<String> = self.worker_flags.iter().chain(flags).cloned().collect();
        let child = WorkerCommand {
            shoal: &self.config.shoal,
            home: &self.config.home,
            redis_url: &self.redis_url_for(RedisRole::Worker),
            id,
            shards: self.config.shards,
            concurrency: self.config.worker_concurrency,
            flags: &flags,
            log: Some(&log),
        }
        .spawn()?;
        lock(&self.workers).push(WorkerProcess { id: id.to_string(), role: Role::Worker, child, paused: false });
        Ok(())
    }

    /// Starts a `shoal verifier` process named `id` over every shard, re-executing `sample_rate`
    /// of `sampled` jobs, logging to `home/logs/verifier-<id>.log`.
    pub fn start_verifier(&self, id: &str, sample_rate: f64) -> Result<(), TestkitError> {
        let mut command = Command::new(&self.config.shoal);
        command.env("SHOAL_REDIS", self.redis_url_for(RedisRole::Verifier));
        command.arg("--home").arg(&self.config.home).args(["verifier", "--id", id]).args([
            "--shards",
            &self.config.shards.to_string(),
            "--sample-rate",
            &sample_rate.to_string(),
        ]);
        if let Some(secs) = self.config.visibility_timeout_secs {
            command.args(["--visibility-timeout-secs", &secs.to_string()]);
        }
        self.start_process(id, Role::Verifier, command)
    }

    /// Starts `command` as the stack's process `id` in `role` (a harness's own kind of worker),
    /// logging to `home/logs/<role>-<id>.log`; it is killed with the stack.
    pub fn start_process(&self, id: &str, role: Role, mut command: Command) -> Result<(), TestkitError> {
        let name = match role {
            Role::Worker => "worker",
            Role::Verifier => "verifier",
        };
        let log = open_log(&self.log_path(&format!("{name}-{id}")))?;
        let err = log.try_clone().map_err(|e| TestkitError::io(format!("duplicating the log of {id}"), e))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| TestkitError::io(format!("starting {name} {id}"), e))?;
        lock(&self.workers).push(WorkerProcess { id: id.to_string(), role, child, paused: false });
        Ok(())
    }

    /// Ids of the workers running and not paused.
    pub fn running_workers(&self) -> Vec<String> {
        self.running(Role::Worker)
    }

    /// Ids of the processes in `role` running and not paused.
    pub fn running(&self, role: Role) -> Vec<String> {
        lock(&self.workers).iter().filter(|w| w.role == role && !w.paused).map(|w| w.id.clone()).collect()
    }

    /// SIGKILLs worker (or verifier) `id` and reaps it.
    pub fn kill_worker(&self, id: &str) -> Result<(), TestkitError> {
        let mut workers = lock(&self.workers);
        let index = workers.iter().position(|w| w.id == id).ok_or_else(|| TestkitError::NoWorker(id.to_string()))?;
        let mut worker = workers.remove(index);
        worker.child.kill().map_err(|e| TestkitError::io(format!("killing worker {id}"), e))?;
        worker.child.wait().map_err(|e| TestkitError::io(format!("reaping worker {id}"), e))?;
        Ok(())
    }

    /// Sends SIGSTOP (`stop`) or SIGCONT to worker `id`: a hang that keeps its connections open.
    pub fn signal_worker(&self, id: &str, stop: bool) -> Result<(), TestkitError> {
        let mut workers = lock(&self.workers);
        let worker = workers.iter_mut().find(|w| w.id == id).ok_or_else(|| TestkitError::NoWorker(id.to_string()))?;
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &worker.child.id().to_string()])
            .status()
            .map_err(|e| TestkitError::io(format!("kill {signal} worker {id}"), e))?;
        if !status.success() {
            return Err(TestkitError::Signal { signal: signal.to_string(), id: id.to_string(), status });
        }
        worker.paused = stop;
        Ok(())
    }

    /// Kills Redis (SIGKILL) and starts it again on the same port and data directory.
    pub async fn restart_redis(&self) -> Result<(), TestkitError> {
        let redis = self.redis.clone();
        tokio::task::spawn_blocking(move || lock(&redis).restart())
            .await
            .map_err(|e| TestkitError::task("restarting redis-server", e))??;
        Ok(())
    }

    /// Kills the gateway (SIGKILL) and starts it again on the same port.
    pub async fn restart_gateway(&self) -> Result<(), TestkitError> {
        if let Some(mut child) = lock(&self.gateway).take() {
            child.kill().ok();
            child.wait().ok();
        }
        self.spawn_gateway()?;
        self.wait_gateway().await
    }

    /// CPU seconds (user + system) each process has used so far: workers and verifiers by id,
    /// `gateway`.
    pub fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        self.per_process(process_cpu_seconds)
    }

    /// Voluntary context switches each process has made so far (see [`process_context_switches`]):
    /// workers and verifiers by id, `gateway`.
    pub fn context_switches(&self) -> BTreeMap<String, u64> {
        self.per_process(process_context_switches)
    }

    /// `measure` of each process by pid: workers and verifiers by id, `gateway`.
    fn per_process<T>(&self, measure: impl Fn(u32) -> T) -> BTreeMap<String, T> {
        let mut measured: BTreeMap<String, T> =
            lock(&self.workers).iter().map(|w| (w.id.clone(), measure(w.child.id()))).collect();
        if let Some(gateway) = lock(&self.gateway).as_ref() {
            measured.insert("gateway".to_string(), measure(gateway.id()));
        }
        measured
    }

    /// Redis's `INFO commandstats` (calls and microseconds per command since it started), its
    /// CPU seconds and its voluntary context switches.
    pub async fn redis_usage(&self) -> Result<RedisUsage, TestkitError> {
        let failed = |e: redis::RedisError| TestkitError::Store { context: "INFO".into(), source: e.into() };
        let client = redis::Client::open(self.redis_url.as_str()).map_err(failed)?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(failed)?;
        let info: String =
            redis::cmd("INFO").arg("server").arg("commandstats").query_async(&mut conn).await.map_err(failed)?;
        let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")?.trim().parse::<u32>().ok());
        Ok(RedisUsage {
            commands: parse_commandstats(&info),
            cpu_s: pid.map_or(0.0, process_cpu_seconds),
            context_switches: pid.map_or(0, process_context_switches),
        })
    }

    /// Kills every worker and verifier (SIGKILL ends stopped ones too) and the gateway, then
    /// stops Redis.
    pub fn shutdown(&self) {
        for worker in lock(&self.workers).iter_mut() {
            worker.child.kill().ok();
            worker.child.wait().ok();
        }
        lock(&self.workers).clear();
        if let Some(mut child) = lock(&self.gateway).take() {
            child.kill().ok();
            child.wait().ok();
        }
        lock(&self.redis).stop();
    }
}

impl Drop for ProcessStack {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `--visibility-timeout-secs S` when this `shoal worker` knows the flag (older ones did not),
/// and the input cache and heartbeat when configured.
fn worker_flags(config: &ProcessStackConfig) -> Result<Vec<String>, TestkitError> {
    let help = Command::new(&config.shoal)
        .args(["worker", "--help"])
        .output()
        .map_err(|e| TestkitError::io(format!("running {} worker --help", config.shoal.display()), e))?;
    let text = String::from_utf8_lossy(&help.stdout);
    let mut flags = Vec::new();
    if let Some(secs) = config.visibility_timeout_secs.filter(|_| text.contains("--visibility-timeout-secs")) {
        flags.extend(["--visibility-timeout-secs".to_string(), secs.to_string()]);
    }
    if let Some(bytes) = config.input_cache_bytes {
        flags.extend(["--input-cache-bytes".to_string(), bytes.to_string()]);
    }
    if let Some(ms) = config.heartbeat_ms {
        flags.extend(["--heartbeat-ms".to_string(), ms.to_string()]);
    }
    Ok(flags)
}

/// One command's line of `INFO commandstats`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CommandStats {
    /// Times it was called.
    pub calls: u64,
    /// Microseconds Redis spent in it.
    pub usec: u64,
}

/// What Redis has used since it (re)started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisUsage {
    /// Calls and time by command (`INFO commandstats`).
    pub commands: BTreeMap<String, CommandStats>,
    /// User + system CPU seconds.
    pub cpu_s: f64,
    /// Voluntary context switches (see [`process_context_switches`]).
    pub context_switches: u64,
}

/// `cmdstat_hgetall:calls=3,usec=12,usec_per_call=4.00,…` lines, by command.
fn parse_commandstats(info: &str) -> BTreeMap<String, CommandStats> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field =
                |key: &str| fields.split(',').find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok());
            Some((name.to_string(), CommandStats { calls: field("calls")?, usec: field("usec")? }))
        })
        .collect()
}

/// User + system CPU seconds of process `pid` (0 if it cannot be read), from `/proc/PID/stat`.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Linux reports in USER_HZ, 100 on every platform Shoal runs on.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Voluntary context switches of process `pid`'s threads alive now (0 if it cannot be read),
/// from `/proc/PID/task/*/status`.
///
/// A thread switches out voluntarily each time it waits — for a socket, Redis, another thread —
/// so per job they count the hand-offs a job takes across threads and processes. Involuntary
/// switches (preemptions) are left out: they count contention for the cores, not hand-offs.
/// Linux keeps the counts per thread, and a thread that has exited takes its own with it: a
/// difference is a lower bound when threads came and went in between.
pub fn process_context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:")?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_lines_become_calls_and_microseconds() {
        let info = "# Commandstats\r\ncmdstat_hgetall:calls=12,usec=3400,usec_per_call=283.33,rejected_calls=0\r\ncmdstat_ping:calls=1,usec=0,usec_per_call=0.00\r\n";
        let stats = parse_commandstats(info);
        assert_eq!(stats["hgetall"], CommandStats { calls: 12, usec: 3400 });
        assert_eq!(stats["ping"], CommandStats { calls: 1, usec: 0 });
        assert_eq!(stats.len(), 2);
    }

    fn voluntary(status: &str) -> u64 {
        status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).unwrap().trim().parse().unwrap()
    }

    #[test]
    fn a_thread_waiting_counts_in_this_process_context_switches() {
        // A thread that sleeps switches out voluntarily each time; its counts are in
        // the process's while it is alive (other tests' threads come and go meanwhile, so the
        // sum itself may not grow by as much).
        let (own, all) = std::thread::spawn(|| {
            for _ in 0..20 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let own = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let own = voluntary(&own);
            (own, process_context_switches(std::process::id()))
        })
        .join()
        .unwrap();
        assert!(own >= 20, "the sleeping thread's own: {own}");
        let leader = std::fs::read_to_string(format!("/proc/{}/status", std::process::id())).unwrap();
        let leader = voluntary(&leader);
        assert!(all >= own && all > leader, "summed over threads ({all}), not the main thread's ({leader}) alone");
        assert_eq!(process_context_switches(u32::MAX), 0, "no such process");
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let busy: u64 = (0..20_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(busy > 0);
        assert!(process_cpu_seconds(std::process::id()) > 0.0);
    }
}
