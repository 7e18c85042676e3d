//! What a user asks for: [`JobSpec`] and its parts, and their validation with field-level
//! errors.

use std::collections::BTreeMap;

use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::agreement::{Agreement, Determinism};
use super::ContentId;
use crate::error::SpecError;
use crate::fil::AttoFil;

/// Multicodec for JSON, used for invocation CIDs (the spec's canonical JSON is the block).
const JSON_CODEC: u64 = 0x0200;

/// The most inputs a spec may have.
const MAX_INPUTS: usize = 1024;

/// What a user asks Shoal to run: a program (a WebAssembly module, or an OCI container image)
/// and its inputs, all named by CID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// What runs the program: `wasm` (the default, left out of the JSON so that the invocation
    /// CIDs of specs written before containers existed do not change) or `oci`.
    #[serde(default, skip_serializing_if = "RuntimeKind::is_wasm")]
    pub runtime: RuntimeKind,
    /// The WebAssembly module (a UnixFS file), or for `oci` the image: an OCI image layout
    /// directory (`oci-layout`, `index.json`, `blobs/`) imported with `shoal add DIR`.
    pub program: ContentId,
    /// The export to call: `_start` (a WASI command's `main`) unless named. A container job
    /// runs `command` and must leave it at `_start`.
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// A container job's command, run in the image (`["/bin/sh", "-c", "…"]`; the executable
    /// is looked up in the image's `PATH`), with `args` appended. Required for `oci`, refused
    /// for `wasm`, whose argv\[0\] is the program's CID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments after argv\[0\] (after `command`, for a container job).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables; sorted, so every worker passes them in one order.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Content mounted read-only into the guest.
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    /// Resource limits; anything left out takes the default.
    #[serde(default)]
    pub limits: Limits,
    /// How the result is checked by the verifier.
    #[serde(default)]
    pub verification: VerificationPolicy,
    /// Whether the program runs pinned (the default) or sees the host's clocks and entropy.
    ///
    /// A container job must state `nondeterministic`: a container sees the host's clocks,
    /// entropy and scheduling, so its honest runs may differ, and its verification must then
    /// compare otherwise than byte for byte (or be `none`). Stated rather than implied so that
    /// the spec itself, and everything that reads this field, says how its results are judged.
    #[serde(default, skip_serializing_if = "Determinism::is_deterministic")]
    pub determinism: Determinism,
    /// The files the program writes, relative to `/outputs`: a run that does not write each
    /// of them fails `missing_output`; comparisons may name only these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<Vec<String>>,
    /// How often the job may be started before it is given up (workers dying under it).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Where to be told of the job's end: a webhook, signed with the tenant's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// Run the program once per entry of a directory input, or per input, instead of once
    /// over all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<FanOut>,
    /// Whether an identical earlier invocation's accepted result may answer this one at
    /// submission (`true`, the default, left out of the JSON so that invocation CIDs of specs
    /// written before memoisation do not change). Only the submitting tenant's own jobs answer,
    /// and only deterministic WebAssembly jobs that are verified and not fanned out are ever
    /// memoised; `false` runs the program again.
    #[serde(default = "memoise_by_default", skip_serializing_if = "is_memoised_by_default")]
    pub memoise: bool,
}

fn memoise_by_default() -> bool {
    true
}

fn is_memoised_by_default(memoise: &bool) -> bool {
    *memoise
}

/// What runs a job's program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// A WebAssembly module run by `shoal-runtime` (WASI preview 1, fuel, pinned unless the job
    /// is nondeterministic).
    #[default]
    Wasm,
    /// An OCI container image run by runc (`shoal-oci`), under the same contract: inputs
    /// read-only, `/outputs` writable, no network, the job's limits (but no fuel).
    Oci,
}

impl RuntimeKind {
    /// Whether this is the default, left out of a spec's JSON.
    pub fn is_wasm(&self) -> bool {
        *self == RuntimeKind::Wasm
    }
}

/// Guest paths a container's sandbox mounts itself, where no input may be mounted.
const CONTAINER_RESERVED_PATHS: [&str; 4] = ["/proc", "/sys", "/dev", "/tmp"];

/// The smallest memory limit of a container job: below it runc's own setup inside the
/// container's cgroup could be killed for memory, which would look like the job's fault.
pub const MIN_CONTAINER_MEMORY_BYTES: u64 = 8 << 20;

/// Fans a job out into *tasks*, each an ordinary job placed by its own data, retried on its own;
/// the job finishes when all have, and its output is one directory with an entry per input file,
/// named as the file.
///
/// Over a directory (`{"input": 0, "glob": "*.tif"}`, the default form): one file per selected
/// entry of directory input `input`; a task's spec is the job's with that input replaced by the
/// task's entries, each mounted under its name at the directory's mount path (so the guest sees
/// the same paths as over the whole directory). Over the job's inputs (`{"over": "inputs"}`):
/// each input is one file (each must have a `name`, unique in the job); a task's spec holds its
/// inputs alone, each at its own path.
///
/// With `batch` 1 (the default) every file is a task, placed by the file's CID, and the task's
/// whole `/outputs` becomes the entry named as the file. With a larger `batch`, files whose CIDs
/// route to the same shard are grouped, in name order, into tasks of up to `batch` files, each
/// placed on that shared shard; the program writes one output per file, `/outputs/<name>` (a
/// file or a directory), and those entries are gathered. A file whose task wrote no
/// `/outputs/<name>` fails (`missing_output`, naming what the task wrote
/// instead); other top-level names a batch task writes are not gathered, as they could collide
/// between tasks. A failed batch task fails each of its files, with the task's failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FanOut {
    /// What is fanned out over: a directory input's entries (the default) or the inputs.
    #[serde(default, skip_serializing_if = "FanOutOver::is_directory")]
    pub over: FanOutOver,
    /// Which input is the directory (an index into `inputs`); the first unless given. Only for
    /// the directory form.
    #[serde(default)]
    pub input: usize,
    /// Only entries whose name matches this glob (`*.TIF`, `LC08_*`); every entry unless given.
    /// Only for the directory form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// Files per task, at most: 1 (the default) runs each file as its own task.
    #[serde(default = "one_file", skip_serializing_if = "is_one_file")]
    pub batch: u32,
}

/// What a job fans out over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FanOutOver {
    /// The entries of the directory input `fan_out.input`.
    #[default]
    Directory,
    /// The job's inputs, each one file.
    Inputs,
}

impl FanOutOver {
    fn is_directory(&self) -> bool {
        *self == FanOutOver::Directory
    }
}

fn one_file() -> u32 {
    1
}

fn is_one_file(batch: &u32) -> bool {
    *batch == 1
}

impl FanOut {
    /// The most files one task may be given.
    pub const MAX_BATCH: u32 = 1024;

    /// Whether entry `name` is one of the files.
    pub fn selects(&self, name: &str) -> bool {
        self.glob
            .as_deref()
            .is_none_or(|glob| globset::Glob::new(glob).is_ok_and(|g| g.compile_matcher().is_match(name)))
    }

