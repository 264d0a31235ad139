//! Tests of the group-commit writer on a real SQLite file. To hold the writer inside a commit
//! (so the queue fills up deterministically) a test takes the database's write lock from a
//! second connection, as another process could.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use protocol::{Message, Seq};
use tokio_util::sync::CancellationToken;

use super::TempSqlite;
use super::suite::{room, send, user};
use crate::lifecycle::Tasks;
use crate::store::writer::{AppendError, WriterHandle, WriterSettings, spawn_writer, wire_bytes};
use crate::store::{Committed, HistoryRange, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_publishes_in_seq_order_before_acking() {
    const SENDERS: usize = 16;
    const PER_SENDER: usize = 25;
    let running = Running::start(TempSqlite::new().await, settings(1_024, 64)).await;
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let (writer, published) = (running.writer.clone(), Arc::clone(&running.published));
        senders.spawn(async move {
            let from = user(&format!("user{sender}"));
            for i in 0..PER_SENDER {
                let target = if i % 2 == 0 {
                    room("lobby")
                } else {
                    room("staff")
                };
                let ack = writer
                    .append(send(&target, &from, &format!("c{i}"), "x"))
                    .await
                    .unwrap();
                assert!(!ack.duplicate);
                let seen = published.lock().unwrap().contains(&ack.message);
                assert!(
                    seen,
                    "{:?} acknowledged before it was published",
                    ack.message
                );
            }
        });
    }
    while let Some(sender) = senders.join_next().await {
        sender.unwrap();
    }

    let published = running.published.lock().unwrap().clone();
    assert_eq!(published.len(), SENDERS * PER_SENDER);
    for name in ["lobby", "staff"] {
        let seqs: Vec<u64> = published
            .iter()
            .filter(|m| m.room.as_str() == name)
            .map(|m| m.seq.0)
            .collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "publish order of {name}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_commits_concurrent_sends_in_few_transactions() {
    const SENDS: usize = 200;
    const MAX_BATCH: usize = 32;
    let running = Running::start(TempSqlite::new().await, settings(1_024, MAX_BATCH)).await;
    let lock = running.db.lock_writes().await;
    let alice = user("alice");
    let mut appends: Vec<_> = (0..SENDS)
        .map(|i| {
            Box::pin(
                running
                    .writer
                    .append(send(&room("lobby"), &alice, &format!("c{i}"), "x")),
            )
        })
        .collect();
    for append in &mut appends {
        assert!(
            poll_once(append).await.is_none(),
            "a send finished while writes are locked"
        );
    }
    lock.release().await;
    let mut seqs = Vec::new();
    for append in appends {
        seqs.push(append.await.unwrap().message.seq.0);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=SENDS as u64).collect::<Vec<_>>());
    // Everything was queued while the first batch waited for the lock, so the rest went
    // out in full batches.
    let transactions = running.writer.transactions();
    let most = 1 + SENDS.div_ceil(MAX_BATCH) as u64;
    assert!(
        transactions <= most,
        "{transactions} transactions for {SENDS} sends"
    );
    running.stop().await;
}

/// `max_batch_bytes` closes a batch before the send that would pass it; a send larger than
/// the limit still goes, alone.
#[tokio::test]
async fn writer_keeps_batches_within_max_batch_bytes() {
    const SENDS: usize = 30;
    let body = "b".repeat(100);
    let alice = user("alice");
    let one = wire_bytes(&send(&room("lobby"), &alice, "c10", &body));
    let mut limited = settings(1_024, 256);
    limited.max_batch_bytes = 3 * one;
    let running = Running::start(TempSqlite::new().await, limited).await;
    let lock = running.db.lock_writes().await;
    let mut appends: Vec<_> = (10..10 + SENDS)
        .map(|i| {
            let message = send(&room("lobby"), &alice, &format!("c{i}"), &body);
            assert_eq!(wire_bytes(&message), one);
            Box::pin(running.writer.append(message))
        })
        .collect();
    let oversized = "o".repeat(4 * one);
    appends.push(Box::pin(running.writer.append(send(
        &room("lobby"),
        &alice,
        "big",
        &oversized,
    ))));
    for append in &mut appends {
        assert!(poll_once(append).await.is_none());
    }
    lock.release().await;
    let mut seqs = Vec::new();
    for append in appends {
        seqs.push(append.await.unwrap().message.seq.0);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=SENDS as u64 + 1).collect::<Vec<_>>());
    // At most three sends per transaction, the oversized one alone: at least 10 + 1.
    let transactions = running.writer.transactions();
    assert!(transactions >= 11, "{transactions} transactions");
    assert!(transactions <= 12, "{transactions} transactions");
    assert_eq!(running.writer.batched_sends(), SENDS as u64 + 1);
    running.stop().await;
}

