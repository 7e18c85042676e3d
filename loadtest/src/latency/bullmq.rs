//! The queue baseline: BullMQ no-op jobs at the same rates, producer and worker in one Node
//! process (`loadtest/bullmq/latency.mjs`, installed with `npm ci`), against a `redis-server` of
//! its own started here with the same build and settings as Shoal's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use shoal_jobs::{Fsync, RedisServer};

use crate::error::{LoadtestError, Result};
use crate::latency::options::LatencyOptions;
use crate::latency::step::{StepFigures, StepSamples};

/// One rate as the script reports it.
#[derive(Debug, Deserialize)]
struct ScriptStep {
    #[serde(flatten)]
    samples: StepSamples,
    /// Submissions BullMQ refused.
    add_errors: usize,
    cpu: ScriptCpu,
    /// Voluntary context switches by process (`node`, `redis`).
    #[serde(default)]
    switches: BTreeMap<String, u64>,
    loadavg: (f64, f64),
}

#[derive(Debug, Deserialize)]
struct ScriptCpu {
    node_s: f64,
    redis_s: f64,
}

#[derive(Debug, Deserialize)]
struct ScriptRun {
    bullmq: String,
    ioredis: String,
    node: String,
    concurrency: usize,
    steps: Vec<ScriptStep>,
}

/// The baseline's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    /// `bullmq`, `ioredis` and Node.js versions.
    pub versions: String,
    /// Worker concurrency.
    pub concurrency: usize,
    /// Each rate's figures.
    pub steps: Vec<StepFigures>,
}

/// The baseline's directory: `--bullmq-dir`, else the repository's `loadtest/bullmq`.
fn directory(options: &LatencyOptions) -> PathBuf {
    options.bullmq_dir.clone().unwrap_or_else(|| shoal_testkit::repo_root().join("loadtest/bullmq"))
}

/// Runs the baseline at every rate of `options`.
pub async fn run(options: &LatencyOptions) -> Result<Baseline> {
    let dir = directory(options);
    if !dir.join("node_modules/bullmq").is_dir() {
        return Err(LoadtestError::Setup(format!(
            "{}/node_modules has no bullmq: run `npm ci --prefix {}` (make js-peers)",
            dir.display(),
            dir.display()
        )));
    }
    let home = tempfile::tempdir().map_err(|e| LoadtestError::io("creating the baseline's Redis directory", e))?;
    let redis_dir = home.path().join("redis");
    let redis = tokio::task::spawn_blocking(move || RedisServer::start(&redis_dir, Fsync::EverySec))
        .await
        .map_err(|e| LoadtestError::Setup(format!("starting the baseline's redis-server: {e}")))?
        .map_err(|e| LoadtestError::Setup(format!("starting the baseline's redis-server: {e}")))?;
    let rates: Vec<String> = options.rates.iter().map(|r| r.to_string()).collect();
    let output = tokio::process::Command::new(&options.node)
        .arg(dir.join("latency.mjs"))
        .args(["--redis", &redis.url()])
        .args(["--rates", &rates.join(",")])
        .args(["--secs", &options.secs.to_string()])
        .args(["--drain-secs", &options.drain_secs.to_string()])
        .args(["--concurrency", &options.bullmq_concurrency.to_string()])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| LoadtestError::io(format!("running {} latency.mjs", options.node.display()), e))?;
    drop(redis);
    if !output.status.success() {
        return Err(LoadtestError::Setup(format!("the BullMQ baseline exited with {}", output.status)));
    }
    let run: ScriptRun = serde_json::from_slice(&output.stdout)
        .map_err(|e| LoadtestError::Setup(format!("reading the BullMQ baseline's report: {e}")))?;
    Ok(baseline_of(run))
}

fn baseline_of(run: ScriptRun) -> Baseline {
    let steps = run
        .steps
        .into_iter()
        .map(|step| {
            let cpu = BTreeMap::from([("node".to_string(), step.cpu.node_s), ("redis".to_string(), step.cpu.redis_s)]);
            let mut figures =
                StepFigures::of(&step.samples, step.add_errors, 0).with_cpu(cpu).with_context_switches(step.switches);
            figures.loadavg = step.loadavg;
            figures
        })
        .collect();
    Baseline {
        versions: format!("bullmq {}, ioredis {}, Node.js {}", run.bullmq, run.ioredis, run.node),
        concurrency: run.concurrency,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_report_reads_as_step_figures() {
        let text = r#"{"bullmq":"6.7.6","ioredis":"5.9.3","node":"v20","concurrency":100,"steps":[
            {"offered_per_s":100,"planned":4,"added":4,"completed":4,"failed":0,"add_errors":0,
             "offered_secs":0.04,"elapsed_secs":0.05,"latencies_ms":[1,2,3,4],"unfinished_waits_ms":[],
             "done_at_s":[0.01,0.02,0.03,0.04],"backlog":[[0.5,0]],"cpu":{"node_s":0.2,"redis_s":0.1},
             "switches":{"node":30,"redis":10},"loadavg":[0.5,0.7]}]}"#;
        let baseline = baseline_of(serde_json::from_str(text).unwrap());
        assert_eq!(baseline.versions, "bullmq 6.7.6, ioredis 5.9.3, Node.js v20");
        let step = &baseline.steps[0];
        assert_eq!((step.submitted, step.completed, step.p50_ms, step.max_ms), (4, 4, 2.0, 4.0));
        assert!((step.cpu_ms_per_job - 75.0).abs() < 1e-9);
        assert!((step.switches_per_job - 10.0).abs() < 1e-9, "{}", step.switches_per_job);
        assert_eq!(step.loadavg, (0.5, 0.7));
        assert!(step.sustainable);
    }
}
