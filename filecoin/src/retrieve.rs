//! Paid retrieval: find who holds a DAG, take the cheapest acceptable quote, pay it with a
//! payment-channel voucher under the wallet's spending limit, and keep only verified blocks.
//!
//! [`Retriever::retrieve`] does, for a root CID:
//! 1. IPNI finds ([`crate::ipni`]) on every indexer given, keeping providers that serve the
//!    trustless gateway over HTTP; each is asked for a [`Quote`] (`GET /quote/{cid}`).
//! 2. Quotes above `max_price` are dropped; the rest are tried cheapest first.
//! 3. For one provider: [`SpendingLedger::reserve`] the price (atomic against the wallet's
//!    limit, however many retrievals run at once), get a funded channel to the provider's
//!    payee and a voucher for the price on a fresh lane through Lotus (`PaychGet`,
//!    `PaychGetWaitReady`, `PaychAllocateLane`, `PaychVoucherCreate`),
//!    [`SpendingLedger::record_voucher`], and only then send it with
//!    `GET /ipfs/{cid}?format=car` ([`VOUCHER_HEADER`]).
//! 4. The CAR is read with shoal-content's verified import: every block is hashed against its
//!    CID before it reaches the store, and every block reachable from the root must arrive.
//! 5. [`SpendingLedger::settle`] the price.
//!
//! **Why a sent voucher is always settled, never released.** A voucher is a signed promise the
//! recipient can redeem on chain whatever it does afterwards: once it has left this process,
//! the provider may hold it even if it answers 402, serves wrong bytes, or the connection
//! drops before any answer. So from `record_voucher` on, the reservation is settled for the
//! voucher's amount (the ledger refuses to release it anyway), and if this process dies
//! between recording and settling, the ledger's sweep settles it for the recorded amount.
//! Before `record_voucher` nothing can have been paid — the voucher never left — so a failure
//! there releases the reservation. Overcounting an unsent voucher as spent keeps the total
//! under the limit; undercounting a sent one would not.
//!
//! **A provider serving wrong bytes** is paid exactly its quote (the one voucher it was
//! given), skipped, and the next cheapest is tried with a new reservation; blocks it sent
//! that did verify may remain in the store (they are correct blocks), nothing unverified
//! does. It is then **shunned**: for [`DEFAULT_SHUN_PERIOD`] this retriever (shared by a
//! worker's jobs) skips it unpaid, so a provider that lies is paid once, not once per input.
//!
//! The quote endpoint and the voucher header are this crate's own (there is no standard
//! HTTP price-quote or voucher exchange); its provider stand-in
//! ([`crate::standin::ProviderStandIn`]) serves them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use cid::Cid;
use futures::TryStreamExt;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use shoal_content::BlockSink;
use shoal_jobs::{SpendingError, SpendingLedger};
use tokio::io::AsyncRead;

use crate::amount::format_atto;
use crate::ipni::{HttpProvider, IpniClient, IpniError};
use crate::types::{PaychGetOpts, SignedVoucher};
use crate::{LotusClient, LotusError};

/// The request header that carries a payment-channel voucher: the base64url (unpadded) of
/// the voucher's Lotus JSON ([`encode_voucher`]).
pub const VOUCHER_HEADER: &str = "x-filecoin-voucher";

/// How long a reservation is held before the ledger's sweep closes it, by default.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);

/// How long a provider that took a voucher and then failed is skipped, by default: long enough
/// that a liar is not paid again for every input, short enough that one network failure does
/// not bar an honest provider for long.
pub const DEFAULT_SHUN_PERIOD: Duration = Duration::from_secs(10 * 60);

/// How long one quote may take.
const QUOTE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one CAR retrieval may take, body included, by default.
pub const DEFAULT_RETRIEVAL_TIMEOUT: Duration = Duration::from_secs(600);

/// Most characters of a provider's non-JSON error body kept in an error.
const ERROR_BODY_LIMIT: usize = 4096;

