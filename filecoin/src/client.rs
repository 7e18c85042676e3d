//! [`LotusClient`]: Lotus's full-node JSON-RPC v1 over HTTP (jsonrpsee), bearer-token auth.

use std::time::Duration;

use cid::Cid;
use fvm_shared::address::Address;
use fvm_shared::econ::TokenAmount;
use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use serde::de::DeserializeOwned;

use crate::amount;
use crate::error::LotusError;
use crate::types::{
    ChannelAvailableFunds, ChannelInfo, MarketDeal, Nothing, PaychGetOpts, PaychStatus, SignedVoucher, TipSet, Version,
    VoucherCreateResult,
};

/// How long a call may take by default before [`LotusError::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one Lotus node's full-node API v1 (`http://host:1234/rpc/v1`).
///
/// Every method is the Lotus method of the same name (`wallet_balance` calls
/// `Filecoin.WalletBalance`) with Lotus's parameters in Lotus's order. Addresses go out as
/// strings, amounts as decimal attoFIL strings, checked first (never negative, never above the
/// total supply). Point it at a real Lotus by its URL and an API token
/// (`lotus auth create-token --perm sign`), or at the [`crate::standin`].
#[derive(Debug, Clone)]
pub struct LotusClient {
    http: HttpClient<jsonrpsee::http_client::RpcLogger<jsonrpsee::http_client::RpcService<LotusHttp>>>,
    url: String,
}

/// The HTTP stack under the client: jsonrpsee's, with [`lotus_error_status`] on answers.
type LotusHttp = tower::util::MapResponse<jsonrpsee::http_client::HttpBackend, LotusFix>;

type LotusFix = fn(http::Response<hyper::body::Incoming>) -> http::Response<hyper::body::Incoming>;

/// Lotus (go-jsonrpc) answers a request it cannot dispatch — unknown method, wrong parameter
/// count, unparsable parameters — with HTTP 500 and a JSON-RPC error body; jsonrpsee would
/// drop that body and report only the status. A JSON 500 is passed on as 200 so the JSON-RPC
/// error (and its message) reaches the caller; anything else keeps its status.
fn lotus_error_status(mut response: http::Response<hyper::body::Incoming>) -> http::Response<hyper::body::Incoming> {
    let json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json && response.status() == http::StatusCode::INTERNAL_SERVER_ERROR {
        *response.status_mut() = http::StatusCode::OK;
    }
    response
}

/// Builds a JSON value list for a call; each value serialised with the wire helpers.
macro_rules! params {
    ($($value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut params = ArrayParams::new();
        $( params.insert($value).expect("Lotus parameters serialise to JSON"); )*
        params
    }};
}

/// An address as Lotus reads it: its string form.
fn addr(a: &Address) -> String {
    a.to_string()
}

/// A CID as Lotus reads it: `{"/": …}`.
fn cid_param(c: &Cid) -> serde_json::Value {
    serde_json::json!({ "/": c.to_string() })
}

impl LotusClient {
    /// A client of the node at `url` (its `/rpc/v1` endpoint), sending `token` as
    /// `Authorization: Bearer <token>` when given; calls time out after [`DEFAULT_TIMEOUT`].
    pub fn new(url: &str, token: Option<&str>) -> Result<Self, LotusError> {
        Self::with_timeout(url, token, DEFAULT_TIMEOUT)
    }

