//! The frames: what a client may send (`ClientFrame`, imperative) and what a server sends
//! (`ServerFrame`, past-tense events and replies). On the wire each frame is one JSON object
//! whose `type` field names the variant in `snake_case`; `docs/protocol.md` shows each one.
//!
//! Variant order is frozen: new frames are added at the end.

use serde::{Deserialize, Serialize};

use crate::bytes_b64::Base64Bytes;
use crate::error_code::ErrorCode;
use crate::ids::{ClientMsgId, RequestId, RoomId, Seq, UserId};

/// A frame sent by a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientFrame {
    /// First frame on every connection: the protocol version the client speaks.
    Hello {
        /// Protocol version; see [`crate::PROTOCOL_VERSION`].
        version: u32,
        /// Free-form client name and version, for logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// OPAQUE login, first message (KE1).
    LoginStart {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The user name.
        user: UserId,
        /// OPAQUE `CredentialRequest` (KE1), base64url.
        ke1: Base64Bytes,
    },
    /// OPAQUE login, final message (KE3).
    LoginFinish {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// OPAQUE `CredentialFinalization` (KE3), base64url.
        ke3: Base64Bytes,
    },
    /// Log in with a resume token from an earlier `welcome` instead of a password.
    Resume {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The token, as received.
        token: String,
    },
    /// Enter a room and receive its events. With `since`, the server first replays every
    /// message after that sequence number, then goes live.
    Join {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The room.
        room: RoomId,
        /// Last sequence number the client has seen in this room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Seq>,
    },
    /// Stop receiving a room's events.
    Leave {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The room.
        room: RoomId,
    },
    /// Post a message to a joined room.
    Send {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The room.
        room: RoomId,
        /// Client message id; a resend with the same id is answered with the first ack.
        cmid: ClientMsgId,
        /// The text. Never interpreted as markup.
        body: String,
    },
    /// Ask for a page of a room's history.
    History {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The room.
        room: RoomId,
        /// Only messages with a smaller sequence number (page backwards).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Seq>,
        /// Only messages with a larger sequence number (page forwards).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Seq>,
        /// Page size; the server caps it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Send a direct message to another user.
    Direct {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The recipient.
        to: UserId,
        /// Client message id, as for `send`.
        cmid: ClientMsgId,
        /// The text.
        body: String,
    },
    /// Tell the room the user is typing. Not stored, not acknowledged.
    Typing {
        /// The room.
        room: RoomId,
    },
    /// Liveness check; answered with `pong`.
    Ping {
        /// Request id echoed in the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
    },
}

impl ClientFrame {
    /// The request id, if the frame carries one.
    pub fn rid(&self) -> Option<&RequestId> {
        match self {
            Self::LoginStart { rid, .. }
            | Self::LoginFinish { rid, .. }
            | Self::Resume { rid, .. }
            | Self::Join { rid, .. }
            | Self::Leave { rid, .. }
            | Self::Send { rid, .. }
            | Self::History { rid, .. }
            | Self::Direct { rid, .. }
            | Self::Ping { rid } => rid.as_ref(),
            Self::Hello { .. } | Self::Typing { .. } => None,
        }
    }

    /// The `type` name of the frame, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::LoginStart { .. } => "login_start",
            Self::LoginFinish { .. } => "login_finish",
            Self::Resume { .. } => "resume",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Send { .. } => "send",
            Self::History { .. } => "history",
            Self::Direct { .. } => "direct",
            Self::Typing { .. } => "typing",
            Self::Ping { .. } => "ping",
        }
    }
}

/// One stored message as it appears in `message` events, `joined` and `history_page`.
/// Unknown fields are ignored when decoding, so a newer server may add fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The room.
    pub room: RoomId,
    /// Position in the room, gap-free from 1.
    pub seq: Seq,
    /// The sender.
    pub from: UserId,
    /// The text.
    pub body: String,
    /// When the server committed it, in milliseconds since the Unix epoch (UTC).
    pub ts: i64,
    /// The sender's client message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmid: Option<ClientMsgId>,
}

