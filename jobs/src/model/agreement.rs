//! How two results of one job are judged to agree ([`Agreement`]), whether a job may see the
//! host's clocks and entropy ([`Determinism`]), and what a comparison found ([`Compared`]).
//!
//! A deterministic job's honest runs give the same bytes, so byte equality (`exact`) is the
//! check. A nondeterministic job's do not: its spec names how its results are compared — numeric
//! fields of named output files within tolerances (`tolerance`), or a comparator program of the
//! user's (`comparator`) — and the verifier (re-execution, replicas) judges with that.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::spec::check_relative;
use super::ContentId;
use crate::error::SpecError;

/// Whether a job runs pinned (the default) or may observe the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Determinism {
    /// Fixed clocks and randomness: every honest run gives the same bytes, and nothing of the
    /// host reaches the guest.
    #[default]
    Deterministic,
    /// The host's clocks and random sources seeded from its entropy (random initialisation,
    /// shuffling, timing): honest runs differ, so the spec must name a comparison other than
    /// `exact`, or ask for no verification.
    Nondeterministic,
}

impl Determinism {
    /// Whether this is the default, left out of a spec's JSON (so the invocation CIDs of specs
    /// written before the field existed do not change).
    pub fn is_deterministic(&self) -> bool {
        *self == Determinism::Deterministic
    }
}

/// How two results of a job are judged to agree. Whatever the kind, both must have exited with
/// the same code.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "AgreementFields")]
pub enum Agreement {
    /// The same exit code, fuel, output, stdout and stderr: byte equality, the check for
    /// deterministic jobs.
    #[default]
    Exact,
    /// Numbers in the named output files equal within tolerances.
    Tolerance {
        /// The numbers compared: every one must agree.
        fields: Vec<ToleranceField>,
    },
    /// A comparator program decides: it runs in the sandbox (deterministically) with the
    /// reported result's output at `/results/a`, the other's at `/results/b` and the job's
    /// inputs at their paths; exit 0 means they agree, 1 that they do not, anything else that
    /// it could not tell. Its stdout is kept as its reason.
    Comparator {
        /// The comparator's WebAssembly module.
        program: ContentId,
        /// Its arguments after argv\[0\].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
    },
}

impl Eq for Agreement {}

/// A comparison as written, read as a plain struct so that an error inside it names its field
/// (serde's internally tagged enums lose the path).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgreementFields {
    kind: AgreementKind,
    #[serde(default)]
    fields: Option<Vec<ToleranceField>>,
    #[serde(default)]
    program: Option<ContentId>,
    #[serde(default)]
    args: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AgreementKind {
    Exact,
    Tolerance,
    Comparator,
}

impl TryFrom<AgreementFields> for Agreement {
    type Error = String;

    fn try_from(written: AgreementFields) -> Result<Agreement, String> {
        let AgreementFields { kind, fields, program, args } = written;
        let stray = |name: &str, kind: &str| Err(format!("`{name}` does not apply to kind `{kind}`"));
        match kind {
            AgreementKind::Exact => match (&fields, &program, &args) {
                (Some(_), _, _) => stray("fields", "exact"),
                (_, Some(_), _) => stray("program", "exact"),
                (_, _, Some(_)) => stray("args", "exact"),
                _ => Ok(Agreement::Exact),
            },
            AgreementKind::Tolerance => match (fields, &program, &args) {
                (_, Some(_), _) => stray("program", "tolerance"),
                (_, _, Some(_)) => stray("args", "tolerance"),
                (None, _, _) => Err("missing field `fields`".into()),
                (Some(fields), _, _) => Ok(Agreement::Tolerance { fields }),
            },
            AgreementKind::Comparator => match (&fields, program) {
                (Some(_), _) => stray("fields", "comparator"),
                (_, None) => Err("missing field `program`".into()),
                (_, Some(program)) => Ok(Agreement::Comparator { program, args: args.unwrap_or_default() }),
            },
        }
    }
}

/// One number (a JSON field) or column of numbers (a CSV column) in an output file, and how far
/// two results' values may be apart: `|a − b| ≤ absolute`, or `|a − b| ≤ relative · max(|a|, |b|)`
/// (with neither given, they must be equal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToleranceField {
    /// The file, relative to `/outputs` (e.g. `metrics.json`); the job must declare it in
    /// `writes`.
    pub file: String,
    /// In a JSON file: a JSON pointer to a number (`/held_out_accuracy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    /// In a CSV file (with a header row): a column's name; every row is compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The largest absolute difference allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute: Option<f64>,
    /// The largest difference allowed relative to the larger magnitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<f64>,
}

impl ToleranceField {
    /// The field's name for records and messages: `metrics.json#/accuracy` or
    /// `scores.csv[accuracy]`.
    pub fn name(&self) -> String {
        match (&self.json, &self.column) {
            (Some(pointer), _) => format!("{}#{pointer}", self.file),
            (None, Some(column)) => format!("{}[{column}]", self.file),
            (None, None) => self.file.clone(),
        }
    }

    /// Whether `a` and `b` are within this field's tolerance.
    pub fn within(&self, a: f64, b: f64) -> bool {
        let difference = (a - b).abs();
        let relative = self.relative.map(|r| r * a.abs().max(b.abs()));
        a == b || [self.absolute, relative].into_iter().flatten().any(|allowed| difference <= allowed)
    }
}

/// The most fields a tolerance comparison may name.
const MAX_TOLERANCE_FIELDS: usize = 64;

impl Agreement {
    /// Whether this is byte equality, the default, left out of a spec's JSON.
    pub fn is_exact(&self) -> bool {
        *self == Agreement::Exact
    }

