//! The reliability mix (`--workload mix`): bring the stack up, submit the planned jobs, inject
//! faults, wait (with verifiers, for each verdict), check every output, report. The byzantine
//! mode runs the same mix with adversaries among the workers ([`execute`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use shoal_jobs::{Job, JobState, Quarantine};
use shoal_testkit::ProcessStack;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::adversary::quarantined;
use crate::api::{Api, JobRead, Submitted};
use crate::chaos::faults::inject_faults;
use crate::chaos::options::Options;
use crate::chaos::setup::{drain, Setup};
use crate::error::{LoadtestError, Result};
use crate::figures::{completed_outputs, Report};
use crate::workload::{prepare, PlannedJob, SplitMix};

/// Job reads per polling round, and at once.
const POLL_BATCH: usize = 256;
const POLL_PARALLEL: usize = 16;
/// How often a progress line is printed when there are no progress bars.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(10);
/// Pause between polling rounds.
const POLL_PAUSE: Duration = Duration::from_millis(100);
/// Time allowed after the deadline for the last reads and the listing that finds duplicates.
const FINAL_CHECK: Duration = Duration::from_secs(60);

/// How one planned job ended up.
#[derive(Debug)]
enum Final {
    /// Terminal record.
    Done(Box<Job>),
    /// Not terminal at the end: its last state (`queued`, `running`, `missing`, `unreadable`).
    Lost(String),
}

/// What a run of the mix leaves for a closer look (the byzantine report).
pub struct MixRun {
    /// The run's report.
    pub report: Report,
    /// The planned jobs, in submission order.
    pub planned: Vec<PlannedJob>,
    /// Each finished job's last record, by its place in [`MixRun::planned`].
    pub finished: BTreeMap<usize, Job>,
    /// The workers quarantined by the end, read before Redis stopped.
    pub quarantined: BTreeMap<String, Quarantine>,
}

/// Runs the reliability mix `options` describe from `setup`; `command` is recorded in the report.
pub async fn run(options: &Options, command: String, setup: Setup) -> Result<Report> {
    Ok(execute(options, command, setup, |_| Ok(())).await?.report)
}

/// Runs the mix with `start_more` (further processes: adversaries) started right after the
/// stack's own workers and verifiers.
pub async fn execute(
    options: &Options,
    command: String,
    setup: Setup,
    start_more: impl FnOnce(&ProcessStack) -> Result<()>,
) -> Result<MixRun> {
    let Setup { started_at_unix_s, deadline, .. } = setup;
    let mut workload =
        prepare(&setup.store, &setup.programs, options.jobs, options.inputs, options.huge_every, options.seed).await?;
    if let Some(mode) = options.verification {
        for job in &mut workload.jobs {
            job.spec["verification"] = json!({"mode": mode.as_str()});
        }
    }

    let stack = Arc::new(setup.start_stack(options).await?);
    start_more(&stack)?;
    let api = Api::new(stack.gateway_url(), stack.api_key())?;

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
    let accepted: HashSet<&str> = submissions.iter().filter_map(|s| s.as_ref().and_then(Submitted::id)).collect();
    let final_deadline = Instant::now() + FINAL_CHECK;
    let listed = api.all_job_ids(final_deadline).await;
    let quarantined = if options.verifiers > 0 { quarantined(stack.redis_url()).await? } else { BTreeMap::new() };
    stack.shutdown();

    let base = Report::empty(command, started_at_unix_s, workload.jobs.len());
    let mut report = Report::of_faulted_run(base, duration_s, ended_early, faults, stack.workers_reclaim());
    let (mut first_created, mut last_finished) = (u64::MAX, 0u64);
    let mut finished = BTreeMap::new();
    for (n, (planned, submission)) in workload.jobs.iter().zip(&submissions).enumerate() {
        *report.jobs_by_kind.entry(planned.kind.to_string()).or_insert(0) += 1;
        let Some(submission) = submission else {
            report.not_submitted += 1;
            *report.not_submitted_reasons.entry("not attempted before the deadline".into()).or_insert(0) += 1;
            continue;
        };
        if !report.count_submission(submission) {
            continue;
        }
        match finals.remove(&n) {
            Some(Final::Done(job)) => {
                let latency = job.updated_at_ms.saturating_sub(job.created_at_ms);
                report.latencies_ms.push(latency as f64);
                first_created = first_created.min(job.created_at_ms);
                last_finished = last_finished.max(job.updated_at_ms);
                let outputs = completed_outputs(&job);
                if outputs.len() > 1 {
                    report.duplicates += 1;
                    report.example(format!(
                        "job {} (#{n}) completed with {} different outputs: {outputs:?}",
                        job.id,
                        outputs.len()
                    ));
                }
                report.reexecuted += usize::from(job.executions.len() > 1);
                check_terminal(&mut report, n, planned, &job, options.verifiers > 0);
                finished.insert(n, *job);
            }
            Some(Final::Lost(state)) => {
                report.lost += 1;
                *report.lost_by_state.entry(state.clone()).or_insert(0) += 1;
                let id = submission.id().unwrap_or("?");
                report.example(format!("job {id} (#{n}, {}) lost: last state {state}", planned.kind));
            }
            None => {
                report.lost += 1;
                *report.lost_by_state.entry("never polled".into()).or_insert(0) += 1;
            }
        }
    }
    report.count_unreturned(listed, &accepted);
    report.summarise(report.latencies_ms.len(), first_created, last_finished);
    Ok(MixRun { report, planned: workload.jobs, finished, quarantined })
}

/// Whether the poller is done with `job`: it is terminal and, when `verifying`, final.
fn finished(job: &Job, verifying: bool) -> bool {
    if verifying {
        job.is_final()
    } else {
        job.state.is_terminal()
    }
}

/// Counts a terminal job as succeeded (expected CID), wrong, or failed by reason; when
/// `verifying`, its acceptance too, and whether a wrong result was accepted.
fn check_terminal(report: &mut Report, n: usize, planned: &PlannedJob, job: &Job, verifying: bool) {
    if let Some(acceptance) = job.acceptance().filter(|_| verifying) {
        *report.acceptance.entry(acceptance.to_string()).or_insert(0) += 1;
        if acceptance.is_accepted() {
            report.accepted += 1;
            if job.result.as_ref().is_some_and(|r| *r.output.cid() != planned.expected_output) {
                report.wrong_accepted += 1;
                report.example(format!("job {} (#{n}) ACCEPTED with a wrong output", job.id));
            }
        }
    }
    match job.state {
        JobState::Succeeded => match &job.result {
            Some(result) if *result.output.cid() == planned.expected_output => report.succeeded += 1,
            Some(result) => {
                report.wrong += 1;
                report.example(format!(
                    "job {} (#{n}, {}) output {} but expected {}",
                    job.id, planned.kind, result.output, planned.expected_output
                ));
            }
            None => {
                report.wrong += 1;
                report.example(format!("job {} (#{n}) succeeded without a result", job.id));
            }
        },
        JobState::Failed => {
            report.failed += 1;
            let reason = job.failure.as_ref().map_or_else(|| "unknown".to_string(), |f| f.reason.to_string());
            *report.failed_by_reason.entry(reason).or_insert(0) += 1;
            let message = job.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default();
            report.example(format!("job {} (#{n}, {}) failed: {message}", job.id, planned.kind));
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
            if let Some(id) = submitted.id() {
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
                if finished(&job, options.verifiers > 0) {
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
