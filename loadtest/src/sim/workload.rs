//! Who submits what: users, their programs, and which catalogue items jobs read.
//!
//! Items are drawn with a Zipf (s = 1) popularity over the catalogue, so a few items are read
//! often and caches matter; popularity ranks are spread over the catalogue by a fixed
//! permutation, so hot items land on many shards. Programs read one or two items (the second is
//! the next item, a neighbouring tile); each user has programs of its own.

use cid::Cid;
use serde_json::{json, Value};

use crate::sim::catalogue::{raw_cid, Catalogue};
use crate::sim::executor::expected_output;
use crate::workload::SplitMix;

/// One program: a CID that is never fetched, and how many items it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Its CID (its run time is drawn from it, see [`crate::sim::CostModel::compute_time`]).
    pub cid: Cid,
    /// Items per job: 1 or 2.
    pub inputs: u64,
}

/// The programs of a run: `count` of them, named from `seed`.
pub fn programs(count: usize, seed: u64) -> Vec<Program> {
    (0..count)
        .map(|p| Program { cid: raw_cid(format!("shoal-sim/{seed}/program/{p}").as_bytes()), inputs: 1 + p as u64 % 2 })
        .collect()
}

/// The programs user `user` of `users` runs: every `users`-th one, starting at its own index, so
/// users share none and each has at least one (when there are at least as many programs).
pub fn programs_of(user: usize, users: usize, programs: usize) -> Vec<usize> {
    let own: Vec<usize> = (user..programs).step_by(users.max(1)).collect();
    if own.is_empty() {
        vec![user % programs.max(1)]
    } else {
        own
    }
}

/// Zipf (s = 1) popularity over `items` items, by inverting the continuous approximation of its
/// distribution: rank `r` (from 0) has probability about `1 / ((r + 1) ln(items + 1))`.
#[derive(Debug, Clone, Copy)]
pub struct Popularity {
    items: u64,
    /// `ln(items + 1)`.
    log_span: f64,
    /// An odd multiplier and an offset: rank `r` is item `(r * stride + offset) mod items`.
    stride: u64,
    offset: u64,
}

impl Popularity {
    /// Popularity over `items` items, its rank-to-item permutation from `seed`.
    pub fn new(items: u64, seed: u64) -> Popularity {
        let items = items.max(1);
        let mut rng = SplitMix::new(seed ^ 0x9091_1A11);
        // A stride coprime with `items` makes rank -> item a permutation.
        let mut stride = (rng.next_u64() % items) | 1;
        while gcd(stride, items) != 1 {
            stride = (stride + 2) % items.max(2);
        }
        Popularity { items, log_span: ((items + 1) as f64).ln(), stride, offset: rng.next_u64() % items }
    }

    /// The popularity rank (0 is the most popular) drawn from `rng`.
    pub fn rank(&self, rng: &mut SplitMix) -> u64 {
        let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((unit * self.log_span).exp() as u64).saturating_sub(1).min(self.items - 1)
    }

    /// The item at popularity rank `rank`.
    pub fn item(&self, rank: u64) -> u64 {
        ((rank as u128 * self.stride as u128 + self.offset as u128) % self.items as u128) as u64
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One job to submit.
#[derive(Debug, Clone)]
pub struct SimJob {
    /// Who submits it.
    pub user: usize,
    /// Which program (an index into [`programs`]).
    pub program: usize,
    /// The spec to POST.
    pub spec: Value,
    /// The output a correct run produces.
    pub expected_output: Cid,
}

/// The job user `user` submits next: one of its programs over items drawn from `popularity`.
pub fn next_job(
    user: usize,
    own: &[usize],
    programs: &[Program],
    catalogue: &Catalogue,
    popularity: &Popularity,
    rng: &mut SplitMix,
) -> SimJob {
    let program = own[rng.below(own.len())];
    let first = popularity.item(popularity.rank(rng));
    let inputs: Vec<Cid> =
        (0..programs[program].inputs).map(|i| catalogue.cid((first + i) % catalogue.items())).collect();
    let spec = json!({
        "program": programs[program].cid.to_string(),
        "inputs": inputs.iter().enumerate().map(|(i, cid)| json!({"cid": cid.to_string(), "path": format!("/inputs/{i}")})).collect::<Vec<_>>(),
        "env": {"SHOAL_SIM_USER": format!("user-{user}")},
        "verification": {"mode": "none"},
    });
    SimJob { user, program, spec, expected_output: expected_output(&programs[program].cid, &inputs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_is_a_permutation_and_heavily_skewed() {
        let popularity = Popularity::new(1000, 3);
        let items: std::collections::HashSet<u64> = (0..1000).map(|r| popularity.item(r)).collect();
        assert_eq!(items.len(), 1000);
        let mut rng = SplitMix::new(1);
        let ranks: Vec<u64> = (0..100_000).map(|_| popularity.rank(&mut rng)).collect();
        assert!(ranks.iter().all(|&r| r < 1000));
        // Zipf(1) over 1000 items: the top 10 take about ln(11)/ln(1001) ≈ 35% of draws.
        let top = ranks.iter().filter(|&&r| r < 10).count() as f64 / ranks.len() as f64;
        assert!((0.30..0.40).contains(&top), "top-10 share {top}");
        assert!(ranks.iter().filter(|&&r| r >= 500).count() > 5000);
    }

    #[test]
    fn users_own_disjoint_programs_that_cover_them_all() {
        let owned: Vec<Vec<usize>> = (0..3).map(|u| programs_of(u, 3, 10)).collect();
        let mut all: Vec<usize> = owned.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(programs_of(4, 5, 2), vec![0]);
    }

    #[test]
    fn a_job_reads_as_many_items_as_its_program_and_expects_their_output() {
        let catalogue = Catalogue::new(100_000_000_000, 1_000_000_000, 1);
        let programs = programs(4, 1);
        let popularity = Popularity::new(catalogue.items(), 1);
        let mut rng = SplitMix::new(9);
        for _ in 0..20 {
            let job = next_job(1, &[1, 2], &programs, &catalogue, &popularity, &mut rng);
            assert!(job.program == 1 || job.program == 2);
            let inputs = job.spec["inputs"].as_array().unwrap();
            assert_eq!(inputs.len() as u64, programs[job.program].inputs);
            let cids: Vec<Cid> = inputs.iter().map(|i| i["cid"].as_str().unwrap().parse().unwrap()).collect();
            assert_eq!(job.expected_output, expected_output(&programs[job.program].cid, &cids));
            shoal_jobs::JobSpec::from_json(job.spec.to_string().as_bytes()).unwrap();
        }
    }
}
