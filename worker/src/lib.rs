//! Shoal's edge worker.
//!
//! A worker reads jobs from its shard streams ([`shoal_jobs::ShardReader`]), records each attempt
//! as an [`shoal_jobs::Execution`], fetches the program and inputs through verified block sources
//! ([`shoal_content::source::SourceChain`]), keeps them in size-weighted caches
//! (`cache`), runs the program in the shared deterministic runtime ([`shoal_runtime`]),
//! imports `/outputs`, stdout and stderr as UnixFS, and settles the job in one atomic step
//! before acknowledging the stream entry. A worker that dies mid-job leaves the entry pending and
//! the job `running` with its execution visible; another worker takes the entry over once it
//! has gone unrenewed for the visibility timeout (see `docs/reliability.md`).
//!
//! - `config`: [`WorkerConfig`] and its defaults; [`WorkerError`].
//! - `serve`: the worker loop ([`run`], [`serve`]) over any [`Execute`].
//! - `placement`: membership, heartbeat, cache advertisement, the shards it reads.
//! - `execute`: one delivery start to finish ([`Executor`]); [`begin`] and [`settle`], the
//!   protocol every executor follows.
//! - `fanout`: fanned-out jobs' tasks, and gathering them.
//! - `filecoin`: inputs bought from Filecoin storage providers when no free source has them
//!   ([`FilecoinConfig`]).
//! - `pipeline`: the pipelines' driver, deciding and submitting their units of work.
//! - `phases`: where a delivery's time goes, a histogram per phase, served at
//!   [`WorkerConfig::metrics_addr`].
//! - `cache`: the program and input caches (moka, size-weighted).
//! - `slot`: execution slots, given back while a delivery waits for content.

mod acks;
mod cache;
mod config;
mod execute;
mod fanout;
mod filecoin;
mod phases;
mod pipeline;
mod placement;
mod scratch;
mod serve;
mod slot;

pub use config::{InvalidWorkerId, WorkerConfig, WorkerError};
pub use execute::{begin, invocation, settle, Begun, Executor, Settled, MAX_PROGRAM_BYTES};
pub use fanout::GatherError;
pub use filecoin::FilecoinConfig;
pub use serve::{run, serve, Execute};
