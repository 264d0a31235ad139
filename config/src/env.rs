//! The `CHATD_*` environment provider: turns `CHATD_LIMITS__MAX_BODY_BYTES=100` into the key
//! `limits.max_body_bytes` and remembers the variable's exact name, so an error about that
//! key names the variable to fix.
//!
//! figment's own `Env` provider is not used because its errors name keys as
//! `LIMITS.MAX_BODY_BYTES` rather than the variable, and because it guesses each value's
//! type from its text: `CHATD_LOG_LEVEL=1` would become a number and fail to load as a
//! string. Here a key whose default is a string always receives the text as given.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Variables read by this provider start with this.
pub(crate) const PREFIX: &str = "CHATD_";

/// Nesting separator in variable names: `CHATD_LISTEN__WEBSOCKET` is `listen.websocket`.
pub(crate) const SEPARATOR: &str = "__";

/// Variables with the prefix that are not configuration keys.
const IGNORED: &[&str] = &["CHATD_CONFIG"];

/// Name of this provider in figment metadata; `load` recognises env errors by it.
pub(crate) const SOURCE_NAME: &str = "environment variable";

/// A snapshot of the `CHATD_*` variables, ready to merge into a figment.
pub(crate) struct EnvProvider {
    /// `(dotted key, variable name, value)` in variable-name order.
    entries: Vec<(String, String, OsString)>,
    /// Variables whose name does not map to a key, e.g. `CHATD_` or `CHATD_A____B`.
    malformed: Vec<String>,
    /// Keys whose default value is a string; their values are never reparsed.
    string_keys: Vec<String>,
}

impl EnvProvider {
    /// Takes the `CHATD_*` entries of `vars` (normally `std::env::vars_os()`).
    /// `defaults` is the serialized built-in configuration, used to tell string keys apart.
    pub(crate) fn new(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
        defaults: &Dict,
    ) -> Self {
        let mut entries = Vec::new();
        let mut malformed = Vec::new();
        for (name, value) in vars {
            // A variable name that is not UTF-8 cannot be one of ours.
            let Ok(name) = name.into_string() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            if IGNORED.contains(&name.as_str()) {
                continue;
            }
            let segments: Vec<String> =
                rest.split(SEPARATOR).map(str::to_ascii_lowercase).collect();
            if segments.iter().any(String::is_empty) {
                malformed.push(name);
                continue;
            }
            entries.push((segments.join("."), name, value));
        }
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        malformed.sort();
        let mut string_keys = Vec::new();
        collect_string_keys(defaults, "", &mut string_keys);
        Self {
            entries,
            malformed,
            string_keys,
        }
    }

    /// Key → variable name, for the metadata interpolater.
    fn names(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .map(|(key, name, _)| (key.clone(), name.clone()))
            .collect()
    }
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        let names = Arc::new(self.names());
        Metadata::named(SOURCE_NAME)
            .interpolater(move |_: &Profile, path: &[&str]| variable_for(&names, &path.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut errors: Vec<figment::Error> = self
            .malformed
            .iter()
            .map(|name| {
                figment::Error::from(format!(
                    "environment variable {name} does not name a configuration key; CHATD_* \
                     variables are keys in capitals with `__` between a section and its key, \
                     e.g. CHATD_LIMITS__MAX_BODY_BYTES"
                ))
            })
            .collect();
        let mut dict = Dict::new();
        for (key, name, raw) in &self.entries {
            let Some(text) = raw.to_str() else {
                errors.push(
                    figment::Error::from(format!("the value of {name} is not valid UTF-8"))
                        .with_path(key),
                );
                continue;
            };
            let value = if self.string_keys.iter().any(|k| k == key) {
                Value::from(text.to_owned())
            } else {
                // figment's value syntax: numbers, booleans, arrays and plain strings.
                text.parse::<Value>().unwrap_or_else(|never| match never {})
            };
            if let Err(clash) = insert(&mut dict, key, value) {
                let other = variable_for(&self.names(), &clash);
                errors.push(figment::Error::from(format!(
                    "{name} and {other} both set `{clash}`: one sets a section, the other a \
                     key inside it; unset one of them"
                )));
            }
        }
        match errors.into_iter().reduce(figment::Error::chain) {
            Some(error) => Err(error),
            None => Ok(Profile::Default.collect(dict)),
        }
    }
}

/// The variable that set `key`, or that set a key under it (for an unknown section, the
/// error is reported at the section). Falls back to the canonical spelling.
fn variable_for(names: &BTreeMap<String, String>, key: &str) -> String {
    if let Some(name) = names.get(key) {
        return name.clone();
    }
    let nested = format!("{key}.");
    names
        .iter()
        .find(|(candidate, _)| candidate.starts_with(&nested))
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| variable_name(key))
}

