//! A client of the gateway's HTTP API, for the user commands.

use anyhow::{bail, Context};
use serde_json::Value;
use shoal_jobs::{Job, JobStatus};

/// The gateway at one base URL.
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// A client of the gateway at `base` (e.g. `http://127.0.0.1:8080`).
    pub(crate) fn new(base: String) -> Api {
        Api { base, http: reqwest::Client::new() }
    }

    /// Submits a job spec; returns the job (new, or the one an earlier use of the key created).
    pub(crate) async fn submit(&self, spec: &Value, idempotency_key: Option<&str>) -> anyhow::Result<Job> {
        let mut request = self.http.post(format!("{}/v1/jobs", self.base)).json(spec);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.with_context(|| self.unreachable())?;
        decode(response).await
    }

    /// The job `id` with its state and executions, and its tasks if it fanned out.
    pub(crate) async fn job(&self, id: &str) -> anyhow::Result<JobStatus> {
        let response =
            self.http.get(format!("{}/v1/jobs/{id}", self.base)).send().await.with_context(|| self.unreachable())?;
        decode(response).await
    }

    /// The live workers.
    pub(crate) async fn workers(&self) -> anyhow::Result<Vec<shoal_jobs::Member>> {
        let response =
            self.http.get(format!("{}/v1/workers", self.base)).send().await.with_context(|| self.unreachable())?;
        let body: Value = decode(response).await?;
        Ok(serde_json::from_value(body["workers"].clone())?)
    }

    fn unreachable(&self) -> String {
        format!("cannot reach the gateway at {} (is `shoal dev` running? set --gateway or SHOAL_GATEWAY)", self.base)
    }
}

/// The body of a 2xx answer, or the API's error message.
async fn decode<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let body = response.bytes().await.context("reading the gateway's answer")?;
    if !status.is_success() {
        let error: Option<Value> = serde_json::from_slice(&body).ok();
        let message = error
            .as_ref()
            .and_then(|e| e.pointer("/error/message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the gateway answered {status}: {message}");
    }
    serde_json::from_slice(&body).context("the gateway's answer is not what this client expects")
}