/// A provider's price for retrieving a DAG (`GET /quote/{cid}`, this crate's own shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The DAG's root.
    #[serde(with = "crate::types::cid_json")]
    pub root: Cid,
    /// The price of one retrieval of it, attoFIL.
    #[serde(rename = "price_atto", with = "crate::amount::atto_string")]
    pub price: TokenAmount,
    /// The address vouchers must pay (the channel's recipient).
    #[serde(with = "crate::types::address_string")]
    pub payee: Address,
    /// The provider's peer ID.
    pub provider: String,
}

/// A voucher in the form [`VOUCHER_HEADER`] carries.
pub fn encode_voucher(voucher: &SignedVoucher) -> String {
    let json = serde_json::to_vec(voucher).expect("a voucher serialises to JSON");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Why a voucher header could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid voucher encoding: {0}")]
pub struct VoucherEncodingError(String);

/// Reads a voucher from the form [`VOUCHER_HEADER`] carries.
pub fn decode_voucher(text: &str) -> Result<SignedVoucher, VoucherEncodingError> {
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|e| VoucherEncodingError(format!("not base64url: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| VoucherEncodingError(format!("not a voucher: {e}")))
}

/// A provider's quote and where to retrieve from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The provider as the indexer named it.
    pub provider: HttpProvider,
    /// The base URL used.
    pub url: url::Url,
    /// Its quote.
    pub quote: Quote,
}

impl Offer {
    /// This offer given up on before paying, for `reason`.
    fn skipped(self, reason: String) -> FailedAttempt {
        FailedAttempt { provider: self.provider.peer_id, url: self.url, paid: TokenAmount::default(), reason }
    }
}

/// A provider tried and given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    /// Its peer ID.
    pub provider: String,
    /// The base URL tried.
    pub url: url::Url,
    /// What it was paid (zero if it failed before payment).
    pub paid: TokenAmount,
    /// What went wrong.
    pub reason: String,
}

/// A finished paid retrieval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrieval {
    /// The root retrieved.
    pub root: Cid,
    /// The provider that served it.
    pub provider: String,
    /// Its base URL.
    pub url: url::Url,
    /// The voucher that paid for it.
    pub voucher: SignedVoucher,
    /// The spending-ledger reservation it was paid from (its voucher recorded as
    /// `<channel>/<lane>/<nonce>`).
    pub reservation: String,
    /// What this retrieval cost in all: the provider that served it plus any that were paid
    /// and failed.
    pub paid: TokenAmount,
    /// Blocks stored, all verified.
    pub blocks: u64,
    /// Bytes of the CAR received, header included.
    pub bytes: u64,
    /// Providers tried before it.
    pub failed: Vec<FailedAttempt>,
}

/// Why a paid retrieval failed.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// No indexer knows a provider serving the CID over HTTP.
    #[error("no provider advertises {root} over the trustless HTTP gateway (indexers asked: {indexers})")]
    NoProviders {
        /// The root asked for.
        root: Cid,
        /// The indexers asked.
        indexers: String,
    },
    /// Every indexer failed.
    #[error("cannot find providers of {root}: {source}")]
    Lookup {
        /// The root asked for.
        root: Cid,
        /// The last indexer's failure.
        #[source]
        source: IpniError,
    },
    /// Every quote is above the job's `max_price`: the retrieval cannot be paid for.
    #[error(
        "every quote for {root} is above max_price {} attoFIL; the cheapest is {} attoFIL from {provider}",
        format_atto(max_price),
        format_atto(cheapest)
    )]
    AboveMaxPrice {
        /// The root asked for.
        root: Cid,
        /// The most the job may pay.
        max_price: TokenAmount,
        /// The cheapest quote.
        cheapest: TokenAmount,
        /// Who quoted it.
        provider: String,
    },
    /// The wallet's spending limit leaves too little for the price.
    #[error(
        "{root} costs {asked} attoFIL, wallet {wallet} has limit {limit}, spent {spent}, reserved {reserved} attoFIL"
    )]
    BudgetExhausted {
        /// The root asked for.
        root: Cid,
        /// The paying wallet.
        wallet: Address,
        /// The price that did not fit.
        asked: u128,
        /// The wallet's limit.
        limit: u128,
        /// Spent so far.
        spent: u128,
        /// Held by other retrievals.
        reserved: u128,
    },
    /// Lotus failed while preparing the payment (nothing was sent).
    #[error("paying for {root}: Lotus failed at {step}: {source}")]
    Lotus {
        /// The root asked for.
        root: Cid,
        /// What was being done (`PaychGet`, …).
        step: &'static str,
        /// Lotus's error.
        #[source]
        source: LotusError,
    },
    /// The channel could not cover the voucher.
    #[error(
        "paying for {root}: channel {channel} lacks {} attoFIL for a voucher of {} attoFIL",
        format_atto(shortfall),
        format_atto(amount)
    )]
    ChannelShortfall {
        /// The root asked for.
        root: Cid,
        /// The channel.
        channel: Address,
        /// The voucher's amount.
        amount: TokenAmount,
        /// What is missing.
        shortfall: TokenAmount,
    },
    /// The spending ledger failed (Redis).
    #[error("paying for {root}: the spending ledger failed: {source}")]
    Ledger {
        /// The root asked for.
        root: Cid,
        /// The ledger's error.
        #[source]
        source: SpendingError,
    },
    /// A price that is not a valid amount.
    #[error("quote for {root} from {provider}: {source}")]
    InvalidPrice {
        /// The root asked for.
        root: Cid,
        /// Who quoted it.
        provider: String,
        /// Why it is invalid.
        #[source]
        source: SpendingError,
    },
    /// Every provider within the price failed (no quote, refused, wrong bytes, incomplete).
    #[error("every provider of {root} failed: {}", summary(attempts))]
    AllProvidersFailed {
        /// The root asked for.
        root: Cid,
        /// What happened with each.
        attempts: Vec<FailedAttempt>,
    },
}