/// The server's limits, announced in its `hello` so clients need not learn them by error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame the server accepts, in bytes.
    pub max_frame_bytes: u32,
    /// Longest message body, in bytes of UTF-8.
    pub max_body_bytes: u32,
    /// Most rooms one session may have joined at once.
    pub max_rooms_per_session: u32,
    /// Largest history page.
    pub max_history_page: u32,
    /// Sustained sends per second per session.
    pub sends_per_sec: u32,
    /// Sends allowed at once above the sustained rate (a full bucket holds
    /// `sends_per_sec + send_burst`).
    pub send_burst: u32,
}

/// A change in who is present in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PresenceState {
    /// The user entered the room (their first session joined it).
    Joined,
    /// The user's last session in the room left it.
    Left,
    /// The user came back: a session rejoined the room with `since` (a resume).
    Online,
    /// The user's last session in the room disconnected without leaving.
    Offline,
}

/// A frame sent by the server. Unknown fields are ignored when decoding (unlike client frames,
/// which a server checks strictly), so a newer server may add fields without breaking clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerFrame {
    /// Answer to `hello`: the version in use and the server's limits.
    Hello {
        /// Protocol version.
        version: u32,
        /// Server name and version.
        server: String,
        /// The limits this server enforces.
        limits: Limits,
    },
    /// OPAQUE login, server message (KE2).
    LoginChallenge {
        /// Echo of the request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// OPAQUE `CredentialResponse` (KE2), base64url.
        ke2: Base64Bytes,
    },
    /// Login (or resume) succeeded.
    Welcome {
        /// Echo of the request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The logged-in user.
        user: UserId,
        /// This session's id, for logs and support.
        session: String,
        /// A single-use token for `resume` on the next connection.
        resume_token: String,
        /// Seconds until the resume token expires.
        resume_expires_in_secs: u64,
    },
    /// The session joined a room.
    Joined {
        /// Echo of the request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The room.
        room: RoomId,
        /// Users present in the room now (including this one).
        online: Vec<UserId>,
        /// Without `since`: the latest page of history, oldest first. With `since`: empty;
        /// the missed messages follow as `message` frames.
        messages: Vec<Message>,
        /// The room's latest sequence number when the join was served.
        last_seq: Seq,
    },
    /// The session left a room.
    Left {
        /// Echo of the request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The room.
        room: RoomId,
    },
    /// A new message in a joined room (or a replayed one after `join` with `since`).
    Message(Message),
    /// The sender's message was committed.
    Acked {
        /// Echo of the request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The room (for a direct message, the `dm:` room).
        room: RoomId,
        /// The message's sequence number.
        seq: Seq,
        /// The client message id that was sent.
        cmid: ClientMsgId,
        /// Commit time, milliseconds since the Unix epoch.
        ts: i64,
    },
    /// Answer to `history`.
    HistoryPage {
        /// Echo of the request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// The room.
        room: RoomId,
        /// The messages, oldest first.
        messages: Vec<Message>,
        /// Whether more messages exist beyond this page in the requested direction.
        has_more: bool,
    },
    /// Someone entered or left a joined room.
    Presence {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
        /// What happened.
        state: PresenceState,
    },
    /// Someone is typing in a joined room.
    Typing {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// Answer to `ping`.
    Pong {
        /// Echo of the request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
    },
    /// A request failed.
    Error {
        /// Echo of the request id, when the failed request had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// Stable name of the error, e.g. `rate_limited`.
        code: ErrorCode,
        /// Stable number of the error (same meaning as `code`).
        number: u16,
        /// Human-readable explanation.
        message: String,
        /// For retryable errors: how long to wait before retrying.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The server is about to close the connection (shutdown or restart).
    GoingAway {
        /// Why.
        reason: String,
        /// Wait this long before reconnecting, so a restart does not cause a reconnect storm.
        reconnect_after_ms: u64,
    },
}

impl ServerFrame {
    /// An `error` frame for `code`.
    pub fn error(rid: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            rid,
            code,
            number: code.number(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// An `error` frame for a retryable `code` with a retry hint.
    pub fn retry_error(
        rid: Option<RequestId>,
        code: ErrorCode,
        message: impl Into<String>,
        retry_after_ms: u64,
    ) -> Self {
        Self::Error {
            rid,
            code,
            number: code.number(),
            message: message.into(),
            retry_after_ms: Some(retry_after_ms),
        }
    }
}
