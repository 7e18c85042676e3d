//! WASI preview 1 functions the runtime wraps around wasmtime-wasi's own.
//!
//! * `poll_oneoff` on clocks only is a sleep: in the deterministic sandbox it
//!   returns at once and advances the guest's virtual monotonic clock by the
//!   time slept; in a nondeterministic run it takes real time, but never past
//!   the run's wall-clock limit. (wasmtime-wasi would sleep for real, on a
//!   thread where neither fuel nor the epoch deadline can stop it.) Polls involving file
//!   descriptors go to wasmtime-wasi, which never blocks on them here: files
//!   are always ready, stdin is empty and there are no sockets.
//! * Every call that can make the writable mounts larger (`fd_write`,
//!   `fd_pwrite`, `fd_filestat_set_size`, `path_open` creating a file,
//!   `path_create_directory`, `path_symlink`, `path_link`) first reserves
//!   what it may add in the run's [`OutputBudget`], and is not made when
//!   that would cross an output limit: the guest stops there with
//!   [`OutputStop`](crate::outputs::OutputStop), so no more than the limit
//!   ever reaches the disk. Wrapping the calls (rather than the directory,
//!   which wasmtime-wasi opens itself with cap-std) is the one way to see each
//!   write before it happens; the growth a call may cause comes from the
//!   descriptor's own size, position and flags, read through wasmtime-wasi,
//!   times the file's names (each is published).
//!
//! Each wrapper then calls wasmtime-wasi's implementation with the same
//! arguments, so everything else (errors, rights, sandboxing) is unchanged.

use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::types;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};
use wasmtime_wasi::runtime::in_tokio;
use wiggle::{GuestMemory, GuestPtr};

use crate::runtime::GuestState;

const MODULE: &str = "wasi_snapshot_preview1";

