//! Run directories: where a run's `/outputs` (and its joined inputs) live, reused from run to
//! run.
//!
//! Making and removing two directories per job was, with the files in them, most of what the
//! file system cost a worker running small jobs (on ext4, directories are the dear inodes to
//! allocate): a latency run at 300 jobs/s with only the scratch directories on tmpfs used 0.74×
//! the workers' CPU. So a run's directory is emptied after it and handed to the next run — but
//! only after a run whose program is known to have stopped: a guest still stuck in a host call
//! past its time limit could otherwise write into the next job's outputs. Any other run's
//! directory is removed, as before.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::warn;

/// The name of the outputs directory inside a run directory.
const OUTPUTS: &str = "outputs";

/// The name of the directory inside a run directory where inputs mounted at one path are joined:
/// with the outputs, all a run directory ever holds.
const INPUTS: &str = "inputs";

/// Emptied directories kept for reuse at most; more than the runs a worker has at once is waste.
const MAX_FREE: usize = 256;

/// Directories being emptied or removed in the background (see [`RunDir`]'s `Drop`).
static TIDYING: AtomicUsize = AtomicUsize::new(0);

/// With this many directories being tidied, the next is tidied where its run ends instead: a
/// file system slower than the jobs then slows the jobs rather than piling up work.
const MAX_TIDYING: usize = 64;

/// The run directories under one root: taken for a run, given back after it.
#[derive(Debug)]
pub(crate) struct RunDirs {
    root: PathBuf,
    free: Arc<FreeDirs>,
}

/// Emptied run directories waiting for a run; removed when the last holder lets go (the
/// executor and every run it started), so a stopped worker does not leave them behind.
#[derive(Debug, Default)]
struct FreeDirs(Mutex<Vec<PathBuf>>);

impl FreeDirs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FreeDirs {
    fn drop(&mut self) {
        for path in self.lock().drain(..) {
            remove(&path);
        }
    }
}

impl RunDirs {
    /// Run directories under `root`, which is created when the first one is, after removing
    /// whatever a killed predecessor left there: the work directory is one worker process's
    /// alone, as for the input cache. What cannot be removed is logged and left, out of the way
    /// of the new directories' unique names.
    pub(crate) fn new(root: PathBuf) -> RunDirs {
        remove(&root);
        RunDirs { root, free: Arc::default() }
    }

    /// A directory for one run, with an empty `outputs` directory in it: an emptied one if
    /// there is one, else a new one (named uniquely, so that what a killed predecessor left
    /// under the root is never met).
    pub(crate) fn take(&self) -> io::Result<RunDir> {
        let reused = self.free.lock().pop();
        let path = match reused {
            Some(path) => path,
            None => {
                let path = self.root.join(ulid::Ulid::new().to_string());
                match std::fs::create_dir(&path) {
                    Ok(()) => std::fs::create_dir(path.join(OUTPUTS))?,
                    // The root is missing (the first run), or something odd: the thorough way.
                    Err(_) => std::fs::create_dir_all(path.join(OUTPUTS))?,
                }
                path
            }
        };
        Ok(RunDir { path, reusable: false, free: Arc::clone(&self.free) })
    }
}

/// One run's directory. Dropped, it is emptied and given back for the next run if
/// [`RunDir::stopped`] was called, else removed — on a blocking thread, so the system calls do
/// not hold up the runtime's threads, unless [`MAX_TIDYING`] are under way or there is no
/// runtime.
#[derive(Debug)]
pub(crate) struct RunDir {
    path: PathBuf,
    reusable: bool,
    free: Arc<FreeDirs>,
}

impl RunDir {
    /// The directory.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Its empty `outputs` directory, the run's `/outputs`.
    pub(crate) fn outputs(&self) -> PathBuf {
        self.path.join(OUTPUTS)
    }

    /// Where its inputs mounted at one path are joined (made when there are any).
    pub(crate) fn inputs(&self) -> PathBuf {
        self.path.join(INPUTS)
    }

    /// Says the run's program has stopped and holds nothing open in the directory, so that it
    /// may be emptied and reused.
    pub(crate) fn stopped(&mut self) {
        self.reusable = true;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        let (reusable, free) = (self.reusable, Arc::clone(&self.free));
        let tidy = move || tidy(path, reusable, &free);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            if TIDYING.fetch_add(1, Ordering::AcqRel) < MAX_TIDYING {
                runtime.spawn_blocking(move || {
                    tidy();
                    TIDYING.fetch_sub(1, Ordering::AcqRel);
                });
                return;
            }
            TIDYING.fetch_sub(1, Ordering::AcqRel);
        }
        tidy();
    }
}

/// Empties `path` and gives it back to `free` when `reusable` and there is room, else removes
/// it; a failure is logged, as the run it served is over whatever happens here.
fn tidy(path: PathBuf, reusable: bool, free: &FreeDirs) {
    if reusable {
        match empty(&path) {
            Ok(()) => {
                let mut free = free.lock();
                if free.len() < MAX_FREE {
                    free.push(path);
                    return;
                }
            }
            Err(error) => warn!(dir = %path.display(), %error, "could not empty a run directory; removing it"),
        }
    }
    remove(&path);
}

/// Removes run directory `path`; a failure is logged.
fn remove(path: &Path) {
    if let Err(error) = std::fs::remove_dir_all(path) {
        if error.kind() != io::ErrorKind::NotFound {
            warn!(dir = %path.display(), %error, "could not remove a run directory");
        }
    }
}

