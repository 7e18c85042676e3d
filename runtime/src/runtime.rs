//! [`Runtime`]: compiles programs once and runs them, one fresh store per run.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::capture::{CappedOutput, Captured};
use crate::determinism::{make_deterministic, make_nondeterministic, GuestClock};
use crate::engine::{build_engine, EpochTicker, RuntimeConfig, HOST_STACK_HEADROOM_BYTES};
use crate::error::{FailureKind, GuestFailure, RunError, RuntimeError};
use crate::host::wrap_wasi;
use crate::invocation::{Determinism, Invocation, Limits, Outcome};
use crate::outputs::{Exceeded, OutputBudget, Usage};

/// How long after its wall-clock limit [`Runtime::run`] gives up waiting for
/// a guest that has not stopped (one stuck in a host call, where the epoch
/// deadline cannot reach it) and reports the timeout anyway.
const WALL_TIME_GRACE: Duration = Duration::from_secs(1);

/// The deterministic wasm runtime shared by worker and verifier.
///
/// Cheap to clone; clones share the engine, the instance pool and the limit
/// on concurrent runs.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<GuestState>,
    config: RuntimeConfig,
    /// One permit per pooling-allocator instance slot: a full pool makes
    /// instantiation fail, so runs beyond the pool size wait here instead.
    slots: Arc<Semaphore>,
    /// The threads the guests run on.
    guests: GuestThreads<Result<Outcome, RunError>>,
    /// Held only to stop the ticker thread when the runtime is dropped.
    _ticker: EpochTicker,
}

/// A compiled, pre-linked program. Cheap to clone, so callers can cache it
/// (e.g. by program CID) and run it many times.
#[derive(Clone)]
pub struct Program {
    inner: Arc<ProgramInner>,
}

struct ProgramInner {
    pre: InstancePre<GuestState>,
    /// Exported functions, and whether each takes and returns nothing (only
    /// those can be entrypoints).
    exported_functions: Vec<(String, bool)>,
}

impl Program {
    /// Names of the exported functions, in module order.
    pub fn exported_functions(&self) -> impl Iterator<Item = &str> {
        self.inner.exported_functions.iter().map(|(name, _)| name.as_str())
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").field("exported_functions", &self.inner.exported_functions).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine, links WASI preview 1 and starts the wall-clock
    /// ticker thread.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine = build_engine(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut GuestState| &mut state.wasi)
            .map_err(|err| RuntimeError::Linker(err.into_boxed_dyn_error()))?;
        wrap_wasi(&mut linker).map_err(|err| RuntimeError::Linker(err.into_boxed_dyn_error()))?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        let slots = Arc::new(Semaphore::new(config.max_concurrent_instances as usize));
        let guests = GuestThreads::new(
            config.max_concurrent_instances as usize,
            config.max_wasm_stack_bytes + HOST_STACK_HEADROOM_BYTES,
        );
        Ok(Self { inner: Arc::new(RuntimeInner { engine, linker, config, slots, guests, _ticker: ticker }) })
    }

    /// The configuration this runtime was created with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Validates, compiles and pre-links a WebAssembly binary (not text).
    ///
    /// Compilation is CPU-heavy (milliseconds to seconds); call it from a
    /// blocking context or cache the result.
    pub fn compile(&self, wasm: &[u8]) -> Result<Program, RunError> {
        const WASM_MAGIC: &[u8] = b"\0asm";
        if !wasm.starts_with(WASM_MAGIC) {
            let shown = &wasm[..wasm.len().min(8)];
            return Err(RunError::InvalidModule {
                reason: format!(
                    "not a WebAssembly binary: it does not start with the `\\0asm` magic (first bytes: {shown:02x?})"
                ),
            });
        }
        let module = Module::from_binary(&self.inner.engine, wasm)
            .map_err(|err| RunError::InvalidModule { reason: format!("{err:?}") })?;
        let pre = self.inner.linker.instantiate_pre(&module).map_err(|err| RunError::InvalidModule {
            reason: format!("cannot link (only WASI preview 1 imports are provided): {err:?}"),
        })?;
        let exported_functions = module
            .exports()
            .filter_map(|export| match export.ty() {
                ExternType::Func(func) => {
                    Some((export.name().to_owned(), func.params().len() == 0 && func.results().len() == 0))
                }
                _ => None,
            })
            .collect();
        Ok(Program { inner: Arc::new(ProgramInner { pre, exported_functions }) })
    }

