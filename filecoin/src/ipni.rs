//! Finding providers: a client of the IPNI (InterPlanetary Network Indexer) HTTP find API.
//!
//! `GET {indexer}/cid/{cid}` answers which providers advertised the CID's multihash, and how to
//! retrieve it from them. The shapes are IPNI's, field for field:
//!
//! - The response body is go-libipni's `find/model.FindResponse` (`ipni/go-libipni`,
//!   `find/model/model.go`): `{"MultihashResults": [{"Multihash": <base64>, "ProviderResults":
//!   [{"ContextID": <base64>, "Metadata": <base64>, "Provider": {"ID": <peer id>, "Addrs":
//!   [<multiaddr>…]}}]}]}` — Go's `[]byte` fields as standard base64, `Provider` a libp2p
//!   `peer.AddrInfo`. A CID nobody advertised is HTTP 404 (IPNI's OpenAPI, `GET /cid/{cid}`).
//!   `tests/fixtures/ipni-find-cid.json` is a recorded cid.contact answer of that shape.
//! - `Metadata` is go-libipni's `metadata.Metadata` (`metadata/metadata.go`): transports
//!   sorted by multicodec, each a varint code and its payload: `0x0900`
//!   transport-bitswap (no payload), `0x0910` transport-graphsync-filecoinv1 (a DAG-CBOR map
//!   `{PieceCID, VerifiedDeal, FastRetrieval}`), `0x0920` transport-ipfs-gateway-http (a varint
//!   payload length, 0; older encoders wrote the code alone, `metadata/ipfs_trustless_gateway.go`),
//!   anything else a varint length and that many bytes (`metadata/unknown.go`).
//!
//! Addresses are multiaddrs; those of an HTTP transport (`/ip4|ip6|dns|dns4|dns6/…/tcp/…/http`,
//! `…/https`, `…/tls/http`) become base URLs ([`http_url`]). The `multiaddr` crate (0.18) has
//! no `/http-path` component yet: such an address fails to parse and is skipped.

use std::time::Duration;

use cid::Cid;
use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Serialize};

/// Multicodec of transport-bitswap.
pub const TRANSPORT_BITSWAP: u64 = 0x0900;
/// Multicodec of transport-graphsync-filecoinv1.
pub const TRANSPORT_GRAPHSYNC_FILECOINV1: u64 = 0x0910;
/// Multicodec of transport-ipfs-gateway-http: a trustless gateway over HTTP.
pub const TRANSPORT_IPFS_GATEWAY_HTTP: u64 = 0x0920;

/// How long one find may take.
pub const DEFAULT_FIND_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a find failed.
#[derive(Debug, thiserror::Error)]
pub enum IpniError {
    /// The indexer URL is not an http(s) URL.
    #[error("invalid indexer URL {url:?}: {detail}")]
    Config {
        /// The URL given.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The indexer could not be reached or answered an HTTP error other than 404.
    #[error("indexer {url} failed for {cid}: {detail}")]
    Unreachable {
        /// The indexer.
        url: String,
        /// The CID looked up.
        cid: Cid,
        /// What failed.
        detail: String,
    },
    /// The answer is not a `FindResponse`.
    #[error("indexer {url} answered {cid} with something malformed: {detail}")]
    Malformed {
        /// The indexer.
        url: String,
        /// The CID looked up.
        cid: Cid,
        /// Why it could not be read.
        detail: String,
    },
}

/// go-libipni's `FindResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FindResponse {
    /// One entry per multihash asked for (one for `/cid/`).
    #[serde(default, with = "crate::types::opt_vec")]
    pub multihash_results: Vec<MultihashResult>,
}

/// go-libipni's `MultihashResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MultihashResult {
    /// The multihash's bytes.
    #[serde(with = "crate::types::base64_bytes")]
    pub multihash: Vec<u8>,
    /// Who advertised it.
    #[serde(default, with = "crate::types::opt_vec")]
    pub provider_results: Vec<ProviderResult>,
}

