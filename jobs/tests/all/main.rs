//! The jobs crate's integration tests, in one binary: the store and queues against a real
//! `redis-server` (`redis_store`) and against a real three-node Redis Cluster (`cluster`), the
//! private server's users and restarts (`private_redis`), and the wallet spending ledger
//! (`spending`), each test starting its own.

mod cluster;
mod common;
mod private_redis;
mod redis_store;
mod spending;
