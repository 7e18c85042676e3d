//! The system under test as separate processes the harness can kill: a private Redis, one
//! `shoal gateway` and `shoal worker`s sharing one home (and so one block store); what each
//! process has cost.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_jobs::{Fsync, RedisServer};

use crate::error::{LoadtestError, Result};

/// How long a (re)started gateway has to answer `/healthz`.
const GATEWAY_READY: Duration = Duration::from_secs(30);

/// The `shoal` binary to run when none is given: beside this executable (a test binary sits
/// one level deeper, in `deps/`), else the workspace's release build, else its debug build.
pub fn default_shoal_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| LoadtestError::io("locating this executable", e))?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("shoal"));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join("shoal"));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    candidates.push(root.join("target/release/shoal"));
    candidates.push(root.join("target/debug/shoal"));
    candidates.iter().find(|path| path.is_file()).cloned().ok_or_else(|| {
        LoadtestError::Setup(format!(
            "no shoal binary in {candidates:?}: build it (`cargo build -p shoal-cli`) or pass --shoal"
        ))
    })
}

/// Settings the stack's processes are started with.
#[derive(Debug, Clone)]
pub struct StackConfig {
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

/// A worker process and what has been done to it.
#[derive(Debug)]
struct WorkerProcess {
    id: String,
    child: Child,
    paused: bool,
}

/// The running stack. Dropping it kills every process it started.
#[derive(Debug)]
pub struct Stack {
    config: StackConfig,
    redis: Arc<Mutex<RedisServer>>,
    redis_url: String,
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

impl Stack {
    /// Starts Redis and the gateway (workers come with [`Stack::start_worker`]).
    pub async fn start(config: StackConfig) -> Result<Stack> {
        std::fs::create_dir_all(config.home.join("logs"))
            .map_err(|e| LoadtestError::io(format!("creating {}/logs", config.home.display()), e))?;
        let redis_dir = config.home.join("redis");
        let fsync = config.fsync;
        let redis = tokio::task::spawn_blocking(move || RedisServer::start(&redis_dir, fsync))
            .await
            .map_err(|e| LoadtestError::Setup(format!("starting redis-server: {e}")))??;
        let redis_url = redis.url();
        let gateway_port = shoal_jobs::free_port()?;
        let worker_flags = worker_flags(&config)?;
        let stack = Stack {
            config,
            redis: Arc::new(Mutex::new(redis)),
            redis_url,
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

    /// The private Redis's URL.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// Whether workers were given `--visibility-timeout-secs` (their `--help` lists it).
    pub fn workers_reclaim(&self) -> bool {
        self.worker_flags.iter().any(|flag| flag == "--visibility-timeout-secs")
    }

    fn log_file(&self, name: &str) -> Result<File> {
        let path = self.config.home.join("logs").join(format!("{name}.log"));
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| LoadtestError::io(format!("opening {}", path.display()), e))
    }

    fn spawn_gateway(&self) -> Result<()> {
        let log = self.log_file("gateway")?;
        let err = log.try_clone().map_err(|e| LoadtestError::io("duplicating the gateway log", e))?;
        let child = Command::new(&self.config.shoal)
            .arg("gateway")
            .args(["--redis", &self.redis_url, "--listen", &format!("127.0.0.1:{}", self.gateway_port)])
            .args(["--shards", &self.config.shards.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| LoadtestError::io(format!("starting {} gateway", self.config.shoal.display()), e))?;
        *lock(&self.gateway) = Some(child);
        Ok(())
    }

    /// Waits until the gateway answers `/healthz` at all (503 while Redis is away counts: it is up).
    async fn wait_gateway(&self) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|source| LoadtestError::Http { context: "building an HTTP client".into(), source })?;
        let started = Instant::now();
        while started.elapsed() < GATEWAY_READY {
            if client.get(format!("{}/healthz", self.gateway_url())).send().await.is_ok() {
                return Ok(());
            }
            if let Some(child) = lock(&self.gateway).as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(LoadtestError::Setup(format!(
                        "the gateway exited with {status}; see {}/logs/gateway.log",
                        self.config.home.display()
                    )));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(LoadtestError::Setup(format!("the gateway did not answer within {GATEWAY_READY:?}")))
    }

    /// A fresh worker id (`w0`, `w1`, …).
    pub fn new_worker_id(&self) -> String {
        let mut next = lock(&self.next_worker);
        let id = format!("w{}", *next);
        *next += 1;
        id
    }

    /// Starts a worker process named `id`.
    pub fn start_worker(&self, id: &str) -> Result<()> {
        let log = self.log_file(&format!("worker-{id}"))?;
        let err = log.try_clone().map_err(|e| LoadtestError::io("duplicating a worker log", e))?;
        let child = Command::new(&self.config.shoal)
            .arg("--home")
            .arg(&self.config.home)
            .args(["worker", "--redis", &self.redis_url, "--id", id])
            .args(["--shards", &self.config.shards.to_string()])
            .args(["--concurrency", &self.config.worker_concurrency.to_string()])
            .args(&self.worker_flags)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| LoadtestError::io(format!("starting worker {id}"), e))?;
        lock(&self.workers).push(WorkerProcess { id: id.to_string(), child, paused: false });
        Ok(())
    }

