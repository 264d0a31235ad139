//! What every session on this node shares: the hub, broker, store, writer, auth and the
//! session settings. Built once at start-up by [`crate::run`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::auth::Auth;
use crate::broker::Broker;
use crate::hub::{Hub, SessionId};
use crate::session::state::SessionLimits;
use crate::store::Store;
use crate::store::writer::WriterHandle;

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
    /// Clients reconnect after a random delay up to this on shutdown.
    pub reconnect_window: Duration,
    /// When the node started.
    pub started: Instant,
    /// Where the node listens, for status.
    pub listeners: Vec<String>,
    next_session: AtomicU64,
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
            reconnect_window,
            started: Instant::now(),
            listeners: Vec::new(),
            next_session: AtomicU64::new(1),
        }
    }

    /// A session id unique on this node.
    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }
}
