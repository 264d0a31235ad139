//! Connection limits at accept: connections per remote address (WebSocket and QUIC in one
//! budget) and connections waiting to log in. A refused connection fails to connect; a place
//! comes back once the server has seen a connection close, or a session log in.

use std::net::SocketAddr;

use chatd_tests::TestDaemon;
use chatd_tests::wait::until;
use protocol::client::{CertificatePin, Client, ClientError, ClientOptions, ServerTrust};
use tokio::net::TcpStream;

use crate::support::{TIMEOUT, user};

/// Long enough that no connection of these tests is closed for not logging in.
const HANDSHAKE_TIMEOUT_SECS: u64 = 300;

/// Options that trust exactly the certificate the daemon's QUIC listener serves.
fn pinned(daemon: &TestDaemon) -> ClientOptions {
    let sha256 = daemon.quic_sha256().expect("QUIC is on");
    ClientOptions {
        trust: ServerTrust::Pinned(sha256.parse::<CertificatePin>().unwrap()),
        ..ClientOptions::default()
    }
}

async fn websocket(daemon: &TestDaemon) -> Result<Client, ClientError> {
    Client::connect(daemon.url(), ClientOptions::default()).await
}

async fn quic(daemon: &TestDaemon) -> Result<Client, ClientError> {
    Client::connect(&daemon.quic_url().unwrap(), pinned(daemon)).await
}

/// Asserts that a connection attempt was refused.
fn assert_refused(attempt: Result<Client, ClientError>, what: &str) {
    match attempt {
        Ok(_) => panic!("{what}: connected past the limit"),
        Err(ClientError::Connect { .. } | ClientError::Closed(_)) => {}
        Err(other) => panic!("{what}: expected a refused connection, got {other:?}"),
    }
}

/// Connects with `connect` until it succeeds: the server frees a place only once it has
/// seen the connection that held it close.
async fn connect_when_free<F, Fut>(what: &str, connect: F) -> Client
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Client, ClientError>>,
{
    let connect = &connect;
    until(what, TIMEOUT, move || async move { connect().await.ok() }).await
}

#[tokio::test]
async fn one_address_gets_a_budget_shared_by_websocket_and_quic() {
    let daemon = TestDaemon::start_with(|config| {
        config.limits.max_connections_per_address = 3;
        config.limits.handshake_timeout_secs = HANDSHAKE_TIMEOUT_SECS;
    })
    .await;
    let first = websocket(&daemon).await.unwrap();
    let second = websocket(&daemon).await.unwrap();
    let third = websocket(&daemon).await.unwrap();
    assert_refused(websocket(&daemon).await, "fourth WebSocket connection");
    // QUIC draws on the same budget: three WebSocket connections leave it nothing.
    assert_refused(
        quic(&daemon).await,
        "QUIC beside three WebSocket connections",
    );

    first.close().await;
    let fourth = connect_when_free("a place after a WebSocket close", || websocket(&daemon)).await;
    assert_refused(
        websocket(&daemon).await,
        "a WebSocket connection past the limit again",
    );

    // A QUIC connection takes a place a WebSocket connection gave back, and keeps it from
    // WebSocket connections.
    second.close().await;
    let over_quic = connect_when_free("a place for QUIC", || quic(&daemon)).await;
    assert_refused(
        websocket(&daemon).await,
        "WebSocket beside a QUIC connection",
    );
    assert_refused(quic(&daemon).await, "a second QUIC connection");

    over_quic.close().await;
    let _fifth = connect_when_free("a place after a QUIC close", || websocket(&daemon)).await;
    drop((third, fourth));
}

#[tokio::test]
async fn connections_that_have_not_logged_in_are_limited() {
    let daemon = TestDaemon::start_with(|config| {
        config.limits.max_pending_handshakes = 2;
        config.limits.handshake_timeout_secs = HANDSHAKE_TIMEOUT_SECS;
    })
    .await;
    daemon.add_user("alice", "pw").await;
    let address: SocketAddr = daemon.url().strip_prefix("ws://").unwrap().parse().unwrap();

    // Two connections that never send a byte (not even the TLS or WebSocket handshake)
    // hold both permits; the server accepts them before the next one, in order.
    let silent = [
        TcpStream::connect(address).await.unwrap(),
        TcpStream::connect(address).await.unwrap(),
    ];
    assert_refused(websocket(&daemon).await, "a third pending connection");
    assert_refused(
        quic(&daemon).await,
        "a QUIC connection while both permits are held",
    );

    drop(silent);
    let mut client = connect_when_free("a handshake permit", || websocket(&daemon)).await;
    client.login(&user("alice"), "pw").await.unwrap();

    // A logged-in session holds no permit: more sessions than permits log in, one after
    // another, and stay logged in.
    let mut sessions = vec![client];
    for n in 2..=3 {
        let mut client =
            connect_when_free(&format!("a permit for session {n}"), || websocket(&daemon)).await;
        client.login(&user("alice"), "pw").await.unwrap();
        sessions.push(client);
    }
    let mut over_quic = connect_when_free("a permit for a QUIC session", || quic(&daemon)).await;
    over_quic.login(&user("alice"), "pw").await.unwrap();
    sessions.push(over_quic);

    // The permits are all free again: two more pending connections fit, a third does not.
    let _pending = [
        connect_when_free("a first permit again", || websocket(&daemon)).await,
        connect_when_free("a second permit again", || websocket(&daemon)).await,
    ];
    assert_refused(
        websocket(&daemon).await,
        "a pending connection past the permits",
    );
    for session in sessions {
        assert!(
            session.ping().await.is_ok(),
            "a logged-in session stays open"
        );
    }
}
