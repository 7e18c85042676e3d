//! A pipeline: named stages, each a program run as a job, taking the pipeline's inputs or
//! earlier stages' outputs; per-file fan-out, conditions on an upstream output, fan-in — and its
//! validation with field-level errors (`stages.remove.inputs[0].from`).
//!
//! The cloud pipeline — detect clouds in each scene, remove them only where the scene's
//! `stats.json` says more than 5 % is cloud, then one summary over every scene (`scenes` is the
//! directory of 10,000 scene windows from `docs/scale`; the programs are `programs/cloud-detect`,
//! `cloud-remove` and `cloud-summary`, whose defaults are the mount paths here):
//!
//! ```
//! # use shoal_jobs::PipelineSpec;
//! let body = br#"{
//!   "inputs": {"scenes": "bafybeich2jqf2mo3wunoql2dauxsziiyeieortywkxthbuedwd6bzy5ke4"},
//!   "stages": [
//!     {
//!       "name": "detect",
//!       "program": "bafybeiftif2ncpyug4t5by6wfapozrralajk6jnjqrqtuikt7chgi6afay",
//!       "inputs": [{"from": "pipeline.scenes", "path": "/inputs"}],
//!       "each": {"input": 0},
//!       "writes": ["mask.png", "preview.png", "stats.json"]
//!     },
//!     {
//!       "name": "remove",
//!       "program": "bafybeihhfatlgd5dk6pc3azzpvippjkx4f54s5j4hmniq6oc7z4qoc42q4",
//!       "inputs": [
//!         {"from": "pipeline.scenes", "path": "/inputs"},
//!         {"from": "detect", "path": "/mask"}
//!       ],
//!       "each": {"input": 0},
//!       "when": {"stage": "detect", "file": "stats.json", "field": "cloud_fraction", "op": "gt", "value": 0.05},
//!       "writes": ["clear.png"],
//!       "on_failure": "continue"
//!     },
//!     {
//!       "name": "summary",
//!       "program": "bafybeiffrrz5adsnhwoswdrcpwmst6nsd7a63lphymatjkrlmqwfjfibsy",
//!       "inputs": [
//!         {"from": "detect.all", "path": "/detected"},
//!         {"from": "remove.all", "path": "/cleared"}
//!       ]
//!     }
//!   ]
//! }"#;
//! let pipeline = PipelineSpec::from_json(body).unwrap();
//! let order: Vec<&str> = pipeline.stages_in_order().map(|stage| stage.name.as_str()).collect();
//! assert_eq!(order, ["detect", "remove", "summary"]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::spec::{check_relative, default_entrypoint, parse_object};
use super::{
    ContentId, Determinism, FanOut, FanOutOver, InputSpec, JobSpec, Limits, RetryPolicy, RuntimeKind,
    VerificationPolicy,
};
use crate::error::SpecError;

/// The most stages a pipeline may have.
const MAX_STAGES: usize = 256;

/// A pipeline: named inputs and the stages that run over them, in an order their inputs allow.
///
/// Only a validated pipeline exists (from [`PipelineSpec::from_json`]), so its stages' order is
/// computed once, on validation, and its fields are read through accessors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineSpec {
    /// The pipeline's inputs by name, each taken by stages as `pipeline.<name>`.
    inputs: BTreeMap<String, ContentId>,
    /// The stages, in the order written.
    stages: Vec<Stage>,
    /// Indices into `stages`, each after every stage it takes from or tests.
    #[serde(skip)]
    order: Vec<usize>,
}

/// The pipeline as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    #[serde(default)]
    inputs: BTreeMap<String, ContentId>,
    #[serde(default)]
    stages: Vec<Stage>,
}

