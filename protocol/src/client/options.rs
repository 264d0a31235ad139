//! [`ClientOptions`]: the knobs of a client connection, with defaults that suit an
//! interactive client; [`ServerTrust`]: which server certificates a `wss://` or `quic://`
//! connection accepts, and [`CertificatePin`], the fingerprint that pins one.
//!
//! Most servers have a certificate from a public CA, which the default
//! [`ServerTrust::WebpkiRoots`] accepts. A server with a certificate from a private CA adds
//! that CA to [`ClientOptions::extra_root_certificates`], or installs it in the system's store
//! and uses [`ServerTrust::SystemRoots`]. Pinning exists for the server that has no CA at all:
//! chatd makes itself a self-signed certificate for QUIC when none is configured and logs its
//! SHA-256 at start, and [`ServerTrust::Pinned`] accepts exactly that certificate.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};

use super::error::ClientError;

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
    /// Which server certificates `wss://` and `quic://` connections accept. Default
    /// [`ServerTrust::WebpkiRoots`].
    pub trust: ServerTrust,
    /// CA or self-signed certificates (DER) trusted for `wss://` and `quic://` in addition to
    /// the roots [`trust`](Self::trust) names (the webpki or the system's roots): for a server
    /// whose certificate a private CA issued. The server's certificate must still name the host
    /// in the URL and be within its validity dates. Ignored by [`ServerTrust::Pinned`].
    /// Default none.
    pub extra_root_certificates: Vec<CertificateDer<'static>>,
    /// QUIC only: send a keep-alive when the connection has been quiet this long, so the
    /// NAT in front of a phone keeps its mapping; zero sends none. Default 10 s.
    pub quic_keep_alive: Duration,
    /// QUIC only: give the connection up after hearing nothing from the server for this
    /// long (the server's own timeout applies if smaller). Default 30 s.
    pub quic_idle_timeout: Duration,
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
            trust: ServerTrust::default(),
            extra_root_certificates: Vec::new(),
            quic_keep_alive: Duration::from_secs(10),
            quic_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Which server certificates a connection accepts ([`ClientOptions::trust`]). Every policy
/// checks that the server holds the certificate's private key (the handshake signature).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerTrust {
    /// A certificate that chains to a root of Mozilla's CA list (compiled in, so the same on
    /// every machine) or to one of [`ClientOptions::extra_root_certificates`], names the host
    /// in the URL and is within its validity dates.
    #[default]
    WebpkiRoots,
    /// As [`WebpkiRoots`](Self::WebpkiRoots), with the operating system's trust store in place
    /// of Mozilla's list: for machines whose administrator adds or removes CAs there. On Linux
    /// and the BSDs the store is the OpenSSL one (`/etc/ssl/certs` and the like), or the files
    /// that `SSL_CERT_FILE` and `SSL_CERT_DIR` name when set. It is read at every connect; a
    /// store without one usable certificate fails the connect with [`ClientError::Trust`].
    SystemRoots,
    /// Exactly the certificate whose SHA-256 is the pin, whatever its issuer, names or
    /// validity dates: for a server with a self-signed certificate (chatd's QUIC listener
    /// makes one when none is configured, and logs this fingerprint at start). Only the
    /// server's own certificate counts; intermediates it sends are ignored. A new server
    /// certificate needs the new pin.
    Pinned(CertificatePin),
}

/// The SHA-256 of a certificate's DER encoding, which [`ServerTrust::Pinned`] accepts.
///
/// Parses from 64 hex digits in either case, bare or with a colon between every two digits
/// (as `openssl x509 -noout -fingerprint -sha256 -in cert.pem` prints them after its
/// `sha256 Fingerprint=`); whitespace around them is ignored. Displays as 64 lowercase hex
/// digits without colons, the form chatd logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificatePin([u8; SHA256_LEN]);

const SHA256_LEN: usize = 32;

impl CertificatePin {
    /// The pin for a SHA-256 digest already computed.
    pub const fn from_sha256(digest: [u8; SHA256_LEN]) -> Self {
        Self(digest)
    }

    /// The pin that accepts `certificate`.
    pub fn of_certificate(certificate: &CertificateDer<'_>) -> Self {
        Self(Sha256::digest(certificate.as_ref()).into())
    }