fn summary(attempts: &[FailedAttempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{} ({}, paid {} attoFIL): {}", a.provider, a.url, format_atto(&a.paid), a.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl RetrievalError {
    /// Whether the retrieval could not be paid for (the job fails `budget_exhausted`).
    pub fn is_budget_exhausted(&self) -> bool {
        matches!(self, RetrievalError::AboveMaxPrice { .. } | RetrievalError::BudgetExhausted { .. })
    }
}

/// How one provider's attempt ended, when it did not succeed.
enum AttemptError {
    /// Give up on the whole retrieval.
    Fatal(RetrievalError),
    /// Skip this provider, having paid it `paid`.
    Provider { paid: TokenAmount, reason: String },
}

/// Retrieves DAGs from storage providers and pays them, within each wallet's spending limit.
#[derive(Clone)]
pub struct Retriever {
    lotus: LotusClient,
    ledger: SpendingLedger,
    indexers: Vec<IpniClient>,
    http: reqwest::Client,
    holder: String,
    reservation_ttl: Duration,
    retrieval_timeout: Duration,
    shun_period: Duration,
    /// Providers (peer ids) that took a voucher and failed, and when; shared by every clone.
    shunned: Arc<Mutex<HashMap<String, Instant>>>,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("lotus", &self.lotus.url())
            .field("indexers", &self.indexers.iter().map(|i| i.url().as_str()).collect::<Vec<_>>())
            .field("holder", &self.holder)
            .finish()
    }
}

impl Retriever {
    /// A retriever paying through `lotus` (a node whose wallet holds the paying wallets),
    /// keeping its books in `ledger`, finding providers on `indexers`; `holder` names it in
    /// reservations (a worker id).
    pub fn new(
        lotus: LotusClient,
        ledger: SpendingLedger,
        indexers: Vec<IpniClient>,
        holder: impl Into<String>,
    ) -> Self {
        Self {
            lotus,
            ledger,
            indexers,
            http: reqwest::Client::new(),
            holder: holder.into(),
            reservation_ttl: DEFAULT_RESERVATION_TTL,
            retrieval_timeout: DEFAULT_RETRIEVAL_TIMEOUT,
            shun_period: DEFAULT_SHUN_PERIOD,
            shunned: Arc::default(),
        }
    }

    /// How long a reservation is held before the ledger's sweep may close it; it must outlast
    /// a retrieval ([`DEFAULT_RESERVATION_TTL`]).
    pub fn with_reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// How long one CAR retrieval may take, body included ([`DEFAULT_RETRIEVAL_TIMEOUT`]).
    pub fn with_retrieval_timeout(mut self, timeout: Duration) -> Self {
        self.retrieval_timeout = timeout;
        self
    }

