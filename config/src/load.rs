//! Loading: layers built-in defaults, the TOML file, `CHATD_*` environment variables and
//! command-line flags with figment, then turns every failure into a line that names the key
//! and the source that set it (file path, variable name or flag), and runs the validation.
//!
//! Loading is a plain function with no global state; the daemon calls it at startup and
//! again on SIGHUP.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::env::{self, EnvProvider};
use crate::validate::{self, Violation};
use crate::{Config, Error};

/// Values given on the command line. Each one that is set overrides every other source;
/// the rest leave the lower layers alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Configuration file to read. When unset, `CHATD_CONFIG` is used; when both are unset,
    /// no file is read.
    pub config_file: Option<PathBuf>,
    /// Overrides `listen.websocket`.
    pub listen_websocket: Option<SocketAddr>,
    /// Overrides `listen.quic`.
    pub listen_quic: Option<SocketAddr>,
    /// Overrides `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Overrides `log_level`.
    pub log_level: Option<String>,
}

/// Loads the configuration: built-in defaults, then the TOML file (from
/// `overrides.config_file`, else `CHATD_CONFIG`), then `CHATD_*` environment variables
/// (`__` between a section and its key), then the flags set in `overrides`. Then checks it
/// with [`Config::validate`].
///
/// # Errors
///
/// - [`Error::MissingFile`] when a configuration file is named but does not exist.
/// - [`Error::Load`] when the file cannot be read or parsed, a key is unknown, or a value
///   has the wrong type; every problem found is listed, each naming its key and source.
/// - [`Error::Invalid`] when the values load but break a rule, e.g.
///   `limits.max_body_bytes` not below `limits.max_frame_bytes`.
pub fn load(overrides: &Overrides) -> Result<Config, Error> {
    let config_file = overrides.config_file.clone().or_else(|| {
        std::env::var_os(CONFIG_FILE_VAR)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
    });
    load_from(overrides, config_file, std::env::vars_os())
}

/// Environment variable naming the configuration file when no flag does.
const CONFIG_FILE_VAR: &str = "CHATD_CONFIG";

/// Names of the layers in figment metadata, shown in messages as "from {name}".
const DEFAULTS_SOURCE: &str = "built-in default";
const FLAGS_SOURCE: &str = "command-line flag";

