//! The stand-in's HTTP side: `POST /rpc/v1`, bearer-token permissions, go-jsonrpc's framing.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use fvm_shared::address::Address;
use serde_json::{json, Value};

use super::node::{Node, Perm, RpcFailure};
use super::{LotusStandIn, RecordedRequest, StandInChain};

struct Shared {
    token: String,
    chain: StandInChain,
    node: Mutex<Node>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

pub(super) async fn start(chain: StandInChain, wallet: Vec<Address>, token: String) -> std::io::Result<LotusStandIn> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::new(Shared {
        token: token.clone(),
        chain: chain.clone(),
        node: Mutex::new(Node::new(wallet)),
        requests: requests.clone(),
    });
    let app = Router::new().route("/rpc/v1", post(rpc)).with_state(shared);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "Lotus stand-in stopped");
        }
    });
    Ok(LotusStandIn { addr, token, chain, requests, task })
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error_body(id: &Value, code: i32, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

async fn rpc(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    // go-jsonrpc's auth handler: no token is `read`; a token that is not a valid bearer
    // token is 401 with an empty body.
    let perm = match headers.get(header::AUTHORIZATION) {
        None => Perm::Read,
        Some(value) => match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) if token == shared.token => Perm::Admin,
            _ => return StatusCode::UNAUTHORIZED.into_response(),
        },
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(&Value::Null, -32700, &format!("unmarshaling request: {e}")),
            )
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str).map(str::to_owned) else {
        return json_response(StatusCode::BAD_REQUEST, error_body(&id, -32600, "invalid request: no method"));
    };
    let params = request.get("params").cloned();
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(RecordedRequest { method: method.clone(), params: params.clone() });
    let params = match params {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(&id, -32700, &format!("unmarshaling param array: not an array: {other}")),
            )
        }
    };
    let outcome = {
        let mut node = shared.node.lock().unwrap_or_else(|p| p.into_inner());
        let mut chain = shared.chain.inner.lock().unwrap_or_else(|p| p.into_inner());
        node.dispatch(&mut chain, &method, &params, perm)
    };
    match outcome {
        Ok(result) => json_response(StatusCode::OK, json!({ "jsonrpc": "2.0", "id": id, "result": result })),
        // A method's own failure: HTTP 200 with code 1, as go-jsonrpc answers.
        Err(RpcFailure::Method(message)) => json_response(StatusCode::OK, error_body(&id, 1, &message)),
        // Dispatch failures (unknown method, parameters): HTTP 500, as go-jsonrpc answers.
        Err(RpcFailure::Protocol { code, message }) => {
            json_response(StatusCode::INTERNAL_SERVER_ERROR, error_body(&id, code, &message))
        }
    }
}
