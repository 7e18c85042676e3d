//! The pipeline runs: cut and add the scenes, start the stack, run the cloud pipeline clean, as
//! separate jobs and through faults, and check each run's outputs independently.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use shoal_content::unixfs::{self, ImportOptions, Link};
use shoal_content::FsBlockStore;
use shoal_jobs::keys::RedisRole;
use shoal_jobs::{
    ContentId, ExecutionOutcome, Fsync, InputSpec, Job, JobSpec, JobState, JobStore, PipelineSpec, PipelineState,
    PipelineStatus, RedisConnection, UnitCounts, UnitState,
};
use shoal_testkit::{programs_dir, ProcessStack, ProcessStackConfig};

use crate::cli::shoal_binary;
use crate::driver::Mode;
use crate::error::LoadtestError;
use crate::pipeline::report::{problems, PipelineReport, PipelineRun, StageFigures};
use crate::pipeline::PipelineOptions;
use crate::scenes::run::{cut_scenes, read_file, seconds, Gateway};

/// The cloud fraction over which remove runs (the fixture's).
pub const THRESHOLD: f64 = 0.05;

/// Requests to the gateway, or reads of the block store, at once.
const AT_ONCE: usize = 32;

/// Scenes the untimed warm-up runs the stages over (enough that every worker gets some).
const WARM_UP: usize = 64;

/// Job states read from Redis in one batch while waiting for separate jobs.
const STATES_BATCH: usize = 1000;

/// The programs the pipeline runs, by stage.
const PROGRAMS: [(&str, &str); 3] =
    [("detect", "cloud-detect"), ("remove", "cloud-remove"), ("summary", "cloud-summary")];

/// What a run ended with, however it was run: each scene's detect job and output, each
/// removed scene's job and whether it succeeded, the summary's output, the per-stage counts.
struct Outcome {
    detect: Vec<(String, Option<String>, Option<ContentId>)>,
    removed: BTreeMap<String, (String, bool)>,
    summary: Option<ContentId>,
    stages: Vec<StageFigures>,
}

/// What every run shares.
struct Context<'a> {
    options: &'a PipelineOptions,
    stack: &'a ProcessStack,
    gateway: Gateway,
    jobs: JobStore,
    store: Arc<FsBlockStore>,
    programs: BTreeMap<&'static str, Cid>,
    scenes: Cid,
    files: Vec<(String, Cid)>,
    nonce: u128,
}

/// Redis commands called since it (re)started.
async fn redis_calls(stack: &ProcessStack) -> Result<u64, LoadtestError> {
    Ok(stack.redis_usage().await?.commands.values().map(|stats| stats.calls).sum())
}

/// The worker whose execution of `job` completed last.
fn ran_on(job: &Job) -> Option<String> {
    job.executions
        .iter()
        .rev()
        .find(|e| matches!(e.outcome, Some(ExecutionOutcome::Completed(_))))
        .map(|e| e.worker.clone())
}

