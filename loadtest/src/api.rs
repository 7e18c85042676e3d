//! The gateway client: submissions with an Idempotency-Key, retried while the gateway or Redis
//! is away, and job reads.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use shoal_jobs::Job;
use tokio::time::Instant;

use crate::error::Result;

/// Pause between retries, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a submission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// 202: a new job (or 201: a new job answered from an identical accepted run, memoised, or
    /// that ended within the submission's wait).
    Accepted {
        /// The job id.
        id: String,
        /// Requests it took (1 = no retry).
        attempts: u32,
    },
    /// 200 with `Idempotent-Replayed`: an earlier attempt had created the job.
    Replayed {
        /// The job id.
        id: String,
        /// Requests it took.
        attempts: u32,
    },
    /// A definite refusal (4xx), or no answer before the deadline.
    Refused {
        /// Why, for the report.
        reason: String,
    },
}

impl Submitted {
    /// The job's id, if the gateway accepted the submission.
    pub fn id(&self) -> Option<&str> {
        match self {
            Submitted::Accepted { id, .. } | Submitted::Replayed { id, .. } => Some(id),
            Submitted::Refused { .. } => None,
        }
    }
}

/// What a read of a job found.
#[derive(Debug, Clone)]
pub enum JobRead {
    /// The record.
    Found(Box<Job>),
    /// 404: the gateway does not know the id (the record is gone).
    Missing,
    /// No answer this time (gateway restarting, Redis away, timeout).
    Unavailable(String),
}

/// What every answer to a submission names.
#[derive(serde::Deserialize)]
struct Answer {
    id: String,
}

/// A client of one gateway.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// Whether an answer means "ask again later" rather than "no".
fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

impl Api {
    /// A client of the gateway at `base` (`http://127.0.0.1:PORT`) sending API key `key`.
    pub fn new(base: String, key: &str) -> Result<Api> {
        let builder =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(15));
        Ok(Api { http: shoal_testkit::keyed_client(builder, key)?, base })
    }

    /// Submits `spec` under `key`, retrying connection errors and 5xx (always with the same key,
    /// so a retry can never create a second job) until `deadline`.
    pub async fn submit(&self, spec: &Value, key: &str, deadline: Instant) -> Submitted {
        self.submit_to(format!("{}/v1/jobs", self.base), spec, key, deadline).await.0
    }

    /// [`Api::submit`], asking the gateway to hold the answer up to `wait` while the job is
    /// unfinished (`POST /v1/jobs?wait=`; a gateway without it answers at once): how it ended,
    /// and the job as the answer showed it.
    pub async fn submit_waiting(
        &self,
        spec: &Value,
        key: &str,
        wait: Duration,
        deadline: Instant,
    ) -> (Submitted, Option<Job>) {
        let url = format!("{}/v1/jobs?wait={}ms", self.base, wait.as_millis().max(1));
        let (submitted, body) = self.submit_to(url, spec, key, deadline).await;
        (submitted, body.and_then(|body| serde_json::from_slice(&body).ok()))
    }

    /// Submits to `url`: how it ended, and the answer's body. The body is parsed here only for
    /// the job's id, and not into a `Value` on the way: the load generator shares the machine
    /// with what it measures.
    async fn submit_to(&self, url: String, spec: &Value, key: &str, deadline: Instant) -> (Submitted, Option<Bytes>) {
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0;
        let mut last = String::from("never tried");
        while Instant::now() < deadline {
            attempts += 1;
            let sent = self.http.post(&url).header("Idempotency-Key", key).json(spec).send().await;
            match sent {
                Ok(response) => {
                    let status = response.status();
                    // 201: a new job answered at once from an identical accepted run (memoised), or
                    // that ended within the submission's wait.
                    if status == StatusCode::ACCEPTED || status == StatusCode::CREATED || status == StatusCode::OK {
                        let body = response.bytes().await.ok();
                        let id =
                            body.as_ref().and_then(|body| serde_json::from_slice::<Answer>(body).ok()).map(|a| a.id);
                        match id {
                            Some(id) if status != StatusCode::OK => {
                                return (Submitted::Accepted { id, attempts }, body)
                            }
                            Some(id) => return (Submitted::Replayed { id, attempts }, body),
                            // The answer was cut off: the job may exist; the key makes asking again safe.
                            None => last = format!("{status} without a readable body"),
                        }
                    } else if retryable(status) {
                        last = format!("{status}");
                    } else {
                        let body = response.text().await.unwrap_or_default();
                        return (Submitted::Refused { reason: format!("{status}: {body}") }, None);
                    }
                }
                Err(e) => last = format!("{e}"),
            }
            tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        let reason = format!("no answer before the deadline after {attempts} attempts; last: {last}");
        (Submitted::Refused { reason }, None)
    }

    /// Reads job `id` once.
    pub async fn job(&self, id: &str) -> JobRead {
        self.read_job(id, format!("{}/v1/jobs/{id}", self.base)).await
    }

    /// Reads job `id` once, asking the gateway to hold the answer up to `wait` while the job
    /// is unfinished (the long-poll `?wait=`; a gateway without it answers at once).
    pub async fn job_waiting(&self, id: &str, wait: Duration) -> JobRead {
        self.read_job(id, format!("{}/v1/jobs/{id}?wait={}s", self.base, wait.as_secs().max(1))).await
    }

    async fn read_job(&self, id: &str, url: String) -> JobRead {
        match self.http.get(url).send().await {
            Ok(response) if response.status().is_success() => match response.json::<Job>().await {
                Ok(job) => JobRead::Found(Box::new(job)),
                Err(e) => JobRead::Unavailable(format!("reading job {id}: {e}")),
            },
            Ok(response) if response.status() == StatusCode::NOT_FOUND => JobRead::Missing,
            Ok(response) => JobRead::Unavailable(format!("GET job {id}: {}", response.status())),
            Err(e) => JobRead::Unavailable(format!("GET job {id}: {e}")),
        }
    }

    /// Reads job `id`, asking again while unavailable until `deadline`.
    pub async fn job_until(&self, id: &str, deadline: Instant) -> JobRead {
        loop {
            let read = self.job(id).await;
            if !matches!(read, JobRead::Unavailable(_)) || Instant::now() >= deadline {
                return read;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The ids of every job the gateway lists (all states), or why the listing failed.
    pub async fn all_job_ids(&self, deadline: Instant) -> std::result::Result<Vec<String>, String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        // Bounded: a page holds up to 500 jobs, so this covers 50 million jobs.
        for _ in 0..100_000 {
            let mut url = format!("{}/v1/jobs?limit=500", self.base);
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let page = loop {
                match self.http.get(&url).send().await {
                    Ok(response) if response.status().is_success() => match response.json::<Value>().await {
                        Ok(page) => break page,
                        Err(e) => return Err(format!("reading a job page: {e}")),
                    },
                    Ok(response) if !retryable(response.status()) => {
                        return Err(format!("listing jobs: {}", response.status()))
                    }
                    _ if Instant::now() >= deadline => return Err("listing jobs: no answer before the deadline".into()),
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            for job in page["jobs"].as_array().into_iter().flatten() {
                if let Some(id) = job["id"].as_str() {
                    ids.push(id.to_string());
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(ids),
            }
        }
        Err("listing jobs: too many pages".into())
    }
}