#[tokio::test]
async fn writer_refuses_sends_when_its_queue_is_full() {
    let running = Running::start(TempSqlite::new().await, settings(2, 1)).await;
    let lock = running.db.lock_writes().await;
    let alice = user("alice");
    let lobby = room("lobby");
    let mut in_commit = Box::pin(running.writer.append(send(&lobby, &alice, "a", "a")));
    assert!(poll_once(&mut in_commit).await.is_none());
    eventually("the writer takes the first send", || {
        running.writer.queued() == 0
    })
    .await;
    let mut queued: Vec<_> = ["b", "c"]
        .map(|id| Box::pin(running.writer.append(send(&lobby, &alice, id, id))))
        .into_iter()
        .collect();
    for append in &mut queued {
        assert!(poll_once(append).await.is_none());
    }
    assert_eq!(running.writer.queued(), 2);

    let refused = running.writer.append(send(&lobby, &alice, "d", "d")).await;
    assert!(matches!(refused, Err(AppendError::Busy)), "{refused:?}");

    lock.release().await;
    assert_eq!(in_commit.await.unwrap().message.seq, Seq(1));
    for (append, seq) in queued.into_iter().zip(2..) {
        assert_eq!(append.await.unwrap().message.seq, Seq(seq));
    }
    let page = running
        .db
        .store
        .history(&lobby, HistoryRange::Latest, 10)
        .await
        .unwrap();
    let bodies: Vec<&str> = page.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["a", "b", "c"], "the refused send stored nothing");
    running.stop().await;
}

#[tokio::test]
async fn writer_answers_every_sender_of_a_failed_transaction() {
    let db = TempSqlite::with_busy_timeout(Duration::from_millis(100)).await;
    let running = Running::start(db, settings(16, 4)).await;
    let lock = running.db.lock_writes().await;
    let alice = user("alice");
    let lobby = room("lobby");
    let mut appends: Vec<_> = (0..6)
        .map(|i| {
            Box::pin(
                running
                    .writer
                    .append(send(&lobby, &alice, &format!("c{i}"), "x")),
            )
        })
        .collect();
    for append in &mut appends {
        assert!(poll_once(append).await.is_none());
    }
    for append in appends {
        let result = append.await;
        let failed = matches!(
            result,
            Err(AppendError::Store(StoreError::Unavailable { .. }))
        );
        assert!(failed, "{result:?}");
    }
    assert!(running.writer.transactions() >= 2);
    assert!(running.published.lock().unwrap().is_empty());
    lock.release().await;

    assert_eq!(
        running
            .db
            .store
            .room(&lobby)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        Seq::ZERO
    );
    let after = running
        .writer
        .append(send(&lobby, &alice, "c0", "again"))
        .await
        .unwrap();
    assert_eq!((after.message.seq, after.duplicate), (Seq(1), false));
    running.stop().await;
}