    /// Checks the fan-out against the spec's `inputs`.
    fn validate(&self, inputs: &[InputSpec]) -> Result<(), SpecError> {
        let field = |field: &str, reason: String| Err(SpecError::Field { field: field.to_string(), reason });
        if !(1..=FanOut::MAX_BATCH).contains(&self.batch) {
            return field("fan_out.batch", format!("must be between 1 and {}, got {}", FanOut::MAX_BATCH, self.batch));
        }
        if let Some(glob) = &self.glob {
            if self.over == FanOutOver::Inputs {
                return field(
                    "fan_out.glob",
                    "selects entries of a directory; over inputs every input is a file".into(),
                );
            }
            if let Err(e) = globset::Glob::new(glob) {
                return field("fan_out.glob", format!("{glob:?} is not a glob: {e}"));
            }
        }
        match self.over {
            FanOutOver::Directory => {
                let Some(directory) = inputs.get(self.input) else {
                    return field("fan_out.input", format!("there is no input {} to fan out over", self.input));
                };
                // Its entries take its place at its mount path, so nothing else may be there.
                if inputs.iter().enumerate().any(|(i, other)| i != self.input && other.path == directory.path) {
                    return field(
                        "fan_out.input",
                        format!("the directory to fan out over shares its path {} with another input", directory.path),
                    );
                }
                if self.batch as usize + inputs.len() - 1 > MAX_INPUTS {
                    return field(
                        "fan_out.batch",
                        format!("a task would have more than {MAX_INPUTS} inputs with the other {}", inputs.len() - 1),
                    );
                }
            }
            FanOutOver::Inputs => {
                if self.input != 0 {
                    return field(
                        "fan_out.input",
                        "names a directory to fan out over; over inputs every input is a file".into(),
                    );
                }
                if inputs.is_empty() {
                    return field("fan_out.over", "there are no inputs to fan out over".into());
                }
                let mut names = BTreeMap::new();
                for (i, input) in inputs.iter().enumerate() {
                    let Some(name) = &input.name else {
                        return field(
                            &format!("inputs[{i}].name"),
                            "must be given to fan out over inputs: outputs are gathered under it".into(),
                        );
                    };
                    if let Some(first) = names.insert(name.as_str(), i) {
                        return field(
                            &format!("inputs[{i}].name"),
                            format!("{name:?} is also inputs[{first}]'s; outputs are gathered under each input's name"),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

pub(super) fn default_entrypoint() -> String {
    "_start".to_string()
}

/// One input: content mounted read-only at a path inside the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The content (a UnixFS file or directory).
    pub cid: ContentId,
    /// Where the guest sees it; `/inputs` unless named.
    #[serde(default = "default_mount")]
    pub path: String,
    /// The name the content appears under inside `path`: a file appears as `path/name`
    /// (`path/<its CID>` unless named), a directory as `path/name/…` (its entries directly in
    /// `path` unless named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the content may come from: `ipfs` (the default, left out of the JSON) or
    /// `filecoin`.
    #[serde(default, skip_serializing_if = "InputSource::is_ipfs")]
    pub source: InputSource,
    /// For a `filecoin` input, the most its retrieval may cost in all, providers paid that then
    /// failed included: FIL (`"0.001 FIL"`, `"0.001"`) or attoFIL (`"1000000000000000
    /// attoFIL"`). Without it only the wallet's spending limit bounds the price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "0.001 FIL")]
    pub max_price: Option<AttoFil>,
}

impl InputSpec {
    /// An input of `cid` mounted at `path` under `name`, from the free sources.
    pub fn new(cid: ContentId, path: impl Into<String>, name: Option<String>) -> InputSpec {
        InputSpec { cid, path: path.into(), name, source: InputSource::Ipfs, max_price: None }
    }
}

/// Where an input's content may be fetched from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputSource {
    /// The worker's cache and the trustless gateways it knows: free.
    #[default]
    Ipfs,
    /// The same first; then, if none has it, retrieved from the Filecoin storage providers the
    /// indexers name, paid from the operator's wallet within its spending limit and the
    /// input's `max_price` (a job that cannot be paid for fails `budget_exhausted`).
    Filecoin,
}

impl InputSource {
    /// Whether this is the default, left out of a spec's JSON (so the invocation CIDs of specs
    /// written before Filecoin inputs existed do not change).
    pub fn is_ipfs(&self) -> bool {
        *self == InputSource::Ipfs
    }
}

pub(super) fn default_mount() -> String {
    "/inputs".to_string()
}

/// The guest path of the writable output directory, whose contents become the job's output CID.
pub const OUTPUTS_MOUNT: &str = "/outputs";

/// Resource limits for one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Units of wasmtime fuel (about one per wasm instruction).
    pub fuel: u64,
    /// Largest linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock budget in milliseconds: a safety net; fuel is what makes runs deterministic.
    pub wall_time_ms: u64,
    /// Largest total size of files written to `/outputs`.
    pub output_bytes: u64,
    /// Largest stdout and stderr kept, each.
    pub log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 50_000_000_000,
            memory_bytes: 512 << 20,
            wall_time_ms: 300_000,
            output_bytes: 256 << 20,
            log_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// The largest value each limit may be set to.
    pub const MAX: Limits = Limits {
        fuel: 10_000_000_000_000,
        memory_bytes: 4 << 30,
        wall_time_ms: 3_600_000,
        output_bytes: 16 << 30,
        log_bytes: 64 << 20,
    };
}

/// How many times a job may be started.
///
/// Only lost executions are retried — a worker that died or hung mid-job. A guest failure
/// (trap, fuel, memory, …) is final: the same program fails the same way on every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Executions started before the job fails `worker_lost` and its entry
    /// goes to the dead-letter stream.
    pub max_attempts: u32,
    /// Time from submission by which the job must have finished, in ms, however many attempts
    /// it took; past it the job fails `deadline_exceeded`.
    pub total_timeout_ms: u64,
    /// Base delay before a lost execution is retried, in ms: attempt n+1 starts no sooner than
    /// `backoff_ms · 2^(n-1)`, times a random factor from 0.5 to 1.5, after attempt n started.
    /// (Never sooner than the workers' visibility timeout either: that is when a lost execution
    /// is noticed.)
    pub backoff_ms: u64,
}

impl RetryPolicy {
    /// The most attempts a job may ask for.
    pub const MAX_ATTEMPTS: u32 = 20;
    /// The longest total timeout: a week.
    pub const MAX_TOTAL_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { max_attempts: 3, total_timeout_ms: 3_600_000, backoff_ms: 1_000 }
    }
}

/// How a job's result is checked: when the verifier looks at it (`mode`) and how two results
/// are judged to agree (`compare`, byte equality unless named).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", try_from = "PolicyFields")]
pub enum VerificationPolicy {
    /// No re-execution.
    None,
    /// The verifier re-executes a sampled fraction of jobs.
    Sampled {
        /// How its re-execution is compared with the reported result.
        #[serde(default, skip_serializing_if = "Agreement::is_exact")]
        compare: Agreement,
    },
    /// The verifier re-executes every job.
    Always {
        /// How its re-execution is compared with the reported result.
        #[serde(default, skip_serializing_if = "Agreement::is_exact")]
        compare: Agreement,
    },
    /// `replicas` distinct workers run the job in all (2 to 5, `VerificationPolicy::MAX_REPLICAS`);
    /// if fewer than `quorum` of them (all, unless named) agree with the reported result, the
    /// verifier's own re-execution settles it, and whoever signed a wrong result is
    /// quarantined. Agreeing replicas are spot-checked at the verifier's sample rate.
    Replicated {
        /// Executions by distinct workers, the first included.
        replicas: u32,
        /// Executions (the first included) that must agree with the reported result for it to
        /// stand without the verifier's re-execution: from 2 to `replicas`; all unless named.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quorum: Option<u32>,
        /// How two executions' results are compared.
        #[serde(default, skip_serializing_if = "Agreement::is_exact")]
        compare: Agreement,
    },
}

/// A verification policy as written, before its mode picks the fields that apply. Read as a
/// plain struct (rather than through serde's internally tagged enums, which buffer their
/// content and lose the path of an error inside it), so an error in `compare` names its field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFields {
    mode: PolicyMode,
    #[serde(default)]
    replicas: Option<u32>,
    #[serde(default)]
    quorum: Option<u32>,
    #[serde(default)]
    compare: Option<Agreement>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum PolicyMode {
    None,
    Sampled,
    Always,
    Replicated,
}

impl TryFrom<PolicyFields> for VerificationPolicy {
    type Error = String;

    fn try_from(fields: PolicyFields) -> Result<VerificationPolicy, String> {
        let PolicyFields { mode, replicas, quorum, compare } = fields;
        let only_replicated = |name: &str| format!("`{name}` applies to mode `replicated` only");
        if mode != PolicyMode::Replicated {
            if replicas.is_some() {
                return Err(only_replicated("replicas"));
            }
            if quorum.is_some() {
                return Err(only_replicated("quorum"));
            }
        }
        let compare = compare.unwrap_or_default();
        Ok(match mode {
            PolicyMode::None if !compare.is_exact() => {
                return Err("`compare` does not apply to mode `none`, which compares nothing".into())
            }
            PolicyMode::None => VerificationPolicy::None,
            PolicyMode::Sampled => VerificationPolicy::Sampled { compare },
            PolicyMode::Always => VerificationPolicy::Always { compare },
            PolicyMode::Replicated => {
                let replicas = replicas.ok_or("missing field `replicas`")?;
                VerificationPolicy::Replicated { replicas, quorum, compare }
            }
        })
    }
}

impl Default for VerificationPolicy {
    fn default() -> VerificationPolicy {
        VerificationPolicy::Sampled { compare: Agreement::Exact }
    }
}

impl VerificationPolicy {
    /// The most replicas a `replicated` job may ask for.
    pub const MAX_REPLICAS: u32 = 5;

    /// How two results are compared (`exact` under `none`, which compares nothing).
    pub fn compare(&self) -> &Agreement {
        match self {
            VerificationPolicy::None => &Agreement::Exact,
            VerificationPolicy::Sampled { compare }
            | VerificationPolicy::Always { compare }
            | VerificationPolicy::Replicated { compare, .. } => compare,
        }
    }
}

impl Eq for VerificationPolicy {}

impl JobSpec {
    /// The most bytes `args` (with a container's `command`), `env` (names and values) and
    /// `inputs` (CIDs, paths and names) may hold together: 256 KiB, room for a thousand inputs or a sizeable configuration, while a
    /// stored job stays small enough to read back by the hundred.
    pub const MAX_PAYLOAD_BYTES: usize = 256 << 10;

    /// Parses a spec from JSON, reporting the path of the offending field.
    ///
    /// The body must be one JSON object and nothing after it: serde would otherwise read a
    /// bare array as the fields in declaration order, and stop reading at the object's end.
    pub fn from_json(body: &[u8]) -> Result<JobSpec, SpecError> {
        let spec: JobSpec = parse_object(body, "a job spec", "{\"program\": …}")?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks a verification policy for a job of `determinism` declaring it writes `writes`:
    /// `replicated` asks for 2 to [`VerificationPolicy::MAX_REPLICAS`] replicas and a quorum
    /// from 2 to those; the comparison is well formed, names only files the job writes, and is
    /// not byte equality for a nondeterministic job (whose honest runs differ).
    pub fn check_verification(
        policy: &VerificationPolicy,
        determinism: Determinism,
        writes: Option<&[String]>,
    ) -> Result<(), SpecError> {
        if let VerificationPolicy::Replicated { replicas, quorum, .. } = *policy {
            if !(2..=VerificationPolicy::MAX_REPLICAS).contains(&replicas) {
                return field_error(
                    "verification.replicas",
                    format!("must be from 2 to {}, got {replicas}", VerificationPolicy::MAX_REPLICAS),
                );
            }
            if let Some(quorum) = quorum.filter(|quorum| !(2..=replicas).contains(quorum)) {
                return field_error(
                    "verification.quorum",
                    format!("must be from 2 to the {replicas} replicas, got {quorum}"),
                );
            }
        }
        let compare = policy.compare();
        compare.validate("verification.compare", writes)?;
        if determinism == Determinism::Nondeterministic && *policy != VerificationPolicy::None && compare.is_exact() {
            return field_error(
                "verification.compare",
                "a nondeterministic job's honest runs differ, so byte equality would reject them all: compare \
                 with `tolerance` or a `comparator`, or ask for no verification (\"mode\": \"none\")",
            );
        }
        Ok(())
    }

    /// Checks what the types alone cannot: paths, names and limits.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.validate_size()?;
        self.validate_invocation()?;
        self.validate_runtime()?;
        validate_inputs(&self.inputs)?;
        if let Some(fan_out) = &self.fan_out {
            fan_out.validate(&self.inputs)?;
            let listed = self.inputs.get(fan_out.input).filter(|_| fan_out.over == FanOutOver::Directory);
            if listed.is_some_and(|input| input.source == InputSource::Filecoin) {
                // The worker that fans out lists the directory before any task runs, and
                // listing is not a paid retrieval: the tasks alone would know their prices.
                return field_error(
                    &format!("inputs[{}].source", fan_out.input),
                    "a directory fanned out over cannot come from Filecoin: fan out over its files as inputs \
                     (\"over\": \"inputs\"), each with \"source\": \"filecoin\"",
                );
            }
        }
        self.limits.validate()?;
        self.retry.validate()?;
        if let Some(writes) = &self.writes {
            validate_writes(writes)?;
            // A batch task writes each file's output under its name, so what a run must write
            // is not the declared list itself.
            if self.fan_out.as_ref().is_some_and(|fan_out| fan_out.batch > 1) {
                return field_error("writes", "applies to jobs and to fan-outs of batch 1, not to batched fan-outs");
            }
        }
        Self::check_verification(&self.verification, self.determinism, self.writes.as_deref())?;
        if let Some(notify) = &self.notify {
            notify.validate()?;
        }
        Ok(())
    }

    /// What a container job needs and a WebAssembly job must not have: `command`, a stated
    /// nondeterminism, the default entrypoint, no input where the sandbox mounts its own, enough
    /// memory for runc.
    fn validate_runtime(&self) -> Result<(), SpecError> {
        let Some(command) = &self.command else {
            if self.runtime == RuntimeKind::Oci {
                return field_error(
                    "command",
                    "a container job (\"runtime\": \"oci\") must name its command, e.g. [\"/bin/sh\", \"-c\", \"…\"]",
                );
            }
            return Ok(());
        };
        if self.runtime == RuntimeKind::Wasm {
            return field_error(
                "command",
                "applies to container jobs (\"runtime\": \"oci\") only; a WebAssembly program's argv[0] is its CID, \
                 its arguments are `args`",
            );
        }
        if command.is_empty() || command[0].is_empty() {
            return field_error("command", "must name at least the executable to run");
        }
        if command.len() + self.args.len() > 1024
            || command.iter().chain(&self.args).map(String::len).sum::<usize>() > 64 << 10
        {
            return field_error("command", "command and args: at most 1024 arguments and 64 KiB in all");
        }
        if let Some(i) = command.iter().position(|arg| arg.contains('\0')) {
            return field_error(&format!("command[{i}]"), "contains a NUL character, which an argument cannot hold");
        }
        if self.entrypoint != default_entrypoint() {
            return field_error("entrypoint", "names a WebAssembly export; a container job runs its `command`");
        }
        if self.determinism != Determinism::Nondeterministic {
            return field_error(
                "determinism",
                "a container sees the host's clocks, entropy and scheduling, so its runs are not reproducible: \
                 state \"determinism\": \"nondeterministic\" (and compare results with `tolerance` or a \
                 `comparator`, or ask for no verification)",
            );
        }
        if self.limits.memory_bytes < MIN_CONTAINER_MEMORY_BYTES {
            return field_error(
                "limits.memory_bytes",
                format!("a container job needs at least {MIN_CONTAINER_MEMORY_BYTES} bytes"),
            );
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let path = std::path::Path::new(&input.path);
            if let Some(reserved) = CONTAINER_RESERVED_PATHS.iter().find(|reserved| path.starts_with(reserved)) {
                return field_error(
                    &format!("inputs[{i}].path"),
                    format!("{} is inside {reserved}, which a container's sandbox mounts itself", input.path),
                );
            }
        }
        Ok(())
    }

    /// `args`, `env` and `inputs` within [`JobSpec::MAX_PAYLOAD_BYTES`] together.
    fn validate_size(&self) -> Result<(), SpecError> {
        let args: usize = self.args.iter().chain(self.command.iter().flatten()).map(String::len).sum();
        let env: usize = self.env.iter().map(|(key, value)| key.len() + value.len()).sum();
        let inputs: usize = self
            .inputs
            .iter()
            .map(|input| input.cid.to_string().len() + input.path.len() + input.name.as_ref().map_or(0, String::len))
            .sum();
        let total = args + env + inputs;
        if total <= Self::MAX_PAYLOAD_BYTES {
            return Ok(());
        }
        let parts = [("args", args), ("env", env), ("inputs", inputs)];
        let (field, _) = parts.iter().max_by_key(|(_, bytes)| *bytes).expect("three parts");
        Err(SpecError::TooLarge {
            field: field.to_string(),
            reason: format!(
                "args, env and inputs hold {total} bytes together (args {args}, env {env}, inputs {inputs}); \
                 the limit is {} bytes: pass large data as an input CID instead",
                Self::MAX_PAYLOAD_BYTES
            ),
        })
    }

    /// The entrypoint, arguments and environment.
    fn validate_invocation(&self) -> Result<(), SpecError> {
        if self.entrypoint.is_empty() || self.entrypoint.len() > 256 {
            return field_error("entrypoint", "must be 1 to 256 characters");
        }
        if self.args.len() > 1024 || self.args.iter().map(String::len).sum::<usize>() > 64 << 10 {
            return field_error("args", "at most 1024 arguments and 64 KiB in all");
        }
        // Arguments and the environment reach the guest as C strings: a NUL would cut them, so
        // the runtime refuses them, and a spec holding one could never run.
        if let Some(i) = self.args.iter().position(|arg| arg.contains('\0')) {
            return field_error(&format!("args[{i}]"), "contains a NUL character, which an argument cannot hold");
        }
        for (key, value) in &self.env {
            let field = format!("env.{}", key.escape_debug());
            if key.is_empty() || key.contains(['=', '\0']) {
                return field_error(&field, "a variable's name must be non-empty, without '=' or NUL");
            }
            if value.contains('\0') {
                return field_error(&field, "contains a NUL character, which a variable's value cannot hold");
            }
        }
        Ok(())
    }

    /// Whether a job of this spec may be answered from, and may answer, an identical
    /// invocation's accepted result: it did not opt out (`memoise`), its honest runs all give
    /// the same bytes (deterministic, WebAssembly: a container sees the host), it is not fanned
    /// out (its tasks are jobs of their own), and its result can be accepted at all (the
    /// verifier looks at it).
    pub fn memoisable(&self) -> bool {
        self.memoise
            && self.determinism.is_deterministic()
            && self.runtime.is_wasm()
            && self.fan_out.is_none()
            && self.verification != VerificationPolicy::None
    }

    /// The invocation CID: the hash of the spec's canonical JSON (fields in declaration order,
    /// maps sorted), kept for memoisation — equal specs have equal invocation CIDs.
    pub fn invocation_cid(&self) -> Cid {
        let canonical = serde_json::to_vec(self).expect("a JobSpec always serialises");
        Cid::new_v1(JSON_CODEC, Code::Sha2_256.digest(&canonical))
    }
}

/// A job's webhook: the URL Shoal POSTs events to, and which events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// An `http` or `https` URL, at most 2,048 characters. Private, loopback and link-local
    /// addresses are refused when it is called, unless the operator allows them.
    pub url: String,
    /// The events to send; all of them when left out.
    #[serde(default = "WebhookEvent::all")]
    pub events: Vec<WebhookEvent>,
}

impl Notify {
    fn validate(&self) -> Result<(), SpecError> {
        let parsed = url::Url::parse(&self.url);
        let scheme_ok =
            parsed.as_ref().is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
        if !scheme_ok || self.url.len() > 2048 {
            return field_error("notify.url", "must be an http(s) URL with a host, of at most 2048 characters");
        }
        if self.events.is_empty() {
            return field_error("notify.events", "name at least one event, or leave it out for all");
        }
        Ok(())
    }
}

/// What a webhook tells of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum WebhookEvent {
    /// The job succeeded (again after a verifier's correction of a failure).
    #[serde(rename = "job.succeeded")]
    Succeeded,
    /// The job failed (again after a verifier's correction of a result).
    #[serde(rename = "job.failed")]
    Failed,
    /// The job was cancelled.
    #[serde(rename = "job.cancelled")]
    Cancelled,
    /// The verifier decided on the job's result or failure (see its `acceptance`).
    #[serde(rename = "job.verified")]
    Verified,
}

