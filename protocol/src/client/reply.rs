//! Typed replies: the fields of the server frame that answers each request, without the
//! request id, so callers match on structs instead of on [`ServerFrame`](crate::ServerFrame).

use std::time::Duration;

use crate::frame::Message;
use crate::ids::{ClientMsgId, RoomId, Seq, UserId};

/// Login or resume succeeded (`welcome`). `Debug` leaves the resume token out: it is a
/// credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The logged-in user.
    pub user: UserId,
    /// The session's id, for logs and support.
    pub session: String,
    /// The single-use token for the next [`Client::resume`](super::Client::resume); the
    /// client keeps the latest one for [`Client::reconnect`](super::Client::reconnect).
    pub resume_token: String,
    /// How long the token stays valid.
    pub resume_expires_in: Duration,
}

impl std::fmt::Debug for Welcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Welcome")
            .field("user", &self.user)
            .field("session", &self.session)
            .field("resume_expires_in", &self.resume_expires_in)
            .finish_non_exhaustive()
    }
}

/// The session joined a room (`joined`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The room.
    pub room: RoomId,
    /// Users present in the room now, this one included.
    pub online: Vec<UserId>,
    /// Without `since`: the latest page of history, oldest first. With `since`: empty; the
    /// missed messages follow as [`Event::Message`](super::Event::Message).
    pub messages: Vec<Message>,
    /// The room's latest sequence number when the join was served.
    pub last_seq: Seq,
}

/// A sent message was committed (`acked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// The room; for a direct message, the `dm:` room.
    pub room: RoomId,
    /// The message's sequence number.
    pub seq: Seq,
    /// The client message id that was sent.
    pub cmid: ClientMsgId,
    /// Commit time, milliseconds since the Unix epoch.
    pub ts: i64,
}

/// A page of history (`history_page`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The room.
    pub room: RoomId,
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether more messages exist beyond this page in the requested direction.
    pub has_more: bool,
}
