//! The hub: which local sessions sit in which room, and fan-out of events to them.
//!
//! Each event is encoded once; every recipient gets the same `Bytes`. Pushing never waits:
//! a session whose outbox is full is kicked as a slow consumer (see [`outbox`](mod@outbox)). The lock is
//! a std mutex held only for map updates and non-blocking pushes, never across an await.
//!
//! Direct-message rooms are delivered to every session of both participants, whether or not
//! the session joined the room: the hub subscribes those sessions on the first delivery, so
//! a user sees a new direct message without knowing the room beforehand.
//!
//! The hub also keeps the node's registry of live connections, logged in or not, so operators
//! can list them and close one (`chatctl session`) through the same kick signal that closes
//! slow consumers and disabled users.

pub mod outbox;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use protocol::{PresenceState, RoomId, ServerFrame, UserId, encode_server};

use crate::broker::Event;
pub use outbox::{OutboxItem, OutboxReceiver, OutboxSender, Pushed, outbox};

/// A node-local session number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    /// Reads an id in the form it is shown in (`s` and hex digits, as in `s1a`): operators
    /// copy it from `chatctl session list`, a client's `welcome` or the log.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix('s')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(digits, 16).ok().map(Self)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{:x}", self.0)
    }
}

/// What operators see of a connection besides its user and rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The transport, named as status and metrics name it (`websocket`).
    pub transport: &'static str,
    /// The client's address.
    pub remote: SocketAddr,
    /// When the connection was accepted.
    pub connected: SystemTime,
}

/// A live session as `session list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session.
    pub id: SessionId,
    /// Its user, once logged in.
    pub user: Option<UserId>,
    /// Its connection.
    pub connection: ConnectionInfo,
    /// Rooms it receives events of.
    pub rooms: u32,
}

/// Live subscriptions on this node.
#[derive(Debug, Default)]
pub struct Hub {
    state: Mutex<HubState>,
}

#[derive(Debug, Default)]
struct HubState {
    sessions: HashMap<SessionId, SessionEntry>,
    users: HashMap<UserId, HashSet<SessionId>>,
    rooms: HashMap<RoomId, RoomEntry>,
    /// Every live connection from the moment its transport is up, logged in or not; the
    /// maps above hold only logged-in sessions, for fan-out.
    connections: HashMap<SessionId, Connection>,
}

#[derive(Debug)]
struct Connection {
    info: ConnectionInfo,
    outbox: OutboxSender,
}

#[derive(Debug)]
struct SessionEntry {
    user: UserId,
    outbox: OutboxSender,
    rooms: HashSet<RoomId>,
}

#[derive(Debug, Default)]
struct RoomEntry {
    sessions: HashSet<SessionId>,
    /// Sessions per user in this room: a user is present while the count is above zero.
    present: HashMap<UserId, u32>,
}

