//! The broker carries events between the sessions of all nodes. On one node it is a direct
//! call into the [`Hub`]; the Redis broker ([`redis`]) publishes to the other nodes as well
//! and hands what they publish to the local hub. The broker is never the source of truth: the store is,
//! and a session fills any gap it sees in a room's sequence from the store.

pub mod presence;
pub mod redis;

use std::sync::Arc;

use protocol::{CloseCode, Message, PresenceState, RoomId, UserId};
use serde::{Deserialize, Serialize};

use crate::hub::Hub;
pub use redis::RedisBroker;

/// Something that happened, to be delivered to every interested session on every node. It is
/// also what the Redis broker sends between nodes, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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
        #[serde(with = "close_code_number")]
        code: CloseCode,
    },
}

/// The event bus, whichever kind.
#[derive(Debug, Clone)]
pub enum Broker {
    /// In-process: one node.
    Local(LocalBroker),
    /// Redis pub/sub: several nodes.
    Redis(RedisBroker),
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
            Self::Redis(redis) => redis.publish(event),
        }
    }

    /// Makes sure this node hears the events other nodes publish in `room` before a session
    /// reads the store for it (a no-op on one node).
    pub async fn watch_room(&self, room: &RoomId) {
        if let Self::Redis(redis) = self {
            redis.watch_room(room).await;
        }
    }

    /// Users present in `room`: this node's `local` ones and, with several nodes, those of
    /// the other live nodes. While Redis is down the presence calls answer from this node's
    /// own view at once, so joins and leaves never wait on an unreachable Redis.
    pub async fn online(&self, room: &RoomId, local: Vec<UserId>) -> Vec<UserId> {
        match self {
            Self::Redis(redis) if redis.is_up() => redis.presence().online(room, local).await,
            // One node, or Redis known to be down: this node's own view, at once.
            Self::Local(_) | Self::Redis(_) => local,
        }
    }

    /// The user's first session on this node entered `room`; returns whether the room should
    /// hear of it (not when the user is already there on another node).
    pub async fn arrived(&self, room: &RoomId, user: &UserId) -> bool {
        match self {
            Self::Redis(redis) if redis.is_up() => redis.presence().arrive(room, user).await,
            Self::Local(_) | Self::Redis(_) => true,
        }
    }

    /// The user's last session on this node left `room`; returns whether the room should hear
    /// of it (not when the user is still there on another node).
    pub async fn departed(&self, room: &RoomId, user: &UserId) -> bool {
        match self {
            Self::Redis(redis) if redis.is_up() => redis.presence().depart(room, user).await,
            Self::Local(_) | Self::Redis(_) => true,
        }
    }

    /// A session left a room or went away: a cross-node broker drops the rooms no local
    /// session is in any more.
    pub fn room_left(&self) {
        if let Self::Redis(redis) = self {
            redis.room_left();
        }
    }
}

/// The single-node broker: publishing is dispatching to the local hub.
#[derive(Debug, Clone)]
pub struct LocalBroker {
    hub: Arc<Hub>,
}

/// A close code as its number on the wire between nodes.
mod close_code_number {
    use protocol::CloseCode;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        code: &CloseCode,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(code.number())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<CloseCode, D::Error> {
        let number = u16::deserialize(deserializer)?;
        CloseCode::from_number(number)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown close code {number}")))
    }
}
