//! Checks that types alone cannot express: values that must be positive or within the
//! protocol's ceilings, keys that must agree with each other, the store URL scheme, paths
//! that must be UTF-8. It reports the first problem found, checking section by section. It
//! does not touch the filesystem or the network: whether the data directory is writable or
//! the database reachable is found out at startup.

use std::path::Path;

use crate::{Config, Error};

/// Store URL schemes chatd accepts. `postgres` is accepted ahead of its backend so that a
/// configuration written for it validates now.
const STORE_SCHEMES: &[&str] = &["sqlite", "postgres", "postgresql"];

/// Longest Unix socket path the kernel accepts: `sun_path` is 108 bytes on Linux,
/// including the terminating NUL.
const MAX_UNIX_SOCKET_PATH_BYTES: usize = 107;

/// One failed check.
#[derive(Debug)]
pub(crate) struct Violation {
    /// The key at fault.
    pub(crate) key: &'static str,
    /// Other keys the check compared `key` with; their sources are worth showing too.
    pub(crate) related: &'static [&'static str],
    /// What is wrong and what is allowed, without the key itself (it is prefixed).
    pub(crate) message: String,
}

impl Violation {
    fn new(key: &'static str, message: String) -> Self {
        Self {
            key,
            related: &[],
            message,
        }
    }

    fn related(mut self, related: &'static [&'static str]) -> Self {
        self.related = related;
        self
    }

    pub(crate) fn into_error(self) -> Error {
        Error::Invalid {
            key: self.key.to_owned(),
            message: self.message,
        }
    }
}

/// Runs every check in order and returns the first failure.
pub(crate) fn check(config: &Config) -> Result<(), Violation> {
    check_paths(config)?;
    check_tls(config)?;
    check_metrics(config)?;
    check_log_level(&config.log_level)?;
    check_store(config)?;
    check_limits(config)?;
    check_auth(config)?;
    check_retention(config)?;
    check_quic(config)?;
    check_broker(config)?;
    Ok(())
}

/// A URL under `key` must have one of `schemes`; `usage` says what to write instead. The URL
/// may carry a password: only its scheme is ever echoed.
fn check_url_scheme(
    key: &'static str,
    url: &str,
    schemes: &[&str],
    usage: &str,
) -> Result<(), Violation> {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme {
        Some(scheme) if schemes.contains(&scheme.as_str()) => Ok(()),
        Some(scheme) => Err(Violation::new(
            key,
            format!("has scheme `{scheme}`, which chatd does not support; use {usage}"),
        )),
        None => Err(Violation::new(
            key,
            format!("is not a URL (it has no `scheme://`); use {usage}"),
        )),
    }
}

/// Redis URL schemes the broker accepts.
const BROKER_SCHEMES: &[&str] = &["redis", "redis+unix", "unix"];

/// A broker URL must be a Redis URL; like the store URL it may carry a password, so only its
/// scheme is ever echoed. Several nodes only make sense on one shared PostgreSQL database.
fn check_broker(config: &Config) -> Result<(), Violation> {
    if !config.broker.url.is_set() {
        return Ok(());
    }
    check_url_scheme(
        "broker.url",
        config.broker.url.expose(),
        BROKER_SCHEMES,
        "redis://HOST:PORT or redis+unix:///PATH, or leave it empty for one node",
    )?;
    if !config.store.url.is_set() || config.store.url.expose().starts_with("sqlite") {
        return Err(Violation::new(
            "broker.url",
            "is set, but the store is SQLite, which only one node can use; several nodes \
             share one PostgreSQL database: set store.url = \"postgres://...\""
                .to_owned(),
        )
        .related(&["store.url"]));
    }
    Ok(())
}

/// The metrics listener cannot share the WebSocket listener's port: one of the two binds would
/// fail at start-up with a less helpful message.
fn check_metrics(config: &Config) -> Result<(), Violation> {
    let (Some(metrics), websocket) = (config.listen.metrics, config.listen.websocket) else {
        return Ok(());
    };
    let overlapping = metrics.ip() == websocket.ip()
        || metrics.ip().is_unspecified()
        || websocket.ip().is_unspecified();
    if metrics.port() != 0 && metrics.port() == websocket.port() && overlapping {
        return Err(Violation::new(
            "listen.metrics",
            format!(
                "({metrics}) uses the port of listen.websocket ({websocket}); give the metrics \
                 listener a port of its own, such as 9100"
            ),
        )
        .related(&["listen.websocket"]));
    }
    Ok(())
}