/// Leaves `run_dir` holding only an empty `outputs` directory. Only the worker writes beside
/// `outputs` (the guest sees nothing else), so `inputs` is removed by name rather than the
/// directory listed: one call instead of five, for the usual run that joined no inputs.
fn empty(run_dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(run_dir.join(INPUTS)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    remove_entries(&run_dir.join(OUTPUTS))
}

/// Removes every entry of `dir`; links are removed, never followed.
fn remove_entries(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Waits until `done` holds, for at most ten seconds.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Writes files, directories and a link to `outside` (a directory with a file in it) into
    /// `dir`'s outputs, and a joined-inputs directory beside them.
    fn fill(dir: &RunDir, outside: &Path) {
        let outputs = dir.outputs();
        std::fs::create_dir_all(outputs.join("deep/er")).unwrap();
        std::fs::write(outputs.join("deep/er/file"), "x").unwrap();
        std::fs::write(outputs.join("top"), "y").unwrap();
        std::os::unix::fs::symlink(outside, outputs.join("link")).unwrap();
        std::fs::create_dir_all(dir.inputs().join("0")).unwrap();
    }

    /// A directory outside every run directory, with a file in it.
    fn outside(root: &Path) -> PathBuf {
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("kept"), "z").unwrap();
        outside
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_runs_directory_is_emptied_and_reused_any_other_removed() {
        let root = tempfile::tempdir().unwrap();
        let dirs = RunDirs::new(root.path().join("runs"));
        let outside = outside(root.path());

        let mut first = dirs.take().unwrap();
        assert!(first.outputs().is_dir(), "a new directory has its outputs directory");
        let reused = first.path().to_path_buf();
        fill(&first, &outside);
        first.stopped();
        drop(first);
        eventually("the stopped run's directory given back", || dirs.free.lock().len() == 1).await;

        let second = dirs.take().unwrap();
        assert_eq!(second.path(), reused, "the emptied directory is taken again");
        let left: Vec<_> = std::fs::read_dir(second.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(OUTPUTS)], "only the outputs directory is left");
        assert_eq!(std::fs::read_dir(second.outputs()).unwrap().count(), 0, "and it is empty");
        assert!(outside.join("kept").is_file(), "a link was removed, not followed");

        fill(&second, &outside);
        drop(second);
        eventually("a run not known to have stopped is removed", || !reused.exists()).await;
        assert!(dirs.free.lock().is_empty(), "and not given back");
        let third = dirs.take().unwrap();
        assert_ne!(third.path(), reused, "a new directory is made");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directories_are_tidied_in_the_background_or_where_the_run_ends() {
        let root = tempfile::tempdir().unwrap();
        let dirs = RunDirs::new(root.path().join("runs"));
        let outside = outside(root.path());
        let taken: Vec<RunDir> = (0..3 * MAX_TIDYING).map(|_| dirs.take().unwrap()).collect();
        let paths: Vec<PathBuf> = taken.iter().map(|dir| dir.path().to_path_buf()).collect();
        for dir in &taken {
            fill(dir, &outside);
        }
        // More at once than may be under way: the rest are tidied where they are dropped.
        drop(taken);
        eventually("run directories left behind", || paths.iter().all(|path| !path.exists())).await;

        assert!(outside.join("kept").is_file(), "links were removed, not followed");
        let mut last = dirs.take().unwrap();
        fill(&last, &outside);
        last.stopped();
        std::thread::spawn(move || drop(last)).join().unwrap();
        assert_eq!(dirs.free.lock().len(), 1, "without a runtime it is emptied at once");
    }

    #[test]
    fn emptied_directories_are_removed_when_the_run_directories_are_dropped() {
        let root = tempfile::tempdir().unwrap();
        let dirs = RunDirs::new(root.path().join("runs"));
        let mut run = dirs.take().unwrap();
        let path = run.path().to_path_buf();
        run.stopped();
        // No runtime here: emptied and given back at once.
        drop(run);
        assert!(path.is_dir(), "kept for the next run");
        drop(dirs);
        assert!(!path.exists(), "removed with the last holder");
    }

    #[test]
    fn what_a_killed_predecessor_left_is_removed_when_run_directories_are_opened() {
        let root = tempfile::tempdir().unwrap();
        let runs = root.path().join("runs");
        let left = RunDirs::new(runs.clone());
        let mut emptied = left.take().unwrap();
        emptied.stopped();
        let (emptied_path, mid_run) = (emptied.path().to_path_buf(), left.take().unwrap());
        std::fs::write(mid_run.outputs().join("half-written"), "x").unwrap();
        drop(emptied);
        // A killed process drops nothing: its directories stay until the next one opens the root.
        let (mid_run_path, outside) = (mid_run.path().to_path_buf(), outside(root.path()));
        std::mem::forget((mid_run, left));
        assert!(emptied_path.is_dir() && mid_run_path.is_dir());

        let dirs = RunDirs::new(runs.clone());
        assert!(!runs.exists(), "the predecessor's directories are gone");
        assert!(outside.join("kept").is_file(), "nothing outside the root is touched");
        assert!(dirs.take().unwrap().outputs().is_dir(), "and runs get directories as before");
    }

    #[test]
    fn an_unremovable_entry_gets_the_directory_removed_not_reused() {
        let root = tempfile::tempdir().unwrap();
        let free = FreeDirs::default();
        let run_dir = root.path().join("run");
        std::fs::create_dir_all(run_dir.join(OUTPUTS)).unwrap();
        // `outputs` replaced by a file: emptying it fails.
        std::fs::remove_dir(run_dir.join(OUTPUTS)).unwrap();
        std::fs::write(run_dir.join(OUTPUTS), "not a directory").unwrap();
        tidy(run_dir.clone(), true, &free);
        assert!(free.lock().is_empty(), "not given back");
        assert!(!run_dir.exists(), "removed instead");
    }
}