impl WebhookEvent {
    /// Every event.
    pub fn all() -> Vec<WebhookEvent> {
        vec![WebhookEvent::Succeeded, WebhookEvent::Failed, WebhookEvent::Cancelled, WebhookEvent::Verified]
    }

    /// The event's name, as in the payload's `type` (`job.succeeded`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Succeeded => "job.succeeded",
            WebhookEvent::Failed => "job.failed",
            WebhookEvent::Cancelled => "job.cancelled",
            WebhookEvent::Verified => "job.verified",
        }
    }
}

impl std::str::FromStr for WebhookEvent {
    type Err = String;

    fn from_str(name: &str) -> Result<WebhookEvent, String> {
        WebhookEvent::all()
            .into_iter()
            .find(|event| event.as_str() == name)
            .ok_or_else(|| format!("unknown event {name:?}"))
    }
}

/// Parses one JSON object, `what` (`a job spec`, shaped like `example`), and nothing after it,
/// reporting the path of the offending field.
pub(super) fn parse_object<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
    example: &str,
) -> Result<T, SpecError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return Err(SpecError::MalformedJson { reason: e.to_string() });
        }
        let reason = format!("{what} must be a JSON object ({example}), not another JSON value");
        return Err(SpecError::Field { field: String::new(), reason });
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let reason = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            return SpecError::MalformedJson { reason };
        }
        let path = if path == "." { String::new() } else { path };
        // serde reports a missing field at the object that lacks it; the client needs the
        // field's own path.
        let field = match missing_field(&reason) {
            Some(name) if path.is_empty() => name.to_string(),
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        SpecError::Field { field, reason }
    })?;
    de.end().map_err(|e| SpecError::MalformedJson { reason: format!("{e} after {what}'s object") })?;
    Ok(value)
}