/// go-libipni's `ProviderResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProviderResult {
    /// The advertisement's context (for Boost, the deal or piece).
    #[serde(rename = "ContextID", default, with = "crate::types::base64_bytes")]
    pub context_id: Vec<u8>,
    /// The transports it can be retrieved over ([`decode_metadata`]).
    #[serde(default, with = "crate::types::base64_bytes")]
    pub metadata: Vec<u8>,
    /// The provider: peer ID and multiaddrs.
    pub provider: Option<AddrInfo>,
}

/// libp2p's `peer.AddrInfo` as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrInfo {
    /// The peer ID (`12D3KooW…`).
    #[serde(rename = "ID")]
    pub id: String,
    /// Its multiaddrs as strings.
    #[serde(rename = "Addrs", default, with = "crate::types::opt_vec")]
    pub addrs: Vec<String>,
}

/// One transport of an advertisement's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Bitswap.
    Bitswap,
    /// Graphsync with Filecoin retrieval deals.
    GraphsyncFilecoinV1 {
        /// The piece holding the data.
        piece_cid: Cid,
        /// Whether the deal is a Filecoin Plus deal.
        verified_deal: bool,
        /// Whether an unsealed copy is kept.
        fast_retrieval: bool,
    },
    /// The IPFS trustless gateway protocol over HTTP.
    IpfsGatewayHttp,
    /// A transport this client does not know, by multicodec.
    Unknown(u64),
}

/// Why metadata could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPNI metadata: {0}")]
pub struct MetadataError(String);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GraphsyncFilecoinV1 {
    #[serde(rename = "PieceCID")]
    piece_cid: Cid,
    verified_deal: bool,
    fast_retrieval: bool,
}

fn varint(bytes: &[u8]) -> Result<(u64, &[u8]), MetadataError> {
    unsigned_varint::decode::u64(bytes).map_err(|e| MetadataError(format!("bad varint: {e}")))
}

/// Decodes a `Metadata` field into its transports, in order.
pub fn decode_metadata(mut bytes: &[u8]) -> Result<Vec<Transport>, MetadataError> {
    let mut transports = Vec::new();
    while !bytes.is_empty() {
        let (code, rest) = varint(bytes)?;
        bytes = rest;
        let transport = match code {
            TRANSPORT_BITSWAP => Transport::Bitswap,
            TRANSPORT_GRAPHSYNC_FILECOINV1 => {
                // A DAG-CBOR map with no length prefix: its end is where decoding stops.
                let mut cursor = std::io::Cursor::new(bytes);
                let g: GraphsyncFilecoinV1 = serde_ipld_dagcbor::de::from_reader_once(&mut cursor)
                    .map_err(|e| MetadataError(format!("graphsync-filecoinv1 payload: {e}")))?;
                bytes = &bytes[cursor.position() as usize..];
                Transport::GraphsyncFilecoinV1 {
                    piece_cid: g.piece_cid,
                    verified_deal: g.verified_deal,
                    fast_retrieval: g.fast_retrieval,
                }
            }
            TRANSPORT_IPFS_GATEWAY_HTTP => {
                // The payload length (0) that current go-libipni writes; older encoders wrote none.
                if !bytes.is_empty() {
                    let (len, rest) = varint(bytes)?;
                    bytes = rest.get(len as usize..).ok_or_else(|| MetadataError("truncated http payload".into()))?;
                }
                Transport::IpfsGatewayHttp
            }
            other => {
                let (len, rest) = varint(bytes)?;
                bytes = rest
                    .get(len as usize..)
                    .ok_or_else(|| MetadataError(format!("truncated payload of transport {other:#x}")))?;
                Transport::Unknown(other)
            }
        };
        transports.push(transport);
    }
    Ok(transports)
}

/// The metadata of an advertisement for transport-ipfs-gateway-http alone, as go-libipni
/// writes it (varint 0x0920, then payload length 0): `oBIA` in base64.
pub fn http_metadata() -> Vec<u8> {
    let mut code = unsigned_varint::encode::u64_buffer();
    let mut out = unsigned_varint::encode::u64(TRANSPORT_IPFS_GATEWAY_HTTP, &mut code).to_vec();
    out.push(0);
    out
}

