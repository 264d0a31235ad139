//! One method per command of the session driver. The state machine has already checked
//! that each command is legal in the session's phase and within its limits.

use std::time::Instant;

use futures_util::FutureExt;
use protocol::{ClientMsgId, ErrorCode, RequestId, RoomId, Seq, ServerFrame, UserId};

use super::state::Command;
use super::{Driver, Fill, Flow, SessionError};
use crate::auth::AuthError;
use crate::broker::Event;
use crate::hub::arrival_presence;
use crate::metrics::{self, LoginOutcome, ResumeOutcome};
use crate::store::{HistoryRange, NewMessage, RoomRecord};
use crate::transport::Transport;

impl<T: Transport> Driver<T> {
    /// Carries out one command; a failed command is answered with an error frame.
    pub(super) async fn run_command(&mut self, command: Command) -> Result<(), Flow> {
        let (rid, result) = match command {
            Command::LoginStart { rid, user, ke1 } => {
                let result = self.login_start(rid.clone(), &user, &ke1).await;
                (rid, result)
            }
            Command::LoginFinish { rid, ke3 } => {
                let result = self.login_finish(rid.clone(), &ke3).await;
                (rid, result)
            }
            Command::Resume { rid, token } => {
                let result = self.resume(rid.clone(), &token).await;
                (rid, result)
            }
            Command::Join { rid, room, since } => {
                let result = self.join(rid.clone(), room, since).await;
                (rid, result)
            }
            Command::Leave { rid, room } => {
                self.leave(&room).await;
                return self.reply(&ServerFrame::Left { rid, room }).await;
            }
            Command::Send {
                rid,
                room,
                cmid,
                body,
            } => {
                self.queue_send(rid, room, cmid, body);
                return Ok(());
            }
            Command::Direct {
                rid,
                to,
                cmid,
                body,
            } => {
                let result = self.direct(rid.clone(), to, cmid, body).await;
                (rid, result)
            }
            Command::History {
                rid,
                room,
                range,
                limit,
            } => {
                let result = self.history(rid.clone(), room, range, limit).await;
                (rid, result)
            }
            Command::Typing { room } => {
                if let Some(user) = self.state.user().cloned() {
                    self.node.broker.publish(&Event::Typing { room, user });
                }
                return Ok(());
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(CommandError::Flow(flow)) => Err(flow),
            Err(CommandError::Session(error)) => self.reply_error(rid, &error).await,
        }
    }

    async fn login_start(
        &mut self,
        rid: Option<RequestId>,
        user: &UserId,
        ke1: &[u8],
    ) -> Result<(), CommandError> {
        let peer = self.transport.peer().ip();
        let (pending, ke2) = self
            .node
            .auth
            .login_start(user, ke1, peer, Instant::now())
            .await?;
        if self.pending_login.replace(pending).is_some() {
            metrics::login(LoginOutcome::Abandoned);
        }
        self.state.handle_challenge_sent();
        self.reply(&ServerFrame::LoginChallenge {
            rid,
            ke2: ke2.into(),
        })
        .await?;
        Ok(())
    }

    async fn login_finish(
        &mut self,
        rid: Option<RequestId>,
        ke3: &[u8],
    ) -> Result<(), CommandError> {
        let Some(pending) = self.pending_login.take() else {
            return Err(refused(
                ErrorCode::UnexpectedFrame,
                "`login_finish` without a `login_start`",
            ));
        };
        let peer = self.transport.peer().ip();
        match self.node.auth.login_finish(pending, ke3, peer) {
            Ok(user) => self.logged_in(rid, user).await,
            Err(error) => {
                self.state.handle_login_failed();
                Err(error.into())
            }
        }
    }

    async fn resume(&mut self, rid: Option<RequestId>, token: &str) -> Result<(), CommandError> {
        let user = match self.node.auth.redeem_resume_token(token).await {
            Ok(user) => {
                metrics::resume(ResumeOutcome::Ok);
                user
            }
            Err(error) => {
                metrics::resume(match error {
                    AuthError::InvalidToken => ResumeOutcome::InvalidToken,
                    _ => ResumeOutcome::Error,
                });
                return Err(error.into());
            }
        };
        self.logged_in(rid, user).await
    }

    /// Login or resume succeeded: join the hub and hand out a fresh resume token.
    async fn logged_in(
        &mut self,
        rid: Option<RequestId>,
        user: UserId,
    ) -> Result<(), CommandError> {
        let (resume_token, ttl) = self.node.auth.issue_resume_token(&user).await?;
        self.state.handle_logged_in(user.clone());
        self.node
            .hub
            .register(self.id, user.clone(), self.outbox_tx.clone());
        self.registered = true;
        metrics::session_logged_in(self.kind);
        tracing::debug!(%user, "logged in");
        self.reply(&ServerFrame::Welcome {
            rid,
            user,
            session: self.id.to_string(),
            resume_token,
            resume_expires_in_secs: ttl.as_secs(),
        })
        .await?;
        Ok(())
    }

    /// Checks that this session's user may read and post in `room`.
    async fn check_access(&mut self, room: &RoomId) -> Result<RoomRecord, CommandError> {
        let user = self.user()?;
        if let Some((a, b)) = room.direct_participants() {
            if user != a && user != b {
                return Err(refused(
                    ErrorCode::Forbidden,
                    "not your direct-message room",
                ));
            }
            self.node.store.ensure_direct_room(room).await?;
            self.direct_rooms.insert(room.clone());
        }
        let Some(record) = self.node.store.room(room).await? else {
            return Err(refused(ErrorCode::NoSuchRoom, format!("no room `{room}`")));
        };
        if record.private && !room.is_direct() && !self.node.store.is_member(room, &user).await? {
            return Err(refused(
                ErrorCode::Forbidden,
                format!("`{room}` is private"),
            ));
        }
        Ok(record)
    }

    /// Join: subscribe first, then read the store, so nothing committed in between is
    /// missed; the cursor drops what arrives twice.
    async fn join(
        &mut self,
        rid: Option<RequestId>,
        room: RoomId,
        since: Option<Seq>,
    ) -> Result<(), CommandError> {
        let record = self.check_access(&room).await?;
        let user = self.user()?;
        let outcome = self.node.hub.join(self.id, &room);
        // Hear the other nodes' events before reading the store, as the hub does locally.
        self.node.broker.watch_room(&room).await;
        let online = self.node.broker.online(&room, outcome.online).await;
        if let Some(since) = since {
            // A client cannot have seen past the head; clamping keeps a confused client from
            // skipping messages written after a restore.
            let since = since.min(record.last_seq);
            self.state.handle_joined(room.clone(), since);
            self.reply(&ServerFrame::Joined {
                rid,
                room: room.clone(),
                online: online.clone(),
                messages: Vec::new(),
                last_seq: record.last_seq,
            })
            .await?;
            self.fill_gap(&room, since, None, Fill::Replay).await?;
        } else {
            let page = match self
                .node
                .store
                .history(
                    &room,
                    HistoryRange::Latest,
                    self.state.limits().join_history,
                )
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    self.node.hub.leave(self.id, &room);
                    return Err(error.into());
                }
            };
            let newest = page.messages.last().map_or(Seq::ZERO, |m| m.seq);
            let delivered = newest.max(record.last_seq);
            self.state.handle_joined(room.clone(), delivered);
            self.reply(&ServerFrame::Joined {
                rid,
                room: room.clone(),
                online,
                messages: page.messages,
                last_seq: delivered,
            })
            .await?;
        }
        if outcome.user_arrived && self.node.broker.arrived(&room, &user).await {
            self.node.broker.publish(&Event::Presence {
                room,
                user,
                state: arrival_presence(since.is_some()),
            });
        }
        Ok(())
    }

    async fn leave(&mut self, room: &RoomId) {
        self.state.handle_left(room);
        self.transport.room_left(room);
        self.node.broker.room_left();
        if self.node.hub.leave(self.id, room)
            && let Some(user) = self.state.user().cloned()
            && self.node.broker.departed(room, &user).await
        {
            self.node.broker.publish(&Event::Presence {
                room: room.clone(),
                user,
                state: protocol::PresenceState::Left,
            });
        }
    }

    /// Queues a send for the group-commit writer; the ack is sent when it commits.
    fn queue_send(
        &mut self,
        rid: Option<RequestId>,
        room: RoomId,
        cmid: ClientMsgId,
        body: String,
    ) {
        let Some(from) = self.state.user().cloned() else {
            return;
        };
        metrics::message_received();
        let writer = self.node.writer.clone();
        let message = NewMessage {
            room,
            from,
            cmid: cmid.clone(),
            body,
        };
        self.in_flight
            .push(async move { (rid, cmid, writer.append(message).await) }.boxed());
    }

    async fn direct(
        &mut self,
        rid: Option<RequestId>,
        to: UserId,
        cmid: ClientMsgId,
        body: String,
    ) -> Result<(), CommandError> {
        let from = self.user()?;
        let Some(room) = RoomId::direct(&from, &to) else {
            return Err(refused(
                ErrorCode::InvalidFrame,
                "a direct message needs another user",
            ));
        };
        if !self.direct_rooms.contains(&room) {
            if self.node.store.user(&to).await?.is_none() {
                return Err(refused(ErrorCode::NoSuchUser, format!("no user `{to}`")));
            }
            self.node.store.ensure_direct_room(&room).await?;
            self.direct_rooms.insert(room.clone());
        }
        self.queue_send(rid, room, cmid, body);
        Ok(())
    }

    async fn history(
        &mut self,
        rid: Option<RequestId>,
        room: RoomId,
        range: HistoryRange,
        limit: u32,
    ) -> Result<(), CommandError> {
        self.check_access(&room).await?;
        let page = self.node.store.history(&room, range, limit).await?;
        self.reply(&ServerFrame::HistoryPage {
            rid,
            room,
            messages: page.messages,
            has_more: page.has_more,
        })
        .await?;
        Ok(())
    }

    fn user(&self) -> Result<UserId, CommandError> {
        self.state
            .user()
            .cloned()
            .ok_or_else(|| refused(ErrorCode::NotLoggedIn, "log in first"))
    }
}

/// A command either fails with an error for the client or ends the session.
pub(super) enum CommandError {
    Session(SessionError),
    Flow(Flow),
}

impl From<Flow> for CommandError {
    fn from(flow: Flow) -> Self {
        Self::Flow(flow)
    }
}

impl<E: Into<SessionError>> From<E> for CommandError {
    fn from(error: E) -> Self {
        Self::Session(error.into())
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> CommandError {
    CommandError::Session(SessionError::Refused(code, message.into()))
}
