//! Shutdown drains: every client, those sending while the daemon stops included, sees
//! `going_away`; every send that was acknowledged is stored, and nothing is stored twice.

use std::collections::BTreeSet;
use std::time::Duration;

use protocol::client::{ClientError, Event};

use crate::support::{cmid, event, login, room};
use chatd_tests::TestDaemon;

#[tokio::test]
async fn a_drain_acks_what_it_committed_and_loses_nothing_acknowledged() {
    let mut daemon = TestDaemon::start_with(|config| {
        config.limits.sends_per_sec = 100_000;
        config.limits.send_burst = 100_000;
        config.shutdown.reconnect_window_ms = 2_000;
    })
    .await;
    for name in ["alice", "bob", "watcher"] {
        daemon.add_user(name, "pw").await;
    }
    daemon.create_room("lobby", false).await;
    let watcher = login(daemon.url(), "watcher", "pw").await;
    watcher.join(&room("lobby"), None).await.unwrap();

    let mut senders = Vec::new();
    for name in ["alice", "bob"] {
        let client = login(daemon.url(), name, "pw").await;
        client.join(&room("lobby"), None).await.unwrap();
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                match client
                    .send(
                        &room("lobby"),
                        &cmid(&format!("{name}-{i}")),
                        "during drain",
                    )
                    .await
                {
                    Ok(ack) => acked.push(ack.seq.0),
                    Err(ClientError::Closed(_) | ClientError::Send(_)) => break,
                    Err(ClientError::Server { code, .. }) if code.is_retryable() => break,
                    Err(other) => panic!("unexpected error while draining: {other:?}"),
                }
            }
            // The going_away frame came before the close; it waits among the events.
            let saw_going_away = loop {
                match tokio::time::timeout(Duration::from_secs(10), client.next_event()).await {
                    Ok(Some(Event::GoingAway { .. })) => break true,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break false,
                }
            };
            (acked, saw_going_away)
        }));
    }
    // Let some traffic flow, then stop while the senders are mid-stream.
    crate::support::messages(&watcher, &room("lobby"), 50).await;
    let stopping = daemon.stop();
    let reconnect_after = event(&watcher, "going_away", |e| match e {
        Event::GoingAway {
            reconnect_after, ..
        } => Some(*reconnect_after),
        _ => None,
    });
    let ((), reconnect_after) = tokio::join!(stopping, reconnect_after);
    assert!(reconnect_after.as_millis() <= 2_000, "{reconnect_after:?}");

    let mut acked = BTreeSet::new();
    for sender in senders {
        let (seqs, saw_going_away) = sender.await.unwrap();
        assert!(saw_going_away, "every sending client is told to go away");
        for seq in seqs {
            assert!(acked.insert(seq), "seq {seq} acked twice");
        }
    }
    assert!(acked.len() >= 50, "traffic flowed before the stop");

    daemon.restart().await;
    let reader = login(daemon.url(), "watcher", "pw").await;
    reader.join(&room("lobby"), None).await.unwrap();
    let mut stored = BTreeSet::new();
    let mut after = protocol::Seq(0);
    loop {
        let page = reader
            .history(&room("lobby"), None, Some(after), Some(500))
            .await
            .unwrap();
        for message in &page.messages {
            assert!(stored.insert(message.seq.0), "stored twice");
            after = message.seq;
        }
        if !page.has_more {
            break;
        }
    }
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    let expected: BTreeSet<u64> = (1..=stored.len() as u64).collect();
    assert_eq!(stored, expected, "gap-free");
}