/// The name in serde's "missing field `name`" message.
fn missing_field(reason: &str) -> Option<&str> {
    reason.strip_prefix("missing field `")?.split('`').next()
}

/// A validation error naming `field`.
fn field_error(field: &str, reason: impl Into<String>) -> Result<(), SpecError> {
    Err(SpecError::Field { field: field.to_string(), reason: reason.into() })
}

/// The inputs: how many, their mount paths and names, and which may share a path.
fn validate_inputs(inputs: &[InputSpec]) -> Result<(), SpecError> {
    if inputs.len() > MAX_INPUTS {
        return field_error("inputs", format!("at most {MAX_INPUTS} inputs"));
    }
    // Mount path → (name → index) of the inputs there. Inputs may share a path when each is
    // named, with different names: they appear side by side (a batch task's files do).
    let mut mounted: BTreeMap<&str, BTreeMap<Option<&str>, usize>> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        if let Err(reason) = check_mount_path(&input.path) {
            return field_error(&format!("inputs[{i}].path"), reason);
        }
        if let Some(name) = &input.name {
            if let Err(reason) = check_entry_name(name) {
                return field_error(&format!("inputs[{i}].name"), reason);
            }
        }
        if input.max_price.is_some() && input.source != InputSource::Filecoin {
            return field_error(
                &format!("inputs[{i}].max_price"),
                "applies only to an input with \"source\": \"filecoin\" (content from IPFS is free)",
            );
        }
        let there = mounted.entry(input.path.as_str()).or_default();
        let shared = !there.is_empty();
        if shared && (input.name.is_none() || there.contains_key(&None)) {
            return field_error(
                &format!("inputs[{i}].path"),
                format!("{} is mounted twice; inputs may share a path only when each has a name", input.path),
            );
        }
        if let Some(first) = there.insert(input.name.as_deref(), i) {
            return field_error(
                &format!("inputs[{i}].name"),
                format!("inputs[{first}] is mounted at {} under the same name", input.path),
            );
        }
    }
    Ok(())
}

