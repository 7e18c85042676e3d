//! Job commands over the gateway's HTTP API: `run`, `status`, `logs`, `cancel`, `jobs list`,
//! `workers`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use shoal_content::source::{HttpGatewaySource, SourceChain};
use shoal_content::unixfs::ImportOptions;
use shoal_content::{unixfs, BlockSource, FsBlockStore, MemoryBlockStore};
use shoal_jobs::{Acceptance, Compared, ContentId, ExecutionOutcome, Job, JobState, JobStatus, VerificationOutcome};

use crate::api::{Api, ApiArgs};
use crate::home::Home;

/// `shoal run`.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// The program's CID (a WASI command module).
    #[arg(long)]
    program: String,
    /// An input: `CID` (mounted at /inputs) or `CID:/mount/path`, optionally named
    /// (`NAME=CID[:PATH]`, a NAME without `=`: it then appears as PATH/NAME). Repeatable.
    #[arg(long = "input", value_name = "[NAME=]CID[:PATH]")]
    inputs: Vec<String>,
    /// The export to call (default `_start`).
    #[arg(long)]
    entrypoint: Option<String>,
    /// An argument passed to the program after argv[0]. Repeatable.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable `KEY=VALUE`. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Fuel limit (about one unit per wasm instruction).
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory limit in bytes.
    #[arg(long)]
    memory_bytes: Option<u64>,
    /// Wall-time limit in milliseconds.
    #[arg(long)]
    wall_time_ms: Option<u64>,
    /// Limit on the bytes written to /outputs.
    #[arg(long)]
    output_bytes: Option<u64>,
    /// Run once per entry of the (first) input directory instead of once over it; with a
    /// GLOB, only the entries whose names match (`--each '*.TIF'`).
    #[arg(long, value_name = "GLOB", num_args = 0..=1, default_missing_value = "*", group = "fan_out")]
    each: Option<String>,
    /// Run once per `--input` instead of once over all of them; outputs are gathered under
    /// each input's name (an unnamed input is named by its CID).
    #[arg(long, group = "fan_out")]
    each_input: bool,
    /// With `--each` or `--each-input`: give each run up to N files (grouped by where their
    /// data is); the program then writes one output per file, /outputs/<name>.
    #[arg(long, value_name = "N", requires = "fan_out")]
    batch: Option<u32>,
    /// Run `--program` as an OCI container image (the CID of an image layout directory) with this
    /// command, one `--command` per word (`--command /bin/sh --command -c --command '…'`); a
    /// container job is nondeterministic, so `--nondeterministic` is implied.
    #[arg(long = "command", value_name = "WORD", allow_hyphen_values = true)]
    command: Vec<String>,
    /// Let the program see the host's clocks and randomness (random initialisation, shuffling):
    /// its honest runs then differ, so name how they are compared (`--tolerance`,
    /// `--comparator`) or `--verify none`.
    #[arg(long)]
    nondeterministic: bool,
    /// The inputs may come from Filecoin: a worker that buys finds them on storage providers
    /// when no free source has them, and pays from its wallet.
    #[arg(long)]
    filecoin: bool,
    /// With `--filecoin`: the most each input may cost ("0.002 FIL", "2000 attoFIL"); a
    /// retrieval above it fails the job `budget_exhausted`.
    #[arg(long, value_name = "AMOUNT", requires = "filecoin")]
    max_price: Option<String>,
    /// A file the program must write, relative to /outputs (the run fails `missing_output`
    /// without it). Repeatable.
    #[arg(long = "writes", value_name = "FILE")]
    writes: Vec<String>,
    /// When the verifier checks the result: `none`, `sampled`, `always`, or `replicated:N`
    /// (N executions on distinct workers) with an optional quorum, `replicated:N/K` (K of them
    /// must agree). The deployment's default unless given.
    #[arg(long, value_name = "MODE")]
    verify: Option<String>,
    /// Compare results by a number: `FILE#/json/pointer=TOL` or `FILE[column]=TOL` (every row of
    /// a CSV column), TOL an absolute tolerance or a relative one with `%` (`5%`). Its file is
    /// added to `--writes`. Repeatable.
    #[arg(long = "tolerance", value_name = "FIELD=TOL", group = "compare")]
    tolerances: Vec<String>,
    /// Compare results with this comparator program (a WASI module's CID; exit 0 = agree).
    #[arg(long, value_name = "CID", group = "compare")]
    comparator: Option<String>,
    /// Makes the submission idempotent: the same key and spec return the same job.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Run the program even if an identical run of yours was accepted already (by default its
    /// result answers at once, marked `memoised_from`).
    #[arg(long)]
    no_memoise: bool,
    /// Print the job id and return at once instead of waiting.
    #[arg(long)]
    no_wait: bool,
    /// Print the worker's result as soon as the job succeeds, before the verifier's verdict
    /// (labelled `pending`); by default `run` waits for the verdict.
    #[arg(long)]
    early: bool,
    /// Give up waiting after this many seconds (the job keeps running).
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    #[command(flatten)]
    api: ApiArgs,
}