fn check_retention(config: &Config) -> Result<(), Violation> {
    if config.retention.sweep_interval_secs == 0 {
        return Err(Violation::new(
            "retention.sweep_interval_secs",
            "must be at least 1".to_owned(),
        ));
    }
    if config.retention.batch == 0 {
        return Err(Violation::new(
            "retention.batch",
            "must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

fn check_paths(config: &Config) -> Result<(), Violation> {
    // Paths end up in a URL and in TOML output, both of which need UTF-8.
    require_utf8("data_dir", &config.data_dir)?;
    require_utf8("listen.admin_socket", &config.listen.admin_socket)?;
    let socket = config.admin_socket_path();
    let length = socket.as_os_str().len();
    if length > MAX_UNIX_SOCKET_PATH_BYTES {
        return Err(Violation::new(
            "listen.admin_socket",
            format!(
                "resolves to {} ({length} bytes), longer than the {MAX_UNIX_SOCKET_PATH_BYTES} \
                 bytes a Unix socket path may have; use a shorter absolute path such as \
                 /run/chatd/chatd.sock",
                socket.display()
            ),
        )
        .related(&["data_dir"]));
    }
    Ok(())
}

/// `[tls]` takes both files or neither, and without it a WebSocket listener that other hosts
/// can reach needs the operator's explicit `listen.allow_plaintext`: session traffic (chat
/// messages, resume tokens) would otherwise cross the network unencrypted by accident.
fn check_tls(config: &Config) -> Result<(), Violation> {
    let tls = &config.tls;
    require_utf8("tls.cert_file", &tls.cert_file)?;
    require_utf8("tls.key_file", &tls.key_file)?;
    let has_cert = !tls.cert_file.as_os_str().is_empty();
    let has_key = !tls.key_file.as_os_str().is_empty();
    match (has_cert, has_key) {
        (true, false) => {
            return Err(Violation::new(
                "tls.key_file",
                "is not set, but tls.cert_file is: TLS needs the certificate chain and its \
                 private key; set both, or neither to serve plain ws://"
                    .to_owned(),
            )
            .related(&["tls.cert_file"]));
        }
        (false, true) => {
            return Err(Violation::new(
                "tls.cert_file",
                "is not set, but tls.key_file is: TLS needs the certificate chain and its \
                 private key; set both, or neither to serve plain ws://"
                    .to_owned(),
            )
            .related(&["tls.key_file"]));
        }
        (true, true) => return Ok(()),
        (false, false) => {}
    }
    let address = config.listen.websocket;
    if address.ip().to_canonical().is_loopback() || config.listen.allow_plaintext {
        return Ok(());
    }
    Err(Violation::new(
        "listen.websocket",
        format!(
            "is {address}, which other hosts can reach, but [tls] is not configured and \
             listen.allow_plaintext is false: chat traffic would cross the network \
             unencrypted. Configure [tls] with cert_file and key_file, or set \
             listen.allow_plaintext = true when a TLS-terminating proxy is in front of chatd"
        ),
    )
    .related(&["listen.allow_plaintext"]))
}

fn require_utf8(key: &'static str, path: &Path) -> Result<(), Violation> {
    if path.to_str().is_some() {
        return Ok(());
    }
    Err(Violation::new(
        key,
        format!(
            "is not valid UTF-8 ({}); choose a path with a UTF-8 name",
            path.display()
        ),
    ))
}

fn check_log_level(filter: &str) -> Result<(), Violation> {
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|error| {
            Violation::new(
                "log_level",
                format!(
                    "is not a valid log filter ({error}); use a level such as `info` or \
                 directives such as `chatd=debug,info`"
                ),
            )
        })
}

fn check_store(config: &Config) -> Result<(), Violation> {
    let store = &config.store;
    if store.url.is_set() {
        check_url_scheme(
            "store.url",
            store.url.expose(),
            STORE_SCHEMES,
            "sqlite://PATH, postgres://... or postgresql://..., or leave it empty for SQLite \
             in data_dir",
        )?;
    }
    positive("store.queue_capacity", store.queue_capacity as u64)?;
    positive("store.max_batch", store.max_batch as u64)?;
    positive("store.max_connections", u64::from(store.max_connections))?;
    positive("store.acquire_timeout_ms", store.acquire_timeout_ms)?;
    Ok(())
}

fn check_limits(config: &Config) -> Result<(), Violation> {
    let limits = &config.limits;
    positive("limits.max_frame_bytes", limits.max_frame_bytes as u64)?;
    positive("limits.max_body_bytes", limits.max_body_bytes as u64)?;
    if limits.max_body_bytes >= limits.max_frame_bytes {
        return Err(Violation::new(
            "limits.max_body_bytes",
            format!(
                "({}) must be less than limits.max_frame_bytes ({}), because a frame carries \
                 the body plus its envelope; lower max_body_bytes or raise max_frame_bytes",
                limits.max_body_bytes, limits.max_frame_bytes
            ),
        )
        .related(&["limits.max_frame_bytes"]));
    }
    positive(
        "limits.max_rooms_per_session",
        limits.max_rooms_per_session as u64,
    )?;
    positive("limits.sends_per_sec", u64::from(limits.sends_per_sec))?;
    let ceiling = protocol::limits::MAX_HISTORY_PAGE;
    if !(1..=ceiling).contains(&limits.max_history_page) {
        return Err(Violation::new(
            "limits.max_history_page",
            format!(
                "is {}, but must be between 1 and {ceiling} (the protocol's largest page)",
                limits.max_history_page
            ),
        ));
    }
    if limits.join_history > limits.max_history_page {
        return Err(Violation::new(
            "limits.join_history",
            format!(
                "({}) must not exceed limits.max_history_page ({}), since the history sent \
                 on join is one page",
                limits.join_history, limits.max_history_page
            ),
        )
        .related(&["limits.max_history_page"]));
    }
    positive("limits.outbox_capacity", limits.outbox_capacity as u64)?;
    if limits.outbox_capacity < config.store.max_batch {
        return Err(Violation::new(
            "limits.outbox_capacity",
            format!(
                "({}) must be at least store.max_batch ({}): one commit publishes up to a \
                 whole batch to a room at once, and a session whose outbox cannot hold it is \
                 cut off as a slow consumer even though it reads quickly",
                limits.outbox_capacity, config.store.max_batch
            ),
        )
        .related(&["store.max_batch"]));
    }
    positive(
        "limits.handshake_timeout_secs",
        limits.handshake_timeout_secs,
    )?;
    positive(
        "limits.max_connections_per_address",
        u64::from(limits.max_connections_per_address),
    )?;
    positive(
        "limits.max_pending_handshakes",
        u64::from(limits.max_pending_handshakes),
    )?;
    Ok(())
}

fn check_auth(config: &Config) -> Result<(), Violation> {
    let auth = &config.auth;
    positive(
        "auth.max_failures_per_user",
        u64::from(auth.max_failures_per_user),
    )?;
    positive(
        "auth.max_failures_per_address",
        u64::from(auth.max_failures_per_address),
    )?;
    positive("auth.failure_window_secs", auth.failure_window_secs)?;
    positive("auth.resume_token_ttl_secs", auth.resume_token_ttl_secs)?;
    Ok(())
}

/// Longest QUIC idle timeout: beyond an hour a vanished phone would hold its connection (and
/// show as online) for longer than anyone expects; resume makes reconnecting cheap instead.
const MAX_QUIC_IDLE_SECS: u64 = 3600;

/// A keep-alive must come more often than the idle timeout, or the idle timeout would close
/// quiet but healthy connections; zero turns keep-alives off.
fn check_quic(config: &Config) -> Result<(), Violation> {
    let quic = &config.quic;
    positive("quic.idle_timeout_secs", quic.idle_timeout_secs)?;
    if quic.idle_timeout_secs > MAX_QUIC_IDLE_SECS {
        return Err(Violation::new(
            "quic.idle_timeout_secs",
            format!(
                "is {}, above the maximum of {MAX_QUIC_IDLE_SECS}",
                quic.idle_timeout_secs
            ),
        ));
    }
    if quic.keep_alive_secs >= quic.idle_timeout_secs {
        return Err(Violation::new(
            "quic.keep_alive_secs",
            format!(
                "is {}, not below quic.idle_timeout_secs ({}): quiet connections would time \
                 out between keep-alives; set it to a third of the idle timeout or less, or \
                 0 for no keep-alives",
                quic.keep_alive_secs, quic.idle_timeout_secs
            ),
        )
        .related(&["quic.idle_timeout_secs"]));
    }
    Ok(())
}

/// Zero would disable the component outright (no queue slot, no connection, no login
/// attempt), which is never what an operator means.
fn positive(key: &'static str, value: u64) -> Result<(), Violation> {
    if value > 0 {
        return Ok(());
    }
    Err(Violation::new(
        key,
        "must be at least 1, but is 0".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::Secret;

    fn base() -> Config {
        Config {
            data_dir: PathBuf::from("/var/lib/chatd"),
            ..Config::default()
        }
    }

    fn failure(config: &Config) -> (String, String) {
        match config.validate() {
            Err(Error::Invalid { key, message }) => (key, message),
            other => panic!("expected Error::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        base().validate().unwrap();
    }

    #[test]
    fn body_must_be_smaller_than_frame() {
        let mut config = base();
        config.limits.max_frame_bytes = 100;
        config.limits.max_body_bytes = 100;
        let (key, message) = failure(&config);
        assert_eq!(key, "limits.max_body_bytes");
        assert!(
            message.contains("limits.max_frame_bytes (100)"),
            "{message}"
        );
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid configuration: `limits.max_body_bytes` (100) must be less than \
             limits.max_frame_bytes (100), because a frame carries the body plus its envelope; \
             lower max_body_bytes or raise max_frame_bytes"
        );
    }

    #[test]
    fn zero_capacities_and_rates_are_rejected() {
        type SetToZero = fn(&mut Config);
        let cases: [(&str, SetToZero); 9] = [
            ("store.queue_capacity", |c| c.store.queue_capacity = 0),
            ("store.max_batch", |c| c.store.max_batch = 0),
            ("store.max_connections", |c| c.store.max_connections = 0),
            ("store.acquire_timeout_ms", |c| {
                c.store.acquire_timeout_ms = 0
            }),
            ("limits.outbox_capacity", |c| c.limits.outbox_capacity = 0),
            ("limits.sends_per_sec", |c| c.limits.sends_per_sec = 0),
            ("auth.failure_window_secs", |c| {
                c.auth.failure_window_secs = 0
            }),
            ("limits.max_connections_per_address", |c| {
                c.limits.max_connections_per_address = 0
            }),
            ("limits.max_pending_handshakes", |c| {
                c.limits.max_pending_handshakes = 0
            }),
        ];
        for (expected_key, set_zero) in cases {
            let mut config = base();
            set_zero(&mut config);
            let (key, message) = failure(&config);
            assert_eq!(key, expected_key);
            assert_eq!(message, "must be at least 1, but is 0");
        }
    }

    #[test]
    fn connection_limits_accept_one_and_anything_above() {
        let mut config = base();
        config.limits.max_connections_per_address = 1;
        config.limits.max_pending_handshakes = 1;
        config.validate().unwrap();
        // An operator behind a proxy that connects from one address turns the per-address
        // limit off in effect by setting it very high.
        config.limits.max_connections_per_address = u32::MAX;
        config.limits.max_pending_handshakes = u32::MAX;
        config.validate().unwrap();
    }

    #[test]
    fn an_outbox_smaller_than_a_batch_is_rejected() {
        let mut config = base();
        config.limits.outbox_capacity = 100;
        config.store.max_batch = 101;
        let (key, message) = failure(&config);
        assert_eq!(key, "limits.outbox_capacity");
        assert!(
            message.starts_with("(100) must be at least store.max_batch (101)"),
            "{message}"
        );
    }

    #[test]
    fn history_page_is_bounded_by_the_protocol() {
        let mut config = base();
        config.limits.max_history_page = 501;
        let (key, message) = failure(&config);
        assert_eq!(key, "limits.max_history_page");
        assert!(message.contains("between 1 and 500"), "{message}");

        config.limits.max_history_page = 0;
        assert_eq!(failure(&config).0, "limits.max_history_page");
    }

    #[test]
    fn join_history_fits_in_a_page() {
        let mut config = base();
        config.limits.max_history_page = 20;
        config.limits.join_history = 21;
        let (key, message) = failure(&config);
        assert_eq!(key, "limits.join_history");
        assert!(
            message.contains("limits.max_history_page (20)"),
            "{message}"
        );
    }

    #[test]
    fn store_url_scheme_is_checked_without_echoing_the_url() {
        let mut config = base();
        for accepted in [
            "sqlite:///tmp/x.db",
            "postgres://u:p@h/db",
            "postgresql://h/db",
        ] {
            config.store.url = Secret::new(accepted.to_owned());
            config.validate().unwrap();
        }

        config.store.url = Secret::new("mysql://root:hunter2@db/chat".to_owned());
        let (key, message) = failure(&config);
        assert_eq!(key, "store.url");
        assert!(message.contains("scheme `mysql`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        config.store.url = Secret::new("hunter2".to_owned());
        let (key, message) = failure(&config);
        assert_eq!(key, "store.url");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn log_level_must_parse_as_a_filter() {
        let mut config = base();
        config.log_level = "chatd=debug,info".to_owned();
        config.validate().unwrap();
        config.log_level = "chatd=loud".to_owned();
        assert_eq!(failure(&config).0, "log_level");
    }

    #[test]
    fn admin_socket_path_must_fit_in_sun_path() {
        let mut config = base();
        config.data_dir = PathBuf::from(format!("/{}", "d".repeat(120)));
        let (key, message) = failure(&config);
        assert_eq!(key, "listen.admin_socket");
        assert!(message.contains("107 bytes"), "{message}");
    }

    #[test]
    fn tls_needs_both_files() {
        let mut config = base();
        config.tls.cert_file = PathBuf::from("cert.pem");
        let (key, message) = failure(&config);
        assert_eq!(key, "tls.key_file");
        assert!(message.contains("tls.cert_file is"), "{message}");

        config.tls = crate::TlsConfig {
            key_file: PathBuf::from("key.pem"),
            ..crate::TlsConfig::default()
        };
        assert_eq!(failure(&config).0, "tls.cert_file");

        config.tls.cert_file = PathBuf::from("cert.pem");
        config.validate().unwrap();
    }

    #[test]
    fn quic_keep_alive_must_be_below_the_idle_timeout() {
        let mut config = base();
        config.quic.keep_alive_secs = 30;
        config.quic.idle_timeout_secs = 30;
        let (key, message) = failure(&config);
        assert_eq!(key, "quic.keep_alive_secs");
        assert!(
            message.contains("not below quic.idle_timeout_secs (30)"),
            "{message}"
        );
        config.quic.keep_alive_secs = 0;
        config.validate().unwrap();
        config.quic.idle_timeout_secs = 0;
        assert_eq!(failure(&config).0, "quic.idle_timeout_secs");
        config.quic.idle_timeout_secs = MAX_QUIC_IDLE_SECS + 1;
        assert_eq!(failure(&config).0, "quic.idle_timeout_secs");
    }

    #[test]
    fn the_broker_takes_a_redis_url_and_postgres() {
        let mut config = base();
        config.broker.url = Secret::new("http://redis:6379".to_owned());
        let (key, message) = failure(&config);
        assert_eq!(key, "broker.url");
        assert!(message.contains("scheme `http`"), "{message}");
        config.broker.url = Secret::new("redis://:hunter2@127.0.0.1:6379/".to_owned());
        let (key, message) = failure(&config);
        assert_eq!(key, "broker.url");
        assert!(message.contains("PostgreSQL"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        config.store.url = Secret::new("postgres://chatd@db/chatd".to_owned());
        config.validate().unwrap();
    }

    #[test]
    fn plaintext_websocket_is_refused_off_loopback() {
        let mut config = base();
        for loopback in [
            "127.0.0.1:7878",
            "127.0.0.2:1",
            "[::1]:7878",
            "[::ffff:127.0.0.1]:1",
        ] {
            config.listen.websocket = loopback.parse().unwrap();
            config.validate().unwrap();
        }
        for public in ["0.0.0.0:7878", "[::]:7878", "192.0.2.7:443"] {
            config.listen.websocket = public.parse().unwrap();
            let (key, message) = failure(&config);
            assert_eq!(key, "listen.websocket");
            assert!(message.contains("listen.allow_plaintext"), "{message}");
            assert!(message.contains("[tls]"), "{message}");
        }

        config.listen.allow_plaintext = true;
        config.validate().unwrap();

        config.listen.allow_plaintext = false;
        config.tls.cert_file = PathBuf::from("cert.pem");
        config.tls.key_file = PathBuf::from("key.pem");
        config.validate().unwrap();
    }
}
