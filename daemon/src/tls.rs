//! TLS for the WebSocket listener: reads the certificate chain and private key from PEM files,
//! serves them through rustls (ring provider; TLS 1.2 and 1.3), and replaces them on reload.
//!
//! The certificate in use sits behind a resolver that every handshake asks, so a reload only
//! swaps what the resolver hands out: handshakes that start afterwards present the new
//! certificate, while a connection that finished its handshake keeps the session it has.
//! A reload that fails leaves the certificate in use in place.
//!
//! This module does not decide when to reload (SIGHUP is handled by `main.rs` through
//! [`crate::Daemon::reload_tls`]) and knows nothing of WebSocket: [`MaybeTlsStream`] is only
//! the byte stream the WebSocket handshake runs on. The QUIC endpoint shares the same
//! [`ReloadableCertificate`] in a TLS 1.3 configuration of its own ([`quic_server_config`]),
//! so one SIGHUP renews both. Without `[tls]`, QUIC serves a self-signed certificate
//! ([`self_signed`]).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use chatd_config::TlsFiles;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why the TLS certificate or key could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read (missing, no permission).
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("the TLS {what} file {} is not valid PEM: {detail}", path.display())]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        detail: String,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error(
        "the TLS certificate file {} holds no certificate; expected PEM blocks \
         `-----BEGIN CERTIFICATE-----`, the server's certificate first",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key block.
    #[error(
        "the TLS key file {} holds no private key; expected a PEM block `-----BEGIN PRIVATE \
         KEY-----` (PKCS#8), `-----BEGIN RSA PRIVATE KEY-----` or `-----BEGIN EC PRIVATE \
         KEY-----`",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the pair: a key it cannot use, a certificate it cannot parse, or a key
    /// that does not belong to the certificate.
    #[error(
        "the TLS key in {} cannot serve the certificate in {}: {source}",
        key_file.display(),
        cert_file.display()
    )]
    Unusable {
        /// The certificate chain file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// A reload was asked of a daemon that started without TLS.
    #[error("TLS is not enabled in the running daemon; configure [tls] and restart chatd")]
    NotEnabled,
    /// The self-signed QUIC certificate could not be created or stored.
    #[error("cannot create the self-signed QUIC certificate {}: {detail}", path.display())]
    SelfSigned {
        /// The file it was to be written to, or read from.
        path: PathBuf,
        /// What went wrong, and what to do.
        detail: String,
    },
}

