//! Requests and replies on the daemon's admin socket. Each is one JSON object on one line
//! (newline-delimited JSON) over a Unix stream socket; the daemon answers every request with
//! exactly one reply line, in order, except `history_export`: its answer is a stream of
//! `export_page` lines ended by one `export_done` (or an `error`), written page by page so
//! neither side ever holds the whole history.
//!
//! User registration takes two requests on one connection, so the password never leaves
//! chatctl: chatctl sends the OPAQUE `RegistrationRequest`, the daemon answers with the
//! `RegistrationResponse`, chatctl sends the `RegistrationUpload` (the password file).

use serde::{Deserialize, Serialize};

use crate::bytes_b64::Base64Bytes;
use crate::frame::Message;
use crate::ids::{RoomId, Seq, UserId};

/// Longest request line the daemon reads, newline included; a longer one is refused and ends
/// the connection. `history_import` batches are the largest requests, so an importer sizes
/// its batches to stay well below this. The admin socket is reachable by operators only,
/// which is why this can be generous: it bounds what one connection makes the daemon buffer.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// A request from chatctl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AdminRequest {
    /// OPAQUE registration, step 1: the client's `RegistrationRequest`.
    RegisterStart {
        /// The user to create, or whose password to change.
        user: UserId,
        /// `RegistrationRequest`, base64url.
        request: Base64Bytes,
    },
    /// OPAQUE registration, step 2: the client's `RegistrationUpload`.
    RegisterFinish {
        /// The user.
        user: UserId,
        /// `RegistrationUpload`, base64url.
        upload: Base64Bytes,
        /// Create a new user (`add`) or replace an existing user's password (`passwd`).
        mode: RegisterMode,
    },
    /// List users.
    UserList,
    /// Disable a user and close their live sessions.
    UserDisable {
        /// The user.
        user: UserId,
    },
    /// Enable a disabled user.
    UserEnable {
        /// The user.
        user: UserId,
    },
    /// Create a room.
    RoomCreate {
        /// The room.
        room: RoomId,
        /// Only members may join.
        private: bool,
    },
    /// List rooms.
    RoomList,
    /// Add a member to a room.
    RoomAddMember {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// Remove a member from a room.
    RoomRemoveMember {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// Daemon status.
    Status,
    /// Set a room's own retention, overriding the daemon's `retention.days`.
    RoomSetRetention {
        /// The room.
        room: RoomId,
        /// Days of history kept; 0 keeps it forever; `null` (absent) returns the room to the
        /// daemon's `retention.days`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        days: Option<u32>,
    },
    /// Export stored messages in `(room, seq)` order. Answered by any number of
    /// `export_page` replies, then one `export_done` (or an `error`, which also ends the
    /// answer).
    HistoryExport {
        /// Only these rooms; empty (absent) means every room, direct rooms included.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rooms: Vec<RoomId>,
        /// Only messages committed at or after this time, milliseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_ms: Option<i64>,
        /// Only messages committed before this time, milliseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<i64>,
    },
    /// Store exported messages as they were (same room, seq, sender, body, time and cmid).
    /// Missing rooms are created; a message whose `(room, seq)` is already stored is skipped,
    /// so importing the same messages twice stores them once. Answered by `imported`.
    HistoryImport {
        /// The messages, at most [`MAX_REQUEST_BYTES`] as one request line.
        messages: Vec<Message>,
    },
    /// List the live sessions on this node, oldest first. Answered by `sessions`.
    SessionList {
        /// Only this user's sessions; absent lists every session, those not logged in yet
        /// included.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserId>,
    },
    /// Close live sessions on this node with close code `kicked`; their clients may
    /// reconnect. Names exactly one of `id` and `user`. Answered by `kicked`.
    SessionKick {
        /// The session, as `session_list` and the `welcome` frame show it; unknown is
        /// `not_found`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Every session of this user; none is not an error (`kicked` with 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserId>,
    },
}

/// Whether a registration creates a user or replaces a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterMode {
    /// Create a new user; fails if the name is taken.
    Create,
    /// Replace the password of an existing user; fails if there is no such user.
    Replace,
}

/// A user as listed by `user_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user name.
    pub name: UserId,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Live sessions on this node.
    pub sessions: u32,
}

