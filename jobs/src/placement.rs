//! Which workers read which shards.
//!
//! Placement has two halves. [`crate::ShardRouter`] maps a job to a shard by its input CID,
//! with no knowledge of workers, so any gateway routes alike. [`ShardAssignment`] maps each
//! shard to the workers that read it, by weighted rendezvous (highest-random-weight) hashing
//! over the live members: every worker computes the same answer from the membership set alone,
//! with no coordinator, and a shard stays with the same workers for as long as they live — so
//! the same CID keeps reaching the workers whose caches hold it.
//!
//! When a worker leaves, only the shards it read move (each to the worker that ranked next for
//! it); when one joins, it takes about `1/N` of the shards, each from a single previous owner.
//! Weights are the workers' capacities, so a worker running twice as many jobs at once reads
//! about twice as many shards.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// One candidate reader of shards: an id and how many jobs it runs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The worker's id.
    pub id: String,
    /// Its capacity (jobs at once), its weight in the assignment; 0 counts as 1.
    pub capacity: u32,
    /// Precomputed hash of the id, so scoring a shard costs a few integer operations.
    seed: u64,
}

impl Candidate {
    /// The candidate for worker `id` with `capacity`.
    pub fn new(id: impl Into<String>, capacity: u32) -> Candidate {
        let id = id.into();
        let seed = id_seed(&id);
        Candidate { id, capacity, seed }
    }

    /// This candidate's rendezvous score for `shard`: the highest scores own the shard.
    ///
    /// Weighted rendezvous hashing (Schindelhauer & Schomaker, 2005): `-w / ln(u)` with `u`
    /// uniform in (0, 1) from the hash of (worker, shard) gives each worker a share of shards
    /// proportional to its weight `w`, and still moves only a leaver's shards.
    fn score(&self, shard: u32) -> f64 {
        let hash = splitmix64(self.seed ^ u64::from(shard).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // 53 random bits, shifted off zero, give u in (0, 1).
        let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        f64::from(self.capacity.max(1)) / -unit.ln()
    }
}

/// How shards are spread over the live workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardAssignment {
    shards: u32,
    replicas: usize,
}

/// Each live worker's shards, by worker id.
type ShardsByWorker = HashMap<String, Vec<u32>>;

impl ShardAssignment {
    /// An assignment of `shards` shards, each read by `replicas` workers (at least one). More
    /// than one reader per shard lets hot data be served by several caches at once, at the cost
    /// of caching it several times.
    pub fn new(shards: u32, replicas: usize) -> ShardAssignment {
        ShardAssignment { shards: shards.max(1), replicas: replicas.max(1) }
    }

