//! The in-process Filecoin market the workers buy from: a simulated chain, the payer's Lotus
//! stand-in (a wallet with ample FIL), and storage-provider stand-ins at different prices —
//! the cheapest one cheating (it serves wrong bytes once paid) — all holding the same
//! generated datasets, which no free source has.

use std::sync::Arc;

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use serde::Serialize;
use sha2::{Digest, Sha256};
use shoal_content::unixfs::{import_reader, ImportOptions};
use shoal_content::{BlockStore, MemoryBlockStore};
use shoal_filecoin::standin::{LotusStandIn, ProviderConfig, ProviderStandIn, StandInChain};

use crate::error::{LoadtestError, Result};

/// One milliFIL in attoFIL.
pub const MILLI_FIL: u128 = 1_000_000_000_000_000;

/// FIL the paying wallet starts with: far more than any run spends, so only the ledger's
/// limit constrains it.
const PAYER_FIL: u64 = 1_000;

/// How a provider of the market is set up.
#[derive(Debug, Clone, Serialize)]
pub struct Seller {
    /// Its name in the report.
    pub name: String,
    /// Its price per retrieval, attoFIL.
    #[serde(serialize_with = "crate::filecoin::report::atto")]
    pub price: u128,
    /// Whether it serves wrong bytes once paid.
    pub lies: bool,
}

/// The sellers: a liar undercutting two honest providers, so every cold retrieval pays the
/// liar first, rejects its bytes and buys from the cheaper honest one.
pub fn sellers() -> Vec<Seller> {
    vec![
        Seller { name: "liar".into(), price: MILLI_FIL, lies: true },
        Seller { name: "honest-cheap".into(), price: 2 * MILLI_FIL, lies: false },
        Seller { name: "honest-dear".into(), price: 3 * MILLI_FIL, lies: false },
    ]
}

/// A dataset the providers hold.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Its UnixFS root.
    pub cid: Cid,
    /// SHA-256 of its bytes, hex: what echo-hash must report.
    pub sha256: String,
}

/// A running market; its servers stop when it is dropped.
pub struct Market {
    payer: LotusStandIn,
    /// The paying wallet.
    pub wallet: Address,
    /// The sellers, in [`sellers`]' order, beside their running stand-ins.
    pub sellers: Vec<Seller>,
    providers: Vec<ProviderStandIn>,
    /// Each provider's own Lotus node, kept running to check and store vouchers.
    _provider_nodes: Vec<LotusStandIn>,
    /// The datasets, by index.
    pub datasets: Vec<Dataset>,
}

impl Market {
    /// Starts the chain, the payer's node and the providers, holding `count` datasets of
    /// `bytes` bytes each.
    pub async fn open(count: usize, bytes: usize) -> Result<Market> {
        let failed = |what: &str, e: std::io::Error| LoadtestError::io(format!("starting the {what} stand-in"), e);
        let chain = StandInChain::new();
        let wallet = chain.new_account(TokenAmount::from_whole(PAYER_FIL));
        let payer = chain.start_node(vec![wallet], "payer-token").await.map_err(|e| failed("payer's Lotus", e))?;
        // One store for every provider: each holds every dataset.
        let store = Arc::new(MemoryBlockStore::new());
        let mut datasets = Vec::with_capacity(count);
        for index in 0..count {
            let data = dataset_bytes(index, bytes);
            let cid = import_reader(&data[..], &ImportOptions::default(), store.as_ref())
                .await
                .map_err(|e| LoadtestError::content(format!("importing dataset {index}"), e))?
                .root;
            datasets.push(Dataset { cid, sha256: hex::encode(Sha256::digest(&data)) });
        }
        let sellers = sellers();
        let (mut providers, mut nodes) = (Vec::new(), Vec::new());
        for seller in &sellers {
            let payee = chain.new_account(TokenAmount::from_atto(0));
            let node = chain
                .start_node(vec![payee], &format!("{}-token", seller.name))
                .await
                .map_err(|e| failed("provider's Lotus", e))?;
            let config = ProviderConfig { price: TokenAmount::from_atto(seller.price), payee, lotus: node.client() };
            let shared = store.clone() as Arc<dyn BlockStore>;
            let provider = if seller.lies {
                ProviderStandIn::start_serving_wrong_bytes(shared, config).await
            } else {
                ProviderStandIn::start(shared, config).await
            }
            .map_err(|e| failed("provider", e))?;
            providers.push(provider);
            nodes.push(node);
        }
        Ok(Market { payer, wallet, sellers, providers, _provider_nodes: nodes, datasets })
    }

    /// The `shoal worker` flags that make it buy here.
    pub fn worker_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--lotus-url".to_string(),
            self.payer.url(),
            "--lotus-token".to_string(),
            self.payer.token().to_string(),
            "--wallet".to_string(),
            self.wallet.to_string(),
        ];
        for provider in &self.providers {
            flags.extend(["--ipni".to_string(), provider.url()]);
        }
        flags
    }

    /// How many vouchers each provider accepted so far, in [`Market::sellers`]' order: a mark
    /// to count from with [`Market::accepted_since`].
    pub fn marks(&self) -> Vec<usize> {
        self.providers.iter().map(|p| p.accepted().len()).collect()
    }

    /// Vouchers accepted in all so far.
    pub fn paid_count(&self) -> usize {
        self.marks().iter().sum()
    }

    /// Every voucher accepted since `marks`, provider by provider.
    pub fn accepted_since(&self, marks: &[usize]) -> Vec<Paid> {
        let mut all = Vec::new();
        for ((seller, provider), &mark) in self.sellers.iter().zip(&self.providers).zip(marks) {
            for voucher in provider.accepted().into_iter().skip(mark) {
                // A voucher's delta is within a channel's funds, far inside u128.
                let paid = u128::try_from(voucher.paid.atto()).unwrap_or(u128::MAX);
                all.push(Paid { seller: seller.name.clone(), root: voucher.root, paid });
            }
        }
        all
    }
}

/// One voucher a provider accepted.
#[derive(Debug, Clone)]
pub struct Paid {
    /// The seller's name.
    pub seller: String,
    /// The dataset it was for.
    pub root: Cid,
    /// What it paid, attoFIL.
    pub paid: u128,
}

/// Dataset `index`'s bytes: a SplitMix64 stream seeded by the index, so every dataset differs
/// and a run can be repeated byte for byte.
fn dataset_bytes(index: usize, len: usize) -> Vec<u8> {
    let mut state = 0x5eed_0000_0000_0000u64 ^ index as u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_differ_and_repeat() {
        assert_eq!(dataset_bytes(3, 1000), dataset_bytes(3, 1000));
        assert_ne!(dataset_bytes(3, 1000), dataset_bytes(4, 1000));
        assert_eq!(dataset_bytes(0, 13).len(), 13);
    }
}
