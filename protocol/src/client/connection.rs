//! One connection, whatever its transport: the `hello` exchange, the writer half, the table
//! of requests waiting for their reply, and the reader task that routes each server frame
//! either to the request with its request id or into the bounded event queue.
//!
//! The reader awaits room in the event queue. An application that stops reading events
//! therefore stops the reader, the socket's receive buffer fills, and the server sees a slow
//! consumer, which is the backpressure the protocol expects. Replies queue behind events in
//! that state, so a request times out while its caller does not read events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::ClientError;
use super::event::Event;
use super::options::ClientOptions;
use super::transport::{self, Reader, Received, Writer};
use crate::codec::{DecodeError, decode_server, encode_client};
use crate::error_code::CloseCode;
use crate::frame::{ClientFrame, Limits, ServerFrame};
use crate::ids::RequestId;

/// How long [`Connection::close`] waits for the server to answer the close handshake.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// An open, `hello`-exchanged connection.
pub(crate) struct Connection {
    writer: tokio::sync::Mutex<Writer>,
    requests: Arc<Requests>,
    /// Behind an async mutex so that reading events takes `&self`: one task may read events
    /// while others send requests.
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    limits: Limits,
    next_rid: AtomicU64,
    request_timeout: Duration,
    reader: JoinHandle<()>,
    /// Stops the reader task; cancelled when the connection is dropped.
    stop: CancellationToken,
}

impl Connection {
    /// Dials `url` (`ws://`, `wss://` or `quic://`), sends `hello` and waits for the
    /// server's `hello`.
    pub(crate) async fn open(url: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let (mut writer, mut reader) = transport::dial(url, options).await?;
        let hello = ClientFrame::Hello {
            version: crate::PROTOCOL_VERSION,
            client: Some(concat!("chatd-protocol/", env!("CARGO_PKG_VERSION")).to_owned()),
        };
        writer.send(encode_client(&hello)).await?;
        let limits = tokio::time::timeout(
            options.request_timeout,
            read_hello(&mut reader, options.max_frame_bytes),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;

        let requests = Arc::new(Requests::default());
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let stop = CancellationToken::new();
        let router = Router {
            requests: Arc::clone(&requests),
            events: events_tx,
            max_frame_bytes: options.max_frame_bytes,
            stop: stop.clone(),
        };
        let reader = tokio::spawn(read_loop(reader, router));
        Ok(Self {
            writer: tokio::sync::Mutex::new(writer),
            requests,
            events: tokio::sync::Mutex::new(events_rx),
            limits,
            next_rid: AtomicU64::new(1),
            request_timeout: options.request_timeout,
            reader,
            stop,
        })
    }

    /// The limits the server announced in its `hello`.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sends the frame `build` makes with a fresh request id and waits for the reply with
    /// that id. An `error` reply becomes [`ClientError::Server`].
    ///
    /// Cancel safety: dropping the future forgets the request; a late reply is discarded.
    pub(crate) async fn request(
        &self,
        build: impl FnOnce(Option<RequestId>) -> ClientFrame,
    ) -> Result<ServerFrame, ClientError> {
        let rid = self.next_rid();
        let (reply_tx, reply_rx) = oneshot::channel();
        let waiting = self.requests.register(rid.clone(), reply_tx)?;
        self.send_frame(&build(Some(rid))).await?;
        let reply = match tokio::time::timeout(self.request_timeout, reply_rx).await {
            Err(_elapsed) => return Err(ClientError::Timeout),
            Ok(Err(_closed)) => return Err(ClientError::Closed(self.requests.close_code())),
            Ok(Ok(reply)) => reply,
        };
        drop(waiting);
        match reply {
            Ok(ServerFrame::Error {
                code,
                message,
                retry_after_ms,
                ..
            }) => Err(ClientError::Server {
                code,
                message,
                retry_after: retry_after_ms.map(Duration::from_millis),
            }),
            Ok(frame) => Ok(frame),
            Err(decode) => Err(ClientError::Protocol(decode.to_string())),
        }
    }

    /// Sends one frame that expects no reply.
    pub(crate) async fn send_frame(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.send_bytes(encode_client(frame)).await
    }

    /// Sends arbitrary text as one frame.
    pub(crate) async fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.send_bytes(Bytes::copy_from_slice(text.as_bytes()))
            .await
    }

    /// Moves a QUIC connection to a new local address.
    pub(crate) async fn rebind(&self) -> Result<(), ClientError> {
        self.writer.lock().await.rebind()
    }

