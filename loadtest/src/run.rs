//! One run: bring the stack up, submit, inject faults, wait, check, report. The locality
//! workload's run is in [`locality`].

pub mod locality;

use std::collections::{BTreeMap, HashSet};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_content::FsBlockStore;
use shoal_jobs::{ExecutionOutcome, Fsync, Job, JobState};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::{Api, JobRead, Submitted};
use crate::error::{LoadtestError, Result};
use crate::options::{FsyncMode, Options, Replace, WorkloadKind};
use crate::report::{FaultRecord, Report};
use crate::stack::{default_shoal_binary, Stack, StackConfig};
use crate::workload::{default_programs_dir, prepare, PlannedJob, SplitMix};

/// Job reads per polling round, and at once.
const POLL_BATCH: usize = 256;
const POLL_PARALLEL: usize = 16;
/// How often a progress line is printed when there are no progress bars.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(10);
/// Pause between polling rounds.
const POLL_PAUSE: Duration = Duration::from_millis(100);
/// Time allowed after the deadline for the last reads and the listing that finds duplicates.
const FINAL_CHECK: Duration = Duration::from_secs(60);
/// Examples of problems kept in the report.
const MAX_EXAMPLES: usize = 20;

/// How one planned job ended up.
#[derive(Debug)]
enum Final {
    /// Terminal record.
    Done(Box<Job>),
    /// Not terminal at the end: its last state (`queued`, `running`, `missing`, `unreadable`).
    Lost(String),
}

