//! [`Failure`]: the errors chatctl reports, each carrying its exit code and a message that
//! says what to do next. `main` finds it in the error chain to choose the exit code.

use std::process::ExitCode;

/// A failure with a documented exit code (see `cli::EXIT_CODES`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The daemon refused the request: not found, already exists, invalid. Exit 1.
    #[error("{0}")]
    Refused(String),
    /// Bad input: configuration, password, a file to import. (clap reports bad arguments
    /// itself.) Exit 2.
    #[error("{0}")]
    Usage(String),
    /// The daemon cannot be reached: not running, a wrong socket path, or the socket's
    /// permissions do not admit the caller (the message says whom to run as). Exit 3.
    #[error("{0}")]
    Unreachable(String),
    /// The daemon failed or answered with something unreadable. Exit 4.
    #[error("{0}")]
    Daemon(String),
    /// Something chatctl uses itself failed: writing the output, or the database it
    /// migrates. Exit 4.
    #[error("{0}")]
    Local(String),
}

impl Failure {
    /// The exit code for this failure.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Refused(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable(_) => 3,
            Self::Daemon(_) | Self::Local(_) => 4,
        })
    }

    /// The same failure with `note` appended to its message.
    pub(crate) fn with_note(self, note: &str) -> Self {
        match self {
            Self::Refused(message) => Self::Refused(format!("{message}{note}")),
            Self::Usage(message) => Self::Usage(format!("{message}{note}")),
            Self::Unreachable(message) => Self::Unreachable(format!("{message}{note}")),
            Self::Daemon(message) => Self::Daemon(format!("{message}{note}")),
            Self::Local(message) => Self::Local(format!("{message}{note}")),
        }
    }
}

/// The exit code for an error: that of the first [`Failure`] in its chain, else 4 (an
/// unexpected failure inside chatctl).
pub(crate) fn exit_code(error: &anyhow::Error) -> ExitCode {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or_else(|| ExitCode::from(4), Failure::exit_code)
}
