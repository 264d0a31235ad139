//! TLS against the real `chatd` binary: it serves `wss://` and QUIC with the certificate in
//! its `[tls]` files, and on SIGHUP presents a replaced certificate to new connections of both
//! transports while the connections already open go on with theirs. A certificate file that fails to load on
//! SIGHUP leaves the one in use, and a daemon whose files cannot be loaded does not start.
//!
//! The test plays systemd's side of `$NOTIFY_SOCKET` to learn when a reload has finished
//! (chatd sends READY=1 with the outcome in STATUS), so nothing waits on a fixed sleep.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::UserId;
use protocol::admin::{AdminReply, RegisterMode};
use protocol::client::admin::AdminClient;
use protocol::client::{
    CertificateDer, CertificatePin, Client, ClientError, ClientOptions, ServerTrust,
};
use rustls::pki_types::ServerName;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::net::{TcpStream, UnixDatagram};
use tokio::process::ChildStdout;
use tokio_rustls::TlsConnector;

/// Generous bound for anything that should take milliseconds: a loaded CI machine may be slow,
/// but a hang must still fail the test rather than block it.
const PATIENCE: Duration = Duration::from_secs(20);

/// A self-signed certificate for `localhost`, as PEM files hold it and as DER.
struct Certificate {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
impl Certificate {
    fn generate() -> Self {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        Self {
            cert_pem: generated.cert.pem(),
            key_pem: generated.signing_key.serialize_pem(),
            der: generated.cert.der().clone(),
        }
    }

    /// Installs this certificate as the daemon's: both files are replaced, as certbot or an
    /// operator would.
    fn write_to(&self, files: &TlsPaths) {
        std::fs::write(&files.cert, &self.cert_pem).unwrap();
        std::fs::write(&files.key, &self.key_pem).unwrap();
    }

    fn sha256(&self) -> String {
        Sha256::digest(self.der.as_ref())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

struct TlsPaths {
    cert: PathBuf,
    key: PathBuf,
}

/// A `chatd` process with its notification socket and log; killed if the test fails.
struct Chatd {
    child: Child,
    notify: UnixDatagram,
    heard: Vec<String>,
    log: PathBuf,
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
impl Chatd {
    /// Starts chatd on 127.0.0.1:0 with `data_dir` and `config` (a TOML file).
    fn spawn(dir: &Path, data_dir: &Path, config: &Path) -> Self {
        let notify_path = dir.join("notify");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let log = dir.join("chatd.log");
        let mut command = chatd_command();
        let child = command
            .arg("--config")
            .arg(config)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--quic",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            notify,
            heard: Vec::new(),
            log,
        }
    }

    /// Waits for a notification with the line `line` and returns the whole message.
    async fn expect_line(&mut self, line: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut buffer = [0; 4096];
            let received =
                tokio::time::timeout(Duration::from_millis(100), self.notify.recv(&mut buffer))
                    .await;
            if let Ok(read) = received {
                let message = String::from_utf8(buffer[..read.unwrap()].to_vec()).unwrap();
                self.heard.push(message.clone());
                if message.lines().any(|l| l == line) {
                    return message;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "chatd exited ({status}) before sending {line}; heard {:?}; log:\n{}",
                    self.heard,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {line} within {PATIENCE:?}; heard {:?}; log:\n{}",
                self.heard,
                self.log()
            );
        }
    }

    /// Sends SIGHUP and returns the STATUS that comes with the READY=1 closing the reload.
    async fn reload(&mut self) -> String {
        self.signal("HUP");
        self.expect_line("RELOADING=1").await;
        let ready = self.expect_line("READY=1").await;
        ready
            .lines()
            .find_map(|l| l.strip_prefix("STATUS="))
            .unwrap_or_else(|| panic!("READY=1 without STATUS: {ready:?}"))
            .to_owned()
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} failed");
    }

    async fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "chatd did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Chatd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `chatd` binary, without the operator's (or a systemd's) environment.
fn chatd_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CHATD_") || key == "STATE_DIRECTORY" || key.starts_with("WATCHDOG_") {
            command.env_remove(key);
        }
    }
    command
}

/// The first two lines chatd prints: `chatd listening on wss://ADDR (...)` and
/// `chatd listening on quic://ADDR (certificate sha256 HEX)`.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
async fn listening_lines(stdout: std::process::ChildStdout) -> (String, String) {
    let stdout = ChildStdout::from_std(stdout).unwrap();
    let mut reader = BufReader::new(stdout);
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        tokio::time::timeout(PATIENCE, reader.read_line(line))
            .await
            .expect("chatd prints its addresses")
            .unwrap();
    }
    let [websocket, quic] = lines;
    (websocket, quic)
}

