//! Several chatd nodes as one: three real `chatd` processes on one private PostgreSQL database
//! and one private Redis. Clients on different nodes chat and every message reaches every
//! client once, in order; who is online counts every node; typing, direct messages and an
//! operator's kick cross nodes; Redis going away for a while loses nothing acknowledged; a
//! node killed with SIGKILL loses nothing either, its users are shown offline once its
//! heartbeat expires, and its clients resume on another node.

use std::collections::BTreeMap;
use std::time::Duration;

use chatd_tests::Cluster;
use chatd_tests::wait::within;
use protocol::client::{Client, Event};
use protocol::{CloseCode, Message, PresenceState, RoomId, Seq};

use crate::support::{TIMEOUT, cmid, event, login, messages, presence, room, user};

/// Raised send limits: the tests measure delivery, not the per-session limiter.
const LIMITS: &str = "[limits]\nsends_per_sec = 1000\nsend_burst = 1000\n";

/// Reads message events until `n` arrived in `room_id`; fails on a duplicate or a message out
/// of order.
async fn in_order(client: &Client, room_id: &RoomId, n: usize) -> Vec<Message> {
    let got = messages(client, room_id, n).await;
    let seqs: Vec<u64> = got.iter().map(|m| m.seq.0).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seqs, sorted, "in order, each once");
    got
}