/// The server side of TLS: the acceptor for new connections and the certificate they get.
pub struct ServerTls {
    certificate: Arc<ReloadableCertificate>,
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// Loads the certificate chain and key from `files` and builds the server configuration
    /// (ring, TLS 1.2 and 1.3, no client certificates).
    ///
    /// # Errors
    /// [`TlsError`] naming the file that is missing, unreadable, not PEM, or does not fit.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load_certified_key(files, &provider)?;
        let certificate = Arc::new(ReloadableCertificate::new(loaded, provider.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            // TLS 1.2 and 1.3: browsers and proxies still met in the field speak 1.2.
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Unusable {
                cert_file: files.cert_file.clone(),
                key_file: files.key_file.clone(),
                source,
            })?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        Ok(Self {
            certificate,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads `files` again and, when they load, makes them the certificate for every
    /// handshake from now on. Connections already established are not touched.
    ///
    /// # Errors
    /// As [`ServerTls::load`]; the certificate in use then stays.
    pub fn reload(&self, files: &TlsFiles) -> Result<CertificateSummary, TlsError> {
        self.certificate.reload(files)
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> CertificateSummary {
        CertificateSummary::of(&self.certificate.current())
    }

    /// Runs the server side of the TLS handshake on `stream`.
    ///
    /// # Errors
    /// When the handshake fails (the peer does not speak TLS, offers nothing in common, or
    /// goes away).
    pub async fn accept(&self, stream: TcpStream) -> io::Result<MaybeTlsStream> {
        let stream = self.acceptor.accept(stream).await?;
        Ok(MaybeTlsStream::Tls(Box::new(stream)))
    }

    /// The certificate holder, for another listener (QUIC) that should present the same
    /// certificate and follow its reloads.
    pub fn certificate(&self) -> &Arc<ReloadableCertificate> {
        &self.certificate
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The acceptor has no Debug; the certificate says which one is served.
        f.debug_struct("ServerTls")
            .field("certificate", &self.current())
            .finish_non_exhaustive()
    }
}

/// What was loaded, for logs and the reload status: enough to tell two certificates apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// SHA-256 of the server's (first) certificate in DER, in lowercase hex: what
    /// `openssl x509 -noout -fingerprint -sha256` prints, in lowercase and without colons.
    pub sha256: String,
    /// Certificates in the chain, the server's own included.
    pub chain_len: usize,
}

impl CertificateSummary {
    fn of(key: &CertifiedKey) -> Self {
        let sha256 = key
            .cert
            .first()
            .map(|leaf| {
                Sha256::digest(leaf.as_ref())
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            sha256,
            chain_len: key.cert.len(),
        }
    }
}

/// The certificate every handshake gets, replaceable while the server runs.
#[derive(Debug)]
pub struct ReloadableCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl ReloadableCertificate {
    /// Loads the certificate chain and key from `files` (ring provider).
    ///
    /// # Errors
    /// As [`ServerTls::load`].
    pub fn load(files: &TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load_certified_key(files, &provider)?;
        Ok(Arc::new(Self::new(loaded, provider)))
    }

    /// The certificate new handshakes get.
    pub fn summary(&self) -> CertificateSummary {
        CertificateSummary::of(&self.current())
    }

    fn new(key: CertifiedKey, provider: Arc<CryptoProvider>) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
            provider,
        }
    }

    /// Loads `files` and, on success, swaps them in for every later handshake.
    ///
    /// # Errors
    /// As [`ServerTls::load`]; nothing changes then.
    pub fn reload(&self, files: &TlsFiles) -> Result<CertificateSummary, TlsError> {
        let loaded = Arc::new(load_certified_key(files, &self.provider)?);
        let summary = CertificateSummary::of(&loaded);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        Ok(summary)
    }

    fn current(&self) -> Arc<CertifiedKey> {
        // The lock only guards a pointer swap, so a panic elsewhere cannot leave it half
        // written.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls configuration of the QUIC endpoint: TLS 1.3 only (QUIC has no other), the ALPN
/// name of the chatd protocol, no client certificates, and `certificate` for every
/// handshake (so reloads reach QUIC too). No 0-RTT: a replayed early `send` or `resume` would
/// be worse than the round trip it saves.
///
/// # Errors
/// If the ring provider lacked TLS 1.3 (it does not).
pub fn quic_server_config(
    certificate: &Arc<ReloadableCertificate>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&certificate.provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![protocol::stream_frame::QUIC_ALPN.to_vec()];
    Ok(config)
}

/// A connection's byte stream: plain TCP, or TCP under TLS.
#[derive(Debug)]
pub enum MaybeTlsStream {
    /// Plain TCP (`ws://`).
    Plain(TcpStream),
    /// TLS over TCP (`wss://`). Boxed: the TLS state is large and the plain case is common.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }
}

/// Reads both files and has rustls check that the key fits the chain's first certificate.
fn load_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&files.cert_file)?;
    let key = read_key(&files.key_file)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Unusable {
        cert_file: files.cert_file.clone(),
        key_file: files.key_file.clone(),
        source,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read("certificate", path)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error("certificate", path, &error))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => pem_error("key", path, &other),
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(what: &'static str, path: &Path, error: &pem::Error) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        detail: error.to_string(),
    }
}

pub mod self_signed;
#[cfg(test)]
mod tests;
