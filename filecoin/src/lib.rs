//! Shoal's Filecoin client: Lotus's full-node JSON-RPC v1, and a local Lotus stand-in.
//!
//! **Real:** [`LotusClient`] speaks the wire protocol of a real Lotus node — `POST /rpc/v1`,
//! JSON-RPC 2.0, `Authorization: Bearer <token>`, methods `Filecoin.<Name>` with Lotus's
//! parameter order and JSON shapes ([`types`]): addresses as `f…`/`t…` strings (`fvm_shared`
//! [`Address`](fvm_shared::address::Address)), amounts as decimal attoFIL strings
//! (`fvm_shared` [`TokenAmount`](fvm_shared::econ::TokenAmount), checked by [`amount`]: never
//! negative, never above the total supply), CIDs as `{"/": …}`. Pointing it at a real node is
//! a matter of its URL and token. The shapes are those of Lotus's
//! `documentation/en/api-methods-v1-stable.md` (the tests hold examples copied from it).
//!
//! **Stand-in:** [`standin`] is a local Lotus *stand-in* for tests and demos: the same
//! methods and shapes over HTTP, with in-memory wallets, payment channels and voucher checks
//! that follow Lotus's payment-channel manager, but no consensus, no real signatures and no
//! real chain (see its documentation for exactly what is simulated).

pub mod amount;
mod client;
mod error;
pub mod types;

pub use client::{LotusClient, DEFAULT_TIMEOUT};
pub use error::LotusError;
pub mod standin;