/// A room as listed by `room_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room name.
    pub name: RoomId,
    /// Whether only members may join.
    pub private: bool,
    /// Number of members (private rooms) or 0.
    pub members: u32,
    /// Latest sequence number.
    pub last_seq: Seq,
    /// The room's own retention in days, when set (else the daemon's `retention.days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// A live session as listed by `session_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's id on this node, as its `welcome` frame and the daemon's log show it.
    pub id: String,
    /// The logged-in user; absent while the session has not logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// The transport the client connected with (`websocket`).
    pub transport: String,
    /// The client's address and port, as the daemon sees it.
    pub remote: String,
    /// When the connection was accepted, milliseconds since the Unix epoch.
    pub connected_ms: i64,
    /// Rooms the session receives events of (joined rooms, and direct rooms it was sent to).
    pub rooms: u32,
}

/// What a daemon reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Daemon version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Live sessions.
    pub sessions: u32,
    /// Addresses the daemon listens on.
    pub listeners: Vec<String>,
    /// The store backend (`sqlite` or `postgres`).
    pub store: String,
    /// Transactions the group-commit writer has run since start (committed or failed).
    #[serde(default)]
    pub store_commits: u64,
    /// Sends those transactions carried; divided by `store_commits`, the mean batch size.
    #[serde(default)]
    pub store_committed_sends: u64,
    /// Open client connections (logged in or not) per transport, every transport listed.
    #[serde(default)]
    pub connections: Vec<TransportConnections>,
    /// `ok` when a store query answered just now, else why it did not; empty from a daemon
    /// that does not report it.
    #[serde(default)]
    pub store_health: String,
    /// The broker: `ok`, or `degraded` while events between sessions may be late or lost
    /// (sessions then fill gaps from the store); empty from a daemon that does not report it.
    #[serde(default)]
    pub broker: String,
    /// Whether the daemon is shutting down: it accepts no new connections and its sessions
    /// are leaving.
    #[serde(default)]
    pub draining: bool,
    /// Configuration keys changed in the file since start that take effect only after a
    /// restart.
    #[serde(default)]
    pub pending_restart: Vec<String>,
}

/// Open connections of one transport, as `status` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportConnections {
    /// The transport (`websocket`).
    pub transport: String,
    /// Connections open now, in any phase (handshake, login, logged in).
    pub connections: u32,
}

/// The daemon's reply to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AdminReply {
    /// The request succeeded and has nothing to report.
    Done,
    /// Answer to `register_start`: the server's `RegistrationResponse`.
    RegisterChallenge {
        /// `RegistrationResponse`, base64url.
        response: Base64Bytes,
    },
    /// Answer to `user_list`.
    Users {
        /// The users, by name.
        users: Vec<UserInfo>,
    },
    /// Answer to `user_disable`.
    Disabled {
        /// How many live sessions were closed.
        sessions_closed: u32,
    },
    /// Answer to `room_list`.
    Rooms {
        /// The rooms, by name.
        rooms: Vec<RoomInfo>,
    },
    /// Answer to `status`.
    Status(StatusInfo),
    /// The request failed.
    Error {
        /// What kind of failure.
        kind: AdminErrorKind,
        /// What happened and what to do about it.
        message: String,
    },
    /// Part of the answer to `history_export`: the next messages in `(room, seq)` order.
    ExportPage {
        /// The messages of this page (never empty).
        messages: Vec<Message>,
    },
    /// The end of the answer to `history_export`.
    ExportDone {
        /// How many messages all the pages held.
        count: u64,
    },
    /// Answer to `history_import`.
    Imported {
        /// Messages stored.
        inserted: u64,
        /// Messages skipped because their `(room, seq)` was already stored.
        skipped: u64,
    },
    /// Answer to `session_list`.
    Sessions {
        /// The sessions, oldest first.
        sessions: Vec<SessionInfo>,
    },
    /// Answer to `session_kick`.
    Kicked {
        /// How many live sessions were told to close.
        sessions: u32,
    },
}

/// Kinds of admin failures; chatctl maps them to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdminErrorKind {
    /// The named user, room or session does not exist.
    NotFound,
    /// The user or room already exists.
    AlreadyExists,
    /// The request was malformed or invalid.
    Invalid,
    /// The daemon failed; see its log.
    Internal,
}
