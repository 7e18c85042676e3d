//! The worker's caches: compiled programs in memory, materialised inputs on disk.
//!
//! Both are moka caches weighted by size, so the configured bytes bound them whatever the mix of
//! small and large entries, and both coalesce concurrent misses: two jobs over the same CID
//! fetch and compile it once. Programs whose compilation overran its budget are remembered for a
//! while, so jobs naming them fail at once instead of compiling them again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cid::Cid;
use moka::future::Cache;
use shoal_runtime::Program;

/// Weights are in KiB: moka weights are `u32`, and inputs can be far larger than 4 GiB.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).max(1)
}

/// How long a program whose compilation overran its budget is refused without compiling it
/// again: its compilation cannot be interrupted and may still be using the CPU.
pub(crate) const SLOW_PROGRAM_MEMORY: Duration = Duration::from_secs(600);

/// Compiled programs by program CID.
#[derive(Clone)]
pub(crate) struct ProgramCache {
    cache: Cache<Cid, (Program, u64)>,
    /// Programs whose compilation overran its budget, and when.
    slow: Arc<Mutex<HashMap<Cid, Instant>>>,
}

impl ProgramCache {
    /// A cache holding up to `bytes` of wasm (weighed by module size).
    pub(crate) fn new(bytes: u64) -> ProgramCache {
        let cache =
            Cache::builder().max_capacity(bytes / 1024).weigher(|_, (_, size): &(Program, u64)| kib(*size)).build();
        ProgramCache { cache, slow: Arc::default() }
    }

    /// Remembers that compiling `cid` overran its budget (for [`SLOW_PROGRAM_MEMORY`]).
    pub(crate) fn mark_slow(&self, cid: Cid) {
        let mut slow = self.slow.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slow.retain(|_, since| since.elapsed() < SLOW_PROGRAM_MEMORY);
        slow.insert(cid, Instant::now());
    }

    /// Whether compiling `cid` overran its budget less than [`SLOW_PROGRAM_MEMORY`] ago.
    pub(crate) fn is_slow(&self, cid: &Cid) -> bool {
        let slow = self.slow.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slow.get(cid).is_some_and(|since| since.elapsed() < SLOW_PROGRAM_MEMORY)
    }

    /// The compiled program `cid`, loading and compiling it with `load` on a miss.
    pub(crate) async fn get_or_load<E, F>(&self, cid: Cid, load: F) -> Result<Program, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: std::future::Future<Output = Result<(Program, u64), E>>,
    {
        self.cache.try_get_with(cid, load).await.map(|(program, _)| program)
    }
}

/// An input materialised as a directory tree on local disk, removed when the last user drops it.
#[derive(Debug)]
pub(crate) struct MaterialisedInput {
    /// The directory to mount into the guest.
    pub dir: PathBuf,
    /// File bytes it holds.
    pub bytes: u64,
    root: PathBuf,
}

impl Drop for MaterialisedInput {
    fn drop(&mut self) {
        // Evicted from the cache and no job mounts it any more.
        std::fs::remove_dir_all(&self.root).ok();
    }
}

/// Materialised inputs by CID and the name they are mounted under (the same content under two
/// names is two directory layouts).
#[derive(Clone)]
pub(crate) struct InputCache {
    root: PathBuf,
    cache: Cache<(Cid, Option<String>), Arc<MaterialisedInput>>,
}

impl InputCache {
    /// A cache under `root` holding up to `bytes` of input files. Leftovers of an earlier run
    /// under `root` are removed: nothing there is known to be complete.
    pub(crate) fn new(root: PathBuf, bytes: u64) -> std::io::Result<InputCache> {
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir_all(&root)?;
        let cache = Cache::builder()
            .max_capacity(bytes / 1024)
            .weigher(|_, input: &Arc<MaterialisedInput>| kib(input.bytes))
            .build();
        Ok(InputCache { root, cache })
    }

    /// The input `cid` mounted as `name`, materialising it with `fetch` on a miss. `fetch`
    /// receives a fresh directory to write into and returns the bytes it wrote.
    pub(crate) async fn get_or_fetch<E, F, Fut>(
        &self,
        cid: Cid,
        name: Option<String>,
        fetch: F,
    ) -> Result<Arc<MaterialisedInput>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<(PathBuf, u64), E>>,
    {
        let root = self.root.join(format!("{cid}-{}", ulid::Ulid::new()));
        self.cache
            .try_get_with((cid, name), async move {
                let guard = RemoveOnError(Some(root.clone()));
                let (dir, bytes) = fetch(root.clone()).await?;
                guard.disarm();
                Ok(Arc::new(MaterialisedInput { dir, bytes, root }))
            })
            .await
    }

