//! The group-commit writer: one task per node that takes sends from a bounded queue,
//! commits them in batches (one transaction each) and only then acknowledges each sender and
//! publishes the new messages, in commit order.
//!
//! The queue is bounded by `queue_capacity`; when it is full, [`WriterHandle::append`]
//! fails at once with [`AppendError::Busy`] so senders get `busy` instead of the daemon
//! growing memory without bound.
//!
//! Batches form by themselves under load: while one transaction waits for its fsync, new
//! sends queue up and become the next batch. `max_batch_delay` can hold a batch open a little
//! longer to gather more; zero commits whatever is queued at once.
//!
//! Every new message is published before any sender of its batch is answered, so a sender that
//! sees its ack can rely on the broker already carrying the message.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use protocol::Message;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Committed, NewMessage, Store, StoreError, now_ms};
use crate::lifecycle::Tasks;
use crate::metrics;

/// How the writer queues and batches.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Sends that may wait for the writer; one more fails with [`AppendError::Busy`].
    /// Values below 1 count as 1.
    pub queue_capacity: usize,
    /// The most sends committed in one transaction. Values below 1 count as 1.
    pub max_batch: usize,
    /// The most bytes of sends ([`wire_bytes`]) in one transaction; a batch always takes
    /// at least one send. Zero means no limit.
    pub max_batch_bytes: usize,
    /// How long a batch stays open for more sends once the queue is empty. Zero commits at
    /// once; under load batches still grow while the previous transaction commits.
    pub max_batch_delay: Duration,
}

/// Why a send was not committed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The queue is full; nothing was stored. The sender may retry later.
    #[error("the store writer is busy")]
    Busy,
    /// The writer has stopped (shutdown); nothing was stored by this call.
    #[error("the store writer has stopped")]
    Closed,
    /// The batch's transaction failed; nothing of the batch was stored.
    #[error("commit failed: {0}")]
    Store(StoreError),
}

/// Queues sends for the writer task. Cheap to clone; the task stops when shutdown begins or
/// when every handle is dropped.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    queue: mpsc::Sender<Request>,
    counters: Arc<Counters>,
}

/// What the writer has done since start, for status and benchmarks.
#[derive(Debug, Default)]
struct Counters {
    transactions: AtomicU64,
    sends: AtomicU64,
}

impl WriterHandle {
    /// Queues `message` and waits until its batch is committed and published.
    ///
    /// # Errors
    /// [`AppendError::Busy`] at once when the queue is full, [`AppendError::Closed`] when the
    /// writer has stopped, [`AppendError::Store`] when the transaction failed.
    ///
    /// # Cancel safety
    /// Not cancel safe: once queued, a send is committed (and published) even if this future
    /// is dropped; only its answer is lost. A resend with the same client message id gets it.
    pub async fn append(&self, message: NewMessage) -> Result<Committed, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Request { message, reply })
            .map_err(|error| match error {
                TrySendError::Full(_) => AppendError::Busy,
                TrySendError::Closed(_) => AppendError::Closed,
            })?;
        // The writer answers every request it takes; a dropped reply means its task was
        // aborted (shutdown ran out of time).
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Transactions the writer has run so far, committed or failed.
    pub fn transactions(&self) -> u64 {
        self.counters.transactions.load(Ordering::Relaxed)
    }

    /// Sends carried by those transactions; divided by [`Self::transactions`], the mean
    /// batch size.
    pub fn batched_sends(&self) -> u64 {
        self.counters.sends.load(Ordering::Relaxed)
    }

    /// Sends waiting in the queue (not counting the batch being committed).
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// Starts the writer task on `tasks`. `publish` is called once per newly committed message,
/// in commit order, before the senders of its batch are answered; duplicates are not
/// published again.
///
/// When `tasks.token()` is cancelled the writer refuses new sends ([`AppendError::Closed`]),
/// commits and answers every send already queued, and ends.
pub fn spawn_writer(
    store: Store,
    settings: WriterSettings,
    publish: Box<dyn FnMut(&Message) + Send>,
    tasks: &Tasks,
) -> WriterHandle {
    let (queue, requests) = mpsc::channel(settings.queue_capacity.max(1));
    let counters = Arc::new(Counters::default());
    let writer = Writer {
        store,
        max_batch: settings.max_batch.max(1),
        max_batch_bytes: match settings.max_batch_bytes {
            0 => usize::MAX,
            limit => limit,
        },
        held: None,
        batch_bytes: 0,
        max_batch_delay: settings.max_batch_delay,
        publish,
        requests,
        counters: Arc::clone(&counters),
    };
    tasks.spawn("store writer", writer.run(tasks.token().clone()));
    WriterHandle { queue, counters }
}

/// One queued send and where its answer goes.
#[derive(Debug)]
struct Request {
    message: NewMessage,
    reply: oneshot::Sender<Result<Committed, AppendError>>,
}

/// The writer task's state.
struct Writer {
    store: Store,
    max_batch: usize,
    max_batch_bytes: usize,
    /// A send taken from the queue that did not fit the batch being formed; it starts the
    /// next one.
    held: Option<Request>,
    /// [`wire_bytes`] of the batch being formed.
    batch_bytes: usize,
    max_batch_delay: Duration,
    publish: Box<dyn FnMut(&Message) + Send>,
    requests: mpsc::Receiver<Request>,
    counters: Arc<Counters>,
}

