//! A local **Lotus stand-in** for tests and demos — not a Filecoin node.
//!
//! It answers the same `Filecoin.*` JSON-RPC v1 methods as Lotus, with the same parameter
//! orders, JSON shapes, permissions (`read` without a token, everything with the right
//! bearer token, HTTP 401 with a wrong one) and error codes and messages (code 1 for a
//! method's failure, -32601 for an unknown method, -32602 for a wrong parameter count, the
//! protocol errors with HTTP 500 as go-jsonrpc does), so [`crate::LotusClient`] cannot tell
//! it from Lotus for the methods Shoal uses.
//!
//! What is **simulated**:
//! - *The chain* ([`StandInChain`]) is an in-memory ledger shared by the nodes started on it:
//!   account balances, payment-channel actors and market deals. There is no consensus, no
//!   mempool and no gas: a message (creating or funding a channel, settling, collecting) is
//!   applied at once and moves the head one epoch; its "CID" is a SHA-256 DAG-CBOR CID of a
//!   description of it, not a real message's. The head tipset is synthetic.
//! - *Wallets* hold no keys: an account address is a `t1` address made from random bytes,
//!   and a node may spend from the accounts it was started with.
//! - *Voucher signatures* are an HMAC-SHA256 by the chain's secret over the voucher's fields
//!   and its payer's address, carried as a `Type: 1` signature — not secp256k1 or BLS; a
//!   real Lotus would refuse them, and nothing outside the stand-in can check them.
//! - *Settlement*: vouchers a recipient's node accepted with `PaychVoucherAdd` count at
//!   `PaychCollect` as if submitted (Lotus's settler submits them when it sees the settle
//!   message); the settlement delay is [`StandInChain::set_settle_delay`] epochs (Lotus's is
//!   12 hours), passed with [`StandInChain::advance`].
//!
//! What follows Lotus: the voucher checks (`paychmgr/paych.go`): the voucher names the
//! channel, carries no locks, is signed by the payer, its nonce is above the lane's, its
//! amount above the lane's, the lanes' total within the channel's balance (else "not enough
//! funds in channel to cover voucher - shortfall: N", and `PaychVoucherCreate` answers the
//! shortfall); `PaychGet`'s create / reserve / add-funds and `OffChain`; lanes, nonces and
//! `minDelta`.

mod node;
mod provider;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use tokio::task::JoinHandle;

use crate::types::{ChainEpoch, MarketDeal};
use crate::LotusClient;

pub(crate) use node::Chain;
pub use provider::{AcceptedVoucher, ProviderConfig, ProviderStandIn};

/// The simulated chain: balances, payment channels and deals, shared by every stand-in node
/// started on it (a client's node and a provider's, say). Cheap to clone.
#[derive(Debug, Clone)]
pub struct StandInChain {
    pub(crate) inner: Arc<Mutex<Chain>>,
}

impl Default for StandInChain {
    fn default() -> Self {
        Self::new()
    }
}

impl StandInChain {
    /// An empty chain at epoch 1 with a random signing secret.
    pub fn new() -> Self {
        Self { inner: Arc::new(Mutex::new(Chain::new())) }
    }

    /// A new account (`t1…`-style address from random bytes) holding `balance`.
    pub fn new_account(&self, balance: TokenAmount) -> Address {
        self.lock().new_account(balance)
    }

    /// An account's balance (zero if unknown).
    pub fn balance(&self, address: &Address) -> TokenAmount {
        self.lock().balance(address)
    }

    /// Records a market deal for `StateMarketStorageDeal`.
    pub fn add_deal(&self, id: u64, deal: MarketDeal) {
        self.lock().deals.insert(id, deal);
    }

    /// The head's epoch.
    pub fn height(&self) -> ChainEpoch {
        self.lock().height
    }

    /// Moves the head `epochs` forward (to pass a settlement delay).
    pub fn advance(&self, epochs: ChainEpoch) {
        self.lock().height += epochs.max(0);
    }

    /// Epochs between `PaychSettle` and when `PaychCollect` is allowed (default 0).
    pub fn set_settle_delay(&self, epochs: ChainEpoch) {
        self.lock().settle_delay = epochs.max(0);
    }

    /// Starts a stand-in node on a loopback port: its wallet holds `wallet` (the first is the
    /// default address), and `token` is the bearer token that grants every permission.
    pub async fn start_node(&self, wallet: Vec<Address>, token: &str) -> std::io::Result<LotusStandIn> {
        server::start(self.clone(), wallet, token.to_owned()).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request the stand-in received, as it came (for checking the client's wire shapes).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The method name (`Filecoin.WalletBalance`).
    pub method: String,
    /// The `params` member, `None` when absent.
    pub params: Option<serde_json::Value>,
}

/// A running stand-in node; stops when dropped.
#[derive(Debug)]
pub struct LotusStandIn {
    addr: SocketAddr,
    token: String,
    chain: StandInChain,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: JoinHandle<()>,
}

impl LotusStandIn {
    /// The JSON-RPC endpoint, `http://127.0.0.1:<port>/rpc/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/rpc/v1", self.addr)
    }

    /// The token that grants every permission.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The chain it runs on.
    pub fn chain(&self) -> &StandInChain {
        &self.chain
    }

    /// A client of this node with its token.
    pub fn client(&self) -> LotusClient {
        LotusClient::new(&self.url(), Some(&self.token)).expect("the stand-in's URL is valid")
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).last().cloned()
    }
}

impl Drop for LotusStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}