    /// As [`LotusClient::new`], with another timeout.
    pub fn with_timeout(url: &str, token: Option<&str>, timeout: Duration) -> Result<Self, LotusError> {
        let config_error = |detail: String| LotusError::Config { url: url.to_owned(), detail };
        let parsed = url::Url::parse(url).map_err(|e| config_error(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(config_error("only http:// and https:// Lotus endpoints are supported".into()));
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| config_error("the token holds characters not allowed in a header".into()))?;
            headers.insert(http::header::AUTHORIZATION, value);
        }
        let http = HttpClientBuilder::default()
            .set_http_middleware(tower::ServiceBuilder::new().map_response(lotus_error_status as LotusFix))
            .set_headers(headers)
            .request_timeout(timeout)
            .build(url)
            .map_err(|e| config_error(e.to_string()))?;
        Ok(Self { http, url: url.to_owned() })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` (its full name, `Filecoin.X`) and maps every failure to a [`LotusError`].
    pub async fn call<R: DeserializeOwned>(&self, method: &str, params: ArrayParams) -> Result<R, LotusError> {
        let answer: serde_json::Value =
            self.http.request(method, params).await.map_err(|e| self.map_error(method, e))?;
        serde_json::from_value(answer)
            .map_err(|e| LotusError::Malformed { method: method.to_owned(), detail: e.to_string() })
    }

    fn map_error(&self, method: &str, error: ClientError) -> LotusError {
        let method = method.to_owned();
        match error {
            ClientError::Call(e) => {
                let message = e.message().to_owned();
                if message.starts_with("missing permission to invoke") {
                    LotusError::Unauthorized { method, detail: message }
                } else {
                    LotusError::Rpc { method, code: e.code(), message }
                }
            }
            ClientError::Transport(e) => match e.downcast_ref::<jsonrpsee::http_client::transport::Error>() {
                Some(jsonrpsee::http_client::transport::Error::Rejected { status_code: 401 }) => {
                    LotusError::Unauthorized {
                        method,
                        detail: "the node answered HTTP 401 (token missing or invalid)".into(),
                    }
                }
                Some(jsonrpsee::http_client::transport::Error::Rejected { status_code }) => LotusError::Unreachable {
                    method,
                    url: self.url.clone(),
                    detail: format!("the node answered HTTP {status_code}"),
                },
                _ => LotusError::Unreachable { method, url: self.url.clone(), detail: e.to_string() },
            },
            ClientError::RequestTimeout => LotusError::Timeout { method, url: self.url.clone() },
            ClientError::ParseError(e) => LotusError::Malformed { method, detail: e.to_string() },
            other => LotusError::Malformed { method, detail: other.to_string() },
        }
    }

    fn checked(method: &str, value: &TokenAmount) -> Result<String, LotusError> {
        amount::check(value).map_err(|source| LotusError::Amount { method: method.to_owned(), source })?;
        Ok(amount::format_atto(value))
    }

    /// `Filecoin.Version`: the node's version, API version and block delay.
    pub async fn version(&self) -> Result<Version, LotusError> {
        self.call("Filecoin.Version", params![]).await
    }

    /// `Filecoin.ChainHead`: the current head tipset.
    pub async fn chain_head(&self) -> Result<TipSet, LotusError> {
        self.call("Filecoin.ChainHead", params![]).await
    }

    /// `Filecoin.WalletDefaultAddress`: the node wallet's default address (needs `write`).
    pub async fn wallet_default_address(&self) -> Result<Address, LotusError> {
        let s: String = self.call("Filecoin.WalletDefaultAddress", params![]).await?;
        crate::types::parse_address(&s).map_err(|e| LotusError::Malformed {
            method: "Filecoin.WalletDefaultAddress".into(),
            detail: format!("invalid address {s:?}: {e}"),
        })
    }

    /// `Filecoin.WalletBalance`: `address`'s balance at the head, attoFIL.
    pub async fn wallet_balance(&self, address: &Address) -> Result<TokenAmount, LotusError> {
        let s: String = self.call("Filecoin.WalletBalance", params![addr(address)]).await?;
        amount::parse_atto(&s)
            .map_err(|e| LotusError::Malformed { method: "Filecoin.WalletBalance".into(), detail: e.to_string() })
    }

    /// `Filecoin.StateMarketStorageDeal`: a storage deal by id, at the tipset `tipset` (its
    /// block CIDs; empty for the head).
    pub async fn state_market_storage_deal(&self, deal_id: u64, tipset: &[Cid]) -> Result<MarketDeal, LotusError> {
        let key: Vec<serde_json::Value> = tipset.iter().map(cid_param).collect();
        self.call("Filecoin.StateMarketStorageDeal", params![deal_id, key]).await
    }

    /// `Filecoin.PaychGet`: gets (or creates) the channel `from` → `to` and reserves `amount`
    /// in it, adding funds on chain when it lacks them. If the answer has no channel yet, or a
    /// wait sentinel, call [`LotusClient::paych_get_wait_ready`] with the sentinel.
    pub async fn paych_get(
        &self,
        from: &Address,
        to: &Address,
        amount: &TokenAmount,
        opts: PaychGetOpts,
    ) -> Result<ChannelInfo, LotusError> {
        const M: &str = "Filecoin.PaychGet";
        let amount = Self::checked(M, amount)?;
        self.call(M, params![addr(from), addr(to), amount, opts]).await
    }

    /// `Filecoin.PaychGetWaitReady`: waits for a channel's create or add-funds message and
    /// answers the channel's address.
    pub async fn paych_get_wait_ready(&self, sentinel: &Cid) -> Result<Address, LotusError> {
        const M: &str = "Filecoin.PaychGetWaitReady";
        let s: String = self.call(M, params![cid_param(sentinel)]).await?;
        crate::types::parse_address(&s)
            .map_err(|e| LotusError::Malformed { method: M.into(), detail: format!("invalid address {s:?}: {e}") })
    }

    /// `Filecoin.PaychAvailableFunds`: a channel's confirmed, pending, reserved and redeemed funds.
    pub async fn paych_available_funds(&self, channel: &Address) -> Result<ChannelAvailableFunds, LotusError> {
        self.call("Filecoin.PaychAvailableFunds", params![addr(channel)]).await
    }

    /// `Filecoin.PaychAvailableFundsByFromTo`: the same, for the channel `from` → `to`.
    pub async fn paych_available_funds_by_from_to(
        &self,
        from: &Address,
        to: &Address,
    ) -> Result<ChannelAvailableFunds, LotusError> {
        self.call("Filecoin.PaychAvailableFundsByFromTo", params![addr(from), addr(to)]).await
    }

    /// `Filecoin.PaychList`: the channels this node tracks.
    pub async fn paych_list(&self) -> Result<Vec<Address>, LotusError> {
        const M: &str = "Filecoin.PaychList";
        let list: Option<Vec<String>> = self.call(M, params![]).await?;
        list.unwrap_or_default()
            .iter()
            .map(|s| {
                crate::types::parse_address(s).map_err(|e| LotusError::Malformed {
                    method: M.into(),
                    detail: format!("invalid address {s:?}: {e}"),
                })
            })
            .collect()
    }

    /// `Filecoin.PaychStatus`: this node's side of a channel and its direction.
    pub async fn paych_status(&self, channel: &Address) -> Result<PaychStatus, LotusError> {
        self.call("Filecoin.PaychStatus", params![addr(channel)]).await
    }

    /// `Filecoin.PaychAllocateLane`: a fresh lane of the channel (one per retrieval).
    pub async fn paych_allocate_lane(&self, channel: &Address) -> Result<u64, LotusError> {
        self.call("Filecoin.PaychAllocateLane", params![addr(channel)]).await
    }

    /// `Filecoin.PaychVoucherCreate`: a voucher on `lane` for the cumulative `amount`, signed by
    /// the channel's payer; no voucher and a shortfall when the channel lacks funds.
    pub async fn paych_voucher_create(
        &self,
        channel: &Address,
        amount: &TokenAmount,
        lane: u64,
    ) -> Result<VoucherCreateResult, LotusError> {
        const M: &str = "Filecoin.PaychVoucherCreate";
        let amount = Self::checked(M, amount)?;
        self.call(M, params![addr(channel), amount, lane]).await
    }

    /// `Filecoin.PaychVoucherCheckValid`: whether the recipient may accept the voucher (its
    /// signature, lane, nonce, amount against the channel's funds). `Ok` means valid.
    pub async fn paych_voucher_check_valid(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
    ) -> Result<(), LotusError> {
        let _: Nothing = self.call("Filecoin.PaychVoucherCheckValid", params![addr(channel), voucher]).await?;
        Ok(())
    }

    /// `Filecoin.PaychVoucherAdd`: the recipient stores a voucher after checking it, and learns
    /// how much it adds over the lane's best so far; refused if that is below `min_delta`.
    pub async fn paych_voucher_add(
        &self,
        channel: &Address,
        voucher: &SignedVoucher,
        proof: &[u8],
        min_delta: &TokenAmount,
    ) -> Result<TokenAmount, LotusError> {
        const M: &str = "Filecoin.PaychVoucherAdd";
        let min_delta = Self::checked(M, min_delta)?;
        let proof = if proof.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, proof))
        };
        let s: String = self.call(M, params![addr(channel), voucher, proof, min_delta]).await?;
        amount::parse_atto(&s).map_err(|e| LotusError::Malformed { method: M.into(), detail: e.to_string() })
    }

    /// `Filecoin.PaychVoucherList`: the vouchers this node holds for a channel.
    pub async fn paych_voucher_list(&self, channel: &Address) -> Result<Vec<SignedVoucher>, LotusError> {
        let list: Option<Vec<SignedVoucher>> = self.call("Filecoin.PaychVoucherList", params![addr(channel)]).await?;
        Ok(list.unwrap_or_default())
    }

    /// `Filecoin.PaychSettle`: starts settling the channel; answers the message's CID.
    pub async fn paych_settle(&self, channel: &Address) -> Result<Cid, LotusError> {
        self.call_cid("Filecoin.PaychSettle", channel).await
    }

    /// `Filecoin.PaychCollect`: after settlement, pays the recipient its redeemed vouchers and
    /// refunds the rest to the payer; answers the message's CID.
    pub async fn paych_collect(&self, channel: &Address) -> Result<Cid, LotusError> {
        self.call_cid("Filecoin.PaychCollect", channel).await
    }

    async fn call_cid(&self, method: &str, channel: &Address) -> Result<Cid, LotusError> {
        #[derive(serde::Deserialize)]
        struct Link(#[serde(with = "crate::types::cid_json")] Cid);
        let link: Link = self.call(method, params![addr(channel)]).await?;
        Ok(link.0)
    }
}
