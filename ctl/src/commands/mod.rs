//! Runs one command: finds the admin socket, connects, sends the requests and prints the
//! result. Each command group has its own file; this one holds what they share: the socket
//! lookup and the translation of `error` replies into messages with a next step. `db`
//! commands are the exception: they open the database, not the socket; `completions` and
//! `man` contact nothing.

use std::path::{Path, PathBuf};

use protocol::admin::{AdminErrorKind, AdminReply};

use crate::admin_client::Admin;
use crate::cli::{Cli, Command, HistoryCommand};
use crate::failure::Failure;
use crate::output::Output;

mod completions;
mod db;
mod history;
mod man;
mod room;
mod session;
mod status;
mod user;

/// Runs the command `cli` names.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        config,
        socket,
        json,
        command,
    } = cli;
    let output = Output::new(json);
    let config = config.as_deref();
    match command {
        Command::User(command) => {
            user::run(&mut connect(socket, config).await?, output, command).await?;
        }
        Command::Room(command) => {
            room::run(&mut connect(socket, config).await?, output, command).await?;
        }
        Command::Session(command) => {
            session::run(&mut connect(socket, config).await?, output, command).await?;
        }
        Command::Status => status::run(&mut connect(socket, config).await?, output).await?,
        Command::History(HistoryCommand::Export(args)) => {
            // The export's answer is a stream of lines, read on a connection of its own.
            history::export(&socket_path(socket, config)?, args).await?;
        }
        Command::History(HistoryCommand::Import { file }) => {
            history::import(&mut connect(socket, config).await?, output, &file).await?;
        }
        Command::Db(command) => db::run(config, output, command).await?,
        Command::Completions { shell } => completions::print(shell)?,
        Command::Man { output: dir } => man::run(dir.as_deref())?,
    }
    Ok(())
}

/// Connects to the admin socket that `socket_path` finds.
async fn connect(socket: Option<PathBuf>, config_file: Option<&Path>) -> Result<Admin, Failure> {
    Admin::connect(&socket_path(socket, config_file)?).await
}

/// The admin socket: `--socket`, else the one in chatd's configuration.
fn socket_path(socket: Option<PathBuf>, config_file: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(socket) = socket {
        return Ok(socket);
    }
    let config = load_config(config_file, "find the admin socket").map_err(|error| {
        Failure::Usage(format!(
            "{error}\nFix the configuration, or give the socket with --socket PATH"
        ))
    })?;
    Ok(config.admin_socket_path())
}

/// chatd's configuration, as chatd would load it (file, then `CHATD_*` variables); the
/// error says what it was needed `for_what`.
fn load_config(config_file: Option<&Path>, for_what: &str) -> Result<chatd_config::Config, String> {
    let overrides = chatd_config::Overrides {
        config_file: config_file.map(Path::to_path_buf),
        ..Default::default()
    };
    chatd_config::load(&overrides)
        .map_err(|error| format!("cannot read the chatd configuration to {for_what}: {error}"))
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