/// One stage: a program run as a job (or as one task per file, with `each`), with the fields of
/// a [`JobSpec`] and the stage's place in the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The stage's name: 1 to 64 lowercase ASCII letters, digits, `-` or `_`, starting with a
    /// letter; not `pipeline`, which names the pipeline's inputs.
    pub name: String,
    /// What runs the program: `wasm` unless named, or `oci` (as a job's `runtime`).
    #[serde(default, skip_serializing_if = "RuntimeKind::is_wasm")]
    pub runtime: RuntimeKind,
    /// The WebAssembly module (a UnixFS file), or for `oci` the OCI image layout directory.
    pub program: ContentId,
    /// The export to call: `_start` unless named.
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// A container stage's command (as a job's `command`): required for `oci`, refused for `wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments after argv\[0\] (after `command`, for a container stage).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What the stage mounts, and from where.
    #[serde(default)]
    pub inputs: Vec<StageInput>,
    /// Resource limits of each execution.
    #[serde(default)]
    pub limits: Limits,
    /// How the stage's results are checked.
    #[serde(default)]
    pub verification: VerificationPolicy,
    /// Whether the stage's program runs pinned (the default) or sees the host's clocks and
    /// entropy.
    #[serde(default, skip_serializing_if = "Determinism::is_deterministic")]
    pub determinism: Determinism,
    /// How often each of the stage's jobs may be started.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Run once per file of a directory input (as a job's `fan_out`); its output is then one
    /// entry per file, and later stages may take it per file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<FanOut>,
    /// Run (for a file) only if an upstream stage's output says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// The files the stage writes, relative to its output (a file's output, when it fans out);
    /// when given, conditions may test only these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<Vec<String>>,
    /// What a failure of the stage (or of one of its files) does to the pipeline.
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// What a stage's failure does to the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The pipeline fails, and stages not yet started never start.
    #[default]
    Stop,
    /// The pipeline goes on: stages taking the failed output per file skip that file, and a
    /// fan-in gets the files that succeeded.
    Continue,
}

/// One input of a stage: where its content comes from and where the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageInput {
    /// `pipeline.<input>`, `<stage>` or `<stage>.all`.
    pub from: StageSource,
    /// Where the guest sees it (as [`InputSpec::path`]).
    pub path: String,
    /// The name it appears under inside `path` (as [`InputSpec::name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where a stage input's content comes from, written `pipeline.<input>`, `<stage>` or
/// `<stage>.all`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageSource {
    /// `pipeline.<input>`: one of the pipeline's inputs.
    Pipeline(String),
    /// `<stage>`: an earlier stage's output — per file, for a stage that fans out over the same
    /// files (entries are matched by name).
    Stage(String),
    /// `<stage>.all`: all of a fanned-out stage's output as one directory, an entry per file.
    All(String),
}

impl StageSource {
    /// The stage it takes from, if any.
    pub fn stage(&self) -> Option<&str> {
        match self {
            StageSource::Pipeline(_) => None,
            StageSource::Stage(stage) | StageSource::All(stage) => Some(stage),
        }
    }
}

impl fmt::Display for StageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageSource::Pipeline(input) => write!(f, "pipeline.{input}"),
            StageSource::Stage(stage) => f.write_str(stage),
            StageSource::All(stage) => write!(f, "{stage}.all"),
        }
    }
}

impl FromStr for StageSource {
    type Err = String;

    fn from_str(s: &str) -> Result<StageSource, String> {
        let source = match s.split_once('.') {
            Some(("pipeline", input)) => StageSource::Pipeline(input.to_string()),
            Some((stage, "all")) => StageSource::All(stage.to_string()),
            None => StageSource::Stage(s.to_string()),
            Some(_) => {
                return Err(format!("{s:?} must be pipeline.<input>, <stage> or <stage>.all"));
            }
        };
        let name = match &source {
            StageSource::Pipeline(name) | StageSource::Stage(name) | StageSource::All(name) => name,
        };
        check_name(name).map_err(|reason| format!("{s:?}: {reason}"))?;
        Ok(source)
    }
}

impl Serialize for StageSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StageSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A test on a JSON file an upstream stage wrote: `{"stage": "detect", "file": "stats.json",
/// "field": "cloud_fraction", "op": "gt", "value": 0.05}`. When either stage fans out, the test
/// is per file: the upstream stage's output for the same file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The upstream stage whose output holds the file.
    pub stage: String,
    /// The JSON file, relative to that output.
    pub file: String,
    /// The value tested: a dotted path (`counts.cloud`) or a JSON pointer (`/counts/cloud`).
    pub field: String,
    /// How the value is compared with `value`.
    pub op: Comparison,
    /// What it is compared with: a number, a string or a boolean (`gt`, `ge`, `lt` and `le`
    /// only a number).
    pub value: serde_json::Value,
}

/// A comparison of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
}

impl Condition {
    /// `field` as a JSON pointer (`counts.cloud` → `/counts/cloud`).
    pub fn pointer(&self) -> String {
        if self.field.starts_with('/') {
            return self.field.clone();
        }
        self.field.split('.').map(|key| format!("/{}", key.replace('~', "~0").replace('/', "~1"))).collect()
    }

