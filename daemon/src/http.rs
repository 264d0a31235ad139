//! The operator HTTP listener on `listen.metrics`, apart from the client listeners so it can
//! be firewalled on its own: `GET /metrics` (Prometheus text exposition), `GET /healthz` (the
//! process is alive and its runtime answers) and `GET /readyz` (the node should get clients;
//! see [`crate::health`]). Anything else is 404, and another method on those paths 405.
//!
//! It stays up through the drain, answering `/readyz` with 503 `draining`, so a load balancer
//! sees the node leave; the daemon stops it at the very end.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections at once (the next waits in the kernel's
//! backlog), headers must arrive within [`HEADER_READ_TIMEOUT`], one request per connection
//! (no keep-alive, so an idle client holds no slot), and a connection lives at most
//! [`CONNECTION_TIMEOUT`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::health;
use crate::lifecycle::Tasks;
use crate::node::Node;

/// Most connections served at once. A Prometheus server and a load balancer or two need a
/// handful; the rest is headroom for an operator's curl.
pub const MAX_CONNECTIONS: usize = 32;

/// Time a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest one connection may last, reading the request and writing the answer included. A
/// scrape of a few hundred series is rendered in milliseconds.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a connection in progress may finish after the listener is told to stop.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The Prometheus text exposition format, version 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What requests are answered from.
struct Routes {
    node: Arc<Node>,
    metrics: PrometheusHandle,
}

/// Serves the operator endpoints on `listener` until `tasks` is cancelled; connections run as
/// tasks of `tasks`.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    metrics: PrometheusHandle,
    tasks: Tasks,
) {
    let routes = Arc::new(Routes { node, metrics });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let token = tasks.token().clone();
    let mut backoff = Duration::from_millis(5);
    loop {
        // A slot is taken before accepting, so a flood waits in the backlog instead of
        // costing tasks and buffers here.
        let slot = tokio::select! {
            () = token.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        // The semaphore is never closed, so acquiring fails never.
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::from_millis(5);
                stream
            }
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%error, "metrics accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let routes = Arc::clone(&routes);
        let token = token.clone();
        tasks.spawn("metrics-connection", async move {
            serve_connection(stream, routes, token).await;
            drop(slot);
        });
    }
    tracing::info!("metrics listener stopped");
}

async fn serve_connection(stream: TcpStream, routes: Arc<Routes>, token: CancellationToken) {
    let service = service_fn(move |request| {
        let routes = Arc::clone(&routes);
        async move { Ok::<_, Infallible>(respond(&routes, &request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let finished = tokio::select! {
        result = &mut connection => Some(result),
        () = token.cancelled() => None,
        () = tokio::time::sleep(CONNECTION_TIMEOUT) => {
            tracing::debug!("metrics connection timed out");
            return;
        }
    };
    let result = match finished {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(STOP_GRACE, connection).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "metrics connection failed");
    }
}

/// The endpoints.
#[derive(Debug, Clone, Copy)]
enum Route {
    Metrics,
    Healthz,
    Readyz,
}

async fn respond(routes: &Routes, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let route = match request.uri().path() {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        _ => return text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned());
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match route {
        Route::Metrics => {
            let mut response = Response::new(Full::new(Bytes::from(routes.metrics.render())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            response
        }
        // Answering at all shows that the process is alive and its runtime is not stuck.
        Route::Healthz => text(StatusCode::OK, "ok\n".to_owned()),
        Route::Readyz => {
            let readiness = health::check(&routes.node).await;
            let status = if readiness.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, readiness.to_string())
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // Health answers describe this moment; a cached one is wrong.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