/// Runs the whole load test described by `options`; `command` is recorded in the report.
pub async fn run(options: &Options, command: String) -> Result<Report> {
    let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(options.deadline_secs);
    // Holds a temporary home until the end of the run (dropped after the stack, declared later).
    let _temporary;
    let home = match &options.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| LoadtestError::io(format!("creating {}", dir.display()), e))?;
            std::path::absolute(dir).map_err(|e| LoadtestError::io(format!("resolving {}", dir.display()), e))?
        }
        None => {
            let dir = tempfile::tempdir().map_err(|e| LoadtestError::io("creating the stack's home", e))?;
            let path = dir.path().to_path_buf();
            _temporary = dir;
            path
        }
    };
    let shoal = match &options.shoal {
        Some(path) => path.clone(),
        None => default_shoal_binary()?,
    };
    let programs = options.programs.clone().unwrap_or_else(default_programs_dir);

    // Content goes in before any worker starts, so no job waits for it.
    let store = FsBlockStore::open(home.join("blocks")).map_err(|source| LoadtestError::Content {
        context: format!("opening {}/blocks", home.display()),
        source: Box::new(source),
    })?;
    if options.workload == WorkloadKind::Locality {
        let setup = locality::Setup { home, shoal, programs, store, started_at_unix_s, deadline };
        return locality::run(options, command, setup).await;
    }
    let workload = prepare(&store, &programs, options.jobs, options.inputs, options.huge_every, options.seed).await?;

    let stack = Arc::new(start_stack(options, shoal, &home).await?);
    for _ in 0..options.workers {
        stack.start_worker(&stack.new_worker_id())?;
    }
    let api = Api::new(stack.gateway_url())?;

    let multi = MultiProgress::with_draw_target(if options.quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec:>12} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let submitted_bar =
        multi.add(ProgressBar::new(workload.jobs.len() as u64).with_style(style.clone()).with_prefix("submitted"));
    let finished_bar =
        multi.add(ProgressBar::new(workload.jobs.len() as u64).with_style(style).with_prefix("finished"));

    let t0 = Instant::now();
    let (done_tx, done_rx) = watch::channel(false);
    let faults =
        tokio::spawn(inject_faults(stack.clone(), options.clone(), t0, deadline, done_rx, finished_bar.clone()));
    let outstanding = Arc::new(AtomicUsize::new(0));
    let (ids_tx, ids_rx) = mpsc::unbounded_channel();
    let run_id =
        format!("{started_at_unix_s:x}-{:x}", SplitMix::new(options.seed ^ started_at_unix_s).next_u64() & 0xffff);
    let submitter = tokio::spawn(submit_all(
        api.clone(),
        workload.jobs.clone(),
        options.clone(),
        run_id,
        t0,
        deadline,
        ids_tx,
        outstanding.clone(),
        submitted_bar.clone(),
    ));
    let (mut finals, ended_early) = poll(&api, ids_rx, options, deadline, &outstanding, &finished_bar).await;
    let duration_s = t0.elapsed().as_secs_f64();
    done_tx.send(true).ok();
    let faults = faults.await.map_err(|e| LoadtestError::Setup(format!("the fault injector panicked: {e}")))?;
    let submissions = submitter.await.map_err(|e| LoadtestError::Setup(format!("the submitter panicked: {e}")))?;
    submitted_bar.finish();
    finished_bar.finish();

    // Jobs the system holds that no accepted submission returned: a key that made two jobs.
    let accepted: HashSet<&str> = submissions.iter().filter_map(|s| submitted_id(s.as_ref())).collect();
    let final_deadline = Instant::now() + FINAL_CHECK;
    let listed = api.all_job_ids(final_deadline).await;
    stack.shutdown();

    let mut report = Report {
        duration_s,
        ended_early,
        faults_by_kind: FaultRecord::by_kind(&faults),
        faults_injected: faults,
        workers_reclaim: stack.workers_reclaim(),
        ..Report::empty(command, started_at_unix_s, workload.jobs.len())
    };
    let mut example = |report: &mut Report, text: String| {
        if report.examples.len() < MAX_EXAMPLES {
            report.examples.push(text);
        }
    };
    let (mut first_created, mut last_finished) = (u64::MAX, 0u64);
    for (n, (planned, submission)) in workload.jobs.iter().zip(&submissions).enumerate() {
        *report.jobs_by_kind.entry(planned.kind.to_string()).or_insert(0) += 1;
        match submission {
            Some(Submitted::Accepted { attempts, .. }) | Some(Submitted::Replayed { attempts, .. }) => {
                report.submitted += 1;
                report.submit_retries += usize::from(*attempts > 1);
                report.submit_replays += usize::from(matches!(submission, Some(Submitted::Replayed { .. })));
            }
            Some(Submitted::Refused { reason }) => {
                report.not_submitted += 1;
                let short: String = reason.split(':').next().unwrap_or(reason).chars().take(60).collect();
                *report.not_submitted_reasons.entry(short).or_insert(0) += 1;
                continue;
            }
            None => {
                report.not_submitted += 1;
                *report.not_submitted_reasons.entry("not attempted before the deadline".into()).or_insert(0) += 1;
                continue;
            }
        }
        match finals.remove(&n) {
            Some(Final::Done(job)) => {
                let latency = job.updated_at_ms.saturating_sub(job.created_at_ms);
                report.latencies_ms.push(latency as f64);
                first_created = first_created.min(job.created_at_ms);
                last_finished = last_finished.max(job.updated_at_ms);
                let outputs: HashSet<String> = job
                    .executions
                    .iter()
                    .filter_map(|e| match &e.outcome {
                        Some(ExecutionOutcome::Completed(result)) => Some(result.output.to_string()),
                        _ => None,
                    })
                    .collect();
                if outputs.len() > 1 {
                    report.duplicates += 1;
                    example(
                        &mut report,
                        format!(
                            "job {} (#{n}) completed with {} different outputs: {outputs:?}",
                            job.id,
                            outputs.len()
                        ),
                    );
                }
                report.reexecuted += usize::from(job.executions.len() > 1);
                check_terminal(&mut report, &mut example, n, planned, &job);
            }
            Some(Final::Lost(state)) => {
                report.lost += 1;
                *report.lost_by_state.entry(state.clone()).or_insert(0) += 1;
                let id = submission.as_ref().and_then(|s| submitted_id(Some(s))).unwrap_or("?");
                example(&mut report, format!("job {id} (#{n}, {}) lost: last state {state}", planned.kind));
            }
            None => {
                report.lost += 1;
                *report.lost_by_state.entry("never polled".into()).or_insert(0) += 1;
            }
        }
    }
    match listed {
        Ok(ids) => {
            let extra: Vec<&String> = ids.iter().filter(|id| !accepted.contains(id.as_str())).collect();
            report.duplicates += extra.len();
            if !extra.is_empty() {
                example(
                    &mut report,
                    format!("{} jobs in the system that no submission returned, e.g. {}", extra.len(), extra[0]),
                );
            }
        }
        Err(e) => example(&mut report, format!("could not list jobs to look for duplicates: {e}")),
    }
    report.summarise(report.latencies_ms.len(), first_created, last_finished);
    Ok(report)
}

