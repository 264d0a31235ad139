//! Identifier newtypes. Each constructor parses, so an invalid name or number cannot be
//! represented past the decoder: a frame with a bad room name fails to decode instead of
//! reaching the session layer.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::{
    MAX_CLIENT_MSG_ID_BYTES, MAX_REQUEST_ID_BYTES, MAX_ROOM_NAME_BYTES, MAX_USER_NAME_BYTES,
};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which identifier kind.
        kind: &'static str,
    },
    /// The value is longer than allowed.
    #[error("{kind} is longer than {max} bytes")]
    TooLong {
        /// Which identifier kind.
        kind: &'static str,
        /// The limit in bytes.
        max: usize,
    },
    /// The value holds a character outside the allowed set.
    #[error("{kind} may only contain {allowed}")]
    BadCharacter {
        /// Which identifier kind.
        kind: &'static str,
        /// A description of the allowed characters.
        allowed: &'static str,
    },
}

const NAME_CHARS: &str =
    "lowercase letters, digits, '-', '_' and '.', starting with a letter or digit";

fn check_name(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(IdError::BadCharacter {
            kind,
            allowed: NAME_CHARS,
        })
    }
}

/// A user name: 1–32 bytes of `[a-z0-9._-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Parses a user name.
    ///
    /// # Errors
    /// When the name is empty, too long or has a character outside `[a-z0-9._-]`.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_name("user name", value, MAX_USER_NAME_BYTES)?;
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Prefix that marks the room holding the direct messages between two users.
pub const DIRECT_ROOM_PREFIX: &str = "dm:";

/// A room name. Ordinary rooms are 1–64 bytes of `[a-z0-9._-]`; the room that holds the direct
/// messages between two users is `dm:<a>:<b>` with the two user names in byte order, so every
/// pair has exactly one such room and no ordinary room can collide with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

impl RoomId {
    /// Parses a room name (ordinary or direct).
    ///
    /// # Errors
    /// When the name is not a valid ordinary room name nor a well-formed direct room name.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if let Some(pair) = value.strip_prefix(DIRECT_ROOM_PREFIX) {
            let (a, b) = pair.split_once(':').ok_or(IdError::BadCharacter {
                kind: "direct room name",
                allowed: "the form dm:<user>:<user>",
            })?;
            let (a, b) = (UserId::parse(a)?, UserId::parse(b)?);
            if a >= b {
                return Err(IdError::BadCharacter {
                    kind: "direct room name",
                    allowed: "two different user names in byte order",
                });
            }
            return Ok(Self(value.to_owned()));
        }
        check_name("room name", value, MAX_ROOM_NAME_BYTES)?;
        Ok(Self(value.to_owned()))
    }

    /// The room that holds the direct messages between `a` and `b`, or `None` when they are
    /// the same user.
    pub fn direct(a: &UserId, b: &UserId) -> Option<Self> {
        let (low, high) = match a.cmp(b) {
            std::cmp::Ordering::Less => (a, b),
            std::cmp::Ordering::Greater => (b, a),
            std::cmp::Ordering::Equal => return None,
        };
        Some(Self(format!("{DIRECT_ROOM_PREFIX}{}:{}", low.0, high.0)))
    }

    /// The two participants when this is a direct-message room.
    pub fn direct_participants(&self) -> Option<(UserId, UserId)> {
        let pair = self.0.strip_prefix(DIRECT_ROOM_PREFIX)?;
        let (a, b) = pair.split_once(':')?;
        Some((UserId(a.to_owned()), UserId(b.to_owned())))
    }

    /// Whether this room holds direct messages.
    pub fn is_direct(&self) -> bool {
        self.0.starts_with(DIRECT_ROOM_PREFIX)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-chosen message id: 1–64 printable ASCII bytes. Resending with the same id is
/// idempotent: the server answers with the first send's ack and stores nothing new.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    /// Parses a client message id.
    ///
    /// # Errors
    /// When it is empty, longer than 64 bytes or holds a non-printable or non-ASCII character.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty {
                kind: "client message id",
            });
        }
        if value.len() > MAX_CLIENT_MSG_ID_BYTES {
            return Err(IdError::TooLong {
                kind: "client message id",
                max: MAX_CLIENT_MSG_ID_BYTES,
            });
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdError::BadCharacter {
                kind: "client message id",
                allowed: "printable ASCII without spaces",
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-chosen request id (1–64 printable ASCII bytes), echoed in the reply so a client
/// can match replies to requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

impl RequestId {
    /// Parses a request id.
    ///
    /// # Errors
    /// When it is empty, longer than 64 bytes or holds a non-printable or non-ASCII character.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty { kind: "request id" });
        }
        if value.len() > MAX_REQUEST_ID_BYTES {
            return Err(IdError::TooLong {
                kind: "request id",
                max: MAX_REQUEST_ID_BYTES,
            });
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdError::BadCharacter {
                kind: "request id",
                allowed: "printable ASCII without spaces",
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message's position in its room: 1 for the first message, then gap-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// Before the first message of any room.
    pub const ZERO: Self = Self(0);

    /// The sequence number after this one.
    #[must_use]
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! string_id_impls {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

string_id_impls!(UserId, RoomId, ClientMsgId, RequestId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_parse_and_refuse() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("a.b-c_9").is_ok());
        assert_eq!(UserId::parse(""), Err(IdError::Empty { kind: "user name" }));
        assert!(matches!(
            UserId::parse("Alice"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            UserId::parse("-x"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            UserId::parse(&"a".repeat(33)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn direct_room_is_ordered_and_unique_per_pair() {
        let (a, b) = (
            UserId::parse("bob").unwrap(),
            UserId::parse("alice").unwrap(),
        );
        let room = RoomId::direct(&a, &b).unwrap();
        assert_eq!(room.as_str(), "dm:alice:bob");
        assert_eq!(RoomId::direct(&b, &a), Some(room.clone()));
        assert_eq!(room.direct_participants(), Some((b, a.clone())));
        assert!(RoomId::direct(&a, &a).is_none());
        assert!(RoomId::parse("dm:bob:alice").is_err());
        assert!(RoomId::parse("dm:alice").is_err());
        assert_eq!(RoomId::parse("dm:alice:bob").unwrap(), room);
    }

    #[test]
    fn ids_refuse_bad_json() {
        let bad: Result<RoomId, _> = serde_json::from_str("\"Has Space\"");
        assert!(bad.is_err());
        let ok: ClientMsgId = serde_json::from_str("\"c-1\"").unwrap();
        assert_eq!(ok.as_str(), "c-1");
        assert!(ClientMsgId::parse("has space").is_err());
    }
}