#[tokio::test]
async fn writer_acks_a_resend_without_publishing_it_again() {
    let running = Running::start(TempSqlite::new().await, settings(16, 4)).await;
    let (lobby, alice) = (room("lobby"), user("alice"));
    let first = running
        .writer
        .append(send(&lobby, &alice, "c1", "hi"))
        .await
        .unwrap();
    let again = running
        .writer
        .append(send(&lobby, &alice, "c1", "hi"))
        .await
        .unwrap();
    assert_eq!(
        again,
        Committed {
            message: first.message.clone(),
            duplicate: true
        }
    );
    assert_eq!(*running.published.lock().unwrap(), [first.message]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_commits_its_queue_on_shutdown_then_refuses() {
    const SENDS: usize = 10;
    let running = Running::start(TempSqlite::new().await, settings(16, 2)).await;
    let lock = running.db.lock_writes().await;
    let (lobby, alice) = (room("lobby"), user("alice"));
    let mut appends: Vec<_> = (0..SENDS)
        .map(|i| {
            Box::pin(
                running
                    .writer
                    .append(send(&lobby, &alice, &format!("c{i}"), "x")),
            )
        })
        .collect();
    for append in &mut appends {
        assert!(poll_once(append).await.is_none());
    }
    running.tasks.cancel();
    lock.release().await;

    for (append, seq) in appends.into_iter().zip(1..) {
        assert_eq!(append.await.unwrap().message.seq, Seq(seq));
    }
    tokio::time::timeout(Duration::from_secs(10), running.tasks.wait())
        .await
        .unwrap();
    let late = running
        .writer
        .append(send(&lobby, &alice, "late", "x"))
        .await;
    assert!(matches!(late, Err(AppendError::Closed)), "{late:?}");
    assert_eq!(running.published.lock().unwrap().len(), SENDS);
    let page = running
        .db
        .store
        .history(&lobby, HistoryRange::Latest, 100)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), SENDS);
}

/// Run with `cargo test --release -p chatd stress_writer -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement; prints sends per second"]
async fn stress_writer_throughput() {
    const SENDERS: usize = 16;
    const SENDS: usize = 2_000;
    for delay_us in [0, 1_000] {
        let mut settings = settings(1_024, 256);
        settings.max_batch_delay = Duration::from_micros(delay_us);
        let running = Running::start(TempSqlite::new().await, settings).await;
        let started = Instant::now();
        let mut senders = tokio::task::JoinSet::new();
        for sender in 0..SENDERS {
            let writer = running.writer.clone();
            senders.spawn(async move {
                let from = user(&format!("user{sender}"));
                for i in 0..SENDS / SENDERS {
                    let target = room(if i % 4 == 0 { "staff" } else { "lobby" });
                    writer
                        .append(send(&target, &from, &format!("c{i}"), "hello there"))
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(sender) = senders.join_next().await {
            sender.unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "max_batch_delay {delay_us} µs: {SENDS} sends from {SENDERS} tasks in {elapsed:?} \
             = {:.0} sends/s, {} transactions",
            SENDS as f64 / elapsed.as_secs_f64(),
            running.writer.transactions(),
        );
        running.stop().await;
    }
}

/// A writer on `db` with rooms `lobby` and `staff`, recording what it publishes.
struct Running {
    db: TempSqlite,
    tasks: Tasks,
    writer: WriterHandle,
    published: Arc<Mutex<Vec<Message>>>,
}

impl Running {
    async fn start(db: TempSqlite, settings: WriterSettings) -> Self {
        for name in ["lobby", "staff"] {
            db.store.create_room(&room(name), false).await.unwrap();
        }
        let tasks = Tasks::new(&CancellationToken::new());
        let published = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&published);
        let publish = Box::new(move |message: &Message| log.lock().unwrap().push(message.clone()));
        let writer = spawn_writer(db.store.clone(), settings, publish, &tasks);
        Self {
            db,
            tasks,
            writer,
            published,
        }
    }

    async fn stop(self) {
        self.tasks.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .unwrap();
    }
}

fn settings(queue_capacity: usize, max_batch: usize) -> WriterSettings {
    WriterSettings {
        queue_capacity,
        max_batch,
        max_batch_bytes: 0,
        max_batch_delay: Duration::ZERO,
    }
}

/// Polls `future` once: an append queues its send (or is refused) on its first poll, so after
/// this the test knows where the send is.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *future).poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
