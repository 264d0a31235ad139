//! QUIC on a lossy network: the daemon runs in a network namespace whose link drops 10% of
//! packets each way (TCP and UDP alike). Two QUIC clients exchange 1,000 messages in two
//! rooms; one moves to a new address halfway, the other drops its connection and comes back
//! with its resume token. Every message reaches both, once, in sequence order per room.
//!
//! Needs root and nftables (see `chatd_tests::netns`); without them it fails with the
//! harness's error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chatd_tests::wait::within;
use chatd_tests::{LossyNetwork, ProcessDaemon, ProcessOptions};
use protocol::client::{Client, ClientOptions, Event, ServerTrust};
use protocol::{Message, RoomId};

use crate::support::{cmid, login_with, room};

/// Messages in the run, half from each client.
const MESSAGES: usize = 1000;
/// Percent of packets dropped in each direction.
const LOSS_PERCENT: u8 = 10;
/// A whole run, generously: each lost packet costs QUIC a probe timeout of tens of ms.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn pinned(daemon: &ProcessDaemon) -> ClientOptions {
    ClientOptions {
        trust: ServerTrust::Pinned(daemon.quic_sha256().unwrap().parse().unwrap()),
        // A request may meet several losses in a row; the run's deadline bounds a hang.
        request_timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    }
}

/// Reads message events until `MESSAGES` arrived; fails on a close or on a message out of
/// sequence order in its room.
async fn read_all(client: &Client, name: &str) -> BTreeMap<RoomId, Vec<Message>> {
    let mut by_room: BTreeMap<RoomId, Vec<Message>> = BTreeMap::new();
    let mut count = 0;
    while count < MESSAGES {
        match client.next_event().await {
            Some(Event::Message(message)) => {
                let seen = by_room.entry(message.room.clone()).or_default();
                if let Some(last) = seen.last() {
                    assert!(
                        message.seq.0 == last.seq.0 + 1,
                        "{name} got seq {} after {} in {}",
                        message.seq,
                        last.seq,
                        message.room
                    );
                }
                seen.push(message);
                count += 1;
            }
            Some(Event::Closed(code)) => panic!("{name}'s connection closed ({code:?})"),
            None => panic!("{name}'s events ended after {count} messages"),
            Some(_) => {}
        }
    }
    by_room
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_delivers_every_message_once_in_order_at_ten_percent_loss() {
    let network = LossyNetwork::create().expect("a lossy test network");
    let options = ProcessOptions {
        quic: true,
        // The run measures delivery, not the per-session send limit.
        extra_toml: "[limits]\nsends_per_sec = 1000\nsend_burst = 1000\n".to_owned(),
        ..ProcessOptions::default()
    };
    let daemon = ProcessDaemon::start(Some(&network), &options).await;
    daemon.add_user("alice", "alice-pw").await;
    daemon.add_user("bob", "bob-pw").await;
    daemon.create_room("lobby", false).await;
    daemon.create_room("games", false).await;
    let rooms = [room("lobby"), room("games")];
    let url = daemon.quic_url().unwrap();

    // Log in on a clean link (the password stretching is not what this test is about).
    let alice = login_with(&url, "alice", "alice-pw", pinned(&daemon)).await;
    let mut bob = login_with(&url, "bob", "bob-pw", pinned(&daemon)).await;
    for room_id in &rooms {
        alice.join(room_id, None).await.unwrap();
        bob.join(room_id, None).await.unwrap();
    }
    network.set_loss(LOSS_PERCENT).unwrap();

    let run = async {
        // Alice sends and reads throughout, and moves to a new UDP socket halfway.
        let alice_side = async {
            let sending = async {
                send_half_with_rebind(&alice, &rooms).await;
            };
            let (_, received) = tokio::join!(sending, read_all(&alice, "alice"));
            received
        };
        // Bob sends half of his messages without reading, drops his connection (the events
        // it held are lost with it) and resumes with his token on a new one; the server
        // replays what he had not read.
        let bob_side = async {
            send_range(&bob, "bob", 0..MESSAGES / 4, &rooms).await;
            bob.reconnect(&url).await.expect("bob resumes");
            let rest = send_range(&bob, "bob", MESSAGES / 4..MESSAGES / 2, &rooms);
            let (_, received) = tokio::join!(rest, read_all(&bob, "bob"));
            received
        };
        tokio::join!(alice_side, bob_side)
    };
    let (at_alice, at_bob) = within("the lossy run", RUN_TIMEOUT, Box::pin(run)).await;

    let mut expected: BTreeMap<&RoomId, BTreeSet<String>> = BTreeMap::new();
    for name in ["alice", "bob"] {
        for i in 0..MESSAGES / 2 {
            expected
                .entry(&rooms[i % 2])
                .or_default()
                .insert(format!("{name} {i}"));
        }
    }
    for (name, received) in [("alice", &at_alice), ("bob", &at_bob)] {
        for room_id in &rooms {
            let messages = &received[room_id];
            let seqs: Vec<u64> = messages.iter().map(|m| m.seq.0).collect();
            assert_eq!(
                seqs,
                (1..=MESSAGES as u64 / 2).collect::<Vec<_>>(),
                "{name} in {room_id}: every sequence number once, in order"
            );
            let bodies: BTreeSet<String> = messages.iter().map(|m| m.body.clone()).collect();
            assert_eq!(&bodies, &expected[room_id], "{name} in {room_id}");
        }
    }
}

/// Sends messages `range` of `name`: message `i` goes to `rooms[i % 2]` with body
/// `{name} {i}`.
async fn send_range(
    client: &Client,
    name: &str,
    range: std::ops::Range<usize>,
    rooms: &[RoomId; 2],
) {
    for i in range {
        client
            .send(
                &rooms[i % 2],
                &cmid(&format!("{name}-{i}")),
                &format!("{name} {i}"),
            )
            .await
            .unwrap_or_else(|error| panic!("{name}'s send {i} failed: {error}"));
    }
}

/// Alice's half, with a move to a new local address after the first quarter of the run.
async fn send_half_with_rebind(alice: &Client, rooms: &[RoomId; 2]) {
    send_range(alice, "alice", 0..MESSAGES / 4, rooms).await;
    alice.rebind().await.expect("alice moves to a new address");
    send_range(alice, "alice", MESSAGES / 4..MESSAGES / 2, rooms).await;
}
