//! Fanned-out jobs ([`shoal_jobs::FanOut`]): splitting one into tasks — over a directory's
//! entries or the job's inputs, one file per task or batched by shard — and gathering the
//! tasks' outputs when they have all finished.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use shoal_content::unixfs::{self, ImportOptions, Link};
use shoal_content::ContentError;
use shoal_jobs::{
    keys, now_ms, ApiKeys, ContentId, Created, Execution, ExecutionOutcome, ExecutionResult, Failure, FailureReason,
    FanOut, FanOutOver, FanOutStore, FinishedTask, Idempotency, InputSpec, Job, JobSpec, JobState, JobStore, Notice,
    ShardQueue, ShardRouter, Standing, StoreError, Task, TaskOf, TaskOutcome, VerificationPolicy,
};
use tracing::{info, warn};

use crate::execute::{Executor, Settled};
use shoal_jobs::with_retries;

/// Task records created at once while fanning out.
const CREATING_AT_ONCE: usize = 32;

/// Idle fanned-out jobs a gathering round reads in full (see [`RECONCILE_AFTER`]).
const JOBS_PER_ROUND: usize = 50;

/// Notices a gathering round reads from each tag's gatherable set.
const NOTICES_PER_TAG: usize = 256;

/// How long a waiting job may go without a task counted before a round reads all its
/// unfinished tasks, as every round did before notices. A safety net, not the way tasks are
/// counted: it catches tasks that could never give notice (made before task records named their
/// job) and any notice lost to a path not foreseen; it is the only read that grows with a job's
/// unfinished tasks, so it is rare (a job whose tasks keep finishing never needs it).
const RECONCILE_AFTER: Duration = Duration::from_secs(300);

/// Batch tasks' output directories listed at once while gathering.
const LISTING_AT_ONCE: usize = 16;

/// One file a job fans out over: a directory entry or an input, as a task mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FanFile {
    /// Its name: where it is mounted under its path, and its output entry.
    name: String,
    /// The input a task gets for it (named `name`).
    input: InputSpec,
}

/// The tasks of a fan-out over `files`: (shard, files) each. One file per task, on the shard of
/// its CID, with `batch` 1; else files whose CIDs share a shard grouped in name order into tasks
/// of up to `batch`, on that shard. Tasks come in order of their first file's name.
fn plan(files: Vec<FanFile>, batch: u32, router: &ShardRouter) -> Vec<(u32, Vec<FanFile>)> {
    let mut by_shard: BTreeMap<u32, Vec<FanFile>> = BTreeMap::new();
    for file in files {
        by_shard.entry(router.shard_of(file.input.cid.cid())).or_default().push(file);
    }
    let mut tasks: Vec<(u32, Vec<FanFile>)> = Vec::new();
    for (shard, mut files) in by_shard {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut files = files.into_iter().peekable();
        while files.peek().is_some() {
            tasks.push((shard, files.by_ref().take(batch.max(1) as usize).collect()));
        }
    }
    tasks.sort_by(|a, b| a.1[0].name.cmp(&b.1[0].name));
    tasks
}

/// The spec of a task over `files`: the job's, with the fanned-out input(s) replaced by the
/// task's files, and no fan-out or webhook of its own.
fn task_spec(spec: &JobSpec, fan_out: &FanOut, files: &[FanFile]) -> JobSpec {
    let mut task = spec.clone();
    task.fan_out = None;
    task.notify = None;
    let inputs = files.iter().map(|file| file.input.clone());
    match fan_out.over {
        FanOutOver::Directory => {
            task.inputs.splice(fan_out.input..=fan_out.input, inputs);
        }
        FanOutOver::Inputs => task.inputs = inputs.collect(),
    }
    task
}

/// The tasks of a fan-out to create and record.
struct MakingTasks {
    jobs: JobStore,
    queue: ShardQueue,
    fanouts: FanOutStore,
    /// The plan: each task's shard and files.
    tasks: Vec<(u32, Vec<FanFile>)>,
}

