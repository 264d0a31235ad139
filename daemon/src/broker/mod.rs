//! The broker carries events between the sessions of all nodes. On one node it is a direct
//! call into the [`Hub`]; a cross-node broker publishes to the other nodes as well and hands
//! what they publish to the local hub. The broker is never the source of truth: the store is,
//! and a session fills any gap it sees in a room's sequence from the store.

use std::sync::Arc;

use protocol::{CloseCode, Message, PresenceState, RoomId, UserId};

use crate::hub::Hub;

/// Something that happened, to be delivered to every interested session on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message was committed.
    Message(Message),
    /// A user's presence in a room changed.
    Presence {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
        /// What happened.
        state: PresenceState,
    },
    /// A user is typing in a room.
    Typing {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// Close every session of a user (an operator disabled the account).
    Kick {
        /// The user.
        user: UserId,
        /// The close code to send.
        code: CloseCode,
    },
}

/// The event bus, whichever kind.
#[derive(Debug, Clone)]
pub enum Broker {
    /// In-process: one node.
    Local(LocalBroker),
}

impl Broker {
    /// An in-process broker delivering to `hub`.
    pub fn local(hub: Arc<Hub>) -> Self {
        Self::Local(LocalBroker { hub })
    }

    /// Delivers `event` to every interested session. Never waits on a session: a session that
    /// cannot keep up is cut off by the hub.
    pub fn publish(&self, event: &Event) {
        match self {
            Self::Local(local) => {
                local.hub.dispatch(event);
            }
        }
    }
}

/// The single-node broker: publishing is dispatching to the local hub.
#[derive(Debug, Clone)]
pub struct LocalBroker {
    hub: Arc<Hub>,
}