/// Options that trust only the certificate with this SHA-256, over QUIC.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn pinning(certificate: &Certificate) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        trust: ServerTrust::Pinned(certificate.sha256().parse::<CertificatePin>().unwrap()),
        ..ClientOptions::default()
    }
}

/// Runs a TLS handshake with a fresh client connection and returns the certificate the
/// server presented. Both test certificates are trusted, so the handshake succeeds with
/// either.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
async fn served_certificate(
    address: SocketAddr,
    trusted: &[&Certificate],
) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in trusted {
        roots.add(certificate.der.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(address).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (_, connection) = tls.get_ref();
    connection.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn trusting(trusted: &[&Certificate]) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        extra_root_certificates: trusted.iter().map(|c| c.der.clone()).collect(),
        ..ClientOptions::default()
    }
}

/// A data directory with `[tls]` files relative to it, and the configuration naming them.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn setup(dir: &Path) -> (PathBuf, PathBuf, TlsPaths) {
    let data_dir = dir.join("data");
    std::fs::create_dir_all(data_dir.join("tls")).unwrap();
    let config = dir.join("chatd.toml");
    std::fs::write(
        &config,
        "[tls]\ncert_file = \"tls/cert.pem\"\nkey_file = \"tls/key.pem\"\n",
    )
    .unwrap();
    let paths = TlsPaths {
        cert: data_dir.join("tls/cert.pem"),
        key: data_dir.join("tls/key.pem"),
    };
    (data_dir, config, paths)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_the_new_certificate_to_new_connections_and_keeps_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, config, paths) = setup(dir.path());
    let a = Certificate::generate();
    let b = Certificate::generate();
    a.write_to(&paths);

    let mut chatd = Chatd::spawn(dir.path(), &data_dir, &config);
    let ready = chatd.expect_line("READY=1").await;
    assert!(
        ready.contains("STATUS=serving on wss://127.0.0.1:"),
        "{ready}"
    );
    let (line, quic_line) = listening_lines(chatd.child.stdout.take().unwrap()).await;
    assert!(
        quic_line.contains(&format!("(certificate sha256 {})", a.sha256())),
        "QUIC serves the [tls] certificate: {quic_line}"
    );
    let quic_address: SocketAddr = quic_line
        .strip_prefix("chatd listening on quic://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected second line: {quic_line}"))
        .parse()
        .unwrap();
    let quic_url = format!("quic://{quic_address}");
    let address: SocketAddr = line
        .strip_prefix("chatd listening on wss://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .parse()
        .unwrap();
    let url = format!("wss://localhost:{}", address.port());

    // A client that trusts neither certificate is turned away by its own TLS check.
    let untrusting = ClientOptions {
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let refused = Client::connect(&url, untrusting).await.unwrap_err();
    assert!(matches!(refused, ClientError::Connect { .. }), "{refused}");

    // A logged-in session over TLS, made before the reload.
    let alice = UserId::parse("alice").unwrap();
    let mut admin = AdminClient::connect(&data_dir.join("chatd.sock"))
        .await
        .unwrap();
    let registered = admin
        .register_user(&alice, "correct horse", RegisterMode::Create)
        .await
        .unwrap();
    assert!(matches!(registered, AdminReply::Done), "{registered:?}");
    let mut old = Client::connect(&url, trusting(&[&a, &b])).await.unwrap();
    old.login(&alice, "correct horse").await.unwrap();
    old.ping().await.unwrap();
    assert_eq!(served_certificate(address, &[&a, &b]).await, a.der);
    let mut old_quic = Client::connect(&quic_url, pinning(&a)).await.unwrap();
    old_quic.login(&alice, "correct horse").await.unwrap();
    old_quic.ping().await.unwrap();

    b.write_to(&paths);
    let status = chatd.reload().await;
    assert!(
        status.contains(&format!("TLS certificate reloaded (sha256 {})", b.sha256())),
        "{status}"
    );
    assert_eq!(
        served_certificate(address, &[&a, &b]).await,
        b.der,
        "a new connection gets the new certificate"
    );
    old.ping()
        .await
        .expect("the connection made before the reload still works");
    let new = Client::connect(&url, trusting(&[&b])).await.unwrap();
    new.ping().await.unwrap();
    // QUIC shares the certificate: a new QUIC connection gets the new one, the old goes on.
    let new_quic = Client::connect(&quic_url, pinning(&b)).await.unwrap();
    new_quic.ping().await.unwrap();
    let stale_pin = Client::connect(&quic_url, pinning(&a)).await.unwrap_err();
    assert!(
        matches!(stale_pin, ClientError::Connect { .. }),
        "{stale_pin}"
    );
    old_quic
        .ping()
        .await
        .expect("the QUIC connection made before the reload still works");

    // A certificate file that does not load leaves the one in use.
    std::fs::write(&paths.cert, "-----BEGIN CERTIFICATE-----\ntruncated\n").unwrap();
    let status = chatd.reload().await;
    assert!(
        status.contains("TLS reload failed, certificate unchanged: the TLS certificate file"),
        "{status}"
    );
    assert!(
        status.contains(&paths.cert.display().to_string()),
        "the status names the file: {status}"
    );
    assert!(
        chatd.log().contains("TLS reload failed"),
        "the failure is logged:\n{}",
        chatd.log()
    );
    assert!(
        chatd.child.try_wait().unwrap().is_none(),
        "chatd keeps running"
    );
    assert_eq!(served_certificate(address, &[&a, &b]).await, b.der);
    old.ping().await.unwrap();
    new.ping().await.unwrap();
    let after = Client::connect(&url, trusting(&[&b])).await.unwrap();
    after.ping().await.unwrap();

    // A plain ws:// client meets a TLS listener: its handshake fails, nothing else does.
    let plain = Client::connect(&format!("ws://127.0.0.1:{}", address.port()), trusting(&[]))
        .await
        .unwrap_err();
    assert!(matches!(plain, ClientError::Connect { .. }), "{plain}");
    after.ping().await.unwrap();

    old.close().await;
    new.close().await;
    after.close().await;
    old_quic.close().await;
    new_quic.close().await;
    let status = chatd.stop().await;
    assert!(
        status.success(),
        "{status}; log:\n{}",
        chatd_log(dir.path())
    );
}

/// A peer that opens a TCP connection and never starts TLS is dropped after
/// `limits.handshake_timeout_secs`, like one that never upgrades to WebSocket.
#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_by_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, config, paths) = setup(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[limits]\nhandshake_timeout_secs = 1\n");
    std::fs::write(&config, text).unwrap();
    let a = Certificate::generate();
    a.write_to(&paths);

    let mut chatd = Chatd::spawn(dir.path(), &data_dir, &config);
    chatd.expect_line("READY=1").await;
    let (line, _quic_line) = listening_lines(chatd.child.stdout.take().unwrap()).await;
    let address: SocketAddr = line
        .strip_prefix("chatd listening on wss://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .parse()
        .unwrap();

    let mut silent = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    let mut buffer = [0; 64];
    let read = tokio::time::timeout(PATIENCE, silent.read(&mut buffer))
        .await
        .expect("chatd closes a connection that never starts TLS");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the connection closed, read {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
    // The listener goes on.
    assert_eq!(served_certificate(address, &[&a]).await, a.der);
    assert!(chatd.stop().await.success());
}

#[test]
fn config_check_loads_the_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, config, paths) = setup(dir.path());
    let a = Certificate::generate();
    let b = Certificate::generate();
    a.write_to(&paths);
    let check = || {
        chatd_command()
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["config", "check"])
            .output()
            .unwrap()
    };
    let output = check();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        printed.contains("cert_file = \"tls/cert.pem\""),
        "{printed}"
    );

    // B's key does not belong to A's certificate.
    std::fs::write(&paths.key, &b.key_pem).unwrap();
    let output = check();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "the TLS key in {} cannot serve the certificate in {}",
            paths.key.display(),
            paths.cert.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_key_file_that_cannot_be_read_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, config, paths) = setup(dir.path());
    let a = Certificate::generate();
    a.write_to(&paths);
    std::fs::remove_file(&paths.key).unwrap();

    let mut chatd = Chatd::spawn(dir.path(), &data_dir, &config);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = chatd.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "chatd started without its key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success(), "{status}");
    let log = chatd.log();
    assert!(
        log.contains(&format!(
            "cannot read the TLS key file {}",
            paths.key.display()
        )),
        "{log}"
    );
    assert!(
        !data_dir.join("chatd.db").exists(),
        "the store is not touched when the certificate cannot be served"
    );
}

fn chatd_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("chatd.log")).unwrap_or_default()
}