    /// Field, value and operator, at `at` (`stages.remove.when`).
    fn validate(&self, at: &str) -> Result<(), SpecError> {
        let dotted = !self.field.starts_with('/');
        if self.field.is_empty() || self.field.len() > 256 || (dotted && self.field.split('.').any(str::is_empty)) {
            return field_error(
                &format!("{at}.field"),
                format!("{:?} must be a dotted path (a.b) or a JSON pointer (/a/b) of at most 256 bytes", self.field),
            );
        }
        let ordered = matches!(self.op, Comparison::Gt | Comparison::Ge | Comparison::Lt | Comparison::Le);
        match &self.value {
            serde_json::Value::Number(_) => Ok(()),
            serde_json::Value::String(_) | serde_json::Value::Bool(_) if !ordered => Ok(()),
            serde_json::Value::String(_) | serde_json::Value::Bool(_) => {
                field_error(&format!("{at}.value"), format!("{:?} compares numbers; got {}", self.op, self.value))
            }
            other => {
                field_error(&format!("{at}.value"), format!("must be a number, a string or a boolean, got {other}"))
            }
        }
    }
}

impl Stage {
    /// The stage's job over `inputs` (its [`StageInput`]s resolved to content, in order).
    pub fn job_spec(&self, inputs: Vec<InputSpec>) -> JobSpec {
        JobSpec {
            runtime: self.runtime,
            program: self.program,
            entrypoint: self.entrypoint.clone(),
            command: self.command.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            inputs,
            limits: self.limits,
            verification: self.verification.clone(),
            determinism: self.determinism,
            writes: self.writes.clone(),
            retry: self.retry,
            notify: None,
            fan_out: self.each.clone(),
            memoise: true,
        }
    }

    /// Whether the stage runs once per file.
    pub fn fans_out(&self) -> bool {
        self.each.is_some()
    }
}

impl PipelineSpec {
    /// Parses a pipeline from JSON and validates it, reporting the path of the offending field.
    pub fn from_json(body: &[u8]) -> Result<PipelineSpec, SpecError> {
        let written: Written = parse_object(body, "a pipeline spec", "{\"stages\": […]}")?;
        PipelineSpec::validate(written.inputs, written.stages)
    }

    /// The pipeline's inputs by name.
    pub fn inputs(&self) -> &BTreeMap<String, ContentId> {
        &self.inputs
    }

    /// The stages, in the order written.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// The stages in an order to run them: each after every stage it takes from or tests, and
    /// otherwise as written.
    pub fn stages_in_order(&self) -> impl Iterator<Item = &Stage> + '_ {
        self.order.iter().map(|&i| &self.stages[i])
    }

    /// Checks names, references, conditions, each stage as a job, and that the stages form no
    /// cycle; orders them.
    fn validate(inputs: BTreeMap<String, ContentId>, stages: Vec<Stage>) -> Result<PipelineSpec, SpecError> {
        for name in inputs.keys() {
            check_name(name).map_err(|reason| field(&format!("inputs.{name}"), reason))?;
        }
        if stages.is_empty() {
            return field_error("stages", "a pipeline needs at least one stage");
        }
        if stages.len() > MAX_STAGES {
            return field_error("stages", format!("at most {MAX_STAGES} stages, got {}", stages.len()));
        }
        let mut index = BTreeMap::new();
        for (i, stage) in stages.iter().enumerate() {
            check_name(&stage.name).map_err(|reason| field(&format!("stages[{i}].name"), reason))?;
            if let Some(first) = index.insert(stage.name.as_str(), i) {
                return field_error(
                    &format!("stages[{i}].name"),
                    format!("{:?} is also stages[{first}]'s", stage.name),
                );
            }
        }
        for stage in &stages {
            validate_stage(stage, &inputs, &index, &stages)?;
        }
        let order = order(&stages, &index)?;
        // Every stage's upstream stages, built in order, so each stage's are complete when read.
        let mut upstream: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); stages.len()];
        for &i in &order {
            let mut above = BTreeSet::new();
            for input in &stages[i].inputs {
                if let Some(j) = input.from.stage().map(|name| index[name]) {
                    above.insert(j);
                    above.extend(upstream[j].iter().copied());
                }
            }
            upstream[i] = above;
        }
        for (i, stage) in stages.iter().enumerate() {
            if let Some(when) = &stage.when {
                let tested = index[when.stage.as_str()];
                if !upstream[i].contains(&tested) {
                    return field_error(
                        &format!("stages.{}.when.stage", stage.name),
                        format!(
                            "{:?} is not upstream of {:?}: a condition tests a stage whose output the stage takes, \
                             directly or through others",
                            when.stage, stage.name
                        ),
                    );
                }
            }
        }
        Ok(PipelineSpec { inputs, stages, order })
    }
}

