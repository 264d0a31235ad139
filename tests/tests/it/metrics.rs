//! The operator HTTP listener of a real daemon, spoken to over plain TCP: Prometheus counters,
//! gauges and histograms move by exactly what real client traffic did, `/healthz` and
//! `/readyz` answer, `/readyz` turns 503 `draining` while a drain waits for a commit, unknown
//! paths are 404, and `chatctl status` reports the same health.
//!
//! The metrics recorder is global to a process, so every daemon in this test binary would
//! record into the same numbers. Each test here therefore runs its body in a fresh process of
//! this binary ([`in_own_process`]), where its daemon is the only one.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;

use chatd_tests::TestDaemon;
use chatd_tests::wait::{until, within};
use protocol::client::{Client, ClientError, ClientOptions};
use protocol::{ErrorCode, Seq};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TIMEOUT, cmid, login, messages, room, user};

/// Set in the child process that runs a test's body. Not `CHATD_*`: chatd and chatctl read
/// those as configuration keys.
const CHILD_VAR: &str = "IT_METRICS_OWN_PROCESS";

#[test]
fn counters_gauges_and_histograms_follow_real_traffic() {
    in_own_process(
        "metrics::counters_gauges_and_histograms_follow_real_traffic",
        counters_gauges_and_histograms_follow_real_traffic_body,
    );
}

