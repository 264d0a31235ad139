//! The session state machine, without I/O: it takes a frame's bytes and the current time,
//! decides whether the frame is legal in the current phase and within the limits, and
//! returns a [`Step`] for the driver to carry out. The driver reports outcomes back
//! (`handle_logged_in`, `handle_joined`, ...). It also keeps the per-room delivery cursor
//! that makes replay, live delivery and gap filling free of gaps and duplicates.
//!
//! Phases: `AwaitHello` → `AwaitLogin` → `Ready`. `ping` is legal in every phase.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{
    ClientFrame, ClientMsgId, CloseCode, ErrorCode, Limits, PROTOCOL_VERSION, RequestId, RoomId,
    Seq, ServerFrame, UserId, decode_client,
};

use crate::store::HistoryRange;

/// Limits one session enforces.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
    /// Longest body, in bytes.
    pub max_body_bytes: usize,
    /// Most ordinary rooms joined at once.
    pub max_rooms: usize,
    /// Sustained sends per second.
    pub sends_per_sec: u32,
    /// Burst above the sustained rate.
    pub send_burst: u32,
    /// Largest history page.
    pub max_history_page: u32,
    /// Messages sent with `joined`.
    pub join_history: u32,
}

impl SessionLimits {
    /// The limits as announced in the server `hello`.
    pub fn to_wire(&self) -> Limits {
        Limits {
            max_frame_bytes: u32::try_from(self.max_frame_bytes).unwrap_or(u32::MAX),
            max_body_bytes: u32::try_from(self.max_body_bytes).unwrap_or(u32::MAX),
            max_rooms_per_session: u32::try_from(self.max_rooms).unwrap_or(u32::MAX),
            max_history_page: self.max_history_page,
            sends_per_sec: self.sends_per_sec,
            send_burst: self.send_burst,
        }
    }
}

/// A validated request that needs the store, auth or hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// OPAQUE login, first step.
    LoginStart {
        rid: Option<RequestId>,
        user: UserId,
        ke1: Vec<u8>,
    },
    /// OPAQUE login, last step.
    LoginFinish {
        rid: Option<RequestId>,
        ke3: Vec<u8>,
    },
    /// Log in with a resume token.
    Resume {
        rid: Option<RequestId>,
        token: String,
    },
    /// Join a room.
    Join {
        rid: Option<RequestId>,
        room: RoomId,
        since: Option<Seq>,
    },
    /// Leave a room.
    Leave {
        rid: Option<RequestId>,
        room: RoomId,
    },
    /// Post to a joined room.
    Send {
        rid: Option<RequestId>,
        room: RoomId,
        cmid: ClientMsgId,
        body: String,
    },
    /// Post to the direct room shared with `to`.
    Direct {
        rid: Option<RequestId>,
        to: UserId,
        cmid: ClientMsgId,
        body: String,
    },
    /// Read a page of history.
    History {
        rid: Option<RequestId>,
        room: RoomId,
        range: HistoryRange,
        limit: u32,
    },
    /// Announce typing.
    Typing { room: RoomId },
}

/// What the driver must do with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this frame back; nothing else.
    Reply(ServerFrame),
    /// Send this frame, then close with the code.
    Close(ServerFrame, CloseCode),
    /// Carry out a command.
    Run(Command),
    /// Nothing to do (a typing hint over the send rate).
    Ignore,
}

/// What to do with an event from the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Send it.
    Deliver,
    /// Drop it: already delivered, or not for a room this session is in.
    Drop,
    /// Messages after `after` and before this one are missing: fill them from the store
    /// first, then deliver this one.
    Gap {
        /// The last sequence number delivered.
        after: Seq,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    AwaitLogin { challenge_sent: bool },
    Ready { user: UserId },
}

/// One session's protocol state.
#[derive(Debug)]
pub struct SessionState {
    phase: Phase,
    limits: SessionLimits,
    sends: TokenBucket,
    /// Per room the session is in: the last message sequence number delivered.
    cursors: HashMap<RoomId, Seq>,
}

