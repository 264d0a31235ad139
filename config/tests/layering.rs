//! Loading through every layer with a real file and real environment variables: which
//! source wins, and the exact messages an operator sees when a source is wrong.
//!
//! Every test runs inside a figment `Jail`, which serialises tests that touch the process
//! environment, starts from an empty environment and a fresh temporary working directory,
//! and restores both afterwards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chatd_config::{Config, Error, Overrides, load};

mod support;

use support::{jail, with_file};

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test addresses are valid")
}

fn load_details(overrides: &Overrides) -> Vec<String> {
    match load(overrides) {
        Err(Error::Load { details }) => details,
        other => panic!("expected Error::Load, got {other:?}"),
    }
}

#[test]
fn each_layer_overrides_the_one_below() {
    jail(|jail| {
        let defaults = load(&Overrides::default()).unwrap();
        assert_eq!(defaults.listen.websocket, addr("127.0.0.1:7878"));
        assert_eq!(defaults.limits.max_body_bytes, 4096);

        jail.create_file(
            "chatd.toml",
            "[listen]\nwebsocket = \"127.0.0.1:1001\"\n[limits]\nmax_body_bytes = 1001\n",
        )
        .unwrap();
        let from_file = load(&with_file("chatd.toml")).unwrap();
        assert_eq!(from_file.listen.websocket, addr("127.0.0.1:1001"));
        assert_eq!(from_file.limits.max_body_bytes, 1001);
        // Keys the file does not mention keep their defaults.
        assert_eq!(from_file.limits.max_frame_bytes, 32_768);

        jail.set_env("CHATD_LISTEN__WEBSOCKET", "127.0.0.1:1002");
        jail.set_env("CHATD_LIMITS__MAX_BODY_BYTES", "1002");
        let from_env = load(&with_file("chatd.toml")).unwrap();
        assert_eq!(from_env.listen.websocket, addr("127.0.0.1:1002"));
        assert_eq!(from_env.limits.max_body_bytes, 1002);

        let flags = Overrides {
            listen_websocket: Some(addr("127.0.0.1:1003")),
            ..with_file("chatd.toml")
        };
        let from_flags = load(&flags).unwrap();
        assert_eq!(from_flags.listen.websocket, addr("127.0.0.1:1003"));
        // A flag that is not set leaves the environment's value in place.
        assert_eq!(from_flags.limits.max_body_bytes, 1002);
    });
}

#[test]
fn every_flag_overrides_its_key() {
    jail(|jail| {
        jail.set_env("CHATD_DATA_DIR", "/from/env");
        jail.set_env("CHATD_LOG_LEVEL", "warn");
        let overrides = Overrides {
            config_file: None,
            listen_websocket: Some(addr("[::1]:9000")),
            listen_quic: Some(addr("[::1]:9001")),
            data_dir: Some(PathBuf::from("/from/flag")),
            log_level: Some("chatd=debug,info".to_owned()),
        };
        let config = load(&overrides).unwrap();
        assert_eq!(config.listen.websocket, addr("[::1]:9000"));
        assert_eq!(config.listen.quic, Some(addr("[::1]:9001")));
        assert_eq!(config.data_dir, Path::new("/from/flag"));
        assert_eq!(config.log_level, "chatd=debug,info");
    });
}

#[test]
fn chatd_config_names_the_file_and_is_not_a_key() {
    jail(|jail| {
        jail.create_file("from-env.toml", "log_level = \"warn\"\n")
            .unwrap();
        jail.create_file("from-flag.toml", "log_level = \"error\"\n")
            .unwrap();
        jail.set_env("CHATD_CONFIG", "from-env.toml");
        assert_eq!(load(&Overrides::default()).unwrap().log_level, "warn");
        // The flag wins over the variable.
        assert_eq!(
            load(&with_file("from-flag.toml")).unwrap().log_level,
            "error"
        );
    });
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    jail(|jail| {
        let error = load(&with_file("/etc/chatd/absent.toml")).unwrap_err();
        assert_eq!(
            error,
            Error::MissingFile {
                path: PathBuf::from("/etc/chatd/absent.toml")
            }
        );
        assert_eq!(
            error.to_string(),
            "configuration file /etc/chatd/absent.toml does not exist; fix the path given by the \
             --config flag or CHATD_CONFIG, or leave both unset to run on built-in defaults and \
             CHATD_* variables"
        );

        jail.set_env("CHATD_CONFIG", "absent.toml");
        let error = load(&Overrides::default()).unwrap_err();
        assert_eq!(
            error,
            Error::MissingFile {
                path: PathBuf::from("absent.toml")
            }
        );
    });
}

#[test]
fn unknown_key_in_file_names_the_key_and_the_file() {
    jail(|jail| {
        let path = jail.directory().join("chatd.toml");
        jail.create_file(&path, "[limits]\nmax_body_bytes = 100\nfoo = 1\n")
            .unwrap();
        let error = load(&with_file(path.to_str().unwrap())).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the configuration could not be loaded:\n  - key `limits.foo` in {}: unknown \
                 key; keys allowed in section [limits]: handshake_timeout_secs, join_history, \
                 max_body_bytes, max_connections_per_address, max_frame_bytes, \
                 max_history_page, max_pending_handshakes, max_rooms_per_session, \
                 outbox_capacity, send_burst, sends_per_sec",
                path.display()
            )
        );
    });
}