async fn counters_gauges_and_histograms_follow_real_traffic_body() {
    let daemon = TestDaemon::start_with(|config| {
        config.listen.metrics = Some("127.0.0.1:0".parse().unwrap());
        // The second wrong password of one user is refused by the per-user limit.
        config.auth.max_failures_per_user = 1;
    })
    .await;
    let metrics_addr = daemon.metrics_addr().expect("metrics listener bound");
    for name in ["alice", "bob", "carol", "mallory"] {
        daemon.add_user(name, "pw").await;
    }
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");
    let before = scrape(metrics_addr).await;

    let alice = login(daemon.url(), "alice", "pw").await;
    alice.join(&lobby, None).await.unwrap();
    let mut bob = login(daemon.url(), "bob", "pw").await;
    bob.join(&lobby, None).await.unwrap();
    for i in 0..3 {
        alice
            .send(&lobby, &cmid(&format!("a{i}")), "from alice")
            .await
            .unwrap();
    }
    for i in 0..2 {
        bob.send(&lobby, &cmid(&format!("b{i}")), "from bob")
            .await
            .unwrap();
    }
    // Each of the two sessions gets every message, its own included.
    messages(&alice, &lobby, 5).await;
    messages(&bob, &lobby, 5).await;

    // Bob resumes on a new connection; he has seen everything, so nothing is replayed.
    bob.reconnect(daemon.url()).await.unwrap();
    // Carol joins saying she saw up to 3: messages 4 and 5 are replayed from the store.
    let carol = login(daemon.url(), "carol", "pw").await;
    carol.join(&lobby, Some(Seq(3))).await.unwrap();
    messages(&carol, &lobby, 2).await;

    // OPAQUE tells the client its password is wrong from KE2, so it never sends KE3: the
    // server counts the login as abandoned when the connection closes. The second attempt is
    // over the per-user limit and refused at once.
    let error = wrong_password(daemon.url(), "mallory").await;
    assert!(matches!(error, ClientError::Login(_)), "{error:?}");
    let error = wrong_password(daemon.url(), "mallory").await;
    assert!(
        matches!(&error, ClientError::Server { code, .. } if *code == ErrorCode::RateLimited),
        "{error:?}"
    );

    // The refused logins' connections close asynchronously; the gauges settle on the three
    // logged-in clients.
    let after = until("connections to settle", TIMEOUT, || async {
        let now = scrape(metrics_addr).await;
        (value(&now, "chatd_transport_connections{transport=\"websocket\"}") == 3.0
            && value(&now, "chatd_auth_logins_total{outcome=\"abandoned\"}") == 1.0
            && value(&now, "chatd_session_messages_delivered_total") >= 10.0)
            .then_some(now)
    })
    .await;
    let moved = |series: &str| value(&after, series) - value(&before, series);

    assert_eq!(moved("chatd_session_messages_received_total"), 5.0);
    assert_eq!(moved("chatd_store_messages_committed_total"), 5.0);
    assert_eq!(moved("chatd_session_messages_delivered_total"), 10.0);
    assert_eq!(moved("chatd_session_messages_replayed_total"), 2.0);
    assert_eq!(moved("chatd_auth_logins_total{outcome=\"ok\"}"), 3.0);
    assert_eq!(
        moved("chatd_auth_logins_total{outcome=\"bad_credentials\"}"),
        0.0
    );
    assert_eq!(
        moved("chatd_auth_logins_total{outcome=\"rate_limited\"}"),
        1.0
    );
    assert_eq!(
        moved("chatd_rate_limit_rejections_total{kind=\"login_user\"}"),
        1.0
    );
    assert_eq!(moved("chatd_session_resumes_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(moved("chatd_session_gaps_detected_total"), 0.0);
    assert_eq!(moved("chatd_hub_slow_consumers_total"), 0.0);

    // Histograms: every send sits in exactly one commit batch, every live delivery has a
    // fan-out time, and every outbox item taken (presence events too) a depth.
    let commits = moved("chatd_store_commit_seconds_count");
    assert!(commits >= 1.0, "{commits} commits");
    assert_eq!(moved("chatd_store_commit_batch_messages_count"), commits);
    assert_eq!(moved("chatd_store_commit_batch_messages_sum"), 5.0);
    assert!(moved("chatd_store_commit_seconds_sum") > 0.0);
    assert_eq!(moved("chatd_hub_fanout_seconds_count"), 10.0);
    assert!(moved("chatd_hub_outbox_depth_events_count") >= 10.0);
    assert!(
        after.contains_key("chatd_hub_fanout_seconds_bucket{le=\"0.001\"}"),
        "fan-out is a bucketed histogram"
    );

    assert_eq!(
        value(&after, "chatd_session_logged_in{transport=\"websocket\"}"),
        3.0
    );
    assert_eq!(value(&after, "chatd_broker_up"), 1.0);
    let build_info = format!(
        "chatd_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&after, &build_info), 1.0);
    let text = get(metrics_addr, "/metrics").await.body;
    assert!(
        text.contains("# TYPE chatd_store_messages_committed_total counter"),
        "{text}"
    );
    assert!(text.contains("# HELP chatd_hub_fanout_seconds "), "{text}");

    status_reports_connections_and_health(&daemon, metrics_addr).await;

    alice.close().await;
    bob.close().await;
    carol.close().await;
}

/// `chatctl status` (JSON and text) shows the three connections and the same health as
/// `/readyz`.
async fn status_reports_connections_and_health(daemon: &TestDaemon, metrics_addr: SocketAddr) {
    let (code, out, err) = daemon.chatctl(&["--json", "status"], "").await;
    assert_eq!(code, 0, "{out} {err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        status["connections"],
        serde_json::json!([
            {"transport": "websocket", "connections": 3},
            {"transport": "quic", "connections": 0}
        ])
    );
    assert_eq!(status["sessions"], 3);
    assert_eq!(status["store_health"], "ok");
    assert_eq!(status["broker"], "ok");
    assert_eq!(status["draining"], false);
    assert_eq!(status["pending_restart"], serde_json::json!([]));
    let metrics_listener = format!("http://{metrics_addr}");
    assert!(
        status["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|listener| listener == &metrics_listener),
        "{status}"
    );
    let (code, human, err) = daemon.chatctl(&["status"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        human.contains("connections  3 websocket, 0 quic\n"),
        "{human}"
    );
    assert!(human.contains("store        sqlite (ok)\n"), "{human}");
    assert!(human.contains("draining     no\n"), "{human}");
}

#[test]
fn readyz_answers_503_draining_until_the_drain_ends_and_other_paths_404() {
    in_own_process(
        "metrics::readyz_answers_503_draining_until_the_drain_ends_and_other_paths_404",
        readyz_answers_503_draining_until_the_drain_ends_and_other_paths_404_body,
    );
}

async fn readyz_answers_503_draining_until_the_drain_ends_and_other_paths_404_body() {
    let mut daemon = TestDaemon::start_with(|config| {
        config.listen.metrics = Some("127.0.0.1:0".parse().unwrap());
        // A lone send waits this long for company before it commits, which holds the drain
        // open (it acks every send in flight before closing) long enough to watch.
        config.store.max_batch_delay_ms = 3_000;
    })
    .await;
    let metrics_addr = daemon.metrics_addr().expect("metrics listener bound");

    let healthz = get(metrics_addr, "/healthz").await;
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));
    let readyz = get(metrics_addr, "/readyz").await;
    assert_eq!(
        (readyz.status, readyz.body.as_str()),
        (200, "ready\nbroker ok\n")
    );
    assert_eq!(get(metrics_addr, "/").await.status, 404);
    assert_eq!(get(metrics_addr, "/metrics/extra").await.status, 404);
    assert_eq!(request(metrics_addr, "POST", "/readyz").await.status, 405);

    daemon.add_user("alice", "pw").await;
    daemon.create_room("lobby", false).await;
    let alice = login(daemon.url(), "alice", "pw").await;
    alice.join(&room("lobby"), None).await.unwrap();
    let sending = tokio::spawn(async move {
        let acked = alice
            .send(&room("lobby"), &cmid("during-drain"), "in flight")
            .await;
        (alice, acked)
    });
    until("the send to reach the writer", TIMEOUT, || async {
        let now = scrape(metrics_addr).await;
        (value(&now, "chatd_session_messages_received_total") == 1.0).then_some(())
    })
    .await;

    let stopping = daemon.stop();
    let watching = async {
        let draining = until("/readyz to report draining", TIMEOUT, || async {
            let readyz = get(metrics_addr, "/readyz").await;
            (readyz.status == 503).then_some(readyz.body)
        })
        .await;
        assert_eq!(draining, "not ready\ndraining\nbroker ok\n");
        // Alive all the same: liveness must not get a draining node killed.
        assert_eq!(get(metrics_addr, "/healthz").await.status, 200);
        // The send is still waiting for its commit, so the drain is not over.
        assert_eq!(get(metrics_addr, "/readyz").await.status, 503);
    };
    within("the drain", TIMEOUT, async {
        tokio::join!(stopping, watching)
    })
    .await;

    let (alice, acked) = sending.await.unwrap();
    let ack = acked.expect("a send in flight when the drain began is acknowledged");
    assert_eq!(ack.seq, Seq(1));
    drop(alice);
    // The listener stops with the daemon, at the very end of the drain.
    assert!(TcpStream::connect(metrics_addr).await.is_err());
}

/// Runs `body` in a fresh process of this test binary, where no other test's daemon records
/// into the process-wide metrics; `name` is the calling test's full name. In that child
/// process, runs `body` itself.
fn in_own_process<F, Fut>(name: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var_os(CHILD_VAR).is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body());
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed in its own process:\n{stdout}\n{stderr}"
    );
}

/// Logs `name` in with a wrong password; returns the refusal.
async fn wrong_password(url: &str, name: &str) -> ClientError {
    let mut client = Client::connect(url, ClientOptions::default())
        .await
        .unwrap();
    let error = client
        .login(&user(name), "not the password")
        .await
        .expect_err("a wrong password is refused");
    client.close().await;
    error
}

/// One HTTP answer.
struct Answer {
    status: u16,
    body: String,
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path).await
}

/// Sends one HTTP/1.1 request over a fresh TCP connection and reads the answer to the end
/// (the listener closes every connection after one answer).
async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    within("an HTTP answer", TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        Answer {
            status,
            body: body.to_owned(),
        }
    })
    .await
}

/// `GET /metrics`, as series (`name{labels}`, as the exposition writes it) → value.
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let answer = get(addr, "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
        .body
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// A series' value; one never recorded counts as 0, like a counter before its first event.
fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}
