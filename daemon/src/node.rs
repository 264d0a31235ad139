//! What every session on this node shares: the hub, broker, store, writer, auth and the
//! session settings, plus what status reports about the node (open connections per transport,
//! draining, keys waiting for a restart). Built once at start-up by [`crate::run`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::broker::Broker;
use crate::hub::{Hub, SessionId};
use crate::metrics;
use crate::session::state::SessionLimits;
use crate::store::Store;
use crate::store::writer::WriterHandle;
use crate::transport::admission::Admission;

/// The node's shared services.
#[derive(Debug)]
pub struct Node {
    /// Live subscriptions.
    pub hub: Arc<Hub>,
    /// Event bus.
    pub broker: Broker,
    /// Source of truth.
    pub store: Store,
    /// Group-commit writer.
    pub writer: WriterHandle,
    /// Login.
    pub auth: Auth,
    /// Per-session limits.
    pub limits: SessionLimits,
    /// Events queued per session before it is cut off.
    pub outbox_capacity: usize,
    /// Time allowed for the WebSocket handshake, hello and login.
    pub handshake_timeout: Duration,
    /// The connection limits every accept checks.
    pub admission: Arc<Admission>,
    /// Clients reconnect after a random delay up to this on shutdown.
    pub reconnect_window: Duration,
    /// When the node started.
    pub started: Instant,
    /// Where the node listens, for status.
    pub listeners: Vec<String>,
    /// The daemon's shutdown token: once cancelled, the node is draining.
    pub shutdown: CancellationToken,
    next_session: AtomicU64,
    /// Open connections per transport, indexed by [`TransportKind::index`].
    connections: [AtomicU32; TransportKind::ALL.len()],
    /// Configuration keys changed on disk that take effect only after a restart.
    pending_restart: Mutex<Vec<String>>,
}

impl Node {
    /// Assembles the node.
    #[expect(
        clippy::too_many_arguments,
        reason = "plain assembly of the node's parts"
    )]
    pub fn new(
        hub: Arc<Hub>,
        broker: Broker,
        store: Store,
        writer: WriterHandle,
        auth: Auth,
        limits: SessionLimits,
        outbox_capacity: usize,
        handshake_timeout: Duration,
        admission: Admission,
        reconnect_window: Duration,
    ) -> Self {
        Self {
            hub,
            broker,
            store,
            writer,
            auth,
            limits,
            outbox_capacity,
            handshake_timeout,
            admission: Arc::new(admission),
            reconnect_window,
            started: Instant::now(),
            listeners: Vec::new(),
            shutdown: CancellationToken::new(),
            next_session: AtomicU64::new(1),
            connections: Default::default(),
            pending_restart: Mutex::new(Vec::new()),
        }
    }

    /// A session id unique on this node.
    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Counts a connection of `transport` as open until the returned guard is dropped.
    pub fn open_connection(self: &Arc<Self>, transport: TransportKind) -> OpenConnection {
        self.connections[transport.index()].fetch_add(1, Ordering::Relaxed);
        metrics::connection_opened(transport);
        OpenConnection {
            node: Arc::clone(self),
            transport,
        }
    }

    /// Open connections per transport, every transport listed.
    pub fn connections(&self) -> Vec<(TransportKind, u32)> {
        TransportKind::ALL
            .into_iter()
            .map(|kind| (kind, self.connections[kind.index()].load(Ordering::Relaxed)))
            .collect()
    }

    /// Records the configuration keys that changed on disk but need a restart (empty when
    /// the running configuration matches the file).
    pub fn set_pending_restart(&self, keys: Vec<String>) {
        *self.lock_pending_restart() = keys;
    }

    /// The keys recorded by [`Self::set_pending_restart`].
    pub fn pending_restart(&self) -> Vec<String> {
        self.lock_pending_restart().clone()
    }

    fn lock_pending_restart(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // Replacing or cloning a list cannot be interrupted halfway.
        self.pending_restart
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The transports clients connect with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// WebSocket, plain or over TLS.
    WebSocket,
    /// QUIC (always TLS 1.3).
    Quic,
}

impl TransportKind {
    /// Every transport.
    pub const ALL: [Self; 2] = [Self::WebSocket, Self::Quic];

    /// The name status and metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Quic => "quic",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::WebSocket => 0,
            Self::Quic => 1,
        }
    }
}

/// An open connection, counted until dropped; see [`Node::open_connection`].
#[derive(Debug)]
pub struct OpenConnection {
    node: Arc<Node>,
    transport: TransportKind,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.node.connections[self.transport.index()].fetch_sub(1, Ordering::Relaxed);
        metrics::connection_closed(self.transport);
    }
}
