//! chatd configuration: one typed struct, loaded in layers (built-in defaults, then a TOML
//! file, then `CHATD_*` environment variables, then command-line flags) by [`load`].
//!
//! Every field documents its meaning, unit, default and whether SIGHUP reloads it;
//! `docs/configuration.md` lists every key and a test keeps the two in step.
//!
//! # Layout
//! - this file: the `Config` struct and its sections, with their defaults, and the helpers
//!   that derive paths and URLs from them.
//! - `load`: [`load`] and [`Overrides`]: figment layering and error reporting (key and source).
//! - `env`: the `CHATD_*` environment provider.
//! - `optional_address`: serde for an address that may be empty (`listen.metrics`).
//! - `diff`: [`changed_keys`], the keys that differ between two configurations.
//! - `validate`: cross-field checks, run by [`load`] and [`Config::validate`].
//! - [`secret`]: [`Secret<T>`](secret::Secret), redacted in logs and `config check`.
//! - `error`: [`Error`].

#![warn(missing_docs)]

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod diff;
mod env;
mod error;
mod load;
mod optional_address;
pub mod secret;
mod validate;

pub use diff::changed_keys;
pub use error::Error;
pub use load::{Overrides, load};
pub use secret::Secret;

/// Dotted names of the keys that SIGHUP re-reads; every other key needs a restart.
pub const RELOADABLE_KEYS: &[&str] = &["log_level", "tls.cert_file", "tls.key_file"];

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the SQLite database and, by default, the admin socket. Default:
    /// `$STATE_DIRECTORY` when set (systemd; the first entry if it lists several), else the
    /// current directory. Not reloadable.
    pub data_dir: PathBuf,
    /// Log filter in `tracing` syntax, e.g. `info` or `chatd=debug,info`. Default `info`.
    /// Reloadable.
    pub log_level: String,
    /// Listening addresses.
    pub listen: ListenConfig,
    /// History store.
    pub store: StoreConfig,
    /// Per-session and per-frame limits.
    pub limits: LimitsConfig,
    /// Login and resume tokens.
    pub auth: AuthConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// How long history is kept.
    pub retention: RetentionConfig,
    /// TLS for the WebSocket listener, and the QUIC listener's certificate.
    pub tls: TlsConfig,
    /// QUIC connection tuning.
    pub quic: QuicConfig,
    /// How events reach the other nodes.
    pub broker: BrokerConfig,
}

impl Config {
    /// Where the admin socket lives: `listen.admin_socket`, resolved against `data_dir` when
    /// relative.
    pub fn admin_socket_path(&self) -> PathBuf {
        // `join` keeps an absolute `admin_socket` as it is.
        self.data_dir.join(&self.listen.admin_socket)
    }

    /// The certificate chain and key files to serve TLS with, each resolved against
    /// `data_dir` when relative; `None` when `[tls]` is not configured (plain `ws://`).
    /// Both or neither are set once [`Config::validate`] passed.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        if self.tls.cert_file.as_os_str().is_empty() || self.tls.key_file.as_os_str().is_empty() {
            return None;
        }
        Some(TlsFiles {
            cert_file: self.data_dir.join(&self.tls.cert_file),
            key_file: self.data_dir.join(&self.tls.key_file),
        })
    }

    /// The database URL to connect to: `store.url` when set, else SQLite at
    /// `<data_dir>/chatd.db`, created if missing. Holds the plain URL, password included:
    /// do not log it.
    pub fn store_url(&self) -> String {
        if self.store.url.is_set() {
            return self.store.url.expose().clone();
        }
        let path = self.data_dir.join(DEFAULT_DATABASE_FILE);
        format!(
            "sqlite://{}?mode=rwc",
            escape_sqlite_path(&path.to_string_lossy())
        )
    }

    /// The effective configuration as TOML, secrets shown as `[redacted]`. This is what
    /// `chatd config check` prints and what the daemon logs at startup.
    ///
    /// Paths that are not UTF-8 cannot be written as TOML; [`load`] and [`Config::validate`]
    /// reject them, and for a `Config` built by hand the output is then a TOML comment
    /// saying so.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|error| {
            format!("# the configuration cannot be shown as TOML: {error}\n")
        })
    }

    /// Checks values and combinations of values that types alone cannot rule out (limits in
    /// range, store URL scheme, ...). [`load`] runs this; call it on a `Config` built by hand.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the first key at fault and what is allowed.
    pub fn validate(&self) -> Result<(), Error> {
        validate::check(self).map_err(validate::Violation::into_error)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(std::env::var_os("STATE_DIRECTORY").as_deref()),
            log_level: "info".to_owned(),
            listen: ListenConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            shutdown: ShutdownConfig::default(),
            retention: RetentionConfig::default(),
            tls: TlsConfig::default(),
            quic: QuicConfig::default(),
            broker: BrokerConfig::default(),
        }
    }
}

