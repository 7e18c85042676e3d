//! The simulated executor: the real executor's record-keeping around a modelled fetch and run.
//!
//! A job is started through [`shoal_worker::begin`] and settled through [`shoal_worker::settle`]
//! exactly as `shoal_worker`'s `Executor` does it (verification enqueue included), so the worker loop, the claims and the
//! recovery paths are the real ones. Only the middle is modelled: each input is "fetched" into
//! a per-worker cache weighted by the item's size (a hit costs nothing, a miss sleeps latency +
//! size / bandwidth), and the program "runs" for a time drawn from its CID and scaled by the
//! input size. All simulated time is multiplied by a time scale, so a 1 GB fetch at 1 GB/s
//! takes 1 ms of real time at scale 1/1000.

use std::time::{Duration, Instant};

use cid::Cid;
use moka::future::Cache;
use shoal_jobs::{
    now_ms, ContentId, Delivery, ExecutionOutcome, ExecutionResult, JobState, JobStore, ShardQueue, StoreError,
    WorkerKey,
};
use shoal_worker::{begin, settle, Begun, Execute, Settled};
use tokio::sync::mpsc;

use crate::sim::catalogue::{raw_cid, size_from, unit_of};

/// What fetching and running cost, in simulated time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Real seconds per simulated second (1/1000 runs a simulated minute in 60 ms).
    pub time_scale: f64,
    /// A worker's download bandwidth, bytes per simulated second.
    pub bandwidth_bytes_per_s: f64,
    /// Simulated latency added to every cache miss.
    pub fetch_latency: Duration,
    /// The fastest program's simulated run time over one mean-sized input.
    pub compute_min: Duration,
    /// The slowest program's.
    pub compute_max: Duration,
    /// The catalogue's mean item size, which item sizes are drawn around.
    pub mean_item_bytes: u64,
}

impl CostModel {
    /// The size of the catalogue item named `cid`.
    pub fn size_of(&self, cid: &Cid) -> u64 {
        size_from(cid, self.mean_item_bytes)
    }

    /// Simulated time to fetch `bytes` on a cache miss.
    pub fn fetch_time(&self, bytes: u64) -> Duration {
        self.fetch_latency + Duration::from_secs_f64(bytes as f64 / self.bandwidth_bytes_per_s.max(1.0))
    }

    /// Simulated time for `program` to run over `input_bytes` of inputs: a per-program speed
    /// drawn from its CID, times the input size in mean items.
    pub fn compute_time(&self, program: &Cid, input_bytes: u64) -> Duration {
        let per_item = self.compute_min.as_secs_f64()
            + unit_of(program) * (self.compute_max.as_secs_f64() - self.compute_min.as_secs_f64()).max(0.0);
        Duration::from_secs_f64(per_item * input_bytes as f64 / self.mean_item_bytes.max(1) as f64)
    }

    /// Real time standing for `simulated` time.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.mul_f64(self.time_scale.max(0.0))
    }
}

/// The output a correct run of `program` over `inputs` produces: the raw CID of the SHA-256 of
/// their CIDs' bytes, in order. Deterministic, so every output is checkable.
pub fn expected_output(program: &Cid, inputs: &[Cid]) -> Cid {
    let mut bytes = program.to_bytes();
    for input in inputs {
        bytes.extend_from_slice(&input.to_bytes());
    }
    raw_cid(&bytes)
}

/// The CID standing for the (empty) stdout and stderr of every simulated run.
pub fn empty_log() -> Cid {
    raw_cid(b"")
}

/// A job this worker settled, as the run hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The job.
    pub job_id: String,
    /// Its state after this execution was recorded.
    pub state: JobState,
}

/// A worker's cache of catalogue items, weighted by their size in KiB (moka weights are `u32`).
pub struct ItemCache {
    items: Cache<Cid, u64>,
    model: CostModel,
}

impl ItemCache {
    /// A cache of up to `capacity_bytes` of items whose fetch costs follow `model`.
    pub fn new(capacity_bytes: u64, model: CostModel) -> ItemCache {
        let items = Cache::builder()
            .weigher(|_cid: &Cid, bytes: &u64| u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX))
            .max_capacity(capacity_bytes / 1024)
            .build();
        ItemCache { items, model }
    }

    /// "Fetches" `cid`: returns whether it was held already (or being fetched by another job of
    /// this worker, as the real input cache counts it) and its size; a miss sleeps the fetch.
    pub async fn fetch(&self, cid: Cid) -> (bool, u64) {
        let size = self.model.size_of(&cid);
        let delay = self.model.real(self.model.fetch_time(size));
        let entry = self
            .items
            .entry(cid)
            .or_insert_with(async move {
                tokio::time::sleep(delay).await;
                size
            })
            .await;
        (!entry.is_fresh(), size)
    }

    /// The items held now.
    pub fn held(&self) -> Vec<Cid> {
        self.items.iter().map(|(cid, _)| *cid).collect()
    }
}

/// One worker's simulated executor: its identity, its cache, the cost model.
pub struct SimulatedExecutor {
    worker: String,
    jobs: JobStore,
    queue: ShardQueue,
    /// Signs receipts like a real worker's key; simulated workers do not register theirs.
    key: WorkerKey,
    cache: ItemCache,
    model: CostModel,
    completions: mpsc::UnboundedSender<Completion>,
}

