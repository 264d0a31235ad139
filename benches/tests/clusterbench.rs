//! `clusterbench` runs end to end on a tiny load: two real nodes, one PostgreSQL, one Redis,
//! and a report with both receivers.

use std::process::Command;

#[test]
fn clusterbench_reports_same_node_and_cross_node_delivery() {
    let output = Command::new(env!("CARGO_BIN_EXE_clusterbench"))
        .args([
            "--rate",
            "50",
            "--secs",
            "1",
            "--senders",
            "1",
            "--burst",
            "100",
        ])
        .output()
        .expect("clusterbench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let row = |name: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .to_owned()
    };
    for name in ["same node", "other node (Redis)"] {
        let line = row(name);
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(
            cells[2], "50",
            "every paced message reached the {name} receiver"
        );
    }
}
