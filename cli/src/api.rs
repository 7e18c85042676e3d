//! A client of the gateway's HTTP API, for the user commands.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use shoal_jobs::{Job, JobStatus, PipelineStatus};

use crate::config::{ConfigArgs, Loaded};
use crate::home::{Home, DEFAULT_GATEWAY};

/// Which gateway to talk to, and with which key: a flag, else its environment variable, else
/// the config file, else the running `shoal dev` of `--home`.
#[derive(Args)]
pub(crate) struct ApiArgs {
    /// The gateway (default: the config file's, else the running `shoal dev`'s, else
    /// http://127.0.0.1:8080).
    #[arg(long, env = "SHOAL_GATEWAY")]
    gateway: Option<String>,
    /// The API key (default: the config file's, else the running `shoal dev`'s local key when
    /// talking to that stack).
    #[arg(long, env = "SHOAL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A command-line flag.
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// The config file, at the top level or in a profile.
    Config { path: PathBuf, profile: Option<String> },
    /// The endpoints file of a running `shoal dev`.
    DevStack(PathBuf),
    /// Nothing said otherwise.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Env(variable) => write!(f, "{variable}"),
            Origin::Config { path, profile: None } => write!(f, "{}", path.display()),
            Origin::Config { path, profile: Some(profile) } => write!(f, "{}, profile {profile}", path.display()),
            Origin::DevStack(path) => write!(f, "the running shoal dev, {}", path.display()),
            Origin::Default => write!(f, "the default"),
        }
    }
}

/// The gateway user commands talk to, and the key they send.
#[derive(Debug)]
pub(crate) struct Target {
    /// The gateway's base URL, without a trailing slash.
    pub(crate) gateway: String,
    /// Where it was named.
    pub(crate) gateway_from: Origin,
    /// The key and where it was found.
    pub(crate) api_key: Option<(String, Origin)>,
}

impl ApiArgs {
    /// The gateway and key: each from its flag, else its environment variable, else the config
    /// file, else the running `shoal dev` of `home`. That stack's local key is sent to that stack
    /// only.
    pub(crate) fn resolve(&self, home: &Home) -> anyhow::Result<Target> {
        let given = |value: &str, flag, variable| {
            // clap merges a flag and its variable; a variable holding the value named it.
            if std::env::var(variable).is_ok_and(|set| set == value) {
                Origin::Env(variable)
            } else {
                Origin::Flag(flag)
            }
        };
        let file = self.config.load()?;
        let from_file = |loaded: &Loaded| Origin::Config { path: loaded.path.clone(), profile: loaded.profile.clone() };
        let dev = home.endpoints();
        let dev_file = || Origin::DevStack(home.endpoints_file());
        let (gateway, gateway_from) = if let Some(gateway) = &self.gateway {
            (gateway.clone(), given(gateway, "--gateway", "SHOAL_GATEWAY"))
        } else if let Some((gateway, loaded)) =
            file.as_ref().and_then(|loaded| Some((loaded.settings.gateway.clone()?, loaded)))
        {
            (gateway, from_file(loaded))
        } else if let Some(endpoints) = &dev {
            (endpoints.gateway.clone(), dev_file())
        } else {
            (DEFAULT_GATEWAY.to_string(), Origin::Default)
        };
        let gateway = gateway.trim_end_matches('/').to_string();
        let api_key = if let Some(key) = &self.api_key {
            Some((key.clone(), given(key, "--api-key", "SHOAL_API_KEY")))
        } else if let Some((key, loaded)) =
            file.as_ref().and_then(|loaded| Some((loaded.settings.api_key.clone()?, loaded)))
        {
            Some((key, from_file(loaded)))
        } else {
            dev.filter(|endpoints| endpoints.gateway.trim_end_matches('/') == gateway)
                .and_then(|endpoints| endpoints.api_key)
                .map(|key| (key, dev_file()))
        };
        Ok(Target { gateway, gateway_from, api_key })
    }
}

