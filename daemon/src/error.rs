//! The daemon's error type.

use crate::store::StoreError;

/// What can stop the daemon from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
}
