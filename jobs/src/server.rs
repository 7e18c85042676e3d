//! A private `redis-server` process: the embedded stack's queue and the tests' real Redis.
//!
//! It listens on a free loopback port, keeps its data (with the append-only file on) in a
//! directory of its own that only its owner can read, and is stopped when dropped. Nothing
//! assumes a Redis already running. [`RedisCluster`] starts three of them as a Redis Cluster.
//!
//! Clients log in: each [`RedisRole`] has a user of its own with a random password, allowed
//! only what [`keys::acl_rules`] lists (the admin is `default`, with a password). The passwords are kept
//! beside the data (`credentials.json`, owner-only), so a restart keeps them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::keys::{self, RedisRole};

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
    /// `redis-cli --cluster create` could not be run or failed.
    #[error("redis-cli --cluster create over ports {ports:?} failed: {output}")]
    ClusterCreate {
        /// The nodes' ports.
        ports: Vec<u16>,
        /// What went wrong: the error running it, or the end of its output.
        output: String,
    },
    /// The cluster was created but its nodes did not all report `cluster_state:ok` in time.
    #[error("the Redis Cluster on ports {ports:?} was not ready within {waited:?}; node {port} said: {info}")]
    ClusterNotReady {
        /// The nodes' ports.
        ports: Vec<u16>,
        /// How long we waited.
        waited: Duration,
        /// The node that was not ready.
        port: u16,
        /// Its last `CLUSTER INFO` reply, or why it could not be asked.
        info: String,
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

/// The password of each role's Redis user.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Credentials(BTreeMap<String, String>);

impl std::fmt::Debug for Credentials {
    /// The users only: a server printed for a failing test must not print its passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    /// The passwords kept in `dir`, or new ones written there.
    fn load_or_create(dir: &Path) -> Result<Credentials, ServerError> {
        let file = dir.join("credentials.json");
        let io = |context: String| move |source| ServerError::Io { context, source };
        if let Ok(bytes) = std::fs::read(&file) {
            if let Ok(credentials) = serde_json::from_slice::<Credentials>(&bytes) {
                if RedisRole::ALL.iter().all(|role| credentials.0.contains_key(role.user())) {
                    return Ok(credentials);
                }
            }
        }
        let credentials = Credentials(
            RedisRole::ALL
                .iter()
                .map(|role| {
                    let mut secret = [0u8; 24];
                    rand::rng().fill_bytes(&mut secret);
                    (role.user().to_string(), hex::encode(secret))
                })
                .collect(),
        );
        let json = serde_json::to_vec_pretty(&credentials).expect("credentials serialise");
        write_private(&file, &json).map_err(io(format!("writing {}", file.display())))?;
        Ok(credentials)
    }

    fn password(&self, role: RedisRole) -> &str {
        self.0.get(role.user()).map_or("", String::as_str)
    }
}

/// Writes `bytes` to `path` as a file only its owner can read, replacing what was there.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::remove_file(path).ok();
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

/// Creates `dir` (and its parents) and makes it readable by its owner only.
/// Creates `dir`, owner-only, and returns it absolute: `redis-server` changes into its `--dir`
/// before it reads the other paths it is given, so a relative one would be looked for there.
fn private_dir(dir: &Path) -> Result<PathBuf, ServerError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .and_then(|()| std::path::absolute(dir))
        .map_err(|source| ServerError::Io { context: format!("creating {}", dir.display()), source })
}