impl SimulatedExecutor {
    /// The executor of worker `worker`, recording through `jobs`, caching up to `cache_bytes`,
    /// and telling `completions` of every job it settles.
    pub fn new(
        worker: &str,
        jobs: JobStore,
        cache_bytes: u64,
        model: CostModel,
        completions: mpsc::UnboundedSender<Completion>,
    ) -> SimulatedExecutor {
        SimulatedExecutor {
            worker: worker.to_string(),
            queue: ShardQueue::new(jobs.connection()),
            key: WorkerKey::generate(),
            jobs,
            cache: ItemCache::new(cache_bytes, model),
            model,
            completions,
        }
    }
}

impl Execute for SimulatedExecutor {
    async fn execute(&self, delivery: &Delivery) -> Result<Settled, StoreError> {
        let job_id = delivery.job_id.as_str();
        let (job, mut execution) = match begin(&self.jobs, &self.worker, delivery).await? {
            Begun::Run(job, execution) => (job, execution),
            Begun::Settled(settled) => return Ok(settled),
        };
        let fetch_started = Instant::now();
        let (mut cached, mut input_bytes) = (0u32, 0u64);
        let mut inputs = Vec::with_capacity(job.spec.inputs.len());
        for input in &job.spec.inputs {
            let cid = *input.cid.cid();
            let (hit, size) = self.cache.fetch(cid).await;
            cached += u32::from(hit);
            input_bytes += size;
            inputs.push(cid);
        }
        let fetch_ms = fetch_started.elapsed().as_millis() as u64;
        let program = *job.spec.program.cid();
        let run_started = Instant::now();
        tokio::time::sleep(self.model.real(self.model.compute_time(&program, input_bytes))).await;
        let run_ms = run_started.elapsed().as_millis() as u64;
        execution.finished_at_ms = Some(now_ms());
        execution.outcome = Some(ExecutionOutcome::Completed(ExecutionResult {
            exit_code: 0,
            output: ContentId(expected_output(&program, &inputs)),
            stdout: ContentId(empty_log()),
            stderr: ContentId(empty_log()),
            fuel_consumed: 0,
            fetch_ms,
            run_ms,
            inputs_cached: cached,
        }));
        let (state, settled) =
            settle(&self.jobs, &self.queue, None, &self.key, &job, *execution, Some(delivery)).await?;
        // The run may have stopped listening; the job's record is what counts.
        self.completions.send(Completion { job_id: job_id.to_string(), state }).ok();
        Ok(settled)
    }

    fn held_inputs(&self) -> Vec<Cid> {
        self.cache.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::catalogue::Catalogue;

    fn model() -> CostModel {
        CostModel {
            time_scale: 0.001,
            bandwidth_bytes_per_s: 1e9,
            fetch_latency: Duration::from_millis(50),
            compute_min: Duration::from_secs(10),
            compute_max: Duration::from_secs(20),
            mean_item_bytes: 1_000_000_000,
        }
    }

    #[test]
    fn a_gigabyte_at_a_gigabyte_a_second_takes_a_millisecond_at_one_thousandth() {
        let model = model();
        assert_eq!(model.fetch_time(1_000_000_000), Duration::from_millis(1050));
        assert_eq!(model.real(Duration::from_secs(1)), Duration::from_millis(1));
    }

    #[test]
    fn compute_time_is_per_program_and_proportional_to_input_size() {
        let model = model();
        let catalogue = Catalogue::new(10_000_000_000, 1_000_000_000, 1);
        let (a, b) = (catalogue.cid(0), catalogue.cid(1));
        let one = model.compute_time(&a, 1_000_000_000);
        assert!(one >= Duration::from_secs(10) && one <= Duration::from_secs(20), "{one:?}");
        let two = model.compute_time(&a, 2_000_000_000);
        assert!(two.abs_diff(one * 2) <= Duration::from_nanos(2), "{two:?} is not twice {one:?}");
        assert_ne!(model.compute_time(&b, 1_000_000_000), one);
    }

    #[test]
    fn outputs_depend_on_the_program_and_every_input_in_order() {
        let catalogue = Catalogue::new(10_000_000_000, 1_000_000_000, 1);
        let (p, x, y) = (catalogue.cid(0), catalogue.cid(1), catalogue.cid(2));
        assert_eq!(expected_output(&p, &[x, y]), expected_output(&p, &[x, y]));
        assert_ne!(expected_output(&p, &[x, y]), expected_output(&p, &[y, x]));
        assert_ne!(expected_output(&p, &[x]), expected_output(&x, &[p]));
    }

    #[tokio::test]
    async fn a_second_fetch_of_an_item_is_a_hit_and_eviction_follows_bytes() {
        let catalogue = Catalogue::new(10_000_000_000, 1_000_000_000, 1);
        // Room for about two items of 0.5 to 1.5 GB.
        let cache = ItemCache::new(3_000_000_000, model());
        let (first, size) = cache.fetch(catalogue.cid(0)).await;
        assert!(!first);
        assert_eq!(size, catalogue.size_of(&catalogue.cid(0)));
        assert!(cache.fetch(catalogue.cid(0)).await.0);
        for n in 1..10 {
            assert!(!cache.fetch(catalogue.cid(n)).await.0);
        }
        cache.items.run_pending_tasks().await;
        assert_eq!(cache.held().len() as u64, cache.items.entry_count());
        assert!(cache.items.weighted_size() <= 3_000_000_000 / 1024);
        assert!(cache.items.entry_count() < 10);
    }
}
