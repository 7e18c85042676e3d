//! A local **storage-provider stand-in** for tests and demos — not Boost or Curio.
//!
//! One HTTP server on a loopback port that plays the three parts of a storage provider Shoal
//! talks to, over the DAGs in a block store it is given:
//!
//! - **IPNI lookup**, `GET /cid/{cid}`: IPNI's real find shape ([`crate::ipni::FindResponse`])
//!   for any CID it holds — itself as the one provider, with transport-ipfs-gateway-http
//!   metadata and its own `/ip4/127.0.0.1/tcp/<port>/http` multiaddr; 404 otherwise. (Real
//!   providers announce to an indexer such as cid.contact; here each stand-in is its own.)
//! - **Price quote**, `GET /quote/{cid}`: there is no standard HTTP price-quote endpoint, so
//!   this is the stand-in's own: [`Quote`] as JSON, one flat price per retrieval.
//! - **Paid retrieval**, `GET /ipfs/{cid}?format=car` (or `format=raw`, or by `Accept`): the
//!   trustless-gateway answer of [`shoal_content::serve`], the way Boost and Curio serve
//!   retrievals, but only for a payment-channel voucher in the [`VOUCHER_HEADER`] header (the
//!   stand-in's own convention, see [`encode_voucher`]) that pays at least the quote.
//!
//! The voucher is checked as a real recipient checks one: through the provider's own Lotus
//! node over JSON-RPC ([`LotusClient`]; the [`super::LotusStandIn`] in tests) —
//! `PaychVoucherCheckValid` (signature, channel, lane, nonce, funds), `PaychVoucherList` for
//! what the lane already paid, then `PaychVoucherAdd` with the quote as `minDelta`, which
//! stores it for settlement. A missing, invalid or short voucher is refused with 402 and a
//! JSON `{"error": …}` saying why; the content is served only after the voucher was added.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use rand::RngCore;
use serde_json::json;
use shoal_content::{parse_cid, Block, BlockStore};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::amount::{self, format_atto};
use crate::ipni::{self, AddrInfo, FindResponse, MultihashResult, ProviderResult};
use crate::retrieve::{decode_voucher, Quote, VOUCHER_HEADER};
use crate::types::SignedVoucher;
use crate::{LotusClient, LotusError};

/// How a provider stand-in is set up.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// What one retrieval costs, attoFIL.
    pub price: TokenAmount,
    /// The provider's wallet: vouchers must be on a channel paying it.
    pub payee: Address,
    /// The provider's own Lotus node (whose wallet holds `payee`), to check and store vouchers.
    pub lotus: LotusClient,
}

/// A voucher the stand-in accepted, and what it paid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedVoucher {
    /// The CID retrieved.
    pub root: Cid,
    /// The voucher as received.
    pub voucher: SignedVoucher,
    /// What it added over the lane's previous best, attoFIL (what the retrieval was paid).
    pub paid: TokenAmount,
}

struct Provider {
    store: Arc<dyn BlockStore>,
    config: ProviderConfig,
    peer_id: String,
    multiaddr: String,
    gateway: Router,
    accepted: Mutex<Vec<AcceptedVoucher>>,
    /// Serve corrupted bytes once paid (tests only; see `start_serving_wrong_bytes`).
    wrong_bytes: bool,
}

/// A running provider stand-in; stops when dropped.
#[derive(Debug)]
pub struct ProviderStandIn {
    addr: SocketAddr,
    provider: Arc<Provider>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("peer_id", &self.peer_id).field("config", &self.config).finish()
    }
}

impl ProviderStandIn {
    /// Starts a provider stand-in on a loopback port, serving the DAGs in `store`.
    pub async fn start(store: Arc<dyn BlockStore>, config: ProviderConfig) -> std::io::Result<Self> {
        Self::start_with(store, config, false).await
    }

    /// As [`ProviderStandIn::start`], but once paid it serves the CAR with its last byte
    /// flipped (a block whose bytes do not match its CID): a provider that cheats, for tests.
    /// Only with the `test-faults` feature, which only tests and the load harness enable.
    #[cfg(feature = "test-faults")]
    pub async fn start_serving_wrong_bytes(
        store: Arc<dyn BlockStore>,
        config: ProviderConfig,
    ) -> std::io::Result<Self> {
        Self::start_with(store, config, true).await
    }

