//! History: paging both ways, survival across a restart, and resume after a dropped
//! connection while others keep sending.

use protocol::Seq;

use crate::support::{cmid, login, messages, room};
use chatd_tests::TestDaemon;

#[tokio::test]
async fn history_survives_a_restart_and_pages_both_ways() {
    let mut daemon = TestDaemon::start_with(|config| config.limits.join_history = 5).await;
    daemon.add_user("alice", "pw-a").await;
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");
    let alice = login(daemon.url(), "alice", "pw-a").await;
    alice.join(&lobby, None).await.unwrap();
    for i in 1..=12 {
        let ack = alice
            .send(&lobby, &cmid(&format!("m{i}")), &format!("message {i}"))
            .await
            .unwrap();
        assert_eq!(ack.seq, Seq(i));
    }
    alice.close().await;

    daemon.restart().await;

    let alice = login(daemon.url(), "alice", "pw-a").await;
    let joined = alice.join(&lobby, None).await.unwrap();
    assert_eq!(joined.last_seq, Seq(12));
    let seqs: Vec<u64> = joined.messages.iter().map(|m| m.seq.0).collect();
    assert_eq!(
        seqs,
        vec![8, 9, 10, 11, 12],
        "join brings the latest page, oldest first"
    );
    assert_eq!(joined.messages[4].body, "message 12");

    let older = alice
        .history(&lobby, Some(Seq(8)), None, Some(5))
        .await
        .unwrap();
    assert_eq!(
        older.messages.iter().map(|m| m.seq.0).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7]
    );
    assert!(older.has_more);
    let oldest = alice
        .history(&lobby, Some(Seq(3)), None, Some(5))
        .await
        .unwrap();
    assert_eq!(
        oldest.messages.iter().map(|m| m.seq.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(!oldest.has_more);
    let forward = alice
        .history(&lobby, None, Some(Seq(9)), Some(5))
        .await
        .unwrap();
    assert_eq!(
        forward.messages.iter().map(|m| m.seq.0).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert!(!forward.has_more);

    // A user registered before the restart still logs in: the OPAQUE keys persisted.
    let again = login(daemon.url(), "alice", "pw-a").await;
    again.ping().await.unwrap();
}

#[tokio::test]
async fn resume_after_a_dropped_connection_returns_exactly_the_missed_messages() {
    let daemon = TestDaemon::start_with(|config| config.limits.sends_per_sec = 1000).await;
    daemon.add_user("alice", "pw-a").await;
    daemon.add_user("bob", "pw-b").await;
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");

    let mut bob = login(daemon.url(), "bob", "pw-b").await;
    bob.join(&lobby, None).await.unwrap();
    let alice = login(daemon.url(), "alice", "pw-a").await;
    alice.join(&lobby, None).await.unwrap();

    // Alice keeps sending in the background the whole time.
    let sender = tokio::spawn(async move {
        for i in 1..=300u64 {
            alice
                .send(&lobby_room(), &cmid(&format!("a{i}")), &format!("n{i}"))
                .await
                .unwrap();
        }
        alice
    });
    let before = messages(&bob, &lobby, 40).await;
    assert_eq!(before.last().unwrap().seq, Seq(40));

    // Drop bob's connection in the middle of the stream and resume on a new one.
    bob.reconnect(daemon.url())
        .await
        .expect("resume with token and since");
    let rest = messages(&bob, &lobby, 260).await;
    let alice = sender.await.unwrap();
    let all: Vec<u64> = before.iter().chain(rest.iter()).map(|m| m.seq.0).collect();
    assert_eq!(
        all,
        (1..=300).collect::<Vec<_>>(),
        "no gap, no duplicate, in order"
    );
    alice.close().await;
}

fn lobby_room() -> protocol::RoomId {
    room("lobby")
}
