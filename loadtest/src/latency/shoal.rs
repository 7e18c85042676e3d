//! One offered rate against Shoal: a fresh process stack (Redis, gateway, the workers serving
//! their phase histograms), a warm-up that compiles the program and caches the inputs on the
//! workers, then open-loop submissions over HTTP, each job waited for by its client (long-poll
//! when the gateway honours `?wait=`, else polling), the backlog sampled, the CPU of every
//! process and the phase histograms read before and after.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal_content::FsBlockStore;
use shoal_jobs::{free_port, Fsync, Job, JobState};
use shoal_testkit::{
    process_context_switches, process_cpu_seconds, programs_dir, CommandStats, ProcessStack, ProcessStackConfig,
};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::api::{Api, JobRead, Submitted};
use crate::cli::shoal_binary;
use crate::error::{LoadtestError, Result};
use crate::latency::options::LatencyOptions;
use crate::latency::phases::{self, redis_commands, Breakdown, Histogram, GATEWAY_METRIC, WORKER_METRIC};
use crate::latency::step::{loadavg, StepFigures, StepSamples};
use crate::workload::{prepare, PlannedJob};

/// How long a long-poll asks the gateway to hold an answer (under the client's 15 s timeout).
const LONG_POLL: Duration = Duration::from_secs(10);
/// Polling without long-poll: the first pause, and the longest; in between a tenth of the wait
/// so far, so a job is seen finished within about 10 % of its latency.
const FIRST_POLL: Duration = Duration::from_millis(5);
const LONGEST_POLL: Duration = Duration::from_millis(250);
/// How often the backlog is sampled.
const BACKLOG_EVERY: Duration = Duration::from_millis(500);
/// Warm-up jobs per input: each worker compiles the program and caches the inputs it owns.
const WARM_UP_PER_INPUT: usize = 2;
/// Time allowed for the warm-up.
const WARM_UP: Duration = Duration::from_secs(60);

/// How clients learn that a job finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitMethod {
    /// `POST /v1/jobs?wait=10s`: the submission's answer waits for the job; if it is not
    /// terminal yet, then as [`WaitMethod::LongPoll`].
    OnSubmit,
    /// `GET /v1/jobs/{id}?wait=10s`, again until the job is terminal.
    LongPoll,
    /// `GET /v1/jobs/{id}` every tenth of the wait so far (5 to 250 ms): the gateway ignored
    /// `?wait=`.
    Polling,
}

impl WaitMethod {
    /// For the report.
    pub fn describe(self) -> &'static str {
        match self {
            WaitMethod::OnSubmit => {
                "submit and wait: POST /v1/jobs?wait=10s, then (if not terminal yet) GET /v1/jobs/{id}?wait=10s until terminal"
            }
            WaitMethod::LongPoll => "long-poll: GET /v1/jobs/{id}?wait=10s until terminal",
            WaitMethod::Polling => {
                "polling: GET /v1/jobs/{id} every tenth of the wait so far, 5–250 ms (the gateway ignored ?wait=)"
            }
        }
    }
}

/// How one submitted job ended for its client.
enum Seen {
    /// Its terminal record, when it was seen (seconds from the start) and its latency.
    Finished { latency_ms: f64, done_at_s: f64, failed: bool, wrong: bool },
    /// Submitted, not seen finished before waiting ended: its wait so far.
    Unfinished { waited_ms: f64 },
    /// The submission was refused or never answered.
    Refused,
}

/// What the stack has used so far: each process's CPU seconds and context switches (Redis's
/// and this harness's included), and Redis's commands.
struct Usage {
    cpu: BTreeMap<String, f64>,
    switches: BTreeMap<String, u64>,
    commands: BTreeMap<String, CommandStats>,
}

