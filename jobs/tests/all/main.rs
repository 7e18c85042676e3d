//! The jobs crate's integration tests, in one binary: the store and queues against a real
//! `redis-server` (`redis_store`) and against a real three-node Redis Cluster (`cluster`), each
//! test starting its own.

mod cluster;
mod common;
mod redis_store;
