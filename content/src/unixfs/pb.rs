//! The UnixFS `Data` protobuf carried in the `Data` field of every dag-pb UnixFS node.
//!
//! Declared by hand with `prost`'s derive (the schema is eight fields and has not changed since
//! 2015), so the crate needs no build script or `protoc`. Field numbers, labels and the unpacked
//! encoding of `blocksizes` follow `unixfs.proto` of the UnixFS spec: kubo and the JS importer
//! write `blocksizes` unpacked, and identical bytes are what make identical CIDs.

use bytes::Bytes;

/// The kind of a UnixFS node (`Data.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Legacy leaf holding file bytes (old go-ipfs wrote these as leaves).
    Raw = 0,
    /// A plain directory: named links, no data.
    Directory = 1,
    /// A file or a part of one: optional inline bytes, then children.
    File = 2,
    /// Metadata node (unused by current importers).
    Metadata = 3,
    /// A symbolic link; `data` holds the target path.
    Symlink = 4,
    /// A node of a HAMT-sharded directory.
    HamtShard = 5,
}

/// The UnixFS `Data` message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Data {
    /// Node kind, a [`DataType`].
    #[prost(enumeration = "DataType", required, tag = "1")]
    pub r#type: i32,
    /// Inline bytes: file content for leaves, target for symlinks, the bitfield for HAMT shards.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub data: Option<Bytes>,
    /// Total content bytes under a file node.
    #[prost(uint64, optional, tag = "3")]
    pub filesize: Option<u64>,
    /// Content bytes under each child link of a file node, in link order.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub blocksizes: Vec<u64>,
    /// Hash function of a HAMT shard (multicodec; `0x22` = murmur3-x64-64).
    #[prost(uint64, optional, tag = "5")]
    pub hash_type: Option<u64>,
    /// Fanout of a HAMT shard.
    #[prost(uint64, optional, tag = "6")]
    pub fanout: Option<u64>,
    /// POSIX permission bits (never written by Shoal's importer: the profiles exclude them).
    #[prost(uint32, optional, tag = "7")]
    pub mode: Option<u32>,
    /// Modification time (never written by Shoal's importer: the profiles exclude it).
    #[prost(message, optional, tag = "8")]
    pub mtime: Option<UnixTime>,
}

/// The UnixFS `UnixTime` message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnixTime {
    /// Seconds since the Unix epoch.
    #[prost(int64, required, tag = "1")]
    pub seconds: i64,
    /// Fraction of a second, in nanoseconds.
    #[prost(fixed32, optional, tag = "2")]
    pub fractional_nanoseconds: Option<u32>,
}

impl Data {
    /// An empty message of `kind`.
    pub fn new(kind: DataType) -> Data {
        Data { r#type: kind as i32, ..Default::default() }
    }
}