/// One stage on its own and its references to the pipeline's inputs and other stages.
fn validate_stage(
    stage: &Stage,
    inputs: &BTreeMap<String, ContentId>,
    index: &BTreeMap<&str, usize>,
    stages: &[Stage],
) -> Result<(), SpecError> {
    let at = format!("stages.{}", stage.name);
    // The stage as a job, each input standing in for its content with the program's CID: the
    // job's own checks (paths, names, fan-out, limits, …) then apply as they will when it runs.
    let mounts = stage
        .inputs
        .iter()
        .map(|input| InputSpec::new(stage.program, input.path.clone(), input.name.clone()))
        .collect();
    stage.job_spec(mounts).validate().map_err(|e| within(&at, e))?;
    for (i, input) in stage.inputs.iter().enumerate() {
        let from = format!("{at}.inputs[{i}].from");
        let upstream = match &input.from {
            StageSource::Pipeline(name) if !inputs.contains_key(name) => {
                let known: Vec<&str> = inputs.keys().map(String::as_str).collect();
                return field_error(
                    &from,
                    format!("the pipeline has no input {name:?} (its inputs: {})", known.join(", ")),
                );
            }
            StageSource::Pipeline(_) => continue,
            StageSource::Stage(name) | StageSource::All(name) if *name == stage.name => {
                return field_error(&from, format!("{name:?} is this stage: a stage cannot take its own output"));
            }
            StageSource::Stage(name) | StageSource::All(name) => match index.get(name.as_str()) {
                Some(&j) => &stages[j],
                None => return field_error(&from, format!("there is no stage {name:?}")),
            },
        };
        match &input.from {
            // `.all` of a stage with one output would be that output: refused, as it most likely
            // means the writer expects a fan-out there is not, and one meaning keeps one spelling.
            StageSource::All(name) if !upstream.fans_out() => {
                return field_error(
                    &from,
                    format!("{name:?} does not fan out (no `each`), so it has no files to gather: take {name:?}"),
                );
            }
            StageSource::All(name)
                if stage.each.as_ref().is_some_and(|each| each.over == FanOutOver::Directory && each.input == i) =>
            {
                return field_error(
                    &format!("{at}.each.input"),
                    format!("fans out over inputs[{i}], all of {name:?}: take {name:?} per file instead"),
                );
            }
            StageSource::Stage(name) if upstream.fans_out() && !stage.fans_out() => {
                return field_error(
                    &from,
                    format!(
                        "{name:?} fans out, so its output is per file: take it from a stage that fans out too \
                         (`each`), or all of it as {name:?}.all"
                    ),
                );
            }
            _ => {}
        }
    }
    if let Some(writes) = &stage.writes {
        for (i, file) in writes.iter().enumerate() {
            check_relative(file).map_err(|reason| field(&format!("{at}.writes[{i}]"), reason))?;
        }
    }
    if let Some(when) = &stage.when {
        let at = format!("{at}.when");
        let tested = match index.get(when.stage.as_str()) {
            _ if when.stage == stage.name => {
                return field_error(&format!("{at}.stage"), "a stage cannot test its own output: it has not run yet");
            }
            Some(&j) => &stages[j],
            None => return field_error(&format!("{at}.stage"), format!("there is no stage {:?}", when.stage)),
        };
        if tested.fans_out() && !stage.fans_out() {
            return field_error(
                &format!("{at}.stage"),
                format!("{:?} fans out, so its files are tested per file: the stage must fan out too", when.stage),
            );
        }
        check_relative(&when.file).map_err(|reason| field(&format!("{at}.file"), reason))?;
        if let Some(writes) = &tested.writes {
            if !writes.contains(&when.file) {
                return field_error(
                    &format!("{at}.file"),
                    format!("{:?} does not write {:?} (it writes {})", when.stage, when.file, writes.join(", ")),
                );
            }
        }
        when.validate(&at)?;
    }
    Ok(())
}

