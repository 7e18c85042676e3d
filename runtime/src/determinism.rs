//! Deterministic replacements for WASI's clocks and random sources, and the host's own for
//! nondeterministic runs.
//!
//! A deterministic guest must compute the same bytes on the worker and on the verifier, so
//! nothing it can observe may come from the host's clock or entropy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::{ChaCha20Rng, SysRng};
use rand::{Rng, SeedableRng};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// What the guest's wall clock always reads: 2000-01-01T00:00:00Z as a
/// duration since the Unix epoch (a date late enough for formats such as ZIP,
/// which cannot encode times before 1980).
pub const GUEST_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

/// How far the guest's monotonic clock advances, in nanoseconds, each time
/// it is read. It starts at 0. Advancing (rather than standing still) lets
/// guests that measure elapsed time or wait for it to pass make progress.
/// A sleep (a `poll_oneoff` on clocks only) returns at once and advances it
/// by the time slept.
pub const GUEST_MONOTONIC_STEP_NANOS: u64 = 1_000;

/// Seed of the ChaCha20 generator behind WASI `random_get`.
pub const GUEST_RANDOM_SEED: [u8; 32] = *b"shoal deterministic random seed!";

/// Seed of the ChaCha20 generator behind `wasi:random/insecure`.
pub const GUEST_INSECURE_RANDOM_SEED: [u8; 32] = *b"shoal deterministic insecure rng";

/// Value of `wasi:random/insecure-seed`.
pub const GUEST_INSECURE_SEED: u128 = u128::from_le_bytes(*b"shoal insecure!!");

/// Configures `builder` with the fixed clocks and seeded generators; returns
/// the guest's clock, for sleeps to advance.
pub(crate) fn make_deterministic(builder: &mut WasiCtxBuilder) -> GuestClock {
    let clock = VirtualClock::default();
    builder
        .wall_clock(FixedWallClock)
        .monotonic_clock(SteppingMonotonicClock { clock: clock.clone() })
        .secure_random(ChaCha20Rng::from_seed(GUEST_RANDOM_SEED))
        .insecure_random(ChaCha20Rng::from_seed(GUEST_INSECURE_RANDOM_SEED))
        .insecure_random_seed(GUEST_INSECURE_SEED);
    GuestClock::Virtual(clock)
}

/// Configures `builder` with the host's clocks and generators seeded from the host's entropy
/// for this run alone; sleeps end by `deadline` (the run's wall-clock limit) or when `stopped`
/// is set, so a sleeping guest never holds its slot past either.
pub(crate) fn make_nondeterministic(
    builder: &mut WasiCtxBuilder,
    deadline: Instant,
    stopped: Arc<AtomicBool>,
) -> Result<GuestClock, rand::rngs::SysError> {
    let seeded = || ChaCha20Rng::try_from_rng(&mut SysRng);
    let mut seeds = seeded()?;
    let insecure_seed = (u128::from(seeds.next_u64()) << 64) | u128::from(seeds.next_u64());
    let origin = Instant::now();
    builder
        .wall_clock(HostWallClockNow)
        .monotonic_clock(HostMonotonicSince { origin })
        .secure_random(seeded()?)
        .insecure_random(seeded()?)
        .insecure_random_seed(insecure_seed);
    Ok(GuestClock::Host { origin, deadline, stopped })
}

/// The clocks a guest's sleeps are measured against: virtual (deterministic runs) or the
/// host's.
#[derive(Debug, Clone)]
pub(crate) enum GuestClock {
    /// Virtual time, which sleeps advance at once.
    Virtual(VirtualClock),
    /// The host's clocks; sleeps take real time, in slices, until `deadline` at the latest or
    /// until `stopped` is set.
    Host {
        /// What the guest's monotonic clock counts from.
        origin: Instant,
        /// The end of the run's wall time.
        deadline: Instant,
        /// Set when no one waits for the run any more.
        stopped: Arc<AtomicBool>,
    },
}

impl GuestClock {
    /// The guest's monotonic time now, in nanoseconds, without counting as a reading.
    pub(crate) fn monotonic_nanos(&self) -> u64 {
        match self {
            GuestClock::Virtual(clock) => clock.peek(),
            GuestClock::Host { origin, .. } => nanos(origin.elapsed()),
        }
    }

