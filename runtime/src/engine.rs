//! The one place where the wasmtime [`Engine`] is configured.
//!
//! Worker and verifier must execute a program identically, so every setting
//! that can change what a guest observes lives here and nowhere else. The
//! choices follow wasmtime's "Deterministic Wasm Execution" checklist:
//!
//! * NaN canonicalisation on, so float results are bit-identical on every host;
//! * threads and shared memory off (scheduling is not deterministic);
//! * relaxed SIMD in its deterministic mode;
//! * fuel metering on: fuel, not time, is what stops a runaway guest, so the
//!   point where a guest runs out is the same on every machine;
//! * memories never move and are capped by the pooling allocator and a per-run
//!   [`ResourceLimiter`](wasmtime::ResourceLimiter), so `memory.grow` succeeds or
//!   fails for the same request everywhere, not depending on host memory;
//! * an explicit maximum wasm stack, so recursion overflows at the same depth
//!   (for the same wasmtime version, CPU architecture and settings);
//! * epoch interruption only as a wall-clock safety net: its trap is reported
//!   as a timeout, never as a result to compare.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Strategy, WasmFeatures,
};

use crate::error::RuntimeError;

/// Settings of a [`Runtime`](crate::Runtime) that are fixed for its lifetime.
///
/// Worker and verifier must use the same values for `max_wasm_stack_bytes`
/// (it decides where a stack overflow happens); the other fields only bound
/// resources and never change a successful result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// How many guests may run at the same time. This is also the number of
    /// instance slots in the pooling allocator; further runs wait for a slot.
    pub max_concurrent_instances: u32,
    /// Largest linear memory any guest may have. A run's
    /// [`Limits::memory_bytes`](crate::Limits::memory_bytes) may not exceed it.
    pub max_memory_bytes: u64,
    /// Maximum stack the compiled wasm code may use before a stack-overflow
    /// trap. Guests run on threads with this much stack plus
    /// [`HOST_STACK_HEADROOM_BYTES`] for the host functions they call.
    pub max_wasm_stack_bytes: usize,
    /// Largest number of elements a guest's table may hold.
    pub max_table_elements: usize,
    /// How often the wall-clock safety net ticks. A run's wall-time limit is
    /// enforced with this granularity.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_concurrent_instances: 16,
            max_memory_bytes: 4 << 30,
            max_wasm_stack_bytes: 1 << 20,
            max_table_elements: 100_000,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// Native stack given to each guest thread on top of the wasm stack limit:
/// wasmtime counts host frames against the wasm limit, but the host functions
/// (WASI, the limiter) need real stack below it, and exhausting the native
/// stack would abort the whole process rather than trap the guest.
pub const HOST_STACK_HEADROOM_BYTES: usize = 2 << 20;

/// How much of a linear memory (and of a table) a freed instance slot resets
/// with `memset` instead of `madvise`; see [`build_engine`].
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Largest accepted [`RuntimeConfig::max_memory_bytes`]: 4 GiB is all a
/// 32-bit wasm memory can address, and the pooling allocator reserves this
/// much address space per slot.
const MAX_MEMORY_CEILING_BYTES: u64 = 4 << 30;

