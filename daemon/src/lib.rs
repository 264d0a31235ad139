//! chatd, the chat daemon, as a library: `main.rs` and the integration tests call [`start`]
//! (or [`run`]) with a loaded [`chatd_config::Config`] and a shutdown token.
//!
//! # Layout
//! - `lifecycle`: spawning tracked tasks.
//! - `node`: the services every session shares.
//! - `transport`: the transport contract and the WebSocket and QUIC adapters.
//! - `session`: the per-connection state machine (`state`, sans-IO) and its async driver.
//! - `hub`: live subscriptions on this node; encodes each event once and fans it out.
//! - `broker`: carries events between nodes (in-process for one node).
//! - `store`: users, rooms, messages (SQLite or PostgreSQL) and the group-commit writer.
//! - `auth`: OPAQUE login and registration, login rate limits, resume tokens.
//! - `admin`: the Unix admin socket chatctl talks to.
//! - `health`: readiness (store, broker, draining) for `/readyz` and status.
//! - `http`: the operator HTTP listener: `/metrics`, `/healthz`, `/readyz`.
//! - `metrics`: every exported metric, declared in one place, and the recording functions.
//! - `retention`: the background task that deletes expired history.
//! - `tls`: the listeners' certificate, loaded from PEM files and reloadable, or QUIC's
//!   self-signed one.
//! - `error`: [`Error`].
//!
//! Start-up order: TLS certificate (when configured) → store (migrated) → auth keys → hub,
//! broker, writer → listeners. Drain order on shutdown: `/readyz` answers 503 → stop
//! accepting → sessions send `going_away` and the acks of sends already queued → the writer
//! commits what is queued → the metrics listener stops → exit. An ack is only ever sent after
//! its commit, so nothing acknowledged is lost.

pub mod admin;
pub mod auth;
pub mod broker;
mod error;
pub mod health;
pub mod http;
pub mod hub;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod retention;
pub mod session;
pub mod store;
pub mod tls;
pub mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chatd_config::Config;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::Error;

use crate::auth::{Auth, AuthSettings};
use crate::broker::{Broker, Event};
use crate::hub::Hub;
use crate::lifecycle::Tasks;
use crate::node::Node;
use crate::session::state::SessionLimits;
use crate::store::writer::{WriterSettings, spawn_writer};
use crate::store::{Store, StoreSettings};
use crate::tls::{CertificateSummary, ReloadableCertificate, ServerTls, TlsError};
use crate::transport::admission::Admission;

/// A started daemon.
#[derive(Debug)]
pub struct Daemon {
    /// The bound WebSocket address (useful when the config asked for port 0).
    pub websocket_addr: SocketAddr,
    /// The admin socket path.
    pub admin_socket: PathBuf,
    /// The bound metrics and health address, when `listen.metrics` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The bound QUIC address (UDP), when `listen.quic` is set.
    pub quic_addr: Option<SocketAddr>,
    /// The certificate QUIC serves at start (the `[tls]` one, or the self-signed one), when
    /// `listen.quic` is set: its SHA-256 is what clients pin.
    pub quic_certificate: Option<CertificateSummary>,
    /// The store backend in use.
    pub store_backend: &'static str,
    /// The WebSocket listener's TLS, when `[tls]` is configured.
    tls: Option<Arc<ServerTls>>,
    /// The node while it runs; weak, so the drain can still drop the last strong reference.
    node: std::sync::Weak<Node>,
    done: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// The WebSocket URL scheme clients use: `wss` with TLS, else `ws`.
    pub fn websocket_scheme(&self) -> &'static str {
        websocket_scheme(self.tls.is_some())
    }

    /// Reads the TLS certificate chain and key from `files` again (SIGHUP) and serves them
    /// to every new connection, WebSocket and QUIC alike (both ask the same certificate
    /// holder); established connections keep the certificate they got.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file that failed to load, or saying that the daemon runs
    /// without TLS (turning TLS on takes a restart). The certificate in use then stays.
    pub fn reload_tls(&self, files: &chatd_config::TlsFiles) -> Result<CertificateSummary, Error> {
        let tls = self.tls.as_ref().ok_or(TlsError::NotEnabled)?;
        Ok(tls.reload(files)?)
    }

    /// Records the configuration keys that changed on disk but take effect only at the next
    /// restart (SIGHUP), for `chatctl status`. No effect once the daemon has stopped.
    pub fn set_pending_restart(&self, keys: Vec<String>) {
        if let Some(node) = self.node.upgrade() {
            node.set_pending_restart(keys);
        }
    }

    /// Waits until the daemon has drained and stopped (after the shutdown token fired).
    pub async fn wait(self) {
        if let Err(error) = self.done.await {
            tracing::error!(%error, "daemon task failed");
        }
    }
}

