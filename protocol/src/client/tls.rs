//! TLS for `wss://` and `quic://` connections: the one rustls client configuration (ring
//! provider, TLS 1.2 and 1.3) whose certificate verifier is chosen by
//! [`ClientOptions::trust`]:
//!
//! - [`ServerTrust::WebpkiRoots`]: a chain to Mozilla's CA list (compiled in) or to one of
//!   [`ClientOptions::extra_root_certificates`], naming the host, within its dates;
//! - [`ServerTrust::SystemRoots`]: the same checks against the operating system's trust store
//!   plus the extra roots;
//! - [`ServerTrust::Pinned`]: exactly the certificate with the pinned SHA-256, whatever its
//!   issuer, names and dates. This is how a client trusts the self-signed certificate chatd
//!   makes for its QUIC listener when it has none from a CA: there is no CA to chain to, and
//!   the fingerprint the server logs at start is the whole of what the client needs to know.
//!
//! Every policy verifies the handshake signature, so a server must hold the certificate's
//! private key. Which certificates are accepted is decided here and only here; the transports
//! take the configuration from [`client_config`] (QUIC sets its ALPN and keeps to TLS 1.3 on
//! its side) or [`connector`] (WebSocket).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_native_certs::CertificateResult;
use tokio_tungstenite::Connector;

use super::error::ClientError;
use super::options::{CertificatePin, ClientOptions, ServerTrust};

/// Whether `url` asks for TLS (`wss://`); URL schemes are case-insensitive.
pub(crate) fn is_tls_url(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"))
}

/// The TLS connector for a `wss://` connection made with `options`.
///
/// # Errors
/// As [`client_config`].
pub(crate) fn connector(options: &ClientOptions) -> Result<Connector, ClientError> {
    Ok(Connector::Rustls(Arc::new(client_config(options)?)))
}

/// The rustls client configuration for a connection made with `options`: ring, TLS 1.2 and
/// 1.3, no client certificate, no ALPN, and the server certificates that
/// [`ClientOptions::trust`] accepts.
///
/// # Errors
/// [`ClientError::Tls`] when an extra root certificate is not one rustls can trust;
/// [`ClientError::Trust`] when the system's trust store has no usable certificate.
pub(crate) fn client_config(options: &ClientOptions) -> Result<ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| ClientError::Tls {
            what: "the TLS protocol versions are not available".to_owned(),
            source,
        })?;
    let builder = match &options.trust {
        ServerTrust::WebpkiRoots => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(with_extra_roots(roots, options)?)
        }
        ServerTrust::SystemRoots => {
            let roots = system_roots(rustls_native_certs::load_native_certs())?;
            builder.with_root_certificates(with_extra_roots(roots, options)?)
        }
        ServerTrust::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(*pin, &provider))),
    };
    Ok(builder.with_no_client_auth())
}

/// `roots` plus [`ClientOptions::extra_root_certificates`], each of which must be usable.
fn with_extra_roots(
    mut roots: RootCertStore,
    options: &ClientOptions,
) -> Result<RootCertStore, ClientError> {
    for (index, certificate) in options.extra_root_certificates.iter().enumerate() {
        roots
            .add(certificate.clone())
            .map_err(|source| ClientError::Tls {
                what: format!("extra root certificate {index} (counting from 0) cannot be trusted"),
                source,
            })?;
    }
    Ok(roots)
}