/// Starts the stack `options` describe (without workers), its processes run from `shoal` with
/// their files under `home`.
async fn start_stack(options: &Options, shoal: std::path::PathBuf, home: &std::path::Path) -> Result<Stack> {
    Stack::start(StackConfig {
        shoal,
        home: home.to_path_buf(),
        shards: options.shards,
        worker_concurrency: options.worker_concurrency,
        visibility_timeout_secs: options.visibility_timeout_secs,
        fsync: match options.fsync {
            FsyncMode::EverySec => Fsync::EverySec,
            FsyncMode::Always => Fsync::Always,
        },
        input_cache_bytes: options.cache_bytes,
        heartbeat_ms: options.heartbeat_ms,
    })
    .await
}

fn submitted_id(submission: Option<&Submitted>) -> Option<&str> {
    match submission {
        Some(Submitted::Accepted { id, .. }) | Some(Submitted::Replayed { id, .. }) => Some(id),
        _ => None,
    }
}

/// Counts a terminal job as succeeded (expected CID), wrong, or failed by reason.
fn check_terminal(
    report: &mut Report,
    example: &mut impl FnMut(&mut Report, String),
    n: usize,
    planned: &PlannedJob,
    job: &Job,
) {
    match job.state {
        JobState::Succeeded => match &job.result {
            Some(result) if *result.output.cid() == planned.expected_output => report.succeeded += 1,
            Some(result) => {
                report.wrong += 1;
                example(
                    report,
                    format!(
                        "job {} (#{n}, {}) output {} but expected {}",
                        job.id, planned.kind, result.output, planned.expected_output
                    ),
                );
            }
            None => {
                report.wrong += 1;
                example(report, format!("job {} (#{n}) succeeded without a result", job.id));
            }
        },
        JobState::Failed => {
            report.failed += 1;
            let reason = job.failure.as_ref().map_or_else(|| "unknown".to_string(), |f| f.reason.to_string());
            *report.failed_by_reason.entry(reason).or_insert(0) += 1;
            let message = job.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default();
            example(report, format!("job {} (#{n}, {}) failed: {message}", job.id, planned.kind));
        }
        JobState::Cancelled => {
            report.failed += 1;
            *report.failed_by_reason.entry("cancelled".into()).or_insert(0) += 1;
        }
        JobState::Queued | JobState::Running => unreachable!("only terminal jobs are checked"),
    }
}

/// Submits every planned job (rate, concurrency and outstanding limits applied) and sends each
/// accepted id to the poller. Returns each job's submission, `None` when never attempted.
#[allow(clippy::too_many_arguments)]
async fn submit_all(
    api: Api,
    jobs: Vec<PlannedJob>,
    options: Options,
    run_id: String,
    t0: Instant,
    deadline: Instant,
    ids: mpsc::UnboundedSender<(usize, String)>,
    outstanding: Arc<AtomicUsize>,
    bar: ProgressBar,
) -> Vec<Option<Submitted>> {
    let mut results: Vec<Option<Submitted>> = vec![None; jobs.len()];
    let slots = Arc::new(Semaphore::new(options.submit_concurrency.max(1)));
    let mut running = JoinSet::new();
    let finish = |joined: std::result::Result<(usize, Submitted), tokio::task::JoinError>,
                  results: &mut Vec<Option<Submitted>>| {
        if let Ok((n, submitted)) = joined {
            if let Some(id) = submitted_id(Some(&submitted)) {
                outstanding.fetch_add(1, Ordering::Relaxed);
                ids.send((n, id.to_string())).ok();
            }
            bar.inc(1);
            results[n] = Some(submitted);
        }
    };
    for (n, job) in jobs.into_iter().enumerate() {
        if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(n as f64 / rate)).min(deadline)).await;
        }
        while options.max_outstanding > 0
            && outstanding.load(Ordering::Relaxed) >= options.max_outstanding
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Instant::now() >= deadline {
            break;
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let (api, key) = (api.clone(), format!("loadtest-{run_id}-{n}"));
        running.spawn(async move {
            let submitted = api.submit(&job.spec, &key, deadline).await;
            drop(slot);
            (n, submitted)
        });
        while let Some(joined) = running.try_join_next() {
            finish(joined, &mut results);
        }
    }
    while let Some(joined) = running.join_next().await {
        finish(joined, &mut results);
    }
    results
}