/// Starts the daemon and returns once it is ready: the store is migrated and every listener
/// is bound. Cancelling `shutdown` drains and stops it; [`Daemon::wait`] waits for that.
///
/// # Errors
/// When the TLS files cannot be loaded, the store cannot be opened or a listener cannot be
/// bound.
pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<Daemon, Error> {
    let tls = load_tls(config)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Bind {
        what: format!("data directory {}", config.data_dir.display()),
        source,
    })?;
    let store = Store::open(&StoreSettings {
        run_migrations: config.store.run_migrations,
        acquire_timeout: Duration::from_millis(config.store.acquire_timeout_ms),
        ..StoreSettings::new(config.store_url(), config.store.max_connections)
    })
    .await?;
    let auth = Auth::new(store.clone(), auth_settings(config)).await?;

    let hub = Arc::new(Hub::new());
    // The writer and the broker outlive the sessions: they commit, ack and publish during
    // the drain.
    let back = Tasks::new(&CancellationToken::new());
    let broker = start_broker(config, &hub, &store, &back)?;
    let publisher = broker.clone();
    let writer = spawn_writer(
        store.clone(),
        writer_settings(config, store.backend()),
        Box::new(move |message| publisher.publish(&Event::Message(message.clone()))),
        &back,
    );

    let (listener, websocket_addr) = bind_tcp("websocket", config.listen.websocket).await?;
    let admin_socket = config.admin_socket_path();
    let admin_listener = admin::bind(&admin_socket)
        .await
        .map_err(|source| Error::Bind {
            what: format!("admin socket {}", admin_socket.display()),
            source,
        })?;
    let metrics = bind_metrics(config.listen.metrics).await?;
    let quic = bind_quic(config, tls.as_deref())?;

    let mut node = Node::new(
        hub,
        broker,
        store.clone(),
        writer,
        auth,
        session_limits(config),
        config.limits.outbox_capacity,
        Duration::from_secs(config.limits.handshake_timeout_secs),
        Admission::new(
            config.limits.max_connections_per_address,
            config.limits.max_pending_handshakes,
        ),
        Duration::from_millis(config.shutdown.reconnect_window_ms),
    );
    node.listeners = listener_names(websocket_addr, tls.is_some(), quic.as_ref(), &admin_socket);
    node.shutdown = shutdown.clone();
    let (node, metrics_addr) = serve_metrics(metrics, node, &back);
    let weak_node = Arc::downgrade(&node);

    let front = Tasks::new(&shutdown);
    front.spawn(
        "websocket-listener",
        transport::websocket::serve(
            listener,
            tls.clone(),
            Arc::clone(&node),
            front.clone(),
            front.token().clone(),
        ),
    );
    let (quic_addr, quic_certificate) = spawn_quic(quic, &node, &front);
    front.spawn(
        "admin-listener",
        admin::serve(
            admin_listener,
            admin_socket.clone(),
            Arc::clone(&node),
            front.clone(),
        ),
    );
    front.spawn(
        "retention",
        retention::run(
            store.clone(),
            retention::RetentionSettings {
                default_days: config.retention.days,
                sweep_interval: Duration::from_secs(config.retention.sweep_interval_secs),
                batch: config.retention.batch,
            },
            front.token().clone(),
        ),
    );
    let drain_timeout = Duration::from_secs(config.shutdown.drain_timeout_secs);
    let store_backend = store.backend();
    let done = tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("draining");
        if tokio::time::timeout(drain_timeout, front.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?drain_timeout,
                "drain timed out; remaining sessions are cut"
            );
        }
        drop(node);
        drop(store);
        back.cancel();
        back.wait().await;
        tracing::info!("stopped");
    });
    Ok(Daemon {
        websocket_addr,
        admin_socket,
        metrics_addr,
        quic_addr,
        quic_certificate,
        store_backend,
        tls,
        node: weak_node,
        done,
    })
}

