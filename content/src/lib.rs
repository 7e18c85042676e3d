//! Shoal's content layer.
//!
//! Everything in Shoal — programs, inputs, outputs — is named by an IPFS CID. This crate turns
//! bytes into CIDs exactly as kubo and the JS importer do ([`unixfs`]), turns CIDs back into bytes
//! that have been checked block by block against their hashes ([`source`], [`unixfs`]), moves
//! DAGs around as CAR files ([`car`]) and serves blocks over the trustless-gateway protocol
//! ([`serve`]).
//!
//! Trust model: a block is only ever handed to the rest of the system after its bytes have been
//! hashed and compared with the multihash inside its CID ([`Block::new_verified`]). Local stores
//! verify too, so a corrupted disk is caught the same way as a lying peer.

#![warn(missing_docs)]
// Errors carry the CIDs they are about by value (callers match on them, and a CID is ~100
// bytes); they are built only on failure paths, where the larger `Result` costs nothing that
// matters next to the I/O or hashing that failed.
#![allow(clippy::result_large_err)]

mod block;
pub mod car;
pub mod dag;
mod error;
pub mod serve;
pub mod source;
mod store;
pub mod unixfs;

pub use block::{parse_cid, Block, Codec, IDENTITY, SHA2_256};
pub use error::{ContentError, Result};
pub use store::{
    get_verified, BlockReader, BlockSink, BlockSource, BlockStore, FsBlockStore, MemoryBlockStore, WritesHere,
};