impl Context<'_> {
    fn progress(&self, line: String) {
        eprintln!("{line}");
    }

    /// The cloud pipeline over the scenes, its stages' jobs told apart from other runs' by
    /// `PIPELINE_RUN=<run>` (which no program reads, so outputs are the same in every run).
    fn spec(&self, run: &str) -> Value {
        let none = json!({"mode": "none"});
        let env = json!({"PIPELINE_RUN": run});
        json!({
            "inputs": {"scenes": self.scenes.to_string()},
            "stages": [
                {"name": "detect", "program": self.programs["detect"].to_string(), "verification": none, "env": env,
                 "inputs": [{"from": "pipeline.scenes", "path": "/inputs"}], "each": {"input": 0},
                 "writes": ["mask.png", "preview.png", "stats.json"]},
                {"name": "remove", "program": self.programs["remove"].to_string(), "verification": none, "env": env,
                 "inputs": [{"from": "pipeline.scenes", "path": "/inputs"}, {"from": "detect", "path": "/mask"}],
                 "each": {"input": 0},
                 "when": {"stage": "detect", "file": "stats.json", "field": "cloud_fraction", "op": "gt",
                          "value": THRESHOLD},
                 "writes": ["clear.png"], "on_failure": "continue"},
                {"name": "summary", "program": self.programs["summary"].to_string(), "verification": none,
                 "env": env,
                 "inputs": [{"from": "detect.all", "path": "/detected"}, {"from": "remove.all", "path": "/cleared"}]}
            ]
        })
    }

    /// Reads file `name` of output directory `dir` through the content layer.
    async fn read_in(&self, dir: &ContentId, name: &str) -> Result<Vec<u8>, String> {
        let entries = unixfs::list(self.store.as_ref(), dir.cid()).await.map_err(|e| format!("listing {dir}: {e}"))?;
        let entry = entries.iter().find(|e| e.name == name).ok_or_else(|| format!("{dir} has no {name}"))?;
        read_file(&self.store, entry.cid).await.map_err(|e| format!("reading {dir}/{name}: {e}"))
    }

    /// Each output's `stats.json` cloud fraction, read independently of the driver.
    async fn fractions(&self, outputs: Vec<(String, ContentId)>) -> BTreeMap<String, Result<f64, String>> {
        futures::stream::iter(outputs)
            .map(|(file, output)| async move {
                let fraction = self.read_in(&output, "stats.json").await.and_then(|bytes| {
                    let stats: Value = serde_json::from_slice(&bytes).map_err(|e| format!("stats.json: {e}"))?;
                    stats["cloud_fraction"].as_f64().ok_or_else(|| format!("stats.json has no cloud_fraction: {stats}"))
                });
                (file, fraction)
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await
    }

    async fn status(&self, id: &str) -> Result<PipelineStatus, LoadtestError> {
        let body = self.gateway.get(&format!("/v1/pipelines/{id}")).await?;
        serde_json::from_value(body)
            .map_err(|e| LoadtestError::Gateway { context: format!("reading pipeline {id}"), message: e.to_string() })
    }

    /// Submits the pipeline through `POST /v1/pipelines`; its id.
    async fn create(&self, spec: &Value, key: &str) -> Result<String, LoadtestError> {
        let failed = |message: String| LoadtestError::Gateway { context: "POST /v1/pipelines".into(), message };
        let response = self
            .gateway
            .http
            .post(format!("{}/v1/pipelines", self.gateway.base))
            .header("Idempotency-Key", key)
            .json(spec)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| failed(format!("{status}: {e}")))?;
        body["id"].as_str().map(str::to_string).ok_or_else(|| failed(format!("{status}: {body}")))
    }

    /// One run through the gateway's pipeline API, polled until it ends; with `fault`, a
    /// worker SIGKILLed and Redis restarted once `--fault-at` of the detect units are done.
    async fn pipeline(&self, name: &str, run: &str, fault: bool) -> Result<PipelineRun, LoadtestError> {
        let calls_before = redis_calls(self.stack).await?;
        let started = Instant::now();
        let id = self.create(&self.spec(run), &format!("pipeline-{run}-{}", self.nonce)).await?;
        let deadline = Duration::from_secs(self.options.deadline_secs);
        // Every poll reads every unit; at 10,000 scenes that is a large read, so fewer of them.
        let poll = Duration::from_millis(if self.options.scenes > 1000 { 2000 } else { 500 });
        let mut faults = Vec::new();
        let mut last_print = Instant::now();
        let mut poll_errors = 0;
        let status = loop {
            let status = match self.status(&id).await {
                Ok(status) => status,
                // The gateway answers errors while Redis restarts; the run goes on.
                Err(e) if started.elapsed() < deadline => {
                    poll_errors += 1;
                    if poll_errors <= 3 {
                        self.progress(format!("{name}: polling: {e}"));
                    }
                    tokio::time::sleep(poll).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if status.state != PipelineState::Running || started.elapsed() > deadline {
                break status;
            }
            let detect = status.stages.first().map(|s| s.counts).unwrap_or_default();
            let detected = detect.succeeded + detect.failed + detect.skipped;
            if fault && faults.is_empty() && detected as f64 >= self.options.fault_at * self.files.len() as f64 {
                let at = |what: String| format!("{:.1} s: {what}", seconds(started));
                let victim = self
                    .stack
                    .running_workers()
                    .into_iter()
                    .next()
                    .ok_or_else(|| LoadtestError::Invalid("no worker left to kill".into()))?;
                self.stack.kill_worker(&victim)?;
                faults.push(at(format!("SIGKILLed worker {victim} ({detected} detect units done)")));
                self.stack.restart_redis().await?;
                faults.push(at("Redis SIGKILLed and restarted".into()));
                let fresh = self.stack.new_worker_id();
                self.stack.start_worker(&fresh)?;
                faults.push(at(format!("worker {fresh} started")));
                self.progress(format!("{name}: {}", faults.join("; ")));
            }
            if last_print.elapsed() >= Duration::from_secs(10) {
                last_print = Instant::now();
                let counts: Vec<String> = status
                    .stages
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {}✓ {}↷ {}✗ {}…",
                            s.name,
                            s.counts.succeeded,
                            s.counts.skipped,
                            s.counts.failed,
                            s.counts.waiting + s.counts.running
                        )
                    })
                    .collect();
                self.progress(format!("{name}: {:.0} s, {}", seconds(started), counts.join(", ")));
            }
            tokio::time::sleep(poll).await;
        };
        let wall_s = seconds(started);
        // Redis's counters restart with it, so a run through a restart has no count.
        let calls = if fault { None } else { Some(redis_calls(self.stack).await?.saturating_sub(calls_before)) };
        self.progress(format!("{name}: pipeline {id} {:?} in {wall_s:.1} s", status.state));

        let stage = |name: &str| status.stages.iter().find(|s| s.name == name);
        let detect = stage("detect")
            .map(|s| s.units.iter().map(|u| (u.file.clone().unwrap_or_default(), u.job.clone(), u.output)).collect())
            .unwrap_or_default();
        let removed = stage("remove")
            .map(|s| {
                s.units
                    .iter()
                    .filter_map(|u| Some((u.file.clone()?, (u.job.clone()?, u.state == UnitState::Succeeded))))
                    .collect()
            })
            .unwrap_or_default();
        let summary = stage("summary").and_then(|s| s.units.first()).and_then(|u| u.output);
        let stages = status.stages.iter().map(|s| StageFigures { name: s.name.clone(), counts: s.counts }).collect();
        let outcome = Outcome { detect, removed, summary, stages };
        let mut figures = self.check(name, run, outcome, wall_s, calls).await?;
        figures.pipeline = Some(id);
        figures.state = format!("{:?}", status.state).to_lowercase();
        if let Some(message) = status.message {
            figures.problems.push(format!("{name}: {message}"));
        }
        figures.faults = faults;
        Ok(figures)
    }

    /// Submits `specs` as separate jobs through `POST /v1/jobs`; their ids, in order.
    async fn submit_all(&self, run: &str, stage: &str, specs: Vec<JobSpec>) -> Result<Vec<String>, LoadtestError> {
        futures::stream::iter(specs.into_iter().enumerate())
            .map(|(n, spec)| async move {
                let body = serde_json::to_value(&spec).expect("a job spec serialises");
                self.gateway.submit(&body, &format!("{run}-{stage}-{n}-{}", self.nonce)).await
            })
            .buffered(AT_ONCE)
            .try_collect()
            .await
    }

    /// Waits for jobs `ids` to end, reading their states from Redis in batches; the jobs.
    async fn wait_all(&self, ids: &[String], started: Instant) -> Result<Vec<Job>, LoadtestError> {
        let deadline = Duration::from_secs(self.options.deadline_secs);
        let mut pending: Vec<String> = ids.to_vec();
        while !pending.is_empty() && started.elapsed() < deadline {
            let mut still = Vec::new();
            for chunk in pending.chunks(STATES_BATCH) {
                let states = self.jobs.states(chunk).await.map_err(|e| LoadtestError::Invalid(e.to_string()))?;
                still.extend(
                    chunk
                        .iter()
                        .zip(states)
                        .filter(|(_, s)| !s.is_some_and(|s| s.is_terminal()))
                        .map(|(id, _)| id.clone()),
                );
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        futures::stream::iter(ids)
            .map(|id| async move {
                self.jobs
                    .get(id)
                    .await
                    .map_err(|e| LoadtestError::Invalid(e.to_string()))?
                    .ok_or_else(|| LoadtestError::Invalid(format!("job {id} vanished")))
            })
            .buffered(AT_ONCE)
            .try_collect()
            .await
    }

    /// A directory of `outputs` named by file, as the driver gathers a stage's outputs.
    async fn gather(&self, outputs: &BTreeMap<String, ContentId>) -> Result<ContentId, LoadtestError> {
        let mut links = Vec::with_capacity(outputs.len());
        for (name, output) in outputs {
            let info = unixfs::stat(self.store.as_ref(), output.cid())
                .await
                .map_err(|e| LoadtestError::content(format!("reading {output}"), e))?;
            links.push(Link { name: name.clone(), cid: *output.cid(), dag_size: info.dag_size });
        }
        let directory = unixfs::import_links(links, &ImportOptions::default(), self.store.as_ref())
            .await
            .map_err(|e| LoadtestError::content("gathering outputs", e))?;
        Ok(ContentId(directory.root))
    }

    /// The baseline: the same work as separate jobs a client submits stage by stage — detect on
    /// every scene, then remove where detect's stats say so, then the summary over the gathered
    /// outputs — each job the one the pipeline's stage would make — over the first `scenes`.
    async fn separate(&self, name: &str, run: &str, scenes: usize) -> Result<PipelineRun, LoadtestError> {
        let spec = PipelineSpec::from_json(self.spec(run).to_string().as_bytes())
            .map_err(|e| LoadtestError::Invalid(format!("the cloud pipeline: {e}")))?;
        let stage = |name: &str| spec.stage(name).expect("the cloud pipeline has it");
        let job_spec = |name: &str, inputs: Vec<InputSpec>| {
            let mut spec = stage(name).job_spec(inputs);
            spec.fan_out = None;
            spec
        };
        let succeeded = |job: &Job| job.result.as_ref().map(|r| r.output).filter(|_| job.state == JobState::Succeeded);
        let files = &self.files[..scenes.min(self.files.len())];
        let calls_before = redis_calls(self.stack).await?;
        let started = Instant::now();

        let scene = |file: &str, cid: &Cid| InputSpec::new(ContentId(*cid), "/inputs", Some(file.to_string()));
        let specs = files.iter().map(|(file, cid)| job_spec("detect", vec![scene(file, cid)])).collect();
        let detect_ids = self.submit_all(run, "detect", specs).await?;
        let detect_jobs = self.wait_all(&detect_ids, started).await?;
        self.progress(format!("{name}: detect done in {:.1} s", seconds(started)));
        let detected: BTreeMap<String, ContentId> = self
            .files
            .iter()
            .zip(&detect_jobs)
            .filter_map(|((file, _), job)| Some((file.clone(), succeeded(job)?)))
            .collect();
        let fractions = self.fractions(detected.iter().map(|(f, o)| (f.clone(), *o)).collect()).await;

        let over: Vec<(&String, &Cid)> = self
            .files
            .iter()
            .filter(|(file, _)| fractions.get(file).is_some_and(|f| f.as_ref().is_ok_and(|f| *f > THRESHOLD)))
            .map(|(file, cid)| (file, cid))
            .collect();
        let specs = over
            .iter()
            .map(|(file, cid)| {
                job_spec("remove", vec![scene(file, cid), InputSpec::new(detected[*file], "/mask", None)])
            })
            .collect();
        let remove_ids = self.submit_all(run, "remove", specs).await?;
        let remove_jobs = self.wait_all(&remove_ids, started).await?;
        self.progress(format!("{name}: remove done in {:.1} s", seconds(started)));
        let cleared: BTreeMap<String, ContentId> = over
            .iter()
            .zip(&remove_jobs)
            .filter_map(|((file, _), job)| Some(((*file).clone(), succeeded(job)?)))
            .collect();

        let inputs = vec![
            InputSpec::new(self.gather(&detected).await?, "/detected", None),
            InputSpec::new(self.gather(&cleared).await?, "/cleared", None),
        ];
        let summary_ids = self.submit_all(run, "summary", vec![job_spec("summary", inputs)]).await?;
        let summary_jobs = self.wait_all(&summary_ids, started).await?;
        let wall_s = seconds(started);
        let calls = redis_calls(self.stack).await?.saturating_sub(calls_before);
        self.progress(format!("{name}: {} jobs in {wall_s:.1} s", detect_ids.len() + remove_ids.len() + 1));

        let count = |jobs: &[Job], skipped: usize| {
            let ok = jobs.iter().filter(|j| j.state == JobState::Succeeded).count() as u64;
            let failed = jobs.iter().filter(|j| j.state.is_terminal() && j.state != JobState::Succeeded).count() as u64;
            let unfinished = jobs.iter().filter(|j| !j.state.is_terminal()).count() as u64;
            UnitCounts { waiting: unfinished, running: 0, succeeded: ok, failed, skipped: skipped as u64 }
        };
        let stages = vec![
            StageFigures { name: "detect".into(), counts: count(&detect_jobs, 0) },
            StageFigures { name: "remove".into(), counts: count(&remove_jobs, files.len() - over.len()) },
            StageFigures { name: "summary".into(), counts: count(&summary_jobs, 0) },
        ];
        let outcome = Outcome {
            detect: self
                .files
                .iter()
                .zip(&detect_jobs)
                .map(|((file, _), job)| (file.clone(), Some(job.id.clone()), succeeded(job)))
                .collect(),
            removed: over
                .iter()
                .zip(&remove_jobs)
                .map(|((file, _), job)| ((*file).clone(), (job.id.clone(), job.state == JobState::Succeeded)))
                .collect(),
            summary: summary_jobs.first().and_then(succeeded),
            stages,
        };
        let mut figures = self.check(name, run, outcome, wall_s, Some(calls)).await?;
        let all_ended = summary_jobs.iter().all(|j| j.state.is_terminal());
        figures.state = if all_ended { "succeeded".into() } else { "unfinished".into() };
        Ok(figures)
    }

    /// Checks a run's outcome: remove ran on exactly the scenes whose detect stats (read here)
    /// are over the threshold, the summary counts them so, and how many remove jobs ran where
    /// their scene's detect job did.
    async fn check(
        &self,
        name: &str,
        run: &str,
        outcome: Outcome,
        wall_s: f64,
        redis_calls: Option<u64>,
    ) -> Result<PipelineRun, LoadtestError> {
        let checking = Instant::now();
        let mut problems = Vec::new();
        let mut problem = |message: String| {
            if problems.len() < 10 {
                problems.push(format!("{name}: {message}"));
            }
        };
        let outputs: Vec<(String, ContentId)> =
            outcome.detect.iter().filter_map(|(file, _, output)| Some((file.clone(), (*output)?))).collect();
        if outputs.len() != self.files.len() {
            problem(format!("{} of {} scenes detected", outputs.len(), self.files.len()));
        }
        let fractions = self.fractions(outputs).await;
        let mut over = BTreeSet::new();
        for (file, fraction) in &fractions {
            match fraction {
                Ok(f) if *f > THRESHOLD => {
                    over.insert(file.clone());
                }
                Ok(_) => {}
                Err(e) => problem(e.clone()),
            }
        }
        let cleared: BTreeSet<String> =
            outcome.removed.iter().filter(|(_, (_, ok))| *ok).map(|(file, _)| file.clone()).collect();
        let wrong: Vec<&String> = over.symmetric_difference(&cleared).collect();
        for file in wrong.iter().take(3) {
            let fraction = fractions.get(*file).and_then(|f| f.as_ref().ok()).copied().unwrap_or(f64::NAN);
            problem(format!("{file}: cloud fraction {fraction}, cleared {}", cleared.contains(*file)));
        }

        let expected =
            json!({"scenes": self.files.len(), "cleared": over.len(), "not_cleared": self.files.len() - over.len()});
        let summary_counts = match &outcome.summary {
            Some(output) => match self.read_in(output, "summary.json").await {
                Ok(bytes) => {
                    serde_json::from_slice::<Value>(&bytes).map(|v| v["counts"].clone()).unwrap_or(Value::Null)
                }
                Err(e) => {
                    problem(e);
                    Value::Null
                }
            },
            None => Value::Null,
        };
        if summary_counts != expected {
            problem(format!("summary.json counts {summary_counts}, the detect stats say {expected}"));
        }

        // Locality: each remove job against its scene's detect job, by the worker whose
        // execution completed.
        let detect_jobs: BTreeMap<&String, &String> =
            outcome.detect.iter().filter_map(|(file, job, _)| Some((file, job.as_ref()?))).collect();
        let pairs: Vec<(String, String)> = outcome
            .removed
            .iter()
            .filter(|(_, (_, ok))| *ok)
            .filter_map(|(file, (job, _))| Some((detect_jobs.get(file)?.to_string(), job.clone())))
            .collect();
        let same: Vec<bool> = futures::stream::iter(pairs)
            .map(|(detect, remove)| async move {
                let detect = self.gateway.status(&detect).await?.job;
                let remove = self.gateway.status(&remove).await?.job;
                Ok::<_, LoadtestError>(ran_on(&detect).is_some() && ran_on(&detect) == ran_on(&remove))
            })
            .buffer_unordered(AT_ONCE)
            .try_collect()
            .await?;
        let same_worker = same.iter().filter(|s| **s).count();
        let jobs = outcome.detect.iter().filter(|(_, job, _)| job.is_some()).count()
            + outcome.removed.len()
            + usize::from(outcome.summary.is_some());
        Ok(PipelineRun {
            name: name.to_string(),
            env: run.to_string(),
            pipeline: None,
            state: String::new(),
            wall_s,
            stages: outcome.stages,
            jobs,
            over_threshold: over.len(),
            remove_mismatches: wrong.len(),
            summary_output: outcome.summary.map(|o| o.to_string()),
            summary_counts,
            summary_expected: expected,
            removes_checked: same.len(),
            removes_same_worker: same_worker,
            redis_calls,
            redis_calls_per_job: redis_calls.map(|calls| calls as f64 / jobs.max(1) as f64),
            check_s: seconds(checking),
            faults: Vec::new(),
            problems,
        })
    }
}

impl Mode for PipelineOptions {
    type Report = PipelineReport;

    fn report_prefix(&self) -> Option<&std::path::Path> {
        self.report.as_deref()
    }

    async fn run(&self, command: String) -> Result<PipelineReport, LoadtestError> {
        run_pipeline(self, command).await
    }
}

/// Runs the pipeline scenario `options` describe; `command` is recorded in the report.
pub async fn run_pipeline(options: &PipelineOptions, command: String) -> Result<PipelineReport, LoadtestError> {
    if options.scenes == 0 || options.workers < 4 || options.worker_concurrency == 0 || options.shards == 0 {
        return Err(LoadtestError::Invalid(
            "--scenes, --worker-concurrency and --shards must be positive, --workers at least 4".into(),
        ));
    }
    if !(0.0..1.0).contains(&options.fault_at) {
        return Err(LoadtestError::Invalid(format!("--fault-at {} is not a fraction below 1", options.fault_at)));
    }
    let started = Instant::now();
    let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let shoal = shoal_binary(options.shoal.as_deref())?;
    let programs_path = options.programs.clone().unwrap_or_else(programs_dir);
    // A temporary home goes with the report, so it is removed only once the report is written.
    let (home, temporary) = match &options.home {
        Some(home) => (home.clone(), None),
        None => {
            let dir = tempfile::tempdir().map_err(|e| LoadtestError::io("creating a temporary home", e))?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };

    // The scenes, cut as `shoal-loadtest scenes` cuts them, and the programs, into the workers'
    // block store.
    let generating = Instant::now();
    let (source, plan, scenes_dir, _) = cut_scenes(options.source.clone(), options.tile, options.scenes, &home).await?;
    let generate_s = seconds(generating);
    let adding = Instant::now();
    let store = Arc::new(
        FsBlockStore::open(home.join("blocks"))
            .map_err(|e| LoadtestError::content(format!("opening {}/blocks", home.display()), e))?,
    );
    let imported = unixfs::import_path(&scenes_dir, &ImportOptions::default(), store.as_ref())
        .await
        .map_err(|e| LoadtestError::content(format!("adding {}", scenes_dir.display()), e))?;
    let files: Vec<(String, Cid)> = unixfs::list(store.as_ref(), &imported.root)
        .await
        .map_err(|e| LoadtestError::content("listing the scenes", e))?
        .into_iter()
        .map(|entry| (entry.name, entry.cid))
        .collect();
    let mut programs = BTreeMap::new();
    for (stage, program) in PROGRAMS {
        let path = programs_path.join(format!("{program}.wasm"));
        let bytes = std::fs::read(&path).map_err(|e| LoadtestError::io(format!("reading {}", path.display()), e))?;
        let cid = unixfs::import_reader(&bytes[..], &ImportOptions::default(), store.as_ref())
            .await
            .map_err(|e| LoadtestError::content(format!("adding {}", path.display()), e))?
            .root;
        programs.insert(stage, cid);
    }
    let add_s = seconds(adding);
    eprintln!("{} scenes in {generate_s:.1} s, added as {} in {add_s:.1} s", files.len(), imported.root);

    let starting = Instant::now();
    let stack = ProcessStack::start(ProcessStackConfig {
        shoal,
        home: home.clone(),
        shards: options.shards,
        worker_concurrency: options.worker_concurrency,
        visibility_timeout_secs: Some(options.visibility_timeout_secs),
        fsync: Fsync::EverySec,
        input_cache_bytes: None,
        heartbeat_ms: None,
    })
    .await?;
    for _ in 0..options.workers {
        stack.start_worker(&stack.new_worker_id())?;
    }
    let gateway = Gateway::new(stack.gateway_url(), stack.api_key())?;
    gateway.wait_workers(options.workers).await?;
    let conn = RedisConnection::open(&[stack.redis_url_for(RedisRole::Gateway)])
        .await
        .map_err(|e| LoadtestError::Setup(format!("connecting to Redis: {e}")))?;
    let stack_start_s = seconds(starting);

    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let context = Context {
        options,
        stack: &stack,
        gateway,
        jobs: JobStore::new(conn),
        store,
        programs,
        scenes: imported.root,
        files,
        nonce,
    };
    let outcome = async {
        // Each worker compiles a program the first time it runs it; a few jobs of each stage
        // first, so that neither timed run pays for that.
        context.separate("warm-up", "warm-up", WARM_UP).await?;
        let clean = context.pipeline("pipeline", "pipeline", false).await?;
        let separate = context.separate("separate jobs", "separate", options.scenes).await?;
        let faulted = context.pipeline("pipeline through faults", "faults", true).await?;
        Ok::<_, LoadtestError>(vec![clean, separate, faulted])
    }
    .await;
    let cpu_s = stack.cpu_seconds();
    stack.shutdown();
    let runs = outcome?;

    let mut report = PipelineReport {
        command,
        started_at_unix_s,
        passed: false,
        scenes: options.scenes,
        workers: options.workers,
        worker_concurrency: options.worker_concurrency,
        shards: options.shards,
        tile_px: plan.tile,
        source_scene: source.id.clone(),
        scenes_cid: imported.root.to_string(),
        catalogue_bytes: imported.size,
        threshold: THRESHOLD,
        generate_s,
        add_s,
        stack_start_s,
        total_s: seconds(started),
        time_ratio: runs[0].wall_s / runs[1].wall_s.max(f64::EPSILON),
        redis_ratio: match (runs[0].redis_calls_per_job, runs[1].redis_calls_per_job) {
            (Some(pipeline), Some(separate)) if separate > 0.0 => Some(pipeline / separate),
            _ => None,
        },
        runs,
        cpu_s,
        problems: Vec::new(),
        home: temporary.map(Arc::new),
    };
    report.problems = problems(&report);
    report.passed = report.problems.is_empty();
    Ok(report)
}