    /// The next event, or `None` once the connection's last event ([`Event::Closed`]) was
    /// read.
    ///
    /// Cancel safety: cancel-safe; an event is never lost by dropping the future.
    pub(crate) async fn next_event(&self) -> Option<Event> {
        self.events.lock().await.recv().await
    }

    /// Starts the close with a normal close code, waits briefly for it to complete (the
    /// server's close reply on a WebSocket, the close reaching the server on QUIC), then stops
    /// the reader.
    pub(crate) async fn close(self) {
        let mut writer = self.writer.lock().await;
        if writer.close().await {
            // The reader sees the server's close reply and ends; the remaining events are
            // discarded with the connection.
            let reader = &mut *self.events.lock().await;
            let drain = async { while reader.recv().await.is_some() {} };
            if tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, drain)
                .await
                .is_err()
            {
                tracing::debug!("server did not finish the close handshake in time");
            }
        }
        if tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, writer.closed())
            .await
            .is_err()
        {
            tracing::debug!("the close did not complete in time");
        }
        drop(writer);
        self.stop.cancel();
    }

    fn next_rid(&self) -> RequestId {
        rid_from_counter(self.next_rid.fetch_add(1, Ordering::Relaxed))
    }

    async fn send_bytes(&self, frame: Bytes) -> Result<(), ClientError> {
        if let Some(code) = self.requests.closed() {
            return Err(ClientError::Closed(code));
        }
        let mut writer = self.writer.lock().await;
        writer.send(frame).await.map_err(|error| {
            // A write that failed because the connection ended reports how it ended.
            match self.requests.closed() {
                Some(code) => ClientError::Closed(code),
                None => error,
            }
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stop.cancel();
        self.reader.abort();
    }
}

/// The request id the client gives its `n`th request: `r1`, `r2`, ...
#[expect(
    clippy::unwrap_used,
    reason = "`r` and the decimal digits of a u64 are printable ASCII of at most 21 bytes, \
              always a valid request id"
)]
fn rid_from_counter(n: u64) -> RequestId {
    RequestId::parse(&format!("r{n}")).unwrap()
}

/// Requests waiting for their reply, and whether the connection has ended.
#[derive(Default)]
struct Requests {
    state: Mutex<RequestsState>,
}

type ReplySender = oneshot::Sender<Result<ServerFrame, DecodeError>>;

#[derive(Default)]
struct RequestsState {
    waiting: HashMap<RequestId, ReplySender>,
    /// `Some` once the reader ended, holding the server's close code if it sent one.
    closed: Option<Option<CloseCode>>,
}

impl Requests {
    fn lock(&self) -> MutexGuard<'_, RequestsState> {
        // The state stays consistent across a panic (each update is one map operation).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a request; the returned guard unregisters it when dropped.
    fn register(&self, rid: RequestId, reply: ReplySender) -> Result<Waiting<'_>, ClientError> {
        let mut state = self.lock();
        if let Some(code) = state.closed {
            return Err(ClientError::Closed(code));
        }
        state.waiting.insert(rid.clone(), reply);
        Ok(Waiting {
            requests: self,
            rid,
        })
    }

    /// Hands a reply to the request with `rid`; `false` when no request waits for it.
    fn resolve(&self, rid: &RequestId, reply: Result<ServerFrame, DecodeError>) -> bool {
        match self.lock().waiting.remove(rid) {
            Some(waiter) => {
                // The caller may have given up in the meantime; then the reply is dropped.
                let _ = waiter.send(reply);
                true
            }
            None => false,
        }
    }

    /// Ends the connection: every waiting request fails with `Closed(code)`.
    fn close(&self, code: Option<CloseCode>) {
        let mut state = self.lock();
        state.closed = Some(code);
        state.waiting.clear();
    }

    fn closed(&self) -> Option<Option<CloseCode>> {
        self.lock().closed
    }

    fn close_code(&self) -> Option<CloseCode> {
        self.lock().closed.flatten()
    }
}

/// Unregisters a request when its caller stops waiting.
struct Waiting<'a> {
    requests: &'a Requests,
    rid: RequestId,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.requests.lock().waiting.remove(&self.rid);
    }
}

/// Where the reader task sends what it reads.
struct Router {
    requests: Arc<Requests>,
    events: mpsc::Sender<Event>,
    max_frame_bytes: usize,
    stop: CancellationToken,
}

