//! Placement: which shard stream a job goes to.
//!
//! One function decides, keyed by the CID of the data a job moves most (its image for a
//! container job, else its first input), so a locality-aware policy can replace this first one
//! without touching the gateway or the workers.

use crate::model::{JobSpec, RuntimeKind};

/// Maps jobs to shard streams by their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRouter {
    shards: u32,
}

impl ShardRouter {
    /// Number of shard streams unless configured: far more than workers, so a join or a leave
    /// moves a small share of them, and still few enough to read in one `XREADGROUP`. Gateways,
    /// workers and verifiers must agree.
    pub const DEFAULT_SHARDS: u32 = 256;

    /// A router over `shards` streams (at least one).
    pub fn new(shards: u32) -> ShardRouter {
        ShardRouter { shards: shards.max(1) }
    }

    /// How many shard streams there are.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The shard of a job: jobs over the same first input land on the same shard, so the
    /// workers reading it keep that input in cache. Jobs without inputs are placed by program.
    ///
    /// Container jobs (`"runtime": "oci"`) are placed by their image (`program`) instead,
    /// whatever their inputs: an image is fetched and its layers unpacked before the container
    /// can start, usually far more than its inputs weigh, so jobs using one image go where it
    /// is already unpacked. Workers advertise the image's shard like an input's, as images come
    /// through the same input cache.
    pub fn route(&self, spec: &JobSpec) -> u32 {
        let key = match spec.runtime {
            RuntimeKind::Oci => &spec.program,
            RuntimeKind::Wasm => spec.inputs.first().map_or(&spec.program, |input| &input.cid),
        };
        self.shard_of(key.cid())
    }

    /// The shard jobs keyed on `cid` go to (see [`ShardRouter::route`]).
    pub fn shard_of(&self, cid: &cid::Cid) -> u32 {
        let digest = cid.hash().digest();
        let mut word = [0u8; 8];
        let n = digest.len().min(8);
        word[..n].copy_from_slice(&digest[..n]);
        jump_consistent_hash(u64::from_be_bytes(word), self.shards)
    }
}

/// Jump consistent hash (Lamping & Veach, 2014): when the shard count grows from n to n+1,
/// only 1/(n+1) of keys move. Hand-written because it is six lines and allocation-free.
fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use multihash_codetable::MultihashDigest;

    use super::*;

    #[test]
    fn growing_by_one_shard_moves_about_one_share_of_keys() {
        let keys: Vec<u64> = (0..20_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        let moved = keys.iter().filter(|&&k| jump_consistent_hash(k, 16) != jump_consistent_hash(k, 17)).count();
        let share = moved as f64 / keys.len() as f64;
        assert!((share - 1.0 / 17.0).abs() < 0.01, "moved {share}");
        assert!(keys.iter().all(|&k| jump_consistent_hash(k, 16) < 16));
    }

    #[test]
    fn same_first_input_same_shard() {
        let json = |input: &str| {
            format!(
                r#"{{"program":"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4","inputs":[{{"cid":"{input}"}}]}}"#
            )
        };
        let router = ShardRouter::new(16);
        let a =
            JobSpec::from_json(json("bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354").as_bytes()).unwrap();
        let mut b = a.clone();
        b.args.push("other".into());
        assert_eq!(router.route(&a), router.route(&b));
    }

    #[test]
    fn container_jobs_follow_their_image_and_wasm_jobs_their_first_input() {
        const IMAGE: &str = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354";
        let inputs: Vec<String> = (0..64u32)
            .map(|i| {
                let digest = multihash_codetable::Code::Sha2_256.digest(&i.to_be_bytes());
                cid::Cid::new_v1(0x55, digest).to_string()
            })
            .collect();
        let spec = |runtime: &str, input: &str| {
            let json = format!(
                r#"{{"program":"{IMAGE}","runtime":"{runtime}","command":["/bin/true"],"determinism":"nondeterministic","verification":{{"mode":"none"}},"inputs":[{{"cid":"{input}"}}]}}"#
            );
            JobSpec::from_json(json.as_bytes()).unwrap()
        };
        let router = ShardRouter::new(16);
        let image_shard = router.shard_of(&IMAGE.parse().unwrap());
        for input in &inputs {
            assert_eq!(router.route(&spec("oci", input)), image_shard, "input {input}");
        }
        // The same inputs under WebAssembly spread by input, as before.
        let wasm = |input: &str| {
            let json = format!(r#"{{"program":"{IMAGE}","inputs":[{{"cid":"{input}"}}]}}"#);
            JobSpec::from_json(json.as_bytes()).unwrap()
        };
        let shards: BTreeSet<u32> = inputs.iter().map(|input| router.route(&wasm(input))).collect();
        assert!(shards.len() > 8, "wasm jobs spread over {shards:?}");
        for input in &inputs {
            assert_eq!(router.route(&wasm(input)), router.shard_of(&input.parse().unwrap()));
        }
    }
}