    /// The guest's wall-clock time now, since the Unix epoch.
    pub(crate) fn wall(&self) -> Duration {
        match self {
            GuestClock::Virtual(_) => GUEST_WALL_CLOCK,
            GuestClock::Host { .. } => HostWallClockNow.now(),
        }
    }

    /// A sleep of `nanos`: virtual time moves on at once; real time is waited for.
    pub(crate) fn sleep(&self, nanos: u64) {
        /// How often a real sleep looks whether the run was stopped.
        const SLICE: Duration = Duration::from_millis(50);
        match self {
            GuestClock::Virtual(clock) => clock.advance(nanos),
            GuestClock::Host { deadline, stopped, .. } => {
                let until =
                    Instant::now().checked_add(Duration::from_nanos(nanos)).map_or(*deadline, |t| t.min(*deadline));
                while !stopped.load(Ordering::Relaxed) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(SLICE));
                }
            }
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The guest's virtual monotonic time in nanoseconds, shared by its clock
/// (which steps it per reading) and its sleeps (which advance it).
#[derive(Debug, Clone, Default)]
pub(crate) struct VirtualClock {
    nanos: Arc<AtomicU64>,
}

impl VirtualClock {
    /// The time now, without counting as a reading.
    pub(crate) fn peek(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }

    /// Moves the time on by `nanos` (a sleep), saturating.
    pub(crate) fn advance(&self, nanos: u64) {
        let _ = self.nanos.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| Some(now.saturating_add(nanos)));
    }

    /// The time now, then steps it by [`GUEST_MONOTONIC_STEP_NANOS`].
    fn read(&self) -> u64 {
        let mut before = 0;
        self.advance_with(|now| {
            before = now;
            now.saturating_add(GUEST_MONOTONIC_STEP_NANOS)
        });
        before
    }

    fn advance_with(&self, mut next: impl FnMut(u64) -> u64) {
        let _ = self.nanos.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| Some(next(now)));
    }
}

/// A wall clock stopped at [`GUEST_WALL_CLOCK`].
struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        GUEST_WALL_CLOCK
    }
}

/// A monotonic clock that advances by [`GUEST_MONOTONIC_STEP_NANOS`] per
/// reading (and by what the guest sleeps), so its values depend only on what
/// the guest does.
#[derive(Default)]
struct SteppingMonotonicClock {
    clock: VirtualClock,
}

impl HostMonotonicClock for SteppingMonotonicClock {
    fn resolution(&self) -> u64 {
        GUEST_MONOTONIC_STEP_NANOS
    }

    fn now(&self) -> u64 {
        self.clock.read()
    }
}

/// The host's wall clock.
struct HostWallClockNow;

impl HostWallClock for HostWallClockNow {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        // A host clock set before 1970 reads as the epoch rather than failing the guest.
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
    }
}

/// The host's monotonic clock, counted from the run's start.
struct HostMonotonicSince {
    origin: Instant,
}

impl HostMonotonicClock for HostMonotonicSince {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        nanos(self.origin.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_steps_per_reading() {
        let clock = SteppingMonotonicClock::default();
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.now(), GUEST_MONOTONIC_STEP_NANOS);
        assert_eq!(clock.now(), 2 * GUEST_MONOTONIC_STEP_NANOS);
    }

    #[test]
    fn a_sleep_advances_the_monotonic_clock_by_its_length() {
        let clock = SteppingMonotonicClock::default();
        assert_eq!(clock.now(), 0);
        clock.clock.advance(5_000_000_000);
        assert_eq!(clock.clock.peek(), GUEST_MONOTONIC_STEP_NANOS + 5_000_000_000);
        assert_eq!(clock.now(), GUEST_MONOTONIC_STEP_NANOS + 5_000_000_000);
        clock.clock.advance(u64::MAX);
        assert_eq!(clock.now(), u64::MAX, "saturates rather than wrapping");
    }

    #[test]
    fn wall_clock_reads_2000_01_01() {
        // 30 years of 365 days plus the 7 leap days of 1972..=1996.
        let days = 30 * 365 + 7;
        assert_eq!(FixedWallClock.now(), Duration::from_secs(days * 86_400));
    }
}