impl MakingTasks {
    /// Creates each task (once, however often this runs) and queues it, records them all, and
    /// cancels them if the job was cancelled meanwhile.
    async fn run(self, job: Job, execution: Execution) -> Result<(), StoreError> {
        let fan_out = job.spec.fan_out.as_ref().expect("called for fan-out jobs only");
        let (jobs, queue, job_ref) = (&self.jobs, &self.queue, &job);
        let tasks: Vec<Task> = futures::stream::iter(self.tasks)
            .map(|(shard, files)| async move {
                let spec = task_spec(&job_ref.spec, fan_out, &files);
                let key = files[0].name.clone();
                // The key makes creation exactly-once per task, so a fan-out re-run after a
                // crash finds the tasks it already made (the plan is a function of the files).
                let idempotency = format!("fanout:{}:{key}", job_ref.id);
                let of = TaskOf { job: &job_ref.id, key: &key };
                let submit = || {
                    let idempotency = Some(Idempotency::Internal(&idempotency));
                    jobs.submit_task(queue, &spec, shard, &job_ref.tenant, idempotency, of)
                };
                let (Created::New(task) | Created::Existing(task)) = with_retries("create task", submit).await?;
                Ok::<_, StoreError>(Task { key, job: task.id, files: files.into_iter().map(|f| f.name).collect() })
            })
            .buffered(CREATING_AT_ONCE)
            .try_collect()
            .await?;
        with_retries("record tasks", || self.fanouts.record(&job.id, &tasks, fan_out.batch, &execution)).await?;
        info!(job = %job.id, tasks = tasks.len(), batch = fan_out.batch, "fanned out");
        let state = with_retries("state", || self.jobs.states(std::slice::from_ref(&job.id))).await?;
        if state.first() == Some(&Some(JobState::Cancelled)) {
            for task in &tasks {
                let why = format!("its fanned-out job {} was cancelled", job.id);
                with_retries("cancel task", || self.jobs.cancel(&task.job, &why)).await?;
            }
        }
        Ok(())
    }
}