    /// The kind's name: `exact`, `tolerance` or `comparator`.
    pub fn kind(&self) -> &'static str {
        match self {
            Agreement::Exact => "exact",
            Agreement::Tolerance { .. } => "tolerance",
            Agreement::Comparator { .. } => "comparator",
        }
    }

    /// Checks the comparison at `at` (e.g. `verification.compare`) against the files the job
    /// declares it writes.
    pub(super) fn validate(&self, at: &str, writes: Option<&[String]>) -> Result<(), SpecError> {
        let error = |field: String, reason: String| Err(SpecError::Field { field, reason });
        match self {
            Agreement::Exact => Ok(()),
            Agreement::Tolerance { fields } => {
                if fields.is_empty() || fields.len() > MAX_TOLERANCE_FIELDS {
                    return error(format!("{at}.fields"), format!("name 1 to {MAX_TOLERANCE_FIELDS} fields"));
                }
                for (i, field) in fields.iter().enumerate() {
                    let at = format!("{at}.fields[{i}]");
                    if let Err(reason) = check_relative(&field.file) {
                        return error(format!("{at}.file"), reason);
                    }
                    match writes {
                        None => {
                            return error(
                                format!("{at}.file"),
                                format!(
                                    "the job does not declare the files it writes: add \"writes\": [{:?}, …] \
                                     to the spec",
                                    field.file
                                ),
                            )
                        }
                        Some(writes) if !writes.contains(&field.file) => {
                            return error(
                                format!("{at}.file"),
                                format!("the job does not write {:?} (it writes {})", field.file, writes.join(", ")),
                            )
                        }
                        Some(_) => {}
                    }
                    match (&field.json, &field.column) {
                        (Some(pointer), None) if pointer.starts_with('/') => {}
                        (Some(pointer), None) => {
                            return error(format!("{at}.json"), format!("{pointer:?} is not a JSON pointer (/a/b)"))
                        }
                        (None, Some(column)) if !column.is_empty() => {}
                        (None, Some(_)) => return error(format!("{at}.column"), "must not be empty".into()),
                        _ => return error(at, "name exactly one of `json` (a JSON pointer) or `column` (CSV)".into()),
                    }
                    for (name, value) in [("absolute", field.absolute), ("relative", field.relative)] {
                        if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                            return error(format!("{at}.{name}"), "must be a finite number ≥ 0".into());
                        }
                    }
                }
                Ok(())
            }
            Agreement::Comparator { args, .. } => {
                if args.len() > 256 || args.iter().any(|arg| arg.contains('\0')) {
                    return error(format!("{at}.args"), "at most 256 arguments, without NUL".into());
                }
                Ok(())
            }
        }
    }
}

/// What one comparison of the reported result with another found: recorded in the verdict, so
/// a person can see what was compared and why it agreed or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Compared {
    /// Byte equality.
    Exact {
        /// The result compared with the reported one: `re-execution` or a replica's job id.
        against: String,
        /// Whether they agree.
        agree: bool,
        /// What differs: any of `exit_code`, `fuel`, `output`, `stdout`, `stderr`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        differs: Vec<String>,
    },
    /// Numbers within tolerances.
    Tolerance {
        /// The result compared with the reported one.
        against: String,
        /// Whether they agree.
        agree: bool,
        /// Each field's check, in the spec's order.
        checks: Vec<FieldCheck>,
    },
    /// A comparator program's decision.
    Comparator {
        /// The result compared with the reported one.
        against: String,
        /// Whether they agree (the comparator exited 0; 1 if not).
        agree: bool,
        /// The comparator.
        program: ContentId,
        /// How it exited.
        exit_code: i32,
        /// Its reason: the start of its stdout.
        said: String,
        /// What it wrote to `/outputs`.
        output: ContentId,
    },
}

impl Eq for Compared {}

impl Compared {
    /// Whether the comparison found agreement.
    pub fn agree(&self) -> bool {
        match self {
            Compared::Exact { agree, .. } | Compared::Tolerance { agree, .. } | Compared::Comparator { agree, .. } => {
                *agree
            }
        }
    }
}

/// One tolerance field's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldCheck {
    /// The field (`metrics.json#/held_out_accuracy`, `scores.csv[accuracy]`).
    pub field: String,
    /// Whether every value is within tolerance.
    pub within: bool,
    /// Values compared (1 for a JSON field, the rows for a CSV column).
    pub values: u64,
    /// The reported result's value where the two are furthest apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<f64>,
    /// The other result's value there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<f64>,
    /// Why the values could not be compared (a missing file or field, not a number, rows
    /// that differ in number): such a field is not within tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(absolute: Option<f64>, relative: Option<f64>) -> ToleranceField {
        ToleranceField { file: "m.json".into(), json: Some("/a".into()), column: None, absolute, relative }
    }

    #[test]
    fn tolerances_are_absolute_or_relative_to_the_larger_magnitude() {
        assert!(field(None, None).within(0.5, 0.5));
        assert!(!field(None, None).within(0.5, 0.5000001), "no tolerance given: equal only");
        assert!(field(Some(0.03), None).within(0.95, 0.97));
        assert!(!field(Some(0.01), None).within(0.95, 0.97));
        assert!(field(None, Some(0.1)).within(100.0, 109.0));
        assert!(!field(None, Some(0.1)).within(100.0, 112.0));
        assert!(field(Some(0.001), Some(0.1)).within(100.0, 109.0), "either bound suffices");
        assert!(!field(Some(1.0), None).within(f64::NAN, 0.0), "NaN is never within");
    }
}
