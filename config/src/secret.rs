//! [`Secret<T>`]: a configuration value that must not reach logs or `chatd config check`
//! output, such as a database URL holding a password. Reading it takes an explicit
//! [`Secret::expose`], so every place that handles the plain value is easy to find.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// Shown instead of a secret that is set.
const REDACTED: &str = "[redacted]";

/// A value that prints as `[redacted]` in `Debug`, `Display` and `Serialize`.
///
/// An unset secret (equal to `T::default()`, e.g. an empty URL) prints as itself, so
/// `chatd config check` shows that it is unset rather than hiding that fact. Deserializing
/// is transparent: a `Secret<String>` reads a plain string.
///
/// Serializing is lossy on purpose: a set secret serializes as `[redacted]`, so a `Config`
/// serialized and read back has lost its secrets.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The plain value. Do not log it or put it in an error message.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Default + PartialEq> Secret<T> {
    /// Whether the secret holds a value other than `T::default()`.
    pub fn is_set(&self) -> bool {
        self.0 != T::default()
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: fmt::Debug + Default + PartialEq> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_set() {
            f.write_str(REDACTED)
        } else {
            self.0.fmt(f)
        }
    }
}

impl<T: fmt::Display + Default + PartialEq> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_set() {
            f.write_str(REDACTED)
        } else {
            self.0.fmt(f)
        }
    }
}

impl<T: Serialize + Default + PartialEq> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_set() {
            serializer.serialize_str(REDACTED)
        } else {
            self.0.serialize(serializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "postgres://chatd:hunter2@db.internal/chatd";

    #[test]
    fn set_secret_is_redacted_in_debug_display_and_serialize() {
        let secret = Secret::new(URL.to_owned());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.to_string(), "[redacted]");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"[redacted]\"");
        assert_eq!(secret.expose(), URL);
    }

    #[test]
    fn unset_secret_shows_as_empty() {
        let secret = Secret::<String>::default();
        assert!(!secret.is_set());
        assert_eq!(format!("{secret:?}"), "\"\"");
        assert_eq!(secret.to_string(), "");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"\"");
    }

    #[test]
    fn deserializes_transparently() {
        let secret: Secret<String> = serde_json::from_str(&format!("\"{URL}\"")).unwrap();
        assert_eq!(secret.expose(), URL);
        assert_eq!(secret, Secret::from(URL.to_owned()));
    }

    #[test]
    fn redacted_inside_a_derived_debug() {
        #[derive(Debug)]
        struct Holder {
            #[expect(dead_code, reason = "read only through Debug")]
            url: Secret<String>,
        }
        let text = format!(
            "{:?}",
            Holder {
                url: Secret::new(URL.to_owned())
            }
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
