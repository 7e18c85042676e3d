//! Jobs fanned out over a directory ([`shoal_jobs::FanOut`]): splitting one into tasks, and
//! gathering the tasks' outputs when they have all finished.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use shoal_content::unixfs::{self, ImportOptions, Link};
use shoal_jobs::{
    keys, now_ms, ContentId, Created, Execution, ExecutionOutcome, ExecutionResult, Failure, FailureReason, InputSpec,
    Job, JobState, StoreError, TaskOutcome,
};
use tracing::{info, warn};

use crate::execute::{Executor, Settled};
use crate::retry::with_retries;

/// Task records created at once while fanning out.
const CREATING_AT_ONCE: usize = 32;

/// Fanned-out jobs a gathering round visits.
const JOBS_PER_ROUND: usize = 50;

impl Executor {
    /// Fans `job` out: one task per selected entry of its directory input, each created (once,
    /// however often this runs) and queued on the shard of its own CID. The job stays running
    /// until [`gather`] finishes it; its stream entry can be acknowledged.
    pub(crate) async fn fan_out(&self, job: &Job, mut execution: Execution) -> Result<Settled, StoreError> {
        let fan_out = job.spec.fan_out.as_ref().expect("called for fan-out jobs only");
        let input = &job.spec.inputs[fan_out.input];
        let listed = tokio::time::timeout(self.fetch_timeout, unixfs::list(self.chain.as_ref(), input.cid.cid())).await;
        let entries = match listed {
            Ok(Ok(entries)) => entries,
            failed => {
                let message = match failed {
                    Ok(Err(e)) => format!("listing {} to fan out over: {e}", input.cid),
                    _ => format!("listing {} to fan out over took longer than {:?}", input.cid, self.fetch_timeout),
                };
                execution.finished_at_ms = Some(now_ms());
                execution.outcome = Some(ExecutionOutcome::Failed(Failure {
                    reason: FailureReason::InputUnavailable,
                    message,
                    stderr: None,
                    fuel_consumed: None,
                }));
                with_retries("finish_execution", || self.jobs.finish_execution(&job.id, &execution)).await?;
                return Ok(Settled::Done);
            }
        };
        let selected: Vec<_> = entries.into_iter().filter(|entry| fan_out.selects(&entry.name)).collect();
        let tasks: Vec<(String, String)> = futures::stream::iter(selected)
            .map(|entry| async move {
                let mut spec = job.spec.clone();
                spec.fan_out = None;
                spec.webhook = None;
                spec.inputs[fan_out.input] =
                    InputSpec { cid: ContentId(entry.cid), path: input.path.clone(), name: Some(entry.name.clone()) };
                let shard = self.router.route(&spec);
                // The key makes creation exactly-once per entry, so a fan-out re-run after a
                // crash finds the tasks it already made.
                let key = format!("fanout:{}:{}", job.id, entry.name);
                let task = match with_retries("create task", || self.jobs.create(&spec, shard, Some(&key))).await? {
                    Created::New(task) => {
                        self.jobs.enqueue(&self.queue, &task.id, shard).await?;
                        task
                    }
                    Created::Existing(task) => {
                        if task.state == JobState::Queued && !self.jobs.is_enqueued(&task.id).await? {
                            self.jobs.enqueue(&self.queue, &task.id, task.shard).await?;
                        }
                        task
                    }
                };
                Ok::<_, StoreError>((entry.name, task.id))
            })
            .buffered(CREATING_AT_ONCE)
            .try_collect()
            .await?;
        with_retries("record tasks", || self.fanouts.record(&job.id, &tasks, &execution)).await?;
        info!(job = %job.id, tasks = tasks.len(), "fanned out");
        Ok(Settled::Done)
    }
}

/// Runs gathering rounds every `every` for as long as the worker runs; one worker gathers at a
/// time.
pub(crate) async fn gatherer(executor: std::sync::Arc<Executor>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = gather(&executor, every * 4).await {
            warn!(error = %e, "gathering finished tasks failed; trying again next round");
        }
    }
}