    /// Parses a fingerprint: 64 hex digits, bare or as 32 colon-separated pairs.
    ///
    /// # Errors
    /// [`ClientError::Trust`] saying what is wrong (length, a character that is not a hex
    /// digit, or colons that do not separate every pair).
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let text = text.trim();
        if let Some(bad) = text.chars().find(|c| *c != ':' && !c.is_ascii_hexdigit()) {
            return Err(ClientError::Trust(format!(
                "`{}` is not a hex digit; a certificate pin is {} hex digits",
                bad.escape_default(),
                2 * SHA256_LEN
            )));
        }
        let digits = if text.contains(':') {
            let pairs: Vec<&str> = text.split(':').collect();
            if pairs.len() != SHA256_LEN || pairs.iter().any(|pair| pair.len() != 2) {
                return Err(ClientError::Trust(
                    "with colons, a certificate pin is 32 pairs of hex digits with one colon \
                     between pairs (ab:cd:...)"
                        .to_owned(),
                ));
            }
            pairs.concat()
        } else {
            text.to_owned()
        };
        // Every byte is an ASCII hex digit now.
        let nibbles: Vec<u8> = digits.bytes().filter_map(nibble).collect();
        if nibbles.len() != 2 * SHA256_LEN {
            return Err(ClientError::Trust(format!(
                "a certificate pin is {} hex digits (a SHA-256), not {}",
                2 * SHA256_LEN,
                nibbles.len()
            )));
        }
        let mut digest = [0; SHA256_LEN];
        for (byte, pair) in digest.iter_mut().zip(nibbles.chunks_exact(2)) {
            *byte = pair[0] << 4 | pair[1];
        }
        Ok(Self(digest))
    }

    /// The SHA-256 digest.
    pub const fn as_bytes(&self) -> &[u8; SHA256_LEN] {
        &self.0
    }
}

impl FromStr for CertificatePin {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for CertificatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for CertificatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificatePin({self})")
    }
}

/// The value of an ASCII hex digit in either case.
fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of no bytes at all, a well-known digest.
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn refusal(text: &str) -> String {
        match CertificatePin::parse(text) {
            Ok(pin) => panic!("{text:?} parsed as {pin}"),
            Err(error @ ClientError::Trust(_)) => error.to_string(),
            Err(error) => panic!("{text:?} refused with the wrong variant: {error:?}"),
        }
    }

    #[test]
    fn a_pin_is_the_sha256_of_the_certificates_der() {
        let pin = CertificatePin::of_certificate(&CertificateDer::from(Vec::new()));
        assert_eq!(pin.to_string(), EMPTY_SHA256);
        assert_eq!(pin.as_bytes()[..4], [0xe3, 0xb0, 0xc4, 0x42]);
        assert_eq!(CertificatePin::from_sha256(*pin.as_bytes()), pin);
    }

    #[test]
    fn bare_and_colon_separated_hex_in_either_case_parse_alike() {
        let bare = CertificatePin::parse(EMPTY_SHA256).unwrap();
        let openssl = EMPTY_SHA256
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert!(openssl.starts_with("E3:B0:C4:42:"), "{openssl}");
        for text in [
            EMPTY_SHA256.to_owned(),
            EMPTY_SHA256.to_uppercase(),
            openssl.clone(),
            openssl.to_lowercase(),
            format!("  {EMPTY_SHA256}\n"),
        ] {
            assert_eq!(CertificatePin::parse(&text).unwrap(), bare, "{text:?}");
            assert_eq!(text.parse::<CertificatePin>().unwrap(), bare, "{text:?}");
        }
        assert_eq!(
            bare.to_string(),
            EMPTY_SHA256,
            "displays as lowercase without colons"
        );
        assert_eq!(
            format!("{bare:?}"),
            format!("CertificatePin({EMPTY_SHA256})")
        );
    }

    #[test]
    fn a_pin_of_the_wrong_length_is_refused() {
        for (text, digits) in [
            ("", 0),
            (&EMPTY_SHA256[..62], 62),
            (&EMPTY_SHA256[..63], 63),
            (&format!("{EMPTY_SHA256}00"), 66),
        ] {
            assert_eq!(
                refusal(text),
                format!(
                    "unusable server trust setting: a certificate pin is 64 hex digits \
                     (a SHA-256), not {digits}"
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_pin_with_a_character_that_is_not_hex_is_refused() {
        let mut text = EMPTY_SHA256.to_owned();
        text.replace_range(10..11, "g");
        assert!(refusal(&text).contains("`g` is not a hex digit"), "{text}");
        text.replace_range(10..11, "é");
        assert!(
            refusal(&text).contains("`\\u{e9}` is not a hex digit"),
            "{text}"
        );
        assert!(refusal("sha256 Fingerprint=E3:B0").contains("is not a hex digit"));
        let spaced = format!("{} {}", &EMPTY_SHA256[..32], &EMPTY_SHA256[32..]);
        assert!(
            refusal(&spaced).contains("` ` is not a hex digit"),
            "{spaced}"
        );
    }

    #[test]
    fn colons_anywhere_but_between_every_pair_are_refused() {
        let pairs: Vec<&str> = (0..32).map(|i| &EMPTY_SHA256[2 * i..2 * i + 2]).collect();
        let good = pairs.join(":");
        assert!(CertificatePin::parse(&good).is_ok());
        for text in [
            format!(":{good}"),
            format!("{good}:"),
            good.replacen(':', "::", 1),
            good.replacen(':', "", 1),
            pairs[..31].join(":"),
            format!("{}:{}", &EMPTY_SHA256[..3], &EMPTY_SHA256[3..]),
            format!("{}:{}", &EMPTY_SHA256[..32], &EMPTY_SHA256[32..]),
        ] {
            assert!(
                refusal(&text).contains("32 pairs of hex digits with one colon between pairs"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_default_trust_is_the_webpki_roots() {
        assert_eq!(ClientOptions::default().trust, ServerTrust::WebpkiRoots);
    }
}