/// The gateway at one base URL.
pub(crate) struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// A client of the gateway `args` name, sending the key they name ([`ApiArgs::resolve`]).
    pub(crate) fn new(home: &Home, args: &ApiArgs) -> anyhow::Result<Api> {
        let target = args.resolve(home)?;
        let mut headers = HeaderMap::new();
        if let Some((key, from)) = &target.api_key {
            let mut value = HeaderValue::try_from(format!("Bearer {key}"))
                .with_context(|| format!("the API key from {from} is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder().default_headers(headers).build().context("making the HTTP client")?;
        Ok(Api { base: target.gateway, http })
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

    /// The job `id` as soon as it is terminal, or as it is after `wait` (a long-poll:
    /// `GET /v1/jobs/{id}?wait=`); `None` when the gateway could not be reached or answered with
    /// a server error, for the caller to ask again.
    pub(crate) async fn job_when_terminal(&self, id: &str, wait: Duration) -> anyhow::Result<Option<JobStatus>> {
        let request = self.http.get(format!("{}/v1/jobs/{id}", self.base)).query(&[("wait", millis(wait))]);
        match request.timeout(wait + LONG_POLL_GRACE).send().await {
            Ok(response) if !response.status().is_server_error() => decode(response).await.map(Some),
            Ok(_) | Err(_) => Ok(None),
        }
    }

    /// Returns once job `id`'s result would be answered — it ended, and the verifier had its say
    /// — or after `wait` (a long-poll on `GET /v1/jobs/{id}/result?wait=`): true when the
    /// gateway answered, false when it could not be reached or answered with a server error.
    pub(crate) async fn await_result(&self, id: &str, wait: Duration) -> anyhow::Result<bool> {
        let request = self.http.get(format!("{}/v1/jobs/{id}/result", self.base)).query(&[("wait", millis(wait))]);
        match request.timeout(wait + LONG_POLL_GRACE).send().await {
            // 409 is the answer at the end of the wait; 422 a job that ended without a result.
            Ok(response) if matches!(response.status().as_u16(), 200 | 409 | 422) => Ok(true),
            Ok(response) if !response.status().is_server_error() => decode::<Value>(response).await.map(|_| true),
            Ok(_) | Err(_) => Ok(false),
        }
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

    /// Creates a pipeline from `spec`, a JSON pipeline spec as written; returns its status (a
    /// new pipeline's, or the one an earlier use of the key created).
    pub(crate) async fn create_pipeline(
        &self,
        spec: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<PipelineStatus> {
        let mut request =
            self.http.post(format!("{}/v1/pipelines", self.base)).header(CONTENT_TYPE, "application/json").body(spec);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.with_context(|| self.unreachable())?;
        decode(response).await
    }

    /// Pipeline `id`'s state and every stage's units.
    pub(crate) async fn pipeline(&self, id: &str) -> anyhow::Result<PipelineStatus> {
        let response = self
            .http
            .get(format!("{}/v1/pipelines/{id}", self.base))
            .send()
            .await
            .with_context(|| self.unreachable())?;
        decode(response).await
    }

    /// Cancels pipeline `id`; returns its status as it is now.
    pub(crate) async fn cancel_pipeline(&self, id: &str) -> anyhow::Result<PipelineStatus> {
        let response = self
            .http
            .delete(format!("{}/v1/pipelines/{id}", self.base))
            .send()
            .await
            .with_context(|| self.unreachable())?;
        decode(response).await
    }

    /// The live workers.
    pub(crate) async fn workers(&self) -> anyhow::Result<Vec<shoal_jobs::Member>> {
        let response =
            self.http.get(format!("{}/v1/workers", self.base)).send().await.with_context(|| self.unreachable())?;
        let body: Value = decode(response).await?;
        Ok(serde_json::from_value(body["workers"].clone())?)
    }

    /// The bytes of one of job `id`'s files (`stdout`, `stderr`, `output/PATH`), as the gateway
    /// reads them from its content sources (`GET /v1/jobs/{id}/files/NAME`).
    pub(crate) async fn job_file(&self, id: &str, name: &str) -> anyhow::Result<Bytes> {
        let response = self
            .http
            .get(format!("{}/v1/jobs/{id}/files/{name}", self.base))
            .send()
            .await
            .with_context(|| self.unreachable())?;
        let status = response.status();
        let body = response.bytes().await.context("reading the gateway's answer")?;
        if !status.is_success() {
            bail!("the gateway answered {status}: {}", error_message(&body));
        }
        Ok(body)
    }

    fn unreachable(&self) -> String {
        format!(
            "cannot reach the gateway at {} (is `shoal dev` running? set --gateway, SHOAL_GATEWAY or the config \
             file's; `shoal config show` says which is used)",
            self.base
        )
    }
}

/// How much longer than its wait a long-poll may take before the client gives up on it.
const LONG_POLL_GRACE: Duration = Duration::from_secs(30);

/// A `wait` parameter of `duration`.
fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The body of a 2xx answer, or the API's error message.
async fn decode<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let body = response.bytes().await.context("reading the gateway's answer")?;
    if !status.is_success() {
        bail!("the gateway answered {status}: {}", error_message(&body));
    }
    serde_json::from_slice(&body).context("the gateway's answer is not what this client expects")
}

/// The message of the API's error in `body`, after the field at fault when it names one and
/// the message does not (`stages.a.inputs[0].from: …`), or the body itself if it holds none.
fn error_message(body: &[u8]) -> String {
    let error = serde_json::from_slice::<Value>(body).ok();
    let message = error.as_ref().and_then(|error| error.pointer("/error/message")).and_then(Value::as_str);
    let field = error.as_ref().and_then(|error| error.pointer("/error/field")).and_then(Value::as_str);
    match (message, field) {
        (Some(message), Some(field)) if !message.starts_with(field) => format!("{field}: {message}"),
        (Some(message), _) => message.to_string(),
        (None, _) => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_message_names_its_field() {
        let error = r#"{"error": {"code": "invalid_spec", "message": "the stages form a cycle: a → b → a", "field": "stages.a.inputs[0].from"}}"#;
        assert_eq!(error_message(error.as_bytes()), "stages.a.inputs[0].from: the stages form a cycle: a → b → a");
        let named = br#"{"error": {"code": "invalid_spec", "message": "inputs[0].cid: invalid CID", "field": "inputs[0].cid"}}"#;
        assert_eq!(error_message(named), "inputs[0].cid: invalid CID", "not named twice");
        let plain = br#"{"error": {"code": "job_not_found", "message": "no job with id X"}}"#;
        assert_eq!(error_message(plain), "no job with id X");
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
    }
}
