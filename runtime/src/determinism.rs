//! Deterministic replacements for WASI's clocks and random sources.
//!
//! A guest must compute the same bytes on the worker and on the verifier, so
//! nothing it can observe may come from the host's clock or entropy.

use std::sync::atomic::{AtomicU64, Ordering};
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
pub const GUEST_MONOTONIC_STEP_NANOS: u64 = 1_000;

/// Seed of the ChaCha20 generator behind WASI `random_get`.
pub const GUEST_RANDOM_SEED: [u8; 32] = *b"shoal deterministic random seed!";

/// Seed of the ChaCha20 generator behind `wasi:random/insecure`.
pub const GUEST_INSECURE_RANDOM_SEED: [u8; 32] = *b"shoal deterministic insecure rng";

/// Value of `wasi:random/insecure-seed`.
pub const GUEST_INSECURE_SEED: u128 = u128::from_le_bytes(*b"shoal insecure!!");

/// Configures `builder` with the fixed clocks and seeded generators.
pub(crate) fn make_deterministic(builder: &mut WasiCtxBuilder) {
    builder
        .wall_clock(FixedWallClock)
        .monotonic_clock(SteppingMonotonicClock::default())
        .secure_random(ChaCha20Rng::from_seed(GUEST_RANDOM_SEED))
        .insecure_random(ChaCha20Rng::from_seed(GUEST_INSECURE_RANDOM_SEED))
        .insecure_random_seed(GUEST_INSECURE_SEED);
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
/// reading, so its values depend only on how often the guest reads it.
#[derive(Default)]
struct SteppingMonotonicClock {
    readings: AtomicU64,
}

impl HostMonotonicClock for SteppingMonotonicClock {
    fn resolution(&self) -> u64 {
        GUEST_MONOTONIC_STEP_NANOS
    }

    fn now(&self) -> u64 {
        self.readings.fetch_add(1, Ordering::Relaxed).saturating_mul(GUEST_MONOTONIC_STEP_NANOS)
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
    fn wall_clock_reads_2000_01_01() {
        // 30 years of 365 days plus the 7 leap days of 1972..=1996.
        let days = 30 * 365 + 7;
        assert_eq!(FixedWallClock.now(), Duration::from_secs(days * 86_400));
    }
}
