//! Accepting connections: HTTP/1.1 served with hyper directly rather than through `axum::serve`,
//! which sets no header-read timeout (hyper's needs a timer axum does not give it) and holds any
//! number of connections.
//!
//! A connection that does not deliver a request's headers within
//! [`GatewayConfig::header_read_timeout`] — one that never sends, sends slowly, or idles between
//! requests — is closed. Beyond [`GatewayConfig::max_connections`] open connections, a new one
//! is answered `503` at once and closed: the gateway never runs out of file descriptors (which
//! also stops its Redis reconnects), and keeps answering the connections it holds.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::GatewayConfig;

/// Whether the gateway is draining, for answers that would go on indefinitely (event streams,
/// long-polls): they end when it starts, so that draining ends; their clients reconnect.
/// Every request served by [`serve`] carries it as an extension.
#[derive(Clone)]
pub(crate) struct Draining(watch::Receiver<bool>);

impl Draining {
    /// Returns once the gateway has started draining.
    pub(crate) async fn started(&mut self) {
        // The sender goes only when serving has ended: drained as well.
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

/// Serves `router` on `listener` within the connection limits of `config` until `shutdown`
/// completes; then stops accepting, lets each connection finish the request it is answering,
/// and returns once all are closed.
pub(crate) async fn serve<F>(
    listener: TcpListener,
    router: Router,
    config: &GatewayConfig,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if config.max_connections == 0 || config.header_read_timeout.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "max_connections and header_read_timeout must be above zero",
        ));
    }
    let limit = config.max_connections.min(Semaphore::MAX_PERMITS);
    let open = Arc::new(Semaphore::new(limit));
    let refusal = refusal(limit);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    let (closing, closed) = watch::channel(false);
    let router = router.layer(axum::Extension(Draining(closed.clone())));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Told at once rather than left waiting: a fresh socket's send buffer is empty, so
            // this never blocks; if it cannot be written, closing alone says as much.
            let _ = stream.try_write(&refusal);
            tracing::warn!(limit, "refused a connection: the gateway holds as many as it may");
            continue;
        };
        // Answers are small and written whole: waiting to fill a packet only adds latency.
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let mut closed = closed.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    _ = closed.wait_for(|closing| *closing), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    closing.send_replace(true);
    // Each connection gives its permit back when it closes.
    let _all = open.acquire_many(limit as u32).await;
    Ok(())
}

/// The answer to a connection over the limit: a complete HTTP/1.1 `503` in the gateway's JSON
/// error shape, closing the connection.
fn refusal(limit: usize) -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": format!("the gateway holds {limit} connections, its limit; connect again shortly"),
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// After a failed `accept`: a connection that went away before it was accepted is no trouble;
/// anything else (out of file descriptors or memory) is logged and waited out briefly, since
/// accepting again at once would fail the same way in a busy loop.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; pausing before the next");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