async fn usage_now(stack: &ProcessStack) -> Usage {
    let (mut cpu, mut switches) = (stack.cpu_seconds(), stack.context_switches());
    let mut commands = BTreeMap::new();
    if let Ok(redis) = stack.redis_usage().await {
        cpu.insert("redis".into(), redis.cpu_s);
        switches.insert("redis".into(), redis.context_switches);
        commands = redis.commands;
    }
    cpu.insert("harness".into(), process_cpu_seconds(std::process::id()));
    switches.insert("harness".into(), process_context_switches(std::process::id()));
    Usage { cpu, switches, commands }
}

/// The phase histograms of the workers (summed) and the gateway, read now; a process that does
/// not answer adds nothing.
async fn read_phases(
    http: &reqwest::Client,
    stack: &ProcessStack,
    worker_addrs: &[String],
) -> (BTreeMap<String, Histogram>, BTreeMap<String, Histogram>) {
    // Asked again when it fails: a scrape read as empty would count a step's observations from
    // zero, the warm-up's with them (seen once on a loaded CI machine).
    let text = |url: String| async move {
        for _ in 0..5 {
            if let Ok(response) = http.get(&url).send().await {
                if response.status().is_success() {
                    if let Ok(text) = response.text().await {
                        return text;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        String::new()
    };
    let mut workers = Vec::new();
    for addr in worker_addrs {
        workers.push(phases::parse(&text(format!("http://{addr}/metrics")).await, WORKER_METRIC));
    }
    let gateway = phases::parse(&text(format!("{}/metrics", stack.gateway_url())).await, GATEWAY_METRIC);
    (phases::merge(&workers), gateway)
}

/// Whether the gateway held `?wait=1s` on an unfinished job for about that long: on the
/// submission itself, else on a read of it. Asked before any worker starts, so the job cannot
/// finish meanwhile.
async fn probe_wait(api: &Api, spec: &Value, deadline: Instant) -> Result<WaitMethod> {
    let held = |started: Instant| started.elapsed() >= Duration::from_millis(800);
    let started = Instant::now();
    let (submitted, job) = api.submit_waiting(spec, "latency-probe", Duration::from_secs(1), deadline).await;
    let id = submitted
        .id()
        .ok_or_else(|| LoadtestError::Setup(format!("the long-poll probe's submission failed: {submitted:?}")))?
        .to_string();
    // Held by one request, not by retries of one.
    let first_try = matches!(submitted, Submitted::Accepted { attempts: 1, .. });
    if first_try && held(started) && job.is_some_and(|job| !job.state.is_terminal()) {
        return Ok(WaitMethod::OnSubmit);
    }
    let started = Instant::now();
    let read = api.job_waiting(&id, Duration::from_secs(1)).await;
    Ok(match read {
        JobRead::Found(job) if held(started) && !job.state.is_terminal() => WaitMethod::LongPoll,
        _ => WaitMethod::Polling,
    })
}

/// What one rate's run found, and how clients waited.
pub struct ShoalStep {
    /// The figures.
    pub figures: StepFigures,
    /// How clients waited.
    pub wait: WaitMethod,
}

/// Runs offered rate `rate` on a fresh stack in a home of its own under `homes`; `wait` is how
/// clients wait, probed on this stack when `None`.
pub async fn run_step(
    options: &LatencyOptions,
    homes: &std::path::Path,
    rate: f64,
    wait: Option<WaitMethod>,
) -> Result<ShoalStep> {
    let home = stack_home(homes, &format!("shoal-{rate}"))?;
    let programs = options.programs.clone().unwrap_or_else(programs_dir);
    let store = FsBlockStore::open(home.join("blocks"))
        .map_err(|source| LoadtestError::content("opening the stack's block store", source))?;
    let planned = (rate * options.secs).round() as usize;
    let warm_up = options.inputs.max(1) * WARM_UP_PER_INPUT;
    let jobs = plan(&store, &programs, warm_up + planned, options).await?;
    let (warm_up_jobs, timed_jobs) = jobs.split_at(warm_up);

    let stack = start_stack(options, &home).await?;
    let api = Api::new(stack.gateway_url(), stack.api_key())?;
    let setup_deadline = Instant::now() + WARM_UP;
    let wait = match wait {
        Some(wait) => wait,
        None => probe_wait(&api, &warm_up_jobs[0].spec, setup_deadline).await?,
    };
    let mut worker_addrs = Vec::new();
    for _ in 0..options.workers {
        // Each worker its own port: two workers given one would be scraped as one, twice over.
        let mut port = free_port()?;
        while worker_addrs.contains(&format!("127.0.0.1:{port}")) {
            port = free_port()?;
        }
        let addr = format!("127.0.0.1:{port}");
        let mut flags = vec!["--metrics-addr".to_string(), addr.clone()];
        if let Some(dir) = &options.runs_dir {
            flags.extend(["--runs-dir".to_string(), dir.display().to_string()]);
        }
        stack.start_worker_with(&stack.new_worker_id(), &flags)?;
        worker_addrs.push(addr);
    }
    warm(&api, warm_up_jobs, setup_deadline).await?;

    let http =
        shoal_testkit::keyed_client(reqwest::Client::builder().timeout(Duration::from_secs(5)), stack.api_key())?;
    let before = read_phases(&http, &stack, &worker_addrs).await;
    let before_usage = usage_now(&stack).await;
    let load_before = loadavg();
    let samples = offer(&api, timed_jobs, rate, options, wait).await;
    let after_usage = usage_now(&stack).await;
    let load_after = loadavg();
    let after = read_phases(&http, &stack, &worker_addrs).await;
    stack.shutdown();

    let (samples, refused, wrong) = samples;
    let cpu: BTreeMap<String, f64> = after_usage
        .cpu
        .iter()
        .map(|(name, after)| (name.clone(), after - before_usage.cpu.get(name).unwrap_or(&0.0)))
        .collect();
    // A thread gone since (an idle blocking thread's) takes its count along: never below 0.
    let switches: BTreeMap<String, u64> = after_usage
        .switches
        .iter()
        .map(|(name, after)| (name.clone(), after.saturating_sub(*before_usage.switches.get(name).unwrap_or(&0))))
        .collect();
    let mut figures = StepFigures::of(&samples, refused, wrong).with_cpu(cpu).with_context_switches(switches);
    figures.loadavg = (load_before, load_after);
    let mut breakdown = Breakdown::of(&phases::since(&after.0, &before.0), &phases::since(&after.1, &before.1));
    breakdown.redis_commands = redis_commands(&before_usage.commands, &after_usage.commands, 1);
    figures.breakdown = Some(breakdown);
    Ok(ShoalStep { figures, wait })
}

/// Starts Redis and the gateway of a latency stack in `home` (the workers are the caller's to
/// start, with the flags it needs).
pub(crate) async fn start_stack(options: &LatencyOptions, home: &std::path::Path) -> Result<ProcessStack> {
    ProcessStack::start(ProcessStackConfig {
        shoal: shoal_binary(options.shoal.as_deref())?,
        home: home.to_path_buf(),
        shards: options.shards,
        worker_concurrency: options.worker_concurrency,
        visibility_timeout_secs: None,
        fsync: Fsync::EverySec,
        input_cache_bytes: None,
        heartbeat_ms: None,
    })
    .await
    .map_err(Into::into)
}

/// A fresh stack's home: a new directory `name` under `homes` (`name-2`, `name-3`… if taken: a
/// rate run twice, or a `--work-dir` used before).
pub(crate) fn stack_home(homes: &std::path::Path, name: &str) -> Result<PathBuf> {
    let parent =
        std::path::absolute(homes).map_err(|e| LoadtestError::io(format!("resolving {}", homes.display()), e))?;
    std::fs::create_dir_all(&parent).map_err(|e| LoadtestError::io(format!("creating {}", parent.display()), e))?;
    let mut n = 1;
    loop {
        let home = if n == 1 { parent.join(name) } else { parent.join(format!("{name}-{n}")) };
        match std::fs::create_dir(&home) {
            Ok(()) => return Ok(home),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(LoadtestError::io(format!("creating {}", home.display()), e)),
        }
    }
}

/// `jobs` echo-hash jobs over single small files, none verified: the reliability mix's file
/// jobs (each with arguments of its own, so no two are the same invocation).
pub(crate) async fn plan(
    store: &FsBlockStore,
    programs: &std::path::Path,
    jobs: usize,
    options: &LatencyOptions,
) -> Result<Vec<PlannedJob>> {
    // The mix makes every 7th job a directory job: plan enough to keep `jobs` file jobs.
    let workload = prepare(store, programs, jobs + jobs / 6 + 7, options.inputs, 0, options.seed).await?;
    Ok(workload
        .jobs
        .into_iter()
        .filter(|job| job.kind == "echo-hash-file")
        .take(jobs)
        .map(|mut job| {
            job.spec["verification"] = json!({"mode": "none"});
            job
        })
        .collect())
}

/// Submits the warm-up jobs and waits for every one to finish.
async fn warm(api: &Api, jobs: &[PlannedJob], deadline: Instant) -> Result<()> {
    for (n, job) in jobs.iter().enumerate() {
        let submitted = api.submit(&job.spec, &format!("latency-warm-up-{n}"), deadline).await;
        let id = submitted
            .id()
            .ok_or_else(|| LoadtestError::Setup(format!("a warm-up submission failed: {submitted:?}")))?;
        loop {
            match api.job(id).await {
                JobRead::Found(job) if job.state.is_terminal() => break,
                _ if Instant::now() >= deadline => {
                    return Err(LoadtestError::Setup("the warm-up jobs did not finish in time".into()))
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    Ok(())
}

/// Offers `jobs` at `rate` a second, each submitted at its due time (or as soon after as the
/// in-flight limit allows) and waited for until the window plus the drain time is over.
/// Returns the samples, the submissions refused and the outputs that were wrong.
async fn offer(
    api: &Api,
    jobs: &[PlannedJob],
    rate: f64,
    options: &LatencyOptions,
    wait: WaitMethod,
) -> (StepSamples, usize, usize) {
    let t0 = Instant::now();
    let stop_waiting = t0 + Duration::from_secs_f64(options.secs + options.drain_secs);
    let outstanding = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let sampler = {
        let outstanding = outstanding.clone();
        tokio::spawn(async move {
            let mut backlog = Vec::new();
            let mut tick = tokio::time::interval(BACKLOG_EVERY);
            loop {
                tick.tick().await;
                if Instant::now() >= stop_waiting {
                    return backlog;
                }
                backlog.push((t0.elapsed().as_secs_f64(), outstanding.load(Ordering::Relaxed) as f64));
            }
        })
    };
    for (n, job) in jobs.iter().enumerate() {
        let due = t0 + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due).await;
        let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (api, spec, expected) = (api.clone(), job.spec.clone(), job.expected_output);
        let (seen_tx, outstanding) = (seen_tx.clone(), outstanding.clone());
        let key = format!("latency-{rate}-{n}");
        tokio::spawn(async move {
            let seen = submit_and_wait(&api, &spec, &key, expected, wait, due, t0, stop_waiting, &outstanding).await;
            drop(permit);
            seen_tx.send(seen).ok();
        });
    }
    let offered_secs = t0.elapsed().as_secs_f64();
    drop(seen_tx);
    let mut samples = StepSamples { offered_per_s: rate, planned: jobs.len(), offered_secs, ..StepSamples::default() };
    let (mut refused, mut wrong) = (0, 0);
    while let Some(seen) = seen_rx.recv().await {
        match seen {
            Seen::Finished { latency_ms, done_at_s, failed, wrong: is_wrong } => {
                samples.submitted += 1;
                samples.completed += 1;
                samples.failed += usize::from(failed);
                wrong += usize::from(is_wrong);
                samples.latencies_ms.push(latency_ms);
                samples.done_at_s.push(done_at_s);
            }
            Seen::Unfinished { waited_ms } => {
                samples.submitted += 1;
                samples.unfinished_waits_ms.push(waited_ms);
            }
            Seen::Refused => refused += 1,
        }
    }
    samples.elapsed_secs = t0.elapsed().as_secs_f64();
    sampler.abort();
    samples.backlog = sampler.await.unwrap_or_default();
    (samples, refused, wrong)
}

/// One client: submits `spec`, then waits for the job to be terminal until `stop_waiting`.
#[allow(clippy::too_many_arguments)]
async fn submit_and_wait(
    api: &Api,
    spec: &Value,
    key: &str,
    expected: Cid,
    wait: WaitMethod,
    due: Instant,
    t0: Instant,
    stop_waiting: Instant,
    outstanding: &AtomicUsize,
) -> Seen {
    // Counted from its due time: a submission the gateway is slow to take is backlog too.
    outstanding.fetch_add(1, Ordering::Relaxed);
    let (submitted, answered) = match wait {
        WaitMethod::OnSubmit => {
            let left = stop_waiting.saturating_duration_since(Instant::now());
            api.submit_waiting(spec, key, LONG_POLL.min(left), stop_waiting).await
        }
        WaitMethod::LongPoll | WaitMethod::Polling => (api.submit(spec, key, stop_waiting).await, None),
    };
    let id = match &submitted {
        Submitted::Accepted { id, .. } | Submitted::Replayed { id, .. } => id.clone(),
        Submitted::Refused { .. } => {
            outstanding.fetch_sub(1, Ordering::Relaxed);
            return Seen::Refused;
        }
    };
    let finished = match answered {
        Some(job) if job.state.is_terminal() => Some(job),
        _ => wait_terminal(api, &id, wait, stop_waiting).await,
    };
    outstanding.fetch_sub(1, Ordering::Relaxed);
    let now = Instant::now();
    let latency_ms = now.duration_since(due).as_secs_f64() * 1000.0;
    match finished {
        Some(job) => Seen::Finished {
            latency_ms,
            done_at_s: now.duration_since(t0).as_secs_f64(),
            failed: job.state != JobState::Succeeded,
            wrong: job.state == JobState::Succeeded && job.result.as_ref().is_none_or(|r| *r.output.cid() != expected),
        },
        None => Seen::Unfinished { waited_ms: latency_ms },
    }
}

/// The job's terminal record, read by long-poll or polling, or `None` at `stop_waiting`.
async fn wait_terminal(api: &Api, id: &str, wait: WaitMethod, stop_waiting: Instant) -> Option<Job> {
    let started = Instant::now();
    loop {
        let read = match wait {
            WaitMethod::OnSubmit | WaitMethod::LongPoll => {
                let left = stop_waiting.saturating_duration_since(Instant::now());
                if left < Duration::from_secs(1) {
                    api.job(id).await
                } else {
                    api.job_waiting(id, LONG_POLL.min(left)).await
                }
            }
            WaitMethod::Polling => api.job(id).await,
        };
        let answered = match read {
            JobRead::Found(job) if job.state.is_terminal() => return Some(*job),
            JobRead::Found(_) | JobRead::Missing => true,
            JobRead::Unavailable(_) => false,
        };
        if Instant::now() >= stop_waiting {
            return None;
        }
        let pause = match wait {
            // A long-poll that answered has waited already; one that failed is not asked again at once.
            WaitMethod::OnSubmit | WaitMethod::LongPoll if answered => Duration::ZERO,
            WaitMethod::OnSubmit | WaitMethod::LongPoll => FIRST_POLL,
            WaitMethod::Polling => (started.elapsed() / 10).clamp(FIRST_POLL, LONGEST_POLL),
        };
        tokio::time::sleep_until((Instant::now() + pause).min(stop_waiting)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stack_gets_a_home_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let homes: Vec<_> = (0..3).map(|_| super::stack_home(dir.path(), "shoal-1000").unwrap()).collect();
        let names: Vec<_> = homes.iter().map(|home| home.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, ["shoal-1000", "shoal-1000-2", "shoal-1000-3"]);
        assert!(homes.iter().all(|home| home.is_dir()), "made, and kept");
    }
}
