//! The private Redis server of the harness: it answers, a stop really takes it away, a
//! restart brings it back on the same port, and two servers do not share a port.

use std::io::ErrorKind;

use chatd_tests::TestRedis;
use chatd_tests::redis::ping;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_started_server_answers_ping_at_its_url() {
    let redis = TestRedis::start().await;
    assert!(redis.ping().await, "log:\n{}", redis.log());
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert_eq!(redis.addr().port(), redis.port());
    assert!(redis.addr().ip().is_loopback());
}

#[tokio::test]
async fn a_stopped_server_refuses_connections() {
    let redis = TestRedis::start().await;
    // A client connected before the stop loses its connection too.
    let mut before = TcpStream::connect(redis.addr()).await.unwrap();
    redis.stop().await;
    let error = TcpStream::connect(redis.addr()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    assert!(!redis.ping().await);
    let mut buf = [0_u8; 8];
    let read = tokio::io::AsyncReadExt::read(&mut before, &mut buf).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the old connection is closed, got {read:?}"
    );
}

#[tokio::test]
async fn a_restarted_server_answers_on_the_same_port() {
    let redis = TestRedis::start().await;
    let port = redis.port();
    redis.stop().await;
    redis.restart().await;
    assert_eq!(redis.port(), port);
    assert!(
        ping(([127, 0, 0, 1], port).into()).await,
        "log:\n{}",
        redis.log()
    );
    // And again: stop and restart can follow each other as often as a test needs.
    redis.stop().await;
    assert!(!redis.ping().await);
    redis.restart().await;
    assert!(redis.ping().await);
}

#[tokio::test]
async fn two_servers_get_different_ports() {
    let first = TestRedis::start().await;
    let second = TestRedis::start().await;
    assert_ne!(first.port(), second.port());
    assert!(first.ping().await);
    assert!(second.ping().await);
    // Stopping one leaves the other running.
    first.stop().await;
    assert!(second.ping().await);
}

#[tokio::test]
async fn a_dropped_server_is_gone() {
    let redis = TestRedis::start().await;
    let addr = redis.addr();
    drop(redis);
    chatd_tests::wait::until(
        "the dropped server's port to refuse connections",
        std::time::Duration::from_secs(10),
        || async move {
            TcpStream::connect(addr)
                .await
                .is_err_and(|error| error.kind() == ErrorKind::ConnectionRefused)
                .then_some(())
        },
    )
    .await;
}