/// Where chatd listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// WebSocket listener address. Default `127.0.0.1:7878`. Not reloadable.
    pub websocket: SocketAddr,
    /// Admin socket path (Unix socket, mode 0660). Relative paths are resolved against
    /// `data_dir`. Default `chatd.sock`. Not reloadable.
    pub admin_socket: PathBuf,
    /// Serve plain `ws://` on an address other than loopback. Without `[tls]`, chatd refuses
    /// a non-loopback `websocket` address unless this is true, which is meant for a
    /// TLS-terminating proxy in front of chatd. Default false. Not reloadable.
    pub allow_plaintext: bool,
    /// Address of the operator HTTP listener: Prometheus metrics at `/metrics`, health at
    /// `/healthz` and `/readyz`. Empty (the default) turns it off. Not reloadable.
    #[serde(with = "optional_address")]
    pub metrics: Option<SocketAddr>,
    /// QUIC listener address (UDP). Default `127.0.0.1:7879`; empty turns QUIC off. QUIC is
    /// always TLS 1.3: with `[tls]` it serves that certificate, else a self-signed one that
    /// chatd creates in `data_dir` on first start and whose SHA-256 it logs. Not reloadable.
    #[serde(with = "optional_address")]
    pub quic: Option<SocketAddr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            websocket: SocketAddr::from((Ipv4Addr::LOCALHOST, 7878)),
            admin_socket: PathBuf::from("chatd.sock"),
            allow_plaintext: false,
            metrics: None,
            quic: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 7879))),
        }
    }
}

/// The history store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Database URL. Empty (the default) means SQLite at `<data_dir>/chatd.db`. Accepts
    /// `sqlite://PATH` and `postgres://...` (or `postgresql://...`). Secret (may hold a
    /// password). Not reloadable.
    pub url: Secret<String>,
    /// Most sends waiting for the writer; when full, sends get `busy`. Default 4096. Not
    /// reloadable.
    pub queue_capacity: usize,
    /// Most messages committed in one transaction. Default 256. Not reloadable.
    pub max_batch: usize,
    /// PostgreSQL only: most bytes of messages (bodies and ids) committed in one
    /// transaction, so that a commit's request fits in one TLS record; 0 means no limit.
    /// Default 14336. Not reloadable.
    pub max_batch_bytes: usize,
    /// Longest the writer waits to fill a batch, in milliseconds. Default 0 (batches still
    /// grow while the previous commit runs). Not reloadable.
    pub max_batch_delay_ms: u64,
    /// Database connection pool size. Default 8. Not reloadable.
    pub max_connections: u32,
    /// Apply pending schema migrations at start-up. When false, chatd refuses to start if
    /// the database lacks migrations it needs (the operator migrates first), so a database
    /// user without the right to change the schema can run it. Default true. Not reloadable.
    pub run_migrations: bool,
    /// Longest an operation waits for a database connection before it fails with
    /// `unavailable`, in milliseconds; while the database is down, sends fail this fast.
    /// Default 2000. Not reloadable.
    pub acquire_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            queue_capacity: 4096,
            max_batch: 256,
            max_batch_bytes: 14_336,
            max_batch_delay_ms: 0,
            max_connections: 8,
            run_migrations: true,
            acquire_timeout_ms: 2000,
        }
    }
}

