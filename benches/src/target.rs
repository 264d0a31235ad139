//! [`Target`]: the daemon a benchmark talks to. Either chatd embedded in this process
//! (started through [`chatd::start`] on a temporary SQLite data directory and 127.0.0.1 port
//! 0, with the per-session rate limits raised so a run measures throughput, not the limiter),
//! or a separately running daemon reached by URL and admin socket.

use std::path::PathBuf;

use anyhow::Context as _;
use chatd_config::Config;
use tokio_util::sync::CancellationToken;

/// Where to find the daemon under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Start chatd inside this process. The load generator then shares the process, so CPU
    /// time and peak RSS cover both.
    Embedded,
    /// A daemon that is already running.
    Remote {
        /// WebSocket URL, `ws://host:port`.
        url: String,
        /// Its admin socket, to create the room and register the users.
        admin_socket: PathBuf,
        /// Its process id, to read its CPU time and memory from `/proc`.
        daemon_pid: Option<u32>,
    },
}

impl Target {
    /// Starts the embedded daemon, or names the remote one.
    ///
    /// # Errors
    /// When the embedded daemon cannot start.
    pub async fn start(&self) -> anyhow::Result<RunningTarget> {
        match self {
            Self::Embedded => RunningTarget::embedded().await,
            Self::Remote {
                url,
                admin_socket,
                daemon_pid,
            } => Ok(RunningTarget {
                url: url.clone(),
                admin_socket: admin_socket.clone(),
                daemon_pid: *daemon_pid,
                embedded: None,
            }),
        }
    }
}

/// A daemon ready for a run.
#[derive(Debug)]
pub struct RunningTarget {
    /// WebSocket URL.
    pub url: String,
    /// Admin socket path.
    pub admin_socket: PathBuf,
    /// The process whose CPU time and memory a report shows: this one when embedded.
    pub daemon_pid: Option<u32>,
    embedded: Option<Embedded>,
}

/// The embedded daemon and what it needs to stop cleanly.
#[derive(Debug)]
struct Embedded {
    daemon: chatd::Daemon,
    shutdown: CancellationToken,
    /// Removed on drop, after the daemon has stopped.
    _data_dir: tempfile::TempDir,
}

impl RunningTarget {
    async fn embedded() -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir().context("cannot create a temporary data directory")?;
        let config = embedded_config(data_dir.path().to_path_buf());
        config.validate()?;
        let shutdown = CancellationToken::new();
        let daemon = chatd::start(&config, shutdown.clone())
            .await
            .context("the embedded chatd did not start")?;
        Ok(Self {
            url: format!("ws://{}", daemon.websocket_addr),
            admin_socket: daemon.admin_socket.clone(),
            daemon_pid: Some(std::process::id()),
            embedded: Some(Embedded {
                daemon,
                shutdown,
                _data_dir: data_dir,
            }),
        })
    }

    /// Whether the daemon runs inside this process.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Drains and stops the embedded daemon; nothing for a remote one.
    pub async fn stop(self) {
        if let Some(embedded) = self.embedded {
            embedded.shutdown.cancel();
            embedded.daemon.wait().await;
        }
    }
}

/// The embedded daemon's configuration: defaults, except for the address, the data
/// directory and the limits a benchmark would otherwise measure instead of the daemon.
fn embedded_config(data_dir: PathBuf) -> Config {
    let mut config = Config {
        data_dir,
        ..Config::default()
    };
    config.listen.websocket = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen.quic = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    // The default 20 sends/s per session is a protection for real users; here it would cap
    // every client at 20 messages/s and the run would measure the token bucket.
    config.limits.sends_per_sec = EMBEDDED_SENDS_PER_SEC;
    config.limits.send_burst = EMBEDDED_SENDS_PER_SEC;
    // Every client receives every message of the room; a burst of N clients × C outstanding
    // sends must not overflow a session's outbox and cut it off as a slow consumer.
    config.limits.outbox_capacity = EMBEDDED_OUTBOX_CAPACITY;
    // A run over many rooms puts one client in up to all of them (`--rooms` above
    // `--clients`); the default of 64 rooms per session would refuse the joins.
    config.limits.max_rooms_per_session = EMBEDDED_ROOMS_PER_SESSION;
    // Every client connects from 127.0.0.1, which the per-address limit would count as one
    // home or NAT; the run's clients are not that.
    config.limits.max_connections_per_address = u32::MAX;
    config.limits.max_pending_handshakes = u32::MAX;
    config
}

/// Enough for one client in every room of the largest run in `docs/benchmarks.md` (100).
const EMBEDDED_ROOMS_PER_SESSION: usize = 1024;

/// Far above what one session can send on this hardware (tens of thousands per second), so
/// the rate limiter never engages.
const EMBEDDED_SENDS_PER_SEC: u32 = 1_000_000;

/// 64 times the default of 1024: room for every message of a quick run and for bursts of
/// the larger ones while a receiving task is descheduled.
const EMBEDDED_OUTBOX_CAPACITY: usize = 65_536;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_configuration_is_valid_and_lifts_the_rate_limit() {
        let config = embedded_config(PathBuf::from("/tmp/chatd-bench"));
        config.validate().unwrap();
        assert_eq!(config.listen.websocket.port(), 0);
        assert!(config.limits.sends_per_sec >= 100_000);
        assert!(config.limits.outbox_capacity > Config::default().limits.outbox_capacity);
    }
}
