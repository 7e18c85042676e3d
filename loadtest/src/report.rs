//! What every subcommand's report shares: the [`RunReport`] trait the driver prints, judges and
//! writes reports through, writing `PREFIX.json` and the documents beside it, and the small
//! pieces the reports are made of (quantiles, ratios, byte sizes, Markdown tables). Each mode's
//! report builds on this module; this module knows none of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{LoadtestError, Result};

/// A finished run's report, as the driver handles it: one summary for the terminal, a verdict
/// for the exit status, and files (`PREFIX.json` plus the mode's documents).
pub trait RunReport: Serialize {
    /// What the command prints when the run is over: a line per run.
    fn summary(&self) -> String;

    /// Whether the run met its bar; the command fails if not.
    fn passed(&self) -> bool;

    /// The documents written beside `PREFIX.json`, as (extension, contents); `name` is the
    /// prefix's file name, for links from one document to another (`NAME.svg`).
    fn documents(&self, name: &str) -> Vec<(&'static str, String)>;

    /// Writes `PREFIX.json` and [`RunReport::documents`], creating the prefix's directory;
    /// returns the paths written.
    fn write(&self, prefix: &Path) -> Result<Vec<PathBuf>> {
        if let Some(parent) = prefix.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| LoadtestError::io(format!("creating {}", parent.display()), e))?;
        }
        let name = prefix.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let json = serde_json::to_string_pretty(self).expect("a report always serialises") + "\n";
        let mut written = Vec::new();
        for (ext, text) in std::iter::once(("json", json)).chain(self.documents(&name)) {
            let mut path = prefix.as_os_str().to_owned();
            path.push(format!(".{ext}"));
            let path = PathBuf::from(path);
            std::fs::write(&path, text).map_err(|e| LoadtestError::io(format!("writing {}", path.display()), e))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// The `q`-quantile (0–1) of sorted values by nearest rank, 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Bytes in decimal units (TB, PB), as storage is sold.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// A two-column `| figure | value |` Markdown table, header included.
pub fn figure_table(md: &mut String, rows: &[(&str, String)]) {
    let _ = writeln!(md, "| figure | value |\n|---|---|");
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {value} |");
    }
}

/// `\n<title>: k v, k v` for a non-empty count by key; nothing for an empty one.
pub fn counts_line(md: &mut String, title: &str, counts: &BTreeMap<String, usize>) {
    if !counts.is_empty() {
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(md, "\n{title}: {}", counts.join(", "));
    }
}

/// A `## Examples of problems` list, if there are any.
pub fn examples_section(md: &mut String, examples: &[String]) {
    if !examples.is_empty() {
        let _ = writeln!(md, "\n## Examples of problems\n");
        for example in examples {
            let _ = writeln!(md, "- {example}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.95), 95.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.5), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
