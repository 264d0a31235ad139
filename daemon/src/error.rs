//! The daemon's error type.

use crate::store::StoreError;

/// What can stop the daemon from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The process's metrics recorder could not be installed (another one is in place).
    #[error("cannot record metrics: {0}")]
    Metrics(String),
    /// A listener could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        /// Which listener and address.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Login setup failed (the OPAQUE server keys could not be read or stored).
    #[error("login setup failed: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// The TLS certificate or key could not be loaded (at start-up, or on a reload, which
    /// then keeps the certificate in use).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The Redis broker could not be set up.
    #[error("cannot set up the broker: {0}")]
    Broker(#[from] crate::broker::redis::RedisSetupError),
    /// The QUIC endpoint could not be configured.
    #[error("cannot set up QUIC: {0}")]
    Quic(#[from] crate::transport::quic::QuicSetupError),
}
