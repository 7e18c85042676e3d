//! `nondeterministic`: prints the wall clock, a monotonic interval and a
//! random number, the three things a WASI host must pin for reproducible
//! jobs. Run twice on an unpinned host, the lines differ.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let start = Instant::now();
    let wall_clock_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // std has no public random API; RandomState draws its SipHash keys from
    // the host's random source (WASI `random_get`), so hashing a constant with
    // a fresh RandomState yields a host-random number without a dependency.
    let random = RandomState::new().hash_one(0u8);
    // A little opaque work so the monotonic interval is not trivially zero.
    for i in 0..100_000u64 {
        std::hint::black_box(i);
    }
    let monotonic_ns = start.elapsed().as_nanos();
    println!("wall_clock_ns={wall_clock_ns}");
    println!("monotonic_elapsed_ns={monotonic_ns}");
    println!("random={random:016x}");
}