    /// How many shards there are.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// How many workers read each shard (fewer if fewer are alive).
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The workers that read `shard`, best-ranked first.
    pub fn owners<'a>(&self, shard: u32, workers: &'a [Candidate]) -> Vec<&'a Candidate> {
        let mut ranked: Vec<(f64, &Candidate)> = workers.iter().map(|w| (w.score(shard), w)).collect();
        // Ties are vanishingly rare; the id breaks them so every worker still agrees.
        let best_first =
            |a: &(f64, &Candidate), b: &(f64, &Candidate)| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id));
        let keep = self.replicas.min(ranked.len());
        if keep < ranked.len() {
            // Only the first `replicas` matter: select them in linear time, then order them.
            ranked.select_nth_unstable_by(keep, best_first);
            ranked.truncate(keep);
        }
        ranked.sort_by(best_first);
        ranked.into_iter().map(|(_, w)| w).collect()
    }

    /// The `wanted` workers that should read `shard` while it is hot (see [`crate::hot`]): its
    /// owners first, so they keep it, then the workers in `holders` (which advertise holding its
    /// data already), then everyone else — each group in rendezvous order, so every worker
    /// computing this agrees, and the extra readers of a shard stay the same while it stays hot.
    pub fn readers<'a>(
        &self,
        shard: u32,
        wanted: usize,
        workers: &'a [Candidate],
        holders: &BTreeSet<String>,
    ) -> Vec<&'a Candidate> {
        let owners = self.owners(shard, workers);
        let mut rest: Vec<(bool, f64, &Candidate)> = workers
            .iter()
            .filter(|w| !owners.iter().any(|o| o.id == w.id))
            .map(|w| (holders.contains(&w.id), w.score(shard), w))
            .collect();
        rest.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then_with(|| a.2.id.cmp(&b.2.id)));
        owners.into_iter().chain(rest.into_iter().map(|(_, _, w)| w)).take(wanted.max(1)).collect()
    }

    /// The shards worker `id` reads when `workers` are alive. A worker not among them reads
    /// none (it only steals).
    ///
    /// The whole table for a live set is worked out once per process and shared: every worker
    /// needs all `S·N` scores to find its own shards, so workers sharing a process (several on
    /// one machine, or the scale simulation's thousands) would otherwise pay `S·N²` between them
    /// at every heartbeat.
    pub fn shards_of(&self, id: &str, workers: &[Candidate]) -> Vec<u32> {
        self.by_worker(workers).get(id).cloned().unwrap_or_default()
    }

    /// Every live worker's shards, from the per-process memo of recent live sets.
    fn by_worker(&self, workers: &[Candidate]) -> Arc<ShardsByWorker> {
        static RECENT: Mutex<Vec<(u64, Arc<ShardsByWorker>)>> = Mutex::new(Vec::new());
        let mut members: Vec<(&str, u32)> = workers.iter().map(|w| (w.id.as_str(), w.capacity)).collect();
        members.sort_unstable();
        let mut hasher = DefaultHasher::new();
        (self.shards, self.replicas, &members).hash(&mut hasher);
        let key = hasher.finish();
        let mut recent = RECENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, table)) = recent.iter().find(|(k, _)| *k == key) {
            return table.clone();
        }
        let mut table: HashMap<String, Vec<u32>> = HashMap::new();
        for shard in 0..self.shards {
            for owner in self.owners(shard, workers) {
                table.entry(owner.id.clone()).or_default().push(shard);
            }
        }
        let table = Arc::new(table);
        // A few live sets: while membership changes, workers briefly see different ones.
        if recent.len() == 4 {
            recent.remove(0);
        }
        recent.push((key, table.clone()));
        table
    }

    /// The set of (shard, owner) pairs for `workers`: what [`ShardAssignment::moved`] compares.
    pub fn table(&self, workers: &[Candidate]) -> BTreeSet<(u32, String)> {
        (0..self.shards)
            .flat_map(|shard| self.owners(shard, workers).into_iter().map(move |w| (shard, w.id.clone())))
            .collect()
    }

    /// How many shard readings changed hands going from `before` to `after`: pairs (shard,
    /// owner) present after but not before. The rebalance cost of a join or a leave.
    pub fn moved(&self, before: &[Candidate], after: &[Candidate]) -> usize {
        let old = self.table(before);
        self.table(after).difference(&old).count()
    }
}

/// A stable 64-bit hash of a worker id (FNV-1a, then mixed). Hand-written: it must never change
/// between versions, or every shard would move on an upgrade.
fn id_seed(id: &str) -> u64 {
    let fnv = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    splitmix64(fnv)
}

