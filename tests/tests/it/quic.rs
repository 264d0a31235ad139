//! QUIC clients against a real daemon: the same session layer as WebSocket (a QUIC and a
//! WebSocket user chat in two rooms), typing as datagrams, connection migration, resume across
//! transports, the self-signed certificate and its pin, ALPN, and the frame length limit.

use std::sync::Arc;
use std::time::Duration;

use chatd_tests::TestDaemon;
use protocol::client::{CertificatePin, Client, ClientError, ClientOptions, Event, ServerTrust};
use protocol::{CloseCode, PresenceState, Seq};
use rustls::pki_types::pem::PemObject as _;

use crate::support::{cmid, event, login, login_with, messages, presence, room, user};

/// Options that trust exactly the certificate the daemon's QUIC listener serves.
fn pinned(daemon: &TestDaemon) -> ClientOptions {
    let sha256 = daemon.quic_sha256().expect("QUIC is on");
    ClientOptions {
        trust: ServerTrust::Pinned(sha256.parse::<CertificatePin>().unwrap()),
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

async fn quic_login(daemon: &TestDaemon, name: &str, password: &str) -> Client {
    login_with(&daemon.quic_url().unwrap(), name, password, pinned(daemon)).await
}

async fn chat_daemon() -> TestDaemon {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "alice-pw").await;
    daemon.add_user("bob", "bob-pw").await;
    daemon.create_room("lobby", false).await;
    daemon.create_room("games", false).await;
    daemon
}

#[tokio::test]
async fn a_quic_user_and_a_websocket_user_chat_in_two_rooms() {
    let daemon = chat_daemon().await;
    let (lobby, games) = (room("lobby"), room("games"));
    let alice = quic_login(&daemon, "alice", "alice-pw").await;
    alice.join(&lobby, None).await.unwrap();
    alice.join(&games, None).await.unwrap();
    let bob = login(daemon.url(), "bob", "bob-pw").await;
    bob.join(&lobby, None).await.unwrap();
    bob.join(&games, None).await.unwrap();
    presence(&alice, "bob", PresenceState::Joined).await;

    for i in 0..20 {
        let (room_id, sender) = if i % 2 == 0 {
            (&lobby, &bob)
        } else {
            (&games, &alice)
        };
        sender
            .send(room_id, &cmid(&format!("m{i}")), &format!("message {i}"))
            .await
            .unwrap();
    }
    // Each room's messages arrive once and in order on the QUIC client's room streams.
    let mut by_room: std::collections::BTreeMap<String, Vec<protocol::Message>> =
        std::collections::BTreeMap::new();
    for _ in 0..20 {
        let message = event(&alice, "a message", |e| match e {
            Event::Message(message) => Some(message.clone()),
            _ => None,
        })
        .await;
        by_room
            .entry(message.room.to_string())
            .or_default()
            .push(message);
    }
    for (room_id, first) in [(&lobby, 0), (&games, 1)] {
        let got = &by_room[&room_id.to_string()];
        let bodies: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
        let expected: Vec<String> = (0..10)
            .map(|k| format!("message {}", first + 2 * k))
            .collect();
        assert_eq!(bodies, expected, "room {room_id}");
        let seqs: Vec<u64> = got.iter().map(|m| m.seq.0).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    }
    let at_bob = messages(&bob, &games, 10).await;
    assert_eq!(at_bob.last().unwrap().body, "message 19");

    // Typing crosses from WebSocket to QUIC (as a datagram) and back.
    bob.typing(&lobby).await.unwrap();
    event(&alice, "bob typing", |e| match e {
        Event::Typing { user: u, .. } if *u == user("bob") => Some(()),
        _ => None,
    })
    .await;
    alice.typing(&games).await.unwrap();
    event(&bob, "alice typing", |e| match e {
        Event::Typing { user: u, .. } if *u == user("alice") => Some(()),
        _ => None,
    })
    .await;

    alice.close().await;
    presence(&bob, "alice", PresenceState::Offline).await;
}

#[tokio::test]
async fn a_client_that_moves_to_a_new_address_keeps_its_session() {
    let daemon = chat_daemon().await;
    let lobby = room("lobby");
    let alice = quic_login(&daemon, "alice", "alice-pw").await;
    alice.join(&lobby, None).await.unwrap();
    let bob = login(daemon.url(), "bob", "bob-pw").await;
    bob.join(&lobby, None).await.unwrap();

    alice.send(&lobby, &cmid("before"), "before").await.unwrap();
    alice.rebind().await.unwrap();
    // Without migration the server would drop packets from the new address and this would
    // time out.
    let ack = alice.send(&lobby, &cmid("after"), "after").await.unwrap();
    assert_eq!(ack.seq, Seq(2));
    bob.send(&lobby, &cmid("reply"), "reply").await.unwrap();
    let got = messages(&alice, &lobby, 3).await;
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["before", "after", "reply"]);
    alice.ping().await.expect("the same connection goes on");

    let websocket = login(daemon.url(), "bob", "bob-pw").await;
    let refused = websocket.rebind().await.unwrap_err();
    assert!(matches!(refused, ClientError::Unsupported(_)), "{refused}");
}