    /// How long a provider that took a voucher and then failed is skipped
    /// ([`DEFAULT_SHUN_PERIOD`]; zero never skips one).
    pub fn with_shun_period(mut self, period: Duration) -> Self {
        self.shun_period = period;
        self
    }

    /// When `provider` took a voucher and failed, if that was within the shun period.
    fn shunned_since(&self, provider: &str) -> Option<Instant> {
        let mut shunned = self.shunned.lock().expect("the shunned map is never left poisoned");
        shunned.retain(|_, since| since.elapsed() < self.shun_period);
        shunned.get(provider).copied()
    }

    fn shun(&self, provider: &str) {
        if !self.shun_period.is_zero() {
            self.shunned
                .lock()
                .expect("the shunned map is never left poisoned")
                .insert(provider.to_string(), Instant::now());
        }
    }

    /// The providers of `root` over HTTP and their quotes, cheapest first, and the providers
    /// that gave no usable quote.
    pub async fn offers(&self, root: &Cid) -> Result<(Vec<Offer>, Vec<FailedAttempt>), RetrievalError> {
        let mut providers: Vec<HttpProvider> = Vec::new();
        let mut last_error = None;
        let mut answered = false;
        for indexer in &self.indexers {
            match indexer.find_cid(root).await {
                Ok(found) => {
                    answered = true;
                    for p in found.http_providers() {
                        if !providers.iter().any(|known| known.peer_id == p.peer_id) {
                            providers.push(p);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%root, indexer = %indexer.url(), error = %e, "IPNI find failed");
                    last_error = Some(e);
                }
            }
        }
        if let (false, Some(source)) = (answered, last_error) {
            return Err(RetrievalError::Lookup { root: *root, source });
        }
        let quotes = futures::future::join_all(providers.into_iter().map(|p| self.quote(root, p))).await;
        let (mut offers, mut failed) = (Vec::new(), Vec::new());
        for quote in quotes {
            match quote {
                Ok(offer) => offers.push(offer),
                Err(attempt) => failed.push(attempt),
            }
        }
        offers.sort_by(|a, b| a.quote.price.cmp(&b.quote.price));
        Ok((offers, failed))
    }

    async fn quote(&self, root: &Cid, provider: HttpProvider) -> Result<Offer, FailedAttempt> {
        let url = provider.urls[0].clone();
        let failed = |reason: String| FailedAttempt {
            provider: provider.peer_id.clone(),
            url: url.clone(),
            paid: TokenAmount::default(),
            reason,
        };
        let endpoint = url.join(&format!("quote/{root}")).map_err(|e| failed(e.to_string()))?;
        let response = self
            .http
            .get(endpoint)
            .timeout(QUOTE_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(format!("no quote: {e}")))?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(failed(format!("no quote: HTTP {status}: {}", error_body(response).await)));
        }
        let quote: Quote = response.json().await.map_err(|e| failed(format!("unreadable quote: {e}")))?;
        if quote.root != *root {
            return Err(failed(format!("quoted {} instead", quote.root)));
        }
        Ok(Offer { provider, url, quote })
    }

