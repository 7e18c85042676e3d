//! Shoal's Filecoin client — not built yet.
//!
//! The issue that builds it: datasets retrieved from Filecoin under a wallet spending limit,
//! through a client that speaks Lotus's real JSON-RPC methods (`Filecoin.WalletBalance`,
//! `Filecoin.ChainHead`, the `Paych*` family; jsonrpsee) with `fvm_shared` addresses and token
//! amounts, tested against a local stand-in server the tests start. Until then this crate is
//! empty on purpose and nothing in Shoal depends on it.