/// `shoal status` / `shoal logs` / `shoal cancel`.
#[derive(Args)]
pub(crate) struct JobArgs {
    /// The job id.
    job: String,
    #[command(flatten)]
    api: ApiArgs,
}

impl RunArgs {
    /// The JSON job spec; limits not given are left to the server's defaults.
    fn spec(&self) -> anyhow::Result<Value> {
        let mut spec = Map::new();
        spec.insert("program".into(), json!(self.program));
        if let Some(entrypoint) = &self.entrypoint {
            spec.insert("entrypoint".into(), json!(entrypoint));
        }
        spec.insert("args".into(), json!(self.args));
        let mut env = Map::new();
        for pair in &self.env {
            let (key, value) = pair.split_once('=').with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
            env.insert(key.into(), json!(value));
        }
        spec.insert("env".into(), Value::Object(env));
        let inputs: Vec<Value> = self
            .inputs
            .iter()
            .map(|input| {
                // CIDs hold neither `=` nor `:`, so the first of each ends the name or the CID.
                let (name, rest) = match input.split_once('=') {
                    Some((name, rest)) => (Some(name), rest),
                    None => (None, input.as_str()),
                };
                let (cid, path) = match rest.split_once(':') {
                    Some((cid, path)) => (cid, Some(path)),
                    None => (rest, None),
                };
                let mut input = Map::new();
                input.insert("cid".into(), json!(cid));
                if let Some(path) = path {
                    input.insert("path".into(), json!(path));
                }
                if let Some(name) = name.or(self.each_input.then_some(cid)) {
                    input.insert("name".into(), json!(name));
                }
                if self.filecoin {
                    input.insert("source".into(), json!("filecoin"));
                }
                if let Some(max_price) = &self.max_price {
                    input.insert("max_price".into(), json!(max_price));
                }
                Value::Object(input)
            })
            .collect();
        spec.insert("inputs".into(), Value::Array(inputs));
        let mut limits = Map::new();
        let given = [
            ("fuel", self.fuel),
            ("memory_bytes", self.memory_bytes),
            ("wall_time_ms", self.wall_time_ms),
            ("output_bytes", self.output_bytes),
        ];
        for (name, value) in given {
            if let Some(value) = value {
                limits.insert(name.into(), json!(value));
            }
        }
        spec.insert("limits".into(), Value::Object(limits));
        let mut fan_out = Map::new();
        if let Some(glob) = &self.each {
            fan_out.insert("glob".into(), json!(glob));
        }
        if self.each_input {
            fan_out.insert("over".into(), json!("inputs"));
        }
        if let Some(batch) = self.batch {
            fan_out.insert("batch".into(), json!(batch));
        }
        if self.each.is_some() || self.each_input {
            spec.insert("fan_out".into(), Value::Object(fan_out));
        }
        if self.no_memoise {
            spec.insert("memoise".into(), json!(false));
        }
        if !self.command.is_empty() {
            spec.insert("runtime".into(), json!("oci"));
            spec.insert("command".into(), json!(self.command));
        }
        if self.nondeterministic || !self.command.is_empty() {
            spec.insert("determinism".into(), json!("nondeterministic"));
        }
        let mut writes = self.writes.clone();
        let fields = self.tolerances.iter().map(|t| tolerance_field(t)).collect::<anyhow::Result<Vec<_>>>()?;
        for field in &fields {
            let file = field["file"].as_str().expect("set just above").to_string();
            if !writes.contains(&file) {
                writes.push(file);
            }
        }
        if !writes.is_empty() {
            spec.insert("writes".into(), json!(writes));
        }
        if let Some(verification) = self.verification(fields)? {
            spec.insert("verification".into(), verification);
        }
        Ok(Value::Object(spec))
    }

