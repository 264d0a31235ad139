//! [`Event`]: what the server pushes without being asked (messages, presence, typing,
//! shutdown notices) and the end of the connection, as the application reads them with
//! [`Client::next_event`](super::Client::next_event).

use std::time::Duration;

use crate::error_code::{CloseCode, ErrorCode};
use crate::frame::{Message, PresenceState, ServerFrame};
use crate::ids::{RoomId, UserId};

/// Something that happened on the connection without a request of this client's waiting
/// for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message in a joined room, live or replayed after a join with `since`; the sender gets
    /// its own messages too. Never a duplicate: messages at or below the room's last seen
    /// sequence number are dropped.
    Message(Message),
    /// Someone entered, left, came back to or dropped out of a joined room.
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
    /// The server is about to close the connection; reconnect after the delay.
    GoingAway {
        /// Why.
        reason: String,
        /// How long to wait before reconnecting.
        reconnect_after: Duration,
    },
    /// An `error` frame that answers no pending request: a failed `typing`, or a fatal error
    /// the server reports just before it closes the connection.
    Error {
        /// The wire error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The connection ended; the code is the server's close code when it sent one. The last
    /// event of a connection.
    Closed(Option<CloseCode>),
}

impl Event {
    /// The event a server frame carries, or `None` for a reply or a frame that means nothing
    /// to the application on its own.
    pub(crate) fn from_frame(frame: ServerFrame) -> Option<Self> {
        match frame {
            ServerFrame::Message(message) => Some(Self::Message(message)),
            ServerFrame::Presence { room, user, state } => {
                Some(Self::Presence { room, user, state })
            }
            ServerFrame::Typing { room, user } => Some(Self::Typing { room, user }),
            ServerFrame::GoingAway {
                reason,
                reconnect_after_ms,
            } => Some(Self::GoingAway {
                reason,
                reconnect_after: Duration::from_millis(reconnect_after_ms),
            }),
            ServerFrame::Error { code, message, .. } => Some(Self::Error { code, message }),
            ServerFrame::Hello { .. }
            | ServerFrame::LoginChallenge { .. }
            | ServerFrame::Welcome { .. }
            | ServerFrame::Joined { .. }
            | ServerFrame::Left { .. }
            | ServerFrame::Acked { .. }
            | ServerFrame::HistoryPage { .. }
            | ServerFrame::Pong { .. } => None,
        }
    }
}
