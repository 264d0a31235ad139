//! Bad and slow clients: an oversized frame gets the documented error and close; a slow
//! consumer is cut off while the others keep receiving; an unknown frame type is answered
//! and the connection survives.

use std::time::Duration;

use protocol::client::{ClientOptions, Event};
use protocol::{CloseCode, ErrorCode};

use crate::support::{cmid, event, login, login_with, messages, room};
use chatd_tests::TestDaemon;

#[tokio::test]
async fn an_oversized_frame_gets_frame_too_large_and_a_close() {
    let daemon = TestDaemon::start_with(|config| config.limits.max_frame_bytes = 8 * 1024).await;
    daemon.add_user("alice", "pw").await;
    let alice = login(daemon.url(), "alice", "pw").await;
    let big = format!(r#"{{"type":"ping","rid":"{}"}}"#, "x".repeat(10 * 1024));
    alice.send_raw(&big).await.unwrap();
    let code = event(&alice, "frame_too_large error", |e| match e {
        Event::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::FrameTooLarge);
    let closed = event(&alice, "close", |e| match e {
        Event::Closed(code) => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(closed, Some(CloseCode::FrameTooLarge));
}

#[tokio::test]
async fn an_unknown_frame_is_answered_and_the_connection_survives() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw").await;
    let alice = login(daemon.url(), "alice", "pw").await;
    alice.send_raw(r#"{"type":"teleport"}"#).await.unwrap();
    let code = event(&alice, "unknown_frame error", |e| match e {
        Event::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::UnknownFrame);
    alice.ping().await.expect("still connected");
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_the_others_keep_receiving() {
    const MESSAGES: usize = 600;
    let daemon = TestDaemon::start_with(|config| {
        config.limits.outbox_capacity = 8;
        config.store.max_batch = 8;
        config.limits.sends_per_sec = 100_000;
        config.limits.send_burst = 100_000;
        config.limits.max_frame_bytes = 64 * 1024;
        config.limits.max_body_bytes = 32 * 1024;
    })
    .await;
    for name in ["sender", "fast", "slow"] {
        daemon.add_user(name, "pw").await;
    }
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");
    let sender = login(daemon.url(), "sender", "pw").await;
    let fast = login(daemon.url(), "fast", "pw").await;
    // The slow client queues one event and then stops reading its socket.
    let slow_options = ClientOptions {
        event_capacity: 1,
        ..ClientOptions::default()
    };
    let slow = login_with(daemon.url(), "slow", "pw", slow_options).await;
    sender.join(&lobby, None).await.unwrap();
    fast.join(&lobby, None).await.unwrap();
    slow.join(&lobby, None).await.unwrap();

    let fast_reader = tokio::spawn(async move {
        let got = messages(&fast, &room("lobby"), MESSAGES).await;
        // The fast client stays connected: the session count below includes it.
        (fast, got.iter().map(|m| m.seq.0).collect::<Vec<_>>())
    });
    // Big bodies fill the socket buffers quickly.
    let body = "x".repeat(30 * 1024);
    for i in 0..MESSAGES {
        sender
            .send(&lobby, &cmid(&format!("m{i}")), &body)
            .await
            .unwrap();
    }
    let (_fast, fast_seqs) = tokio::time::timeout(Duration::from_secs(120), fast_reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fast_seqs, (1..=MESSAGES as u64).collect::<Vec<_>>());

    // The slow session ends even though its client still reads nothing: its blocked write
    // gives way to the kick.
    chatd_tests::wait::until(
        "the slow session to end",
        Duration::from_secs(20),
        || async {
            let (code, out, _) = daemon.chatctl(&["--json", "status"], "").await;
            assert_eq!(code, 0);
            let status: serde_json::Value = serde_json::from_str(&out).unwrap();
            (status["sessions"] == 2).then_some(())
        },
    )
    .await;
    // The server sent close 4001 after the events already queued in the socket; a client
    // that reads nothing for the whole close timeout only sees the connection end.
    let closed = event(&slow, "slow consumer close", |e| match e {
        Event::Closed(code) => Some(*code),
        _ => None,
    })
    .await;
    assert!(
        matches!(closed, Some(CloseCode::SlowConsumer) | None),
        "{closed:?}"
    );
    let (code, out, _) = daemon.chatctl(&["--json", "status"], "").await;
    assert_eq!(code, 0, "the daemon is fine: {out}");
}
