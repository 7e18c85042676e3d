//! The records of fanned-out jobs ([`crate::FanOut`]): which tasks a job fanned out into, which
//! have finished and how, and the list of jobs still waiting for theirs.
//!
//! A task is an ordinary job; nothing in a task's own record points back at its job. Instead the
//! gatherer (one worker at a time, under a lock) visits the waiting jobs, reads the states of
//! their unfinished tasks in one batch, and counts the newly finished ones in an idempotent step:
//! a task is counted when its name first enters the job's done set. A gatherer that dies midway
//! loses nothing; the next one counts what it had not.

use redis::{AsyncCommands, Script};

use crate::connection::{Batch, RedisConnection};
use crate::error::StoreError;
use crate::keys::{self, FanOutKeys, JobKeys};
use crate::model::{ContentId, Execution, ExecutionResult, Failure, JobState, TaskFailure, TaskSummary};
use crate::store::now_ms;

/// Counts newly finished tasks: a task counts once, when its name first enters the done set.
/// KEYS: done, summary, outputs, failures. ARGV: how many failures to list, then for each task
/// its name, `ok` or `failed`, and its output CID or failure JSON.
const RECORD_FINISHED: &str = r#"
local listed = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local name, status, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SADD', KEYS[1], name) == 1 then
    if status == 'ok' then
      redis.call('HINCRBY', KEYS[2], 'succeeded', 1)
      redis.call('HSET', KEYS[3], name, payload)
    else
      if redis.call('HINCRBY', KEYS[2], 'failed', 1) <= listed then
        redis.call('RPUSH', KEYS[4], payload)
      end
    end
  end
end
return 0
"#;

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

/// The fan-out records in Redis.
#[derive(Clone)]
pub struct FanOutStore {
    conn: RedisConnection,
    record_finished: Script,
}

impl FanOutStore {
    /// The records over `conn`.
    pub fn new(conn: impl Into<RedisConnection>) -> FanOutStore {
        FanOutStore { conn: conn.into(), record_finished: Script::new(RECORD_FINISHED) }
    }

    /// Records that job `id` fanned out into `tasks` (entry name, task job id) by `execution`,
    /// and puts it on the waiting list. Repeating it (a fan-out re-run after a crash) writes the
    /// same tasks again.
    pub async fn record(&self, id: &str, tasks: &[(String, String)], execution: &Execution) -> Result<(), StoreError> {
        let keys = FanOutKeys::of(id);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        // Bounded argument lists: a job may have tens of thousands of tasks.
        for chunk in tasks.chunks(1000) {
            pipe.hset_multiple(&keys.tasks, chunk).ignore();
        }
        pipe.hset(&keys.summary, "total", tasks.len())
            .ignore()
            .hset(&keys.summary, "execution", serde_json::to_string(execution).expect("an Execution serialises"))
            .ignore();
        pipe.query_async::<()>(&mut conn).await?;
        let _: i64 = conn.zadd(keys::fanout_waiting(), id, now_ms()).await?;
        Ok(())
    }

