//! TLS for `wss://` connections: the rustls client configuration (ring provider, TLS 1.2 and
//! 1.3) that trusts the webpki roots (Mozilla's CA list, compiled in) plus the extra roots in
//! [`ClientOptions::extra_root_certificates`], for servers with a private CA or a
//! self-signed certificate.
//!
//! Which certificates are accepted is decided here and only here, so another policy (such as
//! pinning the server's certificate by fingerprint) replaces the root store in
//! [`connector`] with its own verifier and leaves the connection code alone.

use std::sync::Arc;

use rustls::RootCertStore;
use tokio_tungstenite::Connector;

use super::error::ClientError;
use super::options::ClientOptions;

/// Whether `url` asks for TLS (`wss://`); URL schemes are case-insensitive.
pub(crate) fn is_tls_url(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"))
}

/// The TLS connector for a `wss://` connection made with `options`.
///
/// # Errors
/// [`ClientError::Tls`] when an extra root certificate is not one rustls can trust.
pub(crate) fn connector(options: &ClientOptions) -> Result<Connector, ClientError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (index, certificate) in options.extra_root_certificates.iter().enumerate() {
        roots
            .add(certificate.clone())
            .map_err(|source| ClientError::Tls {
                what: format!("extra root certificate {index} (counting from 0) cannot be trusted"),
                source,
            })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|source| ClientError::Tls {
        what: "the TLS protocol versions are not available".to_owned(),
        source,
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;

    use super::*;

    #[test]
    fn only_wss_urls_use_tls() {
        assert!(is_tls_url("wss://chat.example.org/"));
        assert!(is_tls_url("WSS://chat.example.org"));
        assert!(!is_tls_url("ws://127.0.0.1:7878"));
        assert!(!is_tls_url("wss:"));
        assert!(!is_tls_url(""));
    }

    #[test]
    fn a_malformed_extra_root_is_refused_by_position() {
        let options = ClientOptions {
            extra_root_certificates: vec![CertificateDer::from(b"not DER".to_vec())],
            ..ClientOptions::default()
        };
        let Err(error) = connector(&options) else {
            panic!("a malformed root was accepted");
        };
        assert!(matches!(error, ClientError::Tls { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "TLS setup failed: extra root certificate 0 (counting from 0) cannot be trusted"
        );
    }
}