    /// Retrieves the DAG under `root` into `sink`, paying from `wallet` at most `max_price` in
    /// all (providers paid that then failed included) and never past the wallet's limit in
    /// the ledger. Every block that
    /// reaches `sink` was verified against its CID, and on success every block reachable from
    /// `root` did.
    pub async fn retrieve(
        &self,
        root: &Cid,
        wallet: &Address,
        max_price: Option<&TokenAmount>,
        sink: &dyn BlockSink,
    ) -> Result<Retrieval, RetrievalError> {
        let (offers, mut failed) = self.offers(root).await?;
        let (affordable, too_dear): (Vec<Offer>, Vec<Offer>) =
            offers.into_iter().partition(|o| max_price.is_none_or(|max| &o.quote.price <= max));
        if affordable.is_empty() {
            if let (Some(cheapest), Some(max_price)) = (too_dear.first(), max_price) {
                return Err(RetrievalError::AboveMaxPrice {
                    root: *root,
                    max_price: max_price.clone(),
                    cheapest: cheapest.quote.price.clone(),
                    provider: cheapest.provider.peer_id.clone(),
                });
            }
            if failed.is_empty() {
                let indexers = self.indexers.iter().map(|i| i.url().as_str()).collect::<Vec<_>>().join(", ");
                return Err(RetrievalError::NoProviders { root: *root, indexers });
            }
            return Err(RetrievalError::AllProvidersFailed { root: *root, attempts: failed });
        }
        let mut paid = TokenAmount::default();
        for offer in affordable {
            if let Some(since) = self.shunned_since(&offer.provider.peer_id) {
                let reason = format!(
                    "skipped unpaid: it took a voucher and failed {} s ago (shunned for {} s)",
                    since.elapsed().as_secs(),
                    self.shun_period.as_secs()
                );
                failed.push(offer.skipped(reason));
                continue;
            }
            // `max_price` bounds what the input costs in all, providers that failed included.
            if let Some(max) = max_price.filter(|max| &(&paid + &offer.quote.price) > *max) {
                let reason = format!(
                    "its {} attoFIL after {} attoFIL paid to failed providers exceeds max_price {} attoFIL",
                    format_atto(&offer.quote.price),
                    format_atto(&paid),
                    format_atto(max)
                );
                failed.push(offer.skipped(reason));
                continue;
            }
            match self.attempt(root, wallet, &offer, sink).await {
                Ok(mut retrieval) => {
                    retrieval.paid += &paid;
                    retrieval.failed = failed;
                    return Ok(retrieval);
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Provider { paid: this, reason }) => {
                    tracing::warn!(%root, provider = %offer.provider.peer_id, paid = %format_atto(&this), %reason, "provider failed; trying the next");
                    if this.is_positive() {
                        self.shun(&offer.provider.peer_id);
                    }
                    paid += &this;
                    failed.push(FailedAttempt { provider: offer.provider.peer_id, url: offer.url, paid: this, reason });
                }
            }
        }
        Err(RetrievalError::AllProvidersFailed { root: *root, attempts: failed })
    }

    /// One provider: reserve, make the voucher, record it, send it, import, settle.
    async fn attempt(
        &self,
        root: &Cid,
        wallet: &Address,
        offer: &Offer,
        sink: &dyn BlockSink,
    ) -> Result<Retrieval, AttemptError> {
        let fatal = AttemptError::Fatal;
        let price = &offer.quote.price;
        let asked = shoal_jobs::parse_attofil(&format_atto(price)).map_err(|source| {
            fatal(RetrievalError::InvalidPrice { root: *root, provider: offer.provider.peer_id.clone(), source })
        })?;
        let wallet_key = wallet.to_string();
        let id = format!("{root}.{:016x}", rand::rng().next_u64());
        match self.ledger.reserve(&wallet_key, &id, asked, &self.holder, self.reservation_ttl).await {
            Ok(_) => {}
            Err(SpendingError::BudgetExhausted { limit, spent, reserved, asked }) => {
                return Err(fatal(RetrievalError::BudgetExhausted {
                    root: *root,
                    wallet: *wallet,
                    asked,
                    limit,
                    spent,
                    reserved,
                }))
            }
            Err(source) => return Err(fatal(RetrievalError::Ledger { root: *root, source })),
        }
        // Until the voucher is recorded nothing can have been paid: any failure releases.
        let voucher = match self.make_voucher(root, wallet, &offer.quote).await {
            Ok(voucher) => voucher,
            Err(e) => {
                self.release(wallet, &id).await;
                return Err(fatal(e));
            }
        };
        let voucher_id = format!("{}/{}/{}", voucher.channel_addr, voucher.lane, voucher.nonce);
        if let Err(source) = self.ledger.record_voucher(&wallet_key, &id, &voucher_id, asked).await {
            self.release(wallet, &id).await;
            return Err(fatal(RetrievalError::Ledger { root: *root, source }));
        }
        // From here the voucher may be in the provider's hands: whatever happens, it is spent.
        let outcome = self.fetch_paid(root, offer, &voucher, sink).await;
        if let Err(e) = self.ledger.settle(&wallet_key, &id, asked, &voucher_id).await {
            // The voucher is recorded, so the ledger's sweep settles it when its TTL passes.
            tracing::warn!(%root, reservation = %id, error = %e, "cannot settle now; the sweep will settle the recorded voucher");
        }
        match outcome {
            Ok((blocks, bytes)) => Ok(Retrieval {
                root: *root,
                provider: offer.provider.peer_id.clone(),
                url: offer.url.clone(),
                voucher,
                reservation: id,
                paid: price.clone(),
                blocks,
                bytes,
                failed: Vec::new(),
            }),
            Err(reason) => Err(AttemptError::Provider { paid: price.clone(), reason }),
        }
    }

