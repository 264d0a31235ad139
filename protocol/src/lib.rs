//! The chatd wire protocol: the contract between clients, the daemon and chatctl.
//!
//! This crate does no I/O in its default build. A transport hands complete frames to
//! [`codec`] and gets typed frames back; the `client` feature adds an async client on top.
//!
//! # Layout
//! - [`ids`]: identifier newtypes that parse on construction (`UserId`, `RoomId`, `Seq`, ...).
//! - [`frame`]: `ClientFrame` and `ServerFrame`, the JSON frames.
//! - [`codec`]: pure encode/decode with size limits and failure classification.
//! - [`stream_frame`]: length-prefixed frames on QUIC streams, and the QUIC ALPN name.
//! - [`error_code`]: stable wire error codes and close codes.
//! - [`limits`]: protocol-wide ceilings.
//! - [`admin`]: requests and replies on the daemon's admin socket (used by chatctl).
//! - [`bytes_b64`]: base64url payloads (OPAQUE messages).
//! - `opaque_suite` (feature `opaque`): the OPAQUE cipher suite shared with browsers.
//! - `client` (feature `client`): async WebSocket client with login, join, send, resume.

pub mod admin;
pub mod bytes_b64;
#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod error_code;
pub mod frame;
pub mod ids;
pub mod limits;
#[cfg(feature = "opaque")]
pub mod opaque_suite;
pub mod stream_frame;

pub use bytes_b64::Base64Bytes;
pub use codec::{DecodeError, decode_client, decode_server, encode_client, encode_server};
pub use error_code::{CloseCode, ErrorCode};
pub use frame::{ClientFrame, Limits, Message, PresenceState, ServerFrame};
pub use ids::{ClientMsgId, IdError, RequestId, RoomId, Seq, UserId};

/// The protocol version this build speaks. A `hello` with another version is refused with
/// `unsupported_version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An identifier was invalid.
    #[error(transparent)]
    Id(#[from] IdError),
}
