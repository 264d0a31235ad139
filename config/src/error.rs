//! [`Error`], the one error type of this crate. Every message names the key at fault and,
//! where one exists, the source that set it (file path, environment variable or flag), so
//! an operator can fix the configuration without reading code.

use std::fmt;
use std::path::PathBuf;

/// Why the configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A source could not be read or parsed, a key is unknown, or a value has the wrong type.
    /// Each entry of `details` is one problem, naming the key and its source, e.g. "key
    /// `limits.max_body_bytes` from env var CHATD_LIMITS__MAX_BODY_BYTES: expected ...".
    #[error("the configuration could not be loaded:\n{}", Bullets(details))]
    Load {
        /// One line per problem, in the order found.
        details: Vec<String>,
    },

    /// A configuration file was named (by flag or `CHATD_CONFIG`) but does not exist.
    #[error(
        "configuration file {} does not exist; fix the path given by the --config flag or \
         CHATD_CONFIG, or leave both unset to run on built-in defaults and CHATD_* variables",
        path.display()
    )]
    MissingFile {
        /// The path as given.
        path: PathBuf,
    },

    /// Every value parsed, but a value or a combination of values is not allowed. `message`
    /// says what is allowed and, when loaded through [`crate::load`], where each key involved
    /// was set.
    #[error("invalid configuration: `{key}` {message}")]
    Invalid {
        /// Dotted name of the key at fault, e.g. `limits.max_body_bytes`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// Renders the details of [`Error::Load`] one per bullet under the headline. A detail that
/// spans lines (a TOML parse error quotes the offending line) is indented under its bullet.
struct Bullets<'a>(&'a [String]);

impl fmt::Display for Bullets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, line) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {}", line.replace('\n', "\n    "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_error_lists_every_detail_on_its_own_line() {
        let error = Error::Load {
            details: vec!["first problem".to_owned(), "second problem".to_owned()],
        };
        assert_eq!(
            error.to_string(),
            "the configuration could not be loaded:\n  - first problem\n  - second problem"
        );
    }

    #[test]
    fn missing_file_names_the_path_and_how_to_fix_it() {
        let error = Error::MissingFile {
            path: PathBuf::from("/etc/chatd/chatd.toml"),
        };
        let text = error.to_string();
        assert!(
            text.contains("/etc/chatd/chatd.toml does not exist"),
            "{text}"
        );
        assert!(text.contains("CHATD_CONFIG"), "{text}");
    }
}