/// Limits enforced on every session, and on connections before they become sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted frame, in bytes. Default 32768. Not reloadable.
    pub max_frame_bytes: usize,
    /// Longest message body, in bytes of UTF-8. Default 4096. Not reloadable.
    pub max_body_bytes: usize,
    /// Most rooms one session may join. Default 64. Not reloadable.
    pub max_rooms_per_session: usize,
    /// Sustained sends (send, direct, typing) per second per session. Default 20. Not
    /// reloadable.
    pub sends_per_sec: u32,
    /// Burst of sends allowed above the sustained rate. Default 40. Not reloadable.
    pub send_burst: u32,
    /// Messages of history sent with `joined`. Default 50. Not reloadable.
    pub join_history: u32,
    /// Largest history page a client may request. Default 500, which is also the protocol's
    /// ceiling. Not reloadable.
    pub max_history_page: u32,
    /// Events queued for one session before it is cut off as a slow consumer. Default 1024.
    /// Not reloadable.
    pub outbox_capacity: usize,
    /// Seconds a new connection has to finish hello and login. Default 10. Not reloadable.
    pub handshake_timeout_secs: u64,
    /// Open connections (any phase, WebSocket and QUIC together) from one remote address:
    /// one IPv4 address, or one IPv6 /64. Default 64, since a (carrier-grade) NAT puts many
    /// users behind one IPv4 address. Not reloadable.
    pub max_connections_per_address: u32,
    /// Connections that have not yet logged in, across all addresses. Default 1024. Not
    /// reloadable.
    pub max_pending_handshakes: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: protocol::limits::DEFAULT_MAX_FRAME_BYTES,
            max_body_bytes: protocol::limits::DEFAULT_MAX_BODY_BYTES,
            max_rooms_per_session: 64,
            sends_per_sec: 20,
            send_burst: 40,
            join_history: 50,
            max_history_page: protocol::limits::MAX_HISTORY_PAGE,
            outbox_capacity: 1024,
            handshake_timeout_secs: 10,
            max_connections_per_address: 64,
            max_pending_handshakes: 1024,
        }
    }
}

/// Login and resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Failed logins allowed per user name per window before further attempts are refused.
    /// Default 5. Not reloadable.
    pub max_failures_per_user: u32,
    /// Failed logins allowed per remote address per window. Default 20. Not reloadable.
    pub max_failures_per_address: u32,
    /// The window for the two limits above, in seconds. Default 300. Not reloadable.
    pub failure_window_secs: u64,
    /// Lifetime of a resume token, in seconds. Default 86400 (one day). Not reloadable.
    pub resume_token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_failures_per_user: 5,
            max_failures_per_address: 20,
            failure_window_secs: 300,
            resume_token_ttl_secs: 86_400,
        }
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Longest a drain may take before remaining sessions are cut, in seconds. Default 10.
    /// Not reloadable.
    pub drain_timeout_secs: u64,
    /// Clients are told to reconnect after a random delay up to this many milliseconds, so
    /// a restart does not cause a reconnect storm. Default 5000. Not reloadable.
    pub reconnect_window_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_secs: 10,
            reconnect_window_ms: 5000,
        }
    }
}

/// How long history is kept. A room's own retention (`chatctl room set-retention`) overrides
/// `days`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days of history kept in rooms without their own retention; 0 keeps history forever.
    /// Default 0. Not reloadable.
    pub days: u32,
    /// Seconds between two sweeps that delete expired messages. Default 3600. Not reloadable.
    pub sweep_interval_secs: u64,
    /// Most messages one delete statement removes; a sweep repeats it until a room has no
    /// expired messages left, so the database is never locked for long. Default 1000. Not
    /// reloadable.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            days: 0,
            sweep_interval_secs: 3600,
            batch: 1000,
        }
    }
}

/// TLS for the WebSocket listener (`wss://`). Both files or neither: with neither (the
/// default) the listener speaks plain `ws://`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, the server's certificate first. Relative paths
    /// are resolved against `data_dir`. Default empty (no TLS). Reloadable: SIGHUP reads the
    /// files again, so a renewed certificate takes effect without a restart.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1). Relative paths
    /// are resolved against `data_dir`. Default empty (no TLS). Reloadable, like `cert_file`.
    pub key_file: PathBuf,
}

/// The cross-node broker. Empty (the default): one node, events stay in the process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Redis URL (`redis://[:PASSWORD@]HOST:PORT[/DB]` or `redis+unix:///PATH`) through which
    /// several chatd nodes on one PostgreSQL database fan events out to each other. Empty
    /// (the default) keeps events in this process. May hold a password: never logged. Not
    /// reloadable.
    pub url: Secret<String>,
}

/// QUIC connection tuning. The defaults suit phones: see docs/configuration.md for why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicConfig {
    /// Seconds between keep-alive packets on an otherwise quiet connection, so NAT bindings
    /// stay open and a dead path is noticed. Must be below `idle_timeout_secs`. Default 10.
    /// Not reloadable.
    pub keep_alive_secs: u64,
    /// Seconds without any packet from the client after which its connection is dropped (the
    /// client can resume with its token). Default 30. Not reloadable.
    pub idle_timeout_secs: u64,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            keep_alive_secs: 10,
            idle_timeout_secs: 30,
        }
    }
}

/// The files of a configured `[tls]` section, resolved against `data_dir`
/// ([`Config::tls_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// File name of the embedded SQLite database inside `data_dir`.
const DEFAULT_DATABASE_FILE: &str = "chatd.db";

