//! Async client (feature `client`): connect over WebSocket (`ws://`, `wss://`) or QUIC
//! (`quic://`) with the same API, log in with OPAQUE or resume, join rooms, send, page
//! history, and reconnect (to either transport) without losing or repeating a message. Which
//! server certificates are trusted, for `wss://` and `quic://` alike, is
//! [`ClientOptions::trust`]: the webpki roots (Mozilla's CA list) plus
//! [`ClientOptions::extra_root_certificates`] by default, the system's roots, or one
//! certificate pinned by its SHA-256 (a server's self-signed QUIC certificate).
//!
//! ```no_run
//! # async fn demo() -> Result<(), chatd_protocol::client::ClientError> {
//! use chatd_protocol::client::{Client, ClientOptions, Event};
//! use chatd_protocol::{ClientMsgId, RoomId, UserId};
//!
//! let mut client = Client::connect("ws://127.0.0.1:7878", ClientOptions::default()).await?;
//! client.login(&UserId::parse("alice").unwrap(), "secret").await?;
//! let lobby = RoomId::parse("lobby").unwrap();
//! client.join(&lobby, None).await?;
//! client.send(&lobby, &ClientMsgId::parse("c1").unwrap(), "hello").await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Message(message) = event {
//!         println!("{}: {}", message.from, message.body);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Requests take `&self`, so several tasks may share one client (in an `Arc`); the methods
//! that change the session (`login`, `resume`, `reconnect`) take `&mut self`.
//!
//! # Layout
//! - this file: [`Client`], the public calls.
//! - `connection`: one connection: `hello`, the writer, request-id routing, the reader task.
//! - `transport`: the writer and reader of either transport; `websocket` and `quic` are
//!   the two.
//! - `last_seen`: per-room last seen sequence numbers and joined rooms (dedupe, resume).
//! - `login`: the client half of the OPAQUE login.
//! - `tls`: which server certificates a connection trusts.
//! - [`event`], [`reply`], [`options`], [`error`]: the public types.
//! - [`admin`]: [`AdminClient`](admin::AdminClient), the admin-socket connection with the
//!   client half of OPAQUE registration (used by chatctl, the tests and the benchmarks).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub mod admin;
mod connection;
pub mod error;
pub mod event;
mod last_seen;
mod login;
pub mod options;
mod quic;
pub mod reply;
#[cfg(test)]
mod tests;
mod tls;
mod transport;
mod websocket;

pub use error::ClientError;
pub use event::Event;
pub use options::{CertificatePin, ClientOptions, DEFAULT_CLIENT_MAX_FRAME_BYTES, ServerTrust};
pub use reply::{Acked, HistoryPage, Joined, Welcome};
/// DER certificate, as [`ClientOptions::extra_root_certificates`] takes them (re-exported
/// from rustls so callers need not depend on it).
pub use rustls::pki_types::CertificateDer;

use self::connection::{Connection, frame_kind};
use self::last_seen::LastSeen;
use crate::bytes_b64::Base64Bytes;
use crate::frame::{ClientFrame, Limits, ServerFrame};
use crate::ids::{ClientMsgId, RoomId, Seq, UserId};

/// A connection to a chatd server, and the session state that outlives it (the resume
/// token, the joined rooms and the last sequence number seen in each).
pub struct Client {
    connection: Connection,
    options: ClientOptions,
    seen: Mutex<LastSeen>,
    user: Option<UserId>,
    resume_token: Option<String>,
}

