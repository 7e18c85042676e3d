//! The stack a scenes run needs, as separate processes: a private `redis-server`, one
//! `shoal gateway` and K `shoal worker`s sharing one home (and so one block store), each worker
//! with an input cache of the size asked for. Nothing here is killed or restarted on purpose;
//! the fault-injecting stack is [`crate::stack`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_jobs::{Fsync, RedisServer};

use super::ScenesError;

/// How long the gateway has to answer `/healthz`.
const GATEWAY_READY: Duration = Duration::from_secs(30);

/// How the processes are started.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The `shoal` binary.
    pub shoal: PathBuf,
    /// Home of every worker (block store in `home/blocks`); also holds `redis/` and `logs/`.
    pub home: PathBuf,
    /// Shard streams.
    pub shards: u32,
    /// Worker processes.
    pub workers: usize,
    /// Tasks each worker runs at once.
    pub concurrency: usize,
    /// Each worker's `--input-cache-bytes`.
    pub input_cache_bytes: u64,
}

/// The running processes; dropping them kills them.
#[derive(Debug)]
pub struct Processes {
    redis: RedisServer,
    gateway: Option<Child>,
    workers: Vec<Child>,
    gateway_url: String,
}

fn log_file(home: &Path, name: &str) -> Result<(File, File), ScenesError> {
    let path = home.join("logs").join(format!("{name}.log"));
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| ScenesError::io(format!("opening {}", path.display()), e))?;
    let err = out.try_clone().map_err(|e| ScenesError::io(format!("duplicating {}", path.display()), e))?;
    Ok((out, err))
}

fn server_error(context: &str) -> impl Fn(shoal_jobs::server::ServerError) -> ScenesError + '_ {
    move |e| ScenesError::Invalid(format!("{context}: {e}"))
}

impl Processes {
    /// Starts Redis, the gateway (waiting for it to answer) and the workers.
    pub async fn start(config: &ProcessConfig) -> Result<Processes, ScenesError> {
        let logs = config.home.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| ScenesError::io(format!("creating {}", logs.display()), e))?;
        let redis_dir = config.home.join("redis");
        let redis = tokio::task::spawn_blocking(move || RedisServer::start(&redis_dir, Fsync::EverySec))
            .await
            .map_err(|e| ScenesError::Invalid(format!("starting redis-server: {e}")))?
            .map_err(server_error("starting redis-server"))?;
        let port = shoal_jobs::server::free_port().map_err(server_error("finding a free port"))?;
        let (out, err) = log_file(&config.home, "gateway")?;
        let gateway = Command::new(&config.shoal)
            .args(["gateway", "--redis", &redis.url(), "--listen", &format!("127.0.0.1:{port}")])
            .args(["--shards", &config.shards.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| ScenesError::io(format!("starting {} gateway", config.shoal.display()), e))?;
        let mut processes = Processes {
            redis,
            gateway: Some(gateway),
            workers: Vec::new(),
            gateway_url: format!("http://127.0.0.1:{port}"),
        };
        processes.wait_gateway(&config.home).await?;
        for n in 0..config.workers {
            let id = format!("w{n}");
            let (out, err) = log_file(&config.home, &format!("worker-{id}"))?;
            let child = Command::new(&config.shoal)
                .arg("--home")
                .arg(&config.home)
                .args(["worker", "--redis", &processes.redis.url(), "--id", &id])
                .args(["--shards", &config.shards.to_string()])
                .args(["--concurrency", &config.concurrency.to_string()])
                .args(["--input-cache-bytes", &config.input_cache_bytes.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| ScenesError::io(format!("starting worker {id}"), e))?;
            processes.workers.push(child);
        }
        Ok(processes)
    }

    /// The gateway's base URL.
    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    async fn wait_gateway(&mut self, home: &Path) -> Result<(), ScenesError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| ScenesError::Invalid(format!("building an HTTP client: {e}")))?;
        let started = Instant::now();
        while started.elapsed() < GATEWAY_READY {
            if client.get(format!("{}/healthz", self.gateway_url)).send().await.is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.gateway.as_mut().map(Child::try_wait) {
                return Err(ScenesError::Invalid(format!(
                    "the gateway exited with {status}; see {}/logs/gateway.log",
                    home.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ScenesError::Invalid(format!("the gateway did not answer within {GATEWAY_READY:?}")))
    }

    /// CPU seconds (user + system) each process has used so far: `w0`…, `gateway`.
    pub fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        let mut cpu = BTreeMap::new();
        for (n, child) in self.workers.iter().enumerate() {
            cpu.insert(format!("w{n}"), process_cpu_seconds(child.id()));
        }
        if let Some(gateway) = &self.gateway {
            cpu.insert("gateway".to_string(), process_cpu_seconds(gateway.id()));
        }
        cpu
    }

    /// Redis's `INFO commandstats` (calls and microseconds per command since it started) and
    /// its CPU seconds.
    pub async fn redis_usage(&self) -> Result<(BTreeMap<String, CommandStats>, f64), ScenesError> {
        let failed = |e: redis::RedisError| ScenesError::Invalid(format!("INFO: {e}"));
        let client = redis::Client::open(self.redis.url()).map_err(failed)?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(failed)?;
        let info: String =
            redis::cmd("INFO").arg("server").arg("commandstats").query_async(&mut conn).await.map_err(failed)?;
        let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")?.trim().parse::<u32>().ok());
        Ok((parse_commandstats(&info), pid.map_or(0.0, process_cpu_seconds)))
    }

    /// Kills the workers and the gateway, then stops Redis.
    pub fn shutdown(&mut self) {
        for child in self.workers.iter_mut().chain(self.gateway.as_mut()) {
            child.kill().ok();
            child.wait().ok();
        }
        self.workers.clear();
        self.gateway = None;
        self.redis.stop();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.shutdown();
    }
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
