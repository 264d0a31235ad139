//! chatd, the chat daemon, as a library: `main.rs` and the integration tests call [`start`]
//! (or [`run`]) with a loaded [`chatd_config::Config`] and a shutdown token.
//!
//! # Layout
//! - `lifecycle`: spawning tracked tasks.
//! - `node`: the services every session shares.
//! - `transport`: the transport contract and the WebSocket adapter.
//! - `session`: the per-connection state machine (`state`, sans-IO) and its async driver.
//! - `hub`: live subscriptions on this node; encodes each event once and fans it out.
//! - `broker`: carries events between nodes (in-process for one node).
//! - `store`: users, rooms, messages (SQLite or PostgreSQL) and the group-commit writer.
//! - `auth`: OPAQUE login and registration, login rate limits, resume tokens.
//! - `admin`: the Unix admin socket chatctl talks to.
//! - `retention`: the background task that deletes expired history.
//! - `error`: [`Error`].
//!
//! Start-up order: store (migrated) → auth keys → hub, broker, writer → listeners. Drain
//! order on shutdown: stop accepting → sessions send `going_away` and the acks of sends
//! already queued → the writer commits what is queued → exit. An ack is only ever sent
//! after its commit, so nothing acknowledged is lost.

pub mod admin;
pub mod auth;
pub mod broker;
mod error;
pub mod hub;
pub mod lifecycle;
pub mod node;
pub mod retention;
pub mod session;
pub mod store;
pub mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chatd_config::Config;
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

/// A started daemon.
#[derive(Debug)]
pub struct Daemon {
    /// The bound WebSocket address (useful when the config asked for port 0).
    pub websocket_addr: SocketAddr,
    /// The admin socket path.
    pub admin_socket: PathBuf,
    /// The store backend in use.
    pub store_backend: &'static str,
    done: tokio::task::JoinHandle<()>,
}

impl Daemon {
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
/// When the store cannot be opened or a listener cannot be bound.
pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<Daemon, Error> {
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
    let broker = Broker::local(Arc::clone(&hub));
    // The writer outlives the sessions: they need it to commit and ack during the drain.
    let back = Tasks::new(&CancellationToken::new());
    let publisher = broker.clone();
    let writer = spawn_writer(
        store.clone(),
        writer_settings(config, store.backend()),
        Box::new(move |message| publisher.publish(&Event::Message(message.clone()))),
        &back,
    );

    let listener = TcpListener::bind(config.listen.websocket)
        .await
        .map_err(|source| Error::Bind {
            what: format!("websocket {}", config.listen.websocket),
            source,
        })?;
    let websocket_addr = listener.local_addr().map_err(|source| Error::Bind {
        what: "websocket".to_owned(),
        source,
    })?;
    let admin_socket = config.admin_socket_path();
    let admin_listener = admin::bind(&admin_socket)
        .await
        .map_err(|source| Error::Bind {
            what: format!("admin socket {}", admin_socket.display()),
            source,
        })?;

    let mut node = Node::new(
        hub,
        broker,
        store.clone(),
        writer,
        auth,
        session_limits(config),
        config.limits.outbox_capacity,
        Duration::from_secs(config.limits.handshake_timeout_secs),
        Duration::from_millis(config.shutdown.reconnect_window_ms),
    );
    node.listeners = vec![
        format!("ws://{websocket_addr}"),
        format!("unix:{}", admin_socket.display()),
    ];
    let node = Arc::new(node);

    let front = Tasks::new(&shutdown);
    front.spawn(
        "websocket-listener",
        transport::websocket::serve(
            listener,
            Arc::clone(&node),
            front.clone(),
            front.token().clone(),
        ),
    );
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
        store_backend,
        done,
    })
}

/// Runs the daemon until `shutdown` fires and the drain completes.
///
/// # Errors
/// When start-up fails.
pub async fn run(config: &Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await;
    Ok(())
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
