//! Whole daemons on PostgreSQL: chat and history across a restart, two daemons sending into
//! one room of one database, and a database outage while clients send.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chatd_config::{Config, Secret};
use chatd_tests::wait::within;
use chatd_tests::{TestDaemon, TestPostgres};
use protocol::client::Client;
use protocol::{ErrorCode, Message, RoomId, Seq};

use crate::support::{TIMEOUT, cmid, login, room};

/// Points `config` at the database `url`, with sends limited only by the store.
fn on_postgres(config: &mut Config, url: &str) {
    config.store.url = Secret::new(url.to_owned());
    config.limits.sends_per_sec = 10_000;
    config.limits.send_burst = 10_000;
}

#[tokio::test]
async fn chat_and_history_survive_a_restart_on_postgres() {
    let url = TestPostgres::shared().await.create_database().await;
    let mut daemon = TestDaemon::start_with(|config| {
        on_postgres(config, &url);
        config.limits.join_history = 5;
    })
    .await;
    daemon.add_user("alice", "pw-a").await;
    daemon.add_user("bob", "pw-b").await;
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");
    let alice = login(daemon.url(), "alice", "pw-a").await;
    let bob = login(daemon.url(), "bob", "pw-b").await;
    alice.join(&lobby, None).await.unwrap();
    bob.join(&lobby, None).await.unwrap();
    for i in 1..=12 {
        let ack = alice
            .send(&lobby, &cmid(&format!("m{i}")), &format!("message {i}"))
            .await
            .unwrap();
        assert_eq!(ack.seq, Seq(i));
    }
    let live = crate::support::messages(&bob, &lobby, 12).await;
    assert_eq!(live[11].body, "message 12");
    // A resend after the fact is answered with the first ack and stores nothing.
    let again = alice
        .send(&lobby, &cmid("m3"), "message 3, again")
        .await
        .unwrap();
    assert_eq!(again.seq, Seq(3));
    alice.close().await;
    bob.close().await;

    daemon.restart().await;

    // The OPAQUE keys and accounts are in the database: logging in still works.
    let alice = login(daemon.url(), "alice", "pw-a").await;
    let joined = alice.join(&lobby, None).await.unwrap();
    assert_eq!(joined.last_seq, Seq(12));
    assert_eq!(seqs(&joined.messages), [8, 9, 10, 11, 12]);
    let older = alice
        .history(&lobby, Some(Seq(8)), None, Some(5))
        .await
        .unwrap();
    assert_eq!(seqs(&older.messages), [3, 4, 5, 6, 7]);
    assert_eq!(older.messages[0].body, "message 3");
    assert!(older.has_more);
    let forward = alice
        .history(&lobby, None, Some(Seq(9)), Some(5))
        .await
        .unwrap();
    assert_eq!(seqs(&forward.messages), [10, 11, 12]);
    assert!(!forward.has_more);
    let next = alice.send(&lobby, &cmid("m13"), "after").await.unwrap();
    assert_eq!(next.seq, Seq(13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_on_one_database_number_one_room_without_gaps() {
    const SENDERS_PER_DAEMON: usize = 3;
    const PER_SENDER: usize = 60;
    let url = TestPostgres::shared().await.create_database().await;
    let first = TestDaemon::start_with(|config| on_postgres(config, &url)).await;
    let second = TestDaemon::start_with(|config| on_postgres(config, &url)).await;
    // Accounts and rooms made through one daemon exist for both: they share the database.
    let mut names = Vec::new();
    for daemon in 0..2 {
        for sender in 0..SENDERS_PER_DAEMON {
            let name = format!("user{daemon}x{sender}");
            first.add_user(&name, "pw").await;
            names.push((daemon, name));
        }
    }
    first.create_room("lobby", false).await;

    let mut senders = tokio::task::JoinSet::new();
    for (daemon, name) in names {
        let url = if daemon == 0 {
            first.url().to_owned()
        } else {
            second.url().to_owned()
        };
        senders.spawn(async move {
            let lobby = room("lobby");
            let client = login(&url, &name, "pw").await;
            client.join(&lobby, None).await.unwrap();
            let mut acked = Vec::new();
            for i in 0..PER_SENDER {
                let id = format!("{name}-{i}");
                let ack = client.send(&lobby, &cmid(&id), &id).await.unwrap();
                acked.push((ack.seq, id));
            }
            client.close().await;
            acked
        });
    }
    let mut acked: BTreeMap<Seq, String> = BTreeMap::new();
    while let Some(result) = senders.join_next().await {
        for (seq, id) in result.unwrap() {
            let earlier = acked.insert(seq, id.clone());
            assert!(
                earlier.is_none(),
                "seq {seq:?} acked twice: {earlier:?}, {id}"
            );
        }
    }
    let total = 2 * SENDERS_PER_DAEMON * PER_SENDER;
    assert_eq!(acked.len(), total);

    let reader = login(second.url(), "user0x0", "pw").await;
    let stored = read_all(&reader, &room("lobby")).await;
    assert_eq!(
        seqs(&stored),
        (1..=total as u64).collect::<Vec<_>>(),
        "the stored sequence is exactly 1..=N"
    );
    for message in &stored {
        let id = acked
            .get(&message.seq)
            .expect("every stored message was acked");
        assert_eq!(&message.body, id);
        assert_eq!(message.cmid.as_ref().map(|c| c.as_str()), Some(id.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_is_unavailable_and_chatd_recovers_without_a_restart() {
    const SENDERS: usize = 3;
    const PER_SENDER: usize = 40;
    const ACQUIRE_TIMEOUT_MS: u64 = 500;
    let server = TestPostgres::start().await;
    let url = server.create_database().await;
    let daemon = TestDaemon::start_with(|config| {
        on_postgres(config, &url);
        config.store.acquire_timeout_ms = ACQUIRE_TIMEOUT_MS;
    })
    .await;
    for sender in 0..SENDERS {
        daemon.add_user(&format!("sender{sender}"), "pw").await;
    }
    daemon.add_user("probe", "pw").await;
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");
    let probe = login(daemon.url(), "probe", "pw").await;
    probe.join(&lobby, None).await.unwrap();

    // Senders keep going through the outage, resending with the same cmid after each
    // `unavailable`, as the protocol tells clients to.
    let outage_seen = Arc::new(AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let client = login(daemon.url(), &format!("sender{sender}"), "pw").await;
        client.join(&lobby, None).await.unwrap();
        let outage_seen = Arc::clone(&outage_seen);
        senders.spawn(async move {
            let lobby = room("lobby");
            let mut acked = Vec::new();
            for i in 0..PER_SENDER {
                let id = format!("s{sender}-{i}");
                loop {
                    match client.send(&lobby, &cmid(&id), &id).await {
                        Ok(ack) => {
                            acked.push((ack.seq, id));
                            break;
                        }
                        Err(error) if error.code() == Some(ErrorCode::Unavailable) => {
                            outage_seen.store(true, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(error) => panic!("{id}: {error}"),
                    }
                }
                // Spread the sends over the outage.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client.close().await;
            acked
        });
    }
    let before = probe
        .send(&lobby, &cmid("probe-0"), "before")
        .await
        .unwrap();

    server.stop().await;
    let started = Instant::now();
    let error = probe
        .send(&lobby, &cmid("probe-1"), "during")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Unavailable), "{error}");
    assert!(error.is_retryable());
    let error = probe.history(&lobby, None, None, None).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Unavailable), "{error}");
    let elapsed = started.elapsed();
    // Each failure waits about one acquire timeout for a connection; far from the 10 s a
    // client waits for a reply.
    assert!(
        elapsed < 8 * Duration::from_millis(ACQUIRE_TIMEOUT_MS),
        "a send and a history read took {elapsed:?} to fail"
    );

    server.restart().await;
    let ack = within("a send to succeed again", TIMEOUT, async {
        loop {
            match probe.send(&lobby, &cmid("probe-1"), "during").await {
                Ok(ack) => return ack,
                Err(error) if error.code() == Some(ErrorCode::Unavailable) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("{error}"),
            }
        }
    })
    .await;
    let mut acked: BTreeMap<Seq, String> = BTreeMap::new();
    acked.insert(before.seq, "probe-0".to_owned());
    acked.insert(ack.seq, "probe-1".to_owned());
    while let Some(result) = senders.join_next().await {
        for (seq, id) in result.unwrap() {
            let earlier = acked.insert(seq, id.clone());
            assert!(
                earlier.is_none(),
                "seq {seq:?} acked twice: {earlier:?}, {id}"
            );
        }
    }
    assert!(
        outage_seen.load(Ordering::Relaxed),
        "the senders ran into the outage"
    );

    let stored = read_all(&probe, &lobby).await;
    let total = SENDERS * PER_SENDER + 2;
    assert_eq!(acked.len(), total);
    assert_eq!(
        seqs(&stored),
        (1..=total as u64).collect::<Vec<_>>(),
        "every acknowledged message is stored once, without gaps"
    );
    for message in &stored {
        let id = &acked[&message.seq];
        assert_eq!(message.cmid.as_ref().map(|c| c.as_str()), Some(id.as_str()));
    }
}

/// The whole history of `room`, read forward page by page.
async fn read_all(client: &Client, room_id: &RoomId) -> Vec<Message> {
    let mut all: Vec<Message> = Vec::new();
    loop {
        let after = all.last().map_or(Seq::ZERO, |m| m.seq);
        let page = client
            .history(room_id, None, Some(after), Some(500))
            .await
            .unwrap();
        all.extend(page.messages);
        if !page.has_more {
            return all;
        }
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.0).collect()
}