    async fn start_with(
        store: Arc<dyn BlockStore>,
        config: ProviderConfig,
        wrong_bytes: bool,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let provider = Arc::new(Provider {
            gateway: shoal_content::serve::router(store.clone()),
            store,
            config,
            peer_id: ipni::ed25519_peer_id(&key),
            multiaddr: format!("/ip4/{}/tcp/{}/http", addr.ip(), addr.port()),
            accepted: Mutex::new(Vec::new()),
            wrong_bytes,
        });
        let app = Router::new()
            .route("/cid/{cid}", get(find_cid))
            .route("/quote/{cid}", get(quote))
            .route("/ipfs/{cid}", get(paid_retrieval))
            .with_state(provider.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "provider stand-in stopped");
            }
        });
        Ok(Self { addr, provider, task })
    }

    /// Its base URL, `http://127.0.0.1:<port>` (also its IPNI indexer URL).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The multiaddr it advertises, `/ip4/127.0.0.1/tcp/<port>/http`.
    pub fn multiaddr(&self) -> &str {
        &self.provider.multiaddr
    }

    /// Its (made-up) libp2p peer ID.
    pub fn peer_id(&self) -> &str {
        &self.provider.peer_id
    }

    /// What one retrieval costs.
    pub fn price(&self) -> &TokenAmount {
        &self.provider.config.price
    }

    /// Every voucher it accepted, oldest first.
    pub fn accepted(&self) -> Vec<AcceptedVoucher> {
        self.provider.accepted.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sum of what the accepted vouchers paid.
    pub fn paid_total(&self) -> TokenAmount {
        self.accepted().iter().map(|a| a.paid.clone()).sum()
    }
}

impl Drop for ProviderStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A refusal with a JSON body `{"error": …}` plus any other fields given.
fn refuse(status: StatusCode, error: String, extra: serde_json::Value) -> Response {
    let mut body = json!({ "error": error });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (status, Json(body)).into_response()
}

impl Provider {
    async fn holds(&self, cid: &Cid) -> bool {
        Block::inline(cid).is_some() || self.store.has(cid).await.unwrap_or(false)
    }

    /// The CID of a path segment, if it is one this stand-in holds.
    async fn held(&self, text: &str) -> Result<Cid, Response> {
        let cid = parse_cid(text).map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string(), json!({})))?;
        if !self.holds(&cid).await {
            return Err(refuse(StatusCode::NOT_FOUND, format!("{cid} is not held by this provider"), json!({})));
        }
        Ok(cid)
    }

    fn quote_for(&self, root: Cid) -> Quote {
        Quote { root, price: self.config.price.clone(), payee: self.config.payee, provider: self.peer_id.clone() }
    }

    /// Checks the voucher in `headers` and stores it with Lotus; what it paid, or the refusal.
    async fn take_payment(&self, root: Cid, headers: &HeaderMap) -> Result<AcceptedVoucher, Response> {
        let price = &self.config.price;
        let terms = json!({ "price": format_atto(price), "payee": self.config.payee.to_string() });
        let payment_required = |error: String| refuse(StatusCode::PAYMENT_REQUIRED, error, terms.clone());
        let Some(value) = headers.get(VOUCHER_HEADER) else {
            return Err(payment_required(format!(
                "payment required: send a payment-channel voucher for at least {} attoFIL to {} in the {VOUCHER_HEADER} header",
                format_atto(price),
                self.config.payee
            )));
        };
        let voucher = value
            .to_str()
            .map_err(|e| e.to_string())
            .and_then(|v| decode_voucher(v).map_err(|e| e.to_string()))
            .map_err(|e| payment_required(format!("unreadable voucher: {e}")))?;
        let channel = voucher.channel_addr;
        let lotus = &self.config.lotus;
        // Lotus's refusal of the voucher (code 1) is the payer's problem, 402; anything else
        // (the node unreachable) is this provider's, 503.
        let lotus_failure = |step: &str, e: LotusError| match e {
            LotusError::Rpc { code: 1, message, .. } => payment_required(format!("voucher refused: {message}")),
            other => refuse(StatusCode::SERVICE_UNAVAILABLE, format!("cannot {step}: {other}"), json!({})),
        };
        lotus.paych_voucher_check_valid(&channel, &voucher).await.map_err(|e| lotus_failure("check the voucher", e))?;
        let held =
            lotus.paych_voucher_list(&channel).await.map_err(|e| lotus_failure("list the channel's vouchers", e))?;
        let lane_paid = held
            .iter()
            .filter(|v| v.lane == voucher.lane)
            .max_by_key(|v| v.nonce)
            .map(|v| v.amount.clone())
            .unwrap_or_default();
        let adds = amount::checked_sub(&voucher.amount, &lane_paid).unwrap_or_default();
        if &adds < price {
            return Err(payment_required(format!(
                "voucher short: it adds {} attoFIL on lane {}, the price is {} attoFIL",
                format_atto(&adds),
                voucher.lane,
                format_atto(price)
            )));
        }
        // `minDelta` = the price: a concurrent voucher on the same lane cannot make this one
        // pay less than the quote between the list above and this add.
        let paid = lotus
            .paych_voucher_add(&channel, &voucher, &[], price)
            .await
            .map_err(|e| lotus_failure("store the voucher", e))?;
        let accepted = AcceptedVoucher { root, voucher, paid };
        self.accepted.lock().unwrap_or_else(|p| p.into_inner()).push(accepted.clone());
        Ok(accepted)
    }
}