    /// Runs `program` once with a fresh store.
    ///
    /// Waits for a free instance slot, then runs the guest on one of the
    /// runtime's guest threads (with enough native stack for the configured
    /// wasm stack), so the async executor is never blocked. Dropping the returned future
    /// (a cancelled job) stops the guest at its next epoch tick, in wasm code,
    /// and frees its slot.
    ///
    /// The wall-clock limit stops the guest in wasm code (epoch deadline);
    /// sleeps cost no real time (see `host.rs`). Should the guest still not
    /// have stopped [`WALL_TIME_GRACE`] after its limit (a host call that
    /// blocks), this returns [`FailureKind::Timeout`] anyway, so a caller is
    /// never held past the limit; the guest's thread keeps its instance slot
    /// until the call returns and the deadline stops it.
    ///
    /// The guest exiting with `proc_exit(n)` is an [`Outcome`] with
    /// `exit_code == n`, whatever `n` is; a guest failure is
    /// [`RunError::Guest`].
    pub async fn run(&self, program: &Program, invocation: Invocation) -> Result<Outcome, RunError> {
        self.run_then(program, invocation, |_| ()).await.map(|(outcome, ())| outcome)
    }

    /// [`Runtime::run`], then `after` with the outcome on the guest's thread, once the guest
    /// has exited and its instance is released: work that follows a run and may block —
    /// reading and publishing its outputs — without a hop to another thread and back, which on
    /// a busy host costs more than a small job's own work. `after` holds the run's instance
    /// slot but not its wall-time limit: the limit is the guest's. `after` is dropped unrun,
    /// on that thread, when the guest fails; its answer is lost with the run's when the run is
    /// given up on at its wall-time limit.
    pub async fn run_then<A: Send + 'static>(
        &self,
        program: &Program,
        invocation: Invocation,
        after: impl FnOnce(&Outcome) -> A + Send + 'static,
    ) -> Result<(Outcome, A), RunError> {
        self.check_invocation(program, &invocation)?;
        let permit = Arc::clone(&self.inner.slots)
            .acquire_owned()
            .await
            .map_err(|err| RunError::host("waiting for an instance slot", err))?;
        let started = Instant::now();
        let limit = invocation.limits.wall_time;
        let stdout = CappedOutput::new(invocation.limits.stdout_bytes);
        let stderr = CappedOutput::new(invocation.limits.stderr_bytes);
        let (done, result) = oneshot::channel();
        let stop = StopOnDrop::default();
        let stopped = Arc::clone(&stop.0);
        let runtime = Arc::clone(&self.inner);
        let program = program.clone();
        let streams = (stdout.clone(), stderr.clone());
        let (guest_done, guest_stopped) = oneshot::channel();
        let (then_done, then) = oneshot::channel();
        let run = move || {
            let result = execute(&runtime, &program, &invocation, streams, stopped);
            // The guest has stopped: what follows does not count against its wall time.
            let _ = guest_done.send(());
            if let Ok(outcome) = &result {
                // Sent before the run's own result, so it is there when that is.
                let _ = then_done.send(after(outcome));
            }
            result
        };
        self.inner.guests.submit(permit, done, run).map_err(|err| RunError::host("spawning a guest thread", err))?;
        // A panic drops the sender: the wait ends, and the result says why.
        match tokio::time::timeout(limit.saturating_add(WALL_TIME_GRACE), guest_stopped).await {
            Ok(_) => {
                let panicked = |err| RunError::host("waiting for the guest thread (it panicked)", err);
                let outcome = result.await.map_err(panicked)??;
                Ok((outcome, then.await.map_err(panicked)?))
            }
            Err(_late) => {
                let kind = FailureKind::Timeout { wall_time: limit };
                Err(guest_failure(kind, 0, stdout.captured(), stderr.captured(), started.elapsed()))
            }
        }
    }

    /// Rejects malformed invocations before any slot is taken.
    fn check_invocation(&self, program: &Program, invocation: &Invocation) -> Result<(), RunError> {
        let invalid = |reason: String| Err(RunError::InvalidInvocation { reason });
        if !Engine::same(program.inner.pre.module().engine(), &self.inner.engine) {
            return invalid("the program was compiled by another Runtime".into());
        }
        let entry = &invocation.entrypoint;
        let is_runnable = program.inner.exported_functions.iter().any(|(name, unit)| name == entry && *unit);
        if !is_runnable {
            return Err(RunError::MissingEntrypoint {
                name: entry.clone(),
                available: program.exported_functions().map(str::to_owned).collect(),
            });
        }
        let limits = &invocation.limits;
        if limits.memory_bytes > self.inner.config.max_memory_bytes {
            return invalid(format!(
                "memory limit {} exceeds the runtime's maximum of {} bytes",
                limits.memory_bytes, self.inner.config.max_memory_bytes
            ));
        }
        if limits.wall_time.is_zero() {
            return invalid("wall_time must be positive".into());
        }
        if let Some(arg) = invocation.args.iter().find(|arg| arg.contains('\0')) {
            return invalid(format!("argument {arg:?} contains a NUL byte"));
        }
        for (key, value) in &invocation.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return invalid(format!("environment variable {key:?} is not a valid NAME=value pair"));
            }
        }
        for (index, mount) in invocation.mounts.iter().enumerate() {
            if mount.guest.is_empty() {
                return invalid(format!("mount of {} has an empty guest path", mount.host.display()));
            }
            if invocation.mounts[..index].iter().any(|m| m.guest == mount.guest) {
                return invalid(format!("guest path {:?} is mounted twice", mount.guest));
            }
            if !mount.host.is_dir() {
                return invalid(format!("mount source {} is not a directory", mount.host.display()));
            }
        }
        Ok(())
    }
}

