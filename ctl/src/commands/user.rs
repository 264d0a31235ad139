//! `chatctl user ...`. `add` and `passwd` run the client half of the OPAQUE registration
//! in chatctl (through the shared `AdminClient::register_user`), so the password never
//! leaves it: `register_start` sends the blinded `RegistrationRequest`, the daemon answers
//! with its `RegistrationResponse`, and `register_finish` uploads the sealed password file.
//! Both requests use one connection.

use std::io::BufRead as _;

use protocol::UserId;
use protocol::admin::{AdminReply, AdminRequest, RegisterMode};

use super::{Hints, check, expect_done, unexpected};
use crate::admin_client::Admin;
use crate::cli::UserCommand;
use crate::failure::Failure;
use crate::output::{Output, table, utc_time};

const LIST_USERS: &str = "list users with `chatctl user list`";

pub(super) async fn run(
    admin: &mut Admin,
    output: Output,
    command: UserCommand,
) -> Result<(), Failure> {
    match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            let password = read_password(&name, password_stdin).await?;
            let reply = register(admin, &name, &password, RegisterMode::Create).await?;
            output.print(&reply, || format!("created user {name}"));
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(&name, password_stdin).await?;
            let reply = register(admin, &name, &password, RegisterMode::Replace).await?;
            output.print(&reply, || format!("changed the password of {name}"));
        }
        UserCommand::List => {
            let reply = admin.request(&AdminRequest::UserList).await?;
            let reply = check(reply, hints())?;
            let AdminReply::Users { users } = &reply else {
                return Err(unexpected("user list", &reply));
            };
            let rows: Vec<[String; 4]> = users
                .iter()
                .map(|user| {
                    [
                        user.name.to_string(),
                        if user.disabled { "disabled" } else { "enabled" }.to_owned(),
                        user.sessions.to_string(),
                        utc_time(user.created_ms),
                    ]
                })
                .collect();
            output.print(&reply, || {
                table(["NAME", "STATUS", "SESSIONS", "CREATED"], &rows)
            });
        }
        UserCommand::Disable { name } => {
            let reply = admin
                .request(&AdminRequest::UserDisable { user: name.clone() })
                .await?;
            let reply = check(reply, hints())?;
            let AdminReply::Disabled { sessions_closed } = reply else {
                return Err(unexpected("user disable", &reply));
            };
            output.print(&reply, || {
                let plural = if sessions_closed == 1 { "" } else { "s" };
                format!("disabled {name}; closed {sessions_closed} live session{plural}")
            });
        }
        UserCommand::Enable { name } => {
            let reply = admin
                .request(&AdminRequest::UserEnable { user: name.clone() })
                .await?;
            let reply = expect_done("user enable", check(reply, hints())?)?;
            output.print(&reply, || format!("enabled {name}"));
        }
    }
    Ok(())
}

fn hints() -> Hints {
    Hints {
        not_found: LIST_USERS,
        already_exists: "choose another name, or change the password with `chatctl user passwd`",
    }
}

/// Runs OPAQUE registration against the daemon; the reply to `register_finish`.
async fn register(
    admin: &mut Admin,
    user: &UserId,
    password: &str,
    mode: RegisterMode,
) -> Result<AdminReply, Failure> {
    let reply = admin.register_user(user, password, mode).await?;
    expect_done("register_finish", check(reply, hints())?)
}

/// Reads the new password: the first line of stdin, or asked twice on the terminal without
/// echo. Refuses an empty password and a mismatch.
async fn read_password(user: &UserId, from_stdin: bool) -> Result<String, Failure> {
    let prompt = format!("New password for {user}: ");
    tokio::task::spawn_blocking(move || {
        if from_stdin {
            password_from_stdin()
        } else {
            password_from_terminal(&prompt)
        }
    })
    .await
    .map_err(|e| Failure::Usage(format!("cannot read the password: {e}")))?
}

fn password_from_stdin() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        Failure::Usage(format!("cannot read the password from standard input: {e}"))
    })?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(Failure::Usage(
            "the password on standard input is empty; nothing was changed — pipe one line \
             holding the password"
                .to_owned(),
        ));
    }
    Ok(password.to_owned())
}

fn password_from_terminal(prompt: &str) -> Result<String, Failure> {
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt).map_err(|e| {
            Failure::Usage(format!(
                "cannot read the password from the terminal ({e}) — pipe it with \
                 --password-stdin instead"
            ))
        })
    };
    let first = ask(prompt)?;
    if first.is_empty() {
        return Err(Failure::Usage(
            "the password is empty; nothing was changed — run the command again".to_owned(),
        ));
    }
    let second = ask("Repeat the password: ")?;
    if first != second {
        return Err(Failure::Usage(
            "the passwords do not match; nothing was changed — run the command again".to_owned(),
        ));
    }
    Ok(first)
}
