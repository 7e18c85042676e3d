//! Blocks and CIDs: hashing, verification and parsing.

use std::str::FromStr;

use bytes::Bytes;
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};

use crate::error::{ContentError, Result};

/// The IPLD codecs Shoal stores and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Codec {
    /// Raw bytes (`0x55`): UnixFS leaves in CIDv1 profiles.
    Raw = 0x55,
    /// dag-pb (`0x70`): UnixFS files' inner nodes and directories.
    DagPb = 0x70,
}

impl Codec {
    /// The codec of `cid`, or an error if Shoal does not handle it.
    pub fn of(cid: &Cid) -> Result<Codec> {
        match cid.codec() {
            0x55 => Ok(Codec::Raw),
            0x70 => Ok(Codec::DagPb),
            other => Err(ContentError::Unsupported { cid: *cid, reason: format!("codec 0x{other:x}") }),
        }
    }
}

/// Multihash code of sha2-256, the only hash Shoal produces.
pub const SHA2_256: u64 = 0x12;

/// Multihash code of the identity "hash", whose digest is the data itself: kubo inlines small
/// blocks in their CIDs with it (`--inline`), and such a CID needs no store to be read.
pub const IDENTITY: u64 = 0x00;

/// A block whose bytes are known to match its CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Hashes `data` with sha2-256 and names it as a CIDv1 of `codec`.
    pub fn encode(codec: Codec, data: impl Into<Bytes>) -> Block {
        let data = data.into();
        let cid = Cid::new_v1(codec as u64, Code::Sha2_256.digest(&data));
        Block { cid, data }
    }

    /// Hashes `data` as a CIDv0 (dag-pb, sha2-256, base58 `Qm…`), as kubo's legacy profile does.
    pub fn encode_v0(data: impl Into<Bytes>) -> Block {
        let data = data.into();
        let cid = Cid::new_v0(Code::Sha2_256.digest(&data)).expect("sha2-256 is valid for CIDv0");
        Block { cid, data }
    }

    /// Accepts `data` as block `cid` only if it hashes to the digest inside `cid`.
    ///
    /// `origin` names where the bytes came from, for the error.
    pub fn new_verified(cid: Cid, data: impl Into<Bytes>, origin: &str) -> Result<Block> {
        let data = data.into();
        if cid.hash().code() == IDENTITY {
            if data != cid.hash().digest() {
                return Err(ContentError::HashMismatch { cid, origin: origin.to_string() });
            }
            return Ok(Block { cid, data });
        }
        let code = Code::try_from(cid.hash().code()).map_err(|_| ContentError::Unsupported {
            cid,
            reason: format!("hash function 0x{:x}", cid.hash().code()),
        })?;
        let computed = code.digest(&data);
        if computed.digest() != cid.hash().digest() {
            return Err(ContentError::HashMismatch { cid, origin: origin.to_string() });
        }
        Ok(Block { cid, data })
    }

    /// The block an identity CID carries in itself ([`IDENTITY`]), or `None` for any other CID.
    /// Every reader answers such a CID with this block, without asking a store or a source
    /// (none holds it: there is nothing to hold).
    pub fn inline(cid: &Cid) -> Option<Block> {
        (cid.hash().code() == IDENTITY).then(|| Block { cid: *cid, data: Bytes::copy_from_slice(cid.hash().digest()) })
    }

    /// The block's CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Splits the block into its CID and bytes.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }
}

/// Parses a CID string (CIDv0 `Qm…` or CIDv1 in any multibase) with an error that quotes the input.
pub fn parse_cid(input: &str) -> Result<Cid> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(ContentError::InvalidCid { input: input.to_string(), reason: "empty".into() });
    }
    Cid::from_str(trimmed).map_err(|e| ContentError::InvalidCid { input: input.to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_world_raw_leaf_matches_kubo() {
        let block = Block::encode(Codec::Raw, &b"hello world\n"[..]);
        assert_eq!(block.cid().to_string(), "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
    }

    #[test]
    fn verification_rejects_wrong_bytes_and_names_the_cid() {
        let block = Block::encode(Codec::Raw, &b"hello world\n"[..]);
        let err = Block::new_verified(*block.cid(), &b"hello world?"[..], "test-peer").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&block.cid().to_string()), "{msg}");
        assert!(msg.contains("test-peer"), "{msg}");
        assert!(Block::new_verified(*block.cid(), &b"hello world\n"[..], "test-peer").is_ok());
    }

    /// "hello world" as a raw block inlined with the identity hash, as
    /// `ipfs add --inline --raw-leaves` names it.
    const HELLO_INLINE: &str = "bafkqac3imvwgy3zao5xxe3de";

    #[test]
    fn an_identity_cid_carries_its_block() {
        let cid = parse_cid(HELLO_INLINE).unwrap();
        assert_eq!(cid.hash().code(), IDENTITY);
        let block = Block::inline(&cid).unwrap();
        assert_eq!(&block.data()[..], b"hello world");
        assert_eq!(Block::new_verified(cid, &b"hello world"[..], "peer").unwrap(), block);
        let err = Block::new_verified(cid, &b"hello there"[..], "peer").unwrap_err();
        assert!(matches!(err, ContentError::HashMismatch { .. }), "{err}");
        assert!(Block::inline(Block::encode(Codec::Raw, &b"x"[..]).cid()).is_none());
    }

    #[test]
    fn parse_cid_accepts_v0_and_v1_and_rejects_garbage() {
        assert_eq!(parse_cid("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").unwrap().version(), cid::Version::V0);
        assert!(parse_cid("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4").is_ok());
        for bad in ["", "not-a-cid", "bafkrei", "Qm123"] {
            let err = parse_cid(bad).unwrap_err();
            assert!(matches!(err, ContentError::InvalidCid { .. }), "{bad}: {err}");
        }
    }
}
