//! Wire error codes and close codes. Names and numbers are stable: a number is never reused
//! and new codes are only added at the end. `docs/protocol.md` documents each one; a test
//! checks the document lists every code.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $num:literal => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $num, )*
        }

        impl $name {
            /// Every code, in number order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The stable number.
            pub fn number(self) -> $repr {
                self as $repr
            }

            /// The stable name (`snake_case`).
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            /// Looks a code up by its number.
            pub fn from_number(number: $repr) -> Option<Self> {
                match number { $($num => Some(Self::$variant),)* _ => None }
            }

            /// Looks a code up by its name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($text => Some(Self::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

wire_enum! {
    /// Why a request failed. Sent in an `error` frame as `code` (the name) and `number`.
    pub enum ErrorCode: u16 {
        /// The frame is not valid JSON or has no `type`. The connection is closed.
        BadFrame = 1 => "bad_frame",
        /// The frame's `type` is unknown to this server. The connection stays open, so a newer
        /// client can probe for features.
        UnknownFrame = 2 => "unknown_frame",
        /// A known frame with a missing or invalid field (bad room name, bad `rid`, ...).
        InvalidFrame = 3 => "invalid_frame",
        /// The `hello` named a protocol version this server does not speak. The connection is
        /// closed.
        UnsupportedVersion = 4 => "unsupported_version",
        /// The frame is larger than the server's `max_frame_bytes`. The connection is closed.
        FrameTooLarge = 5 => "frame_too_large",
        /// The message body is empty or longer than the server's `max_body_bytes`.
        BodyTooLong = 6 => "body_too_long",
        /// The command needs a logged-in session (or a `hello` first).
        NotLoggedIn = 7 => "not_logged_in",
        /// Wrong user name or password. Unknown users get the same answer.
        LoginFailed = 8 => "login_failed",
        /// Too many requests; `retry_after_ms` says when to try again.
        RateLimited = 9 => "rate_limited",
        /// The server's write queue is full. Nothing was stored; retry with the same client
        /// message id after `retry_after_ms`.
        Busy = 10 => "busy",
        /// No room of that name.
        NoSuchRoom = 11 => "no_such_room",
        /// The room is private and the user is not a member.
        Forbidden = 12 => "forbidden",
        /// The command needs the session to have joined the room first.
        NotJoined = 13 => "not_joined",
        /// The session has joined as many rooms as the server allows.
        TooManyRooms = 14 => "too_many_rooms",
        /// The session already logged in; a second login on one connection is refused.
        AlreadyLoggedIn = 15 => "already_logged_in",
        /// The resume token is unknown, expired or already used. Log in again.
        InvalidToken = 16 => "invalid_token",
        /// The user account is disabled.
        UserDisabled = 17 => "user_disabled",
        /// Direct message to a user that does not exist.
        NoSuchUser = 18 => "no_such_user",
        /// The store is unreachable. Nothing was stored; retry after `retry_after_ms`.
        Unavailable = 19 => "unavailable",
        /// An unexpected server fault. Details are in the server log, never on the wire.
        Internal = 20 => "internal",
        /// A login or hello arrived out of order (for example `login_finish` before
        /// `login_start`).
        UnexpectedFrame = 21 => "unexpected_frame",
    }
}

impl ErrorCode {
    /// Whether the same request may succeed if sent again later unchanged.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Busy | Self::Unavailable)
    }
}

wire_enum! {
    /// Why the server closed a connection. The number is the WebSocket close code itself
    /// (standard codes below 4000, application codes from 4001) and the QUIC application error
    /// code.
    pub enum CloseCode: u16 {
        /// Normal close requested by the client.
        Normal = 1000 => "normal",
        /// The server is shutting down or restarting; reconnect after the delay in the
        /// preceding `going_away` frame and resume.
        GoingAway = 1001 => "going_away",
        /// The client broke the protocol (malformed frame, wrong version).
        ProtocolError = 1002 => "protocol_error",
        /// A frame was larger than `max_frame_bytes`.
        FrameTooLarge = 1009 => "frame_too_large",
        /// An unexpected server fault.
        InternalError = 1011 => "internal_error",
        /// The client did not read its events fast enough; reconnect and resume with `since`.
        SlowConsumer = 4001 => "slow_consumer",
        /// The hello and login were not finished in time.
        HandshakeTimeout = 4002 => "handshake_timeout",
        /// An operator disabled the user.
        UserDisabled = 4003 => "user_disabled",
        /// The `hello` named an unsupported protocol version.
        UnsupportedVersion = 4004 => "unsupported_version",
        /// The client sent frames faster than its send limit for too long.
        RateLimited = 4005 => "rate_limited",
        /// An operator closed the session (`chatctl session kick`). The account is unaffected:
        /// reconnect with backoff and resume.
        Kicked = 4006 => "kicked",
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{name}`")))
    }
}

impl Serialize for CloseCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for CloseCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown close code `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_number(code.number()), Some(*code));
            assert_eq!(ErrorCode::from_name(code.name()), Some(*code));
            assert!(seen.insert(code.number()));
        }
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_number(code.number()), Some(*code));
            assert_eq!(CloseCode::from_name(code.name()), Some(*code));
        }
    }
}
