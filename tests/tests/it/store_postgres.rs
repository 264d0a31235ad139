//! The store against a private PostgreSQL: every check of the shared store suite (the same
//! ones SQLite passes), then what only a shared server has: two nodes (two pools) writing one
//! room, a resend racing its first commit on another node, the schema check with migrations
//! off, an outage and recovery, and the group-commit writer held up by a table lock.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use chatd::lifecycle::Tasks;
use chatd::store::suite::{self, room, send, user};
use chatd::store::writer::{AppendError, WriterHandle, WriterSettings, spawn_writer};
use chatd::store::{HistoryRange, NewMessage, Store, StoreError, StoreSettings};
use chatd_tests::TestPostgres;
use chatd_tests::wait::within;
use protocol::{Message, Seq};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio_util::sync::CancellationToken;

/// A migrated store on a fresh database of the shared server.
async fn fresh_store() -> (Store, String) {
    let url = TestPostgres::shared().await.create_database().await;
    let store = Store::open(&StoreSettings::new(url.clone(), 8))
        .await
        .unwrap();
    assert_eq!(store.backend(), "postgres");
    (store, url)
}

/// Runs each named check of the store suite as its own test, on a fresh database.
macro_rules! postgres_suite {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let (store, _) = fresh_store().await;
            suite::$check(&store).await;
        }
    )*};
}

