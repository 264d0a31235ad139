//! Pure JSON encoding and decoding of frames. No I/O: a transport hands in one complete
//! frame's bytes (a WebSocket text message, or a length-prefixed QUIC frame) and gets a typed
//! frame or a [`DecodeError`] that says how the session must answer.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error_code::ErrorCode;
use crate::frame::{ClientFrame, ServerFrame};
use crate::ids::RequestId;

/// Why a frame could not be decoded, sorted by what the receiver should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than the receiver's limit; checked before parsing. Close the connection.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON object with a string `type`. Close the connection.
    #[error("malformed frame: {detail}")]
    Malformed {
        /// What the parser said.
        detail: String,
    },
    /// A `type` this side does not know. Answer with an error and keep the connection.
    #[error("unknown frame type `{kind}`")]
    UnknownType {
        /// The unknown type name (truncated).
        kind: String,
        /// The frame's request id, if it had a valid one.
        rid: Option<RequestId>,
    },
    /// A known `type` with a missing or invalid field. Answer with an error and keep the
    /// connection.
    #[error("invalid `{kind}` frame: {detail}")]
    Invalid {
        /// The frame type.
        kind: String,
        /// What was wrong.
        detail: String,
        /// The frame's request id, if it had a valid one.
        rid: Option<RequestId>,
    },
}

impl DecodeError {
    /// The wire error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::Malformed { .. } => ErrorCode::BadFrame,
            Self::UnknownType { .. } => ErrorCode::UnknownFrame,
            Self::Invalid { .. } => ErrorCode::InvalidFrame,
        }
    }

    /// Whether the connection must be closed after reporting this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::Malformed { .. })
    }

    /// The request id to echo in the error reply.
    pub fn rid(&self) -> Option<&RequestId> {
        match self {
            Self::UnknownType { rid, .. } | Self::Invalid { rid, .. } => rid.as_ref(),
            Self::TooLarge { .. } | Self::Malformed { .. } => None,
        }
    }
}

/// Client frame type names, used to tell an unknown type from a known one with a bad field.
const CLIENT_KINDS: &[&str] = &[
    "hello",
    "login_start",
    "login_finish",
    "resume",
    "join",
    "leave",
    "send",
    "history",
    "direct",
    "typing",
    "ping",
];

/// Decodes one client frame, refusing anything longer than `max_len` bytes before parsing.
///
/// # Errors
/// See [`DecodeError`]; each variant says whether the connection survives it.
pub fn decode_client(bytes: &[u8], max_len: usize) -> Result<ClientFrame, DecodeError> {
    decode_frame(bytes, max_len, CLIENT_KINDS)
}

/// Decodes one server frame (used by clients).
///
/// # Errors
/// See [`DecodeError`].
pub fn decode_server(bytes: &[u8], max_len: usize) -> Result<ServerFrame, DecodeError> {
    decode_frame(bytes, max_len, SERVER_KINDS)
}

/// Encodes a server frame. Encoding a frame made of valid typed values cannot fail.
pub fn encode_server(frame: &ServerFrame) -> Bytes {
    Bytes::from(to_json(frame))
}

/// Encodes a client frame.
pub fn encode_client(frame: &ClientFrame) -> Bytes {
    Bytes::from(to_json(frame))
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Frames hold only strings, integers, booleans and vectors of those, all of which
    // serde_json serializes infallibly; the fallback exists only to avoid a panic path.
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// Server frame type names, so a client can skip frame types a newer server added.
const SERVER_KINDS: &[&str] = &[
    "hello",
    "login_challenge",
    "welcome",
    "joined",
    "left",
    "message",
    "acked",
    "history_page",
    "presence",
    "typing",
    "pong",
    "error",
    "going_away",
];

/// The fields read when a full decode fails, to classify the failure. `rid` is read as any
/// JSON value: a non-string `rid` is an invalid field, not a malformed frame.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    rid: Option<serde_json::Value>,
}

fn decode_frame<T: DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
    known_kinds: &[&str],
) -> Result<T, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    // serde also accepts a tagged enum written as an array (`["ping"]`); frames are objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(DecodeError::Malformed {
            detail: "a frame must be a JSON object".to_owned(),
        });
    }
    match serde_json::from_slice::<T>(bytes) {
        Ok(frame) => Ok(frame),
        Err(full_error) => {
            let envelope: Envelope<'_> =
                serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed {
                    detail: e.to_string(),
                })?;
            let rid = envelope
                .rid
                .as_ref()
                .and_then(serde_json::Value::as_str)
                .and_then(|r| RequestId::parse(r).ok());
            let kind: String = envelope.kind.chars().take(40).collect();
            if known_kinds.contains(&envelope.kind.as_ref()) {
                Err(DecodeError::Invalid {
                    kind,
                    detail: full_error.to_string(),
                    rid,
                })
            } else {
                Err(DecodeError::UnknownType { kind, rid })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RoomId, Seq};

    #[test]
    fn decodes_a_join() {
        let frame = decode_client(
            br#"{"type":"join","rid":"r1","room":"lobby","since":4}"#,
            1024,
        )
        .unwrap();
        assert_eq!(
            frame,
            ClientFrame::Join {
                rid: Some(RequestId::parse("r1").unwrap()),
                room: RoomId::parse("lobby").unwrap(),
                since: Some(Seq(4)),
            }
        );
    }

    #[test]
    fn classifies_failures() {
        let too_large = decode_client(&[b' '; 100], 10).unwrap_err();
        assert!(too_large.is_fatal());
        assert_eq!(too_large.code(), ErrorCode::FrameTooLarge);

        let malformed = decode_client(b"not json", 1024).unwrap_err();
        assert!(malformed.is_fatal());
        assert_eq!(malformed.code(), ErrorCode::BadFrame);

        let unknown = decode_client(br#"{"type":"teleport","rid":"x"}"#, 1024).unwrap_err();
        assert!(!unknown.is_fatal());
        assert_eq!(unknown.code(), ErrorCode::UnknownFrame);
        assert_eq!(unknown.rid().map(RequestId::as_str), Some("x"));

        let invalid =
            decode_client(br#"{"type":"join","rid":"y","room":"Bad Room"}"#, 1024).unwrap_err();
        assert!(!invalid.is_fatal());
        assert_eq!(invalid.code(), ErrorCode::InvalidFrame);
        assert_eq!(invalid.rid().map(RequestId::as_str), Some("y"));

        let extra = decode_client(br#"{"type":"ping","bogus":1}"#, 1024).unwrap_err();
        assert_eq!(extra.code(), ErrorCode::InvalidFrame);
    }

    #[test]
    fn server_frames_round_trip() {
        let frame = ServerFrame::error(None, ErrorCode::Busy, "queue full");
        let bytes = encode_server(&frame);
        assert_eq!(decode_server(&bytes, 1024).unwrap(), frame);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""code":"busy""#), "{text}");
        assert!(text.contains(r#""number":10"#), "{text}");
    }
}
