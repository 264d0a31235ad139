//! The `[tls]` section and the plaintext rule, loaded through every layer: a WebSocket
//! listener that other hosts can reach needs TLS or an explicit `listen.allow_plaintext`,
//! and the error says which keys to change and where they were set.
//!
//! Every test runs inside a figment `Jail` (see `layering.rs`).

use std::path::PathBuf;

use chatd_config::{Error, Overrides, TlsFiles, load};

mod support;

use support::{jail, with_file};

fn invalid(overrides: &Overrides) -> (String, String) {
    match load(overrides) {
        Err(Error::Invalid { key, message }) => (key, message),
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

#[test]
fn plaintext_on_a_public_address_is_refused_naming_the_keys() {
    jail(|jail| {
        jail.create_file("chatd.toml", "[listen]\nwebsocket = \"0.0.0.0:7878\"\n")
            .unwrap();
        let (key, message) = invalid(&with_file("chatd.toml"));
        assert_eq!(key, "listen.websocket");
        assert!(
            message.starts_with(
                "is 0.0.0.0:7878, which other hosts can reach, but [tls] is not configured and \
                 listen.allow_plaintext is false"
            ),
            "{message}"
        );
        assert!(
            message.contains("set listen.allow_plaintext = true when a TLS-terminating proxy"),
            "{message}"
        );
        // Where both keys came from, so the operator knows what to edit.
        assert!(
            message.ends_with(
                "(`listen.websocket` in chatd.toml; `listen.allow_plaintext` from built-in \
                 default)"
            ),
            "{message}"
        );

        let error = load(&with_file("chatd.toml")).unwrap_err().to_string();
        assert!(
            error.starts_with("invalid configuration: `listen.websocket` is 0.0.0.0:7878"),
            "{error}"
        );
    });
}

#[test]
fn plaintext_on_a_public_address_loads_when_allowed() {
    jail(|jail| {
        jail.create_file(
            "chatd.toml",
            "[listen]\nwebsocket = \"[::]:7878\"\nallow_plaintext = true\n",
        )
        .unwrap();
        let config = load(&with_file("chatd.toml")).unwrap();
        assert!(config.listen.allow_plaintext);
        assert_eq!(config.tls_files(), None);

        // The same through the environment.
        jail.set_env("CHATD_LISTEN__WEBSOCKET", "0.0.0.0:9000");
        jail.set_env("CHATD_LISTEN__ALLOW_PLAINTEXT", "true");
        let config = load(&Overrides::default()).unwrap();
        assert_eq!(config.listen.websocket.to_string(), "0.0.0.0:9000");
        assert!(config.listen.allow_plaintext);

        jail.set_env("CHATD_LISTEN__ALLOW_PLAINTEXT", "false");
        let (key, message) = invalid(&Overrides::default());
        assert_eq!(key, "listen.websocket");
        assert!(
            message.contains("`listen.allow_plaintext` from env var CHATD_LISTEN__ALLOW_PLAINTEXT"),
            "{message}"
        );
    });
}

#[test]
fn loopback_needs_neither_tls_nor_allow_plaintext() {
    jail(|_| {
        let config = load(&Overrides::default()).unwrap();
        assert!(!config.listen.allow_plaintext);
        assert_eq!(config.tls_files(), None);
        for address in ["127.0.0.1:0", "[::1]:7878"] {
            let overrides = Overrides {
                listen_websocket: Some(address.parse().unwrap()),
                ..Overrides::default()
            };
            load(&overrides).unwrap();
        }
    });
}

#[test]
fn tls_on_a_public_address_loads_with_paths_resolved_against_data_dir() {
    jail(|jail| {
        jail.create_file(
            "chatd.toml",
            "data_dir = \"/var/lib/chatd\"\n[listen]\nwebsocket = \"0.0.0.0:443\"\n\
             [tls]\ncert_file = \"tls/fullchain.pem\"\nkey_file = \"/etc/chatd/key.pem\"\n",
        )
        .unwrap();
        let config = load(&with_file("chatd.toml")).unwrap();
        assert_eq!(
            config.tls_files(),
            Some(TlsFiles {
                cert_file: PathBuf::from("/var/lib/chatd/tls/fullchain.pem"),
                key_file: PathBuf::from("/etc/chatd/key.pem"),
            })
        );
    });
}

#[test]
fn tls_keys_come_from_the_environment_as_text() {
    jail(|jail| {
        jail.set_env("CHATD_TLS__CERT_FILE", "2024");
        jail.set_env("CHATD_TLS__KEY_FILE", "/etc/chatd/key.pem");
        let config = load(&Overrides::default()).unwrap();
        assert_eq!(config.tls.cert_file, PathBuf::from("2024"));
        assert_eq!(config.tls.key_file, PathBuf::from("/etc/chatd/key.pem"));
    });
}

#[test]
fn a_certificate_without_a_key_names_the_missing_key() {
    jail(|jail| {
        jail.set_env("CHATD_TLS__CERT_FILE", "/etc/chatd/cert.pem");
        let (key, message) = invalid(&Overrides::default());
        assert_eq!(key, "tls.key_file");
        assert!(
            message.starts_with("is not set, but tls.cert_file is"),
            "{message}"
        );
        assert!(
            message.contains("`tls.cert_file` from env var CHATD_TLS__CERT_FILE"),
            "{message}"
        );
    });
}