/// One gathering round, if this worker gets the lock (held up to `hold`): counts the newly
/// finished tasks of waiting fanned-out jobs, and finishes each job whose tasks all have.
/// Returns how many jobs it finished.
pub async fn gather(executor: &Executor, hold: Duration) -> Result<usize, StoreError> {
    if !executor.jobs.take_lock(&keys::fanout_lock(), &executor.worker, hold).await? {
        return Ok(0);
    }
    let mut finished = 0;
    for id in executor.fanouts.waiting(JOBS_PER_ROUND).await? {
        let unfinished = executor.fanouts.unfinished(&id).await?;
        let ids: Vec<String> = unfinished.iter().map(|(_, task)| task.clone()).collect();
        let outcomes = executor.fanouts.outcomes(&ids).await?;
        let done: Vec<(String, String, TaskOutcome)> = unfinished
            .into_iter()
            .zip(outcomes)
            .filter(|(_, outcome)| *outcome != TaskOutcome::Unfinished)
            .map(|((name, task), outcome)| (name, task, outcome))
            .collect();
        executor.fanouts.record_finished(&id, &done).await?;
        let Some(summary) = executor.fanouts.summary(&id).await? else { continue };
        if summary.pending() > 0 {
            continue;
        }
        match finish(executor, &id, summary.total, summary.failed).await {
            Ok(()) => finished += 1,
            Err(e) => warn!(job = %id, error = %e, "could not finish a fanned-out job; trying again next round"),
        }
    }
    Ok(finished)
}

/// Gathers the outputs of job `id`'s succeeded tasks into one directory, named as the input
/// entries, and settles the job: succeeded if every task did, else failed with `tasks_failed`.
async fn finish(executor: &Executor, id: &str, total: u64, failed: u64) -> Result<(), GatherError> {
    let mut links = Vec::new();
    for (name, output) in executor.fanouts.outputs(id).await? {
        let info = unixfs::stat(executor.chain.as_ref(), output.cid()).await.map_err(GatherError::Content)?;
        links.push(Link { name, cid: *output.cid(), dag_size: info.dag_size });
    }
    let options = ImportOptions::default();
    let output = unixfs::import_links(links, &options, executor.store.as_ref()).await.map_err(GatherError::Content)?;
    let empty = unixfs::import_reader(&Bytes::new()[..], &options, executor.store.as_ref())
        .await
        .map_err(GatherError::Content)?;
    let Some(mut execution) = executor.fanouts.execution(id).await? else {
        return Err(GatherError::Store(StoreError::Corrupt {
            key: keys::FanOutKeys::of(id).summary,
            reason: "fanned out without an execution".into(),
        }));
    };
    execution.finished_at_ms = Some(now_ms());
    execution.outcome = Some(if failed == 0 {
        ExecutionOutcome::Completed(ExecutionResult {
            exit_code: 0,
            output: ContentId(output.root),
            stdout: ContentId(empty.root),
            stderr: ContentId(empty.root),
            fuel_consumed: 0,
            fetch_ms: 0,
            run_ms: 0,
            inputs_cached: 0,
        })
    } else {
        ExecutionOutcome::Failed(Failure {
            reason: FailureReason::TasksFailed,
            message: format!(
                "{failed} of {total} tasks failed; the {} that succeeded are gathered in {}",
                total - failed,
                output.root
            ),
            stderr: None,
            fuel_consumed: None,
        })
    });
    let state = executor.jobs.finish_execution(id, &execution).await?;
    executor.fanouts.finish(id, Some(&ContentId(output.root))).await?;
    info!(job = id, %state, total, failed, "fanned-out job finished");
    Ok(())
}

/// Why gathering one job failed.
#[derive(Debug, thiserror::Error)]
enum GatherError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("building the output directory: {0}")]
    Content(shoal_content::ContentError),
}