impl Limits {
    /// Every limit between 1 and [`Limits::MAX`]'s.
    fn validate(&self) -> Result<(), SpecError> {
        let max = &Limits::MAX;
        for (name, value, max) in [
            ("limits.fuel", self.fuel, max.fuel),
            ("limits.memory_bytes", self.memory_bytes, max.memory_bytes),
            ("limits.wall_time_ms", self.wall_time_ms, max.wall_time_ms),
            ("limits.output_bytes", self.output_bytes, max.output_bytes),
            ("limits.log_bytes", self.log_bytes, max.log_bytes),
        ] {
            if value == 0 || value > max {
                return field_error(name, format!("must be between 1 and {max}, got {value}"));
            }
        }
        Ok(())
    }
}

impl RetryPolicy {
    /// Attempts, total timeout and backoff within their bounds.
    fn validate(&self) -> Result<(), SpecError> {
        let attempts = self.max_attempts;
        if attempts == 0 || attempts > RetryPolicy::MAX_ATTEMPTS {
            return field_error(
                "retry.max_attempts",
                format!("must be between 1 and {}, got {attempts}", RetryPolicy::MAX_ATTEMPTS),
            );
        }
        let total = self.total_timeout_ms;
        if !(1_000..=RetryPolicy::MAX_TOTAL_TIMEOUT_MS).contains(&total) {
            return field_error(
                "retry.total_timeout_ms",
                format!("must be between 1000 and {}, got {total}", RetryPolicy::MAX_TOTAL_TIMEOUT_MS),
            );
        }
        if self.backoff_ms > 3_600_000 {
            return field_error("retry.backoff_ms", format!("must be at most 3600000, got {}", self.backoff_ms));
        }
        Ok(())
    }
}

/// A mount path: absolute, in its one normal form — no empty segment (`//`, a trailing `/`),
/// no `.` or `..` — so two paths are the same mount exactly when they are the same string, and
/// nothing under `/outputs`, however spelled.
fn check_mount_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.len() > 1024 {
        return Err(format!("{path:?} must be an absolute path of at most 1024 bytes"));
    }
    if path == "/" || path.contains('\0') {
        return Err(format!("{path:?} must not be / or contain NUL"));
    }
    if path[1..].split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return Err(format!(
            "{path:?} must be a normal path: no empty segment ('//' or a trailing '/'), no '.' or '..'"
        ));
    }
    let outputs = OUTPUTS_MOUNT;
    if path == outputs || path.starts_with(&format!("{outputs}/")) {
        return Err(format!("{path:?} is inside {outputs}, which is the output directory"));
    }
    Ok(())
}

/// The most files a spec may declare it writes.
const MAX_WRITES: usize = 1024;

/// `writes`: at most [`MAX_WRITES`] distinct relative paths.
fn validate_writes(writes: &[String]) -> Result<(), SpecError> {
    if writes.len() > MAX_WRITES {
        return field_error("writes", format!("at most {MAX_WRITES} files"));
    }
    for (i, file) in writes.iter().enumerate() {
        check_relative(file).map_err(|reason| SpecError::Field { field: format!("writes[{i}]"), reason })?;
        if writes[..i].contains(file) {
            return field_error(&format!("writes[{i}]"), format!("{file:?} is named twice"));
        }
    }
    Ok(())
}

/// A path relative to an output directory: one or more entry names joined by `/`.
pub(super) fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > 1024 || path.starts_with('/') {
        return Err(format!("{path:?} must be a relative path of 1 to 1024 bytes, inside the output"));
    }
    path.split('/').try_for_each(check_entry_name)
}