/// The base URL (`http://host:port`) an HTTP multiaddr stands for, if it is one:
/// `/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>` then `/http`, `/https` or `/tls/http`, optionally
/// ending in `/p2p/<peer>`.
pub fn http_url(addr: &str) -> Option<url::Url> {
    let addr: Multiaddr = addr.parse().ok()?;
    let mut parts = addr.iter().peekable();
    let host = match parts.next()? {
        Protocol::Ip4(ip) => ip.to_string(),
        Protocol::Ip6(ip) => format!("[{ip}]"),
        Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => name.to_string(),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    let scheme = match parts.next()? {
        Protocol::Http => "http",
        Protocol::Https => "https",
        Protocol::Tls if parts.next_if_eq(&Protocol::Http).is_some() => "https",
        _ => return None,
    };
    match parts.next() {
        None | Some(Protocol::P2p(_)) => {}
        Some(_) => return None,
    }
    url::Url::parse(&format!("{scheme}://{host}:{port}")).ok()
}

/// A provider that serves a CID over the trustless-gateway HTTP protocol, from a find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProvider {
    /// Its peer ID.
    pub peer_id: String,
    /// The advertisement's context.
    pub context_id: Vec<u8>,
    /// Base URLs from its HTTP multiaddrs, in the order advertised.
    pub urls: Vec<url::Url>,
}

impl FindResponse {
    /// The providers that advertised transport-ipfs-gateway-http and at least one HTTP
    /// multiaddr, one entry per peer (its first such advertisement). Advertisements with
    /// metadata that does not decode are skipped, as go-libipni's clients skip them.
    pub fn http_providers(&self) -> Vec<HttpProvider> {
        let mut found: Vec<HttpProvider> = Vec::new();
        for result in self.multihash_results.iter().flat_map(|m| &m.provider_results) {
            let Some(provider) = &result.provider else { continue };
            let http = decode_metadata(&result.metadata)
                .is_ok_and(|transports| transports.contains(&Transport::IpfsGatewayHttp));
            let urls: Vec<url::Url> = provider.addrs.iter().filter_map(|a| http_url(a)).collect();
            if http && !urls.is_empty() && !found.iter().any(|f| f.peer_id == provider.id) {
                found.push(HttpProvider { peer_id: provider.id.clone(), context_id: result.context_id.clone(), urls });
            }
        }
        found
    }
}

/// A client of one IPNI indexer's HTTP find API (`https://cid.contact`, or a stand-in).
#[derive(Debug, Clone)]
pub struct IpniClient {
    base: url::Url,
    http: reqwest::Client,
    timeout: Duration,
}

