//! `infinite-loop`: spins forever, for testing fuel and wall-clock limits.

fn main() {
    println!("infinite-loop: spinning until the host stops me");
    let mut counter = 0u64;
    loop {
        // black_box stops the optimiser from proving the loop has no effect.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}
