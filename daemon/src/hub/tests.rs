//! Hub tests: presence counting, fan-out of shared bytes, slow consumers, direct rooms.

use protocol::{ClientMsgId, CloseCode, Message, RoomId, Seq, UserId};

use super::*;

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn room(name: &str) -> RoomId {
    RoomId::parse(name).unwrap()
}

fn message(room_id: &RoomId, seq: u64, from: &str) -> Message {
    Message {
        room: room_id.clone(),
        seq: Seq(seq),
        from: user(from),
        body: format!("m{seq}"),
        ts: 1,
        cmid: Some(ClientMsgId::parse(&format!("c{seq}")).unwrap()),
    }
}

#[test]
fn presence_counts_sessions_per_user() {
    let hub = Hub::new();
    let (tx1, _rx1) = outbox(8);
    let (tx2, _rx2) = outbox(8);
    let (tx3, _rx3) = outbox(8);
    hub.register(SessionId(1), user("alice"), tx1);
    hub.register(SessionId(2), user("alice"), tx2);
    hub.register(SessionId(3), user("bob"), tx3);
    let lobby = room("lobby");

    assert!(hub.join(SessionId(1), &lobby).user_arrived);
    assert!(
        !hub.join(SessionId(2), &lobby).user_arrived,
        "second session of alice"
    );
    let outcome = hub.join(SessionId(3), &lobby);
    assert!(outcome.user_arrived);
    assert_eq!(outcome.online, vec![user("alice"), user("bob")]);

    assert!(
        !hub.leave(SessionId(1), &lobby),
        "alice still has a session there"
    );
    assert!(hub.leave(SessionId(2), &lobby), "alice's last session left");
    assert_eq!(
        hub.unregister(SessionId(3)),
        vec![lobby],
        "bob went offline from lobby"
    );
}

#[test]
fn fan_out_shares_one_encoding_and_skips_typing_sender() {
    let hub = Hub::new();
    let lobby = room("lobby");
    let mut receivers = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let (tx, rx) = outbox(8);
        hub.register(SessionId(i as u64), user(name), tx);
        hub.join(SessionId(i as u64), &lobby);
        receivers.push(rx);
    }
    hub.dispatch(&Event::Message(message(&lobby, 1, "alice")));
    let frames: Vec<OutboxItem> = receivers
        .iter_mut()
        .map(|rx| rx.queue.try_recv().unwrap())
        .collect();
    assert!(frames.iter().all(|item| item.seq == Some(Seq(1))));
    let first = frames[0].frame.as_ptr();
    assert!(
        frames.iter().all(|item| item.frame.as_ptr() == first),
        "encoded once"
    );

    hub.dispatch(&Event::Typing {
        room: lobby,
        user: user("alice"),
    });
    assert!(
        receivers[0].queue.try_recv().is_err(),
        "the typist does not get its own typing"
    );
    assert!(receivers[1].queue.try_recv().is_ok());
}

#[test]
fn full_outbox_kicks_only_the_slow_session() {
    let hub = Hub::new();
    let lobby = room("lobby");
    let (slow_tx, slow_rx) = outbox(2);
    let (fast_tx, mut fast_rx) = outbox(64);
    hub.register(SessionId(1), user("slow"), slow_tx);
    hub.register(SessionId(2), user("fast"), fast_tx);
    hub.join(SessionId(1), &lobby);
    hub.join(SessionId(2), &lobby);
    for seq in 1..=10 {
        hub.dispatch(&Event::Message(message(&lobby, seq, "fast")));
    }
    assert_eq!(slow_rx.kick.reason(), Some(CloseCode::SlowConsumer));
    let mut got = 0;
    while fast_rx.queue.try_recv().is_ok() {
        got += 1;
    }
    assert_eq!(got, 10, "the fast session got everything");
    assert_eq!(fast_rx.kick.reason(), None);
}