    /// Up to `limit` fanned-out jobs still waiting for tasks, longest waiting first.
    pub async fn waiting(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.zrange(keys::fanout_waiting(), 0, limit.max(1) as isize - 1).await?)
    }

    /// The execution that fanned job `id` out, if it was.
    pub async fn execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let key = FanOutKeys::of(id).summary;
        let mut conn = self.conn.clone();
        let json: Option<String> = conn.hget(&key, "execution").await?;
        json.map(|json| serde_json::from_str(&json).map_err(|e| StoreError::Corrupt { key, reason: e.to_string() }))
            .transpose()
    }

    /// How job `id`'s tasks stand; `None` if it has not fanned out (or is not a fan-out job).
    pub async fn summary(&self, id: &str) -> Result<Option<TaskSummary>, StoreError> {
        let keys = FanOutKeys::of(id);
        let mut conn = self.conn.clone();
        let (fields, failures): ((Option<u64>, Option<u64>, Option<u64>, Option<String>), Vec<String>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.summary)
            .arg(&["total", "succeeded", "failed", "output"])
            .lrange(&keys.failures, 0, TaskSummary::MAX_FAILURES_LISTED as isize - 1)
            .query_async(&mut conn)
            .await?;
        let (Some(total), succeeded, failed, output) = fields else { return Ok(None) };
        let corrupt = |reason: String| StoreError::Corrupt { key: keys.summary.clone(), reason };
        Ok(Some(TaskSummary {
            total,
            succeeded: succeeded.unwrap_or(0),
            failed: failed.unwrap_or(0),
            failures: failures
                .iter()
                .map(|f| serde_json::from_str(f).map_err(|e| corrupt(format!("failure: {e}"))))
                .collect::<Result<_, _>>()?,
            output: output.map(|o| o.parse().map_err(|e| corrupt(format!("output: {e}")))).transpose()?,
        }))
    }

    /// Job `id`'s tasks: (entry name, task job id), by name.
    pub async fn tasks(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.conn.clone();
        let mut tasks: Vec<(String, String)> = conn.hgetall(FanOutKeys::of(id).tasks).await?;
        tasks.sort();
        Ok(tasks)
    }

    /// Job `id`'s tasks not yet counted as finished: (entry name, task job id), by name.
    pub async fn unfinished(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let keys = FanOutKeys::of(id);
        let mut conn = self.conn.clone();
        let (tasks, done): (Vec<(String, String)>, std::collections::HashSet<String>) =
            redis::pipe().hgetall(&keys.tasks).smembers(&keys.done).query_async(&mut conn).await?;
        let mut unfinished: Vec<(String, String)> =
            tasks.into_iter().filter(|(name, _)| !done.contains(name)).collect();
        unfinished.sort();
        Ok(unfinished)
    }

    /// The outcomes of tasks `tasks` (job ids), in order, read in one batch.
    pub async fn outcomes(&self, tasks: &[String]) -> Result<Vec<TaskOutcome>, StoreError> {
        let mut batch = Batch::new();
        for task in tasks {
            let key = JobKeys::of(task).job;
            batch.add(&key, redis::cmd("HMGET").arg(&key).arg("state").arg("result").arg("failure").clone());
        }
        let replies: Vec<(Option<String>, Option<String>, Option<String>)> = self.conn.query_batch(&batch).await?;
        tasks
            .iter()
            .zip(replies)
            .map(|(task, (state, result, failure))| {
                let key = JobKeys::of(task).job;
                let corrupt = |reason: String| StoreError::Corrupt { key: key.clone(), reason };
                let Some(state) = state else {
                    return Ok(TaskOutcome::Failed(Failure {
                        reason: crate::FailureReason::Internal,
                        message: format!("task {task} has no record"),
                        stderr: None,
                        fuel_consumed: None,
                    }));
                };
                let state: JobState = state.parse().map_err(corrupt)?;
                Ok(match state {
                    JobState::Queued | JobState::Running => TaskOutcome::Unfinished,
                    JobState::Succeeded => {
                        let result: ExecutionResult = serde_json::from_str(&result.unwrap_or_default())
                            .map_err(|e| corrupt(format!("result: {e}")))?;
                        TaskOutcome::Succeeded(result.output)
                    }
                    _ => TaskOutcome::Failed(match failure.filter(|f| !f.is_empty()) {
                        Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(format!("failure: {e}")))?,
                        None => Failure {
                            reason: crate::FailureReason::Internal,
                            message: format!("task {task} ended {state} without a failure"),
                            stderr: None,
                            fuel_consumed: None,
                        },
                    }),
                })
            })
            .collect()
    }

    /// Counts finished tasks of job `id` — (entry name, task job id, outcome); unfinished ones
    /// are ignored — each once however often it is reported.
    pub async fn record_finished(
        &self,
        id: &str,
        finished: &[(String, String, TaskOutcome)],
    ) -> Result<(), StoreError> {
        let keys = FanOutKeys::of(id);
        let mut conn = self.conn.clone();
        for chunk in finished.chunks(500) {
            let mut invocation = self.record_finished.prepare_invoke();
            invocation.key(&keys.done).key(&keys.summary).key(&keys.outputs).key(&keys.failures);
            invocation.arg(TaskSummary::MAX_FAILURES_LISTED);
            let mut any = false;
            for (name, task, outcome) in chunk {
                match outcome {
                    TaskOutcome::Unfinished => continue,
                    TaskOutcome::Succeeded(output) => invocation.arg(name).arg("ok").arg(output.to_string()),
                    TaskOutcome::Failed(failure) => {
                        let listed = TaskFailure {
                            name: name.clone(),
                            job: task.clone(),
                            reason: failure.reason,
                            message: failure.message.clone(),
                        };
                        invocation.arg(name).arg("failed").arg(serde_json::to_string(&listed).expect("serialises"))
                    }
                };
                any = true;
            }
            if any {
                let _: i64 = invocation.invoke_async(&mut conn).await?;
            }
        }
        Ok(())
    }

    /// The outputs of job `id`'s succeeded tasks: (entry name, output directory), by name.
    pub async fn outputs(&self, id: &str) -> Result<Vec<(String, ContentId)>, StoreError> {
        let key = FanOutKeys::of(id).outputs;
        let mut conn = self.conn.clone();
        let outputs: Vec<(String, String)> = conn.hgetall(&key).await?;
        let mut outputs = outputs
            .into_iter()
            .map(|(name, cid)| {
                let cid = cid.parse().map_err(|e| StoreError::Corrupt { key: key.clone(), reason: format!("{e}") })?;
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
