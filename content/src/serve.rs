//! The trustless-gateway server for a local block store.
//!
//! [`router`] answers `GET`/`HEAD /ipfs/{cid}` as the IPFS trustless gateway spec asks:
//!
//! - `?format=raw` or `Accept: application/vnd.ipld.raw`: the single block.
//! - `?format=car` or `Accept: application/vnd.ipld.car`: a CARv1 of the DAG under the CID,
//!   limited by `dag-scope=block|entity|all` (default `all`), depth-first with no duplicates,
//!   streamed as it is walked.
//! - `?format=` wins over `Accept`. A malformed CID is a 400, an absent block a 404, a request
//!   that asks for neither format a 406 — this server never deserialises UnixFS for browsers.
//!
//! Not supported (answered with 400 and a JSON `{"error": "..."}` rather than silently
//! ignored): `entity-bytes`, paths below the CID (`/ipfs/{cid}/a/b`). An identity CID (its
//! block inlined in the CID) is served like any other. `HEAD` of a CAR answers the headers the
//! `GET` would, without `Content-Length`: a CAR is streamed, its length unknown until the walk
//! ends. Health checks and other routes are the mounting binary's business.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cid::Cid;
use futures::StreamExt;
use tokio_util::io::ReaderStream;

use crate::block::{parse_cid, Block};
use crate::car::{export_car, DagScope, WalkOptions};
use crate::error::{ContentError, Result};
use crate::source::{MEDIA_TYPE_CAR, MEDIA_TYPE_RAW};
use crate::store::{get_verified, BlockReader, BlockStore};

/// `Content-Type` of the CARs this server writes: the parameters say what it guarantees.
pub const CAR_CONTENT_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";

/// Blocks never change under their CID: cache for a year and never revalidate.
const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// Size of the pipe between the DAG walk and the response body.
const CAR_PIPE_BYTES: usize = 256 * 1024;

/// How the server behaves.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Hash single blocks before serving them, so a corrupted store answers 500 instead of
    /// passing bad bytes on. Trustless clients verify anyway; turning this off saves one hash
    /// per request on a store that is trusted. CAR responses are always verified, because
    /// their links are read to walk the DAG.
    pub verify_raw: bool,
    /// Bounds and prefetching of CAR walks.
    pub walk: WalkOptions,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions { verify_raw: true, walk: WalkOptions::default() }
    }
}

/// The trustless gateway over `store`, with [`ServeOptions::default`].
pub fn router(store: Arc<dyn BlockStore>) -> Router {
    router_with(store, ServeOptions::default())
}

/// The trustless gateway over `store`.
pub fn router_with(store: Arc<dyn BlockStore>, options: ServeOptions) -> Router {
    let state = Arc::new(Gateway { store: StoreReader(store), options });
    Router::new().route("/ipfs/{cid}", get(get_ipfs)).route("/ipfs/{cid}/{*path}", get(below_cid)).with_state(state)
}

/// `GET /ipfs/{cid}/{path}`: refused plainly, so a client learns that paths are not resolved
/// here rather than meeting a bare 404 that reads as "no such content".
async fn below_cid(Path((cid, path)): Path<(String, String)>) -> Response {
    Rejection(
        StatusCode::BAD_REQUEST,
        format!(
            "paths below a CID are not supported by this trustless gateway: resolve /ipfs/{cid}/{path} \
             to its own CID and ask for that (format=raw or format=car)"
        ),
    )
    .into_response()
}

/// Reads a store through [`get_verified`]; the trait objects do not upcast to [`BlockReader`].
struct StoreReader(Arc<dyn BlockStore>);

#[async_trait]
impl BlockReader for StoreReader {
    async fn get(&self, cid: &Cid) -> Result<Block> {
        get_verified(self.0.as_ref(), cid).await
    }
}

struct Gateway {
    store: StoreReader,
    options: ServeOptions,
}

/// The response formats this gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car,
}

/// A request that cannot be served: status and a message for the JSON body.
struct Rejection(StatusCode, String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
        response
    }
}

async fn get_ipfs(
    State(gateway): State<Arc<Gateway>>,
    method: Method,
    Path(cid_text): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match serve(&gateway, &method, &cid_text, &params, &headers).await {
        Ok(response) => response,
        Err(rejection) => rejection.into_response(),
    }
}

