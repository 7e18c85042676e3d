//! The scenes run: cut the tiles, add them, start the stack, check one tile with cloud-detect,
//! run the fanned-out job cold and warm, check every entry, count where each task ran.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use shoal_content::unixfs::{self, ImportOptions, Link};
use shoal_content::{BlockReader, FsBlockStore, MemoryBlockStore};
use shoal_jobs::keys::RedisRole;
use shoal_jobs::{Acceptance, ExecutionOutcome, Fsync, Job, JobState, JobStatus, Membership, Quarantine};
use shoal_testkit::{programs_dir, ProcessStack, ProcessStackConfig, Role};
use shoal_worker::{Executor, WorkerConfig};

use crate::adversary::{adversary_id, quarantined, AdversaryLaunch};

use crate::chaos::options::VerificationMode;
use crate::cli::shoal_binary;
use crate::driver::Mode;
use crate::error::LoadtestError;
use crate::figures::{Report, MAX_EXAMPLES};
use crate::scenes::options::{default_source, ScenesOptions, ScenesProgram};
use crate::scenes::report::{problems, RunFigures, ScenesReport, TileCheck};
use crate::scenes::tiles::{self, SourceScene, Tile, TilePlan};

/// Where the scenes directory is mounted in every task.
const MOUNT: &str = "/scenes";

/// Jobs per page when listing (the gateway's largest page).
const PAGE: usize = 500;

/// Whole jobs read at once after listing them.
const READING_AT_ONCE: usize = 32;

/// How long the workers have to show up live.
const WORKERS_READY: Duration = Duration::from_secs(60);

/// Entries checked at once through the content layer.
const CHECKING_AT_ONCE: usize = 16;