/// `GET /cid/{cid}`: IPNI's find answer naming this provider, or 404.
async fn find_cid(State(provider): State<Arc<Provider>>, Path(text): Path<String>) -> Response {
    let cid = match provider.held(&text).await {
        Ok(cid) => cid,
        Err(refusal) => return refusal,
    };
    let answer = FindResponse {
        multihash_results: vec![MultihashResult {
            multihash: cid.hash().to_bytes(),
            provider_results: vec![ProviderResult {
                context_id: b"shoal-provider-standin".to_vec(),
                metadata: ipni::http_metadata(),
                provider: Some(AddrInfo { id: provider.peer_id.clone(), addrs: vec![provider.multiaddr.clone()] }),
            }],
        }],
    };
    Json(answer).into_response()
}

/// `GET /quote/{cid}`: the stand-in's own price quote.
async fn quote(State(provider): State<Arc<Provider>>, Path(text): Path<String>) -> Response {
    match provider.held(&text).await {
        Ok(cid) => Json(provider.quote_for(cid)).into_response(),
        Err(refusal) => refusal,
    }
}

/// `GET /ipfs/{cid}`: paid first, then served by shoal-content's trustless gateway.
async fn paid_retrieval(State(provider): State<Arc<Provider>>, Path(text): Path<String>, request: Request) -> Response {
    // Checked before payment: a voucher is never taken for something that cannot be served.
    let root = match provider.held(&text).await {
        Ok(cid) => cid,
        Err(refusal) => return refusal,
    };
    // axum routes HEAD here too; it has no body to pay for, so it never takes a voucher and
    // answers the terms as a GET without one would.
    let headers = if request.method() == http::Method::HEAD { &HeaderMap::new() } else { request.headers() };
    if let Err(refusal) = provider.take_payment(root, headers).await {
        return refusal;
    }
    // A fresh request: the outer route's path parameters (a request extension) would
    // confuse the gateway's own routing.
    let (parts, body) = request.into_parts();
    let mut inner = Request::new(body);
    *inner.method_mut() = parts.method;
    *inner.uri_mut() = parts.uri;
    *inner.headers_mut() = parts.headers;
    let response = match provider.gateway.clone().oneshot(inner).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if !provider.wrong_bytes || !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            let mut bytes = bytes.to_vec();
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xff;
            }
            let mut response = Response::from_parts(parts, Body::from(bytes));
            response.headers_mut().remove(header::CONTENT_LENGTH);
            response
        }
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), json!({})),
    }
}