/// Per-run store data.
pub(crate) struct GuestState {
    pub(crate) wasi: WasiP1Ctx,
    memory: MemoryLimiter,
    /// The account of the writable mounts, if there are any.
    pub(crate) outputs: Option<OutputBudget>,
    /// The clocks the guest's sleeps are measured against.
    pub(crate) clock: GuestClock,
}

/// Denies memory growth beyond the run's limit and remembers that it did, so
/// the trap a guest raises after a failed allocation is reported as a
/// memory limit rather than as a generic trap.
struct MemoryLimiter {
    limit_bytes: u64,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.limit_bytes;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables are bounded, deterministically, by the pool's element limit.
        Ok(true)
    }
}

/// Set when the caller of [`Runtime::run`] stops waiting, so the guest stops too.
#[derive(Default)]
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Long-lived threads that run the guests, at most one per instance slot.
///
/// A thread per run cost more CPU than a tiny guest itself (clone3, mapping
/// and protecting a multi-MiB stack, wasmtime's per-thread signal stack,
/// munmap at exit), so runs reuse threads. Hand-written rather than rayon's
/// `ThreadPool` (already built for wasmtime): rayon starts all its threads up
/// front, has each spin through 32 `yield_now` rounds whenever it runs out of
/// work, and aborts the process on a panicking job unless given a handler.
/// This pool spawns a thread only when all existing ones are busy (an idle
/// runtime has none), parks idle threads on a condvar, and outlives panics.
///
/// Every task holds an instance slot, which its thread releases only after
/// counting itself idle again, so there are never more busy threads than
/// slots and a new task always finds an idle thread or room for a new one.
/// The thread also counts itself idle before it hands back the result, so a
/// caller's next run finds it idle: sequential runs use one thread.
struct GuestThreads<T> {
    shared: Arc<PoolShared<T>>,
    max_threads: usize,
    stack_size: usize,
}

