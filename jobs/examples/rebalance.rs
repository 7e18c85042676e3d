//! Measures what a join or a leave costs under [`ShardAssignment`]: how many shard readings
//! move, against the `1/N` share that is the least any scheme can move, and how evenly shards
//! spread. Prints a Markdown report (`docs/scale/rebalance.md` is its output).
//!
//! `cargo run --release -p shoal-jobs --example rebalance`

use shoal_jobs::{Candidate, ShardAssignment};

fn workers(n: usize) -> Vec<Candidate> {
    (0..n).map(|i| Candidate::new(format!("worker-{i:04}"), 2)).collect()
}

fn main() {
    println!("| shards | replicas | workers N | leave: moved | leave: moved / (R·S/N) | join: moved | join: moved / (R·S/(N+1)) | shards per worker min / mean / max |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    for &(shards, replicas) in &[(4096u32, 1usize), (4096, 2), (16_384, 1)] {
        let assignment = ShardAssignment::new(shards, replicas);
        for &n in &[10usize, 100, 1000] {
            let before = workers(n);
            // Every worker leaving in turn would take minutes at N = 1000; a spread of leavers
            // gives the average.
            let leavers: Vec<usize> = (0..n).step_by((n / 10).max(1)).collect();
            let mut leave_moved = 0usize;
            for &leaver in &leavers {
                let after: Vec<Candidate> =
                    before.iter().enumerate().filter(|&(i, _)| i != leaver).map(|(_, w)| w.clone()).collect();
                leave_moved += assignment.moved(&before, &after);
            }
            let leave_moved = leave_moved as f64 / leavers.len() as f64;
            let mut joined = before.clone();
            joined.push(Candidate::new("newcomer", 2));
            let join_moved = assignment.moved(&before, &joined) as f64;

            let mut load = vec![0usize; n];
            for shard in 0..shards {
                for owner in assignment.owners(shard, &before) {
                    let index: usize = owner.id["worker-".len()..].parse().expect("worker ids are numbered");
                    load[index] += 1;
                }
            }
            let ideal_leave = (replicas as f64) * f64::from(shards) / n as f64;
            let ideal_join = (replicas as f64) * f64::from(shards) / (n + 1) as f64;
            let mean = load.iter().sum::<usize>() as f64 / n as f64;
            println!(
                "| {shards} | {replicas} | {n} | {leave_moved:.1} | {:.2} | {join_moved:.0} | {:.2} | {} / {mean:.1} / {} |",
                leave_moved / ideal_leave,
                join_moved / ideal_join,
                load.iter().min().unwrap(),
                load.iter().max().unwrap(),
            );
        }
    }
}
