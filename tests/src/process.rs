//! [`ProcessDaemon`]: the real `chatd` binary as a child process, on this host or inside a
//! [`LossyNetwork`]'s namespace, with a private data directory, a log file, and the real
//! `chatctl` pointed at its admin socket.
//!
//! Unlike [`TestDaemon`](crate::TestDaemon), which runs chatd inside the test process, this
//! one can be placed in another network namespace, killed with SIGKILL, and stopped with a
//! real SIGTERM. The admin socket is a file, so `chatctl` reaches it from this namespace
//! while the daemon listens in another.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::binaries::binary;
use crate::daemon::{add_user, create_room, run_chatctl};
use crate::netns::LossyNetwork;

/// What to start: the listeners and any further configuration.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// Serve QUIC on a free UDP port too; when false, `listen.quic` is empty (QUIC off).
    pub quic: bool,
    /// More `[listen]` keys, one per line. `websocket`, `quic`, `allow_plaintext` and
    /// `admin_socket` are written already.
    pub listen_toml: String,
    /// More configuration, placed before `[listen]`: top-level keys first, then any tables
    /// other than `[listen]`.
    pub extra_toml: String,
}

/// A running `chatd` process and its data directory (deleted on drop, after the process is
/// killed).
#[derive(Debug)]
pub struct ProcessDaemon {
    child: Child,
    websocket: SocketAddr,
    quic: Option<SocketAddr>,
    quic_sha256: Option<String>,
    dir: tempfile::TempDir,
}

impl ProcessDaemon {
    /// Starts `chatd --config FILE` inside `network`'s namespace (on its namespace address),
    /// or on 127.0.0.1 when `network` is `None`, and waits until the admin socket and the
    /// WebSocket port accept connections (and, with QUIC, until chatd has logged its QUIC
    /// certificate).
    ///
    /// # Panics
    /// When chatd exits before it is ready or is not ready within 30 s; the message includes
    /// its log.
    pub async fn start(network: Option<&LossyNetwork>, options: &ProcessOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // A new namespace has no other listeners, so fixed ports are free there.
        let (websocket, quic) = match network {
            Some(network) => {
                let ip = IpAddr::V4(network.namespace_addr());
                (SocketAddr::new(ip, 7878), SocketAddr::new(ip, 7879))
            }
            None => (free_tcp_port(), free_udp_port()),
        };
        let quic = options.quic.then_some(quic);
        let config = dir.path().join("chatd.toml");
        std::fs::write(&config, config_toml(dir.path(), websocket, quic, options))
            .expect("write chatd.toml");
        let log = File::create(dir.path().join(LOG_FILE)).expect("create the log file");
        let mut command = match network {
            Some(network) => network.command(binary("chatd")),
            None => Command::new(binary("chatd")),
        };
        let child = command
            .arg("--config")
            .arg(&config)
            // The file alone configures it, and it tells no service manager about itself.
            .env_remove("CHATD_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("chatd starts");
        let mut daemon = Self {
            child,
            websocket,
            quic,
            quic_sha256: None,
            dir,
        };
        daemon.wait_ready().await;
        daemon
    }

    /// Polls until chatd answers on every listener, failing fast if it exits.
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll chatd") {
                panic!(
                    "chatd exited ({status}) before it was ready; its log:\n{}",
                    self.log()
                );
            }
            if self.quic.is_some() && self.quic_sha256.is_none() {
                self.quic_sha256 = quic_sha256_in(&self.log());
            }
            if self.quic_sha256.is_some() == self.quic.is_some() && self.answers().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chatd was not ready after {READY_TIMEOUT:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the admin socket and the WebSocket port both accept a connection now.
    async fn answers(&self) -> bool {
        let admin = tokio::net::UnixStream::connect(self.admin_socket())
            .await
            .is_ok();
        // Bounded, because over a lossy link a lost SYN is retried only after a second.
        let websocket = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(self.websocket),
        )
        .await
        .is_ok_and(|connected| connected.is_ok());
        admin && websocket
    }

    /// The WebSocket URL, `ws://IP:PORT`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.websocket)
    }

    /// The WebSocket listener's address.
    pub fn websocket_addr(&self) -> SocketAddr {
        self.websocket
    }

    /// The QUIC listener's address, when QUIC is on.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic
    }

    /// The QUIC URL, `quic://IP:PORT`, when QUIC is on.
    pub fn quic_url(&self) -> Option<String> {
        self.quic.map(|address| format!("quic://{address}"))
    }

    /// SHA-256 of the certificate QUIC serves (lowercase hex, as chatd logs it), for a
    /// client to pin; `None` when QUIC is off.
    pub fn quic_sha256(&self) -> Option<&str> {
        self.quic_sha256.as_deref()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin socket path.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join(ADMIN_SOCKET)
    }

    /// Everything chatd wrote to standard output and standard error so far, for a failing
    /// test to print.
    pub fn log(&self) -> String {
        std::fs::read(self.dir.path().join(LOG_FILE))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|error| format!("(cannot read the log: {error})"))
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

    /// Kills chatd with SIGKILL (a crash: no drain) and reaps it.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("SIGKILL chatd");
    }

    /// Sends SIGTERM and waits for chatd to drain and exit; returns its exit status.
    ///
    /// # Panics
    /// When chatd has already been reaped, or does not exit within 30 s (the message
    /// includes its log).
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().expect("chatd is still running");
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for chatd"),
            Err(_) => panic!(
                "chatd did not exit within {EXIT_TIMEOUT:?} of SIGTERM; its log:\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for ProcessDaemon {
    fn drop(&mut self) {
        // Fails only when it has exited already.
        let _ = self.child.start_kill();
    }
}

/// The configuration file: the data directory, the caller's extra TOML, then `[listen]`.
fn config_toml(
    data_dir: &Path,
    websocket: SocketAddr,
    quic: Option<SocketAddr>,
    options: &ProcessOptions,
) -> String {
    let quic = quic.map(|address| address.to_string()).unwrap_or_default();
    let mut toml = format!("data_dir = {}\n", toml_string(&data_dir.to_string_lossy()));
    toml.push_str(&options.extra_toml);
    let _ = write!(
        toml,
        "\n[listen]\n\
         websocket = \"{websocket}\"\n\
         quic = \"{quic}\"\n\
         allow_plaintext = true\n\
         admin_socket = \"{ADMIN_SOCKET}\"\n\
         {}\n",
        options.listen_toml
    );
    toml
}

/// A TOML basic string: a JSON string is one, escapes included.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// The fingerprint from chatd's `chatd listening on quic://... (certificate sha256 HEX)`.
fn quic_sha256_in(log: &str) -> Option<String> {
    log.lines()
        .filter(|line| line.starts_with("chatd listening on quic://"))
        .find_map(|line| line.split("(certificate sha256 ").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_owned())
}

/// A TCP port of 127.0.0.1 that was free a moment ago (bound and released).
fn free_tcp_port() -> SocketAddr {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free TCP port")
}

/// A UDP port of 127.0.0.1 that was free a moment ago (bound and released).
fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|socket| socket.local_addr())
        .expect("a free UDP port")
}

const ADMIN_SOCKET: &str = "chatd.sock";
const LOG_FILE: &str = "chatd.log";
/// Generous: the machine running the tests is shared, and the deadline only bounds a hang.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
