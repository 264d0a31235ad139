//! `chatctl`: administer a chatd daemon over its admin socket (newline-delimited JSON on a
//! Unix socket, see `protocol::admin`).
//!
//! # Exit codes
//! - 0: success.
//! - 1: the daemon refused the request (no such user, room or session, already exists, invalid).
//! - 2: usage error: bad arguments (clap), an unreadable configuration, a refused password
//!   input (empty, or the two entries differ), an unreadable or bad file to import.
//! - 3: cannot reach the daemon (admin socket missing, refused, or not permitted), or for
//!   `db` commands the database.
//! - 4: the daemon failed (internal error, no reply or an unreadable one), or chatctl itself
//!   did (writing an export, migrating the database).
//!
//! Every error message says what to do next.
//!
//! # Layout
//! - `cli`: the clap command line; its doc comments are `--help`.
//! - `commands`: one file per command group (`user`, `room`, `session`, `status`, `history`,
//!   `db`, `completions`, `man`), and the socket lookup.
//! - `admin_client`: the shared admin socket client, its failures turned into messages, and
//!   the reader for answers of several lines.
//! - `record`: the history export file format (JSON lines, CSV).
//! - `timestamp`: RFC 3339 times in exports and `--since`/`--until`.
//! - `progress`: the progress line on a terminal.
//! - `output`: tables or `--json`.
//! - `failure`: errors with their exit codes.

use std::process::ExitCode;

use clap::Parser as _;

mod admin_client;
mod cli;
mod commands;
mod failure;
mod output;
mod progress;
mod record;
mod timestamp;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chatctl: {error:#}");
            failure::exit_code(&error)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(commands::run(cli))
}
