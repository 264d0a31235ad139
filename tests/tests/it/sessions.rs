//! `chatctl session list` and `session kick` against a running daemon: the listing matches the
//! clients that are connected, a kick closes exactly the sessions it names with close code
//! `kicked`, and a kicked client may come back.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use chatd_tests::TestDaemon;
use chatd_tests::wait::until;
use protocol::CloseCode;
use protocol::admin::{AdminReply, SessionInfo};
use protocol::client::{Client, ClientOptions, Event};

use crate::support::{TIMEOUT, event, room, user};

#[tokio::test]
async fn session_list_shows_every_connection_and_filters_by_user() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw-a").await;
    daemon.add_user("bob", "pw-b").await;
    daemon.create_room("lobby", false).await;
    let started_ms = now_ms();

    let (alice1, a1) = login(&daemon, "alice", "pw-a").await;
    let (_alice2, a2) = login(&daemon, "alice", "pw-a").await;
    let (_bob, b) = login(&daemon, "bob", "pw-b").await;
    alice1.join(&room("lobby"), None).await.unwrap();
    // Connected, but not logged in.
    let _anonymous = Client::connect(daemon.url(), ClientOptions::default())
        .await
        .unwrap();

    let all = sessions(&daemon, &[]).await;
    let rows: Vec<_> = all
        .iter()
        .map(|s| (s.user.as_ref().map(ToString::to_string), s.rooms))
        .collect();
    assert_eq!(
        rows,
        [
            (Some("alice".to_owned()), 1),
            (Some("alice".to_owned()), 0),
            (Some("bob".to_owned()), 0),
            (None, 0),
        ],
        "oldest first: {all:?}"
    );
    let ids: Vec<&str> = all.iter().take(3).map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [&a1, &a2, &b], "ids are those of the welcome frames");
    for session in &all {
        assert_eq!(session.transport, "websocket");
        let remote: SocketAddr = session.remote.parse().unwrap();
        assert!(remote.ip().is_loopback(), "{remote}");
        assert!(
            (started_ms..=now_ms()).contains(&session.connected_ms),
            "connected during the test: {session:?}"
        );
    }

    let alices = sessions(&daemon, &["--user", "alice"]).await;
    let ids: Vec<&str> = alices.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [&a1, &a2]);
    assert!(sessions(&daemon, &["--user", "carol"]).await.is_empty());

    let (code, out, err) = daemon.chatctl(&["session", "list"], "").await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "USER", "TRANSPORT", "REMOTE", "CONNECTED", "ROOMS"]
    );
    assert_eq!(lines.len(), 5, "a header and four sessions:\n{out}");
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(first[..3], [a1.as_str(), "alice", "websocket"], "{out}");
    assert_eq!(
        first.last(),
        Some(&"1"),
        "alice's first session is in one room"
    );
    let anonymous: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(anonymous[1], "-", "no user before login:\n{out}");

    let (code, out, _) = daemon
        .chatctl(&["session", "list", "--user", "carol"], "")
        .await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "carol has no live sessions");
}

#[tokio::test]
async fn session_kick_closes_exactly_the_named_sessions_and_they_may_come_back() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw-a").await;
    daemon.add_user("bob", "pw-b").await;
    daemon.create_room("lobby", false).await;
    let (mut alice1, a1) = login(&daemon, "alice", "pw-a").await;
    alice1.join(&room("lobby"), None).await.unwrap();
    let (alice2, a2) = login(&daemon, "alice", "pw-a").await;
    let (bob, _) = login(&daemon, "bob", "pw-b").await;

    // One session, by id.
    let (code, out, err) = daemon.chatctl(&["session", "kick", &a1], "").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("closed session {a1}"));
    assert_eq!(closed(&alice1).await, Some(CloseCode::Kicked));
    alice2.ping().await.expect("alice's other session stays");
    bob.ping().await.expect("bob is unaffected");
    until("the kicked session to end", TIMEOUT, || async {
        let ids: Vec<String> = sessions(&daemon, &["--user", "alice"])
            .await
            .into_iter()
            .map(|s| s.id)
            .collect();
        (ids == [a2.clone()]).then_some(())
    })
    .await;

    // An id that is not live here is refused, and says where to find live ones.
    let (code, out, err) = daemon.chatctl(&["session", "kick", "s99999"], "").await;
    assert_eq!(code, 1, "refused: {out}{err}");
    assert!(err.contains("no session `s99999`"), "{err}");
    assert!(err.contains("chatctl session list"), "{err}");
    let (code, _, err) = daemon.chatctl(&["session", "kick", "alice"], "").await;
    assert_eq!(code, 1, "not an id: {err}");

    // A kicked client comes back: it resumes and rejoins, or logs in with its password.
    alice1
        .reconnect(daemon.url())
        .await
        .expect("resume after a kick");
    alice1.ping().await.unwrap();
    let (alice3, _) = login(&daemon, "alice", "pw-a").await;

    // Every session of a user.
    let (code, out, err) = daemon
        .chatctl(&["--json", "session", "kick", "--user", "alice"], "")
        .await;
    assert_eq!(code, 0, "{err}");
    let reply: AdminReply = serde_json::from_str(&out).unwrap();
    assert_eq!(reply, AdminReply::Kicked { sessions: 3 });
    for client in [&alice1, &alice2, &alice3] {
        assert_eq!(closed(client).await, Some(CloseCode::Kicked));
    }
    bob.ping().await.expect("bob is still unaffected");

    // A user without sessions is not an error.
    let (code, out, err) = daemon
        .chatctl(&["session", "kick", "--user", "nobody"], "")
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "nobody has no live sessions; nothing was closed"
    );

    // Exactly one of ID and --user.
    let (code, _, err) = daemon.chatctl(&["session", "kick"], "").await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = daemon
        .chatctl(&["session", "kick", &a2, "--user", "alice"], "")
        .await;
    assert_eq!(code, 2, "{err}");

    login(&daemon, "alice", "pw-a").await;
}

/// Connects and logs in; returns the client and its session id.
async fn login(daemon: &TestDaemon, name: &str, password: &str) -> (Client, String) {
    let mut client = Client::connect(daemon.url(), ClientOptions::default())
        .await
        .unwrap();
    let welcome = client.login(&user(name), password).await.unwrap();
    (client, welcome.session)
}

/// `chatctl --json session list ARGS`.
async fn sessions(daemon: &TestDaemon, args: &[&str]) -> Vec<SessionInfo> {
    let mut command = vec!["--json", "session", "list"];
    command.extend_from_slice(args);
    let (code, out, err) = daemon.chatctl(&command, "").await;
    assert_eq!(code, 0, "{err}");
    match serde_json::from_str(&out).unwrap() {
        AdminReply::Sessions { sessions } => sessions,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Waits for the client's connection to close; its close code.
async fn closed(client: &Client) -> Option<CloseCode> {
    event(client, "the close", |e| match e {
        Event::Closed(code) => Some(*code),
        _ => None,
    })
    .await
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}