/// Polls accepted jobs (round-robin, a batch per round) until all are terminal, the deadline
/// passes, or nothing finishes for `--stall-secs` after the last submission; then reads the
/// rest once more. Returns each job's end and why waiting stopped early, if it did.
async fn poll(
    api: &Api,
    mut ids: mpsc::UnboundedReceiver<(usize, String)>,
    options: &Options,
    deadline: Instant,
    outstanding: &AtomicUsize,
    bar: &ProgressBar,
) -> (BTreeMap<usize, Final>, Option<String>) {
    let stall = Duration::from_secs(options.stall_secs);
    let mut pending: BTreeMap<usize, String> = BTreeMap::new();
    let mut finals = BTreeMap::new();
    let mut cursor = 0;
    let mut submitting = true;
    let mut last_progress = Instant::now();
    // Without a terminal (e.g. `make chaos` into a log) the bars are hidden: print a line instead.
    let log_progress = !options.quiet && bar.is_hidden();
    let mut last_log = Instant::now();
    let ended_early = loop {
        if log_progress && last_log.elapsed() >= PROGRESS_LINE_EVERY {
            last_log = Instant::now();
            eprintln!(
                "finished {}/{}, {} accepted and unfinished, {}",
                finals.len(),
                options.jobs,
                pending.len(),
                bar.message()
            );
        }
        let submitted_all = drain(&mut ids, |(n, id)| {
            pending.insert(n, id);
            last_progress = Instant::now();
        });
        if submitted_all && submitting {
            submitting = false;
            last_progress = Instant::now();
        }
        if !submitting && pending.is_empty() {
            break None;
        }
        if Instant::now() >= deadline {
            break Some(format!(
                "deadline of {} s reached with {} jobs unfinished",
                options.deadline_secs,
                pending.len()
            ));
        }
        if !submitting && last_progress.elapsed() >= stall {
            break Some(format!("no job finished for {} s; {} jobs unfinished", options.stall_secs, pending.len()));
        }
        let batch: Vec<(usize, String)> = pending
            .range(cursor..)
            .chain(pending.range(..cursor))
            .take(POLL_BATCH)
            .map(|(n, id)| (*n, id.clone()))
            .collect();
        cursor = batch.last().map_or(0, |(n, _)| n + 1);
        let reads: Vec<(usize, JobRead)> = futures::stream::iter(batch)
            .map(|(n, id)| async move { (n, api.job(&id).await) })
            .buffer_unordered(POLL_PARALLEL)
            .collect()
            .await;
        for (n, read) in reads {
            if let JobRead::Found(job) = read {
                if job.state.is_terminal() {
                    pending.remove(&n);
                    finals.insert(n, Final::Done(job));
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                    bar.inc(1);
                    last_progress = Instant::now();
                }
            }
        }
        tokio::time::sleep(POLL_PAUSE).await;
    };
    // Ids sent while the loop was ending, then every unfinished job read once more, so a job
    // that finished meanwhile counts as finished.
    while let Ok((n, id)) = ids.try_recv() {
        pending.insert(n, id);
    }
    let last_reads: Vec<(usize, JobRead)> = futures::stream::iter(pending)
        .map(|(n, id)| async move { (n, api.job_until(&id, Instant::now() + Duration::from_secs(5)).await) })
        .buffer_unordered(POLL_PARALLEL)
        .collect()
        .await;
    for (n, read) in last_reads {
        let end = match read {
            JobRead::Found(job) if job.state.is_terminal() => {
                bar.inc(1);
                Final::Done(job)
            }
            JobRead::Found(job) => Final::Lost(job.state.to_string()),
            JobRead::Missing => Final::Lost("missing".into()),
            JobRead::Unavailable(_) => Final::Lost("unreadable".into()),
        };
        finals.insert(n, end);
    }
    (finals, ended_early)
}

/// Seconds since `t0`.
fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// Hands everything waiting on `rx` to `each`, without waiting; whether every sender is gone,
/// so that nothing more will come.
pub(crate) fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>, mut each: impl FnMut(T)) -> bool {
    loop {
        match rx.try_recv() {
            Ok(item) => each(item),
            Err(mpsc::error::TryRecvError::Empty) => return false,
            Err(mpsc::error::TryRecvError::Disconnected) => return true,
        }
    }
}

