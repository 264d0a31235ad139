//! Which keys differ between two configurations: what SIGHUP reports as waiting for a
//! restart, by dotted name.

use crate::Config;

/// The dotted names of the keys whose values differ between `before` and `after`, sorted.
/// Secrets count as changed when their plain values differ (their serialized form is
/// redacted).
pub fn changed_keys(before: &Config, after: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    match (toml::Value::try_from(before), toml::Value::try_from(after)) {
        (Ok(before), Ok(after)) => walk("", &before, &after, &mut changed),
        // A configuration that cannot be shown as TOML (a path that is not UTF-8) was
        // refused by `load`; compare it as a whole.
        _ => {
            if before != after {
                changed.push("(configuration)".to_owned());
            }
        }
    }
    if before.store.url.expose() != after.store.url.expose()
        && !changed.iter().any(|key| key == "store.url")
    {
        changed.push("store.url".to_owned());
    }
    changed.sort();
    changed
}

fn walk(prefix: &str, before: &toml::Value, after: &toml::Value, changed: &mut Vec<String>) {
    match (before, after) {
        (toml::Value::Table(before), toml::Value::Table(after)) => {
            let keys: std::collections::BTreeSet<&String> =
                before.keys().chain(after.keys()).collect();
            for key in keys {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (before.get(key), after.get(key)) {
                    (Some(b), Some(a)) => walk(&name, b, a, changed),
                    _ => changed.push(name),
                }
            }
        }
        (before, after) if before != after => changed.push(prefix.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn equal_configurations_change_nothing() {
        assert!(changed_keys(&Config::default(), &Config::default()).is_empty());
    }

    #[test]
    fn changed_keys_are_named_by_section() {
        let before = Config::default();
        let mut after = before.clone();
        after.log_level = "debug".to_owned();
        after.limits.sends_per_sec += 1;
        after.store.url = Secret::new("postgres://u:p@db/chat".to_owned());
        assert_eq!(
            changed_keys(&before, &after),
            ["limits.sends_per_sec", "log_level", "store.url"]
        );
    }

    #[test]
    fn a_changed_secret_is_named_even_when_both_are_redacted() {
        let mut before = Config::default();
        before.store.url = Secret::new("postgres://u:old@db/chat".to_owned());
        let mut after = before.clone();
        after.store.url = Secret::new("postgres://u:new@db/chat".to_owned());
        assert_eq!(changed_keys(&before, &after), ["store.url"]);
    }
}