/// `nodes` nodes with users alice, bob and carol (passwords `NAME-pw`) and the room `lobby`.
async fn chat_cluster(nodes: usize) -> (Cluster, RoomId) {
    let cluster = Cluster::start(nodes, LIMITS).await;
    for name in ["alice", "bob", "carol"] {
        cluster.add_user(name, &format!("{name}-pw")).await;
    }
    cluster.create_room("lobby", false).await;
    (cluster, room("lobby"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_nodes_chat_as_on_one() {
    let (cluster, lobby) = chat_cluster(3).await;

    let alice = login(&cluster.node(0).url(), "alice", "alice-pw").await;
    let bob = login(&cluster.node(1).url(), "bob", "bob-pw").await;
    let carol = login(&cluster.node(2).url(), "carol", "carol-pw").await;
    alice.join(&lobby, None).await.unwrap();
    bob.join(&lobby, None).await.unwrap();
    let joined = carol.join(&lobby, None).await.unwrap();
    assert_eq!(
        joined.online,
        [user("alice"), user("bob"), user("carol")],
        "who is online counts every node"
    );
    presence(&alice, "carol", PresenceState::Joined).await;

    for i in 0..10 {
        let sender = [&alice, &bob, &carol][i % 3];
        sender
            .send(&lobby, &cmid(&format!("m{i}")), &format!("message {i}"))
            .await
            .unwrap();
    }
    for client in [&alice, &bob, &carol] {
        let got = in_order(client, &lobby, 10).await;
        let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
        let expected: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
        assert_eq!(bodies, expected);
        assert_eq!(got.last().unwrap().seq, Seq(10));
    }

    // Typing crosses nodes.
    carol.typing(&lobby).await.unwrap();
    event(&alice, "carol typing", |e| match e {
        Event::Typing { user: u, .. } if *u == user("carol") => Some(()),
        _ => None,
    })
    .await;

    // A direct message reaches its recipient on another node.
    let ack = alice
        .direct(&user("bob"), &cmid("dm1"), "psst")
        .await
        .unwrap();
    let dm = in_order(&bob, &ack.room, 1).await;
    assert_eq!(dm[0].body, "psst");

    // Disabling a user on one node closes their session on another.
    let (code, out, err) = cluster
        .node(0)
        .chatctl(&["user", "disable", "carol"], "")
        .await;
    assert_eq!(code, 0, "{out} {err}");
    let closed = event(&carol, "carol closed", |e| match e {
        Event::Closed(code) => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(closed, Some(CloseCode::UserDisabled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_loses_nothing_acknowledged() {
    let (cluster, lobby) = chat_cluster(2).await;
    let alice = login(&cluster.node(0).url(), "alice", "alice-pw").await;
    let bob = login(&cluster.node(1).url(), "bob", "bob-pw").await;
    alice.join(&lobby, None).await.unwrap();
    bob.join(&lobby, None).await.unwrap();
    alice.send(&lobby, &cmid("before"), "before").await.unwrap();
    in_order(&alice, &lobby, 1).await;
    in_order(&bob, &lobby, 1).await;

    cluster.redis().stop().await;
    // Both nodes go on serving their own sessions and storing sends.
    let mut acked = BTreeMap::new();
    for i in 0..20 {
        let (sender, name) = if i % 2 == 0 {
            (&alice, "alice")
        } else {
            (&bob, "bob")
        };
        let ack = sender
            .send(
                &lobby,
                &cmid(&format!("{name}-{i}")),
                &format!("{name} {i}"),
            )
            .await
            .expect("sends are stored while Redis is down");
        acked.insert(ack.seq, format!("{name} {i}"));
    }
    let (code, status, err) = cluster.node(0).chatctl(&["status"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        status.contains("degraded"),
        "the node reports the broker: {status}"
    );

    cluster.redis().restart().await;
    // After Redis is back, every client holds every acknowledged message once, in order:
    // what did not cross nodes meanwhile is filled from the store.
    for client in [&alice, &bob] {
        let got = in_order(client, &lobby, 20).await;
        let received: BTreeMap<Seq, String> = got.into_iter().map(|m| (m.seq, m.body)).collect();
        assert_eq!(received, acked);
    }
    let after = bob.send(&lobby, &cmid("after"), "after").await.unwrap();
    let got = in_order(&alice, &lobby, 1).await;
    assert_eq!(got[0].seq, after.seq, "live delivery resumed");
    for node in 0..2 {
        within("the broker reports ok again", TIMEOUT, async {
            loop {
                let (_, status, _) = cluster.node(node).chatctl(&["status"], "").await;
                if status.contains("broker       ok") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }
    // Redis came back empty (it keeps nothing on disk); each node wrote its presence again,
    // so a newcomer on node 0 sees bob, who is on node 1.
    let carol = login(&cluster.node(0).url(), "carol", "carol-pw").await;
    let joined = carol.join(&lobby, None).await.unwrap();
    assert_eq!(joined.online, [user("alice"), user("bob"), user("carol")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_and_its_clients_resume_elsewhere() {
    let (mut cluster, lobby) = chat_cluster(2).await;
    let alice = login(&cluster.node(0).url(), "alice", "alice-pw").await;
    let mut bob = login(&cluster.node(1).url(), "bob", "bob-pw").await;
    alice.join(&lobby, None).await.unwrap();
    bob.join(&lobby, None).await.unwrap();

    let sending = async {
        let mut acked = Vec::new();
        for i in 0..30 {
            let ack = alice
                .send(&lobby, &cmid(&format!("a{i}")), &format!("alice {i}"))
                .await
                .unwrap();
            acked.push(ack.seq);
        }
        acked
    };
    let killing = async {
        in_order(&bob, &lobby, 5).await;
        cluster.kill(1).await;
    };
    let (acked, ()) = tokio::join!(sending, killing);
    assert_eq!(acked.len(), 30);

    // Alice's node finds bob's node dead (its heartbeat expires) and shows him offline.
    presence(&alice, "bob", PresenceState::Offline).await;

    // Bob's node is gone; he resumes on the other one and gets the rest, no gap, no repeat.
    event(&bob, "bob's connection closed", |e| match e {
        Event::Closed(_) => Some(()),
        _ => None,
    })
    .await;
    bob.reconnect(&cluster.node(0).url()).await.unwrap();
    let seen = bob.last_seen()[&lobby];
    let rest = in_order(&bob, &lobby, 30 - usize::try_from(seen.0).unwrap()).await;
    assert_eq!(rest.first().unwrap().seq, Seq(seen.0 + 1));
    assert_eq!(rest.last().unwrap().seq, Seq(30));
    presence(&alice, "bob", PresenceState::Online).await;
}
