//! Transport adapters turn bytes on a connection into complete frames and back, and map
//! close reasons to the transport's close codes. Nothing about rooms, users or storage lives
//! here: the session layer drives every transport through [`Transport`].
//!
//! # Layout
//! - `admission`: the per-address and pending-handshake limits every accept checks first.
//! - `websocket`: tokio-tungstenite listener and per-connection adapter.
//! - `quic`: quinn endpoint and per-connection adapter (a control stream, a stream per room,
//!   datagrams for typing and presence).

pub mod admission;
pub mod quic;
pub mod websocket;

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use protocol::{CloseCode, RoomId};

/// Which outbound lane a frame belongs to. A transport with independent streams (QUIC)
/// gives each room its own, so a lost packet in one room does not stall the others; the
/// WebSocket adapter sends every lane over its one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane<'a> {
    /// Replies, acks and errors.
    Control,
    /// Events of one room.
    Room(&'a RoomId),
    /// Typing and other events that may be dropped under loss.
    Ephemeral,
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer sent a frame larger than the transport accepts.
    #[error("frame too large")]
    TooLarge,
    /// The peer sent something that is never a frame on this transport (a binary WebSocket
    /// message).
    #[error("{0}")]
    NotAFrame(&'static str),
    /// The connection broke.
    #[error("connection failed: {0}")]
    Io(String),
}

/// One client connection, as the session layer sees it.
pub trait Transport: Send {
    /// The next complete frame from the peer, or `None` once the peer has closed.
    ///
    /// # Cancel safety
    /// Cancel-safe: a partially received frame stays buffered in the adapter.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Bytes, TransportError>>> + Send;

    /// Sends one encoded frame on `lane`.
    fn send(
        &mut self,
        lane: Lane<'_>,
        frame: Bytes,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Closes the connection with `code`, flushing what was sent before.
    fn close(&mut self, code: CloseCode, reason: &str) -> impl Future<Output = ()> + Send;

    /// The session left `room`: a transport with a lane per room may release what that lane
    /// holds. Events of the room may still follow (a rejoin), on the same lane.
    fn room_left(&mut self, room: &RoomId) {
        let _ = room;
    }

    /// The peer's address now (a QUIC client may move to another one).
    fn peer(&self) -> SocketAddr;

    /// The transport's name for logs (`ws`, `quic`).
    fn name(&self) -> &'static str;
}

/// Largest frame a transport reads. It is somewhat larger than the protocol limit so that the
/// session can answer an oversized frame with a `frame_too_large` error before closing;
/// beyond this the connection is closed without reading the frame.
pub(crate) fn transport_frame_limit(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_mul(4).max(64 * 1024)
}
