//! Whether two results of one job agree: the [`Judge`] trait, the one place a comparison plugs
//! in, and the comparisons a spec's `compare` selects — byte equality ([`ExactMatch`]), numbers
//! within tolerances ([`WithinTolerance`]) and the user's comparator program
//! ([`ComparatorProgram`]). Re-execution and replication both judge through it, so a job is
//! compared the same way whoever produced the other result.

use async_trait::async_trait;
use shoal_jobs::{
    Agreement, Compared, ContentId, ExecutionResult, FieldCheck, InputSpec, Job, JobSpec, Limits, RuntimeKind,
    ToleranceField, VerificationPolicy,
};
use shoal_worker::Executor;

/// The most bytes of an output file a tolerance comparison reads.
const MAX_COMPARED_FILE_BYTES: u64 = 16 << 20;
/// The most characters of a comparator's stdout kept as its reason.
const MAX_SAID_CHARS: usize = 1024;

/// Where the comparator sees the reported result's output.
pub const REPORTED_MOUNT: &str = "/results/a";
/// Where the comparator sees the other result's output.
pub const OTHER_MOUNT: &str = "/results/b";

/// The one place a comparison plugs in: whether `other` (the verifier's re-execution, or a
/// replica's result), agrees with `reported`, the result that settled `job`.
#[async_trait]
pub trait Judge: Send + Sync {
    /// What comparing the two found; `Err` when it could not tell, for that reason (the other
    /// result's files unreadable, the comparator failing): no verdict rests on it.
    async fn judge(
        &self,
        executor: &Executor,
        job: &Job,
        reported: &ExecutionResult,
        other: &ExecutionResult,
        against: &str,
    ) -> Result<Compared, String>;
}

/// The judge of `agreement`.
pub fn judge_of(agreement: &Agreement) -> Box<dyn Judge + '_> {
    match agreement {
        Agreement::Exact => Box::new(ExactMatch),
        Agreement::Tolerance { fields } => Box::new(WithinTolerance { fields }),
        Agreement::Comparator { program, args } => Box::new(ComparatorProgram { program: *program, args }),
    }
}

/// `exact`: the same exit code, fuel, output, stdout and stderr (not the times or the cache,
/// which differ honestly).
#[derive(Debug, Clone, Copy)]
pub struct ExactMatch;

impl ExactMatch {
    /// What differs between `a` and `b`.
    pub fn differs(a: &ExecutionResult, b: &ExecutionResult) -> Vec<String> {
        [
            ("exit_code", a.exit_code != b.exit_code),
            ("fuel", a.fuel_consumed != b.fuel_consumed),
            ("output", a.output != b.output),
            ("stdout", a.stdout != b.stdout),
            ("stderr", a.stderr != b.stderr),
        ]
        .into_iter()
        .filter(|(_, differ)| *differ)
        .map(|(name, _)| name.to_string())
        .collect()
    }
}

#[async_trait]
impl Judge for ExactMatch {
    async fn judge(
        &self,
        _: &Executor,
        _: &Job,
        reported: &ExecutionResult,
        other: &ExecutionResult,
        against: &str,
    ) -> Result<Compared, String> {
        let differs = ExactMatch::differs(reported, other);
        Ok(Compared::Exact { against: against.to_string(), agree: differs.is_empty(), differs })
    }
}

/// `tolerance`: the same exit code, and every named number within its tolerance. A field the
/// reported result lacks or spoils disagrees; one the other result lacks leaves it undecided.
#[derive(Debug, Clone, Copy)]
pub struct WithinTolerance<'a> {
    /// The numbers compared.
    pub fields: &'a [ToleranceField],
}

/// One side's values of a field, or why there are none.
enum Values {
    Read(Vec<f64>),
    Unreadable(String),
}