#[tokio::test]
async fn resume_moves_a_session_between_quic_and_websocket_without_gap_or_duplicate() {
    let daemon = chat_daemon().await;
    let lobby = room("lobby");
    let mut alice = quic_login(&daemon, "alice", "alice-pw").await;
    alice.join(&lobby, None).await.unwrap();
    let bob = login(daemon.url(), "bob", "bob-pw").await;
    bob.join(&lobby, None).await.unwrap();
    bob.send(&lobby, &cmid("b0"), "seen").await.unwrap();
    assert_eq!(messages(&alice, &lobby, 1).await[0].body, "seen");

    // Bob goes on while alice reads nothing; she comes back over WebSocket. What her QUIC
    // connection received but she never read is dropped with it and replayed from the store.
    for i in 1..=3 {
        bob.send(&lobby, &cmid(&format!("b{i}")), &format!("missed {i}"))
            .await
            .unwrap();
    }
    alice.reconnect(daemon.url()).await.unwrap();
    let got = messages(&alice, &lobby, 3).await;
    assert_eq!(
        got.iter().map(|m| m.seq.0).collect::<Vec<_>>(),
        [2, 3, 4],
        "the missed messages, once each"
    );

    // And back to QUIC, with the token the WebSocket login handed out.
    for i in 4..=5 {
        bob.send(&lobby, &cmid(&format!("b{i}")), &format!("missed {i}"))
            .await
            .unwrap();
    }
    alice.reconnect(&daemon.quic_url().unwrap()).await.unwrap();
    let got = messages(&alice, &lobby, 2).await;
    assert_eq!(got.iter().map(|m| m.seq.0).collect::<Vec<_>>(), [5, 6]);
    bob.send(&lobby, &cmid("b6"), "live").await.unwrap();
    assert_eq!(messages(&alice, &lobby, 1).await[0].seq, Seq(7));
}

#[tokio::test]
async fn the_self_signed_certificate_is_pinned_and_kept_across_restarts() {
    let mut daemon = chat_daemon().await;
    let first = daemon.quic_sha256().unwrap().to_owned();
    let pem = std::fs::read_to_string(daemon.data_dir().join("quic-self-signed-cert.pem"))
        .expect("the certificate is kept in the data directory");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    daemon.restart().await;
    assert_eq!(
        daemon.quic_sha256().unwrap(),
        first,
        "a restart serves the same certificate, so pins keep working"
    );
    let alice = quic_login(&daemon, "alice", "alice-pw").await;
    alice.ping().await.unwrap();

    // A wrong pin, and the default trust in public CAs, both refuse the certificate.
    let url = daemon.quic_url().unwrap();
    let wrong = ClientOptions {
        trust: ServerTrust::Pinned("00".repeat(32).parse().unwrap()),
        ..ClientOptions::default()
    };
    let refused = Client::connect(&url, wrong).await.unwrap_err();
    assert!(matches!(refused, ClientError::Connect { .. }), "{refused}");
    let refused = Client::connect(&url, ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(refused, ClientError::Connect { .. }), "{refused}");
}

/// A raw QUIC connection that trusts the daemon's self-signed certificate by name
/// (`localhost`), offering `alpn`.
async fn raw_connect(
    daemon: &TestDaemon,
    alpn: &[u8],
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let pem = std::fs::read(daemon.data_dir().join("quic-self-signed-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let address = daemon.quic_url().unwrap()["quic://".len()..]
        .parse()
        .unwrap();
    endpoint.connect(address, "localhost").unwrap().await
}

#[tokio::test]
async fn a_client_without_our_alpn_is_refused_in_the_handshake() {
    let daemon = TestDaemon::start().await;
    let error = raw_connect(&daemon, b"chatd/2").await.unwrap_err();
    assert!(
        error.to_string().contains("no_application_protocol") || error.to_string().contains("120"),
        "{error}"
    );
    raw_connect(&daemon, protocol::stream_frame::QUIC_ALPN)
        .await
        .expect("the right ALPN is accepted");
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_the_connection_before_it_is_read() {
    let daemon = TestDaemon::start().await;
    let connection = raw_connect(&daemon, protocol::stream_frame::QUIC_ALPN)
        .await
        .unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    // Announces a 1 GiB frame and sends none of it.
    send.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(20), connection.closed())
        .await
        .expect("the server closes the connection");
    let quinn::ConnectionError::ApplicationClosed(close) = reason else {
        panic!("not closed by the server: {reason}");
    };
    assert_eq!(
        close.error_code.into_inner(),
        u64::from(CloseCode::FrameTooLarge.number())
    );
}