/// The bound metrics listener and the process's metrics recorder.
struct MetricsListener {
    listener: TcpListener,
    handle: PrometheusHandle,
    address: SocketAddr,
}

/// Shares the finished `node` and, when the metrics listener is configured, lists it among the
/// node's listeners, serves the operator endpoints and keeps the recorder's histograms folded.
/// `tasks` are the back tasks: `/readyz` answers 503 through the drain and stops at its very
/// end. Returns the node and the listener's bound address.
fn serve_metrics(
    metrics: Option<MetricsListener>,
    mut node: Node,
    tasks: &Tasks,
) -> (Arc<Node>, Option<SocketAddr>) {
    let Some(metrics) = metrics else {
        return (Arc::new(node), None);
    };
    node.listeners.push(format!("http://{}", metrics.address));
    let node = Arc::new(node);
    let upkeep = metrics::upkeep(
        metrics.handle.clone(),
        node.broker.clone(),
        tasks.token().clone(),
    );
    tasks.spawn("metrics-upkeep", upkeep);
    let serve = http::serve(
        metrics.listener,
        Arc::clone(&node),
        metrics.handle,
        tasks.clone(),
    );
    tasks.spawn("metrics-listener", serve);
    (node, Some(metrics.address))
}

/// When `address` is set, binds the metrics listener there and installs the process's
/// metrics recorder (once per process; see [`metrics`]).
async fn bind_metrics(address: Option<SocketAddr>) -> Result<Option<MetricsListener>, Error> {
    let Some(address) = address else {
        return Ok(None);
    };
    let handle = metrics::install().map_err(Error::Metrics)?;
    let (listener, address) = bind_tcp("metrics", address).await?;
    Ok(Some(MetricsListener {
        listener,
        handle,
        address,
    }))
}

/// Runs the daemon until `shutdown` fires and the drain completes.
///
/// # Errors
/// When start-up fails.
pub async fn run(config: &Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await;
    Ok(())
}