struct PoolShared<T> {
    state: Mutex<PoolState<T>>,
    /// Signalled when a task is queued or the pool is closed.
    queued: Condvar,
}

struct PoolState<T> {
    queue: VecDeque<Task<T>>,
    spawned: usize,
    /// Threads that finished their last task and were not yet promised another.
    idle: usize,
    closed: bool,
}

struct Task<T> {
    run: Box<dyn FnOnce() -> T + Send>,
    done: oneshot::Sender<T>,
    slot: OwnedSemaphorePermit,
}

impl<T: Send + 'static> GuestThreads<T> {
    fn new(max_threads: usize, stack_size: usize) -> Self {
        let state = PoolState { queue: VecDeque::new(), spawned: 0, idle: 0, closed: false };
        Self {
            shared: Arc::new(PoolShared { state: Mutex::new(state), queued: Condvar::new() }),
            max_threads,
            stack_size,
        }
    }

    /// Runs `run` on an idle thread, or on a new one if all are busy, and
    /// sends its result to `done` (dropped unsent if `run` panics); `slot` is
    /// released once the thread is free again.
    fn submit(
        &self,
        slot: OwnedSemaphorePermit,
        done: oneshot::Sender<T>,
        run: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<()> {
        let mut state = self.shared.lock();
        if state.idle > 0 {
            state.idle -= 1;
        } else if state.spawned < self.max_threads {
            let shared = Arc::clone(&self.shared);
            thread::Builder::new()
                .name("shoal-guest".into())
                .stack_size(self.stack_size)
                .spawn(move || shared.serve())?;
            state.spawned += 1;
        }
        state.queue.push_back(Task { run: Box::new(run), done, slot });
        drop(state);
        self.shared.queued.notify_one();
        Ok(())
    }

    /// How many threads were started.
    #[cfg(test)]
    fn spawned(&self) -> usize {
        self.shared.lock().spawned
    }
}

impl<T> Drop for GuestThreads<T> {
    /// Tells the threads to exit once the queue is empty. They are not
    /// joined: the last handle on the runtime may be dropped by a task on one
    /// of them, and a guest stuck in a host call may never return.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.queued.notify_all();
    }
}

