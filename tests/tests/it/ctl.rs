//! chatctl against a running daemon: users, rooms, disabling a user closes their sessions.

use protocol::CloseCode;
use protocol::client::{Client, ClientOptions, Event};

use crate::support::{event, login, user};
use chatd_tests::TestDaemon;

#[tokio::test]
async fn user_disable_closes_that_users_sessions_and_blocks_login() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw-a").await;
    daemon.add_user("bob", "pw-b").await;
    let alice = login(daemon.url(), "alice", "pw-a").await;
    let bob = login(daemon.url(), "bob", "pw-b").await;

    let (code, out, err) = daemon.chatctl(&["user", "disable", "alice"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains('1'), "reports one closed session: {out}");
    let closed = event(&alice, "disabled close", |e| match e {
        Event::Closed(code) => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(closed, Some(CloseCode::UserDisabled));
    bob.ping().await.expect("bob is unaffected");

    let mut again = Client::connect(daemon.url(), ClientOptions::default())
        .await
        .unwrap();
    let refused = again.login(&user("alice"), "pw-a").await.unwrap_err();
    assert_eq!(refused.code(), Some(protocol::ErrorCode::UserDisabled));

    let (code, _, _) = daemon.chatctl(&["user", "enable", "alice"], "").await;
    assert_eq!(code, 0);
    login(daemon.url(), "alice", "pw-a").await;
}

#[tokio::test]
async fn chatctl_lists_users_and_rooms_as_json_and_reports_errors() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw-a").await;
    daemon.create_room("lobby", false).await;

    let (code, out, err) = daemon.chatctl(&["--json", "user", "list"], "").await;
    assert_eq!(code, 0, "{err}");
    let users: serde_json::Value = serde_json::from_str(&out).expect("json output");
    assert!(out.contains("alice"), "{users}");

    let (code, out, _) = daemon.chatctl(&["--json", "room", "list"], "").await;
    assert_eq!(code, 0);
    assert!(out.contains("lobby"));

    let (code, _, err) = daemon
        .chatctl(&["user", "add", "alice", "--password-stdin"], "again\n")
        .await;
    assert_eq!(code, 1, "an existing user is refused: {err}");
    assert!(err.contains("already exists"), "{err}");

    let (code, _, err) = daemon.chatctl(&["user", "disable", "nobody"], "").await;
    assert_eq!(code, 1);
    assert!(
        err.contains("nobody") || err.contains("not found") || err.contains("no user"),
        "{err}"
    );

    // A password change takes effect at the next login.
    let (code, _, err) = daemon
        .chatctl(&["user", "passwd", "alice", "--password-stdin"], "new-pw\n")
        .await;
    assert_eq!(code, 0, "{err}");
    let mut old = Client::connect(daemon.url(), ClientOptions::default())
        .await
        .unwrap();
    assert!(old.login(&user("alice"), "pw-a").await.is_err());
    login(daemon.url(), "alice", "new-pw").await;
}
