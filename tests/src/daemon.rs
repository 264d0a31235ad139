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
        adjust(&mut config);
        // The same checks as a configuration file gets, so no test runs a setup an operator
        // could not.
        config.validate().expect("test configuration is valid");
        let mut daemon = Self {
            dir,
            config,
            running: None,
            url: String::new(),
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
        self.running = Some((daemon, token));
    }

    /// The WebSocket URL.
    pub fn url(&self) -> &str {
        &self.url
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
        let mut child = tokio::process::Command::new(binary("chatctl"))
            .arg("--socket")
            .arg(self.admin_socket())
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

    /// `chatctl user add NAME --password-stdin`, asserting success.
    pub async fn add_user(&self, name: &str, password: &str) {
        let (code, out, err) = self
            .chatctl(
                &["user", "add", name, "--password-stdin"],
                &format!("{password}\n"),
            )
            .await;
        assert_eq!(code, 0, "chatctl user add {name} failed: {out} {err}");
    }

    /// `chatctl room create NAME [--private]`, asserting success.
    pub async fn create_room(&self, name: &str, private: bool) {
        let mut args = vec!["room", "create", name];
        if private {
            args.push("--private");
        }
        let (code, out, err) = self.chatctl(&args, "").await;
        assert_eq!(code, 0, "chatctl room create {name} failed: {out} {err}");
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some((_, token)) = &self.running {
            token.cancel();
        }
    }
}