/// The stages in an order their inputs allow, as written where free; a cycle is an error naming
/// it.
fn order(stages: &[Stage], index: &BTreeMap<&str, usize>) -> Result<Vec<usize>, SpecError> {
    // What each stage takes from: (stage, the input's index).
    let takes: Vec<Vec<(usize, usize)>> = stages
        .iter()
        .map(|stage| {
            stage
                .inputs
                .iter()
                .enumerate()
                .filter_map(|(i, input)| input.from.stage().map(|name| (index[name], i)))
                .collect()
        })
        .collect();
    let mut order = Vec::with_capacity(stages.len());
    let mut placed = vec![false; stages.len()];
    while order.len() < stages.len() {
        let ready = (0..stages.len()).find(|&i| !placed[i] && takes[i].iter().all(|&(j, _)| placed[j]));
        let Some(i) = ready else {
            return Err(cycle(stages, &takes, &placed));
        };
        placed[i] = true;
        order.push(i);
    }
    Ok(order)
}

/// The error for a cycle among the stages not `placed`: each of them takes from another.
fn cycle(stages: &[Stage], takes: &[Vec<(usize, usize)>], placed: &[bool]) -> SpecError {
    // Walking back along unplaced inputs from any unplaced stage must come round to a stage seen.
    let start = placed.iter().position(|&p| !p).expect("a stage is left");
    let mut path = vec![start];
    loop {
        let here = *path.last().expect("not empty");
        let &(next, _) = takes[here].iter().find(|&&(j, _)| !placed[j]).expect("an unplaced stage waits on another");
        if let Some(at) = path.iter().position(|&i| i == next) {
            // path[at..] each takes from the next; data flows the other way. The ring is told
            // from its stage written first, so one cycle reads one way however it was found.
            let mut ring: Vec<usize> = path[at..].iter().rev().copied().collect();
            let first = ring.iter().enumerate().min_by_key(|&(_, &i)| i).map(|(k, _)| k).expect("not empty");
            ring.rotate_left(first);
            let names: Vec<&str> =
                ring.iter().chain(std::iter::once(&ring[0])).map(|&i| stages[i].name.as_str()).collect();
            let (taker, from) = (ring[0], ring[ring.len() - 1]);
            let input = takes[taker].iter().find(|&&(j, _)| j == from).expect("on the ring").1;
            return SpecError::Field {
                field: format!("stages.{}.inputs[{input}].from", stages[taker].name),
                reason: format!("the stages form a cycle: {} (each takes the one before's output)", names.join(" → ")),
            };
        }
        path.push(next);
    }
}

/// A stage's or input's name: 1 to 64 lowercase ASCII letters, digits, `-` or `_`, starting
/// with a letter (so it reads the same in a URL, a field path and a `from`).
fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        return Err(format!("{name:?} must be 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter"));
    }
    if name == "pipeline" {
        return Err("\"pipeline\" names the pipeline's inputs".into());
    }
    Ok(())
}

/// A job's error as one of a stage's: its field within `at`, the stage's `each` for the job's
/// `fan_out`.
fn within(at: &str, error: SpecError) -> SpecError {
    let prefix = |name: String| {
        let name = match name.strip_prefix("fan_out") {
            Some(rest) => format!("each{rest}"),
            None => name,
        };
        format!("{at}.{name}")
    };
    match error {
        SpecError::Field { field, reason } => SpecError::Field { field: prefix(field), reason },
        SpecError::TooLarge { field, reason } => SpecError::TooLarge { field: prefix(field), reason },
        malformed @ SpecError::MalformedJson { .. } => malformed,
    }
}

fn field(field: &str, reason: String) -> SpecError {
    SpecError::Field { field: field.to_string(), reason }
}