    /// The `verification` of `--verify` and the comparison flags, if any is given; a comparison
    /// without `--verify` is checked `always`.
    fn verification(&self, fields: Vec<Value>) -> anyhow::Result<Option<Value>> {
        let compare = match (&self.comparator, fields.is_empty()) {
            (Some(program), _) => Some(json!({"kind": "comparator", "program": program})),
            (None, false) => Some(json!({"kind": "tolerance", "fields": fields})),
            (None, true) => None,
        };
        let mode = match (self.verify.as_deref(), &compare) {
            (None, None) => return Ok(None),
            (None, Some(_)) => "always",
            (Some(mode), _) => mode,
        };
        let mut verification = Map::new();
        match mode.split_once(':') {
            Some(("replicated", counts)) => {
                let (replicas, quorum) = match counts.split_once('/') {
                    Some((replicas, quorum)) => (replicas, Some(quorum)),
                    None => (counts, None),
                };
                let count = |text: &str| {
                    text.parse::<u32>().with_context(|| format!("--verify {mode:?}: {text:?} is not a count"))
                };
                verification.insert("mode".into(), json!("replicated"));
                verification.insert("replicas".into(), json!(count(replicas)?));
                if let Some(quorum) = quorum {
                    verification.insert("quorum".into(), json!(count(quorum)?));
                }
            }
            None if ["none", "sampled", "always"].contains(&mode) => {
                verification.insert("mode".into(), json!(mode));
            }
            _ => anyhow::bail!("--verify {mode:?}: expected none, sampled, always or replicated:N[/K]"),
        }
        if let Some(compare) = compare {
            verification.insert("compare".into(), compare);
        }
        Ok(Some(Value::Object(verification)))
    }
}

/// One `--tolerance FIELD=TOL` as a spec's tolerance field.
fn tolerance_field(flag: &str) -> anyhow::Result<Value> {
    let usage = || format!("--tolerance {flag:?}: expected FILE#/json/pointer=TOL or FILE[column]=TOL");
    let (field, tolerance) = flag.rsplit_once('=').with_context(usage)?;
    let mut out = Map::new();
    if let Some((file, pointer)) = field.split_once('#') {
        out.insert("file".into(), json!(file));
        out.insert("json".into(), json!(pointer));
    } else if let Some((file, column)) = field.strip_suffix(']').and_then(|f| f.split_once('[')) {
        out.insert("file".into(), json!(file));
        out.insert("column".into(), json!(column));
    } else {
        anyhow::bail!(usage());
    }
    let number = |text: &str| text.trim().parse::<f64>().with_context(usage);
    match tolerance.strip_suffix('%') {
        Some(percent) => out.insert("relative".into(), json!(number(percent)? / 100.0)),
        None => out.insert("absolute".into(), json!(number(tolerance)?)),
    };
    Ok(Value::Object(out))
}

