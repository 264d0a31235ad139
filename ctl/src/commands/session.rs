//! `chatctl session ...`: list the daemon's live sessions and close some of them. Both act on
//! the daemon that owns the admin socket only; a kick leaves the account alone, so the client
//! may reconnect (`chatctl user disable` keeps a user out).

use protocol::UserId;
use protocol::admin::{AdminReply, AdminRequest, SessionInfo};

use super::{Hints, check, unexpected};
use crate::admin_client::Admin;
use crate::cli::{KickArgs, SessionCommand};
use crate::failure::Failure;
use crate::output::{Output, table, utc_time};

pub(super) async fn run(
    admin: &mut Admin,
    output: Output,
    command: SessionCommand,
) -> Result<(), Failure> {
    match command {
        SessionCommand::List { user } => list(admin, output, user).await,
        SessionCommand::Kick(args) => kick(admin, output, args).await,
    }
}

async fn list(admin: &mut Admin, output: Output, user: Option<UserId>) -> Result<(), Failure> {
    let request = AdminRequest::SessionList { user: user.clone() };
    let reply = check(admin.request(&request).await?, hints())?;
    let AdminReply::Sessions { sessions } = &reply else {
        return Err(unexpected("session list", &reply));
    };
    output.print(&reply, || {
        if sessions.is_empty() {
            return match &user {
                Some(user) => format!("{user} has no live sessions"),
                None => "no live sessions".to_owned(),
            };
        }
        let rows: Vec<[String; 6]> = sessions.iter().map(row).collect();
        table(
            ["ID", "USER", "TRANSPORT", "REMOTE", "CONNECTED", "ROOMS"],
            &rows,
        )
    });
    Ok(())
}

fn row(session: &SessionInfo) -> [String; 6] {
    [
        session.id.clone(),
        // A session that has not logged in yet has no user.
        session
            .user
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string),
        session.transport.clone(),
        session.remote.clone(),
        utc_time(session.connected_ms),
        session.rooms.to_string(),
    ]
}

async fn kick(admin: &mut Admin, output: Output, args: KickArgs) -> Result<(), Failure> {
    let KickArgs { id, user } = args;
    let request = AdminRequest::SessionKick {
        id: id.clone(),
        user: user.clone(),
    };
    let reply = check(admin.request(&request).await?, hints())?;
    let AdminReply::Kicked { sessions } = reply else {
        return Err(unexpected("session kick", &reply));
    };
    output.print(&reply, || match (&id, &user) {
        (Some(id), _) => format!("closed session {id}"),
        (None, Some(user)) if sessions == 0 => {
            format!("{user} has no live sessions; nothing was closed")
        }
        (None, Some(user)) => {
            let plural = if sessions == 1 { "" } else { "s" };
            format!("closed {sessions} session{plural} of {user}")
        }
        (None, None) => format!("closed {sessions} sessions"),
    });
    Ok(())
}

fn hints() -> Hints {
    Hints {
        not_found: "list the live sessions with `chatctl session list`; a client that \
                    reconnected has a new id",
        already_exists: "",
    }
}