async fn serve(
    gateway: &Arc<Gateway>,
    method: &Method,
    cid_text: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, Rejection> {
    let cid = parse_cid(cid_text).map_err(|e| Rejection(StatusCode::BAD_REQUEST, e.to_string()))?;
    let format = negotiate(params, headers)?;
    if params.contains_key("entity-bytes") {
        return Err(Rejection(StatusCode::BAD_REQUEST, "entity-bytes is not supported by this gateway".into()));
    }
    match format {
        Format::Raw => serve_raw(gateway, cid, headers).await,
        Format::Car => {
            let scope = match params.get("dag-scope") {
                Some(value) => {
                    value.parse::<DagScope>().map_err(|e| Rejection(StatusCode::BAD_REQUEST, e.to_string()))?
                }
                None => DagScope::All,
            };
            serve_car(gateway, method, cid, scope, headers).await
        }
    }
}

/// `?format=` if present, else the first acceptable type in `Accept` by quality.
fn negotiate(params: &HashMap<String, String>, headers: &HeaderMap) -> Result<Format, Rejection> {
    if let Some(format) = params.get("format") {
        return match format.as_str() {
            "raw" => Ok(Format::Raw),
            "car" => Ok(Format::Car),
            other => Err(Rejection(
                StatusCode::BAD_REQUEST,
                format!("unsupported format {other:?}: this trustless gateway serves format=raw and format=car"),
            )),
        };
    }
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let mut offers: Vec<(f32, usize, Format)> = Vec::new();
    for (position, item) in accept.split(',').enumerate() {
        let mut parts = item.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut quality = 1.0f32;
        let mut car_version_ok = true;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "q" => quality = value.trim().parse().unwrap_or(0.0),
                "version" => car_version_ok = value.trim().trim_matches('"') == "1",
                _ => {}
            }
        }
        let format = match media_type.as_str() {
            MEDIA_TYPE_RAW => Format::Raw,
            MEDIA_TYPE_CAR if car_version_ok => Format::Car,
            _ => continue,
        };
        if quality > 0.0 {
            offers.push((quality, position, format));
        }
    }
    // Highest quality first; among equals, the client's order.
    offers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    offers.first().map(|offer| offer.2).ok_or_else(|| {
        Rejection(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "this trustless gateway serves {MEDIA_TYPE_RAW} and {MEDIA_TYPE_CAR} (version=1); \
                 ask for one in Accept or with ?format=raw|car"
            ),
        )
    })
}

fn not_found(cid: &Cid) -> Rejection {
    Rejection(StatusCode::NOT_FOUND, format!("block {cid} is not in this store"))
}

fn internal(cid: &Cid, error: &ContentError) -> Rejection {
    tracing::error!(%cid, %error, "cannot serve block from the local store");
    Rejection(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot serve {cid}: {error}"))
}

/// Headers every successful response carries.
fn content_headers(headers: &mut HeaderMap, cid: &Cid, content_type: &'static str, etag: &str, filename: &str) {
    let mut set = |name, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(header::ETAG, etag.to_string());
    set(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\""));
    set(header::HeaderName::from_static("x-ipfs-path"), format!("/ipfs/{cid}"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
}

/// Whether the client already holds the response tagged `etag`.
fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"))
}

async fn serve_raw(gateway: &Gateway, cid: Cid, request: &HeaderMap) -> Result<Response, Rejection> {
    let store = gateway.store.0.as_ref();
    let data = if gateway.options.verify_raw {
        match get_verified(store, &cid).await {
            Ok(block) => block.into_parts().1,
            Err(ContentError::NotFound { .. }) => return Err(not_found(&cid)),
            Err(e) => return Err(internal(&cid, &e)),
        }
    } else if let Some(block) = Block::inline(&cid) {
        block.into_parts().1
    } else {
        match store.fetch(&cid).await {
            Ok(Some(data)) => data,
            Ok(None) => return Err(not_found(&cid)),
            Err(e) => return Err(internal(&cid, &e)),
        }
    };
    let etag = format!("\"{cid}.raw\"");
    let mut response = if not_modified(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Body::from(data).into_response()
    };
    content_headers(response.headers_mut(), &cid, MEDIA_TYPE_RAW, &etag, &format!("{cid}.bin"));
    Ok(response)
}

async fn serve_car(
    gateway: &Arc<Gateway>,
    method: &Method,
    cid: Cid,
    scope: DagScope,
    request: &HeaderMap,
) -> Result<Response, Rejection> {
    // Checked before the 200 goes out: once streaming starts, a failure can only cut the body.
    match gateway.store.0.has(&cid).await {
        _ if Block::inline(&cid).is_some() => {}
        Ok(true) => {}
        Ok(false) => return Err(not_found(&cid)),
        Err(e) => return Err(internal(&cid, &e)),
    }
    let etag = format!("\"{cid}.car.{scope}.dfs.n\"");
    let mut response = if not_modified(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        // A body of unknown length, as the GET's: an empty one would make the answer say
        // `Content-Length: 0`, a length the GET does not have.
        Body::from_stream(futures::stream::empty::<std::io::Result<bytes::Bytes>>()).into_response()
    } else {
        Body::from_stream(stream_car(gateway.clone(), cid, scope)).into_response()
    };
    content_headers(response.headers_mut(), &cid, CAR_CONTENT_TYPE, &etag, &format!("{cid}.car"));
    Ok(response)
}

/// The CAR of `scope` under `cid` as body chunks, written by a task as the DAG is walked.
///
/// If the walk fails midway (a missing or corrupt block) the stream ends with an error, so the
/// HTTP response is aborted rather than ended cleanly: a client sees a broken transfer, not a
/// short CAR that looks whole. If the client goes away, the pipe closes and the walk stops.
fn stream_car(
    gateway: Arc<Gateway>,
    cid: Cid,
    scope: DagScope,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    let (writer, reader) = tokio::io::duplex(CAR_PIPE_BYTES);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<()>>();
    tokio::spawn(async move {
        let result = export_car(&gateway.store, &cid, writer, scope, gateway.options.walk).await;
        if let Err(error) = &result {
            tracing::warn!(%cid, %scope, %error, "CAR export stopped");
        }
        // The receiver is gone only if the response was dropped; nobody is left to tell.
        let _ = done_tx.send(result.map(|_| ()));
    });
    let outcome = futures::stream::once(async move {
        match done_rx.await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(Err(std::io::Error::other(error.to_string()))),
            Err(_) => Some(Err(std::io::Error::other("CAR export task ended without a result"))),
        }
    })
    .filter_map(std::future::ready);
    ReaderStream::new(reader).chain(outcome)
}
