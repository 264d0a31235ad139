//! Client tests against a scripted WebSocket server on 127.0.0.1 (a real socket, with the
//! server half written out frame by frame in each test), including a real OPAQUE server half.

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use opaque_ke::{
    ClientRegistration, ClientRegistrationFinishParameters, CredentialFinalization,
    CredentialRequest, RegistrationResponse, ServerLogin, ServerLoginParameters,
    ServerRegistration, ServerSetup,
};
use rand::rngs::OsRng;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

use super::*;
use crate::error_code::{CloseCode, ErrorCode};
use crate::frame::{Message, PresenceState};
use crate::ids::RequestId;
use crate::opaque_suite::Suite;
use crate::{decode_client, encode_server};

/// The server side of one accepted connection.
struct Peer {
    socket: WebSocketStream<TcpStream>,
}

impl Peer {
    /// The next client frame.
    async fn recv(&mut self) -> ClientFrame {
        self.recv_text()
            .await
            .map(|text| decode_client(text.as_bytes(), 1 << 20).unwrap())
            .unwrap()
    }

    /// The next text message, or `None` when the client closed.
    async fn recv_text(&mut self) -> Option<String> {
        while let Some(message) = self.socket.next().await {
            match message.unwrap() {
                WsMessage::Text(text) => return Some(text.as_str().to_owned()),
                WsMessage::Close(_) => return None,
                _ => {}
            }
        }
        None
    }

    async fn send(&mut self, frame: ServerFrame) {
        let text = String::from_utf8(encode_server(&frame).to_vec()).unwrap();
        self.socket.send(WsMessage::text(text)).await.unwrap();
    }

    /// Answers the client's `hello`.
    async fn handshake(&mut self) {
        let hello = self.recv().await;
        assert!(
            matches!(hello, ClientFrame::Hello { version: 1, .. }),
            "{hello:?}"
        );
        self.send(ServerFrame::Hello {
            version: 1,
            server: "test".into(),
            limits: limits(),
        })
        .await;
    }

    /// Closes with `code` and waits for the client's close reply.
    async fn close(mut self, code: CloseCode) {
        let frame = CloseFrame {
            code: WsCloseCode::from(code.number()),
            reason: "".into(),
        };
        self.socket
            .send(WsMessage::Close(Some(frame)))
            .await
            .unwrap();
        while let Some(Ok(_)) = self.socket.next().await {}
    }
}

/// Listens on 127.0.0.1 port 0 and runs `script` on the first connection.
async fn serve<F, Fut>(script: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
        script(Peer { socket }).await;
    });
    (url, server)
}

fn limits() -> Limits {
    Limits {
        max_frame_bytes: 32 * 1024,
        max_body_bytes: 4096,
        max_rooms_per_session: 64,
        max_history_page: 200,
        sends_per_sec: 20,
        send_burst: 40,
    }
}

