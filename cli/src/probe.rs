//! `shoal probe URL`: a health check for containers, whose image carries no curl.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;

/// `shoal probe`.
#[derive(Args)]
pub(crate) struct ProbeArgs {
    /// The URL to get (`http://127.0.0.1:8080/healthz`); healthy when it answers 2xx.
    url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout_secs: u64,
}

/// Exits 0 when the URL answers 2xx in time, 1 (saying why) otherwise.
pub(crate) async fn run(args: ProbeArgs, json: bool) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
        .context("making the HTTP client")?;
    let response = http.get(&args.url).send().await.with_context(|| format!("getting {}", args.url))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{} answered {status}", args.url);
    }
    if json {
        crate::print_json(&json!({ "url": args.url, "status": status.as_u16() }))?;
    }
    Ok(ExitCode::SUCCESS)
}