/// What a join changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// Users present in the room after the join, by name.
    pub online: Vec<UserId>,
    /// Whether this is the user's first session in the room (presence changed).
    pub user_arrived: bool,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing every session, so recover the guard.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a logged-in session.
    pub fn register(&self, id: SessionId, user: UserId, outbox: OutboxSender) {
        let mut state = self.lock();
        state.users.entry(user.clone()).or_default().insert(id);
        state.sessions.insert(
            id,
            SessionEntry {
                user,
                outbox,
                rooms: HashSet::new(),
            },
        );
    }

    /// Removes a session from every room. Returns the rooms its user is no longer present
    /// in (for `offline` presence).
    pub fn unregister(&self, id: SessionId) -> Vec<RoomId> {
        let mut state = self.lock();
        let Some(entry) = state.sessions.remove(&id) else {
            return Vec::new();
        };
        if let Some(ids) = state.users.get_mut(&entry.user) {
            ids.remove(&id);
            if ids.is_empty() {
                state.users.remove(&entry.user);
            }
        }
        let mut departed = Vec::new();
        for room in entry.rooms {
            if state.remove_from_room(&room, id, &entry.user) {
                departed.push(room);
            }
        }
        departed
    }

    /// Subscribes a session to a room.
    pub fn join(&self, id: SessionId, room: &RoomId) -> JoinOutcome {
        let mut state = self.lock();
        let Some(user) = state.sessions.get_mut(&id).map(|entry| {
            entry.rooms.insert(room.clone());
            entry.user.clone()
        }) else {
            return JoinOutcome {
                online: Vec::new(),
                user_arrived: false,
            };
        };
        let entry = state.rooms.entry(room.clone()).or_default();
        let user_arrived = if entry.sessions.insert(id) {
            let count = entry.present.entry(user).or_default();
            *count += 1;
            *count == 1
        } else {
            false
        };
        let online: BTreeSet<UserId> = entry.present.keys().cloned().collect();
        JoinOutcome {
            online: online.into_iter().collect(),
            user_arrived,
        }
    }

    /// Unsubscribes a session from a room. Returns whether its user left the room entirely.
    pub fn leave(&self, id: SessionId, room: &RoomId) -> bool {
        let mut state = self.lock();
        let Some(user) = state
            .sessions
            .get_mut(&id)
            .and_then(|entry| entry.rooms.remove(room).then(|| entry.user.clone()))
        else {
            return false;
        };
        state.remove_from_room(room, id, &user)
    }

    /// Closes every session of `user` with the kick's code. Returns how many were closed.
    pub fn kick_user(&self, user: &UserId, code: protocol::CloseCode) -> u32 {
        let state = self.lock();
        let mut closed = 0;
        for id in state.users.get(user).into_iter().flatten() {
            if let Some(entry) = state.sessions.get(id) {
                entry.outbox.kick(code);
                closed += 1;
            }
        }
        closed
    }

    /// Live sessions of `user` on this node.
    pub fn sessions_of(&self, user: &UserId) -> u32 {
        let state = self.lock();
        state
            .users
            .get(user)
            .map_or(0, |ids| u32::try_from(ids.len()).unwrap_or(u32::MAX))
    }

    /// Live logged-in sessions on this node.
    pub fn session_count(&self) -> u32 {
        u32::try_from(self.lock().sessions.len()).unwrap_or(u32::MAX)
    }

    /// Records a new connection so operators can list and kick it before it logs in. The
    /// returned guard forgets it when dropped, however the session ends.
    pub fn connect(
        self: &Arc<Self>,
        id: SessionId,
        info: ConnectionInfo,
        outbox: OutboxSender,
    ) -> Connected {
        self.lock()
            .connections
            .insert(id, Connection { info, outbox });
        Connected {
            hub: Arc::clone(self),
            id,
        }
    }

    /// Live connections on this node, oldest first; with `user`, only that user's sessions.
    pub fn sessions(&self, user: Option<&UserId>) -> Vec<SessionSummary> {
        let state = self.lock();
        let mut summaries: Vec<SessionSummary> = match user {
            Some(user) => state
                .users
                .get(user)
                .into_iter()
                .flatten()
                .filter_map(|id| state.summary(*id))
                .collect(),
            None => state
                .connections
                .keys()
                .filter_map(|id| state.summary(*id))
                .collect(),
        };
        summaries.sort_unstable_by_key(|summary| summary.id);
        summaries
    }

    /// Closes one connection with `code`. Returns whether it is live on this node.
    pub fn kick_session(&self, id: SessionId, code: protocol::CloseCode) -> bool {
        let state = self.lock();
        let Some(connection) = state.connections.get(&id) else {
            return false;
        };
        connection.outbox.kick(code);
        true
    }

    /// The shared rooms (not direct conversations) at least one local session is in: what a
    /// cross-node broker must hear about.
    pub fn room_ids(&self) -> Vec<RoomId> {
        self.lock()
            .rooms
            .iter()
            .filter(|(room, entry)| !entry.sessions.is_empty() && !room.is_direct())
            .map(|(room, _)| room.clone())
            .collect()
    }

    /// Who is present where on this node: every (shared room, user) with a local session.
    pub fn presence(&self) -> Vec<(RoomId, UserId)> {
        self.lock()
            .rooms
            .iter()
            .filter(|(room, _)| !room.is_direct())
            .flat_map(|(room, entry)| {
                entry
                    .present
                    .keys()
                    .map(move |user| (room.clone(), user.clone()))
            })
            .collect()
    }

    /// Delivers an event to the local sessions it concerns. Never waits.
    pub fn dispatch(&self, event: &Event) {
        let dispatched = Instant::now();
        match event {
            Event::Message(message) => {
                let frame = encode_server(&ServerFrame::Message(message.clone()));
                let item = OutboxItem {
                    room: message.room.clone(),
                    seq: Some(message.seq),
                    frame,
                    dispatched,
                };
                let mut state = self.lock();
                if let Some((a, b)) = message.room.direct_participants() {
                    state.subscribe_direct(&message.room, &[a, b]);
                }
                state.push_to_room(&item, None);
            }
            Event::Presence {
                room,
                user,
                state: presence,
            } => {
                let frame = encode_server(&ServerFrame::Presence {
                    room: room.clone(),
                    user: user.clone(),
                    state: *presence,
                });
                let item = OutboxItem {
                    room: room.clone(),
                    seq: None,
                    frame,
                    dispatched,
                };
                // The user's own sessions caused the change and learn the state from `joined`:
                // a user's presence only changes when no other session of theirs is there.
                self.lock().push_to_room(&item, Some(user));
            }
            Event::Typing { room, user } => {
                let frame = encode_server(&ServerFrame::Typing {
                    room: room.clone(),
                    user: user.clone(),
                });
                let item = OutboxItem {
                    room: room.clone(),
                    seq: None,
                    frame,
                    dispatched,
                };
                self.lock().push_to_room(&item, Some(user));
            }
            Event::Kick { user, code } => {
                self.kick_user(user, *code);
            }
        }
    }
}