/// A UnixFS entry name: one non-empty path component.
pub(super) fn check_entry_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!("{name:?} must be one path component of 1 to 255 bytes, not . or .."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROGRAM: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

    fn spec_json(extra: &str) -> String {
        format!(r#"{{"program":"{PROGRAM}"{extra}}}"#)
    }

    #[test]
    fn minimal_spec_takes_defaults() {
        let spec = JobSpec::from_json(spec_json("").as_bytes()).unwrap();
        assert_eq!(spec.entrypoint, "_start");
        assert_eq!(spec.limits, Limits::default());
        assert_eq!(spec.verification, VerificationPolicy::default());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (spec_json(r#","colour":"blue""#), "colour", "unknown field `colour`"),
            (spec_json(r#","inputs":[{"cid":"bafynope"}]"#), "inputs[0].cid", "invalid CID"),
            (
                spec_json(
                    r#","inputs":[{"cid":"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4","path":"/outputs/x"}]"#,
                ),
                "inputs[0].path",
                "output directory",
            ),
            (spec_json(r#","limits":{"fuel":0}"#), "limits.fuel", "between 1 and"),
            (spec_json(r#","limits":{"memory_bytes":"lots"}"#), "limits.memory_bytes", "invalid type"),
            (r#"{"args":[]}"#.to_string(), "program", "missing field `program`"),
            (
                spec_json(r#","verification":{"mode":"replicated","replicas":1}"#),
                "verification.replicas",
                "from 2 to 5",
            ),
            (
                spec_json(r#","verification":{"mode":"replicated","replicas":9}"#),
                "verification.replicas",
                "from 2 to 5",
            ),
            (
                spec_json(r#","verification":{"mode":"replicated"}"#),
                "verification.replicas",
                "missing field `replicas`",
            ),
            (spec_json(r#","inputs":[{"path":"/in"}]"#), "inputs[0].cid", "missing field `cid`"),
        ];
        for (body, want_field, want_reason) in cases {
            match JobSpec::from_json(body.as_bytes()) {
                Err(SpecError::Field { field, reason }) => {
                    assert_eq!(field, want_field, "{body}");
                    assert!(reason.contains(want_reason), "{body}: {reason}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_comparisons_are_refused_with_the_field_named() {
        let tolerance = |field: &str| {
            format!(r#","verification":{{"mode":"always","compare":{{"kind":"tolerance","fields":[{field}]}}}}"#)
        };
        let writes = r#","writes":["metrics.json","scores.csv"]"#;
        let cases = [
            (
                spec_json(r#","verification":{"mode":"always","compare":{"kind":"vibes"}}"#),
                "verification.compare.kind",
                "unknown variant `vibes`",
            ),
            (
                spec_json(&format!("{writes}{}", tolerance(r#"{"file":"other.json","json":"/a","absolute":0.1}"#))),
                "verification.compare.fields[0].file",
                "does not write \"other.json\" (it writes metrics.json, scores.csv)",
            ),
            (
                spec_json(&tolerance(r#"{"file":"metrics.json","json":"/a"}"#)),
                "verification.compare.fields[0].file",
                "does not declare the files it writes",
            ),
            (
                spec_json(&format!("{writes}{}", tolerance(r#"{"file":"metrics.json","json":"a"}"#))),
                "verification.compare.fields[0].json",
                "not a JSON pointer",
            ),
            (
                spec_json(&format!("{writes}{}", tolerance(r#"{"file":"metrics.json","json":"/a","column":"b"}"#))),
                "verification.compare.fields[0]",
                "exactly one of",
            ),
            (
                spec_json(&format!("{writes}{}", tolerance(r#"{"file":"scores.csv","column":"a","relative":-1}"#))),
                "verification.compare.fields[0].relative",
                "finite number ≥ 0",
            ),
            (
                spec_json(&format!("{writes}{}", tolerance(r#"{"file":"../metrics.json","json":"/a"}"#))),
                "verification.compare.fields[0].file",
                "one path component",
            ),
            (spec_json(&format!("{writes}{}", tolerance(""))), "verification.compare.fields", "name 1 to 64"),
            (
                spec_json(r#","verification":{"mode":"always","compare":{"kind":"comparator","program":"bafynope"}}"#),
                "verification.compare.program",
                "invalid CID",
            ),
            (
                spec_json(r#","determinism":"nondeterministic""#),
                "verification.compare",
                "byte equality would reject them all",
            ),
            (
                spec_json(r#","determinism":"nondeterministic","verification":{"mode":"replicated","replicas":3}"#),
                "verification.compare",
                "nondeterministic",
            ),
            (spec_json(r#","determinism":"sometimes""#), "determinism", "unknown variant `sometimes`"),
            (
                spec_json(r#","verification":{"mode":"replicated","replicas":3,"quorum":4}"#),
                "verification.quorum",
                "from 2 to the 3 replicas",
            ),
            (spec_json(r#","writes":["a.json","a.json"]"#), "writes[1]", "named twice"),
            (spec_json(r#","writes":["/abs"]"#), "writes[0]", "relative path"),
        ];
        for (body, want_field, want_reason) in cases {
            let (field, reason) = field_error(&body);
            assert_eq!(field, want_field, "{body}: {reason}");
            assert!(reason.contains(want_reason), "{body}: {reason}");
        }
    }

    #[test]
    fn nondeterministic_jobs_compare_by_tolerance_or_comparator_and_defaults_keep_old_cids() {
        let ml = spec_json(
            r#","determinism":"nondeterministic","writes":["metrics.json"],"verification":{"mode":"replicated","replicas":3,"quorum":2,"compare":{"kind":"tolerance","fields":[{"file":"metrics.json","json":"/held_out_accuracy","absolute":0.03}]}}"#,
        );
        let spec = JobSpec::from_json(ml.as_bytes()).unwrap();
        assert_eq!(spec.determinism, Determinism::Nondeterministic);
        let VerificationPolicy::Replicated { replicas: 3, quorum: Some(2), compare: Agreement::Tolerance { fields } } =
            &spec.verification
        else {
            panic!("{:?}", spec.verification)
        };
        assert_eq!(fields[0].name(), "metrics.json#/held_out_accuracy");
        let comparator = spec_json(&format!(
            r#","determinism":"nondeterministic","verification":{{"mode":"always","compare":{{"kind":"comparator","program":"{PROGRAM}","args":["--epochs","30"]}}}}"#
        ));
        assert!(JobSpec::from_json(comparator.as_bytes()).is_ok());
        let unverified = spec_json(r#","determinism":"nondeterministic","verification":{"mode":"none"}"#);
        assert!(JobSpec::from_json(unverified.as_bytes()).is_ok());
        // The new fields at their defaults are left out of the JSON, so a spec's invocation CID
        // is what it was before they existed.
        let plain = JobSpec::from_json(spec_json(r#","verification":{"mode":"always"}"#).as_bytes()).unwrap();
        assert_eq!(serde_json::to_value(&plain).unwrap()["verification"], serde_json::json!({"mode": "always"}));
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("determinism").is_none() && json.get("writes").is_none(), "{json}");
    }

    /// A container job's spec with `extra` fields (its verification among them).
    fn container_json(extra: &str) -> String {
        spec_json(&format!(
            r#","runtime":"oci","command":["/bin/sh","-c","cat /inputs/* > /outputs/out"],"determinism":"nondeterministic"{extra}"#
        ))
    }

    const UNVERIFIED: &str = r#","verification":{"mode":"none"}"#;

    #[test]
    fn a_container_job_parses_and_keeps_its_runtime_and_command_in_the_json() {
        let spec = JobSpec::from_json(container_json(&format!(r#"{UNVERIFIED},"args":["x"]"#)).as_bytes()).unwrap();
        assert_eq!(spec.runtime, RuntimeKind::Oci);
        assert_eq!(spec.command.as_deref().unwrap()[0], "/bin/sh");
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["runtime"], "oci");
        assert_eq!(json["command"][2], "cat /inputs/* > /outputs/out");
        // A WebAssembly job leaves both out, so its invocation CID is what it was before.
        let wasm = JobSpec::from_json(spec_json(UNVERIFIED).as_bytes()).unwrap();
        let json = serde_json::to_value(&wasm).unwrap();
        assert!(json.get("runtime").is_none() && json.get("command").is_none(), "{json}");
        let explicit = JobSpec::from_json(spec_json(&format!(r#","runtime":"wasm"{UNVERIFIED}"#)).as_bytes()).unwrap();
        assert_eq!(explicit.invocation_cid(), wasm.invocation_cid());
        // Re-executed and compared within a tolerance, as a nondeterministic job may be.
        let tolerant = container_json(
            r#","writes":["result.json"],"verification":{"mode":"always","compare":{"kind":"tolerance","fields":[{"file":"result.json","json":"/n","absolute":1}]}}"#,
        );
        assert!(JobSpec::from_json(tolerant.as_bytes()).is_ok());
    }

    #[test]
    fn container_and_command_errors_name_the_field() {
        let oci = format!(r#","runtime":"oci","determinism":"nondeterministic"{UNVERIFIED}"#);
        let cases = [
            (spec_json(r#","runtime":"docker""#), "runtime", "unknown variant `docker`"),
            (spec_json(&oci), "command", "must name its command"),
            (spec_json(&format!(r#"{oci},"command":[]"#)), "command", "at least the executable"),
            (spec_json(&format!(r#"{oci},"command":[""]"#)), "command", "at least the executable"),
            (spec_json(&format!(r#"{oci},"command":["/bin/sh","a\u0000b"]"#)), "command[1]", "NUL"),
            (spec_json(r#","command":["/bin/sh"]"#), "command", "applies to container jobs"),
            (spec_json(r#","runtime":"wasm","command":["/bin/sh"]"#), "command", "applies to container jobs"),
            (container_json(&format!(r#"{UNVERIFIED},"entrypoint":"main""#)), "entrypoint", "runs its `command`"),
            (
                spec_json(&format!(r#","runtime":"oci","command":["/bin/true"]{UNVERIFIED}"#)),
                "determinism",
                "state \"determinism\": \"nondeterministic\"",
            ),
            (
                container_json(r#","verification":{"mode":"always"}"#),
                "verification.compare",
                "byte equality would reject them all",
            ),
            (
                container_json(r#","verification":{"mode":"replicated","replicas":2}"#),
                "verification.compare",
                "byte equality would reject them all",
            ),
            (
                container_json(&format!(r#"{UNVERIFIED},"limits":{{"memory_bytes":4096}}"#)),
                "limits.memory_bytes",
                "at least 8388608",
            ),
            (
                container_json(&format!(r#"{UNVERIFIED},"inputs":[{{"cid":"{FILE_A}","path":"/tmp/in"}}]"#)),
                "inputs[0].path",
                "inside /tmp",
            ),
        ];
        for (body, want_field, want_reason) in cases {
            let (field, reason) = field_error(&body);
            assert_eq!(field, want_field, "{body}: {reason}");
            assert!(reason.contains(want_reason), "{body}: {reason}");
        }
    }

    const FILE_A: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    const DIR_B: &str = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354";

    fn field_error(body: &str) -> (String, String) {
        match JobSpec::from_json(body.as_bytes()) {
            Err(SpecError::Field { field, reason }) => (field, reason),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_filecoin_input_states_its_price_exactly_and_ipfs_inputs_keep_their_json() {
        let body = spec_json(&format!(
            r#","inputs":[{{"cid":"{FILE_A}","source":"filecoin","max_price":"1000000000000000 attoFIL"}}]"#
        ));
        let spec = JobSpec::from_json(body.as_bytes()).unwrap();
        let input = &spec.inputs[0];
        assert_eq!(input.source, InputSource::Filecoin);
        assert_eq!(input.max_price.map(AttoFil::atto), Some(1_000_000_000_000_000));
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["inputs"][0]["max_price"], "0.001 FIL");
        assert_eq!(JobSpec::from_json(&serde_json::to_vec(&json).unwrap()).unwrap(), spec);
        let plain = JobSpec::from_json(spec_json(&format!(r#","inputs":[{{"cid":"{FILE_A}"}}]"#)).as_bytes()).unwrap();
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(json["inputs"][0], serde_json::json!({"cid": FILE_A, "path": "/inputs"}));
        assert_ne!(plain.invocation_cid(), spec.invocation_cid());
    }

    #[test]
    fn filecoin_input_errors_name_the_field() {
        let input = |extra: &str| spec_json(&format!(r#","inputs":[{{"cid":"{FILE_A}"{extra}}}]"#));
        let cases = [
            (input(r#","max_price":"1 FIL""#), "inputs[0].max_price", "only to an input with \"source\": \"filecoin\""),
            (input(r#","source":"filecoin","max_price":"-1 FIL""#), "inputs[0].max_price", "negative"),
            (input(r#","source":"filecoin","max_price":"3000000000 FIL""#), "inputs[0].max_price", "overflows"),
            (input(r#","source":"filecoin","max_price":"a lot""#), "inputs[0].max_price", "invalid amount"),
            (input(r#","source":"arweave""#), "inputs[0].source", "unknown variant"),
            (
                spec_json(&format!(r#","inputs":[{{"cid":"{DIR_B}","source":"filecoin"}}],"fan_out":{{"input":0}}"#)),
                "inputs[0].source",
                "cannot come from Filecoin",
            ),
        ];
        for (body, field, reason) in cases {
            let (got_field, got_reason) = field_error(&body);
            assert_eq!(got_field, field, "{body}: {got_reason}");
            assert!(got_reason.contains(reason), "{body}: {got_reason}");
        }
    }

    #[test]
    fn the_directory_fan_out_keeps_its_json_and_invocation_cid() {
        let body = spec_json(&format!(r#","inputs":[{{"cid":"{DIR_B}"}}],"fan_out":{{"input":0,"glob":"*.tif"}}"#));
        let spec = JobSpec::from_json(body.as_bytes()).unwrap();
        let fan_out = spec.fan_out.as_ref().unwrap();
        assert_eq!((fan_out.over, fan_out.batch), (FanOutOver::Directory, 1));
        // Defaults are left out, so specs written before batches and lists of inputs hash alike.
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["fan_out"], serde_json::json!({"input": 0, "glob": "*.tif"}));
        assert!(fan_out.selects("LC08_1.tif") && !fan_out.selects("notes.txt"));
    }

    #[test]
    fn fan_out_over_inputs_and_batches_parse() {
        let body = spec_json(&format!(
            r#","inputs":[{{"cid":"{FILE_A}","name":"a"}},{{"cid":"{DIR_B}","name":"b","path":"/other"}}],"fan_out":{{"over":"inputs","batch":8}}"#
        ));
        let spec = JobSpec::from_json(body.as_bytes()).unwrap();
        let fan_out = spec.fan_out.unwrap();
        assert_eq!((fan_out.over, fan_out.batch), (FanOutOver::Inputs, 8));
    }

    #[test]
    fn fan_out_errors_name_the_field() {
        let dir = format!(r#"{{"cid":"{DIR_B}"}}"#);
        let named = |name: &str| format!(r#"{{"cid":"{FILE_A}","name":"{name}"}}"#);
        let cases = [
            (format!(r#","inputs":[{dir}],"fan_out":{{"input":1}}"#), "fan_out.input", "no input 1"),
            (format!(r#","inputs":[{dir}],"fan_out":{{"glob":"[z-a"}}"#), "fan_out.glob", "not a glob"),
            (format!(r#","inputs":[{dir}],"fan_out":{{"batch":0}}"#), "fan_out.batch", "between 1 and 1024"),
            (format!(r#","inputs":[{dir}],"fan_out":{{"batch":1025}}"#), "fan_out.batch", "between 1 and 1024"),
            (format!(r#","inputs":[{dir}],"fan_out":{{"over":"everything"}}"#), "fan_out.over", "unknown variant"),
            (format!(r#","inputs":[{dir}],"fan_out":{{"batches":2}}"#), "fan_out.batches", "unknown field `batches`"),
            (r#","fan_out":{"over":"inputs"}"#.to_string(), "fan_out.over", "no inputs"),
            (format!(r#","inputs":[{dir}],"fan_out":{{"over":"inputs"}}"#), "inputs[0].name", "must be given"),
            (
                format!(r#","inputs":[{},{}],"fan_out":{{"over":"inputs"}}"#, named("x"), named("x")),
                "inputs[1].name",
                "same name",
            ),
            (
                format!(
                    r#","inputs":[{},{{"cid":"{FILE_A}","name":"x","path":"/elsewhere"}}],"fan_out":{{"over":"inputs"}}"#,
                    named("x")
                ),
                "inputs[1].name",
                "also inputs[0]'s",
            ),
            (
                format!(r#","inputs":[{}],"fan_out":{{"over":"inputs","glob":"*"}}"#, named("x")),
                "fan_out.glob",
                "over inputs",
            ),
            (
                format!(r#","inputs":[{}],"fan_out":{{"over":"inputs","input":1}}"#, named("x")),
                "fan_out.input",
                "over inputs",
            ),
            (
                format!(r#","inputs":[{{"cid":"{DIR_B}","name":"d"}},{}],"fan_out":{{}}"#, named("x")),
                "fan_out.input",
                "shares its path",
            ),
        ];
        for (extra, want_field, want_reason) in cases {
            let body = spec_json(&extra);
            let (field, reason) = field_error(&body);
            assert_eq!(field, want_field, "{body}: {reason}");
            assert!(reason.contains(want_reason), "{body}: {reason}");
        }
    }

    #[test]
    fn inputs_share_a_path_only_when_each_is_named_differently() {
        let two = |a: &str, b: &str| spec_json(&format!(r#","inputs":[{a},{b}]"#));
        let named = |name: &str| format!(r#"{{"cid":"{FILE_A}","name":"{name}"}}"#);
        let unnamed = format!(r#"{{"cid":"{FILE_A}"}}"#);
        assert!(JobSpec::from_json(two(&named("a"), &named("b")).as_bytes()).is_ok());
        for (body, want) in [
            (two(&unnamed, &unnamed), "mounted twice"),
            (two(&unnamed, &named("b")), "mounted twice"),
            (two(&named("a"), &unnamed), "mounted twice"),
        ] {
            let (field, reason) = field_error(&body);
            assert_eq!(field, "inputs[1].path", "{body}");
            assert!(reason.contains(want), "{body}: {reason}");
        }
        assert_eq!(field_error(&two(&named("a"), &named("a"))).0, "inputs[1].name");
    }

    #[test]
    fn nul_characters_in_args_and_env_name_their_field() {
        let cases = [
            (spec_json(r#","args":["ok","a\u0000b"]"#), "args[1]", "NUL"),
            (spec_json(r#","env":{"A\u0000B":"x"}"#), "env.A\\0B", "name"),
            (spec_json(r#","env":{"A=B":"x"}"#), "env.A=B", "without '='"),
            (spec_json(r#","env":{"":"x"}"#), "env.", "non-empty"),
            (spec_json(r#","env":{"MODE":"a\u0000"}"#), "env.MODE", "NUL"),
        ];
        for (body, want_field, want_reason) in cases {
            let (field, reason) = field_error(&body);
            assert_eq!(field, want_field, "{body}: {reason}");
            assert!(reason.contains(want_reason), "{body}: {reason}");
        }
    }

    #[test]
    fn mount_paths_must_be_normal_and_outside_outputs() {
        let at = |path: &str| spec_json(&format!(r#","inputs":[{{"cid":"{FILE_A}","path":"{path}"}}]"#));
        for path in ["//outputs/x", "/outputs", "/outputs/x", "/a/", "/a//b", "/a/./b", "/a/../outputs", "/", "a"] {
            let (field, reason) = field_error(&at(path));
            assert_eq!(field, "inputs[0].path", "{path}: {reason}");
        }
        assert!(field_error(&at("//outputs/x")).1.contains("normal path"));
        for path in ["/inputs", "/a/b.c", "/data/..x", "/outputsx"] {
            assert!(JobSpec::from_json(at(path).as_bytes()).is_ok(), "{path}");
        }
        // "/a" and "/a/" were two mounts of one directory; the second is not a normal path.
        let twice =
            spec_json(&format!(r#","inputs":[{{"cid":"{FILE_A}","path":"/a"}},{{"cid":"{FILE_A}","path":"/a/"}}]"#));
        assert_eq!(field_error(&twice).0, "inputs[1].path");
    }

    #[test]
    fn a_spec_is_one_json_object_and_nothing_more() {
        for body in [format!(r#"["{PROGRAM}"]"#), "42".to_string(), r#""text""#.to_string()] {
            let (field, reason) = field_error(&body);
            assert_eq!(field, "", "{body}");
            assert!(reason.contains("JSON object"), "{body}: {reason}");
        }
        for trailing in ["{}", " x", "]", r#"{"program":"x"}"#] {
            let body = format!("{}{trailing}", spec_json(""));
            match JobSpec::from_json(body.as_bytes()) {
                Err(SpecError::MalformedJson { reason }) => assert!(reason.contains("trailing"), "{body}: {reason}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(JobSpec::from_json(format!(" \n{}\n ", spec_json("")).as_bytes()).is_ok());
    }

    #[test]
    fn args_env_and_inputs_are_bounded_together_naming_the_largest() {
        let big = "x".repeat(JobSpec::MAX_PAYLOAD_BYTES / 2);
        // Each half the limit: accepted alone, too large together.
        assert!(JobSpec::from_json(spec_json(&format!(r#","env":{{"A":"{big}"}}"#)).as_bytes()).is_ok());
        let both = spec_json(&format!(r#","env":{{"A":"{big}","B":"{big}"}},"args":["small"]"#));
        match JobSpec::from_json(both.as_bytes()) {
            Err(SpecError::TooLarge { field, reason }) => {
                assert_eq!(field, "env");
                assert!(reason.contains(&JobSpec::MAX_PAYLOAD_BYTES.to_string()), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let names: Vec<String> = (0..1000)
            .map(|i| format!(r#"{{"cid":"{FILE_A}","path":"/in","name":"{i}-{}"}}"#, "n".repeat(200)))
            .collect();
        let inputs = spec_json(&format!(r#","inputs":[{}]"#, names.join(",")));
        assert!(
            matches!(JobSpec::from_json(inputs.as_bytes()), Err(SpecError::TooLarge { field, .. }) if field == "inputs")
        );
    }

    #[test]
    fn malformed_json_is_its_own_error() {
        for body in ["{", "not json", r#"{"program": }"#] {
            assert!(matches!(JobSpec::from_json(body.as_bytes()), Err(SpecError::MalformedJson { .. })), "{body}");
        }
    }

    #[test]
    fn invocation_cid_ignores_env_order_and_sees_every_field() {
        let a = JobSpec::from_json(spec_json(r#","env":{"A":"1","B":"2"}"#).as_bytes()).unwrap();
        let b = JobSpec::from_json(spec_json(r#","env":{"B":"2","A":"1"}"#).as_bytes()).unwrap();
        let c = JobSpec::from_json(spec_json(r#","env":{"B":"2","A":"1"},"args":["x"]"#).as_bytes()).unwrap();
        assert_eq!(a.invocation_cid(), b.invocation_cid());
        assert_ne!(a.invocation_cid(), c.invocation_cid());
    }
}