/// The usable certificates of the system's trust store as loaded. System stores often hold
/// a few certificates rustls cannot parse, and those are skipped; a store with none left
/// would fail every handshake with "unknown issuer", so it is refused here with the reason.
fn system_roots(loaded: CertificateResult) -> Result<RootCertStore, ClientError> {
    let mut roots = RootCertStore::empty();
    let (usable, unusable) = roots.add_parsable_certificates(loaded.certs);
    if usable == 0 {
        let mut why = format!(
            "the system trust store has no usable certificate ({unusable} could not be parsed)"
        );
        for error in &loaded.errors {
            why.push_str("; ");
            why.push_str(&error.to_string());
        }
        why.push_str(
            "; install the system's CA certificates, point SSL_CERT_FILE at a PEM bundle, \
             or trust the webpki roots instead",
        );
        return Err(ClientError::Trust(why));
    }
    if !loaded.errors.is_empty() || unusable > 0 {
        tracing::debug!(
            usable,
            unusable,
            errors = ?loaded.errors,
            "parts of the system trust store were skipped"
        );
    }
    Ok(roots)
}

/// Accepts the one server certificate whose SHA-256 is the pin, and checks handshake
/// signatures against its key as the webpki verifier does.
#[derive(Debug)]
struct PinnedVerifier {
    pin: CertificatePin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(pin: CertificatePin, provider: &CryptoProvider) -> Self {
        Self {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        // The pin names one certificate, so a chain adds nothing to trust.
        _intermediates: &[CertificateDer<'_>],
        // Names and dates are what a CA vouches for; a pinned certificate is trusted as it
        // is, and a self-signed one often names no host the client dials (an IP address).
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = CertificatePin::of_certificate(end_entity);
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    presented,
                    pinned: self.pin,
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server presented another certificate than the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("the server's certificate has SHA-256 {presented}, not the pinned {pinned}")]
struct PinMismatch {
    presented: CertificatePin,
    pinned: CertificatePin,
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::SocketAddr;

    use rcgen::{CertificateParams, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, SupportedProtocolVersion};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    /// What the test server writes once its handshake is done: reading it proves that both
    /// sides finished the handshake.
    const GREETING: &[u8] = b"hello over TLS";

    /// A server's certificate and its key.
    struct Identity {
        certificate: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    impl Identity {
        /// A self-signed certificate for `localhost`, valid now.
        fn localhost() -> Self {
            Self::with_params(&CertificateParams::new(vec!["localhost".to_owned()]).unwrap())
        }

        /// A self-signed certificate for `localhost` that expired in 2001.
        fn expired_localhost() -> Self {
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
            Self::with_params(&params)
        }

        fn with_params(params: &CertificateParams) -> Self {
            let key = KeyPair::generate().unwrap();
            let certificate = params.self_signed(&key).unwrap();
            Self {
                certificate: certificate.der().clone(),
                key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            }
        }

        fn pin(&self) -> CertificatePin {
            CertificatePin::of_certificate(&self.certificate)
        }
    }

    /// Serves one TLS connection on loopback speaking only `version`, and writes
    /// [`GREETING`] once its handshake is done.
    async fn serve_once(
        identity: &Identity,
        version: &'static SupportedProtocolVersion,
    ) -> SocketAddr {
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![identity.certificate.clone()], identity.key.clone_key())
                .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // A refused handshake is the client's to report; the server just stops.
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                tls.write_all(GREETING).await.unwrap();
                tls.shutdown().await.unwrap();
            }
        });
        address
    }

    /// Connects to `address` as `server_name` with the configuration `options` makes, and
    /// reads what the server sends.
    async fn connect(
        options: &ClientOptions,
        address: SocketAddr,
        server_name: &str,
    ) -> io::Result<Vec<u8>> {
        let connector = TlsConnector::from(Arc::new(client_config(options).unwrap()));
        let tcp = TcpStream::connect(address).await?;
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        let mut received = Vec::new();
        tls.read_to_end(&mut received).await?;
        Ok(received)
    }

    /// Connects as `localhost` to a TLS 1.3 server with `identity`.
    async fn handshake(options: &ClientOptions, identity: &Identity) -> io::Result<Vec<u8>> {
        let address = serve_once(identity, &rustls::version::TLS13).await;
        connect(options, address, "localhost").await
    }