#[async_trait]
impl Judge for WithinTolerance<'_> {
    async fn judge(
        &self,
        executor: &Executor,
        _: &Job,
        reported: &ExecutionResult,
        other: &ExecutionResult,
        against: &str,
    ) -> Result<Compared, String> {
        let mut checks = Vec::with_capacity(self.fields.len() + 1);
        if reported.exit_code != other.exit_code {
            checks.push(FieldCheck {
                field: "exit_code".into(),
                within: false,
                values: 1,
                reported: Some(f64::from(reported.exit_code)),
                other: Some(f64::from(other.exit_code)),
                problem: None,
            });
        }
        for field in self.fields {
            let ours = match values(executor, &other.output, field).await {
                Values::Read(ours) => ours,
                Values::Unreadable(why) => {
                    return Err(format!("reading {} of the result compared against: {why}", field.name()))
                }
            };
            checks.push(match values(executor, &reported.output, field).await {
                Values::Unreadable(problem) => FieldCheck {
                    field: field.name(),
                    within: false,
                    values: 0,
                    reported: None,
                    other: None,
                    problem: Some(format!("in the reported result: {problem}")),
                },
                Values::Read(theirs) => check(field, &theirs, &ours),
            });
        }
        let agree = checks.iter().all(|c| c.within);
        Ok(Compared::Tolerance { against: against.to_string(), agree, checks })
    }
}

/// The check of one field: `theirs` (reported) against `ours`, row by row.
fn check(field: &ToleranceField, theirs: &[f64], ours: &[f64]) -> FieldCheck {
    let name = field.name();
    if theirs.len() != ours.len() {
        return FieldCheck {
            field: name,
            within: false,
            values: theirs.len() as u64,
            reported: None,
            other: None,
            problem: Some(format!("{} values reported, {} in the result compared against", theirs.len(), ours.len())),
        };
    }
    // The pair furthest apart shows best why a field is or is not within tolerance.
    let worst = theirs
        .iter()
        .zip(ours)
        .max_by(|(a1, b1), (a2, b2)| {
            let (d1, d2) = ((*a1 - *b1).abs(), (*a2 - *b2).abs());
            d1.is_nan().cmp(&d2.is_nan()).then(d1.total_cmp(&d2))
        })
        .map(|(a, b)| (*a, *b));
    FieldCheck {
        field: name,
        within: theirs.iter().zip(ours).all(|(a, b)| field.within(*a, *b)),
        values: theirs.len() as u64,
        reported: worst.map(|(a, _)| a),
        other: worst.map(|(_, b)| b),
        problem: None,
    }
}

/// `field`'s values in output `root`.
async fn values(executor: &Executor, root: &ContentId, field: &ToleranceField) -> Values {
    let bytes = match executor.read_output(root, &field.file, MAX_COMPARED_FILE_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return Values::Unreadable(e),
    };
    let parsed = match (&field.json, &field.column) {
        (Some(pointer), _) => json_number(&bytes, pointer).map(|n| vec![n]),
        (None, Some(column)) => csv_column(&bytes, column),
        (None, None) => Err("the field names neither a JSON pointer nor a CSV column".into()),
    };
    parsed.map_or_else(Values::Unreadable, Values::Read)
}

/// The number at JSON pointer `pointer` in `bytes`.
fn json_number(bytes: &[u8], pointer: &str) -> Result<f64, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let found = value.pointer(pointer).ok_or_else(|| format!("no field at {pointer}"))?;
    found.as_f64().filter(|n| n.is_finite()).ok_or_else(|| format!("{pointer} is {found}, not a finite number"))
}

/// Every row's number in column `column` of CSV `bytes` (a header row first).
fn csv_column(bytes: &[u8], column: &str) -> Result<Vec<f64>, String> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().map_err(|e| format!("not CSV: {e}"))?;
    let at = headers.iter().position(|h| h.trim() == column).ok_or_else(|| format!("no column {column:?}"))?;
    reader
        .records()
        .enumerate()
        .map(|(row, record)| {
            let record = record.map_err(|e| format!("row {}: {e}", row + 1))?;
            let cell = record.get(at).unwrap_or("").trim();
            cell.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| format!("row {}, column {column:?}: {cell:?} is not a finite number", row + 1))
        })
        .collect()
}

/// `comparator`: the user's program decides, run by the verifier in the deterministic sandbox
/// (so its verdict is the same wherever it runs) with the reported output at
/// [`REPORTED_MOUNT`], the other at [`OTHER_MOUNT`] and the job's inputs at their paths.
#[derive(Debug, Clone, Copy)]
pub struct ComparatorProgram<'a> {
    /// The comparator module.
    pub program: ContentId,
    /// Its arguments.
    pub args: &'a [String],
}

