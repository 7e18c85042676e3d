//! A whole Shoal stack for tests: a private `redis-server`, the gateway on a loopback port,
//! workers (in-process, or as `shoal worker` processes that a test can SIGKILL), a shared
//! local block store and a trustless gateway over it (what the gateway reads job files
//! through). Everything is stopped when the [`Stack`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cid::Cid;
use serde_json::Value;
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::{BlockStore, FsBlockStore};
use shoal_gateway::GatewayConfig;
use shoal_jobs::keys::RedisRole;
use shoal_jobs::{Fsync, Job, RedisServer};
use shoal_worker::WorkerConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::paths::{program_bytes, shoal_binary};
use crate::process::WorkerCommand;

/// Shard streams in test stacks: few, so tests exercise several shards without slow start-up.
pub const SHARDS: u32 = 4;

/// How a test stack is set up.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Workers started in-process.
    pub workers: usize,
    /// Jobs each in-process worker runs at once.
    pub concurrency: usize,
    /// How long workers wait for content no source has.
    pub fetch_timeout: Duration,
    /// When Redis fsyncs its append-only file.
    pub fsync: Fsync,
    /// How long a dead or hung worker's entries wait before another worker takes them over.
    pub visibility_timeout: Duration,
    /// Start a verifier re-running this fraction of `sampled` jobs.
    pub verifier: Option<f64>,
    /// Shard streams.
    pub shards: u32,
    /// How often workers beat their heartbeat; one silent for three is taken for gone.
    pub heartbeat: Duration,
    /// Networks the gateway may send webhooks to besides public addresses.
    pub webhook_allowed_networks: Vec<ipnet::IpNet>,
}

impl Default for StackOptions {
    fn default() -> StackOptions {
        StackOptions {
            workers: 1,
            concurrency: 2,
            fetch_timeout: Duration::from_secs(10),
            fsync: Fsync::EverySec,
            visibility_timeout: Duration::from_secs(30),
            verifier: None,
            shards: SHARDS,
            heartbeat: Duration::from_millis(500),
            webhook_allowed_networks: Vec::new(),
        }
    }
}

/// A running stack.
pub struct Stack {
    /// The private Redis.
    pub redis: RedisServer,
    /// The gateway's base URL.
    pub gateway: String,
    /// The base URL of the trustless gateway over [`Stack::store`], the gateway's content source.
    pub content: String,
    /// The block store the workers share, where inputs are added and outputs appear.
    pub store: Arc<FsBlockStore>,
    /// An HTTP client sending [`Stack::api_key`].
    pub http: reqwest::Client,
    /// An operator's API key, of tenant [`crate::TEST_TENANT`]; more with [`crate::api_key`].
    pub api_key: String,
    home: tempfile::TempDir,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    processes: Vec<Child>,
    options: StackOptions,
}

impl Stack {
    /// Starts Redis, the gateway and the in-process workers.
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        // Logs of the stack's parts, shown for failing tests; `RUST_LOG` sets the level.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
        tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init().ok();
        let home = tempfile::tempdir()?;
        let redis_dir = home.path().join("redis");
        let fsync = options.fsync;
        let redis = tokio::task::spawn_blocking(move || RedisServer::start(&redis_dir, fsync)).await??;
        let store = Arc::new(FsBlockStore::open(home.path().join("blocks"))?);
        let api_key = crate::api_key(&redis.url(), crate::TEST_TENANT, shoal_jobs::Role::Operator).await?;
        let http = crate::keyed_client(reqwest::Client::builder(), &api_key)?;
        let (stop, _) = watch::channel(false);

        let content_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let content = format!("http://{}", content_listener.local_addr()?);
        let content_router = shoal_content::serve::router(store.clone() as Arc<dyn BlockStore>);
        let mut stopped = stop.subscribe();
        let content_task = tokio::spawn(async move {
            let shutdown = async move {
                stopped.wait_for(|s| *s).await.ok();
            };
            axum::serve(content_listener, content_router)
                .with_graceful_shutdown(shutdown)
                .await
                .expect("content serves");
        });

        let mut gateway_config = GatewayConfig::new(redis.url_for(RedisRole::Gateway), options.shards);
        gateway_config.webhook_allowed_networks = options.webhook_allowed_networks.clone();
        gateway_config.content_gateways = vec![content.clone()];
        let router = shoal_gateway::router(gateway_config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let gateway = format!("http://{}", listener.local_addr()?);
        let mut stopped = stop.subscribe();
        let gateway_task = tokio::spawn(async move {
            let shutdown = async move {
                stopped.wait_for(|s| *s).await.ok();
            };
            shoal_gateway::serve(listener, router, shutdown).await.expect("gateway serves");
        });
        let mut stack = Stack {
            redis,
            gateway,
            content,
            store,
            http,
            api_key,
            home,
            stop,
            tasks: vec![content_task, gateway_task],
            processes: Vec::new(),
            options: options.clone(),
        };
        for n in 0..options.workers {
            stack.start_worker(&format!("worker-{n}"));
        }
        if let Some(rate) = options.verifier {
            stack.start_verifier("verifier", rate);
        }
        Ok(stack)
    }

    /// The configuration of a worker named `id` in this stack.
    pub fn worker_config(&self, id: &str) -> WorkerConfig {
        let mut config = WorkerConfig::new(id, &self.redis.url_for(RedisRole::Worker), self.home.path());
        config.shards = self.options.shards;
        config.heartbeat = self.options.heartbeat;
        config.concurrency = self.options.concurrency;
        config.fetch_timeout = self.options.fetch_timeout;
        config.visibility_timeout = self.options.visibility_timeout;
        config
    }

    /// The work directory of worker `id`, in-process or a process (started again with the same
    /// id, a worker finds there what it left).
    pub fn worker_dir(&self, id: &str) -> PathBuf {
        self.worker_config(id).work_dir
    }

