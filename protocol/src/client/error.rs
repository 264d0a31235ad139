//! [`ClientError`]: every way a client call can fail, sorted by what the caller does next
//! (reconnect, retry later, log in again, or give up).

use std::path::PathBuf;
use std::time::Duration;

use crate::error_code::{CloseCode, ErrorCode};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection could not be opened (bad URL, refused, unreachable, TLS, WebSocket or
    /// QUIC handshake failed, e.g. a server whose certificate is not trusted).
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL that was dialled.
        url: String,
        /// What the WebSocket or QUIC library said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection is closed; the code is the server's close code when it sent one.
    /// Reconnect (and resume) to go on.
    #[error("connection closed{}", close_reason(*.0))]
    Closed(Option<CloseCode>),
    /// The server refused the request with an `error` frame.
    #[error("server refused the request: {code}: {message}")]
    Server {
        /// The wire error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
        /// For retryable codes: how long to wait before sending the same request again.
        retry_after: Option<Duration>,
    },
    /// No reply arrived within [`ClientOptions::request_timeout`](super::ClientOptions), or
    /// on the admin socket within [`ADMIN_REPLY_TIMEOUT`](super::admin::ADMIN_REPLY_TIMEOUT).
    #[error("no reply within the request timeout")]
    Timeout,
    /// The login failed on the client side: wrong user name or password (OPAQUE lets the
    /// client detect this before sending its final message), or no resume token to resume
    /// with.
    #[error("login failed: {0}")]
    Login(String),
    /// The server broke the protocol (an unexpected or undecodable reply).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Writing to the connection failed; it is unusable.
    #[error("cannot send on the connection")]
    Send(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The admin socket could not be opened. The source's `kind()` says why: `NotFound` (no
    /// daemon there), `ConnectionRefused` (a stale socket file), `PermissionDenied` (not in
    /// the socket's group).
    #[error("cannot connect to the admin socket {}", path.display())]
    AdminConnect {
        /// The socket path.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the admin connection failed; it is unusable.
    #[error("the admin connection on {} broke", path.display())]
    AdminBroken {
        /// The socket path.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The daemon closed the admin connection without answering the request.
    #[error("the admin connection on {} was closed without a reply", path.display())]
    AdminClosed {
        /// The socket path.
        path: PathBuf,
    },
    /// The admin reply is not one this build knows: the daemon runs another version.
    #[error("undecodable reply on the admin socket")]
    AdminDecode(#[source] serde_json::Error),
    /// OPAQUE cannot use the password (empty, or longer than 65 535 bytes).
    #[error("unusable password: {0}")]
    Password(String),
    /// The client half of an OPAQUE registration failed.
    #[error("registration failed: {0}")]
    Registration(String),
    /// The call needs another transport (e.g. [`Client::rebind`](super::Client::rebind) on a
    /// WebSocket connection).
    #[error("unsupported on this connection: {0}")]
    Unsupported(String),
    /// The server-trust settings cannot be used: a [`CertificatePin`](super::options::CertificatePin)
    /// that is not 64 hex digits, or [`ServerTrust::SystemRoots`](super::options::ServerTrust)
    /// on a system whose trust store has no usable certificate.
    #[error("unusable server trust setting: {0}")]
    Trust(String),
    /// The TLS settings for a `wss://` or `quic://` connection cannot be used, e.g. an entry of
    /// [`ClientOptions::extra_root_certificates`](super::ClientOptions) that is not a
    /// certificate.
    #[error("TLS setup failed: {what}")]
    Tls {
        /// Which setting is at fault.
        what: String,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

impl ClientError {
    /// Whether sending the same request again later may succeed: a retryable server error
    /// (`rate_limited`, `busy`, `unavailable`) or a timeout.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Server { code, .. } => code.is_retryable(),
            Self::Timeout => true,
            Self::Connect { .. }
            | Self::Closed(_)
            | Self::Login(_)
            | Self::Protocol(_)
            | Self::Send(_)
            | Self::AdminConnect { .. }
            | Self::AdminBroken { .. }
            | Self::AdminClosed { .. }
            | Self::AdminDecode(_)
            | Self::Password(_)
            | Self::Registration(_)
            | Self::Unsupported(_)
            | Self::Trust(_)
            | Self::Tls { .. } => false,
        }
    }

    /// The wire error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            Self::Connect { .. }
            | Self::Closed(_)
            | Self::Timeout
            | Self::Login(_)
            | Self::Protocol(_)
            | Self::Send(_)
            | Self::AdminConnect { .. }
            | Self::AdminBroken { .. }
            | Self::AdminClosed { .. }
            | Self::AdminDecode(_)
            | Self::Password(_)
            | Self::Registration(_)
            | Self::Unsupported(_)
            | Self::Trust(_)
            | Self::Tls { .. } => None,
        }
    }
}

fn close_reason(code: Option<CloseCode>) -> String {
    code.map(|c| format!(" with code {} ({})", c.number(), c.name()))
        .unwrap_or_default()
}
