//! Deterministic replacements for WASI's clocks and random sources.
//!
//! A guest must compute the same bytes on the worker and on the verifier, so
//! nothing it can observe may come from the host's clock or entropy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::ChaCha20Rng;
use rand::SeedableRng;
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
/// the guest's monotonic clock, for sleeps to advance.
pub(crate) fn make_deterministic(builder: &mut WasiCtxBuilder) -> GuestClock {
    let clock = GuestClock::default();
    builder
        .wall_clock(FixedWallClock)
        .monotonic_clock(SteppingMonotonicClock { clock: clock.clone() })
        .secure_random(ChaCha20Rng::from_seed(GUEST_RANDOM_SEED))
        .insecure_random(ChaCha20Rng::from_seed(GUEST_INSECURE_RANDOM_SEED))
        .insecure_random_seed(GUEST_INSECURE_SEED);
    clock
}

/// The guest's virtual monotonic time in nanoseconds, shared by its clock
/// (which steps it per reading) and its sleeps (which advance it).
#[derive(Debug, Clone, Default)]
pub(crate) struct GuestClock {
    nanos: Arc<AtomicU64>,
}

impl GuestClock {
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
    clock: GuestClock,
}

impl HostMonotonicClock for SteppingMonotonicClock {
    fn resolution(&self) -> u64 {
        GUEST_MONOTONIC_STEP_NANOS
    }

    fn now(&self) -> u64 {
        self.clock.read()
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
