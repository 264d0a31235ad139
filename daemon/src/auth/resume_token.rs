//! Resume tokens: 32 random bytes that let a client that just logged in skip the OPAQUE
//! handshake on its next connection. The client holds the token as base64url without padding;
//! the store holds only its SHA-256, so a leaked database does not leak usable tokens.
//! Expiry and single use are enforced by the store ([`crate::store::Store::take_resume_token`]).

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Random bytes per token: 256 bits, beyond guessing.
const TOKEN_BYTES: usize = 32;

/// Length of a token's text form: 32 bytes in unpadded base64 (`ceil(32 * 4 / 3)`).
const TOKEN_TEXT_LEN: usize = 43;

/// A resume token. Its `Debug` does not show the secret.
pub(crate) struct ResumeToken([u8; TOKEN_BYTES]);

impl ResumeToken {
    /// A fresh random token.
    pub(crate) fn generate() -> Self {
        let mut bytes = [0; TOKEN_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads a token a client sent; `None` when it cannot be one of ours.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        // Checked first so an oversized string is refused without decoding it.
        if text.len() != TOKEN_TEXT_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        bytes.try_into().ok().map(Self)
    }

    /// The text the client keeps.
    pub(crate) fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// What the store keeps.
    pub(crate) fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken([redacted])")
    }
}

/// When a token issued at `now_ms` with lifetime `ttl` expires, in milliseconds since the Unix
/// epoch (saturating: an absurd ttl means "never" rather than an overflow).
pub(crate) fn expires_ms(now_ms: i64, ttl: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_from_its_text() {
        let token = ResumeToken::generate();
        let text = token.to_text();
        assert_eq!(text.len(), TOKEN_TEXT_LEN);
        assert!(!text.contains(['=', '+', '/']));
        let parsed = ResumeToken::parse(&text).unwrap();
        assert_eq!(parsed.hash(), token.hash());
        assert_ne!(ResumeToken::generate().hash(), token.hash());
    }

    #[test]
    fn text_that_is_not_a_token_is_refused() {
        let text = ResumeToken::generate().to_text();
        assert!(ResumeToken::parse("").is_none());
        assert!(ResumeToken::parse(&text[1..]).is_none());
        assert!(ResumeToken::parse(&format!("{text}A")).is_none());
        assert!(ResumeToken::parse(&"!".repeat(TOKEN_TEXT_LEN)).is_none());
        assert!(ResumeToken::parse(&"é".repeat(TOKEN_TEXT_LEN)).is_none());
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = ResumeToken::generate();
        assert!(!format!("{token:?}").contains(&token.to_text()));
    }

    #[test]
    fn expiry_saturates() {
        assert_eq!(expires_ms(1_000, Duration::from_secs(2)), 3_000);
        assert_eq!(expires_ms(1_000, Duration::MAX), i64::MAX);
    }
}
