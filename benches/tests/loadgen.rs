//! The load generator as CI runs it: the quick durable scenario against an embedded daemon,
//! through the library and through the `loadgen` binary. These assert that the run is
//! correct and the report complete, never how fast it was.

use std::process::Command;

use chatd_benches::{DurableSettings, Target, durable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_durable_run_delivers_every_message_once_and_in_order() {
    let target = Target::Embedded.start().await.unwrap();
    let settings = DurableSettings::quick();
    let report = durable::run(&target, &settings).await.unwrap();
    target.stop().await;

    assert!(
        report.correctness.correct,
        "{:#?}",
        report.correctness.problems
    );
    let sent = (settings.clients * settings.messages) as u64;
    assert_eq!(report.acked, sent);
    assert_eq!(report.delivered, sent * settings.clients as u64);
    assert_eq!(report.ack_latency.count, sent);
    assert_eq!(
        report.delivery_latency.count,
        sent * settings.clients as u64
    );
    assert!(report.acked_per_sec > 0.0 && report.delivered_per_sec > 0.0);
    let process = report.process.expect("the embedded process is measured");
    assert_eq!(process.measured, "daemon+loadgen");
    assert!(process.peak_rss_mib > 0.0);
}

/// More rooms than clients (each client cycles through several rooms) and fewer (rooms are
/// shared): every message reaches every member of its room once, and nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_over_many_rooms_deliver_each_message_to_its_room_only() {
    let target = Target::Embedded.start().await.unwrap();
    for (clients, rooms) in [(2, 5), (3, 2)] {
        let settings = DurableSettings {
            clients,
            rooms,
            messages: 40,
            concurrency: 3,
            ..DurableSettings::quick()
        };
        let report = durable::run(&target, &settings).await.unwrap();
        assert!(
            report.correctness.correct,
            "{clients} clients, {rooms} rooms: {:#?}",
            report.correctness.problems
        );
        assert_eq!(report.rooms, rooms);
        assert_eq!(report.acked, (clients * 40) as u64);
        // 2 clients over 5 rooms: each room has one member, so each message is delivered
        // once. 3 clients over 2 rooms: room 0 has clients 0 and 2, room 1 has client 1.
        let expected = if clients <= rooms {
            80
        } else {
            2 * 2 * 40 + 40
        };
        assert_eq!(
            report.delivered, expected,
            "{clients} clients, {rooms} rooms"
        );
        let batches = report.batches.expect("the status tells the batches");
        assert!(
            batches.commits >= 1 && batches.sends >= report.acked,
            "{batches:?}"
        );
    }
    target.stop().await;
}

/// At a fixed rate the sends are spread over time instead of sent as fast as acks return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_rate_paces_the_sends() {
    let target = Target::Embedded.start().await.unwrap();
    let settings = DurableSettings {
        clients: 2,
        messages: 50,
        concurrency: 2,
        rate: Some(250.0),
        ..DurableSettings::quick()
    };
    let report = durable::run(&target, &settings).await.unwrap();
    target.stop().await;
    assert!(
        report.correctness.correct,
        "{:#?}",
        report.correctness.problems
    );
    assert_eq!(report.rate, Some(250.0));
    // 100 sends at 250/s: the last is due 0.396 s after the first.
    assert!(report.send_secs >= 0.39, "{}", report.send_secs);
    assert!(report.acked_per_sec <= 260.0, "{}", report.acked_per_sec);
}

#[test]
fn the_binary_prints_one_json_line_and_a_markdown_row() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--quick")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["scenario"], "durable");
    assert_eq!(report["mode"], "embedded");
    assert_eq!(report["correctness"]["correct"], true);
    assert!(stderr.starts_with("| embedded"), "{stderr}");
}

#[test]
fn url_without_an_admin_socket_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", "ws://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--admin-socket"));
}