#[test]
fn unknown_env_var_names_the_variable_and_suggests_the_right_one() {
    jail(|jail| {
        jail.set_env("CHATD_LISTEN_WEBSOCKET", "0.0.0.0:7878");
        jail.set_env("CHATD_COLOUR", "blue");
        let details = load_details(&Overrides::default());
        assert_eq!(
            details,
            [
                "key `colour` from env var CHATD_COLOUR: unknown key; keys allowed at the top \
                 level: auth, broker, data_dir, limits, listen, log_level, quic, retention, \
                 shutdown, store, tls",
                "key `listen_websocket` from env var CHATD_LISTEN_WEBSOCKET: unknown key; did \
                 you mean CHATD_LISTEN__WEBSOCKET? (`__` separates a section from its key); keys \
                 allowed at the top level: auth, broker, data_dir, limits, listen, log_level, \
                 quic, retention, shutdown, store, tls",
            ]
        );
    });
}

#[test]
fn bad_value_type_names_the_key_and_its_source() {
    jail(|jail| {
        jail.create_file("chatd.toml", "[limits]\nsends_per_sec = \"fast\"\n")
            .unwrap();
        jail.set_env("CHATD_LIMITS__MAX_BODY_BYTES", "lots");
        jail.set_env("CHATD_LISTEN__WEBSOCKET", "localhost");
        let details = load_details(&with_file("chatd.toml"));
        assert_eq!(
            details,
            [
                "key `limits.max_body_bytes` from env var CHATD_LIMITS__MAX_BODY_BYTES: expected \
                 a whole number (0 or more), found string \"lots\"",
                "key `limits.sends_per_sec` in chatd.toml: expected a whole number from 0 to \
                 4294967295, found string \"fast\"",
                "key `listen.websocket` from env var CHATD_LISTEN__WEBSOCKET: invalid socket \
                 address syntax; expected an IP address and port such as 127.0.0.1:7878",
            ]
        );
    });
}

#[test]
fn toml_syntax_error_names_the_file_and_line() {
    jail(|jail| {
        jail.create_file("chatd.toml", "[limits]\nmax_body_bytes = 10\n[limits\n")
            .unwrap();
        let details = load_details(&with_file("chatd.toml"));
        assert_eq!(details.len(), 1, "{details:?}");
        assert!(
            details[0].starts_with("file chatd.toml: TOML parse error at line 3, column 8"),
            "{details:?}"
        );
    });
}

#[test]
fn validation_runs_on_load_and_names_keys_and_sources() {
    jail(|jail| {
        jail.create_file("chatd.toml", "[limits]\nmax_history_page = 20\n")
            .unwrap();
        jail.set_env("CHATD_LIMITS__JOIN_HISTORY", "30");
        let error = load(&with_file("chatd.toml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: `limits.join_history` (30) must not exceed \
             limits.max_history_page (20), since the history sent on join is one page \
             (`limits.join_history` from env var CHATD_LIMITS__JOIN_HISTORY; \
             `limits.max_history_page` in chatd.toml)"
        );
    });
}

#[test]
fn store_url_is_redacted_in_output_but_usable() {
    jail(|jail| {
        let url = "postgres://chatd:hunter2@db.internal/chatd";
        jail.set_env("CHATD_STORE__URL", url);
        let config = load(&Overrides::default()).unwrap();
        assert_eq!(config.store_url(), url);
        assert_eq!(config.store.url.expose(), url);

        let toml = config.to_redacted_toml();
        assert!(toml.contains("[store]\nurl = \"[redacted]\"\n"), "{toml}");
        assert!(!toml.contains("hunter2"), "{toml}");
        let debug = format!("{config:?}");
        assert!(debug.contains("url: [redacted]"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    });
}

#[test]
fn store_url_defaults_to_sqlite_in_data_dir() {
    jail(|_| {
        let config = load(&Overrides::default()).unwrap();
        assert_eq!(config.data_dir, Path::new("."));
        assert_eq!(config.store_url(), "sqlite://./chatd.db?mode=rwc");
        assert_eq!(config.admin_socket_path(), Path::new("./chatd.sock"));
    });
}

#[test]
fn data_dir_comes_from_state_directory() {
    jail(|jail| {
        jail.set_env("STATE_DIRECTORY", "/var/lib/chatd:/var/lib/chatd-cache");
        let config = load(&Overrides::default()).unwrap();
        assert_eq!(config.data_dir, Path::new("/var/lib/chatd"));
        assert_eq!(
            config.store_url(),
            "sqlite:///var/lib/chatd/chatd.db?mode=rwc"
        );
        assert_eq!(
            config.admin_socket_path(),
            Path::new("/var/lib/chatd/chatd.sock")
        );

        // An explicit setting wins over what systemd provides.
        jail.set_env("CHATD_DATA_DIR", "/srv/chatd");
        assert_eq!(
            load(&Overrides::default()).unwrap().data_dir,
            Path::new("/srv/chatd")
        );
    });
}

#[test]
fn redacted_toml_reads_back_as_the_same_config() {
    jail(|jail| {
        jail.create_file(
            "chatd.toml",
            "log_level = \"debug\"\n[shutdown]\ndrain_timeout_secs = 3\n",
        )
        .unwrap();
        let config = load(&with_file("chatd.toml")).unwrap();
        jail.create_file("effective.toml", &config.to_redacted_toml())
            .unwrap();
        let again: Config = load(&with_file("effective.toml")).unwrap();
        assert_eq!(again, config);
    });
}
