//! The records of fanned-out jobs ([`crate::FanOut`]): which tasks a job fanned out into and
//! which files each was given, which tasks have finished and how each file fared, and the list
//! of jobs still waiting for theirs.
//!
//! A task is an ordinary job whose record names its fanned-out job and its key there
//! ([`crate::TaskOf`]). The script that makes a task countable (ends it, or records the
//! verifier's verdict on it) adds a notice `<job>/<key>` to its own tag's gatherable set
//! ([`keys::gatherable`]): a script touches one slot, so the notice lives beside the task, not
//! its job. The gatherer (one worker at a time, under a lock) reads the notices of every tag
//! ([`FanOutStore::notices`]), the states of the noticed tasks only, and counts them in an
//! idempotent step: a task's files are counted when the task's key first enters the job's done
//! set, and a notice is removed ([`FanOutStore::forget`]) only after that. A gatherer that dies
//! midway loses nothing; the next one counts what it had not, and drops notices of tasks counted
//! already.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script};

use crate::connection::{Batch, RedisConnection};
use crate::error::StoreError;
use crate::keys::{self, FanOutKeys, JobKeys};
use crate::model::{ContentId, Execution, ExecutionResult, Failure, FailureReason, JobState, TaskFailure, TaskSummary};
use crate::store::now_ms;

/// Counts newly finished tasks: a task's files count once, when its key first enters the done
/// set. KEYS: done, summary, outputs, failures. ARGV: how many failures to list, then for each
/// task its key and its number of files, then for each of those files its name, `ok` or
/// `failed`, and its output CID or failure JSON.
const RECORD_FINISHED: &str = r#"
local listed = tonumber(ARGV[1])
local i = 2
while i <= #ARGV do
  local files = tonumber(ARGV[i + 1])
  local new = redis.call('SADD', KEYS[1], ARGV[i]) == 1
  i = i + 2
  for _ = 1, files do
    if new then
      local name, status, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
      if status == 'ok' then
        redis.call('HINCRBY', KEYS[2], 'succeeded', 1)
        redis.call('HSET', KEYS[3], name, payload)
      elseif redis.call('HINCRBY', KEYS[2], 'failed', 1) <= listed then
        redis.call('RPUSH', KEYS[4], payload)
      end
    end
    i = i + 3
  end
end
return 0
"#;

/// Files counted by one script call, at most (a task's files are never split between calls).
const FILES_PER_CALL: usize = 500;

/// How a task stands, as far as its job is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Not finished yet.
    Unfinished,
    /// Succeeded with this output directory.
    Succeeded(ContentId),
    /// Failed (after its own retries), or its record is gone.
    Failed(Failure),
}

/// One task of a fanned-out job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Its key within the job: the name of its first file.
    pub key: String,
    /// The task's own job id.
    pub job: String,
    /// The names of its files (directory entries or inputs), in name order.
    pub files: Vec<String>,
}

/// A finished task and how each of its files fared: its output entry, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedTask {
    /// The task's key.
    pub key: String,
    /// The task's job id.
    pub job: String,
    /// Each file, by name, with its output or failure.
    pub files: Vec<(String, Result<ContentId, Failure>)>,
}

impl Task {
    /// The task failed: so did each of its files, for the same reason.
    pub fn failed(&self, failure: &Failure) -> FinishedTask {
        self.finished(self.files.iter().map(|name| (name.clone(), Err(failure.clone()))).collect())
    }

    /// A one-file task (`batch` 1) succeeded: its whole output is its file's.
    pub fn succeeded_whole(&self, output: ContentId) -> FinishedTask {
        self.finished(self.files.iter().map(|name| (name.clone(), Ok(output))).collect())
    }