    /// Ids of the workers running and not paused.
    pub fn running_workers(&self) -> Vec<String> {
        lock(&self.workers).iter().filter(|w| !w.paused).map(|w| w.id.clone()).collect()
    }

    /// SIGKILLs worker `id` and reaps it.
    pub fn kill_worker(&self, id: &str) -> Result<()> {
        let mut workers = lock(&self.workers);
        let index =
            workers.iter().position(|w| w.id == id).ok_or_else(|| LoadtestError::Setup(format!("no worker {id}")))?;
        let mut worker = workers.remove(index);
        worker.child.kill().map_err(|e| LoadtestError::io(format!("killing worker {id}"), e))?;
        worker.child.wait().map_err(|e| LoadtestError::io(format!("reaping worker {id}"), e))?;
        Ok(())
    }

    /// Sends SIGSTOP (`stop`) or SIGCONT to worker `id`: a hang that keeps its connections open.
    pub fn signal_worker(&self, id: &str, stop: bool) -> Result<()> {
        let mut workers = lock(&self.workers);
        let worker =
            workers.iter_mut().find(|w| w.id == id).ok_or_else(|| LoadtestError::Setup(format!("no worker {id}")))?;
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &worker.child.id().to_string()])
            .status()
            .map_err(|e| LoadtestError::io(format!("kill {signal} worker {id}"), e))?;
        if !status.success() {
            return Err(LoadtestError::Setup(format!("kill {signal} worker {id}: {status}")));
        }
        worker.paused = stop;
        Ok(())
    }

    /// Kills Redis (SIGKILL) and starts it again on the same port and data directory.
    pub async fn restart_redis(&self) -> Result<()> {
        let redis = self.redis.clone();
        tokio::task::spawn_blocking(move || lock(&redis).restart())
            .await
            .map_err(|e| LoadtestError::Setup(format!("restarting redis-server: {e}")))??;
        Ok(())
    }

    /// Kills the gateway (SIGKILL) and starts it again on the same port.
    pub async fn restart_gateway(&self) -> Result<()> {
        if let Some(mut child) = lock(&self.gateway).take() {
            child.kill().ok();
            child.wait().ok();
        }
        self.spawn_gateway()?;
        self.wait_gateway().await
    }

    /// CPU seconds (user + system) each process has used so far: the workers by id, `gateway`.
    pub fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        let mut cpu: BTreeMap<String, f64> =
            lock(&self.workers).iter().map(|w| (w.id.clone(), process_cpu_seconds(w.child.id()))).collect();
        if let Some(gateway) = lock(&self.gateway).as_ref() {
            cpu.insert("gateway".to_string(), process_cpu_seconds(gateway.id()));
        }
        cpu
    }

    /// Redis's `INFO commandstats` (calls and microseconds per command since it started) and
    /// its CPU seconds.
    pub async fn redis_usage(&self) -> Result<(BTreeMap<String, CommandStats>, f64)> {
        let failed = |e: redis::RedisError| LoadtestError::store("INFO", e);
        let client = redis::Client::open(self.redis_url.as_str()).map_err(failed)?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(failed)?;
        let info: String =
            redis::cmd("INFO").arg("server").arg("commandstats").query_async(&mut conn).await.map_err(failed)?;
        let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")?.trim().parse::<u32>().ok());
        Ok((parse_commandstats(&info), pid.map_or(0.0, process_cpu_seconds)))
    }

    /// Kills every worker (SIGKILL ends stopped ones too) and the gateway, then stops Redis.
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

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `--visibility-timeout-secs S` when this `shoal worker` knows the flag (older ones did not),
/// and the input cache and heartbeat when configured.
fn worker_flags(config: &StackConfig) -> Result<Vec<String>> {
    let help = Command::new(&config.shoal)
        .args(["worker", "--help"])
        .output()
        .map_err(|e| LoadtestError::io(format!("running {} worker --help", config.shoal.display()), e))?;
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
fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Linux reports in USER_HZ, 100 on every platform Shoal runs on.
    (ticks(11) + ticks(12)) as f64 / 100.0
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

    #[test]
    fn this_process_has_used_some_cpu() {
        let busy: u64 = (0..20_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(busy > 0);
        assert!(process_cpu_seconds(std::process::id()) > 0.0);
    }
}