/// Reads until the socket ends or the connection is dropped; then fails the waiting requests
/// and queues [`Event::Closed`].
async fn read_loop(mut reader: Reader, task: Router) {
    let close_code = loop {
        let received = tokio::select! {
            () = task.stop.cancelled() => break None,
            received = reader.next() => received,
        };
        match received {
            Received::Frame(bytes) => {
                if !task.handle_frame(&bytes).await {
                    break None;
                }
            }
            Received::Closed(code) => break code,
        }
    };
    task.requests.close(close_code);
    tokio::select! {
        () = task.stop.cancelled() => {}
        _ = task.events.send(Event::Closed(close_code)) => {}
    }
}

impl Router {
    /// Routes one frame; `false` when the connection was dropped meanwhile.
    async fn handle_frame(&self, bytes: &[u8]) -> bool {
        let frame = match decode_server(bytes, self.max_frame_bytes) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::debug!(%error, "undecodable server frame");
                if let Some(rid) = error.rid().cloned() {
                    self.requests.resolve(&rid, Err(error));
                }
                return true;
            }
        };
        if let Some(rid) = reply_rid(&frame) {
            let rid = rid.clone();
            if !self.requests.resolve(&rid, Ok(frame)) {
                tracing::debug!(rid = %rid, "reply for a request nobody waits for");
            }
            return true;
        }
        let Some(event) = Event::from_frame(frame) else {
            tracing::debug!("ignoring a reply frame without request id");
            return true;
        };
        tokio::select! {
            () = self.stop.cancelled() => false,
            sent = self.events.send(event) => sent.is_ok(),
        }
    }
}

/// The request id of a reply frame; events carry none.
fn reply_rid(frame: &ServerFrame) -> Option<&RequestId> {
    match frame {
        ServerFrame::LoginChallenge { rid, .. }
        | ServerFrame::Welcome { rid, .. }
        | ServerFrame::Joined { rid, .. }
        | ServerFrame::Left { rid, .. }
        | ServerFrame::Acked { rid, .. }
        | ServerFrame::HistoryPage { rid, .. }
        | ServerFrame::Pong { rid }
        | ServerFrame::Error { rid, .. } => rid.as_ref(),
        ServerFrame::Hello { .. }
        | ServerFrame::Message(_)
        | ServerFrame::Presence { .. }
        | ServerFrame::Typing { .. }
        | ServerFrame::GoingAway { .. } => None,
    }
}

/// Reads the server's answer to `hello`.
async fn read_hello(reader: &mut Reader, max_frame_bytes: usize) -> Result<Limits, ClientError> {
    let bytes = match reader.next().await {
        Received::Frame(bytes) => bytes,
        Received::Closed(code) => return Err(ClientError::Closed(code)),
    };
    let frame = decode_server(&bytes, max_frame_bytes)
        .map_err(|e| ClientError::Protocol(format!("answer to hello: {e}")))?;
    match frame {
        ServerFrame::Hello {
            version, limits, ..
        } if version == crate::PROTOCOL_VERSION => Ok(limits),
        ServerFrame::Hello { version, .. } => Err(ClientError::Protocol(format!(
            "server speaks protocol version {version}, this client {}",
            crate::PROTOCOL_VERSION
        ))),
        ServerFrame::Error {
            code,
            message,
            retry_after_ms,
            ..
        } => Err(ClientError::Server {
            code,
            message,
            retry_after: retry_after_ms.map(Duration::from_millis),
        }),
        other => Err(ClientError::Protocol(format!(
            "expected hello, got {}",
            frame_kind(&other)
        ))),
    }
}

/// The `type` name of a server frame, for error messages.
pub(crate) fn frame_kind(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Hello { .. } => "hello",
        ServerFrame::LoginChallenge { .. } => "login_challenge",
        ServerFrame::Welcome { .. } => "welcome",
        ServerFrame::Joined { .. } => "joined",
        ServerFrame::Left { .. } => "left",
        ServerFrame::Message(_) => "message",
        ServerFrame::Acked { .. } => "acked",
        ServerFrame::HistoryPage { .. } => "history_page",
        ServerFrame::Presence { .. } => "presence",
        ServerFrame::Typing { .. } => "typing",
        ServerFrame::Pong { .. } => "pong",
        ServerFrame::Error { .. } => "error",
        ServerFrame::GoingAway { .. } => "going_away",
    }
}