fn room(name: &str) -> RoomId {
    RoomId::parse(name).unwrap()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn message(room_name: &str, seq: u64) -> Message {
    Message {
        room: room(room_name),
        seq: Seq(seq),
        from: user("bob"),
        body: format!("m{seq}"),
        ts: 1_700_000_000_000,
        cmid: None,
    }
}

fn rid_of(frame: &ClientFrame) -> Option<RequestId> {
    frame.rid().cloned()
}

fn welcome(rid: Option<RequestId>, token: &str) -> ServerFrame {
    ServerFrame::Welcome {
        rid,
        user: user("alice"),
        session: "s1".into(),
        resume_token: token.into(),
        resume_expires_in_secs: 300,
    }
}

fn quick() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

async fn next_message(client: &Client) -> Message {
    match client.next_event().await {
        Some(Event::Message(message)) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn connect_keeps_the_server_limits_and_ping_and_raw_frames_reach_the_server() {
    let (url, server) = serve(|mut peer| async move {
        peer.handshake().await;
        let ping = peer.recv().await;
        assert!(matches!(ping, ClientFrame::Ping { rid: Some(_) }));
        peer.send(ServerFrame::Pong { rid: rid_of(&ping) }).await;
        assert_eq!(
            peer.recv_text().await.as_deref(),
            Some("{\"type\":\"teleport\"}")
        );
        assert_eq!(peer.recv_text().await, None, "client closed");
    })
    .await;

    let client = Client::connect(&url, quick()).await.unwrap();
    assert_eq!(client.limits(), &limits());
    let round_trip = client.ping().await.unwrap();
    assert!(round_trip < Duration::from_secs(5));
    client.send_raw("{\"type\":\"teleport\"}").await.unwrap();
    client.close().await;
    server.await.unwrap();
}

#[tokio::test]
async fn one_task_reads_events_while_another_sends_requests() {
    let (url, server) = serve(|mut peer| async move {
        peer.handshake().await;
        let ping = peer.recv().await;
        peer.send(ServerFrame::Message(message("lobby", 1))).await;
        peer.send(ServerFrame::Pong { rid: rid_of(&ping) }).await;
        peer.recv_text().await;
    })
    .await;

    let client = std::sync::Arc::new(Client::connect(&url, quick()).await.unwrap());
    let reader = tokio::spawn({
        let client = std::sync::Arc::clone(&client);
        async move { next_message(&client).await }
    });
    client.ping().await.unwrap();
    assert_eq!(reader.await.unwrap().seq, Seq(1));
    let client = std::sync::Arc::into_inner(client).unwrap();
    client.close().await;
    server.await.unwrap();
}

#[tokio::test]
async fn replies_reach_the_request_with_their_request_id_whatever_the_order() {
    let (url, server) = serve(|mut peer| async move {
        peer.handshake().await;
        let first = peer.recv().await;
        let second = peer.recv().await;
        // Answer in reverse order; each page names the room its request asked for.
        for request in [second, first] {
            let ClientFrame::History { rid, room, .. } = request else {
                panic!("{request:?}")
            };
            let page = vec![message(room.as_str(), 1)];
            peer.send(ServerFrame::HistoryPage {
                rid,
                room,
                messages: page,
                has_more: false,
            })
            .await;
        }
        peer.recv_text().await;
    })
    .await;

    let client = Client::connect(&url, quick()).await.unwrap();
    let (aaa, bbb) = (room("aaa"), room("bbb"));
    let (a, b) = tokio::join!(
        client.history(&aaa, None, None, Some(10)),
        client.history(&bbb, Some(Seq(5)), None, None),
    );
    assert_eq!(a.unwrap().room, room("aaa"));
    assert_eq!(b.unwrap().room, room("bbb"));
    assert_eq!(
        client.last_seen().get(&room("aaa")),
        Some(&Seq(1)),
        "history raises last_seen"
    );
    client.close().await;
    server.await.unwrap();
}

#[tokio::test]
async fn events_are_deduplicated_and_the_close_code_ends_them() {
    let (url, server) = serve(|mut peer| async move {
        peer.handshake().await;
        for seq in [1, 2, 2, 1, 3] {
            peer.send(ServerFrame::Message(message("lobby", seq))).await;
        }
        peer.send(ServerFrame::Presence {
            room: room("lobby"),
            user: user("bob"),
            state: PresenceState::Left,
        })
        .await;
        peer.send(ServerFrame::Typing {
            room: room("lobby"),
            user: user("bob"),
        })
        .await;
        peer.send(ServerFrame::error(
            None,
            ErrorCode::NotJoined,
            "typing in a room not joined",
        ))
        .await;
        peer.send(ServerFrame::GoingAway {
            reason: "restart".into(),
            reconnect_after_ms: 1500,
        })
        .await;
        peer.close(CloseCode::SlowConsumer).await;
    })
    .await;

    let client = Client::connect(&url, quick()).await.unwrap();
    let seqs = [
        next_message(&client).await.seq,
        next_message(&client).await.seq,
        next_message(&client).await.seq,
    ];
    assert_eq!(
        seqs,
        [Seq(1), Seq(2), Seq(3)],
        "duplicates and older messages dropped"
    );
    assert!(matches!(
        client.next_event().await,
        Some(Event::Presence {
            state: PresenceState::Left,
            ..
        })
    ));
    assert!(matches!(
        client.next_event().await,
        Some(Event::Typing { .. })
    ));
    assert!(matches!(
        client.next_event().await,
        Some(Event::Error {
            code: ErrorCode::NotJoined,
            ..
        })
    ));
    assert_eq!(
        client.next_event().await,
        Some(Event::GoingAway {
            reason: "restart".into(),
            reconnect_after: Duration::from_millis(1500)
        })
    );
    assert_eq!(
        client.next_event().await,
        Some(Event::Closed(Some(CloseCode::SlowConsumer)))
    );
    assert_eq!(client.next_event().await, None);
    assert!(matches!(
        client.ping().await,
        Err(ClientError::Closed(Some(CloseCode::SlowConsumer)))
    ));
    assert_eq!(client.last_seen().get(&room("lobby")), Some(&Seq(3)));
    server.await.unwrap();
}

#[tokio::test]
async fn server_errors_carry_their_code_and_retry_hint() {
    let (url, server) = serve(|mut peer| async move {
        peer.handshake().await;
        let send = peer.recv().await;
        peer.send(ServerFrame::retry_error(
            rid_of(&send),
            ErrorCode::RateLimited,
            "slow down",
            250,
        ))
        .await;
        let send = peer.recv().await;
        let ClientFrame::Send {
            rid, room, cmid, ..
        } = send
        else {
            panic!("{send:?}")
        };
        peer.send(ServerFrame::Acked {
            rid,
            room,
            seq: Seq(7),
            cmid,
            ts: 5,
        })
        .await;
        peer.recv_text().await;
    })
    .await;

    let client = Client::connect(&url, quick()).await.unwrap();
    let cmid = ClientMsgId::parse("c-1").unwrap();
    let error = client.send(&room("lobby"), &cmid, "hi").await.unwrap_err();
    assert!(error.is_retryable());
    let ClientError::Server {
        code, retry_after, ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(code, ErrorCode::RateLimited);
    assert_eq!(retry_after, Some(Duration::from_millis(250)));
    let acked = client.send(&room("lobby"), &cmid, "hi").await.unwrap();
    assert_eq!(
        acked,
        Acked {
            room: room("lobby"),
            seq: Seq(7),
            cmid,
            ts: 5
        }
    );
    client.close().await;
    server.await.unwrap();
}

#[tokio::test]
async fn an_unanswered_request_times_out_and_its_late_reply_is_discarded() {
    let (url, server) = serve(|mut peer| async move {
        peer.handshake().await;
        let first = peer.recv().await;
        let second = peer.recv().await;
        peer.send(ServerFrame::Pong {
            rid: rid_of(&first),
        })
        .await;
        peer.send(ServerFrame::Pong {
            rid: rid_of(&second),
        })
        .await;
        peer.recv_text().await;
    })
    .await;

    let options = ClientOptions {
        request_timeout: Duration::from_millis(200),
        ..quick()
    };
    let client = Client::connect(&url, options).await.unwrap();
    assert!(matches!(client.ping().await, Err(ClientError::Timeout)));
    client.ping().await.unwrap();
    client.close().await;
    server.await.unwrap();
}

#[tokio::test]
async fn login_runs_the_opaque_client_half_and_detects_a_wrong_password() {
    let setup = ServerSetup::<Suite>::new(&mut OsRng);
    let record = register(&setup, "alice", "correct horse");
    let (url, server) = serve(move |mut peer| async move {
        peer.handshake().await;
        let mut pending = None;
        while let Some(text) = peer.recv_text().await {
            match decode_client(text.as_bytes(), 1 << 20).unwrap() {
                ClientFrame::LoginStart { rid, user, ke1 } => {
                    let request = CredentialRequest::<Suite>::deserialize(ke1.as_bytes()).unwrap();
                    let started = ServerLogin::start(
                        &mut OsRng,
                        &setup,
                        Some(record.clone()),
                        request,
                        user.as_str().as_bytes(),
                        ServerLoginParameters::default(),
                    )
                    .unwrap();
                    let ke2 = Base64Bytes(started.message.serialize().to_vec());
                    peer.send(ServerFrame::LoginChallenge { rid, ke2 }).await;
                    // After a wrong password the client never sends KE3; the next
                    // login_start replaces this state.
                    pending = Some(started.state);
                }
                ClientFrame::LoginFinish { rid, ke3 } => {
                    let ke3 = CredentialFinalization::<Suite>::deserialize(ke3.as_bytes()).unwrap();
                    let state = pending.take().unwrap();
                    state.finish(ke3, ServerLoginParameters::default()).unwrap();
                    peer.send(welcome(rid, "t1")).await;
                }
                other => panic!("{other:?}"),
            }
        }
    })
    .await;

    let mut client = Client::connect(&url, quick()).await.unwrap();
    let error = client.login(&user("alice"), "wrong").await.unwrap_err();
    assert!(matches!(error, ClientError::Login(_)), "{error:?}");
    let welcome = client.login(&user("alice"), "correct horse").await.unwrap();
    assert_eq!(welcome.user, user("alice"));
    assert_eq!(welcome.resume_expires_in, Duration::from_secs(300));
    assert_eq!(client.resume_token(), Some("t1"));
    assert_eq!(client.user(), Some(&user("alice")));
    client.close().await;
    server.await.unwrap();
}

/// Runs both halves of OPAQUE registration and returns the server's password file.
fn register(setup: &ServerSetup<Suite>, name: &str, password: &str) -> ServerRegistration<Suite> {
    let start = ClientRegistration::<Suite>::start(&mut OsRng, password.as_bytes()).unwrap();
    let response = ServerRegistration::start(setup, start.message, name.as_bytes()).unwrap();
    let response =
        RegistrationResponse::<Suite>::deserialize(&response.message.serialize()).unwrap();
    let finish = start
        .state
        .finish(
            &mut OsRng,
            password.as_bytes(),
            response,
            ClientRegistrationFinishParameters::default(),
        )
        .unwrap();
    ServerRegistration::finish(finish.message)
}

#[tokio::test]
async fn reconnect_resumes_and_rejoins_without_gap_or_duplicate() {
    let (first_url, first) = serve(|mut peer| async move {
        peer.handshake().await;
        let resume = peer.recv().await;
        assert!(matches!(&resume, ClientFrame::Resume { token, .. } if token == "t0"));
        peer.send(welcome(rid_of(&resume), "t1")).await;
        let join = peer.recv().await;
        let ClientFrame::Join {
            rid,
            room,
            since: None,
        } = join
        else {
            panic!("{join:?}")
        };
        let page = vec![message("lobby", 1), message("lobby", 2)];
        peer.send(ServerFrame::Joined {
            rid,
            room,
            online: vec![],
            messages: page,
            last_seq: Seq(2),
        })
        .await;
        for seq in [3, 4] {
            peer.send(ServerFrame::Message(message("lobby", seq))).await;
        }
        peer.close(CloseCode::GoingAway).await;
    })
    .await;
    let (second_url, second) = serve(|mut peer| async move {
        peer.handshake().await;
        let resume = peer.recv().await;
        assert!(matches!(&resume, ClientFrame::Resume { token, .. } if token == "t1"));
        peer.send(welcome(rid_of(&resume), "t2")).await;
        let join = peer.recv().await;
        let ClientFrame::Join { rid, room, since } = join else {
            panic!("{join:?}")
        };
        assert_eq!(
            since,
            Some(Seq(3)),
            "since = the last message the application read"
        );
        peer.send(ServerFrame::Joined {
            rid,
            room,
            online: vec![],
            messages: vec![],
            last_seq: Seq(5),
        })
        .await;
        // Replay after since, with an overlap a sloppy server might send.
        for seq in [3, 4, 5] {
            peer.send(ServerFrame::Message(message("lobby", seq))).await;
        }
        peer.recv_text().await;
    })
    .await;

    let mut client = Client::connect(&first_url, quick()).await.unwrap();
    client.resume("t0").await.unwrap();
    let joined = client.join(&room("lobby"), None).await.unwrap();
    assert_eq!(joined.messages.len(), 2);
    assert_eq!(next_message(&client).await.seq, Seq(3));
    // Message 4 stays unread when the connection drops; the replay brings it back once.
    client.reconnect(&second_url).await.unwrap();
    assert_eq!(client.resume_token(), Some("t2"));
    assert_eq!(next_message(&client).await.seq, Seq(4));
    assert_eq!(next_message(&client).await.seq, Seq(5));
    assert_eq!(client.last_seen().get(&room("lobby")), Some(&Seq(5)));
    client.close().await;
    first.await.unwrap();
    second.await.unwrap();
}

#[tokio::test]
async fn reconnect_without_a_resume_token_asks_for_a_login() {
    let (url, server) = serve(|mut peer| async move {
        peer.handshake().await;
        peer.recv_text().await;
    })
    .await;
    let mut client = Client::connect(&url, quick()).await.unwrap();
    let error = client.reconnect(&url).await.unwrap_err();
    assert!(matches!(error, ClientError::Login(_)), "{error:?}");
    client.close().await;
    server.await.unwrap();
}

#[tokio::test]
async fn connect_to_a_closed_port_names_the_url() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = Client::connect(&url, quick()).await.unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains(&url), "{error}");
}