impl Executor {
    /// Fans `job` out: tasks over its selected directory entries or its inputs (see [`plan`]),
    /// each created (once, however often this runs) and queued on its shard. The job stays
    /// running until [`gather`] finishes it; its stream entry can be acknowledged.
    pub(crate) async fn fan_out(&self, job: &Job, execution: Execution) -> Result<Settled, StoreError> {
        let fan_out = job.spec.fan_out.as_ref().expect("called for fan-out jobs only");
        let files = match fan_out.over {
            FanOutOver::Inputs => job
                .spec
                .inputs
                .iter()
                .map(|input| FanFile { name: input.name.clone().unwrap_or_default(), input: input.clone() })
                .collect(),
            FanOutOver::Directory => match self.list_directory(&job.spec, fan_out).await {
                Ok(files) => files,
                Err((reason, message)) => return self.fail_fan_out(job, execution, reason, message).await,
            },
        };
        let keys = ApiKeys::new(self.jobs.connection());
        let quotas = with_retries("quotas", || keys.quotas(&job.tenant)).await?;
        if let Some(max) = quotas.max_fan_out.filter(|&max| files.len() as u64 > max) {
            let message = format!(
                "the fan-out is over {} files; tenant {} may fan out over {max} at most",
                files.len(),
                job.tenant
            );
            return self.fail_fan_out(job, execution, FailureReason::QuotaExceeded, message).await;
        }
        // Tasks are the tenant's jobs too: they must fit its outstanding quota, as submissions do.
        if let Some(max) = quotas.max_outstanding {
            let outstanding = with_retries("outstanding", || self.jobs.outstanding(&job.tenant)).await?;
            if outstanding + files.len() as u64 > max {
                let message = format!(
                    "the fan-out's {} tasks and the {outstanding} jobs of tenant {} queued or running pass its limit of {max}",
                    files.len(),
                    job.tenant
                );
                return self.fail_fan_out(job, execution, FailureReason::QuotaExceeded, message).await;
            }
        }
        // On a task of its own: a cancel stops this delivery at once, and tasks made but not yet
        // recorded would run unseen by anyone who could cancel them.
        let making = MakingTasks {
            jobs: self.jobs.clone(),
            queue: self.queue.clone(),
            fanouts: self.fanouts.clone(),
            tasks: plan(files, fan_out.batch, &self.router),
        };
        let job = job.clone();
        match tokio::spawn(making.run(job, execution)).await {
            Ok(made) => made.map(|()| Settled::Done),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Fails fanned-out `job` before it made any task.
    async fn fail_fan_out(
        &self,
        job: &Job,
        mut execution: Execution,
        reason: FailureReason,
        message: String,
    ) -> Result<Settled, StoreError> {
        execution.finished_at_ms = Some(now_ms());
        execution.outcome =
            Some(ExecutionOutcome::Failed(Failure { reason, message, stderr: None, fuel_consumed: None }));
        with_retries("finish_execution", || self.jobs.finish_execution(&job.id, &execution)).await?;
        Ok(Settled::Done)
    }

    /// The selected entries of the directory input to fan out over, each as the input a task
    /// mounts it by: under its name at the directory's path. Errs with the failure's reason and
    /// message: [`FailureReason::InvalidInput`] for an input that is not a directory,
    /// [`FailureReason::InputUnavailable`] for one that could not be read.
    async fn list_directory(&self, spec: &JobSpec, fan_out: &FanOut) -> Result<Vec<FanFile>, (FailureReason, String)> {
        let index = fan_out.input;
        let input = &spec.inputs[index];
        let listed = tokio::time::timeout(self.fetch_timeout, unixfs::list(self.chain.as_ref(), input.cid.cid())).await;
        let entries = match listed {
            Ok(Ok(entries)) => entries,
            Ok(Err(ContentError::WrongKind { found, .. })) => {
                return Err((
                    FailureReason::InvalidInput,
                    format!(
                        "fan_out needs a directory input, and inputs[{index}] ({}) is a UnixFS {found}; \
                         to run once per input, fan out over the inputs instead (\"fan_out\": {{\"over\": \"inputs\"}})",
                        input.cid
                    ),
                ))
            }
            Ok(Err(e)) => {
                return Err((FailureReason::InputUnavailable, format!("listing {} to fan out over: {e}", input.cid)))
            }
            Err(_) => {
                return Err((
                    FailureReason::InputUnavailable,
                    format!("listing {} to fan out over took longer than {:?}", input.cid, self.fetch_timeout),
                ))
            }
        };
        Ok(entries
            .into_iter()
            .filter(|entry| fan_out.selects(&entry.name))
            .map(|entry| FanFile {
                input: InputSpec::new(ContentId(entry.cid), input.path.clone(), Some(entry.name.clone())),
                name: entry.name,
            })
            .collect())
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

/// One gathering round, if this worker gets the lock (held up to `hold`): counts the files of
/// the tasks noticed as countable (see [`shoal_jobs::Notice`]), reads in full the waiting jobs
/// idle for [`RECONCILE_AFTER`], and finishes each job whose tasks all have. Returns how many
/// jobs it finished.
pub(crate) async fn gather(executor: &Executor, hold: Duration) -> Result<usize, StoreError> {
    if !executor.jobs.take_lock(keys::Lock::FanOut, &executor.worker, hold).await? {
        return Ok(0);
    }
    // Nothing waits (the usual case): one command, not one per tag.
    if !executor.fanouts.any_waiting().await? {
        return Ok(0);
    }
    let mut noticed: BTreeMap<String, Vec<Notice>> = BTreeMap::new();
    for notice in executor.fanouts.notices(NOTICES_PER_TAG).await? {
        noticed.entry(notice.job.clone()).or_default().push(notice);
    }
    let ids: Vec<String> = noticed.keys().cloned().collect();
    let standings = executor.fanouts.standing(&ids).await?;
    let mut finished = 0;
    let mut stale = Vec::new();
    for ((id, notices), standing) in noticed.into_iter().zip(standings) {
        match standing {
            Standing::Waiting => finished += usize::from(gather_job(executor, &id, Some(notices)).await),
            Standing::Gathered => stale.extend(notices),
            // Counted once its job has recorded its tasks (a later round).
            Standing::Unrecorded => {}
        }
    }
    executor.fanouts.forget(&stale).await?;
    let before = now_ms().saturating_sub(RECONCILE_AFTER.as_millis() as u64);
    for id in executor.fanouts.idle(before, JOBS_PER_ROUND).await? {
        finished += usize::from(gather_job(executor, &id, None).await);
    }
    Ok(finished)
}

/// [`gather_one`], its trouble logged: one job's trouble is that job's, and the others are
/// gathered all the same. Whether it finished.
async fn gather_job(executor: &Executor, id: &str, notices: Option<Vec<Notice>>) -> bool {
    match gather_one(executor, id, notices).await {
        Ok(finished) => finished,
        Err(e) => {
            warn!(job = %id, error = %e, "could not gather a fanned-out job; trying again next round");
            // Its tasks may all be counted, so no notice would bring it back: due at once.
            if let Err(e) = executor.fanouts.touch(id, 0).await {
                warn!(job = %id, error = %e, "could not mark a fanned-out job due again");
            }
            false
        }
    }
}

/// Counts the newly finished tasks of fanned-out job `id` — those `notices` name, or with
/// `None` all its unfinished ones — and finishes the job if none is left (at once for a fan-out
/// over no files); whether it finished. A notice is removed only once its task is counted (or
/// found counted already, or no longer finished: it gives notice again when it is).
async fn gather_one(executor: &Executor, id: &str, notices: Option<Vec<Notice>>) -> Result<bool, GatherError> {
    let job = executor.jobs.get(id).await?;
    let cancelled = job.as_ref().is_some_and(|job| job.state == JobState::Cancelled);
    let unfinished = match &notices {
        // Cancelling a cancelled job's tasks takes them all.
        Some(notices) if !cancelled => {
            let keys: Vec<String> = notices.iter().map(|notice| notice.key.clone()).collect();
            executor.fanouts.noticed(id, &keys).await?
        }
        _ => executor.fanouts.unfinished(id).await?,
    };
    let ids: Vec<String> = unfinished.tasks.iter().map(|task| task.job.clone()).collect();
    // Tasks made while the job was being cancelled are cancelled here.
    if cancelled {
        for task in &ids {
            executor.jobs.cancel(task, &format!("its fanned-out job {id} was cancelled")).await?;
        }
    }
    // Where the job goes to the verifier once gathered, unless its policy asks for none.
    let verify_on = job.filter(|job| job.spec.verification != VerificationPolicy::None).map(|job| job.shard);
    let outcomes = executor.fanouts.outcomes(&ids, verify_on.is_some()).await?;
    let batched = unfinished.batch > 1;
    let counted: Vec<Result<Option<FinishedTask>, String>> =
        futures::stream::iter(unfinished.tasks.into_iter().zip(outcomes))
            .map(|(task, outcome)| async move {
                match outcome {
                    TaskOutcome::Unfinished => Ok(None),
                    TaskOutcome::Failed(failure) => Ok(Some(task.failed(&failure))),
                    TaskOutcome::Succeeded(output) if !batched => Ok(Some(task.succeeded_whole(output))),
                    TaskOutcome::Succeeded(output) => match list_output(executor, &output).await {
                        Ok(written) => Ok(Some(task.succeeded_batch(&written))),
                        // Counted in a later round, once its output can be read: its notice stays.
                        Err(e) => {
                            warn!(job = id, task = %task.job, error = %e, "cannot list a batch task's output yet");
                            Err(task.key)
                        }
                    },
                }
            })
            .buffered(LISTING_AT_ONCE)
            .collect()
            .await;
    let unlisted: Vec<&String> = counted.iter().filter_map(|c| c.as_ref().err()).collect();
    let done: Vec<FinishedTask> = counted.iter().filter_map(|c| c.as_ref().ok().cloned().flatten()).collect();
    executor.fanouts.record_finished(id, &done).await?;
    if let Some(notices) = &notices {
        let counted: Vec<Notice> = notices.iter().filter(|n| !unlisted.contains(&&n.key)).cloned().collect();
        executor.fanouts.forget(&counted).await?;
    }
    executor.fanouts.touch(id, now_ms()).await?;
    let Some(summary) = executor.fanouts.summary(id).await? else { return Ok(false) };
    if summary.pending() > 0 {
        return Ok(false);
    }
    finish(executor, id, summary.total, summary.failed, verify_on).await?;
    Ok(true)
}

/// The top-level entries of a batch task's output directory.
async fn list_output(executor: &Executor, output: &ContentId) -> Result<Vec<(String, ContentId)>, GatherError> {
    let listed = tokio::time::timeout(executor.fetch_timeout, unixfs::list(executor.chain.as_ref(), output.cid()))
        .await
        .map_err(|_| GatherError::Slow(*output, executor.fetch_timeout))?
        .map_err(GatherError::Content)?;
    Ok(listed.into_iter().map(|entry| (entry.name, ContentId(entry.cid))).collect())
}

/// The directory of job `id`'s succeeded files' outputs, named as the files, built into the
/// block store: the gathered output, the same whoever builds it.
pub(crate) async fn gathered(executor: &Executor, id: &str) -> Result<ContentId, GatherError> {
    let mut links = Vec::new();
    for (name, output) in executor.fanouts.outputs(id).await? {
        let info = unixfs::stat(executor.chain.as_ref(), output.cid()).await.map_err(GatherError::Content)?;
        links.push(Link { name, cid: *output.cid(), dag_size: info.dag_size });
    }
    let options = ImportOptions::default();
    let output = unixfs::import_links(links, &options, executor.store.as_ref()).await.map_err(GatherError::Content)?;
    Ok(ContentId(output.root))
}

/// Gathers the outputs of job `id`'s succeeded files into one directory, named as the files,
/// and settles the job: succeeded if every file did, else failed with `tasks_failed`. A
/// succeeded one goes to the verifier, which gathers again to check, on shard `verify_on`'s
/// stream (`None`: its policy asks for no verification).
async fn finish(
    executor: &Executor,
    id: &str,
    total: u64,
    failed: u64,
    verify_on: Option<u32>,
) -> Result<(), GatherError> {
    let output = gathered(executor, id).await?;
    let options = ImportOptions::default();
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
            output,
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
                "{failed} of {total} files failed; the {} that succeeded are gathered in {}",
                total - failed,
                output
            ),
            stderr: None,
            fuel_consumed: None,
        })
    });
    let state = executor.jobs.finish_execution(id, &execution).await?;
    executor.fanouts.finish(id, Some(&output)).await?;
    if let Some(shard) = verify_on.filter(|_| state == JobState::Succeeded) {
        executor.queue.enqueue_verification(shard, id).await?;
    }
    info!(job = id, %state, total, failed, "fanned-out job finished");
    Ok(())
}