chatd::with_store_suite_checks!(postgres_suite);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_database_number_rooms_without_gaps_or_deadlocks() {
    const TASKS_PER_NODE: usize = 8;
    const BATCHES: usize = 15;
    let (first, url) = fresh_store().await;
    let second = Store::open(&StoreSettings::new(url, 8)).await.unwrap();
    let (lobby, staff) = (room("lobby"), room("staff"));
    first.create_room(&lobby, false).await.unwrap();
    first.create_room(&staff, false).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for (node, store) in [&first, &second].into_iter().enumerate() {
        for task in 0..TASKS_PER_NODE {
            let store = store.clone();
            let (lobby, staff) = (lobby.clone(), staff.clone());
            tasks.spawn(async move {
                let from = user(&format!("n{node}t{task}"));
                let mut acks = Vec::new();
                for batch in 0..BATCHES {
                    // Half the batches name staff first: the store must lock in name order
                    // whatever the input order, or two such batches deadlock.
                    let (a, b) = if (task + batch) % 2 == 0 {
                        (&lobby, &staff)
                    } else {
                        (&staff, &lobby)
                    };
                    let sends = [
                        send(a, &from, &format!("{batch}-a"), "x"),
                        send(b, &from, &format!("{batch}-b"), "y"),
                        send(a, &from, &format!("{batch}-c"), "z"),
                    ];
                    acks.extend(store.append_batch(&sends, 1).await.unwrap());
                }
                acks
            });
        }
    }
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    while let Some(acks) = tasks.join_next().await {
        for ack in acks.unwrap() {
            assert!(!ack.duplicate);
            seqs.entry(ack.message.room.to_string())
                .or_default()
                .push(ack.message.seq.0);
        }
    }
    let per_room = 2 * TASKS_PER_NODE * BATCHES * 3 / 2;
    for name in [&lobby, &staff] {
        let mut got = seqs.remove(name.as_str()).unwrap();
        got.sort_unstable();
        assert_eq!(got, (1..=per_room as u64).collect::<Vec<_>>(), "{name}");
        let stored = second.room(name).await.unwrap().unwrap().last_seq;
        assert_eq!(stored, Seq(per_room as u64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_racing_its_first_commit_on_another_node_is_a_duplicate() {
    const ROUNDS: usize = 40;
    let (first, url) = fresh_store().await;
    let second = Store::open(&StoreSettings::new(url, 8)).await.unwrap();
    let lobby = room("lobby");
    first.create_room(&lobby, false).await.unwrap();
    let alice = user("alice");

    let mut winners: HashMap<String, Message> = HashMap::new();
    for round in 0..ROUNDS {
        // Both nodes commit the same message at the same moment (a client that gave up on
        // one node and resent through the other), each beside a message of its own.
        let shared = send(&lobby, &alice, &format!("r{round}"), "same");
        let batch_of = |node: &str| {
            vec![
                send(&lobby, &user(node), &format!("own{round}"), "own"),
                shared.clone(),
            ]
        };
        let (batch_one, batch_two) = (batch_of("one"), batch_of("two"));
        let (one, two) = tokio::join!(
            first.append_batch(&batch_one, 10),
            second.append_batch(&batch_two, 20),
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        assert!(!one[0].duplicate && !two[0].duplicate);
        assert_eq!(
            one[1].message, two[1].message,
            "both nodes answer with the one stored message"
        );
        assert_eq!(
            usize::from(one[1].duplicate) + usize::from(two[1].duplicate),
            1,
            "exactly one of the two stored it"
        );
        winners.insert(format!("r{round}"), one[1].message.clone());
    }

    let page = first
        .history(&lobby, HistoryRange::Latest, 500)
        .await
        .unwrap();
    assert!(!page.has_more);
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq.0).collect();
    assert_eq!(seqs, (1..=(3 * ROUNDS) as u64).collect::<Vec<_>>());
    for (cmid, message) in winners {
        let stored: Vec<&Message> = page
            .messages
            .iter()
            .filter(|m| m.cmid.as_ref().is_some_and(|c| c.as_str() == cmid))
            .collect();
        assert_eq!(stored, [&message], "{cmid} is stored once");
    }
}

#[tokio::test]
async fn without_migrations_an_unmigrated_database_is_refused() {
    let server = TestPostgres::shared().await;
    let url = server.create_database().await;
    let mut settings = StoreSettings::new(url, 2);
    settings.run_migrations = false;
    let error = Store::open(&settings).await.unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaOutdated { pending } if pending >= 1),
        "{error:?}"
    );

    settings.run_migrations = true;
    Store::open(&settings).await.unwrap();
    // Reopening runs nothing, and with migrations off the migrated schema is accepted.
    Store::open(&settings).await.unwrap();
    settings.run_migrations = false;
    let store = Store::open(&settings).await.unwrap();
    store.create_room(&room("lobby"), false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_unavailable_quickly_and_the_pool_recovers_by_itself() {
    let server = TestPostgres::start().await;
    let mut settings = StoreSettings::new(server.create_database().await, 4);
    settings.acquire_timeout = Duration::from_millis(500);
    let store = Store::open(&settings).await.unwrap();
    let (lobby, alice) = (room("lobby"), user("alice"));
    store.create_room(&lobby, false).await.unwrap();
    store
        .append_batch(&[send(&lobby, &alice, "before", "x")], 1)
        .await
        .unwrap();

    server.stop().await;
    let started = Instant::now();
    let error = store
        .append_batch(&[send(&lobby, &alice, "during", "x")], 2)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    let error = store
        .history(&lobby, HistoryRange::Latest, 10)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    let error = store.ping().await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(4),
        "three failed operations took {elapsed:?}"
    );

    server.restart().await;
    let after = within("the store to work again", Duration::from_secs(20), async {
        loop {
            match store
                .append_batch(&[send(&lobby, &alice, "during", "x")], 3)
                .await
            {
                Ok(committed) => return committed,
                Err(StoreError::Unavailable { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!((after[0].message.seq, after[0].duplicate), (Seq(2), false));
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_publishes_in_seq_order_before_acking() {
    const SENDERS: usize = 16;
    const PER_SENDER: usize = 25;
    let running = Running::start(settings(1_024, 64)).await;
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let (writer, published) = (running.writer.clone(), Arc::clone(&running.published));
        senders.spawn(async move {
            let from = user(&format!("user{sender}"));
            for i in 0..PER_SENDER {
                let target = room(if i % 2 == 0 { "lobby" } else { "staff" });
                let ack = writer
                    .append(send(&target, &from, &format!("c{i}"), "x"))
                    .await
                    .unwrap();
                let seen = published.lock().unwrap().contains(&ack.message);
                assert!(seen, "{:?} acknowledged before published", ack.message);
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
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{name}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_commits_concurrent_sends_in_few_transactions() {
    const SENDS: usize = 200;
    const MAX_BATCH: usize = 32;
    let running = Running::start(settings(1_024, MAX_BATCH)).await;
    let lock = running.lock_rooms().await;
    let alice = user("alice");
    let mut appends: Vec<_> = (0..SENDS)
        .map(|i| Box::pin(running.writer.append(lobby_send(&alice, i))))
        .collect();
    for append in &mut appends {
        assert!(poll_once(append).await.is_none(), "finished while locked");
    }
    lock.release().await;
    let mut seqs = Vec::new();
    for append in appends {
        seqs.push(append.await.unwrap().message.seq.0);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=SENDS as u64).collect::<Vec<_>>());
    let transactions = running.writer.transactions();
    let most = 1 + SENDS.div_ceil(MAX_BATCH) as u64;
    assert!(
        transactions <= most,
        "{transactions} transactions for {SENDS} sends"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_refuses_sends_when_its_queue_is_full() {
    let running = Running::start(settings(2, 1)).await;
    let lock = running.lock_rooms().await;
    let (lobby, alice) = (room("lobby"), user("alice"));
    let mut in_commit = Box::pin(running.writer.append(send(&lobby, &alice, "a", "a")));
    assert!(poll_once(&mut in_commit).await.is_none());
    chatd_tests::wait::until("the writer takes the first send", WAIT, || async {
        (running.writer.queued() == 0).then_some(())
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
        .store
        .history(&lobby, HistoryRange::Latest, 10)
        .await
        .unwrap();
    let bodies: Vec<&str> = page.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["a", "b", "c"], "the refused send stored nothing");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_commits_its_queue_on_shutdown_then_refuses() {
    const SENDS: usize = 10;
    let running = Running::start(settings(16, 2)).await;
    let lock = running.lock_rooms().await;
    let alice = user("alice");
    let mut appends: Vec<_> = (0..SENDS)
        .map(|i| Box::pin(running.writer.append(lobby_send(&alice, i))))
        .collect();
    for append in &mut appends {
        assert!(poll_once(append).await.is_none());
    }
    running.tasks.cancel();
    lock.release().await;
    for (append, seq) in appends.into_iter().zip(1..) {
        assert_eq!(append.await.unwrap().message.seq, Seq(seq));
    }
    within("the writer to stop", WAIT, running.tasks.wait()).await;
    let late = running.writer.append(lobby_send(&alice, SENDS)).await;
    assert!(matches!(late, Err(AppendError::Closed)), "{late:?}");
    assert_eq!(running.published.lock().unwrap().len(), SENDS);
    let page = running
        .store
        .history(&room("lobby"), HistoryRange::Latest, 100)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), SENDS);
}

const WAIT: Duration = Duration::from_secs(20);

/// A writer on a fresh database with rooms `lobby` and `staff`, recording what it publishes.
struct Running {
    store: Store,
    url: String,
    tasks: Tasks,
    writer: WriterHandle,
    published: Arc<Mutex<Vec<Message>>>,
}

impl Running {
    async fn start(settings: WriterSettings) -> Self {
        let (store, url) = fresh_store().await;
        for name in ["lobby", "staff"] {
            store.create_room(&room(name), false).await.unwrap();
        }
        let tasks = Tasks::new(&CancellationToken::new());
        let published = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&published);
        let publish = Box::new(move |message: &Message| log.lock().unwrap().push(message.clone()));
        let writer = spawn_writer(store.clone(), settings, publish, &tasks);
        Self {
            store,
            url,
            tasks,
            writer,
            published,
        }
    }

    /// Locks the rooms table from another connection, as an administrator's `LOCK TABLE` or
    /// a long migration would: a commit needs a row lock on its rooms first
    /// (`FOR NO KEY UPDATE`, which conflicts with `EXCLUSIVE`), so the writer waits inside
    /// its transaction until the lock is released, and sends pile up in its queue.
    async fn lock_rooms(&self) -> TableLock {
        let mut connection = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
        sqlx::query("LOCK TABLE rooms IN EXCLUSIVE MODE")
            .execute(&mut connection)
            .await
            .unwrap();
        TableLock { connection }
    }

    async fn stop(self) {
        self.tasks.cancel();
        within("the writer to stop", WAIT, self.tasks.wait()).await;
    }
}

/// The lock taken by [`Running::lock_rooms`].
struct TableLock {
    connection: PgConnection,
}

impl TableLock {
    async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.connection)
            .await
            .unwrap();
        self.connection.close().await.unwrap();
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

fn lobby_send(from: &protocol::UserId, i: usize) -> NewMessage {
    send(&room("lobby"), from, &format!("c{i}"), "x")
}

/// Polls `future` once: an append queues its send (or is refused) on its first poll.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *future).poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}
