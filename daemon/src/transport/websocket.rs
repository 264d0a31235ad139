//! The WebSocket transport: accepts TCP connections (those the connection limits admit),
//! performs the TLS handshake (when TLS is configured) and the WebSocket handshake under the
//! handshake timeout, and adapts the socket to [`Transport`]: one text message per frame,
//! close codes from [`CloseCode`] numbers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::CloseCode;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::{Lane, Transport, TransportError, transport_frame_limit};
use crate::lifecycle::Tasks;
use crate::node::{Node, TransportKind};
use crate::session;
use crate::tls::{MaybeTlsStream, ServerTls};

/// A WebSocket connection after the handshake.
pub struct WebSocketTransport {
    stream: WebSocketStream<MaybeTlsStream>,
    peer: SocketAddr,
}

impl Transport for WebSocketTransport {
    async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        loop {
            let message = match self.stream.next().await? {
                Ok(message) => message,
                Err(tungstenite::Error::Capacity(_)) => return Some(Err(TransportError::TooLarge)),
                Err(error) => return Some(Err(TransportError::Io(error.to_string()))),
            };
            match message {
                Message::Text(text) => return Some(Ok(Bytes::from(text))),
                Message::Binary(_) => {
                    return Some(Err(TransportError::NotAFrame(
                        "binary messages are not frames; send JSON text",
                    )));
                }
                Message::Close(_) => return None,
                // tungstenite answers pings itself; pongs and raw frames carry nothing for us.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    async fn send(&mut self, _lane: Lane<'_>, frame: Bytes) -> Result<(), TransportError> {
        // Frames are JSON produced by serde_json, hence UTF-8; a failed check would mean a
        // codec bug, reported as a broken connection rather than a panic.
        let text = tungstenite::Utf8Bytes::try_from(frame)
            .map_err(|_| TransportError::Io("frame is not UTF-8".to_owned()))?;
        self.stream
            .send(Message::Text(text))
            .await
            .map_err(|error| TransportError::Io(error.to_string()))
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code: WsCloseCode::from(code.number()),
            reason: reason.into(),
        };
        // The peer may already be gone; closing is best effort.
        let _closed = self.stream.close(Some(frame)).await;
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn name(&self) -> &'static str {
        "ws"
    }
}

/// Accepts WebSocket connections until `tasks` is cancelled, running a session for each.
/// With `tls`, each connection is TLS (`wss://`) and gets the certificate in use when its
/// handshake starts.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    node: Arc<Node>,
    tasks: Tasks,
    sessions: CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = tasks.token().cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Before anything is spent on the connection: no task, no TLS handshake. A refused
        // socket is closed unread.
        let admitted = match node.admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::debug!(%peer, reason = refusal.as_str(), "connection refused");
                drop(stream);
                continue;
            }
        };
        let node = Arc::clone(&node);
        let token = sessions.clone();
        let tls = tls.clone();
        tasks.spawn("ws-connection", async move {
            // Counted from accept to close, handshakes included.
            let _open = node.open_connection(TransportKind::WebSocket);
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, %peer, "set_nodelay failed");
            }
            let config = websocket_config(node.limits.max_frame_bytes);
            // One timeout covers both handshakes: a peer that stalls in TLS holds a task and
            // a socket just as one that stalls in the upgrade.
            let handshake = async {
                let stream = match &tls {
                    Some(tls) => tls.accept(stream).await.map_err(HandshakeError::Tls)?,
                    None => MaybeTlsStream::Plain(stream),
                };
                tokio_tungstenite::accept_async_with_config(stream, Some(config))
                    .await
                    .map_err(HandshakeError::WebSocket)
            };
            match tokio::time::timeout(node.handshake_timeout, handshake).await {
                Ok(Ok(stream)) => {
                    let transport = WebSocketTransport { stream, peer };
                    session::run(node, transport, TransportKind::WebSocket, admitted, token).await;
                }
                Ok(Err(error)) => tracing::debug!(%error, %peer, "handshake failed"),
                Err(_) => tracing::debug!(%peer, "handshake timed out"),
            }
        });
    }
    tracing::info!("websocket listener stopped");
}

/// Why a connection never became a WebSocket; logged at debug level, since a port scanner
/// or a client that gives up is routine.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("WebSocket handshake failed: {0}")]
    WebSocket(tungstenite::Error),
}

/// Messages up to [`transport_frame_limit`].
fn websocket_config(max_frame_bytes: usize) -> WebSocketConfig {
    let transport_max = transport_frame_limit(max_frame_bytes);
    WebSocketConfig::default()
        .max_message_size(Some(transport_max))
        .max_frame_size(Some(transport_max))
}