/// A client of the gateway, reading jobs as JSON.
pub(crate) struct Gateway {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Gateway {
    pub(crate) fn new(base: String, key: &str) -> Result<Gateway, LoadtestError> {
        let builder =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(60));
        Ok(Gateway { http: shoal_testkit::keyed_client(builder, key)?, base })
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, LoadtestError> {
        let failed = |message: String| LoadtestError::Gateway { context: format!("GET {path}"), message };
        let response = self.http.get(format!("{}{path}", self.base)).send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("{status}: {}", response.text().await.unwrap_or_default())));
        }
        response.json().await.map_err(|e| failed(e.to_string()))
    }

    pub(crate) async fn submit(&self, spec: &Value, key: &str) -> Result<String, LoadtestError> {
        let failed = |message: String| LoadtestError::Gateway { context: format!("submitting {spec}"), message };
        let response = self
            .http
            .post(format!("{}/v1/jobs", self.base))
            .header("Idempotency-Key", key)
            .json(spec)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| failed(format!("{status}: {e}")))?;
        body["id"].as_str().map(str::to_string).ok_or_else(|| failed(format!("{status}: {body}")))
    }

    pub(crate) async fn status(&self, id: &str) -> Result<JobStatus, LoadtestError> {
        let body = self.get(&format!("/v1/jobs/{id}")).await?;
        serde_json::from_value(body)
            .map_err(|e| LoadtestError::Gateway { context: format!("reading job {id}"), message: e.to_string() })
    }

    /// Every job the gateway lists: the listing's pages name them (summaries), and each whole
    /// job is read on its own.
    async fn all_jobs(&self) -> Result<Vec<Job>, LoadtestError> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/jobs?limit={PAGE}&cursor={c}"),
                None => format!("/v1/jobs?limit={PAGE}"),
            };
            let page = self.get(&path).await?;
            ids.extend(
                page["jobs"].as_array().into_iter().flatten().filter_map(|job| job["id"].as_str()).map(str::to_string),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        futures::stream::iter(ids)
            .map(|id| async move { self.status(&id).await.map(|status| status.job) })
            .buffered(READING_AT_ONCE)
            .try_collect()
            .await
    }

    /// Waits until `count` workers are live and each has sent a heartbeat since all of them
    /// were: a worker works out which shards it owns from the live set at each heartbeat, so
    /// before that the first workers up read shards that will move to later ones, and a run
    /// started at once would cache some scenes on workers that do not own them afterwards.
    pub(crate) async fn wait_workers(&self, count: usize) -> Result<(), LoadtestError> {
        let started = Instant::now();
        let mut all_live_ms: Option<u64> = None;
        loop {
            let body = self.get("/v1/workers").await?;
            let workers = body["workers"].as_array().cloned().unwrap_or_default();
            let seen: Vec<u64> = workers.iter().map(|w| w["last_seen_ms"].as_u64().unwrap_or(0)).collect();
            match all_live_ms {
                None if workers.len() >= count => all_live_ms = Some(unix_ms()),
                Some(since) if seen.iter().all(|&ms| ms > since) => return Ok(()),
                _ => {}
            }
            if started.elapsed() > WORKERS_READY {
                return Err(LoadtestError::Invalid(format!(
                    "{} of {count} workers live after {WORKERS_READY:?}, not all heard from since",
                    workers.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn seconds(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LoadtestError> + Send + 'static,
) -> Result<T, LoadtestError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoadtestError::Invalid(format!("a blocking step panicked: {e}")))?
}

/// Reads a whole UnixFS file.
pub(crate) async fn read_file(store: &Arc<FsBlockStore>, cid: Cid) -> Result<Vec<u8>, shoal_content::ContentError> {
    let reader: Arc<dyn BlockReader> = store.clone();
    let chunks: Vec<_> = unixfs::cat(reader, cid).try_collect().await?;
    Ok(chunks.concat())
}

/// A cloud mask: 8-bit grey, cloud 255 and everything else 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mask {
    size: (u32, u32),
    cloud: u64,
}

/// Decodes a `mask.png` completely and counts its cloud pixels; an error unless it is 8-bit grey
/// holding only 0 and 255.
fn decode_mask(bytes: &[u8]) -> Result<Mask, String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).map_err(|e| e.to_string())?;
    if (frame.color_type, frame.bit_depth) != (png::ColorType::Grayscale, png::BitDepth::Eight) {
        return Err(format!("{:?} {:?}, not 8-bit grey", frame.color_type, frame.bit_depth));
    }
    let pixels = &pixels[..frame.buffer_size()];
    if let Some(odd) = pixels.iter().find(|&&p| p != 0 && p != 255) {
        return Err(format!("holds the value {odd}, not only 0 and 255"));
    }
    Ok(Mask { size: (frame.width, frame.height), cloud: pixels.iter().filter(|&&p| p == 255).count() as u64 })
}

/// The output CID `echo-hash` gives for `tile` mounted as `<MOUNT>/<name>` with
/// `ECHO_HASH_INPUT=<MOUNT>`: `<name>/<file>.sha256` holding `<hex>  <name>/<file>\n`.
async fn echo_hash_output(tile: &Tile) -> Result<Cid, shoal_content::ContentError> {
    let store = MemoryBlockStore::new();
    let options = ImportOptions { include_hidden: true, ..ImportOptions::default() };
    let mut links = Vec::with_capacity(tile.files.len());
    for file in &tile.files {
        let line = format!("{}  {}/{}\n", file.sha256_hex, tile.name, file.name);
        let cid = unixfs::import_reader(line.as_bytes(), &options, &store).await?.root;
        let dag_size = unixfs::stat(&store, &cid).await?.dag_size;
        links.push(Link { name: format!("{}.sha256", file.name), cid, dag_size });
    }
    let inner = unixfs::import_links(links, &options, &store).await?.root;
    let dag_size = unixfs::stat(&store, &inner).await?.dag_size;
    Ok(unixfs::import_links(vec![Link { name: tile.name.clone(), cid: inner, dag_size }], &options, &store).await?.root)
}

/// The band-1 file of tile `name` (`<scene id>_r…_c…`): `<scene id>_B1.TIF`.
fn b1_file(name: &str) -> String {
    let id = name.split_once("_r").map_or(name, |(id, _)| id);
    format!("{id}_B1.TIF")
}

/// What the run shares between its steps.
struct Context<'a> {
    options: &'a ScenesOptions,
    gateway: Gateway,
    store: Arc<FsBlockStore>,
    program: Cid,
    scenes: Cid,
    /// For `echo-hash`: each scene's expected task output, and the line its band-1 digest holds.
    expected: HashMap<String, (Cid, String)>,
    /// With `--reference`: the harness's own executor, to run each task again.
    reference: Option<Executor>,
    nonce: u128,
}