/// [`load`] with the file path and the environment passed in.
fn load_from(
    overrides: &Overrides,
    config_file: Option<PathBuf>,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Config, Error> {
    let defaults = Value::serialize(Config::default()).map_err(|error| Error::Load {
        details: vec![format!(
            "the built-in defaults cannot be used ({error}); if STATE_DIRECTORY is not valid \
             UTF-8, set data_dir explicitly"
        )],
    })?;
    let defaults = into_dict(defaults);

    let mut figment = Figment::new().merge(Layer::new(DEFAULTS_SOURCE, Ok(defaults.clone())));
    if let Some(path) = config_file {
        if !path.exists() {
            return Err(Error::MissingFile { path });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment
        .merge(EnvProvider::new(vars, &defaults))
        .merge(flags_layer(overrides));

    let merged = figment
        .find_value("")
        .map(into_dict)
        .map_err(|error| Error::Load {
            details: describe_all(error),
        })?;

    let mut unknown = Vec::new();
    find_unknown_keys(
        &figment,
        &defaults,
        &merged,
        "",
        &known_leaves(&defaults),
        &mut unknown,
    );
    if !unknown.is_empty() {
        return Err(Error::Load { details: unknown });
    }

    let config = extract_reporting_all(&figment, &defaults)?;
    validate::check(&config).map_err(|violation| with_sources(violation, &figment))?;
    Ok(config)
}

/// Extracts the `Config`, listing every value of the wrong type rather than the first:
/// serde stops at the first error, so each round puts the default in place of the value at
/// fault and tries again. Each round patches a new key, so the loop ends.
fn extract_reporting_all(figment: &Figment, defaults: &Dict) -> Result<Config, Error> {
    let defaults = Value::from(defaults.clone());
    let mut details = Vec::new();
    let mut patch = Dict::new();
    loop {
        let attempt = figment
            .clone()
            .merge(Layer::new(DEFAULTS_SOURCE, Ok(patch.clone())));
        let error = match attempt.extract::<Config>() {
            Ok(config) if details.is_empty() => return Ok(config),
            Ok(_) => return Err(Error::Load { details }),
            Err(error) => error,
        };
        let mut patched_any = false;
        for error in error {
            details.push(describe(&error));
            let key = error.path.join(".");
            let already_patched = Value::from(patch.clone()).find_ref(&key).is_some();
            if let Some(default) = defaults.find_ref(&key)
                && !key.is_empty()
                && !already_patched
            {
                patched_any |= env::insert(&mut patch, &key, default.clone()).is_ok();
            }
        }
        if !patched_any {
            return Err(Error::Load { details });
        }
    }
}

/// A fixed table of values with a name, for the defaults and flags layers.
struct Layer {
    name: &'static str,
    values: Result<Dict, figment::Error>,
}

impl Layer {
    fn new(name: &'static str, values: Result<Dict, figment::Error>) -> Self {
        Self { name, values }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.values
            .clone()
            .map(|values| Profile::Default.collect(values))
    }
}

fn flags_layer(overrides: &Overrides) -> Layer {
    let mut values = Dict::new();
    let mut listen = Dict::new();
    if let Some(address) = overrides.listen_websocket {
        listen.insert("websocket".to_owned(), Value::from(address.to_string()));
    }
    if let Some(address) = overrides.listen_quic {
        listen.insert("quic".to_owned(), Value::from(address.to_string()));
    }
    if !listen.is_empty() {
        values.insert("listen".to_owned(), Value::from(listen));
    }
    if let Some(data_dir) = &overrides.data_dir {
        match Value::serialize(data_dir) {
            Ok(value) => values.insert("data_dir".to_owned(), value),
            Err(error) => return Layer::new(FLAGS_SOURCE, Err(error.with_path("data_dir"))),
        };
    }
    if let Some(level) = &overrides.log_level {
        values.insert("log_level".to_owned(), Value::from(level.clone()));
    }
    Layer::new(FLAGS_SOURCE, Ok(values))
}

/// The table inside `value`. Both callers pass a table (a serialized struct, or figment's
/// merged root), so anything else is treated as empty rather than handled.
fn into_dict(value: Value) -> Dict {
    match value {
        Value::Dict(_, dict) => dict,
        _ => Dict::new(),
    }
}

/// Where a value came from, as an operator would look for it.
enum Origin {
    File(PathBuf),
    Env(String),
    Layer(String),
}

impl Origin {
    fn of(metadata: &Metadata, path: &[String]) -> Self {
        if let Some(file) = metadata
            .source
            .as_ref()
            .and_then(|source| source.file_path())
        {
            return Self::File(file.to_path_buf());
        }
        if metadata.name == env::SOURCE_NAME {
            return Self::Env(metadata.interpolate(&Profile::Default, path));
        }
        Self::Layer(metadata.name.to_string())
    }

    fn of_key(figment: &Figment, key: &str) -> Option<Self> {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        figment
            .find_metadata(key)
            .map(|metadata| Self::of(metadata, &path))
    }
}

/// Follows a key: "in /etc/chatd/chatd.toml", "from env var CHATD_LOG_LEVEL".
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "in {}", path.display()),
            Self::Env(name) => write!(f, "from env var {name}"),
            Self::Layer(name) => write!(f, "from {name}"),
        }
    }
}

/// One line per error in a (possibly chained) figment error.
fn describe_all(error: figment::Error) -> Vec<String> {
    error.into_iter().map(|error| describe(&error)).collect()
}

fn describe(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let origin = error
        .metadata
        .as_ref()
        .map(|metadata| Origin::of(metadata, &error.path));
    let problem = explain(&error.kind);
    match (key.is_empty(), origin) {
        (false, Some(origin)) => format!("key `{key}` {origin}: {problem}"),
        (false, None) => format!("key `{key}`: {problem}"),
        (true, Some(Origin::File(path))) => format!("file {}: {problem}", path.display()),
        // Errors raised by the env and flag layers themselves already name their variable.
        (true, _) => problem,
    }
    .trim_end()
    .to_owned()
}

