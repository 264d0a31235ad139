//! The `chatd` binary: `config check`, configuration errors, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chatd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
    // The tests must not see an operator's environment.
    for (key, _) in std::env::vars() {
        if key.starts_with("CHATD_") || key == "STATE_DIRECTORY" {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chatd.toml");
    std::fs::write(
        &file,
        "[store]\nurl = \"sqlite:///var/lib/chatd/secret.db\"\n",
    )
    .unwrap();
    let output = chatd()
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .env("CHATD_LIMITS__MAX_BODY_BYTES", "1000")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("max_body_bytes = 1000"), "{stdout}");
    assert!(stdout.contains("[redacted]"), "{stdout}");
    assert!(
        !stdout.contains("secret.db"),
        "the store URL leaked: {stdout}"
    );
}

#[test]
fn a_bad_key_is_named_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chatd.toml");
    std::fs::write(&file, "[limits]\nmax_body_byte = 10\n").unwrap();
    let output = chatd()
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("limits.max_body_byte"), "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "a synchronous test polling a child process"
)]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = chatd()
        .current_dir(dir.path())
        .args(["--listen", "127.0.0.1:0", "--quic", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("chatd listening on ws://127.0.0.1:"),
        "{line}"
    );
    assert!(
        dir.path().join("chatd.db").exists(),
        "embedded default stores in the working directory"
    );
    assert!(
        dir.path().join("chatd.sock").exists(),
        "admin socket in the working directory"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "chatd did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        !dir.path().join("chatd.sock").exists(),
        "the admin socket is removed on exit"
    );
}
