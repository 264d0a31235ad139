//! [`Failure`]: the errors chatctl reports, each carrying its exit code and a message that
//! says what to do next. `main` finds it in the error chain to choose the exit code.

use std::process::ExitCode;

/// A failure with a documented exit code (see `cli::EXIT_CODES`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The daemon refused the request: not found, already exists, invalid. Exit 1.
    #[error("{0}")]
    Refused(String),
    /// Bad input: configuration, password. (clap reports bad arguments itself.) Exit 2.
    #[error("{0}")]
    Usage(String),
    /// The daemon cannot be reached. Exit 3.
    #[error("{0}")]
    Unreachable(String),
    /// The daemon failed or answered with something unreadable. Exit 4.
    #[error("{0}")]
    Daemon(String),
}

impl Failure {
    /// The exit code for this failure.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Refused(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable(_) => 3,
            Self::Daemon(_) => 4,
        })
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