impl Context<'_> {
    fn progress(&self, line: impl AsRef<str>) {
        if !self.options.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    fn spec(&self, run: &str) -> Value {
        let mut env = json!({"SCENES_RUN": run});
        let mut args = json!([]);
        match self.options.program {
            ScenesProgram::EchoHash => env["ECHO_HASH_INPUT"] = json!(MOUNT),
            ScenesProgram::CloudDetect => args = json!([MOUNT]),
        }
        json!({
            "program": self.program.to_string(),
            "args": args,
            "env": env,
            "inputs": [{"cid": self.scenes.to_string(), "path": MOUNT}],
            "fan_out": {},
            "verification": {"mode": self.options.verification.as_str()},
        })
    }

    /// Whether the gathered entry `name` (`cid`) holds what its task should have written.
    async fn entry_ok(&self, name: &str, cid: Cid) -> Result<(), String> {
        match self.options.program {
            ScenesProgram::EchoHash => {
                let Some((expected, line)) = self.expected.get(name) else {
                    return Err(format!("entry {name} is not one of the scenes"));
                };
                if *expected != cid {
                    return Err(format!("entry {name} is {cid}, expected {expected}"));
                }
                // The same DAG; and its blocks are there: read the band-1 digest back.
                let path = format!("{name}/{name_b1}.sha256", name_b1 = b1_file(name));
                let file = unixfs::resolve_path(self.store.as_ref(), &cid, &path)
                    .await
                    .map_err(|e| format!("entry {name}: {path}: {e}"))?;
                let bytes = read_file(&self.store, file).await.map_err(|e| format!("entry {name}: {path}: {e}"))?;
                if bytes == line.as_bytes() {
                    Ok(())
                } else {
                    Err(format!("entry {name}: {path} reads {:?}, expected {line:?}", String::from_utf8_lossy(&bytes)))
                }
            }
            ScenesProgram::CloudDetect => {
                let mask = unixfs::resolve_path(self.store.as_ref(), &cid, "mask.png")
                    .await
                    .map_err(|e| format!("entry {name}: no mask.png: {e}"))?;
                let bytes = read_file(&self.store, mask).await.map_err(|e| format!("entry {name}: mask.png: {e}"))?;
                let size = decode_mask(&bytes).map_err(|e| format!("entry {name}: mask.png: {e}"))?.size;
                let tile = self.options.tile;
                if size == (tile, tile) {
                    Ok(())
                } else {
                    Err(format!("entry {name}: mask.png is {}×{}, expected {tile}×{tile}", size.0, size.1))
                }
            }
        }
    }

    /// `cloud-detect` as a plain job over tile `name`, mounted at `/inputs`.
    async fn tile_check(
        &self,
        cloud_detect: Cid,
        name: &str,
        bqa_cloud_fraction: f64,
    ) -> Result<TileCheck, LoadtestError> {
        let tile = unixfs::resolve_path(self.store.as_ref(), &self.scenes, name)
            .await
            .map_err(|e| LoadtestError::content(format!("resolving {name}"), e))?;
        let spec = json!({
            "program": cloud_detect.to_string(),
            "inputs": [{"cid": tile.to_string(), "path": "/inputs"}],
            "verification": {"mode": self.options.verification.as_str()},
        });
        let id = self.gateway.submit(&spec, &format!("scenes-tile-check-{}", self.nonce)).await?;
        let job = self.wait(&id, "tile check").await?.job;
        let mut check = TileCheck {
            scene: name.to_string(),
            job_id: id,
            state: job.state.to_string(),
            bqa_cloud_fraction,
            mask_size: None,
            mask_cloud_pixels: None,
            stats_cloud_pixels: None,
            cloud_fraction: None,
            ok: false,
            detail: String::new(),
        };
        let Some(result) = job.result.filter(|_| job.state == JobState::Succeeded) else {
            check.detail = job.failure.map_or_else(|| format!("ended {}", job.state), |f| f.message);
            return Ok(check);
        };
        let out = *result.output.cid();
        let read = |path: &'static str| async move {
            let cid = unixfs::resolve_path(self.store.as_ref(), &out, path).await?;
            read_file(&self.store, cid).await
        };
        match read("mask.png").await.map_err(|e| e.to_string()).and_then(|bytes| decode_mask(&bytes)) {
            Ok(mask) => {
                check.mask_size = Some(mask.size);
                check.mask_cloud_pixels = Some(mask.cloud);
                if let Ok(stats) = read("stats.json").await {
                    let stats = serde_json::from_slice::<Value>(&stats).unwrap_or_default();
                    check.cloud_fraction = stats["cloud_fraction"].as_f64();
                    check.stats_cloud_pixels = stats["pixels"]["cloud"].as_u64();
                }
                check.ok =
                    mask.size == (self.options.tile, self.options.tile) && check.stats_cloud_pixels == Some(mask.cloud);
                let stdout = read_file(&self.store, *result.stdout.cid()).await.unwrap_or_default();
                check.detail = String::from_utf8_lossy(&stdout).trim().to_string();
            }
            Err(e) => check.detail = format!("mask.png: {e}"),
        }
        Ok(check)
    }

    /// Waits for job `id` to end (or the deadline), printing progress.
    async fn wait(&self, id: &str, what: &str) -> Result<JobStatus, LoadtestError> {
        let started = Instant::now();
        let deadline = Duration::from_secs(self.options.deadline_secs);
        let mut last_print = Instant::now();
        loop {
            let status = self.gateway.status(id).await?;
            if status.job.is_final() || started.elapsed() > deadline {
                return Ok(status);
            }
            if last_print.elapsed() >= Duration::from_secs(5) {
                last_print = Instant::now();
                let tasks = status.tasks.as_ref().map_or_else(
                    || "not fanned out yet".to_string(),
                    |t| format!("{} of {} tasks done ({} failed)", t.succeeded + t.failed, t.total, t.failed),
                );
                self.progress(format!("{what}: {:.0} s, {tasks}", started.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One run of the fanned-out job: submit, wait, read its tasks, check every entry.
    async fn run(&self, run: &str) -> Result<(RunFigures, Vec<(Job, Option<Cid>)>), LoadtestError> {
        let spec = self.spec(run);
        let submitted = Instant::now();
        let id = self.gateway.submit(&spec, &format!("scenes-{run}-{}", self.nonce)).await?;
        let status = self.wait(&id, run).await?;
        let wall_s = seconds(submitted);
        let job = status.job;
        self.progress(format!("{run}: job {} in {wall_s:.1} s", job.state));

        let tasks: Vec<Job> = self
            .gateway
            .all_jobs()
            .await?
            .into_iter()
            .filter(|j| j.spec.fan_out.is_none() && j.spec.env.get("SCENES_RUN").map(String::as_str) == Some(run))
            .collect();
        let mut base = Report::empty(format!("{run} run"), 0, self.options.scenes);
        base.submitted = tasks.len();
        base.jobs_by_kind.insert(format!("{} task", self.options.program.name()), tasks.len());
        let (mut inputs, mut cached, mut local) = (0usize, 0usize, 0usize);
        let mut tasks_by_worker = BTreeMap::new();
        let mut task_outputs: HashMap<String, Cid> = HashMap::new();
        let (mut first_created, mut last_created, mut last_finished) = (u64::MAX, 0u64, 0u64);
        // The output each task should have, where known: echo-hash's computed without the
        // runtime, or the reference run's.
        let mut should: HashMap<String, Cid> = HashMap::new();
        for task in &tasks {
            let name = task.spec.inputs.first().and_then(|i| i.name.clone()).unwrap_or_default();
            if let Some((expected, _)) = self.expected.get(&name) {
                should.insert(task.id.clone(), *expected);
            }
            first_created = first_created.min(task.created_at_ms);
            last_created = last_created.max(task.created_at_ms);
            if task.executions.len() > 1 {
                base.reexecuted += 1;
            }
            let completed: Vec<_> = task
                .executions
                .iter()
                .filter_map(|e| match &e.outcome {
                    Some(ExecutionOutcome::Completed(result)) => Some((e, result)),
                    _ => None,
                })
                .collect();
            if completed.windows(2).any(|pair| pair[0].1.output != pair[1].1.output) {
                base.duplicates += 1;
            }
            match task.state {
                JobState::Succeeded => {
                    let finished =
                        task.verification.as_ref().map_or(task.updated_at_ms, |v| v.at_ms.max(task.updated_at_ms));
                    last_finished = last_finished.max(finished);
                    base.latencies_ms.push(finished.saturating_sub(task.created_at_ms) as f64);
                    // The result the task reports (the verifier's, if it corrected the worker's),
                    // and the execution that ran it.
                    let (Some(result), Some((execution, _))) = (task.result.as_ref(), completed.last()) else {
                        base.wrong += 1;
                        continue;
                    };
                    if let Some(acceptance) =
                        task.acceptance().filter(|_| self.options.verification != VerificationMode::None)
                    {
                        *base.acceptance.entry(acceptance.to_string()).or_insert(0) += 1;
                        base.accepted += usize::from(acceptance.is_accepted());
                    }
                    if let Some(reference) = &self.reference {
                        match reference.run_spec(&task.spec, &format!("reference-{}", task.id)).await {
                            Ok(expected) if expected.output == result.output => {
                                should.insert(task.id.clone(), *expected.output.cid());
                            }
                            Ok(expected) => {
                                should.insert(task.id.clone(), *expected.output.cid());
                                base.wrong += 1;
                                let accepted = task.acceptance().is_some_and(Acceptance::is_accepted);
                                base.wrong_accepted += usize::from(accepted);
                                base.example(format!(
                                    "task {} ({name}) reports {}, the reference run {} (accepted: {accepted})",
                                    task.id, result.output, expected.output
                                ));
                                continue;
                            }
                            Err(failure) => {
                                base.example(format!(
                                    "task {} ({name}): the reference run failed: {}",
                                    task.id, failure.message
                                ));
                            }
                        }
                    }
                    inputs += task.spec.inputs.len();
                    cached += result.inputs_cached as usize;
                    local += usize::from(result.inputs_cached as usize >= task.spec.inputs.len());
                    *tasks_by_worker.entry(execution.worker.clone()).or_insert(0) += 1;
                    task_outputs.insert(name, *result.output.cid());
                }
                state if state.is_terminal() => {
                    base.failed += 1;
                    let reason = task.failure.as_ref().map_or_else(|| state.to_string(), |f| f.reason.to_string());
                    *base.failed_by_reason.entry(reason).or_insert(0) += 1;
                    if base.examples.len() < MAX_EXAMPLES {
                        let message = task.failure.as_ref().map_or(String::new(), |f| f.message.clone());
                        // The guest's own words say why; the first failure's are enough.
                        let stderr = match task.failure.as_ref().and_then(|f| f.stderr.as_ref()) {
                            Some(cid) if base.failed == 1 => read_file(&self.store, *cid.cid())
                                .await
                                .map(|bytes| format!("; stderr: {}", String::from_utf8_lossy(&bytes).trim()))
                                .unwrap_or_default(),
                            _ => String::new(),
                        };
                        base.examples.push(format!("task {} ({name}) {state}: {message}{stderr}", task.id));
                    }
                }
                state => {
                    base.lost += 1;
                    *base.lost_by_state.entry(state.to_string()).or_insert(0) += 1;
                }
            }
        }
        if base.submitted != self.options.scenes {
            base.example(format!("{} tasks listed, {} scenes", base.submitted, self.options.scenes));
        }

        // Every gathered entry, through the content layer: named as a scene, the same DAG as its
        // task's output, and holding what the program should have written.
        let checking = Instant::now();
        let output = status.tasks.as_ref().and_then(|t| t.output).or(job.result.as_ref().map(|r| r.output));
        let mut entries = 0;
        let mut entries_ok = 0;
        let wrong_entries;
        if let Some(output) = &output {
            let listing = unixfs::list(self.store.as_ref(), output.cid()).await.map_err(|e| {
                let (state, acceptance) = (job.state, status.acceptance);
                let context = format!("listing the output {output} of job {} ({state}, {acceptance:?})", job.id);
                LoadtestError::content(context, e)
            })?;
            entries = listing.len();
            let task_outputs = &task_outputs;
            let checked: Vec<(String, Result<(), String>)> = futures::stream::iter(listing)
                .map(|entry| async move {
                    let verdict = match task_outputs.get(&entry.name) {
                        Some(task) if *task != entry.cid => {
                            Err(format!("entry {} is {}, its task wrote {task}", entry.name, entry.cid))
                        }
                        _ => self.entry_ok(&entry.name, entry.cid).await,
                    };
                    (entry.name, verdict)
                })
                .buffer_unordered(CHECKING_AT_ONCE)
                .collect()
                .await;
            let mut right: HashMap<String, bool> = HashMap::new();
            for (name, verdict) in checked {
                match verdict {
                    Ok(()) => {
                        entries_ok += 1;
                        right.insert(name, true);
                    }
                    Err(message) => {
                        right.insert(name, false);
                        base.example(message);
                    }
                }
            }
            // A succeeded task is right only if its entry is there and right.
            wrong_entries = task_outputs.keys().filter(|name| !right.get(*name).copied().unwrap_or(false)).count();
        } else {
            wrong_entries = task_outputs.len();
        }
        base.wrong += wrong_entries;
        base.succeeded = task_outputs.len() - wrong_entries;
        let check_s = seconds(checking);

        base.summarise(task_outputs.len(), first_created, last_finished);
        base.duration_s = wall_s;
        if !job.state.is_terminal() {
            base.ended_early = Some(format!("deadline of {} s", self.options.deadline_secs));
        }
        let finished_ms = job.updated_at_ms;
        let succeeded = task_outputs.len().max(1) as f64;
        let figures = RunFigures {
            base,
            run: run.to_string(),
            job_id: id,
            job_state: job.state.to_string(),
            output: output.map(|o| o.to_string()),
            entries,
            entries_ok,
            cache_hit_rate: if inputs == 0 { 0.0 } else { cached as f64 / inputs as f64 },
            local_task_rate: if task_outputs.is_empty() { 0.0 } else { local as f64 / succeeded },
            wall_s,
            fan_out_s: last_created.saturating_sub(job.created_at_ms) as f64 / 1000.0,
            gather_s: finished_ms.saturating_sub(last_finished) as f64 / 1000.0,
            check_s,
            tasks_by_worker,
        };
        let checked = tasks
            .into_iter()
            .map(|task| {
                let should = should.get(&task.id).copied();
                (task, should)
            })
            .collect();
        Ok((figures, checked))
    }
}

impl Mode for ScenesOptions {
    type Report = ScenesReport;

    fn report_prefix(&self) -> Option<&std::path::Path> {
        self.report.as_deref()
    }

    async fn run(&self, command: String) -> Result<ScenesReport, LoadtestError> {
        Ok(run_scenes(self, command).await?.0)
    }
}

/// Runs the scenes scenario `options` describes; `command` is recorded in the report.
/// What a scenes run leaves for a closer look (the byzantine report): the cold run's tasks, each
/// with the output it should have where known, and the workers quarantined by the end.
pub struct ScenesEvidence {
    /// The cold run's tasks and their right outputs.
    pub tasks: Vec<(Job, Option<Cid>)>,
    /// Quarantined workers, and why.
    pub quarantined: BTreeMap<String, Quarantine>,
}

/// Runs the scenes workload `options` describe; its report and what it leaves to look at.
pub async fn run_scenes(
    options: &ScenesOptions,
    command: String,
) -> Result<(ScenesReport, ScenesEvidence), LoadtestError> {
    if options.scenes == 0 || options.workers == 0 || options.worker_concurrency == 0 || options.shards == 0 {
        return Err(LoadtestError::Invalid(
            "--scenes, --workers, --worker-concurrency and --shards must be positive".into(),
        ));
    }
    if !(0.0..=1.0).contains(&options.min_local_rate) {
        return Err(LoadtestError::Invalid(format!("--min-local-rate {} is not a fraction", options.min_local_rate)));
    }
    let started = Instant::now();
    let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let shoal = shoal_binary(options.shoal.as_deref())?;
    let programs = options.programs.clone().unwrap_or_else(programs_dir);
    let temporary;
    let home = match &options.home {
        Some(home) => home.clone(),
        None => {
            temporary = tempfile::tempdir().map_err(|e| LoadtestError::io("creating a temporary home", e))?;
            temporary.path().to_path_buf()
        }
    };

    // The tiles.
    let generating = Instant::now();
    let (source, plan, scenes_dir, tiles) =
        cut_scenes(options.source.clone(), options.tile, options.scenes, &home).await?;
    let generate_s = seconds(generating);
    eprintln!("{} tiles of {}×{} px (stride {}) in {generate_s:.1} s", tiles.len(), plan.tile, plan.tile, plan.stride);

    // Into the workers' block store.
    let adding = Instant::now();
    let store = Arc::new(
        FsBlockStore::open(home.join("blocks"))
            .map_err(|e| LoadtestError::content(format!("opening {}/blocks", home.display()), e))?,
    );
    let imported = unixfs::import_path(&scenes_dir, &ImportOptions::default(), store.as_ref())
        .await
        .map_err(|e| LoadtestError::content(format!("adding {}", scenes_dir.display()), e))?;
    let add_program = |name: &'static str| {
        let store = store.clone();
        let path = programs.join(format!("{name}.wasm"));
        async move {
            let bytes =
                std::fs::read(&path).map_err(|e| LoadtestError::io(format!("reading {}", path.display()), e))?;
            unixfs::import_reader(&bytes[..], &ImportOptions::default(), store.as_ref())
                .await
                .map(|imported| imported.root)
                .map_err(|e| LoadtestError::content(format!("adding {}", path.display()), e))
        }
    };
    let program = add_program(options.program.name()).await?;
    let cloud_detect = add_program(ScenesProgram::CloudDetect.name()).await?;
    let add_s = seconds(adding);
    eprintln!("scenes directory {} ({} bytes) added in {add_s:.1} s", imported.root, imported.size);

    let mut expected = HashMap::new();
    if options.program == ScenesProgram::EchoHash {
        for tile in &tiles {
            let cid = echo_hash_output(tile)
                .await
                .map_err(|e| LoadtestError::content(format!("computing {}'s expected output", tile.name), e))?;
            let b1 = tile
                .files
                .iter()
                .find(|f| f.name == b1_file(&tile.name))
                .map_or(String::new(), |f| format!("{}  {}/{}\n", f.sha256_hex, tile.name, f.name));
            expected.insert(tile.name.clone(), (cid, b1));
        }
    }

    // The stack.
    let starting = Instant::now();
    let adversary_binary = AdversaryLaunch::binary_beside(&shoal);
    let stack = ProcessStack::start(ProcessStackConfig {
        shoal,
        home: home.clone(),
        shards: options.shards,
        worker_concurrency: options.worker_concurrency,
        visibility_timeout_secs: None,
        fsync: Fsync::EverySec,
        input_cache_bytes: Some(options.input_cache_bytes),
        heartbeat_ms: None,
    })
    .await?;
    for _ in 0..options.workers {
        stack.start_worker(&stack.new_worker_id())?;
    }
    for n in 0..options.verifiers {
        stack.start_verifier(&format!("verifier-{n}"), 0.0)?;
    }
    let launch = AdversaryLaunch {
        binary: adversary_binary,
        redis: stack.redis_url_for(RedisRole::Worker),
        home: home.clone(),
        shards: options.shards,
        concurrency: options.worker_concurrency,
        heartbeat_ms: Membership::DEFAULT_HEARTBEAT.as_millis() as u64,
        honest_for: 20,
        lie_percent: 1,
        raise: None,
    };
    let adversaries: Vec<String> =
        options.adversaries.iter().enumerate().map(|(n, kind)| adversary_id(n, *kind)).collect();
    for (id, kind) in adversaries.iter().zip(&options.adversaries) {
        stack.start_process(id, Role::Worker, launch.command(id, *kind))?;
    }
    let gateway = Gateway::new(stack.gateway_url(), stack.api_key())?;
    gateway.wait_workers(options.workers + adversaries.len()).await?;
    let stack_start_s = seconds(starting);
    let reference = if options.reference {
        let config = WorkerConfig::new("reference", stack.redis_url(), &home);
        Some(Executor::open(&config).await.map_err(|e| LoadtestError::Setup(format!("the reference executor: {e}")))?)
    } else {
        None
    };

    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let context = Context { options, gateway, store, program, scenes: imported.root, expected, reference, nonce };
    let outcome = async {
        let (row, col) = plan
            .windows
            .iter()
            .copied()
            .max_by_key(|&(r, c)| (source.bqa_cloud_pixels(r, c, plan.tile), std::cmp::Reverse((r, c))))
            .unwrap_or_default();
        let bqa = source.bqa_cloud_pixels(row, col, plan.tile) as f64 / f64::from(plan.tile * plan.tile);
        let tile_check = context.tile_check(cloud_detect, &source.tile_name(row, col), bqa).await?;
        context.progress(format!("tile check: {} {:?} {}", tile_check.state, tile_check.mask_size, tile_check.detail));
        let (cold, tasks) = context.run("cold").await?;
        let (warm, _) = context.run("warm").await?;
        Ok::<_, LoadtestError>((tile_check, cold, warm, tasks))
    }
    .await;
    let mut cpu_s = stack.cpu_seconds();
    let redis = stack.redis_usage().await;
    let quarantined = quarantined(stack.redis_url()).await;
    stack.shutdown();
    let quarantined = quarantined?;
    let (tile_check, cold, warm, tasks) = outcome?;
    let redis = redis?;
    cpu_s.insert("redis".to_string(), redis.cpu_s);
    let mut redis_commands: Vec<_> = redis.commands.into_iter().collect();
    redis_commands.sort_by_key(|(_, stats)| std::cmp::Reverse(stats.usec));
    redis_commands.truncate(12);

    let mut report = ScenesReport {
        command,
        started_at_unix_s,
        passed: false,
        scenes: options.scenes,
        entries: warm.entries,
        workers: options.workers,
        worker_concurrency: options.worker_concurrency,
        shards: options.shards,
        program: options.program.name().to_string(),
        source_scene: source.id.clone(),
        tile_px: plan.tile,
        stride_px: plan.stride,
        catalogue_bytes: imported.size,
        catalogue_files: tiles.iter().map(|t| t.files.len()).sum(),
        scenes_cid: imported.root.to_string(),
        cache_hit_rate: warm.cache_hit_rate,
        local_task_rate: warm.local_task_rate,
        min_local_rate: options.min_local_rate,
        generate_s,
        add_s,
        stack_start_s,
        total_s: seconds(started),
        cpu_s,
        redis_commands,
        tile_check,
        cold,
        warm,
        verifiers: options.verifiers,
        verification: options.verification.as_str().to_string(),
        adversaries,
        quarantined: quarantined.keys().cloned().collect(),
        problems: Vec::new(),
    };
    report.problems = problems(&report);
    report.passed = report.problems.is_empty();
    Ok((report, ScenesEvidence { tasks, quarantined }))
}

/// Cuts `count` windows of `tile` px from the source scene at `source` (the default crop if
/// none) into `<home>/scenes/<scene>_tiles`, as every scene harness does: the scene, the plan,
/// the directory and the tiles written.
pub(crate) async fn cut_scenes(
    source: Option<std::path::PathBuf>,
    tile: u32,
    count: usize,
    home: &std::path::Path,
) -> Result<(SourceScene, TilePlan, std::path::PathBuf, Vec<Tile>), LoadtestError> {
    let source_dir = source.unwrap_or_else(default_source);
    let source = blocking(move || SourceScene::open(&source_dir)).await?;
    let plan = tiles::plan(source.width, source.height, tile, count)?;
    let dir = home.join("scenes").join(format!("{}_tiles", source.id));
    let written = {
        let (source, plan, dir) = (source.clone(), plan.clone(), dir.clone());
        blocking(move || source.write_tiles(&plan, &dir, 2)).await?
    };
    Ok((source, plan, dir, written))
}
