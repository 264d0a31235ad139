//! A session's outbox: the bounded queue the hub pushes encoded events into, and the kick
//! signal the hub (or an operator) uses to close the session.
//!
//! The hub never waits on a session. When an outbox is full the session is kicked with
//! `slow_consumer`: it reconnects and resumes from the store, and the other subscribers never
//! notice it (docs/decisions/0001-slow-consumers.md).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use protocol::{CloseCode, RoomId, Seq};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One encoded event for one session. `frame` is shared by every recipient: the hub encodes
/// each event once.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// The room the event belongs to.
    pub room: RoomId,
    /// For message events, the sequence number, so the session can drop duplicates and
    /// notice gaps.
    pub seq: Option<Seq>,
    /// The encoded `ServerFrame`.
    pub frame: Bytes,
    /// When the hub took the event, for the fan-out latency metric. For a message that is
    /// right after its commit: the writer publishes each batch as soon as it commits.
    pub dispatched: Instant,
}

/// The hub's end of a session's outbox.
#[derive(Debug, Clone)]
pub struct OutboxSender {
    queue: mpsc::Sender<OutboxItem>,
    kick: Arc<Kick>,
}

/// The session's end of its outbox.
#[derive(Debug)]
pub struct OutboxReceiver {
    /// Events, in the order the hub dispatched them.
    pub queue: mpsc::Receiver<OutboxItem>,
    /// Fires when the session must close.
    pub kick: Arc<Kick>,
}

/// Creates an outbox holding at most `capacity` events.
pub fn outbox(capacity: usize) -> (OutboxSender, OutboxReceiver) {
    let (queue_tx, queue_rx) = mpsc::channel(capacity.max(1));
    let kick = Arc::new(Kick::default());
    (
        OutboxSender {
            queue: queue_tx,
            kick: Arc::clone(&kick),
        },
        OutboxReceiver {
            queue: queue_rx,
            kick,
        },
    )
}

/// Whether a push reached the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// The outbox was full; the session has been kicked as a slow consumer.
    Overflowed,
    /// The session is gone.
    Closed,
}

impl OutboxSender {
    /// Queues an item without waiting; kicks the session when its outbox is full.
    pub fn push(&self, item: OutboxItem) -> Pushed {
        match self.queue.try_send(item) {
            Ok(()) => Pushed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kick.fire(CloseCode::SlowConsumer);
                Pushed::Overflowed
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Closed,
        }
    }

    /// Asks the session to close with `code`.
    pub fn kick(&self, code: CloseCode) {
        self.kick.fire(code);
    }
}

/// A one-shot "close now, for this reason" signal. The first reason wins.
#[derive(Debug, Default)]
pub struct Kick {
    reason: OnceLock<CloseCode>,
    fired: CancellationToken,
}

impl Kick {
    /// Fires the signal with `code` unless it already fired.
    pub fn fire(&self, code: CloseCode) {
        let _first = self.reason.set(code);
        self.fired.cancel();
    }

    /// Waits until the signal fires and returns its reason. Cancel-safe.
    pub async fn fired(&self) -> CloseCode {
        self.fired.cancelled().await;
        self.reason
            .get()
            .copied()
            .unwrap_or(CloseCode::InternalError)
    }

    /// The reason, if the signal fired.
    pub fn reason(&self) -> Option<CloseCode> {
        self.reason.get().copied()
    }
}
