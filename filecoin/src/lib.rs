//! Shoal's Filecoin retrieval: Lotus's full-node JSON-RPC v1, IPNI provider lookup, paid
//! trustless-gateway retrieval under a wallet spending limit, and local stand-ins of a Lotus
//! node and a storage provider.
//!
//! **Real:** [`LotusClient`] speaks the wire protocol of a real Lotus node — `POST /rpc/v1`,
//! JSON-RPC 2.0, `Authorization: Bearer <token>`, methods `Filecoin.<Name>` with Lotus's
//! parameter order and JSON shapes ([`types`]): addresses as `f…`/`t…` strings (`fvm_shared`
//! [`Address`](fvm_shared::address::Address)), amounts as decimal attoFIL strings
//! (`fvm_shared` [`TokenAmount`](fvm_shared::econ::TokenAmount), checked by [`amount`]: never
//! negative, never above the total supply), CIDs as `{"/": …}`. Pointing it at a real node is
//! a matter of its URL and token. The shapes are those of Lotus's
//! `documentation/en/api-methods-v1-stable.md` (the tests hold examples copied from it).
//! [`ipni::IpniClient`] speaks IPNI's real find API (`GET /cid/{cid}`, as cid.contact
//! answers). [`Retriever`] finds providers, pays the cheapest acceptable quote with a
//! payment-channel voucher made through Lotus, within the wallet's limit in
//! [`shoal_jobs::SpendingLedger`], and keeps only blocks verified by shoal-content.
//!
//! **Stand-ins** ([`standin`]), for tests and demos: a local Lotus *stand-in* — the same
//! methods and shapes over HTTP, with in-memory wallets, payment channels and voucher checks
//! that follow Lotus's payment-channel manager, but no consensus, no real signatures and no
//! real chain (see its documentation for exactly what is simulated) — and a storage-provider
//! *stand-in* serving IPNI finds, price quotes and paid CARs. The price quote and the voucher
//! header are this crate's own conventions: no standard exists for them over HTTP.

// Errors carry the CIDs and addresses they are about by value (callers match on them); they
// are built only on failure paths, where the larger `Result` costs nothing next to the I/O.
#![allow(clippy::result_large_err)]

pub mod amount;
mod client;
mod error;
pub mod ipni;
pub mod retrieve;
pub mod standin;
pub mod types;

pub use client::{LotusClient, DEFAULT_TIMEOUT};
pub use error::LotusError;
pub use retrieve::{Retrieval, RetrievalError, Retriever};
