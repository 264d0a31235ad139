//! Two users chat: login, join, messages, acks, presence, direct messages, private rooms,
//! idempotent resends.

use protocol::{ErrorCode, PresenceState, Seq};

use crate::support::{cmid, login, messages, presence, room, user};
use chatd_tests::TestDaemon;

#[tokio::test]
async fn two_users_chat_in_a_room_and_see_each_other() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "alice-pw").await;
    daemon.add_user("bob", "bob-pw").await;
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");

    let alice = login(daemon.url(), "alice", "alice-pw").await;
    let joined = alice.join(&lobby, None).await.unwrap();
    assert_eq!(joined.online, vec![user("alice")]);
    assert_eq!(joined.last_seq, Seq(0));

    let bob = login(daemon.url(), "bob", "bob-pw").await;
    let joined = bob.join(&lobby, None).await.unwrap();
    assert_eq!(joined.online, vec![user("alice"), user("bob")]);
    presence(&alice, "bob", PresenceState::Joined).await;

    let ack = alice.send(&lobby, &cmid("a1"), "hello bob").await.unwrap();
    assert_eq!(ack.seq, Seq(1));
    let ack = bob.send(&lobby, &cmid("b1"), "hi alice").await.unwrap();
    assert_eq!(ack.seq, Seq(2));

    let at_bob = messages(&bob, &lobby, 2).await;
    assert_eq!(at_bob[0].body, "hello bob");
    assert_eq!(at_bob[0].from, user("alice"));
    assert_eq!(at_bob[1].body, "hi alice");
    let at_alice = messages(&alice, &lobby, 2).await;
    assert_eq!(
        at_alice.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![Seq(1), Seq(2)]
    );

    bob.close().await;
    presence(&alice, "bob", PresenceState::Offline).await;
}

#[tokio::test]
async fn a_resend_with_the_same_cmid_is_stored_and_broadcast_once() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw-a").await;
    daemon.add_user("bob", "pw-b").await;
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");
    let alice = login(daemon.url(), "alice", "pw-a").await;
    let bob = login(daemon.url(), "bob", "pw-b").await;
    alice.join(&lobby, None).await.unwrap();
    bob.join(&lobby, None).await.unwrap();

    let first = alice.send(&lobby, &cmid("same"), "once").await.unwrap();
    let again = alice.send(&lobby, &cmid("same"), "once").await.unwrap();
    assert_eq!(first, again, "the resend gets the first ack");
    let next = alice.send(&lobby, &cmid("other"), "twice").await.unwrap();
    assert_eq!(
        next.seq,
        Seq(2),
        "no sequence number was used by the resend"
    );

    let got = messages(&bob, &lobby, 2).await;
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["once", "twice"]
    );
    let page = bob.history(&lobby, None, None, Some(10)).await.unwrap();
    assert_eq!(page.messages.len(), 2);
}

#[tokio::test]
async fn a_private_room_refuses_non_members() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw-a").await;
    daemon.add_user("eve", "pw-e").await;
    daemon.create_room("staff", true).await;
    let (code, out, err) = daemon
        .chatctl(&["room", "add-member", "staff", "alice"], "")
        .await;
    assert_eq!(code, 0, "{out}{err}");

    let alice = login(daemon.url(), "alice", "pw-a").await;
    alice
        .join(&room("staff"), None)
        .await
        .expect("members may join");
    let eve = login(daemon.url(), "eve", "pw-e").await;
    let refused = eve.join(&room("staff"), None).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
    let missing = eve.join(&room("nowhere"), None).await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::NoSuchRoom));
    let not_joined = eve
        .send(&room("staff"), &cmid("x"), "let me in")
        .await
        .unwrap_err();
    assert_eq!(not_joined.code(), Some(ErrorCode::NotJoined));
}

#[tokio::test]
async fn direct_messages_reach_the_other_user_only() {
    let daemon = TestDaemon::start().await;
    for name in ["alice", "bob", "carol"] {
        daemon.add_user(name, &format!("pw-{name}")).await;
    }
    let alice = login(daemon.url(), "alice", "pw-alice").await;
    let bob = login(daemon.url(), "bob", "pw-bob").await;
    let carol = login(daemon.url(), "carol", "pw-carol").await;

    let ack = alice
        .direct(&user("bob"), &cmid("d1"), "psst")
        .await
        .unwrap();
    assert_eq!(ack.room.as_str(), "dm:alice:bob");
    assert_eq!(ack.seq, Seq(1));
    let got = messages(&bob, &ack.room, 1).await;
    assert_eq!(got[0].body, "psst");
    assert_eq!(got[0].from, user("alice"));

    let refused = carol.join(&ack.room, None).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
    let unknown = alice
        .direct(&user("nobody"), &cmid("d2"), "hello?")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::NoSuchUser));

    // The history of a direct room is there for both participants.
    let joined = bob.join(&ack.room, None).await.unwrap();
    assert_eq!(joined.messages.len(), 1);
}
