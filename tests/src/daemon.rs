//! [`TestDaemon`]: a real chatd on a free port with a private data directory, plus the real
//! `chatctl` pointed at its admin socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use chatd_config::Config;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::binaries::binary;

/// A running daemon and its data directory.
pub struct TestDaemon {
    dir: tempfile::TempDir,
    config: Config,
    running: Option<(chatd::Daemon, CancellationToken)>,
    url: String,
    quic_sha256: Option<String>,
}

impl TestDaemon {
    /// Starts a daemon with the test configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a daemon after `adjust` has changed the test configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.listen.websocket = "127.0.0.1:0".parse().expect("address");
        config.listen.quic = Some("127.0.0.1:0".parse().expect("address"));
        adjust(&mut config);
        // The same checks as a configuration file gets, so no test runs a setup an operator
        // could not.
        config.validate().expect("test configuration is valid");
        let mut daemon = Self {
            dir,
            config,
            running: None,
            url: String::new(),
            quic_sha256: None,
        };
        daemon.boot().await;
        daemon
    }

    async fn boot(&mut self) {
        let token = CancellationToken::new();
        let daemon = chatd::start(&self.config, token.clone())
            .await
            .expect("chatd starts");
        self.url = format!("ws://{}", daemon.websocket_addr);
        // A restart keeps the port, so clients can reconnect to the same URL.
        self.config.listen.websocket = daemon.websocket_addr;
        if daemon.metrics_addr.is_some() {
            self.config.listen.metrics = daemon.metrics_addr;
        }
        if daemon.quic_addr.is_some() {
            self.config.listen.quic = daemon.quic_addr;
        }
        self.quic_sha256 = daemon.quic_certificate.as_ref().map(|c| c.sha256.clone());
        self.running = Some((daemon, token));
    }

    /// The WebSocket URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The QUIC URL, `quic://127.0.0.1:PORT`, when QUIC is on (it is unless the test turned
    /// it off).
    pub fn quic_url(&self) -> Option<String> {
        self.config
            .listen
            .quic
            .map(|address| format!("quic://{address}"))
    }

    /// SHA-256 of the certificate QUIC served at the last start (lowercase hex), for a client
    /// to pin.
    pub fn quic_sha256(&self) -> Option<&str> {
        self.quic_sha256.as_deref()
    }

    /// The bound address of the metrics and health listener, when the test configuration
    /// set `listen.metrics` (to `127.0.0.1:0` for a free port).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.config.listen.metrics
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin socket path.
    pub fn admin_socket(&self) -> PathBuf {
        self.config.admin_socket_path()
    }

    /// Drains and stops the daemon (as on SIGTERM).
    pub async fn stop(&mut self) {
        if let Some((daemon, token)) = self.running.take() {
            token.cancel();
            daemon.wait().await;
        }
    }

    /// Stops and starts the daemon on the same data directory and port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot().await;
    }

    /// Runs `chatctl --socket <admin socket> ARGS`, feeding `stdin`; returns (exit code,
    /// stdout, stderr).
    pub async fn chatctl(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        run_chatctl(&self.admin_socket(), args, stdin).await
    }

    /// `chatctl user add NAME --password-stdin`, asserting success.
    pub async fn add_user(&self, name: &str, password: &str) {
        add_user(&self.admin_socket(), name, password).await;
    }

    /// `chatctl room create NAME [--private]`, asserting success.
    pub async fn create_room(&self, name: &str, private: bool) {
        create_room(&self.admin_socket(), name, private).await;
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some((_, token)) = &self.running {
            token.cancel();
        }
    }
}

/// Runs `chatctl --socket SOCKET ARGS`, feeding `stdin`; returns (exit code, stdout,
/// stderr).
pub(crate) async fn run_chatctl(
    socket: &Path,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(binary("chatctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chatctl runs");
    let mut input = child.stdin.take().expect("stdin piped");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = child.wait_with_output().await.expect("chatctl finishes");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `chatctl --socket SOCKET user add NAME --password-stdin`, asserting success.
pub(crate) async fn add_user(socket: &Path, name: &str, password: &str) {
    let args = ["user", "add", name, "--password-stdin"];
    let (code, out, err) = run_chatctl(socket, &args, &format!("{password}\n")).await;
    assert_eq!(code, 0, "chatctl user add {name} failed: {out} {err}");
}

/// `chatctl --socket SOCKET room create NAME [--private]`, asserting success.
pub(crate) async fn create_room(socket: &Path, name: &str, private: bool) {
    let mut args = vec!["room", "create", name];
    if private {
        args.push("--private");
    }
    let (code, out, err) = run_chatctl(socket, &args, "").await;
    assert_eq!(code, 0, "chatctl room create {name} failed: {out} {err}");
}
