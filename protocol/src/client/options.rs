//! [`ClientOptions`]: the knobs of a client connection, with defaults that suit an
//! interactive client.

use std::time::Duration;

use rustls::pki_types::CertificateDer;

/// Settings for [`Client::connect`](super::Client::connect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Largest frame accepted from the server, in bytes. A `joined` or `history_page` with a
    /// full page of long messages is far larger than anything a client sends, so this is well
    /// above the server's own `max_frame_bytes`. Default 16 MiB.
    pub max_frame_bytes: usize,
    /// How long to wait for the connection, the `hello` answer and each reply. Default 10 s.
    pub request_timeout: Duration,
    /// Events buffered before the client stops reading the socket (backpressure, which the
    /// server sees as a slow consumer). Default 1024.
    pub event_capacity: usize,
    /// CA or self-signed certificates (DER) trusted for `wss://` in addition to the webpki
    /// roots (Mozilla's CA list): for a server whose certificate a private CA issued. The
    /// server's certificate must still name the host in the URL. Default none.
    pub extra_root_certificates: Vec<CertificateDer<'static>>,
}

/// Default for [`ClientOptions::max_frame_bytes`]: a 500-message history page of 4 KiB
/// bodies is about 2 MiB of JSON, or up to 12 MiB when every character needs a `\u` escape.
pub const DEFAULT_CLIENT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_CLIENT_MAX_FRAME_BYTES,
            request_timeout: Duration::from_secs(10),
            event_capacity: 1024,
            extra_root_certificates: Vec::new(),
        }
    }
}
