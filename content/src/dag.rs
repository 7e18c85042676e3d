//! Generic DAG structure: which CIDs a block links to, whatever it encodes.
//!
//! UnixFS semantics live in [`crate::unixfs`]; this module only knows the two codecs' link
//! structure, which is all that CAR export and block-by-block transfer need.

use cid::Cid;
use ipld_dagpb::PbNode;

use crate::block::{Block, Codec};
use crate::error::{ContentError, Result};

/// Decodes a dag-pb block, with an error that names the block.
pub fn decode_pb(block: &Block) -> Result<PbNode> {
    PbNode::from_bytes(block.data().clone())
        .map_err(|e| ContentError::Malformed { cid: *block.cid(), reason: format!("dag-pb: {e}") })
}

/// The CIDs `block` links to, in link order. Raw blocks link to nothing.
pub fn links(block: &Block) -> Result<Vec<Cid>> {
    match Codec::of(block.cid())? {
        Codec::Raw => Ok(Vec::new()),
        Codec::DagPb => Ok(decode_pb(block)?.links.into_iter().map(|l| l.cid).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_dag_pb_is_malformed_not_a_panic() {
        let block = Block::encode(Codec::DagPb, &b"\xff\xff\xff\xff garbage"[..]);
        let err = links(&block).unwrap_err();
        assert!(matches!(err, ContentError::Malformed { .. }), "{err}");
    }

    #[test]
    fn raw_blocks_have_no_links() {
        assert!(links(&Block::encode(Codec::Raw, &b"x"[..])).unwrap().is_empty());
    }
}