impl Client {
    /// Opens a connection to `url` and exchanges `hello`: `ws://host:port` or
    /// `wss://host:port` for WebSocket, `quic://host:port` for QUIC.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the URL has another scheme, or the socket, the TLS, the
    /// WebSocket or the QUIC handshake fails;
    /// [`ClientError::Server`] or [`ClientError::Protocol`] when the server refuses or
    /// garbles the `hello`; [`ClientError::Timeout`].
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let connection = Connection::open(url, &options).await?;
        Ok(Self {
            connection,
            options,
            seen: Mutex::new(LastSeen::default()),
            user: None,
            resume_token: None,
        })
    }

    /// Logs in with a password (OPAQUE: the password never leaves this process). The final
    /// step runs Argon2id on tokio's blocking pool.
    ///
    /// # Errors
    /// [`ClientError::Login`] for a wrong user name or password (OPAQUE tells the client, and
    /// the server does not learn which); [`ClientError::Server`] for `rate_limited`,
    /// `user_disabled`, `already_logged_in`, ...
    pub async fn login(&mut self, user: &UserId, password: &str) -> Result<Welcome, ClientError> {
        let (state, ke1) = login::start(password)?;
        let challenge = self
            .connection
            .request(|rid| ClientFrame::LoginStart {
                rid,
                user: user.clone(),
                ke1: Base64Bytes(ke1),
            })
            .await?;
        let ServerFrame::LoginChallenge { ke2, .. } = challenge else {
            return Err(unexpected("login_start", &challenge));
        };
        let ke3 = login::finish(state, ke2.0).await?;
        let reply = self
            .connection
            .request(|rid| ClientFrame::LoginFinish {
                rid,
                ke3: Base64Bytes(ke3),
            })
            .await?;
        self.handle_welcome("login_finish", reply)
    }

    /// Logs in with a resume token from an earlier [`Welcome`] (single use).
    ///
    /// # Errors
    /// [`ClientError::Server`] with `invalid_token` when the token is unknown, expired or
    /// used: log in with the password instead.
    pub async fn resume(&mut self, token: &str) -> Result<Welcome, ClientError> {
        let reply = self
            .connection
            .request(|rid| ClientFrame::Resume {
                rid,
                token: token.to_owned(),
            })
            .await?;
        self.handle_welcome("resume", reply)
    }

    /// Joins a room. Without `since`, the reply holds the latest page of history. With
    /// `since`, the reply's page is empty and every message after `since` follows as an
    /// [`Event::Message`]; `since` also becomes the room's floor for de-duplication.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `no_such_room`, `forbidden`, `too_many_rooms`, ...
    pub async fn join(&self, room: &RoomId, since: Option<Seq>) -> Result<Joined, ClientError> {
        if let Some(since) = since {
            self.seen().handle_join_since(room, since);
        }
        let reply = self
            .connection
            .request(|rid| ClientFrame::Join {
                rid,
                room: room.clone(),
                since,
            })
            .await?;
        let ServerFrame::Joined {
            room,
            online,
            messages,
            last_seq,
            ..
        } = reply
        else {
            return Err(unexpected("join", &reply));
        };
        let mut seen = self.seen();
        seen.handle_joined(&room);
        seen.handle_page(&messages);
        Ok(Joined {
            room,
            online,
            messages,
            last_seq,
        })
    }

    /// Leaves a room: no more events from it, and no re-join on reconnect.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `not_joined`, ...
    pub async fn leave(&self, room: &RoomId) -> Result<(), ClientError> {
        let reply = self
            .connection
            .request(|rid| ClientFrame::Leave {
                rid,
                room: room.clone(),
            })
            .await?;
        let ServerFrame::Left { room, .. } = reply else {
            return Err(unexpected("leave", &reply));
        };
        self.seen().handle_left(&room);
        Ok(())
    }

    /// Sends a message to a joined room and waits until it is committed. Resending with the
    /// same `cmid` (after a timeout or a reconnect) is safe: the server answers with the
    /// first ack and stores nothing new. The message also arrives as an [`Event::Message`].
    ///
    /// # Errors
    /// [`ClientError::Server`] with `not_joined`, `body_too_long`, or the retryable
    /// `rate_limited`, `busy`, `unavailable` (see [`ClientError::is_retryable`]).
    pub async fn send(
        &self,
        room: &RoomId,
        cmid: &ClientMsgId,
        body: &str,
    ) -> Result<Acked, ClientError> {
        let reply = self
            .connection
            .request(|rid| ClientFrame::Send {
                rid,
                room: room.clone(),
                cmid: cmid.clone(),
                body: body.to_owned(),
            })
            .await?;
        into_acked("send", reply)
    }

    /// Sends a direct message to another user and waits until it is committed. The ack names
    /// the `dm:` room that holds the conversation.
    ///
    /// # Errors
    /// As [`Client::send`], plus `no_such_user`.
    pub async fn direct(
        &self,
        to: &UserId,
        cmid: &ClientMsgId,
        body: &str,
    ) -> Result<Acked, ClientError> {
        let reply = self
            .connection
            .request(|rid| ClientFrame::Direct {
                rid,
                to: to.clone(),
                cmid: cmid.clone(),
                body: body.to_owned(),
            })
            .await?;
        into_acked("direct", reply)
    }

    /// Asks for a page of a room's history: before `before`, after `after`, or the latest
    /// page; `limit` is capped by the server.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `no_such_room`, `forbidden`, ...
    pub async fn history(
        &self,
        room: &RoomId,
        before: Option<Seq>,
        after: Option<Seq>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ClientError> {
        let reply = self
            .connection
            .request(|rid| ClientFrame::History {
                rid,
                room: room.clone(),
                before,
                after,
                limit,
            })
            .await?;
        let ServerFrame::HistoryPage {
            room,
            messages,
            has_more,
            ..
        } = reply
        else {
            return Err(unexpected("history", &reply));
        };
        self.seen().handle_page(&messages);
        Ok(HistoryPage {
            room,
            messages,
            has_more,
        })
    }

    /// Tells a joined room that the user is typing. Not acknowledged: a failure arrives as
    /// [`Event::Error`].
    ///
    /// # Errors
    /// [`ClientError::Closed`] or [`ClientError::Send`] when the socket is gone.
    pub async fn typing(&self, room: &RoomId) -> Result<(), ClientError> {
        self.connection
            .send_frame(&ClientFrame::Typing { room: room.clone() })
            .await
    }

    /// Sends `ping` and returns the round-trip time.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] or [`ClientError::Closed`].
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let started = Instant::now();
        let reply = self
            .connection
            .request(|rid| ClientFrame::Ping { rid })
            .await?;
        let ServerFrame::Pong { .. } = reply else {
            return Err(unexpected("ping", &reply));
        };
        Ok(started.elapsed())
    }

    /// The next event: a message (never one at or below the room's last seen sequence
    /// number), presence, typing, a shutdown notice, an unsolicited error, and finally
    /// [`Event::Closed`]. `None` after `Closed` was read.
    ///
    /// Events queue up to [`ClientOptions::event_capacity`]; beyond that the client stops
    /// reading the socket, and replies to requests wait too.
    ///
    /// Cancel safety: cancel-safe; dropping the future loses no event.
    pub async fn next_event(&self) -> Option<Event> {
        loop {
            let event = self.connection.next_event().await?;
            if let Event::Message(message) = &event
                && !self.seen().handle_message(message)
            {
                continue;
            }
            return Some(event);
        }
    }

    /// The limits the server announced in its `hello`.
    pub fn limits(&self) -> &Limits {
        self.connection.limits()
    }

    /// The logged-in user, once `login` or `resume` succeeded.
    pub fn user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// The latest resume token, for [`Client::resume`] on another connection.
    pub fn resume_token(&self) -> Option<&str> {
        self.resume_token.as_deref()
    }

    /// Per room, the highest sequence number seen in `joined` and `history_page` replies and
    /// in the message events read so far.
    pub fn last_seen(&self) -> BTreeMap<RoomId, Seq> {
        self.seen().last_seen().clone()
    }

    /// Replaces the connection with a new one to `url` (either transport: a client may move
    /// from QUIC to WebSocket and back), resumes with the latest resume token
    /// and re-joins every joined room with `since` = its last seen sequence number. Events
    /// go on without a gap or a duplicate: events not yet read from the old connection are
    /// discarded and replayed by the server.
    ///
    /// # Errors
    /// [`ClientError::Login`] when there is no resume token; connection errors as in
    /// [`Client::connect`]; [`ClientError::Server`] with `invalid_token` when the token was
    /// refused (the new connection stays in place: call [`Client::login`], then
    /// [`Client::rejoin`]); a refused re-join as in [`Client::rejoin`].
    pub async fn reconnect(&mut self, url: &str) -> Result<(), ClientError> {
        let Some(token) = self.resume_token.clone() else {
            return Err(ClientError::Login(
                "no resume token: log in first".to_owned(),
            ));
        };
        self.connection = Connection::open(url, &self.options).await?;
        self.resume(&token).await?;
        self.rejoin().await.map(drop)
    }

    /// Joins every room joined before (on this or an earlier connection) again, each with
    /// `since` = its last seen sequence number, so the server replays what was missed.
    ///
    /// # Errors
    /// The first refused join (e.g. `forbidden` after removal from a private room); rooms
    /// after it are not joined, and stay listed for the next `rejoin`.
    pub async fn rejoin(&self) -> Result<Vec<Joined>, ClientError> {
        let plan = self.seen().rejoin_plan();
        let mut joined = Vec::with_capacity(plan.len());
        for (room, since) in plan {
            joined.push(self.join(&room, Some(since)).await?);
        }
        Ok(joined)
    }

    /// Moves a QUIC connection to a new local UDP socket, hence a new address, as a phone
    /// does when it goes from Wi-Fi to cellular; the session goes on (QUIC connection
    /// migration). Mobile apps call it when the OS reports a network change.
    ///
    /// # Errors
    /// [`ClientError::Unsupported`] on a WebSocket connection; [`ClientError::Send`] when no
    /// new socket can be bound.
    pub async fn rebind(&self) -> Result<(), ClientError> {
        self.connection.rebind().await
    }

    /// Sends arbitrary text as one frame (for testing the server).
    ///
    /// # Errors
    /// [`ClientError::Closed`] or [`ClientError::Send`] when the socket is gone.
    pub async fn send_raw(&self, text: &str) -> Result<(), ClientError> {
        self.connection.send_text(text).await
    }

    /// Closes the connection with a normal close code, waiting briefly for the server's
    /// close reply. Unread events are discarded.
    pub async fn close(self) {
        self.connection.close().await;
    }

    fn seen(&self) -> MutexGuard<'_, LastSeen> {
        // Every update is a single map operation, so the data is consistent after a panic.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle_welcome(
        &mut self,
        request: &str,
        reply: ServerFrame,
    ) -> Result<Welcome, ClientError> {
        let ServerFrame::Welcome {
            user,
            session,
            resume_token,
            resume_expires_in_secs,
            ..
        } = reply
        else {
            return Err(unexpected(request, &reply));
        };
        self.user = Some(user.clone());
        self.resume_token = Some(resume_token.clone());
        Ok(Welcome {
            user,
            session,
            resume_token,
            resume_expires_in: Duration::from_secs(resume_expires_in_secs),
        })
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The resume token is a credential: never print it.
        f.debug_struct("Client")
            .field("user", &self.user)
            .field("limits", self.limits())
            .field("has_resume_token", &self.resume_token.is_some())
            .finish_non_exhaustive()
    }
}

fn into_acked(request: &str, reply: ServerFrame) -> Result<Acked, ClientError> {
    let ServerFrame::Acked {
        room,
        seq,
        cmid,
        ts,
        ..
    } = reply
    else {
        return Err(unexpected(request, &reply));
    };
    Ok(Acked {
        room,
        seq,
        cmid,
        ts,
    })
}

fn unexpected(request: &str, reply: &ServerFrame) -> ClientError {
    ClientError::Protocol(format!(
        "unexpected `{}` in reply to `{request}`",
        frame_kind(reply)
    ))
}
