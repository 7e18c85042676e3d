//! A client of the gateway's HTTP API, for the user commands.

use anyhow::{bail, Context};
use clap::Args;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;
use shoal_jobs::{Job, JobStatus};

use crate::home::Home;

/// Which gateway to talk to, and with which key.
#[derive(Args)]
pub(crate) struct ApiArgs {
    /// The gateway (default: the running `shoal dev`, else http://127.0.0.1:8080).
    #[arg(long, env = "SHOAL_GATEWAY")]
    gateway: Option<String>,
    /// The API key (default: the running `shoal dev`'s local key).
    #[arg(long, env = "SHOAL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

/// The gateway at one base URL.
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// A client of the gateway `args` name (else the one of the `shoal dev` of `home`), sending
    /// the key they name (else that stack's local key).
    pub(crate) fn new(home: &Home, args: &ApiArgs) -> Api {
        let key = args.api_key.clone().or_else(|| home.endpoints().and_then(|e| e.api_key));
        let mut headers = HeaderMap::new();
        if let Some(value) = key.and_then(|key| HeaderValue::try_from(format!("Bearer {key}")).ok()) {
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder().default_headers(headers).build().unwrap_or_default();
        Api { base: home.gateway_url(args.gateway.as_deref()), http }
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

    /// One page of the jobs the key may see, newest first: `GET /v1/jobs` with `query`
    /// (`state`, `limit`, `cursor`).
    pub(crate) async fn jobs(&self, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}/v1/jobs", self.base))
            .query(query)
            .send()
            .await
            .with_context(|| self.unreachable())?;
        decode(response).await
    }

    /// Cancels job `id`; returns it as it is now.
    pub(crate) async fn cancel(&self, id: &str) -> anyhow::Result<JobStatus> {
        let response =
            self.http.delete(format!("{}/v1/jobs/{id}", self.base)).send().await.with_context(|| self.unreachable())?;
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