/// Injects the scheduled faults until told the run is done or the deadline passes; resumes any
/// worker still paused at the end. Returns what was done.
pub(crate) async fn inject_faults(
    stack: Arc<Stack>,
    options: Options,
    t0: Instant,
    deadline: Instant,
    mut done: watch::Receiver<bool>,
    bar: ProgressBar,
) -> Vec<FaultRecord> {
    let mut records: Vec<FaultRecord> = Vec::new();
    let mut rng = SplitMix::new(options.seed ^ 0xFA_0175);
    let mut next_kill = options.kill_every_secs.filter(|t| *t > 0.0);
    let mut next_pause = options.pause_every_secs.filter(|t| *t > 0.0);
    let (mut kills, mut pauses) = (0, 0);
    let mut redis_at = options.restart_redis_at.clone();
    let mut gateway_at = options.restart_gateway_at.clone();
    redis_at.sort_by(|a, b| b.total_cmp(a));
    gateway_at.sort_by(|a, b| b.total_cmp(a));
    let mut resumes: Vec<(f64, String)> = Vec::new();
    let record = |records: &mut Vec<FaultRecord>, kind: &str, target: &str, detail: String, ok: bool| {
        records.push(FaultRecord { at_s: since(t0), kind: kind.into(), target: target.into(), detail, ok });
        bar.set_message(format!("faults: {} (last: {kind} {target})", records.len()));
    };
    while !*done.borrow() && Instant::now() < deadline {
        let now = since(t0);
        let (due, later): (Vec<_>, Vec<_>) = resumes.drain(..).partition(|(at, _)| *at <= now);
        resumes = later;
        for (_, id) in due {
            let result = stack.signal_worker(&id, false);
            record(
                &mut records,
                "resume_worker",
                &id,
                result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                result.is_ok(),
            );
        }
        if let Some(at) = next_kill.filter(|at| *at <= now) {
            let running = stack.running_workers();
            if running.is_empty() {
                record(&mut records, "kill_worker", "-", "no running worker to kill".into(), false);
            } else {
                let victim = running[rng.below(running.len())].clone();
                let (detail, ok) = match stack.kill_worker(&victim) {
                    Err(e) => (e.to_string(), false),
                    Ok(()) => {
                        let replacement = match options.replace {
                            Replace::SameId => Some(victim.clone()),
                            Replace::NewId => Some(stack.new_worker_id()),
                            Replace::None => None,
                        };
                        match replacement {
                            None => ("SIGKILL, not replaced".to_string(), true),
                            Some(id) => match stack.start_worker(&id) {
                                Ok(()) => (format!("SIGKILL, replaced by {id} ({})", options.replace.as_str()), true),
                                Err(e) => (format!("SIGKILL, replacement {id} failed: {e}"), false),
                            },
                        }
                    }
                };
                record(&mut records, "kill_worker", &victim, detail, ok);
            }
            kills += 1;
            next_kill =
                options.max_kills.is_none_or(|max| kills < max).then(|| at + options.kill_every_secs.unwrap_or(1.0));
        }
        if let Some(at) = next_pause.filter(|at| *at <= now) {
            let running = stack.running_workers();
            // Keep one worker running: pausing the last one only measures the pause.
            if running.len() > 1 {
                let victim = running[rng.below(running.len())].clone();
                let result = stack.signal_worker(&victim, true);
                if result.is_ok() {
                    resumes.push((now + options.pause_for_secs, victim.clone()));
                }
                let detail = result
                    .as_ref()
                    .map_or_else(ToString::to_string, |_| format!("SIGSTOP for {} s", options.pause_for_secs));
                record(&mut records, "pause_worker", &victim, detail, result.is_ok());
            }
            pauses += 1;
            next_pause =
                options.max_pauses.is_none_or(|max| pauses < max).then(|| at + options.pause_every_secs.unwrap_or(1.0));
        }
        if redis_at.last().is_some_and(|at| *at <= now) {
            redis_at.pop();
            let started = Instant::now();
            let result = stack.restart_redis().await;
            let detail = match &result {
                Ok(()) => format!("SIGKILL, back in {} ms (AOF reloaded)", started.elapsed().as_millis()),
                Err(e) => e.to_string(),
            };
            record(&mut records, "restart_redis", "redis", detail, result.is_ok());
        }
        if gateway_at.last().is_some_and(|at| *at <= now) {
            gateway_at.pop();
            let started = Instant::now();
            let result = stack.restart_gateway().await;
            let detail = match &result {
                Ok(()) => format!("SIGKILL, answering again in {} ms", started.elapsed().as_millis()),
                Err(e) => e.to_string(),
            };
            record(&mut records, "restart_gateway", "gateway", detail, result.is_ok());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = done.changed() => {}
        }
    }
    for (_, id) in resumes {
        let result = stack.signal_worker(&id, false);
        record(
            &mut records,
            "resume_worker",
            &id,
            result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
            result.is_ok(),
        );
    }
    records
}