/// The SplitMix64 finaliser: a fast, well-mixed bijection on u64.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(n: usize) -> Vec<Candidate> {
        (0..n).map(|i| Candidate::new(format!("worker-{i}"), 2)).collect()
    }

    #[test]
    fn every_shard_has_its_replica_count_of_distinct_owners() {
        let assignment = ShardAssignment::new(256, 2);
        let live = workers(5);
        for shard in 0..256 {
            let owners = assignment.owners(shard, &live);
            assert_eq!(owners.len(), 2);
            assert_ne!(owners[0].id, owners[1].id);
        }
        assert_eq!(assignment.owners(3, &live[..1]).len(), 1, "fewer workers than replicas");
        assert!(assignment.owners(3, &[]).is_empty());
    }

    #[test]
    fn all_workers_agree_and_cover_every_shard_once() {
        let assignment = ShardAssignment::new(512, 1);
        let live = workers(20);
        let mut shuffled = live.clone();
        shuffled.reverse();
        let mut seen = vec![0u32; 512];
        for worker in &live {
            let mine = assignment.shards_of(&worker.id, &live);
            assert_eq!(mine, assignment.shards_of(&worker.id, &shuffled), "order of the live set must not matter");
            for shard in mine {
                seen[shard as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "each shard read by exactly one worker");
        assert!(assignment.shards_of("not-alive", &live).is_empty());
    }

    #[test]
    fn shares_follow_capacity() {
        let assignment = ShardAssignment::new(4096, 1);
        let mut live = workers(4);
        live.push(Candidate::new("big", 8));
        let big = assignment.shards_of("big", &live).len() as f64;
        let small = assignment.shards_of("worker-0", &live).len() as f64;
        // Capacities 8 and 2: the big worker reads about four times as many shards.
        assert!((3.0..5.5).contains(&(big / small)), "big {big}, small {small}");
    }

    #[test]
    fn a_hot_shard_is_read_by_its_owners_then_holders_then_the_next_ranked() {
        let live = workers(10);
        let assignment = ShardAssignment::new(64, 1);
        let shard = 7;
        let ranked = ShardAssignment::new(64, live.len()).owners(shard, &live);
        let owner = ranked[0].id.clone();
        let ids = |readers: Vec<&Candidate>| readers.into_iter().map(|w| w.id.clone()).collect::<Vec<_>>();

        // No holders: the next-ranked workers, as if the shard had more replicas.
        let plain = ids(assignment.readers(shard, 3, &live, &BTreeSet::new()));
        assert_eq!(plain, ids(ranked[..3].to_vec()));

        // Holders come before better-ranked workers that do not hold the data; the owner stays first.
        let holders: BTreeSet<String> = [ranked[9].id.clone(), ranked[5].id.clone(), owner.clone()].into();
        let hot = ids(assignment.readers(shard, 4, &live, &holders));
        assert_eq!(hot, vec![owner.clone(), ranked[5].id.clone(), ranked[9].id.clone(), ranked[1].id.clone()]);

        // Never more readers than live workers, never fewer than one.
        assert_eq!(assignment.readers(shard, 50, &live, &holders).len(), 10);
        assert_eq!(ids(assignment.readers(shard, 0, &live, &holders)), vec![owner]);
    }

    #[test]
    fn a_leave_moves_only_the_leavers_shards() {
        let assignment = ShardAssignment::new(1024, 1);
        for n in [10usize, 100] {
            let before = workers(n);
            let after: Vec<Candidate> = before.iter().filter(|w| w.id != "worker-3").cloned().collect();
            let leaver = assignment.shards_of("worker-3", &before);
            let moved = assignment.moved(&before, &after);
            assert_eq!(moved, leaver.len(), "only the leaver's shards move");
            let share = moved as f64 / 1024.0;
            assert!(share < 2.0 / n as f64, "{n} workers: {share} of shards moved");
        }
    }

    #[test]
    fn a_join_takes_about_one_share_each_from_a_single_owner() {
        let assignment = ShardAssignment::new(1024, 2);
        let before = workers(20);
        let mut after = before.clone();
        after.push(Candidate::new("newcomer", 2));
        let moved = assignment.moved(&before, &after);
        let taken = assignment.shards_of("newcomer", &after).len();
        assert_eq!(moved, taken, "every moved reading is one the newcomer took");
        // 1024 shards × 2 readers over 21 workers: about 97 readings each.
        assert!((60..140).contains(&taken), "newcomer took {taken}");
    }
}
