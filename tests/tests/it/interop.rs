//! Browser interop: a user registered with the Rust `chatctl` logs in from Node.js through
//! the browser OPAQUE package `@serenity-kit/opaque` (its default key stretching), over the
//! real WebSocket, and chats with a Rust client. The Node side is `tests/interop/login.mjs`;
//! it needs `node` on PATH and `cd tests/interop && npm ci`, and the tests fail (not skip)
//! without them so a missing install cannot pass unnoticed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{login, messages, room, user};
use chatd_tests::TestDaemon;
use chatd_tests::wait::within;

/// The script waits at most 20 s per server reply; this bounds the whole run.
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

/// A password outside ASCII and with spaces, so both sides must encode it as the same UTF-8.
const PASSWORD: &str = "correct horse bättery 🐎 staple";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// The first executable `node` on PATH, as `which node` finds it.
fn node_binary() -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "`node` (Node.js 20 or newer) is not on PATH; the browser interop tests need it. \
                 Install Node.js and npm (e.g. `apt-get install nodejs npm`), then run \
                 `cd tests/interop && npm ci`"
            )
        })
}

/// Checks that `npm ci` has installed the packages the script imports.
fn assert_packages_installed(dir: &Path) {
    for package in ["@serenity-kit/opaque", "ws"] {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        assert!(
            manifest.is_file(),
            "{} is missing: the browser interop tests need their npm packages; \
             run `cd tests/interop && npm ci`",
            manifest.display()
        );
    }
}

/// What `login.mjs` reported.
struct NodeRun {
    exit_code: i32,
    report: Value,
    stderr: String,
}

/// Runs `node login.mjs URL USER PASSWORD [ROOM BODY]` and parses its one line of JSON.
async fn node_login(
    url: &str,
    name: &str,
    password: &str,
    room_and_body: Option<(&str, &str)>,
) -> NodeRun {
    let node = node_binary();
    let dir = interop_dir();
    assert_packages_installed(&dir);
    let mut command = tokio::process::Command::new(&node);
    command
        .current_dir(&dir)
        .arg("login.mjs")
        .args([url, name, password]);
    if let Some((room_name, body)) = room_and_body {
        command.args([room_name, body]);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", node.display()));
    let output = within("node login.mjs", NODE_TIMEOUT, child.wait_with_output())
        .await
        .expect("node finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("login.mjs printed no JSON line ({e}): stdout {stdout:?}, stderr {stderr:?}")
    });
    NodeRun {
        exit_code: output.status.code().unwrap_or(-1),
        report,
        stderr,
    }
}

#[tokio::test]
async fn a_browser_client_logs_in_and_its_message_reaches_a_rust_client() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", PASSWORD).await;
    daemon.add_user("bob", "bob-pw").await;
    daemon.create_room("lobby", false).await;
    let lobby = room("lobby");
    let bob = login(daemon.url(), "bob", "bob-pw").await;
    bob.join(&lobby, None).await.unwrap();

    let body = "hi bob, from the browser package";
    let run = node_login(daemon.url(), "alice", PASSWORD, Some(("lobby", body))).await;
    assert_eq!(
        run.exit_code, 0,
        "login.mjs failed: {} (stderr: {})",
        run.report, run.stderr
    );
    let report = &run.report;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["user"], "alice");
    assert_eq!(report["welcome"]["type"], "welcome");
    assert!(
        report["welcome"]["resume_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{report}"
    );
    assert_eq!(report["joined"]["room"], "lobby");
    assert_eq!(report["acked"]["type"], "acked");
    assert_eq!(report["acked"]["room"], "lobby");
    assert_eq!(report["acked"]["seq"], 1);
    let cmid = report["acked"]["cmid"]
        .as_str()
        .expect("acked carries the cmid");

    let got = messages(&bob, &lobby, 1).await;
    assert_eq!(got[0].from, user("alice"));
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].seq.0, 1);
    assert_eq!(
        got[0].cmid.as_ref().map(protocol::ClientMsgId::as_str),
        Some(cmid)
    );
}

#[tokio::test]
async fn a_browser_client_with_a_wrong_password_or_unknown_user_is_refused() {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", PASSWORD).await;

    for (name, password) in [
        ("alice", "correct horse battery staple"),
        ("mallory", PASSWORD),
    ] {
        let run = node_login(daemon.url(), name, password, None).await;
        let report = &run.report;
        assert_eq!(
            run.exit_code, 1,
            "{name}: expected a refused login: {report} (stderr: {})",
            run.stderr
        );
        assert_eq!(report["ok"], false, "{report}");
        assert_eq!(report["error"]["type"], "error", "{report}");
        assert_eq!(report["error"]["code"], "login_failed", "{report}");
    }

    // The refusals do not lock the account: the right password still works from Node.
    let run = node_login(daemon.url(), "alice", PASSWORD, None).await;
    assert_eq!(run.exit_code, 0, "{} (stderr: {})", run.report, run.stderr);
}