fn field_error<T>(at: &str, reason: impl Into<String>) -> Result<T, SpecError> {
    Err(field(at, reason.into()))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const CLOUD: &str = include_str!("../../tests/fixtures/cloud-pipeline.json");
    const PROGRAM: &str = "bafybeiftif2ncpyug4t5by6wfapozrralajk6jnjqrqtuikt7chgi6afay";

    fn cloud() -> Value {
        serde_json::from_str(CLOUD).unwrap()
    }

    fn parse(body: &Value) -> Result<PipelineSpec, SpecError> {
        PipelineSpec::from_json(body.to_string().as_bytes())
    }

    /// A stage named `name` taking from each of `from` at `/in0`, `/in1`, …
    fn stage(name: &str, from: &[&str]) -> Value {
        let inputs: Vec<Value> =
            from.iter().enumerate().map(|(i, from)| json!({"from": from, "path": format!("/in{i}")})).collect();
        json!({"name": name, "program": PROGRAM, "inputs": inputs})
    }

    fn pipeline(stages: Vec<Value>) -> Value {
        json!({"inputs": {"scenes": PROGRAM}, "stages": stages})
    }

    #[test]
    fn the_cloud_pipeline_parses_and_orders_its_stages() {
        let spec = PipelineSpec::from_json(CLOUD.as_bytes()).unwrap();
        let names: Vec<&str> = spec.stages_in_order().map(|stage| stage.name.as_str()).collect();
        assert_eq!(names, ["detect", "remove", "summary"]);
        let remove = spec.stage("remove").unwrap();
        assert_eq!(remove.inputs[1].from, StageSource::Stage("detect".into()));
        assert_eq!(remove.on_failure, OnFailure::Continue);
        let when = remove.when.as_ref().unwrap();
        assert_eq!((when.op, when.pointer().as_str(), &when.value), (Comparison::Gt, "/cloud_fraction", &json!(0.05)));
        let summary = spec.stage("summary").unwrap();
        assert_eq!(summary.inputs[0].from, StageSource::All("detect".into()));
        assert_eq!(summary.on_failure, OnFailure::Stop);
        // Written backwards, the order is the same; it round-trips through its JSON.
        let mut reversed = cloud();
        reversed["stages"].as_array_mut().unwrap().reverse();
        let names: Vec<String> = parse(&reversed).unwrap().stages_in_order().map(|stage| stage.name.clone()).collect();
        assert_eq!(names, ["detect", "remove", "summary"]);
        assert_eq!(PipelineSpec::from_json(&serde_json::to_vec(&spec).unwrap()).unwrap(), spec);
    }

    #[test]
    fn independent_stages_keep_their_written_order() {
        let body = pipeline(vec![
            stage("late", &["early.all"]),
            stage("b", &["pipeline.scenes"]),
            stage("a", &["pipeline.scenes"]),
            json!({"name": "early", "program": PROGRAM, "inputs": [{"from": "b", "path": "/in"}], "each": {}}),
        ]);
        let order: Vec<String> = parse(&body).unwrap().stages_in_order().map(|stage| stage.name.clone()).collect();
        assert_eq!(order, ["b", "a", "early", "late"]);
    }

    #[test]
    fn a_container_stage_runs_as_a_container_job_and_its_errors_name_the_stage() {
        let mut container = stage("count", &["pipeline.scenes"]);
        container["runtime"] = json!("oci");
        container["command"] = json!(["/bin/sh", "-c", "ls /in0 > /outputs/list.txt"]);
        container["determinism"] = json!("nondeterministic");
        container["verification"] = json!({"mode": "none"});
        let spec = parse(&pipeline(vec![container.clone()])).unwrap();
        let job = spec.stage("count").unwrap().job_spec(Vec::new());
        assert_eq!((job.runtime, job.command.unwrap()[0].as_str()), (RuntimeKind::Oci, "/bin/sh"));
        container.as_object_mut().unwrap().remove("command");
        refused(&pipeline(vec![container]), "stages.count.command", "must name its command");
        let mut wasm = stage("count", &["pipeline.scenes"]);
        wasm["command"] = json!(["/bin/true"]);
        refused(&pipeline(vec![wasm]), "stages.count.command", "applies to container jobs");
    }

    #[test]
    fn conditions_read_dotted_paths_and_pointers() {
        let at = |field: &str| Condition {
            stage: "s".into(),
            file: "f.json".into(),
            field: field.into(),
            op: Comparison::Eq,
            value: json!(1),
        };
        assert_eq!(at("counts.cloud").pointer(), "/counts/cloud");
        assert_eq!(at("/counts/cloud").pointer(), "/counts/cloud");
        assert_eq!(at("a/b.c~").pointer(), "/a~1b/c~0");
    }

    /// Applies `change` to the cloud pipeline and expects the error at `want_field` saying
    /// `want_reason`.
    fn refused(body: &Value, want_field: &str, want_reason: &str) {
        match parse(body) {
            Err(SpecError::Field { field, reason }) => {
                assert_eq!(field, want_field, "{body}: {reason}");
                assert!(reason.contains(want_reason), "{body}: {reason}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }

    fn cloud_with(change: impl FnOnce(&mut Value)) -> Value {
        let mut body = cloud();
        change(&mut body);
        body
    }

    #[test]
    fn references_name_the_field() {
        let cases = [
            (
                cloud_with(|b| b["stages"][1]["inputs"][1]["from"] = json!("detekt")),
                "stages.remove.inputs[1].from",
                "there is no stage \"detekt\"",
            ),
            (
                cloud_with(|b| b["stages"][0]["inputs"][0]["from"] = json!("pipeline.scene")),
                "stages.detect.inputs[0].from",
                "no input \"scene\" (its inputs: scenes)",
            ),
            (
                cloud_with(|b| b["stages"][2]["inputs"][0]["from"] = json!("summary.all")),
                "stages.summary.inputs[0].from",
                "cannot take its own output",
            ),
            (
                cloud_with(|b| b["stages"][0]["inputs"][0]["from"] = json!("detect")),
                "stages.detect.inputs[0].from",
                "cannot take its own output",
            ),
            (
                cloud_with(|b| b["stages"][0]["inputs"][0]["from"] = json!("detect.mask")),
                "stages[0].inputs[0].from",
                "must be pipeline.<input>, <stage> or <stage>.all",
            ),
            (
                cloud_with(|b| b["stages"][0]["inputs"][0]["from"] = json!("Detect")),
                "stages[0].inputs[0].from",
                "lowercase",
            ),
        ];
        for (body, field, reason) in cases {
            refused(&body, field, reason);
        }
    }

    #[test]
    fn cycles_are_named() {
        refused(
            &pipeline(vec![stage("a", &["b"]), stage("b", &["a"])]),
            "stages.a.inputs[0].from",
            "the stages form a cycle: a → b → a",
        );
        // The cycle is named, not the stages waiting on it.
        refused(
            &pipeline(vec![
                stage("waits", &["x"]),
                stage("x", &["pipeline.scenes", "z"]),
                stage("y", &["x"]),
                stage("z", &["y"]),
            ]),
            "stages.x.inputs[1].from",
            "cycle: x → y → z → x",
        );
    }

    #[test]
    fn names_are_checked() {
        refused(&json!({"inputs": {}, "stages": []}), "stages", "at least one stage");
        refused(&json!({"inputs": {}}), "stages", "at least one stage");
        refused(&pipeline(vec![stage("a", &[]), stage("a", &[])]), "stages[1].name", "also stages[0]'s");
        refused(&pipeline(vec![stage("Detect", &[])]), "stages[0].name", "lowercase");
        refused(&pipeline(vec![stage("9lives", &[])]), "stages[0].name", "starting with a letter");
        refused(&pipeline(vec![stage("pipeline", &[])]), "stages[0].name", "pipeline's inputs");
        refused(&pipeline(vec![stage(&"a".repeat(65), &[])]), "stages[0].name", "1 to 64");
        refused(&json!({"inputs": {"Scenes": PROGRAM}, "stages": [stage("a", &[])]}), "inputs.Scenes", "lowercase");
        refused(&cloud_with(|b| b["stages"][0]["colour"] = json!("blue")), "stages[0].colour", "unknown field");
        refused(&cloud_with(|b| b["outputs"] = json!({})), "outputs", "unknown field");
        refused(
            &cloud_with(|b| b["stages"][0]["on_failure"] = json!("retry")),
            "stages[0].on_failure",
            "unknown variant",
        );
        let no_program = json!({"stages": [{"name": "a"}]});
        refused(&no_program, "stages[0].program", "missing field `program`");
        match PipelineSpec::from_json(b"[]") {
            Err(SpecError::Field { field, reason }) => assert!(field.is_empty() && reason.contains("JSON object")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_stage_is_checked_as_a_job() {
        let cases = [
            (
                cloud_with(|b| b["stages"][0]["limits"] = json!({"fuel": 0})),
                "stages.detect.limits.fuel",
                "between 1 and",
            ),
            (
                cloud_with(|b| b["stages"][0]["inputs"][0]["path"] = json!("/outputs/x")),
                "stages.detect.inputs[0].path",
                "output directory",
            ),
            (
                cloud_with(|b| b["stages"][1]["inputs"][1]["path"] = json!("/inputs")),
                "stages.remove.inputs[1].path",
                "mounted twice",
            ),
            (cloud_with(|b| b["stages"][0]["env"] = json!({"A=B": "x"})), "stages.detect.env.A=B", "without '='"),
            (cloud_with(|b| b["stages"][0]["each"] = json!({"input": 3})), "stages.detect.each.input", "no input 3"),
            (cloud_with(|b| b["stages"][0]["each"] = json!({"glob": "[z-a"})), "stages.detect.each.glob", "not a glob"),
            (
                cloud_with(|b| b["stages"][2]["verification"] = json!({"mode": "replicated", "replicas": 9})),
                "stages.summary.verification.replicas",
                "from 2 to 5",
            ),
            (
                cloud_with(|b| b["stages"][2]["retry"] = json!({"max_attempts": 0})),
                "stages.summary.retry.max_attempts",
                "between 1 and",
            ),
            (
                cloud_with(|b| b["stages"][0]["writes"] = json!(["stats.json", "../escape"])),
                "stages.detect.writes[1]",
                "not . or ..",
            ),
            (cloud_with(|b| b["stages"][0]["writes"] = json!(["/stats.json"])), "stages.detect.writes[0]", "relative"),
        ];
        for (body, field, reason) in cases {
            refused(&body, field, reason);
        }
        let big = "x".repeat(JobSpec::MAX_PAYLOAD_BYTES + 1);
        match parse(&cloud_with(|b| b["stages"][0]["env"] = json!({"A": big}))) {
            Err(SpecError::TooLarge { field, .. }) => assert_eq!(field, "stages.detect.env"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fan_out_and_fan_in_must_agree() {
        // Fan-in of a stage with one output: refused.
        refused(
            &pipeline(vec![stage("one", &["pipeline.scenes"]), stage("all", &["one.all"])]),
            "stages.all.inputs[0].from",
            "\"one\" does not fan out",
        );
        // Per file from a stage that fans out, into one that does not.
        refused(
            &cloud_with(|b| b["stages"][2]["inputs"][0]["from"] = json!("detect")),
            "stages.summary.inputs[0].from",
            "take it from a stage that fans out too (`each`), or all of it as \"detect\".all",
        );
        // Fanning out over a fan-in is taking the stage per file, spelled twice.
        refused(
            &cloud_with(|b| {
                b["stages"][1]["inputs"][1]["from"] = json!("detect.all");
                b["stages"][1]["each"] = json!({"input": 1});
            }),
            "stages.remove.each.input",
            "fans out over inputs[1], all of \"detect\"",
        );
        // Fanning out over a stage's output per file is fine.
        let body = cloud_with(|b| b["stages"][1]["each"] = json!({"input": 1}));
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn conditions_are_checked() {
        let when = |change: fn(&mut Value)| cloud_with(|b| change(&mut b["stages"][1]["when"]));
        let cases = [
            (
                when(|w| w["file"] = json!("stat.json")),
                "stages.remove.when.file",
                "\"detect\" does not write \"stat.json\"",
            ),
            (when(|w| w["file"] = json!("../stats.json")), "stages.remove.when.file", "not . or .."),
            (when(|w| w["stage"] = json!("detekt")), "stages.remove.when.stage", "there is no stage \"detekt\""),
            (when(|w| w["stage"] = json!("remove")), "stages.remove.when.stage", "its own output"),
            (when(|w| w["field"] = json!("counts..cloud")), "stages.remove.when.field", "dotted path"),
            (when(|w| w["field"] = json!("")), "stages.remove.when.field", "dotted path"),
            (when(|w| w["value"] = json!("high")), "stages.remove.when.value", "compares numbers"),
            (when(|w| w["value"] = json!([1])), "stages.remove.when.value", "a number, a string or a boolean"),
            (when(|w| w["op"] = json!("above")), "stages[1].when.op", "unknown variant"),
            (when(|w| w["unless"] = json!(true)), "stages[1].when.unless", "unknown field"),
        ];
        for (body, field, reason) in cases {
            refused(&body, field, reason);
        }
        // Equality takes strings and booleans.
        assert!(parse(&when(|w| {
            w["op"] = json!("ne");
            w["value"] = json!("clear");
        }))
        .is_ok());
        // Without `writes`, any file may be tested.
        assert!(parse(&cloud_with(|b| {
            b["stages"][0].as_object_mut().unwrap().remove("writes");
            b["stages"][1]["when"]["file"] = json!("other.json");
        }))
        .is_ok());
        // A stage that is not upstream: summary is downstream of remove; a sibling is neither.
        refused(
            &cloud_with(|b| b["stages"][1]["when"]["stage"] = json!("summary")),
            "stages.remove.when.stage",
            "\"summary\" is not upstream of \"remove\"",
        );
        let mut sibling = stage("sibling", &["pipeline.scenes"]);
        sibling["each"] = json!({});
        refused(
            &cloud_with(|b| {
                b["stages"].as_array_mut().unwrap().push(sibling);
                b["stages"][1]["when"]["stage"] = json!("sibling");
            }),
            "stages.remove.when.stage",
            "not upstream",
        );
        // Tested through another stage: summary tests detect's stats.json, per file, but it
        // does not fan out.
        refused(
            &cloud_with(|b| b["stages"][2]["when"] = b["stages"][1]["when"].clone()),
            "stages.summary.when.stage",
            "the stage must fan out too",
        );
    }
}
