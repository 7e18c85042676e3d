//! The middleware every route runs through: request ids, access logs, metrics, panic catching
//! and the request timeout, each answering in the gateway's JSON error shape.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;

use crate::api_error::ApiError;
use crate::events;
use crate::metrics::{self, Metrics};

/// The header carrying a request's id: the client's if it sent one, else a fresh UUID.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps every route of `router` (and its fallbacks) in the gateway's middleware, outermost
/// first: request id, access log, metrics, panic catching, timeout.
pub(crate) fn apply<S>(router: Router<S>, metrics: Arc<Metrics>, request_timeout: Duration) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let access_log = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
            tracing::info_span!("http_request", method = %request.method(), uri = %request.uri(), route, request_id)
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Millis))
        .on_failure(DefaultOnFailure::new().level(Level::WARN).latency_unit(LatencyUnit::Millis));
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(access_log)
            .layer(middleware::from_fn_with_state(metrics, metrics::record))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(middleware::from_fn_with_state(request_timeout, timeout)),
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    tracing::error!(panic = message, "a request handler panicked");
    ApiError::internal().into_response()
}

/// Answers 504 in the gateway's JSON shape when a request takes longer than `limit` (plus the
/// `wait` of a long-poll). Hand-written rather than `tower_http::timeout`, whose answer has an
/// empty body.
async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let limit = limit + events::requested_wait(request.uri().query());
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn panics() -> &'static str {
        panic!("boom")
    }

    async fn never_answers() -> &'static str {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "too late"
    }

    fn app(timeout: Duration) -> Router {
        let router = Router::new().route("/panic", get(panics)).route("/slow", get(never_answers));
        apply(router, Arc::new(Metrics::new()), timeout)
    }

    async fn call(app: Router, request: Request) -> (StatusCode, HeaderMap, serde_json::Value) {
        let response = app.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_panic_becomes_a_json_500_with_the_request_id() {
        let request = Request::get("/panic").header("x-request-id", "req-42").body(Body::empty()).unwrap();
        let (status, headers, body) = call(app(Duration::from_secs(5)), request).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(headers["x-request-id"], "req-42");
    }

    #[tokio::test]
    async fn a_slow_request_times_out_with_a_json_504_and_gets_a_fresh_request_id() {
        let request = Request::get("/slow").body(Body::empty()).unwrap();
        let (status, headers, body) = call(app(Duration::from_millis(50)), request).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(body["error"]["code"], "timeout");
        let id = headers["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "{id} is not a UUID");
    }
}