    /// Starts one more in-process worker.
    pub fn start_worker(&mut self, id: &str) {
        self.start_worker_with(self.worker_config(id));
    }

    /// Starts one more in-process worker configured as `config` (see [`Stack::worker_config`]).
    pub fn start_worker_with(&mut self, config: WorkerConfig) {
        let mut stopped = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                stopped.wait_for(|s| *s).await.ok();
            };
            shoal_worker::run(config, shutdown).await.expect("worker runs");
        }));
    }

    /// Starts an in-process verifier re-running `rate` of the `sampled` jobs.
    pub fn start_verifier(&mut self, id: &str, rate: f64) {
        let mut worker = self.worker_config(id);
        worker.redis_url = self.redis.url_for(RedisRole::Verifier);
        worker.concurrency = 1;
        let mut stopped = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                stopped.wait_for(|s| *s).await.ok();
            };
            shoal_verifier::run(shoal_verifier::VerifierConfig::new(worker, rate), shutdown)
                .await
                .expect("verifier runs");
        }));
    }

    /// Starts a `shoal worker` process (so a test can kill it), sharing this stack's store: one
    /// job at a time, this stack's shards, heartbeat and visibility timeout, output discarded.
    pub fn spawn_worker_process(&mut self, id: &str) -> anyhow::Result<u32> {
        let flags = [
            "--heartbeat-ms".to_string(),
            self.options.heartbeat.as_millis().to_string(),
            "--visibility-timeout-secs".to_string(),
            self.options.visibility_timeout.as_secs().max(1).to_string(),
        ];
        let child = WorkerCommand {
            shoal: &shoal_binary()?,
            home: self.home.path(),
            redis_url: &self.redis.url_for(RedisRole::Worker),
            id,
            shards: self.options.shards,
            concurrency: 1,
            flags: &flags,
            log: None,
        }
        .spawn()?;
        let pid = child.id();
        self.processes.push(child);
        Ok(pid)
    }

    /// SIGKILLs the worker process `pid` started by [`Stack::spawn_worker_process`].
    pub fn kill_worker_process(&mut self, pid: u32) -> anyhow::Result<()> {
        let child = self.processes.iter_mut().find(|c| c.id() == pid).context("no such worker process")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the worker process `pid`.
    pub fn signal_worker_process(&self, pid: u32, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// Imports `bytes` as a UnixFS file into the shared store.
    pub async fn add_bytes(&self, bytes: &[u8]) -> anyhow::Result<Cid> {
        Ok(unixfs::import_reader(bytes, &ImportOptions::default(), self.store.as_ref() as &dyn BlockStore).await?.root)
    }

    /// Imports a file or directory into the shared store.
    pub async fn add_path(&self, path: &Path) -> anyhow::Result<Cid> {
        Ok(unixfs::import_path(path, &ImportOptions::default(), self.store.as_ref() as &dyn BlockStore).await?.root)
    }

    /// Adds a committed guest program and returns its CID.
    pub async fn add_program(&self, name: &str) -> anyhow::Result<Cid> {
        self.add_bytes(&program_bytes(name)).await
    }

    /// POSTs a job spec; returns the status and the JSON body.
    pub async fn submit(&self, spec: &Value) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let response = self.http.post(format!("{}/v1/jobs", self.gateway)).json(spec).send().await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    /// Submits a spec that must be accepted and returns the job id.
    pub async fn submit_ok(&self, spec: &Value) -> anyhow::Result<String> {
        let (status, body) = self.submit(spec).await?;
        if status != reqwest::StatusCode::ACCEPTED {
            bail!("submission answered {status}: {body}");
        }
        Ok(body["id"].as_str().context("job without id")?.to_string())
    }

    /// The job as the gateway reports it, asking again (for up to 10 s) while the gateway
    /// answers 503 — Redis briefly away, as a client is told to.
    pub async fn job(&self, id: &str) -> anyhow::Result<Job> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = self.http.get(format!("{}/v1/jobs/{id}", self.gateway)).send().await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response.json().await?);
            }
            if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
                bail!("GET job {id}: {status}: {}", response.text().await.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until the job is terminal, or fails after `limit`.
    pub async fn wait_terminal(&self, id: &str, limit: Duration) -> anyhow::Result<Job> {
        self.wait_until(id, limit, |job| job.state.is_terminal()).await
    }

    /// Polls until `done(job)`, or fails after `limit` with the last state seen.
    pub async fn wait_until(&self, id: &str, limit: Duration, done: impl Fn(&Job) -> bool) -> anyhow::Result<Job> {
        let deadline = Instant::now() + limit;
        loop {
            let job = self.job(id).await?;
            if done(&job) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                bail!("job {id} still {} after {limit:?}: {job:?}", job.state);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads a whole UnixFS file (or `CID/path`) from the shared store.
    pub async fn read(&self, root: &Cid, path: &str) -> anyhow::Result<Vec<u8>> {
        use futures::TryStreamExt;
        let cid = if path.is_empty() { *root } else { unixfs::resolve_path(self.store.as_ref(), root, path).await? };
        let store: Arc<dyn shoal_content::BlockReader> = self.store.clone();
        let chunks: Vec<bytes::Bytes> = unixfs::cat(store, cid).try_collect().await?;
        Ok(chunks.concat())
    }

    /// Stops workers and the gateway, then Redis.
    pub async fn shutdown(mut self) {
        self.stop.send(true).ok();
        for task in self.tasks.drain(..) {
            task.await.ok();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.send(true).ok();
        for task in &self.tasks {
            task.abort();
        }
        for child in &mut self.processes {
            child.kill().ok();
            child.wait().ok();
        }
    }
}
