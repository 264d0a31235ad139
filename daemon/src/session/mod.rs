//! The async session driver: feeds frames from a [`Transport`] into the [`SessionState`]
//! machine, carries out the commands it returns against the auth, store, writer and hub, and
//! delivers hub events through the state machine's cursor (dropping duplicates, filling gaps
//! from the store). It is the same for every transport.
//!
//! # Layout
//! - `state`: the sans-IO state machine.
//! - `commands`: one method per command.
//! - this file: the event loop, delivery, close and drain.

mod commands;
pub mod state;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use protocol::{
    ClientMsgId, CloseCode, ErrorCode, RequestId, RoomId, Seq, ServerFrame, encode_server,
};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, PendingLogin};
use crate::broker::Event;
use crate::hub::outbox::Kick;
use crate::hub::{ConnectionInfo, OutboxItem, OutboxReceiver, OutboxSender, SessionId, outbox};
use crate::metrics::{self, RateLimit};
use crate::node::{Node, TransportKind};
use crate::store::writer::AppendError;
use crate::store::{Committed, HistoryRange, StoreError};
use crate::transport::admission::Admitted;
use crate::transport::{Lane, Transport, TransportError};
use state::{Delivery, SessionState, Step};

/// How long a close may take to flush before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most sends of one session waiting for their commit. Past this the session stops reading
/// frames until one completes, which pushes back on a client that pipelines without bound.
const MAX_IN_FLIGHT_SENDS: usize = 64;

/// Runs one session to completion on `transport`, a connection of kind `kind` that
/// `admitted` counts against the connection limits (its handshake permit is given back at
/// login). Returns when the peer closes, the session is kicked, or `shutdown` fires (after a
/// drain: going-away, pending acks, close).
pub async fn run<T: Transport>(
    node: Arc<Node>,
    transport: T,
    kind: TransportKind,
    admitted: Admitted,
    shutdown: CancellationToken,
) {
    let id = node.next_session_id();
    let span = tracing::debug_span!("session", session = %id, transport = transport.name(), peer = %transport.peer());
    let (outbox_tx, outbox_rx) = outbox(node.outbox_capacity);
    let connection = ConnectionInfo {
        transport: kind.as_str(),
        remote: transport.peer(),
        connected: SystemTime::now(),
    };
    // Listed and kickable from here on, logged in or not, until this function returns.
    let _connected = node.hub.connect(id, connection, outbox_tx.clone());
    let state = SessionState::new(node.limits.clone(), Instant::now());
    let mut driver = Driver {
        id,
        node,
        transport,
        kind,
        state,
        outbox_tx,
        pending_login: None,
        in_flight: FuturesUnordered::new(),
        direct_rooms: HashSet::new(),
        registered: false,
        kick: Arc::clone(&outbox_rx.kick),
        admitted,
    };
    tracing::Instrument::instrument(driver.run(outbox_rx, shutdown), span).await;
}

/// A send waiting for its commit, with what its ack needs.
type InFlight = BoxFuture<
    'static,
    (
        Option<RequestId>,
        ClientMsgId,
        Result<Committed, AppendError>,
    ),
>;

/// Why [`Driver::fill_gap`] reads from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// `join` with `since`: the messages the client missed while away.
    Replay,
    /// Live delivery skipped sequence numbers.
    Gap,
}

/// Why the event loop stops.
#[derive(Debug)]
enum Flow {
    /// Close with this code (after sending any frame already queued).
    Close(CloseCode),
    /// The connection is gone; nothing more can be sent.
    Gone,
}

impl From<TransportError> for Flow {
    fn from(_: TransportError) -> Self {
        Self::Gone
    }
}