/// `data_dir` when none is configured. systemd sets `STATE_DIRECTORY` from `StateDirectory=`,
/// as a `:`-separated list when the unit names several; chatd keeps its state in the first.
fn default_data_dir(state_directory: Option<&OsStr>) -> PathBuf {
    state_directory
        .and_then(|list| std::env::split_paths(list).next())
        .filter(|first| !first.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Escapes the characters that sqlx's SQLite URL parser treats specially (`?` starts the
/// query, `#` a fragment, `%` an escape), so any directory name survives the round trip.
fn escape_sqlite_path(path: &str) -> String {
    let mut escaped = String::with_capacity(path.len());
    for ch in path.chars() {
        match ch {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3F"),
            '#' => escaped.push_str("%23"),
            _ => escaped.push(ch),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn data_dir_defaults_to_current_directory_without_state_directory() {
        assert_eq!(default_data_dir(None), Path::new("."));
        assert_eq!(default_data_dir(Some(OsStr::new(""))), Path::new("."));
    }

    #[test]
    fn data_dir_takes_the_first_of_several_state_directories() {
        assert_eq!(
            default_data_dir(Some(OsStr::new("/var/lib/chatd"))),
            Path::new("/var/lib/chatd")
        );
        assert_eq!(
            default_data_dir(Some(OsStr::new("/var/lib/chatd:/var/lib/chatd-extra"))),
            Path::new("/var/lib/chatd")
        );
    }

    fn config_in(data_dir: &str) -> Config {
        Config {
            data_dir: PathBuf::from(data_dir),
            ..Config::default()
        }
    }

    #[test]
    fn store_url_defaults_to_sqlite_in_data_dir() {
        assert_eq!(
            config_in("/var/lib/chatd").store_url(),
            "sqlite:///var/lib/chatd/chatd.db?mode=rwc"
        );
        assert_eq!(config_in(".").store_url(), "sqlite://./chatd.db?mode=rwc");
    }

    #[test]
    fn store_url_escapes_url_syntax_in_data_dir() {
        assert_eq!(
            config_in("/srv/a?b#c%d").store_url(),
            "sqlite:///srv/a%3Fb%23c%25d/chatd.db?mode=rwc"
        );
    }

    #[test]
    fn store_url_uses_the_configured_url_when_set() {
        let mut config = config_in("/var/lib/chatd");
        config.store.url = Secret::new("postgres://chatd:pw@db/chatd".to_owned());
        assert_eq!(config.store_url(), "postgres://chatd:pw@db/chatd");
    }

    #[test]
    fn admin_socket_is_resolved_against_data_dir_unless_absolute() {
        let mut config = config_in("/var/lib/chatd");
        assert_eq!(
            config.admin_socket_path(),
            Path::new("/var/lib/chatd/chatd.sock")
        );
        config.listen.admin_socket = PathBuf::from("/run/chatd/admin.sock");
        assert_eq!(
            config.admin_socket_path(),
            Path::new("/run/chatd/admin.sock")
        );
    }

    #[test]
    fn tls_files_are_resolved_against_data_dir_and_need_both_keys() {
        let mut config = config_in("/var/lib/chatd");
        assert_eq!(config.tls_files(), None);
        config.tls.cert_file = PathBuf::from("tls/cert.pem");
        assert_eq!(config.tls_files(), None);
        config.tls.key_file = PathBuf::from("/etc/chatd/key.pem");
        assert_eq!(
            config.tls_files(),
            Some(TlsFiles {
                cert_file: PathBuf::from("/var/lib/chatd/tls/cert.pem"),
                key_file: PathBuf::from("/etc/chatd/key.pem"),
            })
        );
    }

    #[test]
    fn redacted_toml_hides_the_store_url_and_reads_back() {
        let mut config = config_in("/var/lib/chatd");
        config.store.url = Secret::new("postgres://chatd:hunter2@db/chatd".to_owned());
        let text = config.to_redacted_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("url = \"[redacted]\""), "{text}");
        assert!(!format!("{config:?}").contains("hunter2"));

        let read_back: Config = toml::from_str(&text).unwrap();
        assert_eq!(read_back.limits, config.limits);
        assert_eq!(read_back.store.url.expose(), "[redacted]");
    }

    #[test]
    fn redacted_toml_shows_an_unset_store_url_as_empty() {
        let text = config_in("/var/lib/chatd").to_redacted_toml();
        assert!(text.contains("url = \"\""), "{text}");
    }
}
