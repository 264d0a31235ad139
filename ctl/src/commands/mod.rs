//! Runs one command: finds the admin socket, connects, sends the requests and prints the
//! result. Each command group has its own file; this one holds what they share: the socket
//! lookup and the translation of `error` replies into messages with a next step.

use std::path::PathBuf;

use protocol::admin::{AdminErrorKind, AdminReply};

use crate::admin_client::Admin;
use crate::cli::{Cli, Command};
use crate::failure::Failure;
use crate::output::Output;

mod room;
mod status;
mod user;

/// Runs the command `cli` names.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = socket_path(&cli)?;
    let mut admin = Admin::connect(&socket).await?;
    let output = Output::new(cli.json);
    match cli.command {
        Command::User(command) => user::run(&mut admin, output, command).await?,
        Command::Room(command) => room::run(&mut admin, output, command).await?,
        Command::Status => status::run(&mut admin, output).await?,
    }
    Ok(())
}

/// The admin socket: `--socket`, else the one in chatd's configuration.
fn socket_path(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(socket) = &cli.socket {
        return Ok(socket.clone());
    }
    let overrides = chatd_config::Overrides {
        config_file: cli.config.clone(),
        ..Default::default()
    };
    let config = chatd_config::load(&overrides).map_err(|error| {
        Failure::Usage(format!(
            "cannot read the chatd configuration to find the admin socket: {error}\n\
             Fix the configuration, or give the socket with --socket PATH"
        ))
    })?;
    Ok(config.admin_socket_path())
}

/// What to suggest when the daemon refuses a request.
#[derive(Debug, Clone, Copy)]
struct Hints {
    not_found: &'static str,
    already_exists: &'static str,
}

/// Passes a successful reply through; turns an `error` reply into a [`Failure`] that ends
/// with the next step.
fn check(reply: AdminReply, hints: Hints) -> Result<AdminReply, Failure> {
    let AdminReply::Error { kind, message } = reply else {
        return Ok(reply);
    };
    Err(match kind {
        AdminErrorKind::NotFound => Failure::Refused(format!("{message} — {}", hints.not_found)),
        AdminErrorKind::AlreadyExists => {
            Failure::Refused(format!("{message} — {}", hints.already_exists))
        }
        AdminErrorKind::Invalid => Failure::Refused(message),
        AdminErrorKind::Internal => {
            Failure::Daemon(format!("chatd failed: {message} — see the daemon's log"))
        }
        _ => Failure::Daemon(format!(
            "chatd refused the request ({message}) for a reason this chatctl does not know — \
             are chatctl and chatd the same version?"
        )),
    })
}

/// Passes a `done` reply through; anything else is a protocol mismatch.
fn expect_done(request: &str, reply: AdminReply) -> Result<AdminReply, Failure> {
    match reply {
        AdminReply::Done => Ok(reply),
        other => Err(unexpected(request, &other)),
    }
}

/// The failure for a reply of the wrong kind.
fn unexpected(request: &str, reply: &AdminReply) -> Failure {
    let kind = serde_json::to_value(reply)
        .ok()
        .and_then(|value| value.get("reply")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    Failure::Daemon(format!(
        "chatd answered `{request}` with an unexpected `{kind}` reply — are chatctl and chatd \
         the same version?"
    ))
}
