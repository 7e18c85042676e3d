//! Import profiles: the parameters that decide which CID a given file or tree gets.
//!
//! The names and values are those of IPIP-499 ("UnixFS CID Profiles") plus kubo's
//! `ipfs add --cid-version=1`, which IPIP-499 lists as kubo's CIDv1 behaviour.

use std::fmt;
use std::str::FromStr;

use crate::error::ContentError;

/// A named set of UnixFS DAG construction parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// `kubo-v1`: what `ipfs add --cid-version=1` produces — 256 KiB fixed chunks, raw leaves,
    /// balanced layout with at most 174 links per node, CIDv1, HAMT above 256 KiB (links-bytes).
    #[default]
    KuboV1,
    /// `unixfs-v0-2015`: plain `ipfs add` — as [`Profile::KuboV1`] but CIDv0 everywhere and
    /// leaves wrapped as dag-pb UnixFS `File` nodes.
    UnixfsV02015,
    /// `unixfs-v1-2025`: 1 MiB chunks, 1024 links per node, raw leaves, CIDv1, HAMT above 256 KiB
    /// of serialized directory block (block-bytes).
    UnixfsV12025,
}

/// How a directory's size is estimated when deciding whether to shard it (IPIP-499).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSplitStrategy {
    /// Sum over links of the name's and the CID's byte lengths.
    LinksBytes,
    /// The exact size of the serialized dag-pb directory block.
    BlockBytes,
}

/// HAMT fanout used by every profile: 256 slots, 8 bits of hash per level.
pub const HAMT_FANOUT: u64 = 256;

/// A directory whose estimated size is strictly greater than this becomes a HAMT (all profiles).
pub const HAMT_THRESHOLD_BYTES: u64 = 256 * 1024;

impl Profile {
    /// Every profile, in a stable order.
    pub const ALL: [Profile; 3] = [Profile::KuboV1, Profile::UnixfsV02015, Profile::UnixfsV12025];

    /// The profile's name as written on command lines (`kubo-v1`, `unixfs-v0-2015`, `unixfs-v1-2025`).
    pub fn name(self) -> &'static str {
        match self {
            Profile::KuboV1 => "kubo-v1",
            Profile::UnixfsV02015 => "unixfs-v0-2015",
            Profile::UnixfsV12025 => "unixfs-v1-2025",
        }
    }

    /// Fixed chunk size in bytes.
    pub fn chunk_size(self) -> usize {
        match self {
            Profile::KuboV1 | Profile::UnixfsV02015 => 256 * 1024,
            Profile::UnixfsV12025 => 1024 * 1024,
        }
    }

    /// Maximum links per file node of the balanced layout.
    pub fn max_links(self) -> usize {
        match self {
            Profile::KuboV1 | Profile::UnixfsV02015 => 174,
            Profile::UnixfsV12025 => 1024,
        }
    }

    /// Whether dag-pb nodes are named by CIDv0 (`Qm…`) rather than CIDv1.
    pub fn cid_v0(self) -> bool {
        self == Profile::UnixfsV02015
    }

    /// Whether file leaves are raw blocks (else dag-pb UnixFS `File` nodes).
    pub fn raw_leaves(self) -> bool {
        self != Profile::UnixfsV02015
    }

    /// How directory size is estimated for the HAMT decision.
    pub fn shard_split_strategy(self) -> ShardSplitStrategy {
        match self {
            Profile::KuboV1 | Profile::UnixfsV02015 => ShardSplitStrategy::LinksBytes,
            Profile::UnixfsV12025 => ShardSplitStrategy::BlockBytes,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = ContentError;

    fn from_str(s: &str) -> Result<Profile, ContentError> {
        Profile::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| ContentError::InvalidArgument {
            what: "import profile".into(),
            reason: format!("{s:?} is not one of kubo-v1, unixfs-v0-2015, unixfs-v1-2025"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_rejected() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>().unwrap(), p);
        }
        assert_eq!(Profile::default(), Profile::KuboV1);
        let err = "unixfs-v2".parse::<Profile>().unwrap_err();
        assert!(err.to_string().contains("unixfs-v2"), "{err}");
    }
}