impl Writer {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            let first = if let Some(held) = self.held.take() {
                held
            } else {
                tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                    request = self.requests.recv() => match request {
                        Some(request) => request,
                        // Every handle is gone, so nobody can send or wait any more.
                        None => return,
                    },
                }
            };
            self.add(&mut batch, first);
            self.collect(&mut batch, &shutdown).await;
            self.commit(&mut batch).await;
        }

        // Shutdown: new sends get `Closed` from here on; what was accepted is committed and
        // answered, so every acknowledged message is stored and no sender waits forever.
        self.requests.close();
        loop {
            if let Some(held) = self.held.take() {
                self.add(&mut batch, held);
            }
            self.take_queued(&mut batch);
            if batch.is_empty() {
                break;
            }
            self.commit(&mut batch).await;
        }
        tracing::debug!("store writer stopped");
    }

    /// Fills `batch` up to `max_batch`: first with what is queued, then with what arrives
    /// within `max_batch_delay`. Ends early on shutdown; the batch is committed either way.
    async fn collect(&mut self, batch: &mut Vec<Request>, shutdown: &CancellationToken) {
        self.take_queued(batch);
        if self.is_full(batch) || self.max_batch_delay.is_zero() {
            return;
        }
        let deadline = tokio::time::sleep(self.max_batch_delay);
        tokio::pin!(deadline);
        // Bounded: every turn adds one send or ends the loop.
        while !self.is_full(batch) {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = &mut deadline => return,
                request = self.requests.recv() => match request {
                    Some(request) => self.add(batch, request),
                    None => return,
                },
            }
        }
    }

    fn take_queued(&mut self, batch: &mut Vec<Request>) {
        while !self.is_full(batch) {
            match self.requests.try_recv() {
                Ok(request) => self.add(batch, request),
                Err(_) => break,
            }
        }
    }

    /// Whether `batch` takes no more sends: `max_batch` reached, or a send is held back
    /// because it would have passed `max_batch_bytes`.
    fn is_full(&self, batch: &[Request]) -> bool {
        batch.len() >= self.max_batch || self.held.is_some()
    }

    /// Adds `request` to `batch`, or holds it for the next batch when it would take the
    /// batch past `max_batch_bytes` (a batch always takes its first send).
    fn add(&mut self, batch: &mut Vec<Request>, request: Request) {
        let bytes = self
            .batch_bytes
            .saturating_add(wire_bytes(&request.message));
        if !batch.is_empty() && bytes > self.max_batch_bytes {
            self.held = Some(request);
        } else {
            self.batch_bytes = bytes;
            batch.push(request);
        }
    }

    /// Commits and empties `batch`, publishes its new messages, then answers its senders.
    async fn commit(&mut self, batch: &mut Vec<Request>) {
        self.batch_bytes = 0;
        let (messages, replies): (Vec<NewMessage>, Vec<_>) = batch
            .drain(..)
            .map(|request| (request.message, request.reply))
            .unzip();
        let started = Instant::now();
        let result = self.store.append_batch(&messages, now_ms()).await;
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .sends
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        match result {
            Ok(committed) => {
                let new = committed.iter().filter(|entry| !entry.duplicate).count();
                metrics::batch_committed(messages.len(), new, elapsed);
                tracing::debug!(
                    size = messages.len(),
                    commit_us = elapsed_us,
                    "batch committed"
                );
                for entry in committed.iter().filter(|entry| !entry.duplicate) {
                    (self.publish)(&entry.message);
                }
                for (reply, entry) in replies.into_iter().zip(committed) {
                    // A sender that stopped waiting still had its message committed; a resend
                    // with the same client message id gets the ack.
                    let _ = reply.send(Ok(entry));
                }
            }
            Err(error) => {
                metrics::batch_failed(messages.len(), elapsed);
                tracing::warn!(
                    size = messages.len(),
                    commit_us = elapsed_us,
                    %error,
                    "batch failed, nothing stored"
                );
                let mut replies = replies.into_iter();
                let last = replies.next_back();
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Store(copy_of(&error))));
                }
                if let Some(reply) = last {
                    let _ = reply.send(Err(AppendError::Store(error)));
                }
            }
        }
    }
}

/// What a send adds to a commit's request: its body and ids, plus the length prefixes of the
/// four arrays they travel in.
pub fn wire_bytes(message: &NewMessage) -> usize {
    message.body.len()
        + message.room.as_str().len()
        + message.from.as_str().len()
        + message.cmid.as_str().len()
        + 16
}

/// The same failure for another sender of the batch. Database errors cannot be cloned, so the
/// copy of `Unavailable` carries the source's text instead of the source itself.
fn copy_of(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable { op, source } => StoreError::Unavailable {
            op,
            source: sqlx::Error::Io(io::Error::other(source.to_string())),
        },
        StoreError::NotFound { what } => StoreError::NotFound { what: what.clone() },
        StoreError::AlreadyExists { what } => StoreError::AlreadyExists { what: what.clone() },
        StoreError::Corrupt { detail } => StoreError::Corrupt {
            detail: detail.clone(),
        },
        StoreError::Migrate(_)
        | StoreError::SchemaOutdated { .. }
        | StoreError::UnsupportedUrl { .. } => StoreError::Corrupt {
            detail: error.to_string(),
        },
    }
}