/// How long one long-poll of `shoal run` waits for the job to end.
const LONG_POLL: Duration = Duration::from_secs(30);
/// How often `shoal run` asks for a fan-out's progress.
const FAN_OUT_REFRESH: Duration = Duration::from_secs(1);
/// The first and the longest pause before `shoal run` asks a gateway that did not answer again.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// `shoal run`: submits, then (unless `--no-wait`) shows progress until the job ends and prints
/// the output CID (with `--json`: the job as `status` shows it). Exits 1 if the job failed.
pub(crate) async fn run(home: &Home, args: RunArgs, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(home, &args.api)?;
    let job = api.submit(&args.spec()?, args.idempotency_key.as_deref()).await?;
    if args.no_wait {
        if json {
            crate::print_json(&job)?;
        } else {
            println!("{}", job.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match &job.memoised_from {
        Some(from) => eprintln!("job {} answered from job {from}, an identical run already accepted", job.id),
        None => eprintln!("job {} submitted (shard {})", job.id, job.shard),
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let id = job.id.clone();
    let mut status = api.job(&id).await?;
    let mut reconnect = RECONNECT_FIRST;
    let status = loop {
        let JobStatus { job, tasks, .. } = &status;
        // A success's acceptance, or a failure the program would meet anywhere, is final once
        // the verifier has checked it.
        let awaiting_verdict = !args.early && job.state.is_terminal() && !job.is_final();
        match tasks {
            // The bar counts files; with batches, the tasks they run in are shown beside it.
            Some(tasks) if !job.state.is_terminal() => {
                if bar.length() != Some(tasks.total) {
                    bar.set_style(
                        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} files {msg}")
                            .expect("a valid template"),
                    );
                    bar.set_length(tasks.total);
                }
                bar.set_position(tasks.succeeded + tasks.failed);
                let mut message = Vec::new();
                if tasks.failed > 0 {
                    message.push(format!("{} failed", tasks.failed));
                }
                if tasks.tasks != tasks.total {
                    message.push(format!("{} of {} tasks done", tasks.tasks_finished, tasks.tasks));
                }
                bar.set_message(if message.is_empty() { String::new() } else { format!("({})", message.join(", ")) });
            }
            _ if awaiting_verdict => bar.set_message(format!("job {} {}; awaiting the verifier", job.id, job.state)),
            _ => bar.set_message(format!("job {} {}", job.id, describe(job))),
        }
        if job.state.is_terminal() && !awaiting_verdict {
            if let Some(tasks) = tasks {
                eprintln!(
                    "{} of {} files succeeded, {} failed ({} tasks)",
                    tasks.succeeded, tasks.total, tasks.failed, tasks.tasks
                );
                for failure in &tasks.failures {
                    eprintln!("  {} ({}): {}", failure.name, failure.reason, failure.message);
                }
            }
            break status;
        }
        if Instant::now() >= deadline {
            bar.finish_and_clear();
            let state = if awaiting_verdict { "awaiting the verifier".to_string() } else { job.state.to_string() };
            bail!(
                "job {} is still {state} after {} s; follow it with `shoal status {}` (or run with --early)",
                job.id,
                args.timeout_secs,
                job.id
            );
        }
        // Told by the gateway as soon as the job ends (or the verifier decides), not polled; a
        // fan-out's progress is asked for every second, so that its bar moves.
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.min(if tasks.is_some() { FAN_OUT_REFRESH } else { LONG_POLL });
        let next = if awaiting_verdict {
            if api.await_result(&id, wait).await? {
                api.job_when_terminal(&id, Duration::ZERO).await?
            } else {
                None
            }
        } else {
            api.job_when_terminal(&id, wait).await?
        };
        match next {
            Some(next) => {
                status = next;
                reconnect = RECONNECT_FIRST;
            }
            None => {
                bar.set_message(format!("job {id}: the gateway does not answer; asking again"));
                tokio::time::sleep(reconnect.min(left)).await;
                reconnect = (reconnect * 2).min(RECONNECT_MAX);
            }
        }
    };
    bar.finish_and_clear();
    report(&status, json)
}

/// A short description of where a job is.
fn describe(job: &Job) -> String {
    match (job.state, job.executions.last()) {
        (JobState::Running, Some(execution)) => format!("running on {}", execution.worker),
        (state, _) => state.to_string(),
    }
}

/// One comparison the verdict rests on, in a line.
fn describe_compared(compared: &Compared) -> String {
    let verdict = |agree: bool| if agree { "agree" } else { "DISAGREE" };
    match compared {
        Compared::Exact { against, agree, differs } if differs.is_empty() => {
            format!("exact, with {against}: {}", verdict(*agree))
        }
        Compared::Exact { against, agree, differs } => {
            format!("exact, with {against}: {} ({} differ)", verdict(*agree), differs.join(", "))
        }
        Compared::Tolerance { against, agree, checks } => {
            let checks: Vec<String> = checks
                .iter()
                .map(|c| match (&c.problem, c.reported, c.other) {
                    (Some(problem), _, _) => format!("{}: {problem}", c.field),
                    (None, Some(reported), Some(other)) => {
                        format!(
                            "{} {reported} vs {other}{}",
                            c.field,
                            if c.within { "" } else { " (out of tolerance)" }
                        )
                    }
                    _ => c.field.clone(),
                })
                .collect();
            format!("tolerance, with {against}: {} — {}", verdict(*agree), checks.join("; "))
        }
        Compared::Comparator { against, agree, program, exit_code, said, .. } => {
            format!("comparator {program}, with {against}: {} (exit {exit_code}) {said}", verdict(*agree))
        }
    }
}

/// Prints a finished job's result (output CID, or with `json` the whole status, on stdout) or
/// failure; the exit code says which.
fn report(status: &JobStatus, json: bool) -> anyhow::Result<ExitCode> {
    let job = &status.job;
    if json {
        crate::print_json(status)?;
    }
    match (job.state, &job.result, &job.failure) {
        (JobState::Succeeded, Some(result), _) => {
            let acceptance = job.acceptance().unwrap_or(Acceptance::Pending);
            let label =
                if acceptance.is_accepted() { "accepted".to_string() } else { format!("NOT accepted: {acceptance}") };
            eprintln!(
                "job {} succeeded ({acceptance}, {label}): exit code {}, {} fuel, fetch {} ms, run {} ms",
                job.id, result.exit_code, result.fuel_consumed, result.fetch_ms, result.run_ms
            );
            for compared in job.verification.iter().flat_map(|v| &v.compared) {
                eprintln!("  {}", describe_compared(compared));
            }
            if !json {
                println!("{}", result.output);
            }
            Ok(ExitCode::SUCCESS)
        }
        (_, _, Some(failure)) => {
            eprintln!("job {} {} ({}): {}", job.id, job.state, failure.reason, failure.message);
            Ok(ExitCode::FAILURE)
        }
        _ => {
            eprintln!("job {} ended {}", job.id, job.state);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `shoal status JOB`.
pub(crate) async fn status(home: &Home, args: JobArgs, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(home, &args.api)?;
    let status = api.job(&args.job).await?;
    if json {
        crate::print_json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    let JobStatus { job, tasks, acceptance, webhook_attempts } = status;
    println!("job        {}", job.id);
    println!("state      {}", job.state);
    println!("program    {}", job.spec.program);
    for input in &job.spec.inputs {
        println!("input      {} at {}", input.cid, input.path);
    }
    println!("invocation {}", job.invocation);
    if let Some(result) = &job.result {
        println!("output     {}", result.output);
    }
    if let Some(acceptance) = acceptance {
        let accepted = if acceptance.is_accepted() { "accepted" } else { "not accepted" };
        println!("acceptance {acceptance} ({accepted})");
    }
    if let Some(failure) = &job.failure {
        println!("failure    {}: {}", failure.reason, failure.message);
    }
    for attempt in &webhook_attempts {
        let answer = attempt.status.map_or(String::new(), |status| format!(" ({status})"));
        let error = attempt.error.as_deref().map_or(String::new(), |error| format!(": {error}"));
        println!("webhook    {} #{} {:?}{answer}{error}", attempt.event.as_str(), attempt.attempt, attempt.outcome);
    }
    if let Some(tasks) = &tasks {
        println!(
            "files      {} of {}: {} succeeded, {} failed ({} of {} tasks done)",
            tasks.total - tasks.pending(),
            tasks.total,
            tasks.succeeded,
            tasks.failed,
            tasks.tasks_finished,
            tasks.tasks
        );
    }
    if let Some(verification) = &job.verification {
        let verdict = match &verification.outcome {
            VerificationOutcome::Agreed => "agreed".to_string(),
            VerificationOutcome::Vouched => "receipt valid; not in the sample, not re-executed".to_string(),
            VerificationOutcome::Replicated { workers } => {
                format!("replicated: {} distinct workers got the same result ({})", workers.len(), workers.join(", "))
            }
            VerificationOutcome::Disagreed { worker, recomputed, .. } => {
                format!(
                    "DISAGREED: {worker} reported a result the verifier could not reproduce (it got {})",
                    recomputed.output
                )
            }
            VerificationOutcome::Contradicted { worker, failure, .. } => {
                format!("CONTRADICTED: {worker} reported success; re-execution failed ({})", failure.reason)
            }
            VerificationOutcome::Refused { worker, reason } => format!("REFUSED: {worker}'s receipt: {reason}"),
            VerificationOutcome::Denied { worker, failure } => {
                format!("DENIED: {worker} reported a failure ({}); re-execution succeeded", failure.reason)
            }
            VerificationOutcome::Inconclusive { reason } => format!("inconclusive: {reason}"),
        };
        println!("verified   by {}: {verdict}", verification.verifier);
        if !verification.replicas.is_empty() {
            println!("replicas   {}", verification.replicas.join(", "));
        }
    }
    for execution in &job.executions {
        let outcome = match &execution.outcome {
            None => "running".to_string(),
            Some(ExecutionOutcome::Completed(result)) => {
                format!("exit {} output {} fuel {}", result.exit_code, result.output, result.fuel_consumed)
            }
            Some(ExecutionOutcome::Failed(failure)) => format!("failed ({}): {}", failure.reason, failure.message),
        };
        let took =
            execution.finished_at_ms.map(|end| format!(" in {} ms", end.saturating_sub(execution.started_at_ms)));
        println!("execution  {} on {}{}: {}", execution.id, execution.worker, took.unwrap_or_default(), outcome);
        if let Some(receipt) = &execution.receipt {
            println!("receipt    {} signed by {}", receipt.cid(), receipt.receipt.key);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal logs JOB`: the latest execution's stdout, then its stderr (with `--json`, both as
/// text in one document, beside their CIDs).
pub(crate) async fn logs(home: &Home, args: JobArgs, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(home, &args.api)?;
    let job = api.job(&args.job).await?.job;
    let Some(execution) = job.executions.iter().rev().find(|e| e.outcome.is_some()) else {
        bail!("job {} has no finished execution yet ({})", job.id, job.state);
    };
    let (stdout, stderr) = match execution.outcome.as_ref().expect("found by having one") {
        ExecutionOutcome::Completed(result) => (Some(&result.stdout), Some(&result.stderr)),
        ExecutionOutcome::Failed(failure) => (None, failure.stderr.as_ref()),
    };
    let mut sources: Vec<Arc<dyn BlockSource>> = Vec::new();
    if let Some(endpoints) = home.endpoints() {
        sources.push(Arc::new(HttpGatewaySource::new(&endpoints.content)?));
    }
    let store = FsBlockStore::open(home.blocks())?;
    let reader = Arc::new(SourceChain::new(sources).with_cache(Arc::new(store)));
    // The local store and the dev stack's content server first; a remote deployment's logs
    // come through its gateway, whose bytes are checked here against the execution's CID
    // (logs are imported with the default profile, so importing them again gives that CID).
    let read = |cid: &ContentId, name: &'static str| {
        let (reader, api, job) = (reader.clone(), &api, &job.id);
        let cid = *cid.cid();
        async move {
            let local: Result<Vec<Bytes>, _> = unixfs::cat(reader, cid).try_collect().await;
            let bytes = match local {
                Ok(chunks) => return anyhow::Ok(chunks.concat()),
                Err(local) => api
                    .job_file(job, name)
                    .await
                    .with_context(|| format!("reading {name} ({cid}): not here ({local}), nor through the gateway"))?,
            };
            let again = unixfs::import_reader(&bytes[..], &ImportOptions::default(), &MemoryBlockStore::new())
                .await
                .with_context(|| format!("hashing the gateway's {name}"))?;
            if again.root != cid {
                bail!("the gateway's {name} of job {job} is {}, not this execution's {cid}", again.root);
            }
            anyhow::Ok(bytes.to_vec())
        }
    };
    let stdout_text = match stdout {
        Some(cid) => Some(String::from_utf8_lossy(&read(cid, "stdout").await?).into_owned()),
        None => None,
    };
    let stderr_text = match stderr {
        Some(cid) => Some(String::from_utf8_lossy(&read(cid, "stderr").await?).into_owned()),
        None => None,
    };
    if json {
        crate::print_json(&json!({
            "job": job.id,
            "execution": execution.id,
            "stdout": stdout_text,
            "stdout_cid": stdout,
            "stderr": stderr_text,
            "stderr_cid": stderr,
        }))?;
    } else {
        print!("{}", stdout_text.unwrap_or_default());
        eprint!("{}", stderr_text.unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal jobs list`.
#[derive(Args)]
pub(crate) struct ListArgs {
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    #[arg(long)]
    state: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    api: ApiArgs,
}

/// `shoal jobs`.
#[derive(clap::Subcommand)]
pub(crate) enum JobsCommand {
    /// List the jobs the key may see (an operator's: every tenant's), newest first.
    List(ListArgs),
}

/// `shoal jobs list`: a line per job (id, state, creation time, program, acceptance or failure
/// reason), following the listing's pages up to `--limit`; with `--json`, `{"jobs": [...]}`.
pub(crate) async fn jobs(home: &Home, command: JobsCommand, json: bool) -> anyhow::Result<ExitCode> {
    let JobsCommand::List(args) = command;
    let api = Api::new(home, &args.api)?;
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut left = args.limit;
    while left > 0 {
        let mut query = vec![("limit", left.min(500).to_string())];
        if let Some(state) = &args.state {
            query.push(("state", state.clone()));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page = api.jobs(&query).await?;
        let jobs = page["jobs"].as_array().cloned().unwrap_or_default();
        for job in jobs.iter().take(left) {
            if json {
                listed.push(job.clone());
            } else {
                let text = |field: &str| job[field].as_str().unwrap_or("-").to_string();
                let verdict = job["acceptance"].as_str().or(job["failure_reason"].as_str()).unwrap_or("-");
                println!("{}\t{}\t{}\t{}\t{verdict}", text("id"), text("state"), job["created_at_ms"], text("program"));
            }
        }
        left = left.saturating_sub(jobs.len());
        match page["next_cursor"].as_str() {
            Some(next) if !jobs.is_empty() => cursor = Some(next.to_string()),
            _ => break,
        }
    }
    if json {
        crate::print_json(&json!({ "jobs": listed }))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal cancel`: cancels a job (and a fanned-out job's tasks).
pub(crate) async fn cancel(home: &Home, args: JobArgs, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(home, &args.api)?;
    let status = api.cancel(&args.job).await?;
    if json {
        crate::print_json(&status)?;
    } else {
        println!("{} {}", status.job.id, status.job.state);
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal workers`.
#[derive(Args)]
pub(crate) struct WorkersArgs {
    #[command(flatten)]
    api: ApiArgs,
}

/// `shoal workers`: the live workers, one per line (with `--json`, `{"workers": [...]}`).
pub(crate) async fn workers(home: &Home, args: WorkersArgs, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::new(home, &args.api)?;
    let workers = api.workers().await?;
    if json {
        crate::print_json(&json!({ "workers": workers }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = shoal_jobs::now_ms();
    for member in workers {
        let info = &member.info;
        let labels: Vec<String> = info.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{}	capacity {}	cache {} MiB	seen {} ms ago	{}",
            info.id,
            info.capacity,
            info.cache_bytes >> 20,
            now.saturating_sub(member.last_seen_ms),
            labels.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        args: RunArgs,
    }

    fn spec(args: &[&str]) -> Value {
        let run = Run::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
        run.args.spec().unwrap()
    }

    const A: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    const B: &str = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354";

    #[test]
    fn inputs_take_an_optional_name_and_path() {
        let spec =
            spec(&["--program", A, "--input", A, "--input", &format!("{B}:/data"), "--input", &format!("x:y={A}:/p")]);
        assert_eq!(
            spec["inputs"],
            json!([{"cid": A}, {"cid": B, "path": "/data"}, {"cid": A, "path": "/p", "name": "x:y"}]),
            "the first = ends the name, the first : after it the CID"
        );
        assert!(spec.get("fan_out").is_none());
    }

    #[test]
    fn filecoin_inputs_carry_their_source_and_price() {
        let bought = spec(&["--program", A, "--input", A, "--input", B, "--filecoin", "--max-price", "0.002 FIL"]);
        let input = |cid| json!({"cid": cid, "source": "filecoin", "max_price": "0.002 FIL"});
        assert_eq!(bought["inputs"], json!([input(A), input(B)]));
        let parsed = Run::try_parse_from(["run", "--program", A, "--max-price", "1 FIL"]);
        assert!(parsed.is_err(), "--max-price without --filecoin");
    }

    #[test]
    fn each_and_each_input_fan_out_with_an_optional_batch() {
        let each = spec(&["--program", A, "--input", B, "--each", "*.tif", "--batch", "8"]);
        assert_eq!(each["fan_out"], json!({"glob": "*.tif", "batch": 8}));
        assert_eq!(spec(&["--program", A, "--input", B, "--each"])["fan_out"], json!({"glob": "*"}));
        let inputs = spec(&["--program", A, "--input", &format!("one={A}"), "--input", B, "--each-input"]);
        assert_eq!(inputs["fan_out"], json!({"over": "inputs"}));
        assert_eq!(inputs["inputs"], json!([{"cid": A, "name": "one"}, {"cid": B, "name": B}]), "unnamed: by CID");
    }

    #[test]
    fn nondeterministic_jobs_name_their_comparison() {
        let tolerant = spec(&[
            "--program",
            A,
            "--nondeterministic",
            "--writes",
            "weights.bin",
            "--tolerance",
            "metrics.json#/held_out_accuracy=0.03",
            "--tolerance",
            "scores.csv[loss]=5%",
        ]);
        assert_eq!(tolerant["determinism"], "nondeterministic");
        assert_eq!(tolerant["writes"], json!(["weights.bin", "metrics.json", "scores.csv"]));
        assert_eq!(
            tolerant["verification"],
            json!({"mode": "always", "compare": {"kind": "tolerance", "fields": [
                {"file": "metrics.json", "json": "/held_out_accuracy", "absolute": 0.03},
                {"file": "scores.csv", "column": "loss", "relative": 0.05},
            ]}})
        );
        let quorum = spec(&["--program", A, "--verify", "replicated:3/2", "--comparator", B]);
        assert_eq!(
            quorum["verification"],
            json!({"mode": "replicated", "replicas": 3, "quorum": 2, "compare": {"kind": "comparator", "program": B}})
        );
        assert_eq!(spec(&["--program", A, "--verify", "none"])["verification"], json!({"mode": "none"}));
        let container = spec(&[
            "--program",
            B,
            "--command",
            "/bin/sh",
            "--command",
            "-c",
            "--command",
            "wc -l",
            "--verify",
            "none",
        ]);
        assert_eq!(
            (&container["runtime"], &container["command"], &container["determinism"]),
            (&json!("oci"), &json!(["/bin/sh", "-c", "wc -l"]), &json!("nondeterministic"))
        );
        assert!(spec(&["--program", A]).get("runtime").is_none(), "wasm, the default, is left out");
        assert!(spec(&["--program", A]).get("verification").is_none(), "the deployment's default");
        let bad = |args: &[&str]| {
            let run = Run::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
            run.args.spec().unwrap_err().to_string()
        };
        assert!(bad(&["--program", A, "--tolerance", "metrics.json=0.1"]).contains("expected FILE#/json/pointer=TOL"));
        assert!(bad(&["--program", A, "--verify", "often"]).contains("expected none, sampled, always"));
        assert!(bad(&["--program", A, "--verify", "replicated:x"]).contains("is not a count"));
    }

    #[test]
    fn batch_needs_a_fan_out_and_the_two_fan_outs_exclude_each_other() {
        let parse = |args: &[&str]| Run::try_parse_from(std::iter::once("run").chain(args.iter().copied())).is_ok();
        assert!(!parse(&["--program", A, "--batch", "4"]));
        assert!(!parse(&["--program", A, "--each", "--each-input"]));
        assert!(parse(&["--program", A, "--each-input", "--batch", "4"]));
    }
}
