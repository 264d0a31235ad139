//! `listen.metrics`, the operator HTTP listener's address: off by default, set from the file
//! or `CHATD_LISTEN__METRICS`, turned off again by an empty value, and refused when it would
//! share the WebSocket listener's port.

use std::net::SocketAddr;

use chatd_config::{Config, Error, Overrides, load};

mod support;

use support::{jail, with_file};

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test addresses are valid")
}

#[test]
fn off_by_default_and_set_by_file_then_environment() {
    jail(|jail| {
        assert_eq!(load(&Overrides::default()).unwrap().listen.metrics, None);

        jail.create_file("chatd.toml", "[listen]\nmetrics = \"127.0.0.1:9100\"\n")
            .unwrap();
        let from_file = load(&with_file("chatd.toml")).unwrap();
        assert_eq!(from_file.listen.metrics, Some(addr("127.0.0.1:9100")));

        jail.set_env("CHATD_LISTEN__METRICS", "[::1]:9200");
        let from_env = load(&with_file("chatd.toml")).unwrap();
        assert_eq!(from_env.listen.metrics, Some(addr("[::1]:9200")));

        // An empty variable is how an environment turns a file's listener off.
        jail.set_env("CHATD_LISTEN__METRICS", "");
        assert_eq!(load(&with_file("chatd.toml")).unwrap().listen.metrics, None);
    });
}

#[test]
fn a_bad_address_names_the_variable_and_the_expected_form() {
    jail(|jail| {
        jail.set_env("CHATD_LISTEN__METRICS", "localhost");
        let error = load(&Overrides::default()).unwrap_err().to_string();
        assert!(error.contains("CHATD_LISTEN__METRICS"), "{error}");
        assert!(
            error.contains("`localhost` is not an IP address and port"),
            "{error}"
        );
    });
}

#[test]
fn the_effective_configuration_shows_the_address_or_empty() {
    let mut config = Config {
        data_dir: ".".into(),
        ..Config::default()
    };
    assert!(
        config.to_redacted_toml().contains("metrics = \"\"\n"),
        "{}",
        config.to_redacted_toml()
    );
    config.listen.metrics = Some(addr("0.0.0.0:9100"));
    assert!(
        config
            .to_redacted_toml()
            .contains("metrics = \"0.0.0.0:9100\"\n")
    );
}

#[test]
fn the_websocket_port_is_refused_and_port_zero_is_not() {
    let mut config = Config {
        data_dir: "/var/lib/chatd".into(),
        ..Config::default()
    };
    config.listen.websocket = addr("127.0.0.1:7878");
    config.listen.metrics = Some(addr("0.0.0.0:7878"));
    match config.validate() {
        Err(Error::Invalid { key, message }) => {
            assert_eq!(key, "listen.metrics");
            assert_eq!(
                message,
                "(0.0.0.0:7878) uses the port of listen.websocket (127.0.0.1:7878); give the \
                 metrics listener a port of its own, such as 9100"
            );
        }
        other => panic!("expected Error::Invalid, got {other:?}"),
    }

    config.listen.metrics = Some(addr("127.0.0.1:9100"));
    config.validate().unwrap();
    // Tests bind both to port 0: the kernel picks two different ports.
    config.listen.websocket = addr("127.0.0.1:0");
    config.listen.metrics = Some(addr("127.0.0.1:0"));
    config.validate().unwrap();
}
