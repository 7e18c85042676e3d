//! A private `redis-server` process: the embedded stack's queue and the tests' real Redis.
//!
//! It listens on a free loopback port, keeps its data (with the append-only file on) in a
//! directory of its own, and is stopped when dropped. Nothing assumes a Redis already running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Durability of the append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// fsync once a second: up to about one second of writes can be lost if the machine dies.
    #[default]
    EverySec,
    /// fsync every write: nothing acknowledged is lost, at about half the throughput.
    Always,
}

/// Failure to start a private Redis.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The binary could not be run.
    #[error("cannot start {binary} (install the redis-server package): {source}")]
    Spawn {
        /// The binary tried.
        binary: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// It started but did not answer in time.
    #[error("redis-server on port {port} did not become ready within {waited:?}; its log: {log}")]
    NotReady {
        /// The port it was given.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The end of its log file.
        log: String,
    },
    /// Local I/O (data directory, free port).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running private `redis-server`; dropping it stops the process.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    fsync: Fsync,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port with its data in `dir`.
    pub fn start(dir: &Path, fsync: Fsync) -> Result<RedisServer, ServerError> {
        let port = free_port()?;
        RedisServer::start_on(dir, port, fsync)
    }

    /// Starts `redis-server` on `port` with its data in `dir` (a restart reuses both).
    pub fn start_on(dir: &Path, port: u16, fsync: Fsync) -> Result<RedisServer, ServerError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| ServerError::Io { context: format!("creating {}", dir.display()), source })?;
        let mut server = RedisServer { child: None, port, dir: dir.to_path_buf(), fsync };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let binary = std::env::var("SHOAL_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string());
        let fsync = match self.fsync {
            Fsync::EverySec => "everysec",
            Fsync::Always => "always",
        };
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", fsync, "--save", ""])
            .args(["--logfile", "redis.log", "--protected-mode", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ServerError::Spawn { binary, source })?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(10))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), ServerError> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut reply = [0u8; 64];
                stream.set_read_timeout(Some(Duration::from_millis(500))).ok();
                // Loading the AOF answers -LOADING; only +PONG means ready.
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read(&mut reply).is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
                {
                    return Ok(());
                }
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let tail = log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        self.stop();
        Err(ServerError::NotReady { port: self.port, waited: started.elapsed(), log: tail })
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Kills the server and starts it again on the same port and data directory.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        self.spawn()
    }

    /// Stops the server gracefully (SIGTERM lets it flush the append-only file).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL; SHUTDOWN lets redis flush its append-only file first.
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::Write;
                stream.write_all(b"SHUTDOWN\r\n").ok();
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|source| ServerError::Io { context: "finding a free port".into(), source })?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|source| ServerError::Io { context: "finding a free port".into(), source })
}
