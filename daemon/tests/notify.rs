//! The `chatd` binary speaks systemd's notification protocol: the test plays systemd's side
//! of `$NOTIFY_SOCKET` (a datagram socket it binds) and checks that READY=1 comes once chatd
//! serves, that the watchdog is pinged, that SIGHUP is bracketed by RELOADING=1 and READY=1,
//! and that SIGTERM announces STOPPING=1 and ends in exit status 0.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use protocol::admin::{AdminReply, AdminRequest};
use protocol::client::admin::AdminClient;

/// Generous bound for anything that should take milliseconds: a loaded CI machine may be slow,
/// but a hang must still fail the test rather than block it.
const PATIENCE: Duration = Duration::from_secs(20);

/// What systemd would hear, with a record of everything heard so far.
struct Systemd {
    socket: UnixDatagram,
    heard: Vec<String>,
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
impl Systemd {
    fn bind(path: &std::path::Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        // Each receive returns at least this often, so every wait can check its deadline.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Self {
            socket,
            heard: Vec::new(),
        }
    }

    /// The next message, or `None` if none arrived within the read timeout.
    fn receive(&mut self) -> Option<String> {
        let mut buffer = [0; 4096];
        match self.socket.recv(&mut buffer) {
            Ok(read) => {
                let message = String::from_utf8(buffer[..read].to_vec()).unwrap();
                self.heard.push(message.clone());
                Some(message)
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(error) => panic!("receiving from chatd: {error}"),
        }
    }

    /// Waits for a message with a line equal to `line`, skipping others (watchdog pings
    /// arrive at any time), and returns it.
    fn expect_line(&mut self, line: &str, child: &mut Child) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(message) = self.receive()
                && message.lines().any(|l| l == line)
            {
                return message;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "chatd exited ({status}) before sending {line}; heard {:?}",
                    self.heard
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {line} within {PATIENCE:?}; heard {:?}",
                self.heard
            );
        }
    }
}

/// Kills the child if the test fails half-way, so no daemon outlives it.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} failed");
}

#[test]
fn chatd_tells_systemd_ready_reloading_stopping_and_pings_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut systemd = Systemd::bind(&dir.path().join("notify"));

    let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
    // The test must not see an operator's environment (or a systemd's it runs under).
    for (key, _) in std::env::vars() {
        if key.starts_with("CHATD_") || key == "STATE_DIRECTORY" || key.starts_with("WATCHDOG_") {
            command.env_remove(key);
        }
    }
    let child = command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("NOTIFY_SOCKET", dir.path().join("notify"))
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut chatd = Reaper(child);

    let ready = systemd.expect_line("READY=1", &mut chatd.0);
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=serving on ws://")),
        "{ready}"
    );
    // READY=1 is sent after the address is printed, so the line is already in the pipe.
    let mut stdout = BufReader::new(chatd.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let address: SocketAddr = line
        .strip_prefix("chatd listening on ws://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .parse()
        .unwrap();
    TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .expect("the WebSocket listener accepts once READY=1 is sent");
    assert!(
        data_dir.join("chatd.db").exists(),
        "the store exists once READY=1 is sent"
    );

    // WATCHDOG_USEC=200000: a ping every 100 ms. Pings queued while the test looked at the
    // listener would arrive together, so the queue is emptied first and the pace measured
    // on pings received as they are sent.
    while systemd.receive().is_some() {}
    systemd.expect_line("WATCHDOG=1", &mut chatd.0);
    let first = Instant::now();
    for _ in 0..2 {
        systemd.expect_line("WATCHDOG=1", &mut chatd.0);
    }
    assert!(
        first.elapsed() >= Duration::from_millis(150),
        "two more pings came within {:?}: not at half the watchdog interval",
        first.elapsed()
    );

    signal(&chatd.0, "HUP");
    let reloading = systemd.expect_line("RELOADING=1", &mut chatd.0);
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0, "{reloading}");
    let reloaded = systemd.expect_line("READY=1", &mut chatd.0);
    assert!(
        reloaded.contains("configuration reloaded"),
        "the status says how the reload went: {reloaded}"
    );

    signal(&chatd.0, "TERM");
    let stopping = systemd.expect_line("STOPPING=1", &mut chatd.0);
    assert!(stopping.contains("STATUS=draining"), "{stopping}");
    let status = wait_for_exit(&mut systemd, &mut chatd.0);
    assert!(status.success(), "{status}");
}

/// Waits for the child to exit; the socket's read timeout paces the polling.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn wait_for_exit(systemd: &mut Systemd, child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "chatd did not exit within {PATIENCE:?} of SIGTERM; heard {:?}",
            systemd.heard
        );
        systemd.receive();
    }
}

/// SIGHUP with keys changed that only a restart applies: the status line and the admin
/// status name them, and the reloadable log level is applied without being listed.
#[test]
fn keys_waiting_for_a_restart_are_reported_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("chatd.toml");
    let write_config = |sends_per_sec: u32, log_level: &str| {
        std::fs::write(
            &config,
            format!(
                "log_level = \"{log_level}\"\n[listen]\nwebsocket = \"127.0.0.1:0\"\n\
                 quic = \"127.0.0.1:0\"\n\
                 [limits]\nsends_per_sec = {sends_per_sec}\n"
            ),
        )
        .unwrap();
    };
    write_config(20, "info");
    let mut systemd = Systemd::bind(&dir.path().join("notify"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CHATD_") || key == "STATE_DIRECTORY" || key.starts_with("WATCHDOG_") {
            command.env_remove(key);
        }
    }
    let child = command
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("NOTIFY_SOCKET", dir.path().join("notify"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut chatd = Reaper(child);
    systemd.expect_line("READY=1", &mut chatd.0);

    write_config(25, "debug");
    signal(&chatd.0, "HUP");
    systemd.expect_line("RELOADING=1", &mut chatd.0);
    let reloaded = systemd.expect_line("READY=1", &mut chatd.0);
    assert!(
        reloaded.contains("waiting for a restart: limits.sends_per_sec"),
        "{reloaded}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let mut admin = AdminClient::connect(&data_dir.join("chatd.sock"))
            .await
            .unwrap();
        admin.request(&AdminRequest::Status).await.unwrap()
    });
    let AdminReply::Status(status) = status else {
        panic!("unexpected reply {status:?}");
    };
    assert_eq!(status.pending_restart, ["limits.sends_per_sec"]);

    signal(&chatd.0, "TERM");
    let exit = wait_for_exit(&mut systemd, &mut chatd.0);
    assert!(exit.success(), "{exit}");
}