    /// A batch task succeeded and its output directory holds `written` (name, CID): each file's
    /// output is the entry named as the file, and a file without one fails
    /// ([`FailureReason::MissingOutput`], naming what the task wrote that matches none of its
    /// files). Entries named as none of its files are not gathered.
    pub fn succeeded_batch(&self, written: &[(String, ContentId)]) -> FinishedTask {
        let stray: Vec<&str> = written
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !self.files.iter().any(|f| f == name))
            .collect();
        let files = self
            .files
            .iter()
            .map(|name| {
                let found = written.iter().find(|(entry, _)| entry == name).map(|(_, cid)| *cid);
                let outcome = found.ok_or_else(|| {
                    let instead = match stray.as_slice() {
                        [] => String::new(),
                        stray if stray.len() <= 5 => format!("; it wrote {stray:?}, named as none of its files"),
                        stray => format!(
                            "; it wrote {:?} and {} more, named as none of its files",
                            &stray[..5],
                            stray.len() - 5
                        ),
                    };
                    Failure {
                        reason: FailureReason::MissingOutput,
                        message: format!("batch task {} wrote no /outputs/{name}{instead}", self.job),
                        stderr: None,
                        fuel_consumed: None,
                    }
                });
                (name.clone(), outcome)
            })
            .collect();
        self.finished(files)
    }

    fn finished(&self, files: Vec<(String, Result<ContentId, Failure>)>) -> FinishedTask {
        FinishedTask { key: self.key.clone(), job: self.job.clone(), files }
    }
}

/// A fanned-out job's tasks not yet counted as finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The job's `fan_out.batch`: above 1, tasks write one output entry per file.
    pub batch: u32,
    /// The tasks, by key.
    pub tasks: Vec<Task>,
}

/// A task its fanned-out job may count now, as its tag's gatherable set names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Notice {
    /// The fanned-out job.
    pub job: String,
    /// The task's key within it.
    pub key: String,
    /// The gatherable set holding the notice (the task's tag's).
    pub set: String,
}

/// Where the fanned-out job a notice names stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It waits for its tasks: its notices are to be counted.
    Waiting,
    /// It was gathered: its notices (a late verdict, a correction) change nothing.
    Gathered,
    /// It has not recorded its tasks yet (a task ended while its job was still fanning out):
    /// its notices wait until it has.
    Unrecorded,
}

/// The fan-out records in Redis.
#[derive(Clone)]
pub struct FanOutStore {
    conn: RedisConnection,
}

/// Built and hashed once per process, not carried by every (cloned) store: a gateway clones its
/// stores for every request.
static RECORD_FINISHED_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECORD_FINISHED));

impl FanOutStore {
    /// The records over `conn`.
    pub fn new(conn: impl Into<RedisConnection>) -> FanOutStore {
        FanOutStore { conn: conn.into() }
    }

    /// Records that job `id` fanned out into `tasks` (grouped `batch` files at most) by
    /// `execution`, and puts it on the waiting list. Repeating it (a fan-out re-run after a
    /// crash) writes the same tasks again.
    pub async fn record(&self, id: &str, tasks: &[Task], batch: u32, execution: &Execution) -> Result<(), StoreError> {
        let keys = FanOutKeys::of(id);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        // Bounded argument lists: a job may have tens of thousands of tasks.
        for chunk in tasks.chunks(1000) {
            let ids: Vec<(&str, &str)> = chunk.iter().map(|task| (task.key.as_str(), task.job.as_str())).collect();
            pipe.hset_multiple(&keys.tasks, &ids).ignore();
            // Names cannot hold `/` (UnixFS entries and input names alike), so it separates them.
            let files: Vec<(&str, String)> = chunk
                .iter()
                .filter(|task| task.files != [task.key.as_str()])
                .map(|task| (task.key.as_str(), task.files.join("/")))
                .collect();
            if !files.is_empty() {
                pipe.hset_multiple(&keys.files, &files).ignore();
            }
        }
        let total: usize = tasks.iter().map(|task| task.files.len()).sum();
        pipe.hset_multiple(
            &keys.summary,
            &[
                ("total", total.to_string()),
                ("tasks", tasks.len().to_string()),
                ("batch", batch.to_string()),
                ("execution", serde_json::to_string(execution).expect("an Execution serialises")),
            ],
        )
        .ignore();
        pipe.query_async::<()>(&mut conn).await?;
        // No task will ever give notice of a fan-out over nothing: it is due for a full read
        // (and so settled) at the next round.
        let score = if tasks.is_empty() { 0 } else { now_ms() };
        let _: i64 = conn.zadd(keys::fanout_waiting(), id, score).await?;
        Ok(())
    }