impl<T> PoolShared<T> {
    fn lock(&self) -> MutexGuard<'_, PoolState<T>> {
        // Tasks run outside the lock, so a poisoned lock still holds consistent counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A guest thread's loop: runs queued tasks until the pool is closed.
    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if let Some(Task { run, done, slot }) = state.queue.pop_front() {
                drop(state);
                // On a panic the result sender is dropped, which the caller
                // reports as an error; the thread stays in the pool.
                let result = panic::catch_unwind(AssertUnwindSafe(run));
                self.lock().idle += 1;
                if let Ok(result) = result {
                    // The caller may have stopped waiting; the result is then unused.
                    let _ = done.send(result);
                }
                // Only now, so the run that takes the slot next finds this thread idle.
                drop(slot);
                state = self.lock();
            } else if state.closed {
                return;
            } else {
                state = self.queued.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

/// Runs one invocation on the current thread, until it ends, its wall time is
/// up or `stopped` is set. The store, and with it the pool slot, is released
/// before this returns.
fn execute(
    runtime: &RuntimeInner,
    program: &Program,
    invocation: &Invocation,
    (stdout, stderr): (CappedOutput, CappedOutput),
    stopped: Arc<AtomicBool>,
) -> Result<Outcome, RunError> {
    let started = Instant::now();
    let limits = &invocation.limits;
    // A limit too far away to add is no deadline in practice: a year stands for it.
    let deadline = started.checked_add(limits.wall_time).unwrap_or(started + Duration::from_secs(365 * 86_400));
    let (wasi, clock) = build_wasi(invocation, &stdout, &stderr, deadline, Arc::clone(&stopped))?;
    let roots: Vec<PathBuf> =
        invocation.mounts.iter().filter(|mount| mount.writable).map(|mount| mount.host.clone()).collect();
    let output_limits = Usage { bytes: limits.output_bytes, entries: limits.output_files };
    let outputs = match roots.is_empty() {
        true => None,
        false => Some(
            OutputBudget::new(roots, output_limits)
                .map_err(|err| RunError::host("measuring the outputs directory", err))?,
        ),
    };

    let mut store = Store::new(
        &runtime.engine,
        GuestState { wasi, memory: MemoryLimiter { limit_bytes: limits.memory_bytes, denied: false }, outputs, clock },
    );
    store.limiter(|state| &mut state.memory);
    store.set_fuel(limits.fuel).map_err(|err| RunError::host("setting the fuel budget", err))?;
    // Every tick the guest is looked at: out of wall time, or no one waiting for it any more.
    let mut ticks_left = epoch_ticks(limits.wall_time, runtime.config.epoch_tick);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        ticks_left = ticks_left.saturating_sub(1);
        if ticks_left == 0 || stopped.load(Ordering::Relaxed) {
            Err(Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });

    let instantiated = program.inner.pre.instantiate(&mut store);
    let result = match instantiated {
        Ok(instance) => instance
            .get_typed_func::<(), ()>(&mut store, &invocation.entrypoint)
            .and_then(|entry| entry.call(&mut store, ()))
            .map_err(RunFailure::Call),
        Err(err) => Err(RunFailure::Instantiate(err)),
    };

    // The budget was set just above, so reading it back cannot fail.
    let fuel_left = store.get_fuel().unwrap_or(0);
    let fuel_consumed = limits.fuel - fuel_left.min(limits.fuel);
    let mut state = store.into_data();
    // Closes the guest's files before they are measured.
    drop(state.wasi);
    let out = stdout.captured();
    let err = stderr.captured();
    let duration = started.elapsed();

    let exit_code = match result {
        Ok(()) => 0,
        Err(failure) => match classify(failure, &state.memory, state.outputs.as_mut(), limits, &err)? {
            Ending::Exit(code) => code,
            Ending::Failed(kind) => return Err(guest_failure(kind, fuel_consumed, out, err, duration)),
        },
    };
    if let Some(budget) = state.outputs.as_mut() {
        let exceeded = budget.at_end().map_err(|err| RunError::host("measuring the outputs directory", err))?;
        if let Some(exceeded) = exceeded {
            return Err(guest_failure(output_failure(exceeded, limits), fuel_consumed, out, err, duration));
        }
    }
    Ok(Outcome {
        exit_code,
        fuel_consumed,
        stdout: out.head,
        stderr: err.head,
        stdout_truncated: out.truncated,
        stderr_truncated: err.truncated,
        duration,
    })
}

fn build_wasi(
    invocation: &Invocation,
    stdout: &CappedOutput,
    stderr: &CappedOutput,
    deadline: Instant,
    stopped: Arc<AtomicBool>,
) -> Result<(WasiP1Ctx, GuestClock), RunError> {
    let mut builder = WasiCtxBuilder::new();
    // Must come before the preopens, which capture it: file I/O then happens
    // on this (already dedicated) thread instead of hopping to a tokio pool.
    builder.allow_blocking_current_thread(true).stdout(stdout.clone()).stderr(stderr.clone()).args(&invocation.args);
    for (key, value) in &invocation.env {
        builder.env(key, value);
    }
    let clock = match invocation.determinism {
        Determinism::Deterministic => make_deterministic(&mut builder),
        Determinism::Nondeterministic => make_nondeterministic(&mut builder, deadline, stopped)
            .map_err(|err| RunError::host("seeding the guest's random sources from the host", err))?,
    };
    for mount in &invocation.mounts {
        let perms = if mount.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
        builder.preopened_dir(&mount.host, &mount.guest, perms).map_err(|err| RunError::InvalidInvocation {
            reason: format!("cannot open mount {}: {err}", mount.host.display()),
        })?;
    }
    Ok((builder.build_p1(), clock))
}

/// The failure of a guest whose outputs exceeded a limit.
fn output_failure(exceeded: Exceeded, limits: &Limits) -> FailureKind {
    match exceeded {
        Exceeded::Bytes(written) => FailureKind::OutputLimit { limit_bytes: limits.output_bytes, written },
        Exceeded::Entries(files) => FailureKind::OutputFilesLimit { limit_files: limits.output_files, files },
    }
}

/// Epoch ticks covering `wall_time`, plus one because the current tick may
/// be about to end.
fn epoch_ticks(wall_time: Duration, tick: Duration) -> u64 {
    let ticks = wall_time.as_nanos().div_ceil(tick.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
}

/// Where a run stopped without returning normally.
enum RunFailure {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

enum Ending {
    Exit(i32),
    Failed(FailureKind),
}

/// Turns a wasmtime error into the guest's exit code or failure kind. The
/// order matters: our own limits explain a trap better than its trap code.
fn classify(
    failure: RunFailure,
    memory: &MemoryLimiter,
    outputs: Option<&mut OutputBudget>,
    limits: &Limits,
    stderr: &Captured,
) -> Result<Ending, RunError> {
    let (err, instantiating) = match failure {
        RunFailure::Instantiate(err) => (err, true),
        RunFailure::Call(err) => (err, false),
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Ok(Ending::Exit(exit.0));
    }
    match outputs.and_then(OutputBudget::take_verdict) {
        Some(Ok(exceeded)) => return Ok(Ending::Failed(output_failure(exceeded, limits))),
        Some(Err(io)) => return Err(RunError::host("measuring the outputs directory", io)),
        None => {}
    }
    let kind = match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => FailureKind::FuelExhausted { fuel: limits.fuel },
        Some(Trap::Interrupt) => FailureKind::Timeout { wall_time: limits.wall_time },
        // A guest whose allocation was refused usually aborts right after
        // (Rust's allocation-failure handler traps), so any other trap, or a
        // failed instantiation, following a denied grow is the memory limit.
        _ if memory.denied => FailureKind::MemoryLimit { limit_bytes: limits.memory_bytes },
        Some(Trap::StackOverflow) => FailureKind::StackOverflow,
        // Instantiation fails without a trap only for host reasons (the
        // module was validated and linked at compile time).
        None if instantiating => return Err(RunError::host("instantiating the program", err)),
        _ => FailureKind::Trap { message: trap_message(&err, stderr) },
    };
    Ok(Ending::Failed(kind))
}

/// wasmtime's description (trap code and wasm backtrace) followed by the end
/// of the guest's stderr, where a Rust guest prints its panic message.
fn trap_message(err: &wasmtime::Error, stderr: &Captured) -> String {
    let mut message = format!("{err:?}");
    if !stderr.tail.is_empty() {
        message.push_str("\n--- end of guest stderr ---\n");
        message.push_str(&String::from_utf8_lossy(&stderr.tail));
    }
    message
}

fn guest_failure(
    kind: FailureKind,
    fuel_consumed: u64,
    stdout: Captured,
    stderr: Captured,
    duration: Duration,
) -> RunError {
    RunError::Guest(Box::new(GuestFailure {
        kind,
        fuel_consumed,
        stdout: stdout.head,
        stderr: stderr.head,
        stdout_truncated: stdout.truncated,
        stderr_truncated: stderr.truncated,
        duration,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_ticks_round_up_and_add_one() {
        let tick = Duration::from_millis(10);
        assert_eq!(epoch_ticks(Duration::from_millis(10), tick), 2);
        assert_eq!(epoch_ticks(Duration::from_millis(11), tick), 3);
        assert_eq!(epoch_ticks(Duration::from_nanos(1), tick), 2);
    }

    #[test]
    fn limiter_denies_growth_beyond_the_limit_and_remembers_it() {
        let mut limiter = MemoryLimiter { limit_bytes: 2 * 65536, denied: false };
        assert!(limiter.memory_growing(0, 2 * 65536, None).expect("no error"));
        assert!(!limiter.denied);
        assert!(!limiter.memory_growing(2 * 65536, 3 * 65536, None).expect("no error"));
        assert!(limiter.denied);
    }

    /// Guests for the pool tests: one that returns at once, one that never does.
    const EMPTY: &str = r#"(module (memory 1) (func (export "_start")))"#;
    const SPIN: &str = r#"(module (memory 1) (func (export "_start") (loop $forever (br $forever))))"#;

    fn small_invocation(wall_time: Duration) -> Invocation {
        Invocation {
            limits: Limits { memory_bytes: 16 << 20, wall_time, ..Limits::default() },
            ..Invocation::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guest_threads_are_bounded_reused_and_still_stop_runaway_guests() {
        let config =
            RuntimeConfig { max_concurrent_instances: 3, max_memory_bytes: 64 << 20, ..RuntimeConfig::default() };
        let runtime = Runtime::new(config).expect("runtime");
        let empty = runtime.compile(&wat::parse_str(EMPTY).expect("wat")).expect("compiles");
        let spin = runtime.compile(&wat::parse_str(SPIN).expect("wat")).expect("compiles");
        let spawned = || runtime.inner.guests.spawned();
        assert_eq!(spawned(), 0, "an idle runtime has no guest threads");

        for _ in 0..20 {
            runtime.run(&empty, small_invocation(Duration::from_secs(30))).await.expect("sequential run");
        }
        assert_eq!(spawned(), 1, "sequential runs share one thread");

        let concurrent: Vec<_> = (0..30)
            .map(|_| {
                let (runtime, empty) = (runtime.clone(), empty.clone());
                tokio::spawn(async move { runtime.run(&empty, small_invocation(Duration::from_secs(30))).await })
            })
            .collect();
        for run in concurrent {
            run.await.expect("task").expect("concurrent run");
        }
        assert!(spawned() <= 3, "{} threads for 3 slots", spawned());

        // Cancelled: the caller stops waiting long before the wall-time limit.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(100),
            runtime.run(&spin, small_invocation(Duration::from_secs(60))),
        )
        .await;
        assert!(cancelled.is_err(), "the spinning guest cannot have finished");
        let freed = Instant::now();
        while runtime.inner.slots.available_permits() < 3 {
            assert!(freed.elapsed() < Duration::from_secs(2), "the cancelled guest still holds its slot");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Out of wall time, on every slot at once.
        let wall_time = Duration::from_millis(300);
        let runaways: Vec<_> = (0..3)
            .map(|_| {
                let (runtime, spin) = (runtime.clone(), spin.clone());
                tokio::spawn(async move { runtime.run(&spin, small_invocation(wall_time)).await })
            })
            .collect();
        for run in runaways {
            match run.await.expect("task") {
                Err(RunError::Guest(failure)) => assert_eq!(failure.kind, FailureKind::Timeout { wall_time }),
                other => panic!("expected a timeout, got {other:?}"),
            }
        }

        for _ in 0..5 {
            runtime.run(&empty, small_invocation(Duration::from_secs(30))).await.expect("run after the timeouts");
        }
        assert!(spawned() <= 3, "{} threads for 3 slots", spawned());
    }

    #[tokio::test]
    async fn a_panicking_task_leaves_its_thread_in_the_pool() {
        let slots = Arc::new(Semaphore::new(1));
        let pool = GuestThreads::new(1, 1 << 20);
        let (sender, result) = oneshot::channel::<Option<String>>();
        let slot = Arc::clone(&slots).acquire_owned().await.expect("slot");
        pool.submit(slot, sender, || panic!("a panicking guest thread (this test expects it)")).expect("submit");
        assert!(result.await.is_err(), "the panicking task's result is dropped, not sent");

        let (sender, result) = oneshot::channel();
        let slot = Arc::clone(&slots).acquire_owned().await.expect("the panicked task released its slot");
        pool.submit(slot, sender, || thread::current().name().map(str::to_owned)).expect("submit");
        assert_eq!(result.await.expect("the pool still runs tasks").as_deref(), Some("shoal-guest"));
        assert_eq!(pool.spawned(), 1, "the same thread ran both tasks");
    }
}