/// Replaces wasmtime-wasi's definitions of the wrapped functions in `linker`
/// (which must already hold them).
pub(crate) fn wrap_wasi(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut caller: Caller<'_, GuestState>, subs: i32, events: i32, n: i32, nevents: i32| {
            with_memory(&mut caller, |state, memory| match sleep_on_clocks(state, memory, subs, events, n, nevents) {
                Some(errno) => Ok(errno),
                None => in_tokio(p1::poll_oneoff(&mut state.wasi, memory, subs, events, n, nevents)),
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, GuestState>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| {
            with_memory(&mut caller, |state, memory| {
                let growth = write_growth(state, memory, fd, iovs, iovs_len, None);
                accounted(state, growth, 0, |state| {
                    in_tokio(p1::fd_write(&mut state.wasi, memory, fd, iovs, iovs_len, nwritten))
                })
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_pwrite",
        |mut caller: Caller<'_, GuestState>, fd: i32, iovs: i32, iovs_len: i32, offset: i64, nwritten: i32| {
            with_memory(&mut caller, |state, memory| {
                let growth = write_growth(state, memory, fd, iovs, iovs_len, Some(offset as u64));
                accounted(state, growth, 0, |state| {
                    in_tokio(p1::fd_pwrite(&mut state.wasi, memory, fd, iovs, iovs_len, offset, nwritten))
                })
            })
        },
    )?;
    linker.func_wrap(MODULE, "fd_filestat_set_size", |mut caller: Caller<'_, GuestState>, fd: i32, size: i64| {
        with_memory(&mut caller, |state, memory| {
            let growth = writable_file(state, memory, fd)
                .map_or(0, |file| (size as u64).saturating_sub(file.size).saturating_mul(file.names));
            accounted(state, growth, 0, |state| in_tokio(p1::fd_filestat_set_size(&mut state.wasi, memory, fd, size)))
        })
    })?;
    linker.func_wrap(
        MODULE,
        "path_open",
        |mut caller: Caller<'_, GuestState>,
         dirfd: i32,
         dirflags: i32,
         path: i32,
         path_len: i32,
         oflags: i32,
         rights_base: i64,
         rights_inheriting: i64,
         fdflags: i32,
         opened: i32| {
            with_memory(&mut caller, |state, memory| {
                let creates = types::Oflags::from_bits_truncate(oflags as u16).contains(types::Oflags::CREAT)
                    && stat_path(state, memory, dirfd, dirflags, path, path_len).is_none();
                accounted(state, 0, u64::from(creates), |state| {
                    in_tokio(p1::path_open(
                        &mut state.wasi,
                        memory,
                        dirfd,
                        dirflags,
                        path,
                        path_len,
                        oflags,
                        rights_base,
                        rights_inheriting,
                        fdflags,
                        opened,
                    ))
                })
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_create_directory",
        |mut caller: Caller<'_, GuestState>, dirfd: i32, path: i32, path_len: i32| {
            with_memory(&mut caller, |state, memory| {
                accounted(state, 0, 1, |state| {
                    in_tokio(p1::path_create_directory(&mut state.wasi, memory, dirfd, path, path_len))
                })
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_symlink",
        |mut caller: Caller<'_, GuestState>, target: i32, target_len: i32, dirfd: i32, path: i32, path_len: i32| {
            with_memory(&mut caller, |state, memory| {
                // A symbolic link's size is its target's length.
                accounted(state, target_len as u32 as u64, 1, |state| {
                    in_tokio(p1::path_symlink(&mut state.wasi, memory, target, target_len, dirfd, path, path_len))
                })
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_link",
        |mut caller: Caller<'_, GuestState>,
         old_fd: i32,
         old_flags: i32,
         old_path: i32,
         old_len: i32,
         new_fd: i32,
         new_path: i32,
         new_len: i32| {
            with_memory(&mut caller, |state, memory| {
                // A second name publishes the file a second time.
                let size = stat_path(state, memory, old_fd, old_flags, old_path, old_len).map_or(0, |stat| stat.size);
                accounted(state, size, 1, |state| {
                    in_tokio(p1::path_link(
                        &mut state.wasi,
                        memory,
                        old_fd,
                        old_flags,
                        old_path,
                        old_len,
                        new_fd,
                        new_path,
                        new_len,
                    ))
                })
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs `f` with the store's state and the guest's memory, as wasmtime-wasi's
/// own bindings do (including handing on the store's host-call fuel).
fn with_memory<R>(
    caller: &mut Caller<'_, GuestState>,
    f: impl FnOnce(&mut GuestState, &mut GuestMemory<'_>) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::msg("missing required memory export"));
    };
    let fuel = caller.as_context_mut().hostcall_fuel();
    let (bytes, state) = memory.data_and_store_mut(caller);
    state.wasi.set_hostcall_fuel(fuel);
    f(state, &mut GuestMemory::Unshared(bytes))
}

/// Makes `call` (a WASI call returning an errno) if `bytes` and `entries`
/// more fit in the output budget, and counts them once it succeeded.
fn accounted(
    state: &mut GuestState,
    bytes: u64,
    entries: u64,
    call: impl FnOnce(&mut GuestState) -> wasmtime::Result<i32>,
) -> wasmtime::Result<i32> {
    let counted = bytes > 0 || entries > 0;
    if counted {
        if let Some(budget) = state.outputs.as_mut() {
            budget.reserve(bytes, entries)?;
        }
    }
    let errno = call(state)?;
    if counted && errno == types::Errno::Success as i32 {
        if let Some(budget) = state.outputs.as_mut() {
            budget.grew(bytes, entries);
        }
    }
    Ok(errno)
}

/// What a regular file open for writing is like now.
struct WritableFile {
    size: u64,
    position: u64,
    append: bool,
    /// Its hard links: what it grows by is published once per name (none once it is deleted).
    names: u64,
}

/// `fd` as a regular file open for writing, or `None` (not a file, not
/// writable, not open: the call then fails or writes no file by itself).
fn writable_file(state: &mut GuestState, memory: &mut GuestMemory<'_>, fd: i32) -> Option<WritableFile> {
    let fd = types::Fd::from(fd as u32);
    let fdstat = in_tokio(state.wasi.fd_fdstat_get(memory, fd)).ok()?;
    if fdstat.fs_filetype != types::Filetype::RegularFile || !fdstat.fs_rights_base.contains(types::Rights::FD_WRITE) {
        return None;
    }
    let stat = in_tokio(state.wasi.fd_filestat_get(memory, fd)).ok()?;
    let position = state.wasi.fd_tell(memory, fd).ok()?;
    let append = fdstat.fs_flags.contains(types::Fdflags::APPEND);
    Some(WritableFile { size: stat.size, position, append, names: stat.nlink })
}

/// How much `fd_write` (or `fd_pwrite` at `offset`) of `iovs` to `fd` may
/// grow what the mounts publish: up to the end of what it writes, holes
/// included, once per name of the file.
fn write_growth(
    state: &mut GuestState,
    memory: &mut GuestMemory<'_>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: Option<u64>,
) -> u64 {
    let Some(file) = writable_file(state, memory, fd) else { return 0 };
    // wasmtime-wasi writes the first non-empty buffer only (a short write).
    let iovs = GuestPtr::<types::Ciovec>::new(iovs as u32).as_array(iovs_len as u32);
    let mut len = 0u64;
    for iov in iovs.iter() {
        let Ok(iov) = iov.and_then(|iov| memory.read(iov)) else { return 0 };
        if iov.buf_len > 0 {
            len = u64::from(iov.buf_len);
            break;
        }
    }
    let start = if file.append { file.size } else { offset.unwrap_or(file.position) };
    start.saturating_add(len).saturating_sub(file.size).saturating_mul(file.names)
}

/// `path` under `dirfd` (following a last symbolic link if `flags` say so),
/// or `None` if there is nothing there (or it cannot be looked up).
fn stat_path(
    state: &mut GuestState,
    memory: &mut GuestMemory<'_>,
    dirfd: i32,
    flags: i32,
    path: i32,
    path_len: i32,
) -> Option<types::Filestat> {
    let flags = types::Lookupflags::from_bits_truncate(flags as u32);
    let path = GuestPtr::<str>::new((path as u32, path_len as u32));
    in_tokio(state.wasi.path_filestat_get(memory, types::Fd::from(dirfd as u32), flags, path)).ok()
}

/// A poll on clocks only: the earliest subscriptions are ready once the guest's clock reaches
/// their deadline — at once in virtual time, after a real wait (up to the wall-clock limit)
/// on the host's clocks.
/// Returns the errno, or `None` to leave the poll to wasmtime-wasi (file
/// descriptors, other clocks, or subscriptions it cannot read: it reports the
/// error).
fn sleep_on_clocks(
    state: &mut GuestState,
    memory: &mut GuestMemory<'_>,
    subs: i32,
    events: i32,
    n: i32,
    nevents: i32,
) -> Option<i32> {
    if n <= 0 {
        return None;
    }
    let subs = GuestPtr::<types::Subscription>::new(subs as u32).as_array(n as u32);
    let now = state.clock.monotonic_nanos();
    let wall = u64::try_from(state.clock.wall().as_nanos()).unwrap_or(u64::MAX);
    let mut waits = Vec::with_capacity(n as usize);
    for sub in subs.iter() {
        let sub = memory.read(sub.ok()?).ok()?;
        let types::SubscriptionU::Clock(clock) = sub.u else { return None };
        let absolute = clock.flags.contains(types::Subclockflags::SUBSCRIPTION_CLOCK_ABSTIME);
        let wait = match (clock.id, absolute) {
            (types::Clockid::Monotonic | types::Clockid::Realtime, false) => clock.timeout,
            (types::Clockid::Monotonic, true) => clock.timeout.saturating_sub(now),
            (types::Clockid::Realtime, true) => clock.timeout.saturating_sub(wall),
            _ => return None,
        };
        waits.push((sub.userdata, wait));
    }
    let first = waits.iter().map(|(_, wait)| *wait).min()?;
    let events = GuestPtr::<types::Event>::new(events as u32);
    let mut count = 0u32;
    for (userdata, _) in waits.into_iter().filter(|(_, wait)| *wait == first) {
        let event = types::Event {
            userdata,
            error: types::Errno::Success,
            type_: types::Eventtype::Clock,
            fd_readwrite: types::EventFdReadwrite { flags: types::Eventrwflags::empty(), nbytes: 0 },
        };
        let written = events.add(count).and_then(|at| memory.write(at, event));
        if written.is_err() {
            return Some(types::Errno::Fault as i32);
        }
        count += 1;
    }
    if memory.write(GuestPtr::<u32>::new(nevents as u32), count).is_err() {
        return Some(types::Errno::Fault as i32);
    }
    state.clock.sleep(first);
    Some(types::Errno::Success as i32)
}
