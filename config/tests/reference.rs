//! Keeps `docs/configuration.md` in step with the code: every key of `Config` has a row in
//! the reference with its environment variable, default and reload status, and every row
//! names a key that exists.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chatd_config::{Config, RELOADABLE_KEYS};

const REFERENCE: &str = include_str!("../../docs/configuration.md");

/// One row of a key table: `| key | env var | unit | default | SIGHUP | meaning |`.
struct Row {
    env_var: String,
    default: String,
    sighup: String,
}

/// Every table row whose first cell is a backticked key, by key.
fn reference_rows() -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for line in REFERENCE.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 6 || !cells[0].starts_with('`') {
            continue;
        }
        let key = cells[0].trim_matches('`').to_owned();
        let row = Row {
            env_var: cells[1].trim_matches('`').to_owned(),
            default: cells[3].to_owned(),
            sighup: cells[4].to_owned(),
        };
        assert!(
            rows.insert(key.clone(), row).is_none(),
            "`{key}` has two rows"
        );
    }
    rows
}

/// Every dotted key of the configuration with its default rendered as TOML.
fn config_keys() -> BTreeMap<String, toml::Value> {
    fn walk(table: &toml::Table, prefix: &str, out: &mut BTreeMap<String, toml::Value>) {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                toml::Value::Table(nested) => walk(nested, &key, out),
                leaf => {
                    out.insert(key, leaf.clone());
                }
            }
        }
    }
    // A fixed data_dir keeps the result independent of STATE_DIRECTORY.
    let config = Config {
        data_dir: PathBuf::from("."),
        ..Config::default()
    };
    let table = toml::Table::try_from(&config).expect("Config serializes to a TOML table");
    let mut keys = BTreeMap::new();
    walk(&table, "", &mut keys);
    keys
}

#[test]
fn every_key_is_documented_with_env_var_default_and_reload_status() {
    let rows = reference_rows();
    let keys = config_keys();
    assert!(keys.len() > 20, "expected the full key set, got {keys:?}");
    for (key, default) in &keys {
        let row = rows.get(key).unwrap_or_else(|| {
            panic!("`{key}` is missing from docs/configuration.md; add a row for it")
        });
        let env_var = format!("CHATD_{}", key.to_ascii_uppercase().replace('.', "__"));
        assert_eq!(row.env_var, env_var, "env var of `{key}`");

        let reloadable = RELOADABLE_KEYS.contains(&key.as_str());
        let expected = if reloadable { "yes" } else { "no, restart" };
        assert_eq!(row.sighup, expected, "SIGHUP column of `{key}`");

        // data_dir's default depends on the environment and is described in words.
        if key != "data_dir" {
            let shown = match default {
                toml::Value::String(text) if text.is_empty() => "empty".to_owned(),
                toml::Value::String(text) => format!("`{text}`"),
                other => format!("`{other}`"),
            };
            assert!(
                row.default.starts_with(&shown),
                "default of `{key}`: the code says {shown}, the reference says {}",
                row.default
            );
        }
    }
}

#[test]
fn every_documented_key_exists() {
    let keys = config_keys();
    for key in reference_rows().keys() {
        assert!(
            keys.contains_key(key),
            "docs/configuration.md documents `{key}`, which Config lacks"
        );
    }
}

#[test]
fn reloadable_keys_exist() {
    let keys = config_keys();
    for key in RELOADABLE_KEYS {
        assert!(
            keys.contains_key(*key),
            "RELOADABLE_KEYS names `{key}`, which Config lacks"
        );
    }
}