/// serde's wording with the type names an operator does not need translated.
fn explain(kind: &Kind) -> String {
    match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("expected {}, found {actual}", plain_type(expected))
        }
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key `{field}`; keys allowed here: {}",
                expected.join(", ")
            )
        }
        Kind::Message(message) if message.contains("socket address") => {
            format!("{message}; expected an IP address and port such as 127.0.0.1:7878")
        }
        other => other.to_string(),
    }
}

fn plain_type(expected: &str) -> String {
    match expected {
        "usize" | "u64" => "a whole number (0 or more)".to_owned(),
        "u32" => format!("a whole number from 0 to {}", u32::MAX),
        "socket address" => "an IP address and port such as 127.0.0.1:7878".to_owned(),
        "path string" => "a path".to_owned(),
        other if other.starts_with("struct ") => "a section (a TOML table)".to_owned(),
        other => other.to_owned(),
    }
}

/// Reports every key present in `given` but absent from `known` (the defaults), with the
/// source that set it. serde's `deny_unknown_fields` stops at the first; this lists all of
/// them so one edit fixes the file.
fn find_unknown_keys(
    figment: &Figment,
    known: &Dict,
    given: &Dict,
    prefix: &str,
    leaves: &[String],
    out: &mut Vec<String>,
) {
    for (name, value) in given {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match known.get(name) {
            Some(Value::Dict(_, known_section)) => {
                if let Value::Dict(_, given_section) = value {
                    find_unknown_keys(figment, known_section, given_section, &key, leaves, out);
                }
                // A section given as a plain value is a type error, reported by extraction.
            }
            Some(_) => {}
            None => out.push(describe_unknown(figment, known, &key, value, leaves)),
        }
    }
}

fn describe_unknown(
    figment: &Figment,
    known: &Dict,
    key: &str,
    value: &Value,
    leaves: &[String],
) -> String {
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    let origin = figment
        .get_metadata(value.tag())
        .map(|metadata| Origin::of(metadata, &path));
    let allowed: Vec<&str> = known.keys().map(String::as_str).collect();
    let section = match key.rsplit_once('.') {
        Some((section, _)) => format!("in section [{section}]"),
        None => "at the top level".to_owned(),
    };
    let mut line = match &origin {
        Some(origin) => format!("key `{key}` {origin}: unknown key"),
        None => format!("key `{key}`: unknown key"),
    };
    if let Some(suggestion) = suggest(key, leaves) {
        match &origin {
            Some(Origin::Env(_)) => line.push_str(&format!(
                "; did you mean {}? (`__` separates a section from its key)",
                env::variable_name(suggestion)
            )),
            _ => line.push_str(&format!("; did you mean `{suggestion}`?")),
        }
    }
    line.push_str(&format!("; keys allowed {section}: {}", allowed.join(", ")));
    line
}

/// A known key that `unknown` most likely meant: the same words with the section boundary
/// misplaced (`listen_websocket`), or the same key in the wrong section.
fn suggest<'a>(unknown: &str, leaves: &'a [String]) -> Option<&'a str> {
    let flat = unknown.replace('.', "_");
    let last = unknown.rsplit('.').next().unwrap_or(unknown);
    leaves
        .iter()
        .find(|leaf| leaf.replace('.', "_") == flat)
        .or_else(|| {
            leaves
                .iter()
                .find(|leaf| leaf.rsplit('.').next() == Some(last))
        })
        .map(String::as_str)
}

/// Every dotted key of the defaults that holds a value rather than a section.
fn known_leaves(defaults: &Dict) -> Vec<String> {
    fn walk(dict: &Dict, prefix: &str, out: &mut Vec<String>) {
        for (name, value) in dict {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                Value::Dict(_, nested) => walk(nested, &key, out),
                _ => out.push(key),
            }
        }
    }
    let mut leaves = Vec::new();
    walk(defaults, "", &mut leaves);
    leaves
}