/// `limits.max_body_bytes` → `CHATD_LIMITS__MAX_BODY_BYTES`.
pub(crate) fn variable_name(key: &str) -> String {
    format!(
        "{PREFIX}{}",
        key.to_ascii_uppercase().replace('.', SEPARATOR)
    )
}

/// Inserts `value` at dotted `key`, creating sections as needed. Fails with the clashing
/// key when a section and a plain value would occupy the same place.
pub(crate) fn insert(dict: &mut Dict, key: &str, value: Value) -> Result<(), String> {
    let mut current = dict;
    let mut walked = String::new();
    let mut segments = key.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(segment);
        if segments.peek().is_none() {
            return match current.get(segment) {
                Some(Value::Dict(..)) => Err(walked),
                _ => {
                    current.insert(segment.to_owned(), value);
                    Ok(())
                }
            };
        }
        let entry = current
            .entry(segment.to_owned())
            .or_insert_with(|| Value::from(Dict::new()));
        let Value::Dict(_, next) = entry else {
            return Err(walked);
        };
        current = next;
    }
    Ok(())
}

fn collect_string_keys(dict: &Dict, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in dict {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Dict(_, nested) => collect_string_keys(nested, &path, out),
            Value::String(..) => out.push(path),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn defaults() -> Dict {
        let config = Config {
            data_dir: ".".into(),
            ..Config::default()
        };
        match Value::serialize(config).unwrap() {
            Value::Dict(_, dict) => dict,
            other => panic!("defaults serialize to a table, got {other:?}"),
        }
    }

    fn provider(vars: &[(&str, &str)]) -> EnvProvider {
        let vars = vars
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        EnvProvider::new(vars, &defaults())
    }

    fn data(provider: &EnvProvider) -> Dict {
        provider.data().unwrap().remove(&Profile::Default).unwrap()
    }

    #[test]
    fn double_underscore_nests_and_names_are_lowercased() {
        let env = provider(&[
            ("CHATD_LIMITS__MAX_BODY_BYTES", "100"),
            ("CHATD_LISTEN__WEBSOCKET", "0.0.0.0:7878"),
            ("PATH", "/usr/bin"),
        ]);
        let dict = data(&env);
        let body = dict["limits"].find_ref("max_body_bytes").unwrap();
        assert_eq!(body.to_u128(), Some(100));
        assert_eq!(
            dict["listen"].find_ref("websocket").unwrap().as_str(),
            Some("0.0.0.0:7878")
        );
        assert!(!dict.contains_key("path"));
    }

    #[test]
    fn chatd_config_is_not_a_key() {
        let env = provider(&[("CHATD_CONFIG", "/etc/chatd/chatd.toml")]);
        assert!(data(&env).is_empty());
    }

    #[test]
    fn string_keys_keep_their_text() {
        let env = provider(&[("CHATD_LOG_LEVEL", "1"), ("CHATD_DATA_DIR", "2024")]);
        let dict = data(&env);
        assert_eq!(dict["log_level"].as_str(), Some("1"));
        assert_eq!(dict["data_dir"].as_str(), Some("2024"));
    }

    #[test]
    fn interpolated_key_is_the_variable_name() {
        let env = provider(&[
            ("CHATD_LIMITS__MAX_BODY_BYTES", "x"),
            ("CHATD_NOPE__DEEP", "1"),
        ]);
        let metadata = env.metadata();
        let profile = Profile::Default;
        assert_eq!(
            metadata.interpolate(&profile, &["limits", "max_body_bytes"]),
            "CHATD_LIMITS__MAX_BODY_BYTES"
        );
        assert_eq!(
            metadata.interpolate(&profile, &["nope"]),
            "CHATD_NOPE__DEEP"
        );
        assert_eq!(
            metadata.interpolate(&profile, &["store", "url"]),
            "CHATD_STORE__URL"
        );
    }

    #[test]
    fn malformed_names_and_clashes_are_errors_naming_the_variables() {
        let env = provider(&[
            ("CHATD_", "1"),
            ("CHATD_LISTEN", "x"),
            ("CHATD_LISTEN__WEBSOCKET", "y"),
        ]);
        let messages: Vec<String> = env
            .data()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.contains("CHATD_ does not name a configuration key")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("CHATD_LISTEN__WEBSOCKET and CHATD_LISTEN both set `listen`")),
            "{messages:?}"
        );
    }
}
