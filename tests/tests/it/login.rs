//! Login: wrong password and unknown user look the same; failures are rate limited; a
//! handshake must finish in time; resume tokens are single use.

use std::time::{Duration, Instant};

use protocol::ErrorCode;
use protocol::client::{Client, ClientError, ClientOptions};

use crate::support::{login, user};
use chatd_tests::TestDaemon;

async fn failed_login(url: &str, name: &str, password: &str) -> (ClientError, Duration) {
    let mut client = Client::connect(url, ClientOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let error = client.login(&user(name), password).await.unwrap_err();
    (error, started.elapsed())
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "right").await;
    let (wrong, wrong_time) = failed_login(daemon.url(), "alice", "wrong").await;
    let (unknown, unknown_time) = failed_login(daemon.url(), "mallory", "wrong").await;
    // In OPAQUE the client itself finds out that the password does not open the server's
    // answer; an unknown user gets a fake record, so both fail the same way.
    assert!(matches!(wrong, ClientError::Login(_)), "{wrong:?}");
    assert!(matches!(unknown, ClientError::Login(_)), "{unknown:?}");
    assert_eq!(wrong.to_string(), unknown.to_string(), "same message");
    // Both run the client's key stretching and one server round trip; neither path is
    // an early exit (the bound is loose because the machine is shared).
    let (slow, fast) = if wrong_time > unknown_time {
        (wrong_time, unknown_time)
    } else {
        (unknown_time, wrong_time)
    };
    assert!(
        slow < fast * 3,
        "wrong password {wrong_time:?} vs unknown user {unknown_time:?}"
    );
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_user_with_a_retry_hint() {
    let daemon = TestDaemon::start_with(|config| {
        config.auth.max_failures_per_user = 2;
    })
    .await;
    daemon.add_user("alice", "right").await;
    for _ in 0..2 {
        let (error, _) = failed_login(daemon.url(), "alice", "wrong").await;
        assert!(matches!(error, ClientError::Login(_)), "{error:?}");
    }
    let mut client = Client::connect(daemon.url(), ClientOptions::default())
        .await
        .unwrap();
    let limited = client.login(&user("alice"), "right").await.unwrap_err();
    assert_eq!(limited.code(), Some(ErrorCode::RateLimited), "{limited}");
    let ClientError::Server {
        retry_after: Some(wait),
        ..
    } = limited
    else {
        panic!("rate limit without a retry hint: {limited:?}")
    };
    assert!(wait > Duration::ZERO);
}

#[tokio::test]
async fn an_unfinished_handshake_is_closed() {
    let daemon = TestDaemon::start_with(|config| config.limits.handshake_timeout_secs = 1).await;
    let client = Client::connect(daemon.url(), ClientOptions::default())
        .await
        .unwrap();
    let event = chatd_tests::wait::within(
        "handshake timeout close",
        Duration::from_secs(10),
        client.next_event(),
    )
    .await;
    assert_eq!(
        event,
        Some(protocol::client::Event::Closed(Some(
            protocol::CloseCode::HandshakeTimeout
        )))
    );
}

#[tokio::test]
async fn a_resume_token_works_once() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw").await;
    let client = login(daemon.url(), "alice", "pw").await;
    let token = client.resume_token().unwrap().to_owned();
    client.close().await;

    let mut first = Client::connect(daemon.url(), ClientOptions::default())
        .await
        .unwrap();
    let welcome = first.resume(&token).await.expect("token works");
    assert_eq!(welcome.user, user("alice"));
    assert_ne!(
        welcome.resume_token, token,
        "a fresh token replaces the used one"
    );
    let mut second = Client::connect(daemon.url(), ClientOptions::default())
        .await
        .unwrap();
    let refused = second.resume(&token).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidToken));
}