impl ComparatorProgram<'_> {
    /// The comparator's run over `reported` and `other` as a job spec of its own.
    fn spec(&self, job: &Job, reported: &ExecutionResult, other: &ExecutionResult) -> Result<JobSpec, String> {
        let mount = |cid: ContentId, path: &str| InputSpec::new(cid, path, None);
        let mut inputs = job.spec.inputs.clone();
        inputs.push(mount(reported.output, REPORTED_MOUNT));
        inputs.push(mount(other.output, OTHER_MOUNT));
        let spec = JobSpec {
            // A comparator is a WebAssembly program whatever runs the job it judges.
            runtime: RuntimeKind::Wasm,
            program: self.program,
            entrypoint: "_start".into(),
            command: None,
            args: self.args.to_vec(),
            env: Default::default(),
            inputs,
            limits: Limits::default(),
            verification: VerificationPolicy::None,
            determinism: Default::default(),
            writes: None,
            retry: Default::default(),
            notify: None,
            fan_out: None,
            memoise: true,
        };
        spec.validate().map_err(|e| format!("the comparator's run cannot be formed: {e}"))?;
        Ok(spec)
    }

    /// The start of the comparator's stdout.
    async fn said(executor: &Executor, result: &ExecutionResult) -> String {
        match executor.read_output(&result.stdout, "", 64 << 10).await {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let mut said: String = text.trim().chars().take(MAX_SAID_CHARS).collect();
                if said.len() < text.trim().len() {
                    said.push('…');
                }
                said
            }
            Err(e) => format!("(its stdout could not be read: {e})"),
        }
    }
}

#[async_trait]
impl Judge for ComparatorProgram<'_> {
    async fn judge(
        &self,
        executor: &Executor,
        job: &Job,
        reported: &ExecutionResult,
        other: &ExecutionResult,
        against: &str,
    ) -> Result<Compared, String> {
        let spec = self.spec(job, reported, other)?;
        let run = executor.run_spec(&spec, &format!("compare-{}", ulid::Ulid::new())).await;
        let result = run.map_err(|failure| {
            format!("the comparator did not run to its end ({}): {}", failure.reason, failure.message)
        })?;
        let said = ComparatorProgram::said(executor, &result).await;
        let agree = match result.exit_code {
            0 => true,
            1 => false,
            code => return Err(format!("the comparator could not compare (exit {code}): {said}")),
        };
        Ok(Compared::Comparator {
            against: against.to_string(),
            agree,
            program: self.program,
            exit_code: result.exit_code,
            said,
            output: result.output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: Option<&str>, column: Option<&str>, absolute: Option<f64>) -> ToleranceField {
        ToleranceField {
            file: "f".into(),
            json: json.map(str::to_string),
            column: column.map(str::to_string),
            absolute,
            relative: None,
        }
    }

    #[test]
    fn json_numbers_are_read_by_pointer_and_must_be_finite_numbers() {
        let doc = br#"{"held_out_accuracy": 0.96, "nested": {"loss": [0.1, 0.2]}, "name": "x"}"#;
        assert_eq!(json_number(doc, "/held_out_accuracy"), Ok(0.96));
        assert_eq!(json_number(doc, "/nested/loss/1"), Ok(0.2));
        assert!(json_number(doc, "/missing").unwrap_err().contains("no field at /missing"));
        assert!(json_number(doc, "/name").unwrap_err().contains("not a finite number"));
        assert!(json_number(b"{", "/a").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn csv_columns_are_read_row_by_row_under_their_header() {
        let csv = b"scene,cloud_fraction\na,0.25\nb, 0.5\n";
        assert_eq!(csv_column(csv, "cloud_fraction"), Ok(vec![0.25, 0.5]));
        assert!(csv_column(csv, "other").unwrap_err().contains("no column"));
        assert!(csv_column(b"a\nx\n", "a").unwrap_err().contains("row 1"));
    }

    #[test]
    fn a_field_agrees_when_every_row_is_within_and_records_the_worst_pair() {
        let f = field(None, Some("c"), Some(0.05));
        let ok = check(&f, &[0.1, 0.5, 0.9], &[0.12, 0.47, 0.9]);
        assert!(ok.within);
        assert_eq!((ok.values, ok.reported, ok.other), (3, Some(0.5), Some(0.47)));
        let off = check(&f, &[0.1, 0.5], &[0.1, 0.6]);
        assert!(!off.within);
        assert_eq!((off.reported, off.other), (Some(0.5), Some(0.6)));
        let short = check(&f, &[0.1], &[0.1, 0.2]);
        assert!(!short.within && short.problem.unwrap().contains("1 values reported, 2"));
        assert!(check(&field(Some("/a"), None, None), &[1.0], &[1.0]).within);
    }
}
