//! Size accounting of the writable mounts, for
//! [`Limits::output_bytes`](crate::Limits::output_bytes) and
//! [`Limits::output_files`](crate::Limits::output_files).
//!
//! The limits hold at the call that would cross them: [`OutputBudget`] keeps
//! an upper bound of what the mounts hold, raised before every WASI call that
//! can make them larger (see `host.rs`), and a call that would take the bound
//! past a limit first re-measures (deletions only lower the truth) and, if it
//! still does not fit, stops the guest before the call runs. The mounts are
//! walked once at the start and otherwise only when a guest comes near a
//! limit (at a call, or at the end when the bound is past one), so a run costs
//! time linear in what it writes, and a run that stays well within the limits
//! is walked once.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What the writable mounts hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Apparent sizes of the entries that are not directories.
    pub(crate) bytes: u64,
    /// Entries of every kind (files, directories, symbolic links) below the
    /// mount roots.
    pub(crate) entries: u64,
}

/// What the writable mounts under `roots` hold, recursively.
///
/// Symbolic links are counted by their own size and never followed, so a
/// guest cannot make the walk leave its mounts or loop. Sizes are apparent
/// sizes (what would be published), so a sparse file counts in full, and a
/// file with two names counts twice (it is published twice).
pub(crate) fn measure<'a>(roots: impl IntoIterator<Item = &'a Path>) -> io::Result<Usage> {
    let mut pending: Vec<PathBuf> = roots.into_iter().map(Path::to_path_buf).collect();
    let mut usage = Usage::default();
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            usage.entries += 1;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                usage.bytes = usage.bytes.saturating_add(metadata.len());
            }
        }
    }
    Ok(usage)
}

/// Which limit a call would have crossed, and what the mounts would then hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// [`Limits::output_bytes`](crate::Limits::output_bytes).
    Bytes(u64),
    /// [`Limits::output_files`](crate::Limits::output_files).
    Entries(u64),
}

/// The limit `usage` is past, if any (bytes first).
fn past(usage: Usage, limits: Usage) -> Option<Exceeded> {
    if usage.bytes > limits.bytes {
        Some(Exceeded::Bytes(usage.bytes))
    } else if usage.entries > limits.entries {
        Some(Exceeded::Entries(usage.entries))
    } else {
        None
    }
}

/// Raised from a WASI call to stop a guest whose outputs would exceed a limit.
#[derive(Debug, thiserror::Error)]
#[error("stopped by the output limits")]
pub(crate) struct OutputStop;

/// The running account of the writable mounts during one run.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    roots: Vec<PathBuf>,
    limits: Usage,
    /// At least what the mounts hold (more once the guest deleted something).
    held: Usage,
    /// Why the guest was stopped, if it was.
    verdict: Option<io::Result<Exceeded>>,
    /// Walks of the mounts so far.
    walks: u64,
}

impl OutputBudget {
    /// The account of `roots` against `limits`, measuring what they hold now.
    pub(crate) fn new(roots: Vec<PathBuf>, limits: Usage) -> io::Result<OutputBudget> {
        let held = measure(roots.iter().map(PathBuf::as_path))?;
        Ok(OutputBudget { roots, limits, held, verdict: None, walks: 1 })
    }

    /// Before a call that may add up to `bytes` bytes and `entries` entries:
    /// `Ok` if they fit, otherwise the error that stops the guest (the call
    /// must then not run).
    pub(crate) fn reserve(&mut self, bytes: u64, entries: u64) -> wasmtime::Result<()> {
        if self.exceeds(bytes, entries).is_none() {
            return Ok(());
        }
        // The account only ever rose; what the guest deleted may make room.
        self.walks += 1;
        match measure(self.roots.iter().map(PathBuf::as_path)) {
            Ok(held) => self.held = held,
            Err(err) => {
                self.verdict = Some(Err(err));
                return Err(OutputStop.into());
            }
        }
        match self.exceeds(bytes, entries) {
            None => Ok(()),
            Some(exceeded) => {
                self.verdict = Some(Ok(exceeded));
                Err(OutputStop.into())
            }
        }
    }

    /// After a call reserved with [`OutputBudget::reserve`] succeeded.
    pub(crate) fn grew(&mut self, bytes: u64, entries: u64) {
        self.held.bytes = self.held.bytes.saturating_add(bytes);
        self.held.entries = self.held.entries.saturating_add(entries);
    }