    /// The certificate error that failed a handshake; panics when it failed otherwise.
    fn certificate_error(error: &io::Error) -> &CertificateError {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(why)) => why,
            _ => panic!("not a certificate error: {error:?}"),
        }
    }

    fn pinned(identity: &Identity) -> ClientOptions {
        ClientOptions {
            trust: ServerTrust::Pinned(identity.pin()),
            ..ClientOptions::default()
        }
    }

    fn with_extra_root(identity: &Identity) -> ClientOptions {
        ClientOptions {
            extra_root_certificates: vec![identity.certificate.clone()],
            ..ClientOptions::default()
        }
    }

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

    #[tokio::test]
    async fn the_pinned_certificate_is_accepted_over_tls_1_2_and_1_3() {
        let identity = Identity::localhost();
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let address = serve_once(&identity, version).await;
            let received = connect(&pinned(&identity), address, "localhost").await;
            assert_eq!(received.unwrap(), GREETING, "{version:?}");
        }
    }

    #[tokio::test]
    async fn a_pin_ignores_the_certificates_names_and_dates() {
        let identity = Identity::expired_localhost();
        let address = serve_once(&identity, &rustls::version::TLS13).await;
        let received = connect(&pinned(&identity), address, "chat.example.org").await;
        assert_eq!(received.unwrap(), GREETING);
    }

    #[tokio::test]
    async fn another_certificate_than_the_pinned_one_is_refused() {
        let server = Identity::localhost();
        let other = Identity::localhost();
        let error = handshake(&pinned(&other), &server).await.unwrap_err();
        let CertificateError::Other(why) = certificate_error(&error) else {
            panic!("refused for another reason: {error:?}");
        };
        assert_eq!(
            why.to_string(),
            format!(
                "the server's certificate has SHA-256 {}, not the pinned {}",
                server.pin(),
                other.pin()
            )
        );
    }

    #[tokio::test]
    async fn the_webpki_roots_alone_refuse_a_self_signed_certificate() {
        let identity = Identity::localhost();
        let error = handshake(&ClientOptions::default(), &identity)
            .await
            .unwrap_err();
        assert_eq!(certificate_error(&error), &CertificateError::UnknownIssuer);
    }

    #[tokio::test]
    async fn a_self_signed_extra_root_is_trusted_for_the_names_it_holds() {
        let identity = Identity::localhost();
        let options = with_extra_root(&identity);
        assert_eq!(handshake(&options, &identity).await.unwrap(), GREETING);

        let address = serve_once(&identity, &rustls::version::TLS13).await;
        let error = connect(&options, address, "chat.example.org")
            .await
            .unwrap_err();
        assert!(
            matches!(
                certificate_error(&error),
                CertificateError::NotValidForNameContext { .. }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_extra_root_does_not_excuse_an_expired_certificate() {
        let identity = Identity::expired_localhost();
        let error = handshake(&with_extra_root(&identity), &identity)
            .await
            .unwrap_err();
        assert!(
            matches!(
                certificate_error(&error),
                CertificateError::ExpiredContext { .. }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_system_store_without_usable_certificates_is_refused() {
        let mut loaded = CertificateResult::default();
        loaded.certs.push(CertificateDer::from(b"not DER".to_vec()));
        let Err(error) = system_roots(loaded) else {
            panic!("an unusable store was accepted");
        };
        assert!(matches!(error, ClientError::Trust(_)), "{error}");
        assert!(
            error.to_string().contains(
                "the system trust store has no usable certificate (1 could not be parsed)"
            ),
            "{error}"
        );

        let empty = system_roots(CertificateResult::default());
        assert!(matches!(empty, Err(ClientError::Trust(_))), "{empty:?}");
    }

    #[test]
    fn a_system_store_keeps_its_usable_certificates() {
        let mut loaded = CertificateResult::default();
        loaded.certs.push(CertificateDer::from(b"not DER".to_vec()));
        loaded.certs.push(Identity::localhost().certificate);
        assert_eq!(system_roots(loaded).unwrap().len(), 1);
    }
}
