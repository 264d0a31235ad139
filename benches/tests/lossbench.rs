//! The lossy-network benchmark as CI runs it: the `lossbench` binary with tiny settings (one
//! loss, 2 s, one sender, one receiver, one reconnect each way). It asserts that the run
//! finishes and reports both transports and both measurements, never how fast they were.
//!
//! Needs root and nftables (the benchmark makes a network namespace), and the `chatd`
//! binary of the same profile: `cargo test --workspace` builds it.

use std::process::Command;
use std::time::{Duration, Instant};

/// The run's own bound, generous for a debug build on a busy machine.
const RUN_LIMIT: Duration = Duration::from_secs(40);

#[test]
fn a_tiny_run_reports_both_transports_in_both_tables() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_lossbench"))
        .args([
            "--loss",
            "5",
            "--reconnect-loss",
            "5",
            "--duration-secs",
            "2",
            "--senders",
            "1",
            "--receivers",
            "1",
            "--reconnect-repeats",
            "1",
        ])
        .output()
        .expect("lossbench runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "lossbench failed ({}):\n{stderr}",
        output.status
    );

    let rows = |prefix: &str| -> Vec<&str> {
        stdout
            .lines()
            .filter(|line| line.starts_with(prefix))
            .collect()
    };
    let websocket = rows("| WebSocket | 5 |");
    let quic = rows("| QUIC | 5 |");
    assert_eq!(
        (websocket.len(), quic.len()),
        (2, 2),
        "one delivery row and one reconnect row per transport:\n{stdout}"
    );
    // A delivery row has seven cells, the last saying whether every message arrived once;
    // at 5 % loss over a couple of seconds both transports must deliver everything.
    for row in [websocket[0], quic[0]] {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 7, "{row}");
        assert_eq!(cells[6], "yes", "{row}\n{stderr}");
    }
    assert!(
        stdout.contains("| transport | loss % | msgs/s | p50 ms | p99 ms | max ms | complete? |"),
        "{stdout}"
    );
    assert!(stdout.contains("| resume median ms |"), "{stdout}");
    assert!(
        started.elapsed() < RUN_LIMIT,
        "the tiny run took {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_lossbench"))
        .args(["--loss", "101"])
        .output()
        .expect("lossbench runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("101"));
}