/// Builds the deterministic engine described in the module documentation.
pub(crate) fn build_engine(config: &RuntimeConfig) -> Result<Engine, RuntimeError> {
    validate(config)?;
    let max_memory = usize::try_from(config.max_memory_bytes).map_err(|_| {
        RuntimeError::InvalidConfig(format!(
            "max_memory_bytes {} does not fit this host's address space",
            config.max_memory_bytes
        ))
    })?;

    let mut pool = PoolingAllocationConfig::new();
    // Core modules only (no components), one memory and one table each: every
    // run needs exactly one slot of each kind.
    pool.total_core_instances(config.max_concurrent_instances)
        .total_memories(config.max_concurrent_instances)
        .total_tables(config.max_concurrent_instances)
        .total_component_instances(0)
        .total_gc_heaps(0)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(max_memory)
        .table_elements(config.max_table_elements);

    // Resetting a freed slot with `madvise` is a syscall plus, with several
    // threads in the process, TLB-shootdown IPIs to the other cores: for a tiny
    // job that was a large part of its cost. Zeroing what the guest dirtied
    // with `memset` avoids both and keeps the pages for the next run.
    // PAGEMAP_SCAN (Linux 6.7+) finds the dirtied pages, so a guest that
    // dirtied at most KEEP_RESIDENT_BYTES (most small jobs) needs no `madvise`
    // at all, and a bigger one pays a memset of 1 MiB (tens of µs) next to a
    // run long enough to dirty that much; it costs up to 1 MiB of RSS per warm
    // slot. Without PAGEMAP_SCAN wasmtime would memset the first
    // KEEP_RESIDENT_BYTES whether touched or not, which measured slower than
    // `madvise` (a 17-page guest: 32 µs per run against 17 µs), so then slots
    // are reset as before. The guest sees the same zeroed memory either way.
    let mut resident = pool.clone();
    resident
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Yes);

    let mut wasm = Config::new();
    wasm.strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .cranelift_nan_canonicalization(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        // Each module compiles on its own thread: with the shared parallel pool, one module
        // crafted to compile for minutes would hold every pool thread and starve the compiles
        // of everyone else's programs past their budget. Programs are compiled once per CID.
        .parallel_compilation(false)
        .max_wasm_stack(config.max_wasm_stack_bytes)
        // Spelled out although the `threads` cargo feature is off: the
        // proposal must stay disabled even if another crate turns it on.
        .wasm_features(WasmFeatures::THREADS, false)
        .shared_memory(false)
        .wasm_relaxed_simd(true)
        .relaxed_simd_deterministic(true)
        // GC proposals would add a second, separately sized heap; Shoal's
        // guests are plain WASI preview 1 programs that never need one.
        .gc_support(false)
        .wasm_gc(false)
        .wasm_function_references(false)
        .wasm_exceptions(false)
        .wasm_stack_switching(false)
        .wasm_component_model(false)
        .memory_reservation(MAX_MEMORY_CEILING_BYTES)
        .memory_may_move(false)
        .memory_init_cow(true);

    let mut with_scan = wasm.clone();
    with_scan.allocation_strategy(InstanceAllocationStrategy::Pooling(resident));
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // The first fails only where the kernel lacks PAGEMAP_SCAN (or for a
    // reason the second reports too).
    Engine::new(&with_scan)
        .or_else(|_without_pagemap_scan| Engine::new(&wasm))
        .map_err(|err| RuntimeError::Engine(err.into_boxed_dyn_error()))
}

fn validate(config: &RuntimeConfig) -> Result<(), RuntimeError> {
    let invalid = |reason: String| Err(RuntimeError::InvalidConfig(reason));
    if config.max_concurrent_instances == 0 {
        return invalid("max_concurrent_instances must be at least 1".into());
    }
    if config.max_memory_bytes == 0 || config.max_memory_bytes > MAX_MEMORY_CEILING_BYTES {
        return invalid(format!(
            "max_memory_bytes must be between 1 and {MAX_MEMORY_CEILING_BYTES}, got {}",
            config.max_memory_bytes
        ));
    }
    if config.max_wasm_stack_bytes == 0 {
        return invalid("max_wasm_stack_bytes must be positive".into());
    }
    if config.epoch_tick.is_zero() {
        return invalid("epoch_tick must be positive".into());
    }
    Ok(())
}

/// Background thread that advances the engine's epoch every tick, which is
/// what lets a run's wall-clock deadline fire. It stops when this value is
/// dropped (the channel disconnects and wakes it at once).
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> Result<Self, RuntimeError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("shoal-epoch-ticker".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(RuntimeError::Thread)?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The ticker only sleeps and increments a counter; it cannot panic
            // in a way worth propagating from a destructor.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_builds_an_engine() {
        build_engine(&RuntimeConfig::default()).expect("default config is valid");
    }

    #[test]
    fn rejects_zero_instances() {
        let config = RuntimeConfig { max_concurrent_instances: 0, ..RuntimeConfig::default() };
        let err = build_engine(&config).expect_err("zero instances must be rejected");
        assert!(err.to_string().contains("max_concurrent_instances"), "{err}");
    }

    #[test]
    fn rejects_memory_beyond_32_bit_address_space() {
        let config = RuntimeConfig { max_memory_bytes: (4 << 30) + 1, ..RuntimeConfig::default() };
        let err = build_engine(&config).expect_err("more than 4 GiB must be rejected");
        assert!(err.to_string().contains("max_memory_bytes"), "{err}");
    }
}
