//! Serde for an optional socket address written as text: empty means none. TOML has no null,
//! and an environment variable can only be set to empty, so "off" must be a string too.

use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Writes `None` as `""` and an address as `ip:port` (`[ip]:port` for IPv6).
pub(crate) fn serialize<S: Serializer>(
    address: &Option<SocketAddr>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match address {
        Some(address) => serializer.collect_str(address),
        None => serializer.serialize_str(""),
    }
}

/// Reads `""` (or only spaces) as `None` and anything else as an address.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    deserializer.deserialize_any(OptionalAddress)
}

struct OptionalAddress;

impl Visitor<'_> for OptionalAddress {
    type Value = Option<SocketAddr>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an IP address and port such as \"127.0.0.1:9100\", or \"\" for none")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            E::custom(format!(
                "`{text}` is not an IP address and port; write e.g. \"127.0.0.1:9100\" or \
                 \"[::1]:9100\", or \"\" for none"
            ))
        })
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}