struct Driver<T> {
    id: SessionId,
    node: Arc<Node>,
    transport: T,
    kind: TransportKind,
    state: SessionState,
    outbox_tx: OutboxSender,
    pending_login: Option<PendingLogin>,
    in_flight: FuturesUnordered<InFlight>,
    /// Direct rooms known to exist, so repeated direct messages skip the store check.
    direct_rooms: HashSet<RoomId>,
    registered: bool,
    /// The session's kick signal; every write races it, so a client that stopped reading
    /// cannot pin the session in a blocked write after the hub gave up on it.
    kick: Arc<Kick>,
    /// The connection's place in the connection limits, held until the session ends.
    admitted: Admitted,
}

impl<T: Transport> Driver<T> {
    async fn run(&mut self, mut outbox: OutboxReceiver, shutdown: CancellationToken) {
        let handshake_deadline = tokio::time::Instant::now() + self.node.handshake_timeout;
        let flow = loop {
            let result = tokio::select! {
                biased;
                code = outbox.kick.fired() => Err(Flow::Close(code)),
                () = shutdown.cancelled() => Err(self.drain().await),
                () = tokio::time::sleep_until(handshake_deadline), if self.state.user().is_none() => {
                    Err(Flow::Close(CloseCode::HandshakeTimeout))
                }
                Some((rid, cmid, result)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.finish_send(rid, cmid, result).await
                }
                Some(item) = outbox.queue.recv(), if self.registered => {
                    metrics::outbox_depth(outbox.queue.len());
                    self.deliver(item).await
                }
                incoming = self.transport.recv(), if self.in_flight.len() < MAX_IN_FLIGHT_SENDS => {
                    match incoming {
                        None => Err(Flow::Gone),
                        Some(Err(TransportError::TooLarge)) => Err(Flow::Close(CloseCode::FrameTooLarge)),
                        Some(Err(TransportError::NotAFrame(why))) => {
                            match self.reply(&ServerFrame::error(None, ErrorCode::BadFrame, why)).await {
                                Ok(()) => Err(Flow::Close(CloseCode::ProtocolError)),
                                Err(flow) => Err(flow),
                            }
                        }
                        Some(Err(TransportError::Io(error))) => {
                            tracing::debug!(%error, "connection failed");
                            Err(Flow::Gone)
                        }
                        Some(Ok(bytes)) => self.handle_bytes(&bytes).await,
                    }
                }
            };
            if self.state.user().is_some() {
                // Logged in: no longer a pending handshake.
                self.admitted.logged_in();
            }
            if let Err(flow) = result {
                break flow;
            }
        };
        if let Flow::Close(code) = flow {
            tracing::debug!(%code, "closing");
            if code == CloseCode::SlowConsumer {
                metrics::slow_consumer_closed();
            }
            // A client that does not read cannot take the close frame either.
            let close = self.transport.close(code, code.name());
            if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
                tracing::debug!("close not flushed in time; dropping the connection");
            }
        }
        if self.pending_login.take().is_some() {
            metrics::login(metrics::LoginOutcome::Abandoned);
        }
        self.unregister().await;
    }

    /// One frame from the client.
    async fn handle_bytes(&mut self, bytes: &[u8]) -> Result<(), Flow> {
        match self.state.handle_frame(bytes, Instant::now()) {
            Step::Reply(frame) => {
                if let ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } = &frame
                {
                    metrics::rate_limited(RateLimit::Send);
                }
                self.reply(&frame).await
            }
            Step::Close(frame, code) => {
                self.reply(&frame).await?;
                Err(Flow::Close(code))
            }
            Step::Run(command) => self.run_command(command).await,
            Step::Ignore => {
                // The state machine ignores only typing hints over the send rate.
                metrics::rate_limited(RateLimit::Typing);
                Ok(())
            }
        }
    }

    /// Sends a reply on the control lane.
    async fn reply(&mut self, frame: &ServerFrame) -> Result<(), Flow> {
        self.write(Lane::Control, encode_server(frame)).await
    }

    /// Writes one frame, giving up when the session is kicked meanwhile. A write cut short
    /// leaves the frame in the transport's buffer (the WebSocket sink buffers a whole frame
    /// before flushing), so the close that follows is still well-formed.
    async fn write(&mut self, lane: Lane<'_>, frame: bytes::Bytes) -> Result<(), Flow> {
        let kick = Arc::clone(&self.kick);
        tokio::select! {
            biased;
            code = kick.fired() => Err(Flow::Close(code)),
            sent = self.transport.send(lane, frame) => sent.map_err(Flow::from),
        }
    }

    /// Sends an error reply for a failed command.
    async fn reply_error(
        &mut self,
        rid: Option<RequestId>,
        error: &SessionError,
    ) -> Result<(), Flow> {
        let frame = error.to_frame(rid);
        self.reply(&frame).await
    }

    /// An event from the hub: deliver it unless it is a duplicate, filling any gap first.
    async fn deliver(&mut self, item: OutboxItem) -> Result<(), Flow> {
        match self.state.handle_event(&item.room, item.seq) {
            Delivery::Drop => Ok(()),
            Delivery::Deliver => self.send_event(&item).await,
            Delivery::Gap { after } => {
                metrics::gap_detected();
                self.fill_gap(&item.room, after, item.seq, Fill::Gap)
                    .await?;
                metrics::gap_filled();
                // Whatever the store did not have before this message was deleted by
                // retention; the message itself is the next one to deliver.
                let delivery = match item.seq {
                    Some(seq) => self.state.handle_stored(&item.room, seq),
                    None => Delivery::Deliver,
                };
                match delivery {
                    Delivery::Deliver => self.send_event(&item).await,
                    Delivery::Drop | Delivery::Gap { .. } => Ok(()),
                }
            }
        }
    }

    async fn send_event(&mut self, item: &OutboxItem) -> Result<(), Flow> {
        let lane = if item.seq.is_some() {
            Lane::Room(&item.room)
        } else {
            Lane::Ephemeral
        };
        self.write(lane, item.frame.clone()).await?;
        if item.seq.is_some() {
            metrics::message_delivered(Some(item.dispatched));
        }
        Ok(())
    }

    /// Sends every stored message of `room` after `after` (and before `until`, if given) that
    /// the cursor has not delivered. Used for `join` with `since` and for gaps in live
    /// delivery (a message published before its predecessor reached this node); `fill`
    /// says which, for the metrics.
    async fn fill_gap(
        &mut self,
        room: &RoomId,
        after: Seq,
        until: Option<Seq>,
        fill: Fill,
    ) -> Result<(), Flow> {
        let page_size = self.state.limits().max_history_page;
        let mut cursor = after;
        loop {
            let page = match self
                .node
                .store
                .history(room, HistoryRange::After(cursor), page_size)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    // Without the store the session cannot promise a gap-free stream: close it
                    // and let the client resume when the store is back.
                    tracing::warn!(%error, %room, "cannot fill gap from the store");
                    return Err(Flow::Close(CloseCode::InternalError));
                }
            };
            for message in page.messages {
                if until.is_some_and(|until| message.seq >= until) {
                    return Ok(());
                }
                cursor = message.seq;
                if self.state.handle_stored(room, message.seq) == Delivery::Deliver {
                    let frame = encode_server(&ServerFrame::Message(message));
                    self.write(Lane::Room(room), frame).await?;
                    match fill {
                        Fill::Replay => metrics::message_replayed(),
                        Fill::Gap => metrics::message_delivered(None),
                    }
                }
            }
            if !page.has_more {
                return Ok(());
            }
        }
    }

    /// A send's commit finished: ack it or report the failure.
    async fn finish_send(
        &mut self,
        rid: Option<RequestId>,
        cmid: ClientMsgId,
        result: Result<Committed, AppendError>,
    ) -> Result<(), Flow> {
        match result {
            Ok(committed) => {
                let message = committed.message;
                self.reply(&ServerFrame::Acked {
                    rid,
                    room: message.room,
                    seq: message.seq,
                    cmid,
                    ts: message.ts,
                })
                .await
            }
            Err(error) => self.reply_error(rid, &SessionError::Append(error)).await,
        }
    }

    /// Shutdown: tell the client to go away (with a spread-out reconnect delay), then ack
    /// every send already queued for commit, then close.
    async fn drain(&mut self) -> Flow {
        let window = u64::try_from(self.node.reconnect_window.as_millis()).unwrap_or(u64::MAX);
        let reconnect_after_ms = if window == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=window)
        };
        let going_away = ServerFrame::GoingAway {
            reason: "server shutting down".to_owned(),
            reconnect_after_ms,
        };
        if self.reply(&going_away).await.is_err() {
            return Flow::Gone;
        }
        while let Some((rid, cmid, result)) = self.in_flight.next().await {
            if self.finish_send(rid, cmid, result).await.is_err() {
                return Flow::Gone;
            }
        }
        Flow::Close(CloseCode::GoingAway)
    }

    /// Leaves the hub and tells rooms the user went offline (unless the user is still there
    /// on another node).
    async fn unregister(&mut self) {
        if !self.registered {
            return;
        }
        self.registered = false;
        metrics::session_ended(self.kind);
        let Some(user) = self.state.user().cloned() else {
            return;
        };
        let rooms = self.node.hub.unregister(self.id);
        self.node.broker.room_left();
        for room in rooms {
            if self.node.broker.departed(&room, &user).await {
                self.node.broker.publish(&Event::Presence {
                    room,
                    user: user.clone(),
                    state: protocol::PresenceState::Offline,
                });
            }
        }
    }
}

