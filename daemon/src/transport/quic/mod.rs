//! The QUIC transport: a quinn endpoint on UDP beside the WebSocket listener. Each connection
//! finishes the TLS 1.3 handshake (ALPN `chatd/1`) and opens its control stream within the
//! handshake timeout, then runs the same session as a WebSocket connection would.
//!
//! # Layout
//! - this file: the endpoint's configuration and the accept loop.
//! - `connection`: [`QuicTransport`], one connection as a [`crate::transport::Transport`].

mod connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{IdleTimeout, VarInt};
use tokio_util::sync::CancellationToken;

pub use self::connection::QuicTransport;
use crate::lifecycle::Tasks;
use crate::node::{Node, TransportKind};
use crate::session;
use crate::tls::{ReloadableCertificate, quic_server_config};
use crate::transport::admission::Admitted;
use crate::transport::transport_frame_limit;

/// Connection tuning from `[quic]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicSettings {
    /// Keep-alive interval on a quiet connection; `None` sends none.
    pub keep_alive: Option<Duration>,
    /// Drop a connection that has heard nothing from its client for this long.
    pub idle_timeout: Duration,
}

/// Why the QUIC endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicSetupError {
    /// The TLS configuration was refused (no TLS 1.3 in the provider).
    #[error("TLS 1.3 configuration for QUIC: {0}")]
    Tls(String),
    /// A setting is out of QUIC's range.
    #[error("{0}")]
    Setting(String),
    /// The UDP socket could not be bound.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
}

/// Binds the QUIC endpoint at `address`, serving `certificate`.
///
/// # Errors
/// [`QuicSetupError`]; a bind failure names the OS error (address in use, no permission).
pub fn bind(
    address: SocketAddr,
    certificate: &Arc<ReloadableCertificate>,
    settings: QuicSettings,
) -> Result<quinn::Endpoint, QuicSetupError> {
    let tls = quic_server_config(certificate).map_err(|e| QuicSetupError::Tls(e.to_string()))?;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| QuicSetupError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(settings)?));
    // Connection migration (a phone moving from Wi-Fi to cellular) is on: quinn validates
    // the new path before sending more than a little to it.
    config.migration(true);
    Ok(quinn::Endpoint::server(config, address)?)
}

fn transport_config(settings: QuicSettings) -> Result<quinn::TransportConfig, QuicSetupError> {
    let mut transport = quinn::TransportConfig::default();
    let idle = IdleTimeout::try_from(settings.idle_timeout)
        .map_err(|_| QuicSetupError::Setting("quic.idle_timeout_secs is too large".to_owned()))?;
    transport.max_idle_timeout(Some(idle));
    transport.keep_alive_interval(settings.keep_alive);
    // A client opens exactly one stream (control) and never a unidirectional one; anything
    // more would only cost memory.
    transport.max_concurrent_bidi_streams(VarInt::from_u32(1));
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    // Clients send no datagrams (typing goes on the control stream, where it is rate
    // limited in order with everything else); the server sends them.
    transport.datagram_receive_buffer_size(None);
    Ok(transport)
}

/// Accepts QUIC connections until `tasks` is cancelled, running a session for each; then
/// refuses new connections and waits for the open ones to end (each drains on `sessions`).
pub async fn serve(
    endpoint: quinn::Endpoint,
    node: Arc<Node>,
    tasks: Tasks,
    sessions: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            () = tasks.token().cancelled() => break,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else {
            break;
        };
        let Some((incoming, admitted)) = admit(&node, incoming) else {
            continue;
        };
        let node = Arc::clone(&node);
        let token = sessions.clone();
        tasks.spawn("quic-connection", async move {
            // Counted from the first packet to close, handshake included.
            let _open = node.open_connection(TransportKind::Quic);
            let peer = incoming.remote_address();
            // One timeout covers the TLS handshake and the control stream's first bytes: a
            // peer that stalls in either holds a task just as long.
            let handshake = async {
                let connection = incoming.await?;
                let control = connection.accept_bi().await?;
                Ok::<_, quinn::ConnectionError>((connection, control))
            };
            match tokio::time::timeout(node.handshake_timeout, handshake).await {
                Ok(Ok((connection, control))) => {
                    let limit = transport_frame_limit(node.limits.max_frame_bytes);
                    let transport = QuicTransport::new(connection, control, limit);
                    session::run(node, transport, TransportKind::Quic, admitted, token).await;
                }
                Ok(Err(error)) => tracing::debug!(%error, %peer, "QUIC handshake failed"),
                Err(_) => tracing::debug!(%peer, "QUIC handshake timed out"),
            }
        });
    }
    // No new connections; the open ones finish their drain with the session token.
    endpoint.set_server_config(None);
    endpoint.wait_idle().await;
    tracing::info!("quic listener stopped");
}

/// Checks the connection limits before the handshake: returns the connection with its place,
/// or `None` once it was refused or asked to prove its address.
///
/// UDP source addresses can be forged, and each forged first packet would hold a place until
/// the handshake times out; so once the client's address holds half of its budget, or half
/// of the handshake permits are taken, an unproven address is sent a Retry first. A real
/// client answers it (one round trip) and comes back proven; a forged one never does.
fn admit(node: &Node, mut incoming: quinn::Incoming) -> Option<(quinn::Incoming, Admitted)> {
    let peer = incoming.remote_address();
    if !incoming.remote_address_validated() && node.admission.is_under_pressure(peer.ip()) {
        match incoming.retry() {
            Ok(()) => {
                tracing::trace!(%peer, "QUIC address validation asked");
                return None;
            }
            // Only an already validated connection cannot be retried; admit it as it is.
            Err(error) => incoming = error.into_incoming(),
        }
    }
    match node.admission.admit(peer.ip()) {
        Ok(admitted) => Some((incoming, admitted)),
        Err(refusal) => {
            tracing::debug!(%peer, reason = refusal.as_str(), "QUIC connection refused");
            incoming.refuse();
            None
        }
    }
}
