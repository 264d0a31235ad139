//! `chatctl`: administer a chatd daemon over its admin socket (newline-delimited JSON on a
//! Unix socket, see `protocol::admin`).
//!
//! # Exit codes
//! - 0: success.
//! - 1: the daemon refused the request (no such user or room, already exists, invalid).
//! - 2: usage error: bad arguments (clap), an unreadable configuration, a refused password
//!   input (empty, or the two entries differ).
//! - 3: cannot reach the daemon (admin socket missing, refused, or not permitted).
//! - 4: the daemon failed (internal error, no reply or an unreadable one), or chatctl itself
//!   did.
//!
//! Every error message says what to do next.
//!
//! # Layout
//! - `cli`: the clap command line; its doc comments are `--help`.
//! - `commands`: one file per command group (`user`, `room`, `status`), and the socket lookup.
//! - `admin_client`: the shared admin socket client, its failures turned into messages.
//! - `output`: tables or `--json`.
//! - `failure`: errors with their exit codes.

use std::process::ExitCode;

use clap::Parser as _;

mod admin_client;
mod cli;
mod commands;
mod failure;
mod output;

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