    /// Whether any fanned-out job waits for tasks.
    pub async fn any_waiting(&self) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let waiting: u64 = conn.zcard(keys::fanout_waiting()).await?;
        Ok(waiting > 0)
    }

    /// Up to `limit` fanned-out jobs waiting for tasks that have had none counted since
    /// `before_ms` (ms since the epoch; nor fanned out since), longest idle first.
    pub async fn idle(&self, before_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut idle = redis::cmd("ZRANGE");
        idle.arg(keys::fanout_waiting()).arg("-inf").arg(before_ms).arg("BYSCORE").arg("LIMIT").arg(0).arg(limit);
        Ok(idle.query_async(&mut conn).await?)
    }

    /// Marks waiting job `id` as last gathered at `at_ms` (ms since the epoch): it is
    /// [`FanOutStore::idle`] since then. A job no longer waiting is left alone.
    pub async fn touch(&self, id: &str, at_ms: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 =
            redis::cmd("ZADD").arg(keys::fanout_waiting()).arg("XX").arg(at_ms).arg(id).query_async(&mut conn).await?;
        Ok(())
    }

    /// Up to `per_tag` notices from each tag's gatherable set, read in one batch. A notice
    /// that does not parse is left where it is, for an operator to see.
    pub async fn notices(&self, per_tag: usize) -> Result<Vec<Notice>, StoreError> {
        let sets = keys::all_job_tags().map(|tag| keys::gatherable(&tag)).collect();
        Ok(self
            .conn
            .sample_sets(sets, per_tag)
            .await?
            .into_iter()
            .flat_map(|(set, members)| {
                members.into_iter().filter_map(move |member| {
                    let (job, key) = member.split_once('/')?;
                    Some(Notice { job: job.to_string(), key: key.to_string(), set: set.clone() })
                })
            })
            .collect())
    }

    /// Where each of the fanned-out jobs `ids` stands, in order.
    pub async fn standing(&self, ids: &[String]) -> Result<Vec<Standing>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let scores: Vec<Option<f64>> =
            redis::cmd("ZMSCORE").arg(keys::fanout_waiting()).arg(ids).query_async(&mut conn).await?;
        let mut batch = Batch::new();
        for id in ids {
            let summary = FanOutKeys::of(id).summary;
            batch.add(&summary, redis::cmd("HEXISTS").arg(&summary).arg("output").clone());
        }
        let gathered: Vec<bool> = self.conn.query_batch(&batch).await?;
        Ok(scores
            .into_iter()
            .zip(gathered)
            .map(|(score, gathered)| match (score, gathered) {
                (Some(_), _) => Standing::Waiting,
                (None, true) => Standing::Gathered,
                (None, false) => Standing::Unrecorded,
            })
            .collect())
    }

    /// Removes `notices`: their tasks are counted (or were already).
    pub async fn forget(&self, notices: &[Notice]) -> Result<(), StoreError> {
        let mut by_set: std::collections::BTreeMap<&str, Vec<String>> = std::collections::BTreeMap::new();
        for notice in notices {
            by_set.entry(&notice.set).or_default().push(format!("{}/{}", notice.job, notice.key));
        }
        let mut batch = Batch::new();
        for (set, members) in by_set {
            batch.add(set, redis::cmd("SREM").arg(set).arg(members).clone());
        }
        let _: Vec<i64> = self.conn.query_batch(&batch).await?;
        Ok(())
    }

    /// The execution that fanned job `id` out, if it was.
    pub async fn execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let key = FanOutKeys::of(id).summary;
        let mut conn = self.conn.clone();
        let json: Option<String> = conn.hget(&key, "execution").await?;
        json.map(|json| serde_json::from_str(&json).map_err(|e| StoreError::Corrupt { key, reason: e.to_string() }))
            .transpose()
    }

    /// How job `id`'s files and tasks stand; `None` if it has not fanned out (or is not a
    /// fan-out job).
    pub async fn summary(&self, id: &str) -> Result<Option<TaskSummary>, StoreError> {
        let keys = FanOutKeys::of(id);
        let mut conn = self.conn.clone();
        type Fields = (Option<u64>, Option<u64>, Option<u64>, Option<String>, Option<u64>);
        let (fields, finished, failures): (Fields, u64, Vec<String>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.summary)
            .arg(&["total", "succeeded", "failed", "output", "tasks"])
            .scard(&keys.done)
            .lrange(&keys.failures, 0, TaskSummary::MAX_FAILURES_LISTED as isize - 1)
            .query_async(&mut conn)
            .await?;
        let (Some(total), succeeded, failed, output, tasks) = fields else { return Ok(None) };
        let corrupt = |reason: String| StoreError::Corrupt { key: keys.summary.clone(), reason };
        Ok(Some(TaskSummary {
            total,
            succeeded: succeeded.unwrap_or(0),
            failed: failed.unwrap_or(0),
            // Records written before batches had one task per file.
            tasks: tasks.unwrap_or(total),
            tasks_finished: finished,
            failures: failures
                .iter()
                .map(|f| serde_json::from_str(f).map_err(|e| corrupt(format!("failure: {e}"))))
                .collect::<Result<_, _>>()?,
            output: output.map(|o| o.parse().map_err(|e| corrupt(format!("output: {e}")))).transpose()?,
        }))
    }

    /// Job `id`'s tasks, by key.
    pub async fn tasks(&self, id: &str) -> Result<Vec<Task>, StoreError> {
        Ok(self.read_tasks(id, false).await?.tasks)
    }

    /// Job `id`'s tasks not yet counted as finished, by key, with its batch size.
    pub async fn unfinished(&self, id: &str) -> Result<Unfinished, StoreError> {
        self.read_tasks(id, true).await
    }

    /// Those of job `id`'s tasks with keys `keys` (noticed ones) not yet counted as finished,
    /// by key, with its batch size: what [`FanOutStore::unfinished`] reads, for these tasks
    /// only. A key the job has no task for is left out.
    pub async fn noticed(&self, id: &str, keys: &[String]) -> Result<Unfinished, StoreError> {
        let fan = FanOutKeys::of(id);
        if keys.is_empty() {
            let mut conn = self.conn.clone();
            let batch: Option<u32> = conn.hget(&fan.summary, "batch").await?;
            return Ok(Unfinished { batch: batch.unwrap_or(1), tasks: Vec::new() });
        }
        let mut conn = self.conn.clone();
        type Read = (Option<u32>, Vec<Option<String>>, Vec<Option<String>>, Vec<bool>);
        let (batch, ids, files, done): Read = redis::pipe()
            .hget(&fan.summary, "batch")
            .cmd("HMGET")
            .arg(&fan.tasks)
            .arg(keys)
            .cmd("HMGET")
            .arg(&fan.files)
            .arg(keys)
            .cmd("SMISMEMBER")
            .arg(&fan.done)
            .arg(keys)
            .query_async(&mut conn)
            .await?;
        let mut tasks: Vec<Task> = keys
            .iter()
            .zip(ids.into_iter().zip(files).zip(done))
            .filter_map(|(key, ((job, files), done))| {
                let job = job.filter(|_| !done)?;
                let files = match files {
                    Some(names) => names.split('/').map(str::to_string).collect(),
                    None => vec![key.clone()],
                };
                Some(Task { key: key.clone(), job, files })
            })
            .collect();
        tasks.sort_by(|a, b| a.key.cmp(&b.key));
        tasks.dedup_by(|a, b| a.key == b.key);
        Ok(Unfinished { batch: batch.unwrap_or(1), tasks })
    }

    async fn read_tasks(&self, id: &str, unfinished_only: bool) -> Result<Unfinished, StoreError> {
        let keys = FanOutKeys::of(id);
        let mut conn = self.conn.clone();
        type Read = (Vec<(String, String)>, std::collections::HashMap<String, String>, Vec<String>, Option<u32>);
        let (tasks, mut files, done, batch): Read = redis::pipe()
            .hgetall(&keys.tasks)
            .hgetall(&keys.files)
            .smembers(&keys.done)
            .hget(&keys.summary, "batch")
            .query_async(&mut conn)
            .await?;
        let done: std::collections::HashSet<String> =
            if unfinished_only { done.into_iter().collect() } else { [].into() };
        let mut tasks: Vec<Task> = tasks
            .into_iter()
            .filter(|(key, _)| !done.contains(key))
            .map(|(key, job)| {
                let files = match files.remove(&key) {
                    Some(names) => names.split('/').map(str::to_string).collect(),
                    None => vec![key.clone()],
                };
                Task { key, job, files }
            })
            .collect();
        tasks.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Unfinished { batch: batch.unwrap_or(1), tasks })
    }

    /// The outcomes of tasks `tasks` (job ids), in order, read in one batch. With `verdicts`
    /// (the job's policy asks for verification), a task that succeeded counts as finished only
    /// once the verifier has decided on its result: a gathered output holds no result the
    /// verifier has yet to correct.
    pub async fn outcomes(&self, tasks: &[String], verdicts: bool) -> Result<Vec<TaskOutcome>, StoreError> {
        let mut batch = Batch::new();
        for task in tasks {
            let key = JobKeys::of(task).job;
            let fields = ["state", "result", "failure", "verification"];
            batch.add(&key, redis::cmd("HMGET").arg(&key).arg(&fields[..]).clone());
        }
        type Reply = (Option<String>, Option<String>, Option<String>, Option<String>);
        let replies: Vec<Reply> = self.conn.query_batch(&batch).await?;
        tasks
            .iter()
            .zip(replies)
            .map(|(task, (state, result, failure, verification))| {
                let key = JobKeys::of(task).job;
                let corrupt = |reason: String| StoreError::Corrupt { key: key.clone(), reason };
                let Some(state) = state else {
                    return Ok(TaskOutcome::Failed(Failure {
                        reason: FailureReason::Internal,
                        message: format!("task {task} has no record"),
                        stderr: None,
                        fuel_consumed: None,
                    }));
                };
                let state: JobState = state.parse().map_err(corrupt)?;
                Ok(match state {
                    JobState::Queued | JobState::Running => TaskOutcome::Unfinished,
                    JobState::Succeeded if verdicts && verification.is_none() => TaskOutcome::Unfinished,
                    JobState::Succeeded => {
                        let result: ExecutionResult = serde_json::from_str(&result.unwrap_or_default())
                            .map_err(|e| corrupt(format!("result: {e}")))?;
                        TaskOutcome::Succeeded(result.output)
                    }
                    _ => TaskOutcome::Failed(match failure.filter(|f| !f.is_empty()) {
                        Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(format!("failure: {e}")))?,
                        None => Failure {
                            reason: FailureReason::Internal,
                            message: format!("task {task} ended {state} without a failure"),
                            stderr: None,
                            fuel_consumed: None,
                        },
                    }),
                })
            })
            .collect()
    }

    /// Counts the files of finished tasks of job `id`, each task once however often it is
    /// reported.
    pub async fn record_finished(&self, id: &str, finished: &[FinishedTask]) -> Result<(), StoreError> {
        let keys = FanOutKeys::of(id);
        let mut conn = self.conn.clone();
        let mut rest = finished;
        while !rest.is_empty() {
            // Whole tasks up to the file budget, and at least one.
            let mut take = 0;
            let mut files = 0;
            while take < rest.len() && (take == 0 || files + rest[take].files.len() <= FILES_PER_CALL) {
                files += rest[take].files.len();
                take += 1;
            }
            let (chunk, after) = rest.split_at(take);
            rest = after;
            let mut invocation = RECORD_FINISHED_SCRIPT.prepare_invoke();
            invocation.key(&keys.done).key(&keys.summary).key(&keys.outputs).key(&keys.failures);
            invocation.arg(TaskSummary::MAX_FAILURES_LISTED);
            for task in chunk {
                invocation.arg(&task.key).arg(task.files.len());
                for (name, outcome) in &task.files {
                    match outcome {
                        Ok(output) => invocation.arg(name).arg("ok").arg(output.to_string()),
                        Err(failure) => {
                            let listed = TaskFailure {
                                name: name.clone(),
                                job: task.job.clone(),
                                reason: failure.reason,
                                message: failure.message.clone(),
                            };
                            invocation.arg(name).arg("failed").arg(serde_json::to_string(&listed).expect("serialises"))
                        }
                    };
                }
            }
            let _: i64 = invocation.invoke_async(&mut conn).await?;
        }
        Ok(())
    }

    /// The outputs of job `id`'s succeeded files: (file name, output), by name.
    pub async fn outputs(&self, id: &str) -> Result<Vec<(String, ContentId)>, StoreError> {
        let key = FanOutKeys::of(id).outputs;
        let mut conn = self.conn.clone();
        let outputs: Vec<(String, String)> = conn.hgetall(&key).await?;
        let mut outputs = outputs
            .into_iter()
            .map(|(name, cid)| {
                let cid = cid
                    .parse::<ContentId>()
                    .map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
                Ok((name, cid))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        outputs.sort();
        Ok(outputs)
    }

    /// Records job `id`'s gathered output (when it has one) and takes it off the waiting list.
    pub async fn finish(&self, id: &str, output: Option<&ContentId>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        if let Some(output) = output {
            let _: i64 = conn.hset(FanOutKeys::of(id).summary, "output", output.to_string()).await?;
        }
        let _: i64 = conn.zrem(keys::fanout_waiting(), id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> ContentId {
        use multihash_codetable::{Code, MultihashDigest};
        ContentId(cid::Cid::new_v1(0x55, Code::Sha2_256.digest(&[n])))
    }

    fn task(files: &[&str]) -> Task {
        Task { key: files[0].to_string(), job: "task-1".into(), files: files.iter().map(|f| f.to_string()).collect() }
    }

    #[test]
    fn a_failed_task_fails_each_of_its_files_alike() {
        let failure =
            Failure { reason: FailureReason::Trap, message: "boom".into(), stderr: None, fuel_consumed: None };
        let finished = task(&["a", "b"]).failed(&failure);
        assert_eq!(finished.files, [("a".to_string(), Err(failure.clone())), ("b".to_string(), Err(failure))]);
    }

    #[test]
    fn a_one_file_task_gives_its_whole_output() {
        assert_eq!(task(&["a"]).succeeded_whole(cid(1)).files, [("a".to_string(), Ok(cid(1)))]);
    }

    #[test]
    fn a_batch_task_gives_each_file_its_entry_and_fails_files_without_one() {
        let written = [("a".to_string(), cid(1)), ("b.sha256".to_string(), cid(2)), ("c".to_string(), cid(3))];
        let finished = task(&["a", "b", "c"]).succeeded_batch(&written);
        assert_eq!(finished.files[0], ("a".to_string(), Ok(cid(1))));
        assert_eq!(finished.files[2], ("c".to_string(), Ok(cid(3))));
        let (name, Err(failure)) = &finished.files[1] else { panic!("{:?}", finished.files[1]) };
        assert_eq!((name.as_str(), failure.reason), ("b", FailureReason::MissingOutput));
        assert!(failure.message.contains("/outputs/b") && failure.message.contains("b.sha256"), "{}", failure.message);
        assert!(failure.message.contains("task-1"), "{}", failure.message);
    }
}
