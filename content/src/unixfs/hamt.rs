//! HAMT-sharded directories, laid out as kubo (boxo) and the JS importer lay them out.
//!
//! An entry's slot at depth `d` is byte `d` of the big-endian first 64 bits ("h1") of
//! murmur3-x64-128 of its name (seed 0) — 8 bits per level for fanout 256. A slot holds one
//! entry (link name = slot in two upper-case hex digits + entry name) or, when several entries
//! share it, a sub-shard (link name = the two hex digits alone). The shard's `Data.data` is the
//! bitfield of used slots as a big-endian integer without leading zero bytes; `hashType` is
//! `0x22` (murmur3-x64-64) and `fanout` 256. The layout does not depend on insertion order.

use std::collections::BTreeMap;

use bytes::Bytes;
use ipld_dagpb::{PbLink, PbNode};
use prost::Message;

use super::importer::{encode_pb, Child};
use super::pb::{Data, DataType};
use super::profile::HAMT_FANOUT;
use crate::block::Block;
use crate::error::{ContentError, Result};

/// Multicodec of the HAMT hash function (murmur3-x64-64: the first half of murmur3-x64-128).
pub const MURMUR3_X64_64: u64 = 0x22;

/// The 64 hash bits that place `name` in a HAMT.
pub fn name_hash(name: &[u8]) -> u64 {
    // fastmurmur3 returns h1 and h2 laid out in memory in native order; the first 8 bytes are h1.
    let bytes = fastmurmur3::murmur3_x64_128(name, 0).to_ne_bytes();
    u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// The slot of a name with hash `hash` at `depth`, for a fanout of `2^bits`; `None` once the 64
/// hash bits are used up (kubo does not go deeper either).
pub(super) fn slot(hash: u64, depth: usize, bits: u32) -> Option<usize> {
    let used = (depth as u32).checked_mul(bits)?;
    if used + bits > 64 {
        return None;
    }
    Some(((hash << used) >> (64 - bits)) as usize)
}

/// Hex digits of a slot prefix in link names for `fanout` (2 for 256).
pub(super) fn prefix_len(fanout: u64) -> usize {
    format!("{:X}", fanout - 1).len()
}

enum Slot {
    Entry(String, Child, u64),
    Shard(Box<Shard>),
}

#[derive(Default)]
struct Shard {
    slots: BTreeMap<usize, Slot>,
}

const BITS: u32 = HAMT_FANOUT.trailing_zeros();

impl Shard {
    fn insert(&mut self, name: String, child: Child, hash: u64, depth: usize) -> Result<()> {
        let index = slot(hash, depth, BITS).ok_or_else(|| too_deep(&name))?;
        match self.slots.remove(&index) {
            None => {
                self.slots.insert(index, Slot::Entry(name, child, hash));
            }
            Some(Slot::Shard(mut sub)) => {
                sub.insert(name, child, hash, depth + 1)?;
                self.slots.insert(index, Slot::Shard(sub));
            }
            Some(Slot::Entry(other_name, other_child, other_hash)) => {
                let mut sub = Box::<Shard>::default();
                sub.insert(other_name, other_child, other_hash, depth + 1)?;
                sub.insert(name, child, hash, depth + 1)?;
                self.slots.insert(index, Slot::Shard(sub));
            }
        }
        Ok(())
    }

    /// Encodes sub-shards first (appending their blocks to `out`), then this shard.
    fn encode(self, cid_v0: bool, out: &mut Vec<Block>) -> Child {
        let mut bitfield = [0u8; (HAMT_FANOUT / 8) as usize];
        let mut links = Vec::with_capacity(self.slots.len());
        let mut children_tsize = 0u64;
        for (index, slot) in self.slots {
            let last = bitfield.len() - 1;
            bitfield[last - index / 8] |= 1 << (index % 8);
            let (name, child) = match slot {
                Slot::Entry(name, child, _) => (format!("{index:02X}{name}"), child),
                Slot::Shard(sub) => (format!("{index:02X}"), sub.encode(cid_v0, out)),
            };
            children_tsize += child.tsize;
            links.push(PbLink { cid: child.cid, name: Some(name), size: Some(child.tsize) });
        }
        let first_used = bitfield.iter().position(|b| *b != 0).unwrap_or(bitfield.len());
        let mut data = Data::new(DataType::HamtShard);
        data.data = Some(Bytes::copy_from_slice(&bitfield[first_used..]));
        data.hash_type = Some(MURMUR3_X64_64);
        data.fanout = Some(HAMT_FANOUT);
        let block = encode_pb(PbNode { links, data: Some(data.encode_to_vec().into()) }, cid_v0);
        let child = Child { cid: *block.cid(), tsize: block.data().len() as u64 + children_tsize };
        out.push(block);
        child
    }
}

fn too_deep(name: &str) -> ContentError {
    ContentError::Limit(format!(
        "HAMT entry {name:?} collides with another name on all 64 hash bits; such a directory cannot be sharded"
    ))
}

/// Builds the HAMT over `entries` (unique names). Returns its blocks, children before parents
/// (the root last), and the root as a parent links to it.
pub(crate) fn build(entries: Vec<(String, Child)>, cid_v0: bool) -> Result<(Vec<Block>, Child)> {
    let mut root = Shard::default();
    for (name, child) in entries {
        let hash = name_hash(name.as_bytes());
        root.insert(name, child, hash, 0)?;
    }
    let mut blocks = Vec::new();
    let child = root.encode(cid_v0, &mut blocks);
    Ok((blocks, child))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// h1 (first 8 output bytes, big-endian) of murmur3-x64-128 with seed 0, computed with an
    /// independent implementation: `@multiformats/murmur3` 2.2.8 (the JS importer's hash).
    #[test]
    fn name_hash_matches_the_js_importer_murmur3() {
        for (name, h1) in [
            ("", 0x0000000000000000u64),
            ("a", 0x85555565f6597889),
            ("hello", 0xcbd8a7b341bd9b02),
            ("file-00042.txt", 0x36d46c12a372d67a),
            ("The quick brown fox jumps over the lazy dog", 0xe34bbc7bbc071b6c),
            ("répertoire-ü-😀", 0x90c7665682b031c1),
        ] {
            assert_eq!(name_hash(name.as_bytes()), h1, "{name:?}");
        }
    }

    #[test]
    fn slots_take_8_bits_at_a_time_from_the_top() {
        let h = 0x0123_4567_89ab_cdef;
        let slots: Vec<_> = (0..9).map(|d| slot(h, d, 8)).collect();
        assert_eq!(
            slots,
            [Some(0x01), Some(0x23), Some(0x45), Some(0x67), Some(0x89), Some(0xab), Some(0xcd), Some(0xef), None]
        );
    }
}