impl SessionState {
    /// A new session in `AwaitHello`.
    pub fn new(limits: SessionLimits, now: Instant) -> Self {
        let sends = TokenBucket::new(limits.sends_per_sec, limits.send_burst, now);
        Self {
            phase: Phase::AwaitHello,
            limits,
            sends,
            cursors: HashMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// The logged-in user.
    pub fn user(&self) -> Option<&UserId> {
        match &self.phase {
            Phase::Ready { user } => Some(user),
            Phase::AwaitHello | Phase::AwaitLogin { .. } => None,
        }
    }

    /// Whether the session has joined `room` (or received its direct messages).
    pub fn is_in(&self, room: &RoomId) -> bool {
        self.cursors.contains_key(room)
    }

    /// Decides what to do with one frame from the client.
    pub fn handle_frame(&mut self, bytes: &[u8], now: Instant) -> Step {
        let frame = match decode_client(bytes, self.limits.max_frame_bytes) {
            Ok(frame) => frame,
            Err(error) => {
                let reply =
                    ServerFrame::error(error.rid().cloned(), error.code(), error.to_string());
                return if error.is_fatal() {
                    let code = if error.code() == ErrorCode::FrameTooLarge {
                        CloseCode::FrameTooLarge
                    } else {
                        CloseCode::ProtocolError
                    };
                    Step::Close(reply, code)
                } else {
                    Step::Reply(reply)
                };
            }
        };
        self.handle_decoded(frame, now)
    }

    fn handle_decoded(&mut self, frame: ClientFrame, now: Instant) -> Step {
        let rid = frame.rid().cloned();
        match (&self.phase, frame) {
            (_, ClientFrame::Ping { rid }) => Step::Reply(ServerFrame::Pong { rid }),
            (Phase::AwaitHello, ClientFrame::Hello { version, .. }) => {
                if version != PROTOCOL_VERSION {
                    return Step::Close(
                        ServerFrame::error(
                            None,
                            ErrorCode::UnsupportedVersion,
                            format!("this server speaks protocol version {PROTOCOL_VERSION}"),
                        ),
                        CloseCode::UnsupportedVersion,
                    );
                }
                self.phase = Phase::AwaitLogin {
                    challenge_sent: false,
                };
                Step::Reply(ServerFrame::Hello {
                    version: PROTOCOL_VERSION,
                    server: concat!("chatd/", env!("CARGO_PKG_VERSION")).to_owned(),
                    limits: self.limits.to_wire(),
                })
            }
            (
                Phase::AwaitHello,
                ClientFrame::LoginStart { .. }
                | ClientFrame::LoginFinish { .. }
                | ClientFrame::Resume { .. },
            ) => Step::Reply(unexpected(
                rid,
                "send `hello` with the protocol version first",
            )),
            (Phase::AwaitHello, _) => Step::Reply(ServerFrame::error(
                rid,
                ErrorCode::NotLoggedIn,
                "send `hello`, then log in",
            )),
            (_, ClientFrame::Hello { .. }) => {
                Step::Reply(unexpected(rid, "`hello` was already sent"))
            }
            (Phase::AwaitLogin { .. }, ClientFrame::LoginStart { rid, user, ke1 }) => {
                Step::Run(Command::LoginStart {
                    rid,
                    user,
                    ke1: ke1.0,
                })
            }
            (
                Phase::AwaitLogin {
                    challenge_sent: true,
                },
                ClientFrame::LoginFinish { rid, ke3 },
            ) => Step::Run(Command::LoginFinish { rid, ke3: ke3.0 }),
            (
                Phase::AwaitLogin {
                    challenge_sent: false,
                },
                ClientFrame::LoginFinish { rid, .. },
            ) => Step::Reply(unexpected(rid, "`login_finish` without a `login_start`")),
            (Phase::AwaitLogin { .. }, ClientFrame::Resume { rid, token }) => {
                Step::Run(Command::Resume { rid, token })
            }
            (Phase::AwaitLogin { .. }, _) => Step::Reply(ServerFrame::error(
                rid,
                ErrorCode::NotLoggedIn,
                "log in first (`login_start` or `resume`)",
            )),
            (
                Phase::Ready { .. },
                ClientFrame::LoginStart { rid, .. }
                | ClientFrame::LoginFinish { rid, .. }
                | ClientFrame::Resume { rid, .. },
            ) => Step::Reply(ServerFrame::error(
                rid,
                ErrorCode::AlreadyLoggedIn,
                "this connection is already logged in",
            )),
            (Phase::Ready { .. }, frame) => self.handle_ready(frame, now),
        }
    }

    /// Commands of a logged-in session.
    fn handle_ready(&mut self, frame: ClientFrame, now: Instant) -> Step {
        match frame {
            ClientFrame::Join { rid, room, since } => {
                let joined_ordinary = self.cursors.keys().filter(|r| !r.is_direct()).count();
                if !self.cursors.contains_key(&room)
                    && !room.is_direct()
                    && joined_ordinary >= self.limits.max_rooms
                {
                    return Step::Reply(ServerFrame::error(
                        rid,
                        ErrorCode::TooManyRooms,
                        format!("a session may join at most {} rooms", self.limits.max_rooms),
                    ));
                }
                Step::Run(Command::Join { rid, room, since })
            }
            ClientFrame::Leave { rid, room } => {
                if self.cursors.contains_key(&room) {
                    Step::Run(Command::Leave { rid, room })
                } else {
                    Step::Reply(not_joined(rid, &room))
                }
            }
            ClientFrame::Send {
                rid,
                room,
                cmid,
                body,
            } => {
                if !self.cursors.contains_key(&room) {
                    return Step::Reply(not_joined(rid, &room));
                }
                if let Some(reply) = self.check_send(rid.as_ref(), &body, now) {
                    return Step::Reply(reply);
                }
                Step::Run(Command::Send {
                    rid,
                    room,
                    cmid,
                    body,
                })
            }
            ClientFrame::Direct {
                rid,
                to,
                cmid,
                body,
            } => {
                if self.user() == Some(&to) {
                    return Step::Reply(ServerFrame::error(
                        rid,
                        ErrorCode::InvalidFrame,
                        "a direct message needs another user",
                    ));
                }
                if let Some(reply) = self.check_send(rid.as_ref(), &body, now) {
                    return Step::Reply(reply);
                }
                Step::Run(Command::Direct {
                    rid,
                    to,
                    cmid,
                    body,
                })
            }
            ClientFrame::History {
                rid,
                room,
                before,
                after,
                limit,
            } => self.handle_history(rid, room, before, after, limit),
            ClientFrame::Typing { room } => {
                if !self.cursors.contains_key(&room) {
                    return Step::Reply(not_joined(None, &room));
                }
                // Typing is a hint: over the send rate it is dropped without an error.
                if self.sends.take(now).is_err() {
                    return Step::Ignore;
                }
                Step::Run(Command::Typing { room })
            }
            ClientFrame::Hello { .. }
            | ClientFrame::LoginStart { .. }
            | ClientFrame::LoginFinish { .. }
            | ClientFrame::Resume { .. }
            | ClientFrame::Ping { .. } => {
                // Handled by `handle_decoded` before a ready session gets here.
                Step::Reply(unexpected(None, "unexpected frame"))
            }
            _ => Step::Reply(ServerFrame::error(
                None,
                ErrorCode::UnknownFrame,
                "unknown frame",
            )),
        }
    }

    /// `history`: needs no join (the driver applies the join access rules).
    fn handle_history(
        &self,
        rid: Option<RequestId>,
        room: RoomId,
        before: Option<Seq>,
        after: Option<Seq>,
        limit: Option<u32>,
    ) -> Step {
        let range = match (before, after) {
            (None, None) => HistoryRange::Latest,
            (Some(before), None) => HistoryRange::Before(before),
            (None, Some(after)) => HistoryRange::After(after),
            (Some(_), Some(_)) => {
                return Step::Reply(ServerFrame::error(
                    rid,
                    ErrorCode::InvalidFrame,
                    "give `before` or `after`, not both",
                ));
            }
        };
        if limit == Some(0) {
            return Step::Reply(ServerFrame::error(
                rid,
                ErrorCode::InvalidFrame,
                "`limit` must be at least 1",
            ));
        }
        // Larger pages are capped rather than refused: the reply's `has_more` tells the client
        // to ask again.
        let limit = limit
            .unwrap_or(self.limits.join_history)
            .min(self.limits.max_history_page);
        Step::Run(Command::History {
            rid,
            room,
            range,
            limit,
        })
    }

    /// Body and rate checks shared by `send` and `direct`.
    fn check_send(
        &mut self,
        rid: Option<&RequestId>,
        body: &str,
        now: Instant,
    ) -> Option<ServerFrame> {
        if body.is_empty() || body.len() > self.limits.max_body_bytes {
            return Some(ServerFrame::error(
                rid.cloned(),
                ErrorCode::BodyTooLong,
                format!("a body must be 1 to {} bytes", self.limits.max_body_bytes),
            ));
        }
        if let Err(wait) = self.sends.take(now) {
            return Some(ServerFrame::retry_error(
                rid.cloned(),
                ErrorCode::RateLimited,
                format!("at most {} sends per second", self.limits.sends_per_sec),
                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
            ));
        }
        None
    }

    /// The driver sent a login challenge.
    pub fn handle_challenge_sent(&mut self) {
        if let Phase::AwaitLogin { challenge_sent } = &mut self.phase {
            *challenge_sent = true;
        }
    }

    /// A login attempt failed; a new `login_start` is needed.
    pub fn handle_login_failed(&mut self) {
        if let Phase::AwaitLogin { challenge_sent } = &mut self.phase {
            *challenge_sent = false;
        }
    }

    /// Login or resume succeeded.
    pub fn handle_logged_in(&mut self, user: UserId) {
        self.phase = Phase::Ready { user };
    }

    /// The session joined `room`; messages up to and including `delivered` need not be sent.
    pub fn handle_joined(&mut self, room: RoomId, delivered: Seq) {
        self.cursors.insert(room, delivered);
    }

    /// The session left `room`.
    pub fn handle_left(&mut self, room: &RoomId) {
        self.cursors.remove(room);
    }

    /// Rooms the session is in.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomId> {
        self.cursors.keys()
    }

    /// Decides whether a message read from the store (a replay or a gap fill) is delivered.
    /// The store is authoritative: a jump past the cursor means retention deleted the
    /// messages in between, so the message is delivered and the cursor moves to it.
    pub fn handle_stored(&mut self, room: &RoomId, seq: Seq) -> Delivery {
        match self.cursors.get_mut(room) {
            Some(cursor) if seq > *cursor => {
                *cursor = seq;
                Delivery::Deliver
            }
            Some(_) | None => Delivery::Drop,
        }
    }

    /// Decides whether an event for `room` (with `seq` for messages) is delivered. A
    /// `Deliver` answer for a message advances the room's cursor to `seq`.
    pub fn handle_event(&mut self, room: &RoomId, seq: Option<Seq>) -> Delivery {
        let Some(cursor) = self.cursors.get_mut(room) else {
            if room.is_direct() {
                // The hub subscribes both users of a direct room on its first message: start
                // the cursor just before it.
                if let Some(seq) = seq {
                    self.cursors.insert(room.clone(), seq);
                }
                return Delivery::Deliver;
            }
            return Delivery::Drop;
        };
        let Some(seq) = seq else {
            return Delivery::Deliver;
        };
        if seq <= *cursor {
            Delivery::Drop
        } else if seq == cursor.next() {
            *cursor = seq;
            Delivery::Deliver
        } else {
            Delivery::Gap { after: *cursor }
        }
    }
}

fn unexpected(rid: Option<RequestId>, message: &str) -> ServerFrame {
    ServerFrame::error(rid, ErrorCode::UnexpectedFrame, message)
}

fn not_joined(rid: Option<RequestId>, room: &RoomId) -> ServerFrame {
    ServerFrame::error(rid, ErrorCode::NotJoined, format!("join `{room}` first"))
}

/// A token bucket: `rate` tokens per second, holding at most `rate + burst`.
#[derive(Debug, Clone)]
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let capacity = f64::from(rate) + f64::from(burst);
        Self {
            rate: f64::from(rate.max(1)),
            capacity,
            tokens: capacity,
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests;