/// Why gathering a fanned-out job failed.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task's output could not be read, or the directory not built.
    #[error("reading task outputs or building the output directory: {0}")]
    Content(shoal_content::ContentError),
    /// Listing a batch task's output took too long.
    #[error("listing batch task output {0} took longer than {1:?}")]
    Slow(ContentId, Duration),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use shoal_jobs::{Fsync, RedisServer, TaskSummary};

    /// A worker's executor over a private Redis, logged in as a worker, and an admin
    /// connection to look on with.
    pub(crate) async fn executor(dir: &std::path::Path) -> (RedisServer, Executor, redis::aio::MultiplexedConnection) {
        let server = RedisServer::start(&dir.join("redis"), Fsync::EverySec).unwrap();
        let url = server.url_for(keys::RedisRole::Worker);
        let executor = Executor::open(&crate::WorkerConfig::new("w1", &url, &dir.join("w1"))).await.unwrap();
        let admin = redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        (server, executor, admin)
    }

    /// A spec whose program is never run; `verification` is its policy's JSON.
    pub(crate) fn spec(verification: &str) -> JobSpec {
        let json = format!(
            r#"{{"program":"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4","verification":{verification}}}"#
        );
        JobSpec::from_json(json.as_bytes()).unwrap()
    }

    /// A fanned-out job over `n` one-file tasks (not recorded as fanned out yet): its id and
    /// its tasks.
    async fn fanned_out(executor: &Executor, n: usize, task_spec: &JobSpec) -> (String, Vec<Task>) {
        let tenant: shoal_jobs::Tenant = "acme".parse().unwrap();
        let Created::New(job) = executor.jobs.create(&spec(r#"{"mode":"none"}"#), 0, &tenant, None).await.unwrap()
        else {
            panic!("a new job")
        };
        let mut tasks = Vec::new();
        for i in 0..n {
            let key = format!("f{i:04}");
            let of = TaskOf { job: &job.id, key: &key };
            let (Created::New(task) | Created::Existing(task)) =
                executor.jobs.submit_task(&executor.queue, task_spec, 0, &tenant, None, of).await.unwrap();
            tasks.push(Task { key: key.clone(), job: task.id, files: vec![key] });
        }
        (job.id, tasks)
    }

    async fn record(executor: &Executor, id: &str, tasks: &[Task]) {
        let execution = Execution {
            id: "e1".into(),
            worker: "w1".into(),
            started_at_ms: now_ms(),
            finished_at_ms: None,
            outcome: None,
            receipt: None,
        };
        executor.fanouts.record(id, tasks, 1, &execution).await.unwrap();
    }

    fn trap() -> Failure {
        Failure { reason: FailureReason::Trap, message: "boom".into(), stderr: None, fuel_consumed: None }
    }

    async fn fail(executor: &Executor, task: &Task) {
        let execution = Execution {
            id: format!("x-{}", task.job),
            worker: "w1".into(),
            started_at_ms: now_ms(),
            finished_at_ms: Some(now_ms()),
            outcome: Some(ExecutionOutcome::Failed(trap())),
            receipt: None,
        };
        assert_eq!(executor.jobs.finish_execution(&task.job, &execution).await.unwrap(), JobState::Failed);
    }

    /// One gathering round (the lock is let go of at once, for the next).
    async fn round(executor: &Executor) -> usize {
        let finished = gather(executor, Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        finished
    }

    /// Redis commands run so far (scripts' commands counted one by one).
    pub(crate) async fn commands(admin: &mut redis::aio::MultiplexedConnection) -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query_async(admin).await.unwrap();
        info.lines().filter_map(|line| line.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok()).sum()
    }

    async fn summary_of(executor: &Executor, id: &str) -> TaskSummary {
        executor.fanouts.summary(id).await.unwrap().unwrap()
    }

    async fn notices(admin: &mut redis::aio::MultiplexedConnection) -> usize {
        let mut all = 0;
        for tag in keys::all_job_tags() {
            let n: usize = redis::AsyncCommands::scard(admin, keys::gatherable(&tag)).await.unwrap();
            all += n;
        }
        all
    }

    #[tokio::test]
    async fn a_round_reads_the_noticed_tasks_whatever_the_number_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, executor, mut admin) = executor(dir.path()).await;
        let mut per_round = Vec::new();
        for n in [20, 1000] {
            let (id, tasks) = fanned_out(&executor, n, &spec(r#"{"mode":"none"}"#)).await;
            record(&executor, &id, &tasks).await;
            fail(&executor, &tasks[3]).await;
            fail(&executor, &tasks[7]).await;
            let before = commands(&mut admin).await;
            assert_eq!(round(&executor).await, 0);
            per_round.push(commands(&mut admin).await - before);
            let summary = summary_of(&executor, &id).await;
            assert_eq!((summary.failed, summary.tasks_finished, summary.pending()), (2, 2, n as u64 - 2));
            assert_eq!(notices(&mut admin).await, 0, "counted notices are removed");
        }
        // Two notices in one or two tags: a command more or less, never one per unfinished task.
        let (small, large) = (per_round[0], per_round[1]);
        eprintln!("commands in a round counting 2 tasks: {small} with 18 unfinished, {large} with 998");
        assert!(large <= small + 2 && large < 150, "commands per round: {small} with 18 unfinished, {large} with 998");
    }

    #[tokio::test]
    async fn a_gatherer_dying_between_counting_and_removing_a_notice_counts_the_task_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, executor, mut admin) = executor(dir.path()).await;
        let (id, tasks) = fanned_out(&executor, 3, &spec(r#"{"mode":"none"}"#)).await;
        record(&executor, &id, &tasks).await;
        fail(&executor, &tasks[0]).await;
        // What a gatherer does before it dies: it counted the task, and removed no notice.
        let noticed = executor.fanouts.notices(NOTICES_PER_TAG).await.unwrap();
        assert_eq!(noticed.iter().map(|n| (n.job.as_str(), n.key.as_str())).collect::<Vec<_>>(), [(&*id, "f0000")]);
        executor.fanouts.record_finished(&id, &[tasks[0].failed(&trap())]).await.unwrap();
        assert_eq!(notices(&mut admin).await, 1);
        // The next gatherer finds it counted: it counts nothing twice and drops the notice.
        assert_eq!(round(&executor).await, 0);
        let summary = summary_of(&executor, &id).await;
        assert_eq!((summary.failed, summary.tasks_finished, summary.failures.len()), (1, 1, 1));
        assert_eq!(notices(&mut admin).await, 0);
        fail(&executor, &tasks[1]).await;
        fail(&executor, &tasks[2]).await;
        assert_eq!(round(&executor).await, 1);
        assert_eq!(summary_of(&executor, &id).await.failed, 3);
        assert_eq!(executor.jobs.get(&id).await.unwrap().unwrap().state, JobState::Failed);
    }

    #[tokio::test]
    async fn tasks_failed_by_the_deadline_sweep_or_cancelled_even_before_their_job_recorded_them_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, executor, mut admin) = executor(dir.path()).await;
        // Another fan-out keeps the gatherer looking.
        let (other, other_tasks) = fanned_out(&executor, 1, &spec(r#"{"mode":"none"}"#)).await;
        record(&executor, &other, &other_tasks).await;
        // Tasks whose job asks for verification: a failure counts without a verdict.
        let mut overdue = spec(r#"{"mode":"sampled"}"#);
        overdue.retry.total_timeout_ms = 1;
        let (id, mut tasks) = fanned_out(&executor, 1, &overdue).await;
        let tenant: shoal_jobs::Tenant = "acme".parse().unwrap();
        let key = "f0001".to_string();
        let of = TaskOf { job: &id, key: &key };
        let (Created::New(task) | Created::Existing(task)) = executor
            .jobs
            .submit_task(&executor.queue, &spec(r#"{"mode":"sampled"}"#), 0, &tenant, None, of)
            .await
            .unwrap();
        tasks.push(Task { key: key.clone(), job: task.id, files: vec![key] });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(executor.jobs.expire_overdue(100).await.unwrap(), [tasks[0].job.clone()]);
        executor.jobs.cancel(&tasks[1].job, "no longer wanted").await.unwrap();
        // Both ended before their job recorded them: their notices wait for it.
        assert_eq!(round(&executor).await, 0);
        assert_eq!(notices(&mut admin).await, 2);
        record(&executor, &id, &tasks).await;
        assert_eq!(round(&executor).await, 1);
        let summary = summary_of(&executor, &id).await;
        assert_eq!((summary.failed, summary.tasks_finished), (2, 2));
        let mut reasons: Vec<FailureReason> = summary.failures.iter().map(|f| f.reason).collect();
        reasons.sort_by_key(|r| r.to_string());
        assert_eq!(reasons, [FailureReason::Cancelled, FailureReason::DeadlineExceeded]);
        assert_eq!(executor.jobs.get(&id).await.unwrap().unwrap().state, JobState::Failed);
        assert_eq!(notices(&mut admin).await, 0);
        assert!(summary.output.is_some(), "gathered (an empty directory)");
    }

    fn file(n: u32) -> FanFile {
        let cid = *shoal_content::Block::encode(shoal_content::Codec::Raw, n.to_be_bytes().to_vec()).cid();
        let name = format!("f{n:03}");
        FanFile { input: InputSpec::new(ContentId(cid), "/in", Some(name.clone())), name }
    }

    #[test]
    fn batches_hold_files_of_one_shard_in_name_order_up_to_the_batch() {
        let router = ShardRouter::new(4);
        let files: Vec<FanFile> = (0..50).rev().map(file).collect();
        let tasks = plan(files, 8, &router);
        let mut seen = 0;
        for (shard, files) in &tasks {
            assert!(!files.is_empty() && files.len() <= 8);
            assert!(files.iter().all(|f| router.shard_of(f.input.cid.cid()) == *shard));
            assert!(files.windows(2).all(|pair| pair[0].name < pair[1].name));
            seen += files.len();
        }
        assert_eq!(seen, 50);
        // Per shard: all full batches but the last.
        for shard in 0..4 {
            let sizes: Vec<usize> = tasks.iter().filter(|(s, _)| *s == shard).map(|(_, f)| f.len()).collect();
            let n: usize = sizes.iter().sum();
            assert_eq!(sizes.len(), n.div_ceil(8), "shard {shard}: {sizes:?}");
        }
        assert!(tasks.windows(2).all(|pair| pair[0].1[0].name < pair[1].1[0].name), "tasks in key order");
    }

    #[test]
    fn batch_one_gives_every_file_its_own_task_on_its_own_shard() {
        let router = ShardRouter::new(16);
        let tasks = plan((0..20).map(file).collect(), 1, &router);
        assert_eq!(tasks.len(), 20);
        assert!(tasks
            .iter()
            .all(|(shard, files)| files.len() == 1 && router.shard_of(files[0].input.cid.cid()) == *shard));
    }

    #[test]
    fn a_task_spec_replaces_the_fanned_out_input_where_it_was() {
        let shared = InputSpec::new(file(99).input.cid, "/shared", None);
        let dir = InputSpec::new(file(98).input.cid, "/in", None);
        let json = serde_json::json!({
            "program": file(97).input.cid.to_string(),
            "inputs": [shared, dir],
            "fan_out": {"input": 1, "batch": 2},
            "notify": {"url": "http://example.invalid/hook"},
        });
        let spec = JobSpec::from_json(json.to_string().as_bytes()).unwrap();
        let fan_out = spec.fan_out.clone().unwrap();
        let task = task_spec(&spec, &fan_out, &[file(1), file(2)]);
        let expected: Vec<InputSpec> = [shared.clone(), file(1).input, file(2).input].into();
        assert_eq!(task.inputs, expected);
        task.validate().unwrap();
        assert_eq!((task.fan_out, task.notify), (None, None));
    }
}