    async fn release(&self, wallet: &Address, id: &str) {
        if let Err(e) = self.ledger.release(&wallet.to_string(), id).await {
            // Unpaid and unrecorded: the sweep releases it when its TTL passes.
            tracing::warn!(reservation = %id, error = %e, "cannot release now; the sweep will");
        }
    }

    /// A voucher for the quote's price on a fresh lane of a channel to its payee, funded as
    /// needed.
    async fn make_voucher(&self, root: &Cid, wallet: &Address, quote: &Quote) -> Result<SignedVoucher, RetrievalError> {
        let lotus_error = |step, source| RetrievalError::Lotus { root: *root, step, source };
        let info = self
            .lotus
            .paych_get(wallet, &quote.payee, &quote.price, PaychGetOpts::default())
            .await
            .map_err(|e| lotus_error("PaychGet", e))?;
        let channel = match (info.channel, info.wait_sentinel) {
            (Some(channel), None) => channel,
            (_, Some(sentinel)) => {
                self.lotus.paych_get_wait_ready(&sentinel).await.map_err(|e| lotus_error("PaychGetWaitReady", e))?
            }
            (None, None) => {
                return Err(lotus_error(
                    "PaychGet",
                    LotusError::Malformed {
                        method: "Filecoin.PaychGet".into(),
                        detail: "neither a channel nor a message to wait for".into(),
                    },
                ))
            }
        };
        let lane = self.lotus.paych_allocate_lane(&channel).await.map_err(|e| lotus_error("PaychAllocateLane", e))?;
        let created = self
            .lotus
            .paych_voucher_create(&channel, &quote.price, lane)
            .await
            .map_err(|e| lotus_error("PaychVoucherCreate", e))?;
        created.voucher.ok_or_else(|| RetrievalError::ChannelShortfall {
            root: *root,
            channel,
            amount: quote.price.clone(),
            shortfall: created.shortfall,
        })
    }

    /// Sends the voucher with the CAR request and imports the answer, verified; the blocks
    /// and bytes stored, or why the provider failed.
    async fn fetch_paid(
        &self,
        root: &Cid,
        offer: &Offer,
        voucher: &SignedVoucher,
        sink: &dyn BlockSink,
    ) -> Result<(u64, u64), String> {
        let url = offer.url.join(&format!("ipfs/{root}?format=car&dag-scope=all")).map_err(|e| e.to_string())?;
        let response = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/vnd.ipld.car; version=1; order=dfs; dups=n")
            .header(VOUCHER_HEADER, encode_voucher(voucher))
            .timeout(self.retrieval_timeout)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status() != reqwest::StatusCode::OK {
            let status = response.status();
            return Err(format!("HTTP {status}: {}", error_body(response).await));
        }
        let body = response.bytes_stream().map_err(std::io::Error::other);
        let reader: Pin<Box<dyn AsyncRead + Send>> = Box::pin(tokio_util::io::StreamReader::new(body));
        // Verifies each block against its CID and that every block reachable from the CAR's
        // roots arrived; the roots must then include the one asked for.
        let import = shoal_content::car::import_car(reader, sink, url.as_str()).await.map_err(|e| e.to_string())?;
        if !import.roots.contains(root) {
            return Err(format!("sent a CAR for {:?}, not {root}", import.roots));
        }
        Ok((import.stats.blocks, import.stats.bytes))
    }
}

/// A provider's error answer for a message: its JSON `error`, or the start of its body.
async fn error_body(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(ERROR_BODY_LIMIT).collect())
}
