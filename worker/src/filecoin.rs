//! Inputs bought from Filecoin storage providers: a job's `"source": "filecoin"` inputs that
//! neither the worker's cache nor any free source (its local store, the trustless gateways)
//! has are retrieved with [`shoal_filecoin::Retriever`] — the cheapest provider within the
//! input's `max_price`, paid with a payment-channel voucher through Lotus, under the wallet's
//! spending limit kept in Redis ([`SpendingLedger`]) — into the local block store, every block
//! verified, and then read from there like any other input.
//!
//! Only what no free source has is paid for, so a worker holding the data (locality) pays
//! nothing: [`crate::Executor`] asks the free sources first and comes here on a miss.

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use fvm_shared::address::Address;
use shoal_content::BlockSink;
use shoal_filecoin::amount::{format_fil, token_amount};
use shoal_filecoin::ipni::IpniClient;
use shoal_filecoin::{LotusClient, Retrieval, RetrievalError, Retriever};
use shoal_jobs::{now_ms, AttoFil, InputSource, InputSpec, RedisConnection, SpendingLedger};
use tracing::{info, warn};

use crate::config::WorkerError;

/// How often a worker paying for inputs closes reservations whose holders died (their TTL
/// passed): released if unpaid, settled for the voucher recorded if one was.
const RESERVATION_SWEEP: Duration = Duration::from_secs(30);

/// Where a worker buys inputs from Filecoin, when it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilecoinConfig {
    /// The Lotus full node's JSON-RPC endpoint (`http://host:1234/rpc/v1`), whose wallet pays.
    pub lotus_url: String,
    /// Its API token (sent as `Authorization: Bearer`), if it needs one.
    pub lotus_token: Option<String>,
    /// IPNI indexers that name the providers of a CID (`https://cid.contact`).
    pub indexers: Vec<String>,
    /// The paying wallet's address; the node's default wallet if none.
    pub wallet: Option<String>,
}

/// That an input may be bought from Filecoin, and for at most what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Purchase {
    /// The most it may cost in all; only the wallet's limit bounds it if none.
    pub(crate) max_price: Option<AttoFil>,
}

impl Purchase {
    /// The purchase an input allows: none unless its source is Filecoin.
    pub(crate) fn of(input: &InputSpec) -> Option<Purchase> {
        (input.source == InputSource::Filecoin).then_some(Purchase { max_price: input.max_price })
    }
}

/// A worker's means to buy inputs: the retriever and the wallet it pays from.
pub(crate) struct FilecoinInputs {
    retriever: Retriever,
    wallet: Address,
    /// Closes dead holders' reservations while the worker runs (aborted when it is dropped).
    sweep: tokio::task::JoinHandle<()>,
}

impl Drop for FilecoinInputs {
    fn drop(&mut self) {
        self.sweep.abort();
    }
}

impl FilecoinInputs {
    /// Connects to Lotus (asking it for the default wallet if none is configured) and the
    /// indexers, and starts the reservation sweep. `worker` names this worker's reservations.
    pub(crate) async fn open(
        config: &FilecoinConfig,
        conn: RedisConnection,
        worker: &str,
    ) -> Result<Arc<FilecoinInputs>, WorkerError> {
        let lotus = LotusClient::new(&config.lotus_url, config.lotus_token.as_deref())?;
        let wallet = match &config.wallet {
            Some(wallet) => wallet
                .parse::<Address>()
                .map_err(|e| WorkerError::Filecoin(format!("wallet {wallet:?} is not a Filecoin address: {e}")))?,
            None => lotus.wallet_default_address().await?,
        };
        let mut indexers = Vec::with_capacity(config.indexers.len());
        for url in &config.indexers {
            indexers.push(IpniClient::new(url).map_err(|e| WorkerError::Filecoin(e.to_string()))?);
        }
        if indexers.is_empty() {
            return Err(WorkerError::Filecoin("no IPNI indexer to find providers on (--ipni)".into()));
        }
        let ledger = SpendingLedger::new(conn);
        let sweep = tokio::spawn(sweep_reservations(ledger.clone()));
        info!(%wallet, lotus = %config.lotus_url, "buying Filecoin inputs no free source has");
        Ok(Arc::new(FilecoinInputs { retriever: Retriever::new(lotus, ledger, indexers, worker), wallet, sweep }))
    }

    /// Retrieves the DAG under `cid` into `sink`, paying from the wallet at most the purchase's
    /// `max_price`.
    pub(crate) async fn buy(
        &self,
        cid: &Cid,
        purchase: Purchase,
        sink: &dyn BlockSink,
    ) -> Result<Retrieval, RetrievalError> {
        let max_price = purchase.max_price.map(token_amount);
        let retrieval = self.retriever.retrieve(cid, &self.wallet, max_price.as_ref(), sink).await?;
        info!(
            %cid,
            provider = %retrieval.provider,
            paid = %format_fil(&retrieval.paid),
            blocks = retrieval.blocks,
            failed_providers = retrieval.failed.len(),
            "bought an input from Filecoin"
        );
        Ok(retrieval)
    }
}

/// Every [`RESERVATION_SWEEP`], closes reservations whose TTL passed (any worker may; each is
/// closed once).
async fn sweep_reservations(ledger: SpendingLedger) {
    let mut every = tokio::time::interval(RESERVATION_SWEEP);
    loop {
        every.tick().await;
        match ledger.expire(now_ms()).await {
            Ok(expired) if expired.released + expired.settled > 0 => {
                info!(released = expired.released, settled = expired.settled, "closed expired reservations")
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "sweeping expired reservations failed; trying again later"),
        }
    }
}