    /// The CIDs of the inputs held now.
    pub(crate) fn held(&self) -> Vec<Cid> {
        self.cache.iter().map(|(key, _)| key.0).collect()
    }
}

/// Removes a half-materialised input if its fetch fails or is abandoned.
struct RemoveOnError(Option<PathBuf>);

impl RemoveOnError {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnError {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            std::fs::remove_dir_all(path).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use shoal_content::{Block, Codec};

    use super::*;

    fn cid(n: u8) -> Cid {
        *Block::encode(Codec::Raw, vec![n]).cid()
    }

    /// A fetch that writes `bytes` bytes into its directory and counts its calls.
    async fn write_file(root: PathBuf, bytes: usize, calls: &AtomicUsize) -> Result<(PathBuf, u64), String> {
        calls.fetch_add(1, Ordering::SeqCst);
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        std::fs::write(root.join("data"), vec![7u8; bytes]).map_err(|e| e.to_string())?;
        Ok((root, bytes as u64))
    }

    #[tokio::test]
    async fn a_program_is_compiled_once_and_then_served_by_cid() {
        let runtime = shoal_runtime::Runtime::new(shoal_runtime::RuntimeConfig {
            max_concurrent_instances: 1,
            max_memory_bytes: 1 << 20,
            ..shoal_runtime::RuntimeConfig::default()
        })
        .unwrap();
        // The smallest module: the magic and version.
        let wasm = b"\0asm\x01\0\0\0";
        let cache = ProgramCache::new(1 << 20);
        let loads = AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            runtime.compile(wasm).map(|program| (program, wasm.len() as u64)).map_err(|e| e.to_string())
        };
        let (a, b) = tokio::join!(cache.get_or_load(cid(9), load()), cache.get_or_load(cid(9), load()));
        a.unwrap();
        b.unwrap();
        cache.get_or_load(cid(9), load()).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1, "compiled once for three jobs");
        cache.get_or_load(cid(10), load()).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2, "another CID is another program");
    }

    #[test]
    fn programs_that_compiled_too_slowly_are_remembered_by_cid() {
        let cache = ProgramCache::new(1 << 20);
        assert!(!cache.is_slow(&cid(11)));
        cache.mark_slow(cid(11));
        assert!(cache.is_slow(&cid(11)));
        assert!(!cache.is_slow(&cid(12)));
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = InputCache::new(dir.path().join("inputs"), 1 << 20).unwrap();
        let calls = AtomicUsize::new(0);
        let (a, b) = tokio::join!(
            cache.get_or_fetch(cid(1), None, |root| write_file(root, 10, &calls)),
            cache.get_or_fetch(cid(1), None, |root| write_file(root, 10, &calls)),
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(a.unwrap().dir, b.unwrap().dir);
    }

    #[tokio::test]
    async fn a_failed_fetch_leaves_nothing_behind_and_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = InputCache::new(dir.path().join("inputs"), 1 << 20).unwrap();
        let failed = cache
            .get_or_fetch(cid(2), None, |root| async move {
                std::fs::create_dir_all(root.join("half")).unwrap();
                Err::<(PathBuf, u64), _>("source went away".to_string())
            })
            .await;
        assert_eq!(*failed.unwrap_err(), "source went away");
        assert_eq!(std::fs::read_dir(&cache.root).unwrap().count(), 0, "the half-written input is removed");
        let calls = AtomicUsize::new(0);
        cache.get_or_fetch(cid(2), None, |root| write_file(root, 10, &calls)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the failure was not cached");
    }

    #[tokio::test]
    async fn evicted_inputs_are_removed_from_disk_once_no_job_uses_them() {
        let dir = tempfile::tempdir().unwrap();
        // Room for one 64 KiB input, not two.
        let cache = InputCache::new(dir.path().join("inputs"), 100 << 10).unwrap();
        let calls = AtomicUsize::new(0);
        let first = cache.get_or_fetch(cid(3), None, |root| write_file(root, 64 << 10, &calls)).await.unwrap();
        let first_dir = first.dir.clone();
        for n in 4..8 {
            cache.get_or_fetch(cid(n), None, |root| write_file(root, 64 << 10, &calls)).await.unwrap();
        }
        cache.cache.run_pending_tasks().await;
        assert!(cache.cache.entry_count() <= 1, "{} entries kept", cache.cache.entry_count());
        assert!(first_dir.exists(), "still mounted by a running job");
        let kept_first = cache.cache.contains_key(&(cid(3), None));
        drop(first);
        cache.cache.run_pending_tasks().await;
        assert_eq!(first_dir.exists(), kept_first, "an evicted input goes once its last job is done");
        let on_disk = std::fs::read_dir(&cache.root).unwrap().count() as u64;
        assert_eq!(on_disk, cache.cache.entry_count(), "only cached inputs stay on disk");
    }
}