/// Binds the `name` listener; the address it reports is the one bound (port 0 picks one).
async fn bind_tcp(name: &str, address: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let what = || format!("{name} {address}");
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind {
            what: what(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind {
        what: what(),
        source,
    })?;
    Ok((listener, bound))
}

/// The in-process broker, or the Redis one when `broker.url` is set.
fn start_broker(
    config: &Config,
    hub: &Arc<Hub>,
    store: &Store,
    tasks: &Tasks,
) -> Result<Broker, Error> {
    if !config.broker.url.is_set() {
        return Ok(Broker::local(Arc::clone(hub)));
    }
    let redis = broker::RedisBroker::start(
        config.broker.url.expose(),
        Arc::clone(hub),
        store.clone(),
        tasks,
    )?;
    Ok(Broker::Redis(redis))
}

/// What `chatctl status` lists as the node's listeners.
fn listener_names(
    websocket: SocketAddr,
    is_tls: bool,
    quic: Option<&QuicListener>,
    admin_socket: &std::path::Path,
) -> Vec<String> {
    let mut names = vec![format!("{}://{websocket}", websocket_scheme(is_tls))];
    if let Some(quic) = quic {
        names.push(format!(
            "quic://{} (certificate sha256 {})",
            quic.address, quic.certificate.sha256
        ));
    }
    names.push(format!("unix:{}", admin_socket.display()));
    names
}

/// Serves QUIC as a front task, when it is on; returns its address and certificate.
fn spawn_quic(
    quic: Option<QuicListener>,
    node: &Arc<Node>,
    front: &Tasks,
) -> (Option<SocketAddr>, Option<CertificateSummary>) {
    let Some(quic) = quic else {
        return (None, None);
    };
    let serve = transport::quic::serve(
        quic.endpoint,
        Arc::clone(node),
        front.clone(),
        front.token().clone(),
    );
    front.spawn("quic-listener", serve);
    (Some(quic.address), Some(quic.certificate))
}

/// The bound QUIC endpoint and the certificate it serves.
struct QuicListener {
    endpoint: quinn::Endpoint,
    address: SocketAddr,
    certificate: CertificateSummary,
}

/// Binds the QUIC endpoint when `listen.quic` is set. It serves the `[tls]` certificate
/// (sharing its reloads) or, without `[tls]`, the self-signed one kept in `data_dir`.
fn bind_quic(config: &Config, tls: Option<&ServerTls>) -> Result<Option<QuicListener>, Error> {
    let Some(address) = config.listen.quic else {
        return Ok(None);
    };
    let (certificate, self_signed) = match tls {
        Some(tls) => (Arc::clone(tls.certificate()), false),
        None => {
            let mut names = vec!["localhost".to_owned()];
            if !address.ip().is_unspecified() {
                names.push(address.ip().to_string());
            }
            let files = tls::self_signed::ensure(&config.data_dir, &names)?;
            (ReloadableCertificate::load(&files)?, true)
        }
    };
    let settings = transport::quic::QuicSettings {
        keep_alive: (config.quic.keep_alive_secs > 0)
            .then(|| Duration::from_secs(config.quic.keep_alive_secs)),
        idle_timeout: Duration::from_secs(config.quic.idle_timeout_secs),
    };
    let endpoint =
        transport::quic::bind(address, &certificate, settings).map_err(|error| match error {
            transport::quic::QuicSetupError::Bind(source) => Error::Bind {
                what: format!("quic {address} (UDP)"),
                source,
            },
            other => Error::Quic(other),
        })?;
    let address = endpoint.local_addr().map_err(|source| Error::Bind {
        what: format!("quic {address} (UDP)"),
        source,
    })?;
    let summary = certificate.summary();
    // The fingerprint is what a client pins to trust a self-signed certificate.
    tracing::info!(
        %address,
        sha256 = %summary.sha256,
        self_signed,
        "QUIC listening"
    );
    Ok(Some(QuicListener {
        endpoint,
        address,
        certificate: summary,
    }))
}

/// The WebSocket listener's TLS, when `[tls]` is configured. Loaded first, so that a
/// certificate that cannot be served stops start-up before the store is touched.
fn load_tls(config: &Config) -> Result<Option<Arc<ServerTls>>, TlsError> {
    let Some(files) = config.tls_files() else {
        return Ok(None);
    };
    let tls = ServerTls::load(&files)?;
    let certificate = tls.current();
    tracing::info!(
        cert_file = %files.cert_file.display(),
        sha256 = %certificate.sha256,
        chain = certificate.chain_len,
        "TLS certificate loaded"
    );
    Ok(Some(Arc::new(tls)))
}

fn websocket_scheme(is_tls: bool) -> &'static str {
    if is_tls { "wss" } else { "ws" }
}

fn session_limits(config: &Config) -> SessionLimits {
    let limits = &config.limits;
    SessionLimits {
        max_frame_bytes: limits.max_frame_bytes,
        max_body_bytes: limits.max_body_bytes,
        max_rooms: limits.max_rooms_per_session,
        sends_per_sec: limits.sends_per_sec,
        send_burst: limits.send_burst,
        max_history_page: limits.max_history_page,
        join_history: limits.join_history,
    }
}

fn auth_settings(config: &Config) -> AuthSettings {
    let auth = &config.auth;
    AuthSettings {
        max_failures_per_user: auth.max_failures_per_user,
        max_failures_per_address: auth.max_failures_per_address,
        failure_window: Duration::from_secs(auth.failure_window_secs),
        resume_token_ttl: Duration::from_secs(auth.resume_token_ttl_secs),
    }
}

/// The writer's settings from `[store]`, for the backend in use.
fn writer_settings(config: &Config, backend: &str) -> WriterSettings {
    WriterSettings {
        queue_capacity: config.store.queue_capacity,
        max_batch: config.store.max_batch,
        // Only PostgreSQL's wire needs the cap (see `store.max_batch_bytes`).
        max_batch_bytes: match backend {
            "postgres" => config.store.max_batch_bytes,
            _ => 0,
        },
        max_batch_delay: Duration::from_millis(config.store.max_batch_delay_ms),
    }
}