impl HubState {
    /// How operators see connection `id`, if it is live.
    fn summary(&self, id: SessionId) -> Option<SessionSummary> {
        let connection = self.connections.get(&id)?;
        let session = self.sessions.get(&id);
        Some(SessionSummary {
            id,
            user: session.map(|entry| entry.user.clone()),
            connection: connection.info.clone(),
            rooms: session.map_or(0, |entry| {
                u32::try_from(entry.rooms.len()).unwrap_or(u32::MAX)
            }),
        })
    }

    /// Removes a session from a room's maps; returns whether its user left the room.
    fn remove_from_room(&mut self, room: &RoomId, id: SessionId, user: &UserId) -> bool {
        let Some(entry) = self.rooms.get_mut(room) else {
            return false;
        };
        if !entry.sessions.remove(&id) {
            return false;
        }
        let departed = match entry.present.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                entry.present.remove(user);
                true
            }
            None => false,
        };
        if entry.sessions.is_empty() {
            self.rooms.remove(room);
        }
        departed
    }

    /// Subscribes every session of the participants to a direct room.
    fn subscribe_direct(&mut self, room: &RoomId, participants: &[UserId]) {
        let ids: Vec<SessionId> = participants
            .iter()
            .filter_map(|user| self.users.get(user))
            .flatten()
            .copied()
            .collect();
        for id in ids {
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            if session.rooms.insert(room.clone()) {
                let user = session.user.clone();
                let entry = self.rooms.entry(room.clone()).or_default();
                entry.sessions.insert(id);
                *entry.present.entry(user).or_default() += 1;
            }
        }
    }

    /// Pushes one item to every session in its room, except sessions of `skip_user`.
    fn push_to_room(&self, item: &OutboxItem, skip_user: Option<&UserId>) {
        let Some(room) = self.rooms.get(&item.room) else {
            return;
        };
        for id in &room.sessions {
            let Some(session) = self.sessions.get(id) else {
                continue;
            };
            if skip_user == Some(&session.user) {
                continue;
            }
            if session.outbox.push(item.clone()) == Pushed::Overflowed {
                tracing::info!(session = %id, user = %session.user, room = %item.room,
                    "outbox full; closing slow consumer");
            }
        }
    }
}

/// Keeps a connection in the hub's registry while it lives; see [`Hub::connect`].
#[derive(Debug)]
pub struct Connected {
    hub: Arc<Hub>,
    id: SessionId,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.hub.lock().connections.remove(&self.id);
    }
}

/// Presence to publish after a join, if any.
pub fn arrival_presence(resumed: bool) -> PresenceState {
    if resumed {
        PresenceState::Online
    } else {
        PresenceState::Joined
    }
}

#[cfg(test)]
mod tests;