/// Turns a failed check into [`Error::Invalid`], adding where each key involved was set.
fn with_sources(violation: Violation, figment: &Figment) -> Error {
    let sources: Vec<String> = std::iter::once(violation.key)
        .chain(violation.related.iter().copied())
        .filter_map(|key| Origin::of_key(figment, key).map(|origin| format!("`{key}` {origin}")))
        .collect();
    let mut error = violation.into_error();
    if let Error::Invalid { message, .. } = &mut error
        && !sources.is_empty()
    {
        message.push_str(&format!(" ({})", sources.join("; ")));
    }
    error
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn details(result: Result<Config, Error>) -> Vec<String> {
        match result {
            Err(Error::Load { details }) => details,
            other => panic!("expected Error::Load, got {other:?}"),
        }
    }

    #[test]
    fn all_unknown_keys_are_reported_with_their_sources() {
        let toml = file("colour = \"blue\"\n[limits]\nmax_body = 1\n");
        let result = load_from(
            &Overrides::default(),
            Some(toml.path().to_path_buf()),
            vars(&[("CHATD_LISTEN_WEBSOCKET", "0.0.0.0:1")]),
        );
        let details = details(result);
        let path = toml.path().display().to_string();
        assert_eq!(details.len(), 3, "{details:#?}");
        assert!(details.contains(&format!(
            "key `colour` in {path}: unknown key; keys allowed at the top level: auth, broker, data_dir, \
             limits, listen, log_level, quic, retention, shutdown, store, tls"
        )));
        assert!(details.iter().any(|d| d.starts_with(&format!(
            "key `limits.max_body` in {path}: unknown key; keys allowed in section [limits]: "
        ))));
        assert!(details.iter().any(|d| d.starts_with(
            "key `listen_websocket` from env var CHATD_LISTEN_WEBSOCKET: unknown key; did you \
             mean CHATD_LISTEN__WEBSOCKET?"
        )));
    }

    #[test]
    fn misplaced_key_in_file_suggests_its_section() {
        let toml = file("max_body_bytes = 1\n");
        let details = details(load_from(
            &Overrides::default(),
            Some(toml.path().into()),
            vars(&[]),
        ));
        assert!(
            details[0].contains("did you mean `limits.max_body_bytes`?"),
            "{details:?}"
        );
    }

    #[test]
    fn toml_syntax_error_names_the_file() {
        let toml = file("[limits\n");
        let details = details(load_from(
            &Overrides::default(),
            Some(toml.path().into()),
            vars(&[]),
        ));
        let expected = format!("file {}: TOML parse error at line 1", toml.path().display());
        assert!(details[0].starts_with(&expected), "{details:?}");
    }

    #[test]
    fn flags_override_environment() {
        let overrides = Overrides {
            log_level: Some("debug".to_owned()),
            data_dir: Some(PathBuf::from("/srv/chatd")),
            ..Overrides::default()
        };
        let config = load_from(
            &overrides,
            None,
            vars(&[("CHATD_LOG_LEVEL", "warn"), ("CHATD_DATA_DIR", "/tmp")]),
        )
        .unwrap();
        assert_eq!(config.log_level, "debug");
        assert_eq!(config.data_dir, PathBuf::from("/srv/chatd"));
    }

    #[test]
    fn validation_error_says_where_each_key_was_set() {
        let toml = file("[limits]\nmax_frame_bytes = 1000\n");
        let error = load_from(
            &Overrides::default(),
            Some(toml.path().into()),
            vars(&[("CHATD_LIMITS__MAX_BODY_BYTES", "1000")]),
        )
        .unwrap_err();
        let Error::Invalid { key, message } = error else {
            panic!("expected Invalid: {error:?}")
        };
        assert_eq!(key, "limits.max_body_bytes");
        assert!(
            message.ends_with(&format!(
                "(`limits.max_body_bytes` from env var CHATD_LIMITS__MAX_BODY_BYTES; \
                 `limits.max_frame_bytes` in {})",
                toml.path().display()
            )),
            "{message}"
        );
    }

    #[test]
    fn validation_error_for_a_default_says_so() {
        let error = load_from(
            &Overrides::default(),
            None,
            vars(&[("CHATD_LIMITS__MAX_FRAME_BYTES", "4096")]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("`limits.max_body_bytes` from built-in default"),
            "{text}"
        );
        assert!(
            text.contains("`limits.max_frame_bytes` from env var CHATD_LIMITS__MAX_FRAME_BYTES"),
            "{text}"
        );
    }
}