#[test]
fn direct_messages_reach_both_users_without_a_join() {
    let hub = Hub::new();
    let (a_tx, mut a_rx) = outbox(8);
    let (b_tx, mut b_rx) = outbox(8);
    let (c_tx, mut c_rx) = outbox(8);
    hub.register(SessionId(1), user("alice"), a_tx);
    hub.register(SessionId(2), user("bob"), b_tx);
    hub.register(SessionId(3), user("carol"), c_tx);
    let dm = RoomId::direct(&user("alice"), &user("bob")).unwrap();
    hub.dispatch(&Event::Message(message(&dm, 1, "alice")));
    assert_eq!(a_rx.queue.try_recv().unwrap().room, dm);
    assert_eq!(b_rx.queue.try_recv().unwrap().room, dm);
    assert!(c_rx.queue.try_recv().is_err());
}

#[test]
fn kick_user_closes_all_their_sessions() {
    let hub = Hub::new();
    let (tx1, rx1) = outbox(8);
    let (tx2, rx2) = outbox(8);
    let (tx3, rx3) = outbox(8);
    hub.register(SessionId(1), user("alice"), tx1);
    hub.register(SessionId(2), user("alice"), tx2);
    hub.register(SessionId(3), user("bob"), tx3);
    assert_eq!(hub.kick_user(&user("alice"), CloseCode::UserDisabled), 2);
    assert_eq!(rx1.kick.reason(), Some(CloseCode::UserDisabled));
    assert_eq!(rx2.kick.reason(), Some(CloseCode::UserDisabled));
    assert_eq!(rx3.kick.reason(), None);
}

#[test]
fn connections_are_listed_before_login_and_kicked_by_id() {
    let hub = Arc::new(Hub::new());
    let info = |port| ConnectionInfo {
        transport: "websocket",
        remote: SocketAddr::from(([127, 0, 0, 1], port)),
        connected: SystemTime::UNIX_EPOCH,
    };
    let (tx1, rx1) = outbox(8);
    let (tx2, rx2) = outbox(8);
    let first = hub.connect(SessionId(1), info(1001), tx1.clone());
    let _second = hub.connect(SessionId(2), info(1002), tx2);
    hub.register(SessionId(1), user("alice"), tx1);
    hub.join(SessionId(1), &room("lobby"));

    let listed = hub.sessions(None);
    let rows: Vec<_> = listed
        .iter()
        .map(|s| (s.id, s.user.clone(), s.connection.remote.port(), s.rooms))
        .collect();
    assert_eq!(
        rows,
        [
            (SessionId(1), Some(user("alice")), 1001, 1),
            (SessionId(2), None, 1002, 0),
        ]
    );
    let alices = hub.sessions(Some(&user("alice")));
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0].id, SessionId(1));
    assert!(hub.sessions(Some(&user("bob"))).is_empty());

    assert!(hub.kick_session(SessionId(2), CloseCode::Kicked));
    assert_eq!(rx2.kick.reason(), Some(CloseCode::Kicked));
    assert_eq!(rx1.kick.reason(), None, "only the named session");
    assert!(!hub.kick_session(SessionId(9), CloseCode::Kicked));

    hub.unregister(SessionId(1));
    drop(first);
    let left: Vec<_> = hub.sessions(None).iter().map(|s| s.id).collect();
    assert_eq!(left, [SessionId(2)], "an ended session is forgotten");
    assert!(!hub.kick_session(SessionId(1), CloseCode::Kicked));
}

#[test]
fn session_ids_parse_in_the_form_they_are_shown() {
    for id in [SessionId(1), SessionId(0x1a), SessionId(u64::MAX)] {
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
    }
    for bad in [
        "",
        "s",
        "1a",
        "s-1",
        "s+1",
        "sx",
        "s 1",
        "s10000000000000000",
    ] {
        assert_eq!(SessionId::parse(bad), None, "{bad:?}");
    }
}
