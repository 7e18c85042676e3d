//! The synthetic catalogue: items addressed by real CIDs whose blocks are never stored.
//!
//! Item `n` is the raw CIDv1 of the SHA-256 of a seed string naming it, so every process derives
//! the same CIDs without sharing anything; its size is drawn from the CID's own digest, so a
//! worker that only holds the CID knows what fetching it would cost. A petabyte is a million
//! 1 GB items and costs nothing to address.

use cid::multihash::Multihash;
use cid::Cid;
use sha2::{Digest, Sha256};

/// The multicodec of raw bytes.
const RAW: u64 = 0x55;
/// The multihash code of SHA-256.
const SHA2_256: u64 = 0x12;

/// The raw CIDv1 of the SHA-256 of `bytes`.
pub fn raw_cid(bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    Cid::new_v1(RAW, Multihash::<64>::wrap(SHA2_256, &digest).expect("a 32-byte digest fits a multihash"))
}

/// A uniform number in [0, 1) from the first eight digest bytes of `cid`.
pub fn unit_of(cid: &Cid) -> f64 {
    let digest = cid.hash().digest();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// A catalogue of `items` items of `mean_bytes` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Catalogue {
    items: u64,
    mean_bytes: u64,
    seed: u64,
}

impl Catalogue {
    /// The catalogue of about `total_bytes` in items of `mean_bytes` on average (at least one
    /// item), named from `seed`.
    pub fn new(total_bytes: u64, mean_bytes: u64, seed: u64) -> Catalogue {
        let mean_bytes = mean_bytes.max(1);
        Catalogue { items: total_bytes.div_ceil(mean_bytes).max(1), mean_bytes, seed }
    }

    /// How many items it holds.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The mean item size the sizes are drawn around.
    pub fn mean_bytes(&self) -> u64 {
        self.mean_bytes
    }

    /// The CID of item `n`.
    pub fn cid(&self, n: u64) -> Cid {
        raw_cid(format!("shoal-sim/{}/item/{n}", self.seed).as_bytes())
    }

    /// The size of the item named `cid`: uniform from half to one and a half times the mean,
    /// drawn from the CID itself.
    pub fn size_of(&self, cid: &Cid) -> u64 {
        size_from(cid, self.mean_bytes)
    }

    /// The exact sum of every item's size (hashes every CID once: about a second per million).
    pub fn total_bytes(&self) -> u64 {
        (0..self.items).map(|n| self.size_of(&self.cid(n))).sum()
    }
}

/// The size of an item named `cid` in a catalogue of mean item size `mean_bytes`.
pub fn size_from(cid: &Cid, mean_bytes: u64) -> u64 {
    ((0.5 + unit_of(cid)) * mean_bytes as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_stable_distinct_raw_cids() {
        let catalogue = Catalogue::new(10 << 30, 1 << 30, 7);
        assert_eq!(catalogue.items(), 10);
        let cids: Vec<Cid> = (0..10).map(|n| catalogue.cid(n)).collect();
        assert_eq!(cids[3], Catalogue::new(10 << 30, 1 << 30, 7).cid(3));
        assert_ne!(cids[3], Catalogue::new(10 << 30, 1 << 30, 8).cid(3));
        let distinct: std::collections::HashSet<&Cid> = cids.iter().collect();
        assert_eq!(distinct.len(), 10);
        assert!(cids.iter().all(|c| c.codec() == RAW && c.hash().code() == SHA2_256));
        // The same construction as `ipfs add --cid-version=1 --raw-leaves` of a single block.
        assert_eq!(
            raw_cid(b"hello world\n").to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
    }

    #[test]
    fn sizes_stay_within_half_and_one_and_a_half_means_and_average_out() {
        let catalogue = Catalogue::new(1000 << 30, 1 << 30, 1);
        let sizes: Vec<u64> = (0..1000).map(|n| catalogue.size_of(&catalogue.cid(n))).collect();
        assert!(sizes.iter().all(|&s| (512 << 20..1536 << 20).contains(&s)), "{sizes:?}");
        let total = catalogue.total_bytes();
        assert_eq!(total, sizes.iter().sum::<u64>());
        let ratio = total as f64 / (1000u64 << 30) as f64;
        assert!((0.95..1.05).contains(&ratio), "total is {ratio} of the nominal size");
    }
}
