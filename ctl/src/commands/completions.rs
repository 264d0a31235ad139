//! `chatctl completions SHELL`: the shell completion script, generated from the same clap
//! definition as `--help`, so it knows every command and option of this chatctl.

use std::io::Write as _;

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::failure::Failure;

/// Prints the completion script for `shell` to standard output.
pub(crate) fn print(shell: Shell) -> Result<(), Failure> {
    // Generated into memory first: clap_complete panics when its writer fails, and standard
    // output may be a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "chatctl", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .map_err(|error| {
            Failure::Local(format!(
                "cannot write the {shell} completion script: {error}"
            ))
        })
}