impl IpniClient {
    /// A client of the indexer at `url` (its base, `https://cid.contact`).
    pub fn new(url: &str) -> Result<Self, IpniError> {
        let config = |detail: String| IpniError::Config { url: url.to_owned(), detail };
        let base = url::Url::parse(url).map_err(|e| config(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(config("only http:// and https:// indexers are supported".into()));
        }
        Ok(Self { base, http: reqwest::Client::new(), timeout: DEFAULT_FIND_TIMEOUT })
    }

    /// The indexer's base URL.
    pub fn url(&self) -> &url::Url {
        &self.base
    }

    /// `GET /cid/{cid}`: every advertisement of `cid`'s multihash; empty on 404 (nobody
    /// advertised it).
    pub async fn find_cid(&self, cid: &Cid) -> Result<FindResponse, IpniError> {
        let url = format!("{}/cid/{cid}", self.base.as_str().trim_end_matches('/'));
        let unreachable = |detail: String| IpniError::Unreachable { url: url.clone(), cid: *cid, detail };
        let response = self
            .http
            .get(&url)
            .header(http::header::ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => return Ok(FindResponse::default()),
            status if !status.is_success() => return Err(unreachable(format!("HTTP {status}"))),
            _ => {}
        }
        let body = response.bytes().await.map_err(|e| unreachable(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| IpniError::Malformed { url, cid: *cid, detail: e.to_string() })
    }
}

/// A libp2p peer ID in its usual text form (`12D3KooW…`) for an Ed25519 public key: the
/// base58btc identity multihash of the key's protobuf encoding. Stand-ins use it to name
/// themselves as IPNI names providers.
pub fn ed25519_peer_id(public_key: &[u8; 32]) -> String {
    // identity multihash (0x00, length 36) of protobuf {Type: Ed25519 (1), Data: key}.
    let mut bytes = vec![0x00, 36, 0x08, 0x01, 0x12, 32];
    bytes.extend_from_slice(public_key);
    let encoded = cid::multibase::encode(cid::multibase::Base::Base58Btc, &bytes);
    encoded[1..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn http_multiaddrs_become_urls() {
        let url = |a: &str| http_url(a).map(|u| u.to_string());
        assert_eq!(url("/ip4/127.0.0.1/tcp/8080/http").as_deref(), Some("http://127.0.0.1:8080/"));
        assert_eq!(url("/dns4/sp.example.org/tcp/443/https").as_deref(), Some("https://sp.example.org/"));
        assert_eq!(url("/dns/sp.example.org/tcp/8443/tls/http").as_deref(), Some("https://sp.example.org:8443/"));
        assert_eq!(url("/ip6/::1/tcp/80/http").as_deref(), Some("http://[::1]/"));
        assert_eq!(
            url("/ip4/10.0.0.1/tcp/80/http/p2p/12D3KooWAWcPeDRjFMasZ9D7yfr2Znh3kefPUuyVb66DsM3A72oz").as_deref(),
            Some("http://10.0.0.1/")
        );
        for not_http in [
            "/ip4/1.214.241.108/tcp/30000",
            "/dns4/elastic.dag.house/tcp/443/wss",
            "/ip4/1.2.3.4/udp/1/quic-v1",
            "garbage",
        ] {
            assert_eq!(url(not_http), None, "{not_http}");
        }
    }

    #[test]
    fn metadata_transports_decode() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(decode_metadata(&b64("gBI=")).unwrap(), vec![Transport::Bitswap]);
        assert_eq!(decode_metadata(&b64("oBIA")).unwrap(), vec![Transport::IpfsGatewayHttp]);
        assert_eq!(decode_metadata(&http_metadata()).unwrap(), vec![Transport::IpfsGatewayHttp]);
        assert_eq!(base64::engine::general_purpose::STANDARD.encode(http_metadata()), "oBIA");
        // The code alone, as older go-libipni wrote it.
        assert_eq!(decode_metadata(&b64("oBI=")).unwrap(), vec![Transport::IpfsGatewayHttp]);
        // Graphsync then HTTP (sorted by code), as Boost advertises both.
        let mut both = b64("kBKjaFBpZWNlQ0lE2CpYKAABgeIDkiAgz64SZ/fTuarQ9EXvlGt9gtLxS+1fV7ehz13mGD0W2xJsVmVyaWZpZWREZWFs9W1GYXN0UmV0cmlldmFs9Q==");
        both.extend(http_metadata());
        let transports = decode_metadata(&both).unwrap();
        assert!(matches!(
            transports.as_slice(),
            [
                Transport::GraphsyncFilecoinV1 { verified_deal: true, fast_retrieval: true, .. },
                Transport::IpfsGatewayHttp
            ]
        ));
        assert_eq!(decode_metadata(&[0xc0, 0x12, 0x02, 0xaa, 0xbb]).unwrap(), vec![Transport::Unknown(0x0940)]);
        assert!(decode_metadata(&[0xc0, 0x12, 0x05, 0xaa]).is_err());
        assert!(decode_metadata(&[0x90, 0x12, 0xff]).is_err());
    }

    #[test]
    fn peer_ids_look_like_libp2p_ones() {
        let id = ed25519_peer_id(&[7; 32]);
        assert!(id.starts_with("12D3KooW"), "{id}");
    }
}