    fn exceeds(&self, bytes: u64, entries: u64) -> Option<Exceeded> {
        let would_hold =
            Usage { bytes: self.held.bytes.saturating_add(bytes), entries: self.held.entries.saturating_add(entries) };
        past(would_hold, self.limits)
    }

    /// Whether what the mounts hold once the guest has stopped is past a
    /// limit. Walks them only if the bound is: a bound within the limits
    /// holds the truth within them too, and a walk of the outputs was a
    /// tenth of a small job's file-system calls.
    pub(crate) fn at_end(&mut self) -> io::Result<Option<Exceeded>> {
        if self.exceeds(0, 0).is_none() {
            return Ok(None);
        }
        self.walks += 1;
        self.held = measure(self.roots.iter().map(PathBuf::as_path))?;
        Ok(self.exceeds(0, 0))
    }

    /// Why the guest was stopped, if this account stopped it.
    pub(crate) fn take_verdict(&mut self) -> Option<io::Result<Exceeded>> {
        self.verdict.take()
    }

    /// Walks of the mounts so far (one to start with).
    #[cfg(test)]
    pub(crate) fn walks(&self) -> u64 {
        self.walks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_files_in_nested_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a"), [0u8; 10]).expect("write a");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(dir.path().join("sub/b"), [0u8; 32]).expect("write b");
        assert_eq!(measure([dir.path()]).expect("walk"), Usage { bytes: 42, entries: 3 });
    }

    #[test]
    fn does_not_follow_symlinks_out_of_the_mount() {
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("big"), vec![0u8; 4096]).expect("write big");
        let mount = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), mount.path().join("link")).expect("symlink");
        let counted = measure([mount.path()]).expect("walk");
        let link_size = fs::symlink_metadata(mount.path().join("link")).expect("lstat").len();
        assert_eq!(counted, Usage { bytes: link_size, entries: 1 });
    }

    #[test]
    fn the_end_walks_the_mounts_only_when_the_bound_is_past_a_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Usage { bytes: 100, entries: 1 };
        let mut budget = OutputBudget::new(vec![dir.path().to_path_buf()], limits).expect("measure");
        budget.reserve(100, 1).expect("fits exactly");
        fs::write(dir.path().join("a"), [0u8; 100]).expect("write a");
        budget.grew(100, 1);
        assert_eq!(budget.at_end().expect("checked"), None);
        assert_eq!(budget.walks(), 1, "a bound within the limits needs no walk");

        // What the guest cannot have written itself (a bound past the limits from the start).
        fs::write(dir.path().join("b"), [0u8; 1]).expect("write b");
        let mut over = OutputBudget::new(vec![dir.path().to_path_buf()], limits).expect("measure");
        fs::remove_file(dir.path().join("b")).expect("remove b");
        assert_eq!(over.at_end().expect("checked"), None, "the walk finds the truth within the limits");
        assert_eq!(over.walks(), 2);
        fs::write(dir.path().join("b"), [0u8; 1]).expect("write b again");
        let mut still_over = OutputBudget::new(vec![dir.path().to_path_buf()], limits).expect("measure");
        assert_eq!(still_over.at_end().expect("checked"), Some(Exceeded::Bytes(101)));
        assert_eq!(still_over.walks(), 2);
    }

    #[test]
    fn a_reservation_past_a_limit_remeasures_before_it_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Usage { bytes: 100, entries: 2 };
        let mut budget = OutputBudget::new(vec![dir.path().to_path_buf()], limits).expect("measure");
        budget.reserve(100, 1).expect("fits exactly");
        fs::write(dir.path().join("a"), [0u8; 100]).expect("write a");
        budget.grew(100, 1);
        assert_eq!(budget.walks(), 1, "no walk while the account is under the limits");

        budget.reserve(1, 0).expect_err("one byte more does not fit");
        assert_eq!(budget.take_verdict().map(|v| v.expect("measured")), Some(Exceeded::Bytes(101)));
        assert_eq!(budget.walks(), 2);

        fs::remove_file(dir.path().join("a")).expect("remove a");
        budget.reserve(60, 1).expect("the deletion made room");
        assert_eq!(budget.walks(), 3);
        fs::write(dir.path().join("b"), [0u8; 60]).expect("write b");
        budget.grew(60, 1);
        budget.reserve(0, 1).expect("a second entry fits");
        fs::create_dir(dir.path().join("c")).expect("mkdir c");
        budget.grew(0, 1);
        budget.reserve(0, 1).expect_err("a third does not");
        assert_eq!(budget.take_verdict().map(|v| v.expect("measured")), Some(Exceeded::Entries(3)));
    }
}