/// A running private `redis-server`; dropping it stops the process.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    credentials: Credentials,
    fsync: Fsync,
    // The cluster bus port when the server is a cluster node.
    cluster_port: Option<u16>,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port with its data in `dir`.
    pub fn start(dir: &Path, fsync: Fsync) -> Result<RedisServer, ServerError> {
        let port = free_port()?;
        RedisServer::start_on(dir, port, fsync)
    }

    /// Starts `redis-server` on `port` with its data in `dir` (a restart reuses both).
    pub fn start_on(dir: &Path, port: u16, fsync: Fsync) -> Result<RedisServer, ServerError> {
        let dir = private_dir(dir)?;
        let credentials = Credentials::load_or_create(&dir)?;
        let mut server = RedisServer { child: None, port, dir, credentials, fsync, cluster_port: None };
        server.spawn()?;
        Ok(server)
    }

    /// Starts a cluster-enabled `redis-server` on free loopback ports (client and cluster bus),
    /// not yet part of any cluster.
    fn start_cluster_node(dir: &Path, credentials: Credentials) -> Result<RedisServer, ServerError> {
        let dir = private_dir(dir)?;
        // The bus port is given explicitly: the default (port + 10000) can be taken, or past 65535.
        let (port, bus) = (free_port()?, free_port()?);
        let mut server =
            RedisServer { child: None, port, dir, credentials, fsync: Fsync::EverySec, cluster_port: Some(bus) };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let binary = std::env::var("SHOAL_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string());
        let pidfile = self.dir.join("redis.pid");
        stop_orphan(&pidfile);
        let fsync = match self.fsync {
            Fsync::EverySec => "everysec",
            Fsync::Always => "always",
        };
        let acl = self.dir.join("users.acl");
        write_private(&acl, keys::acl_file(|role| self.credentials.password(role).to_string()).as_bytes())
            .map_err(|source| ServerError::Io { context: format!("writing {}", acl.display()), source })?;
        let mut command = Command::new(&binary);
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--aclfile")
            .arg(&acl)
            .arg("--pidfile")
            .arg(&pidfile)
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", fsync, "--save", ""])
            .args(["--logfile", "redis.log", "--protected-mode", "yes"]);
        if let Some(bus) = self.cluster_port {
            command
                .args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()])
                .args(["--cluster-config-file", "nodes.conf"]);
        }
        let child = command
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
                let mut reply = [0u8; 64];
                stream.set_read_timeout(Some(Duration::from_millis(500))).ok();
                // Loading the AOF answers -LOADING; only +PONG means ready.
                if stream.write_all(format!("{}PING\r\n", self.auth_line()).as_bytes()).is_ok()
                    && read_until_pong(&mut stream, &mut reply)
                {
                    return Ok(());
                }
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log_tail(5);
        self.stop();
        Err(ServerError::NotReady { port: self.port, waited: started.elapsed(), log })
    }

    /// The last `lines` lines of the server's log file.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default(), lines)
    }

    /// The `redis://` URL of the server, logged in as [`RedisRole::Admin`].
    pub fn url(&self) -> String {
        self.url_for(RedisRole::Admin)
    }

    /// The `redis://` URL of the server, logged in as `role`'s user.
    pub fn url_for(&self, role: RedisRole) -> String {
        format!("redis://{}:{}@127.0.0.1:{}/", role.user(), self.credentials.password(role), self.port)
    }

    /// An inline `AUTH` command for the raw connections of this module.
    fn auth_line(&self) -> String {
        format!("AUTH {}\r\n", self.credentials.password(RedisRole::Admin))
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
                stream.write_all(format!("{}SHUTDOWN\r\n", self.auth_line()).as_bytes()).ok();
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

/// A private Redis Cluster of three `redis-server` nodes on loopback, each master of a third of
/// the slots (no replicas), each with its own data directory; dropping it stops them all.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// The number of nodes: the fewest `redis-cli --cluster create` accepts as masters.
    pub const NODES: usize = 3;

    /// Starts [`RedisCluster::NODES`] cluster-enabled nodes with their data in `dir/node-N`,
    /// joins them with `redis-cli --cluster create` and waits until every node reports
    /// `cluster_state:ok`.
    pub fn start(dir: &Path) -> Result<RedisCluster, ServerError> {
        let dir = private_dir(dir)?;
        // One set of users for the whole cluster: a client logs in to every node alike.
        let credentials = Credentials::load_or_create(&dir)?;
        let nodes = (0..Self::NODES)
            .map(|n| RedisServer::start_cluster_node(&dir.join(format!("node-{n}")), credentials.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = RedisCluster { nodes };
        cluster.create()?;
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn create(&self) -> Result<(), ServerError> {
        let binary = std::env::var("SHOAL_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_string());
        let failed = |output: String| ServerError::ClusterCreate { ports: self.ports(), output };
        let output = Command::new(&binary)
            .env("REDISCLI_AUTH", self.nodes[0].credentials.password(RedisRole::Admin))
            .args(["--cluster", "create"])
            .args(self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot run {binary} (install the redis-tools package): {e}")))?;
        if !output.status.success() {
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            return Err(failed(format!("{}: {}", output.status, tail(&text, 10))));
        }
        Ok(())
    }

    /// Waits until every node sees the whole cluster and all slots served: the nodes learn of
    /// each other by gossip, a moment after `redis-cli` has assigned the slots.
    fn wait_ok(&self, limit: Duration) -> Result<(), ServerError> {
        let started = Instant::now();
        loop {
            let not_ready = self.nodes.iter().find_map(|node| {
                let info = cluster_info(&node.url()).unwrap_or_else(|e| e.to_string());
                let ready = info.lines().any(|l| l.trim() == "cluster_state:ok")
                    && info.lines().any(|l| l.trim() == format!("cluster_known_nodes:{}", self.nodes.len()));
                (!ready).then(|| (node.port(), info))
            });
            let Some((port, info)) = not_ready else { return Ok(()) };
            if started.elapsed() >= limit {
                return Err(ServerError::ClusterNotReady {
                    ports: self.ports(),
                    waited: started.elapsed(),
                    port,
                    info,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `redis://` URLs of the nodes, logged in as [`RedisRole::Admin`], for
    /// [`crate::RedisConnection::open`].
    pub fn urls(&self) -> Vec<String> {
        self.urls_for(RedisRole::Admin)
    }

    /// The `redis://` URLs of the nodes, logged in as `role`'s user.
    pub fn urls_for(&self, role: RedisRole) -> Vec<String> {
        self.nodes.iter().map(|node| node.url_for(role)).collect()
    }

    /// The nodes' client ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The nodes themselves.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

/// Stops the `redis-server` whose pid `pidfile` names, if it still runs: one left behind by a
/// stack that was killed (`kill -9` gives it no chance to stop its Redis), which would otherwise
/// keep running and share the data directory with the new one.
fn stop_orphan(pidfile: &Path) {
    let Some(pid) = std::fs::read_to_string(pidfile).ok().and_then(|text| text.trim().parse::<u32>().ok()) else {
        return;
    };
    let is_redis = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            // Redis rewrites its title: `redis-server 127.0.0.1:PORT`, or the path it was run by.
            let program = cmdline.split(|&b| b == 0 || b == b' ').next().unwrap_or_default();
            program.ends_with(b"redis-server")
        })
    };
    if !is_redis(pid) {
        return;
    }
    tracing::warn!(pid, "stopping a redis-server left running on this data directory");
    // SIGTERM: Redis flushes its append-only file and exits.
    Command::new("kill").arg("-TERM").arg(pid.to_string()).status().ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_redis(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads replies on a raw connection until one holds `+PONG` (after `+OK` to `AUTH`); false at
/// an error reply (`-LOADING`) or the end.
fn read_until_pong(stream: &mut std::net::TcpStream, buffer: &mut [u8]) -> bool {
    let mut seen = Vec::new();
    while let Ok(n) = stream.read(buffer) {
        if n == 0 {
            return false;
        }
        seen.extend_from_slice(&buffer[..n]);
        if seen.windows(5).any(|w| w == b"+PONG") {
            return true;
        }
        if seen.starts_with(b"-") || seen.windows(3).any(|w| w == b"\n-") {
            return false;
        }
    }
    false
}

/// `CLUSTER INFO` of the node at `url`.
fn cluster_info(url: &str) -> redis::RedisResult<String> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    redis::cmd("CLUSTER").arg("INFO").query(&mut conn)
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