/// Everything a command can fail with, mapped to the wire in exactly one place
/// ([`SessionError::to_frame`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("{1}")]
    Refused(ErrorCode, String),
}

/// How long a client should wait before retrying after `busy`: about one commit.
const BUSY_RETRY: Duration = Duration::from_millis(50);
/// How long a client should wait before retrying after `unavailable`.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

impl SessionError {
    /// The error frame for this failure. Internal details are logged, never sent.
    fn to_frame(&self, rid: Option<RequestId>) -> ServerFrame {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        match self {
            Self::Auth(AuthError::LoginFailed) => {
                ServerFrame::error(rid, ErrorCode::LoginFailed, "wrong user name or password")
            }
            Self::Auth(AuthError::RateLimited { retry_after }) => ServerFrame::retry_error(
                rid,
                ErrorCode::RateLimited,
                "too many failed logins; wait before trying again",
                millis(*retry_after),
            ),
            Self::Auth(AuthError::UserDisabled) => {
                ServerFrame::error(rid, ErrorCode::UserDisabled, "this account is disabled")
            }
            Self::Auth(AuthError::InvalidToken) => ServerFrame::error(
                rid,
                ErrorCode::InvalidToken,
                "the resume token is unknown, expired or used; log in again",
            ),
            Self::Auth(AuthError::Malformed(what)) => {
                ServerFrame::error(rid, ErrorCode::InvalidFrame, format!("malformed {what}"))
            }
            Self::Append(AppendError::Busy) => ServerFrame::retry_error(
                rid,
                ErrorCode::Busy,
                "the server is busy; retry with the same cmid",
                millis(BUSY_RETRY),
            ),
            Self::Append(
                AppendError::Store(StoreError::Unavailable { .. }) | AppendError::Closed,
            )
            | Self::Store(StoreError::Unavailable { .. })
            | Self::Auth(AuthError::Store(StoreError::Unavailable { .. })) => {
                tracing::warn!(error = %self, "store unavailable");
                ServerFrame::retry_error(
                    rid,
                    ErrorCode::Unavailable,
                    "storage is unavailable; retry with the same cmid",
                    millis(UNAVAILABLE_RETRY),
                )
            }
            Self::Refused(code, message) => ServerFrame::error(rid, *code, message.clone()),
            other => {
                tracing::error!(error = %other, "internal error");
                ServerFrame::error(
                    rid,
                    ErrorCode::Internal,
                    "internal error; see the server log",
                )
            }
        }
    }
}
