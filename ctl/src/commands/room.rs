//! `chatctl room ...`: create and list rooms, manage the members of private rooms, set a
//! room's retention.

use protocol::admin::{AdminReply, AdminRequest};

use super::{Hints, check, expect_done, unexpected};
use crate::admin_client::Admin;
use crate::cli::RoomCommand;
use crate::failure::Failure;
use crate::output::{Output, table};

pub(super) async fn run(
    admin: &mut Admin,
    output: Output,
    command: RoomCommand,
) -> Result<(), Failure> {
    match command {
        RoomCommand::Create { name, private } => {
            let request = AdminRequest::RoomCreate {
                room: name.clone(),
                private,
            };
            let hints = Hints {
                not_found: "list rooms with `chatctl room list`",
                already_exists: "list rooms with `chatctl room list`",
            };
            let reply = expect_done("room create", check(admin.request(&request).await?, hints)?)?;
            let kind = if private { "private room" } else { "room" };
            output.print(&reply, || format!("created {kind} {name}"));
        }
        RoomCommand::List => {
            let reply = check(
                admin.request(&AdminRequest::RoomList).await?,
                member_hints(),
            )?;
            let AdminReply::Rooms { rooms } = &reply else {
                return Err(unexpected("room list", &reply));
            };
            let rows: Vec<[String; 5]> = rooms
                .iter()
                .map(|room| {
                    [
                        room.name.to_string(),
                        if room.private { "private" } else { "public" }.to_owned(),
                        if room.private {
                            room.members.to_string()
                        } else {
                            "-".to_owned()
                        },
                        room.last_seq.to_string(),
                        retention(room.retention_days),
                    ]
                })
                .collect();
            output.print(&reply, || {
                table(
                    ["NAME", "ACCESS", "MEMBERS", "LAST SEQ", "RETENTION"],
                    &rows,
                )
            });
        }
        RoomCommand::AddMember { room, user } => {
            let request = AdminRequest::RoomAddMember {
                room: room.clone(),
                user: user.clone(),
            };
            let reply = check(admin.request(&request).await?, member_hints())?;
            let reply = expect_done("room add-member", reply)?;
            output.print(&reply, || format!("added {user} to {room}"));
        }
        RoomCommand::RemoveMember { room, user } => {
            let request = AdminRequest::RoomRemoveMember {
                room: room.clone(),
                user: user.clone(),
            };
            let reply = check(admin.request(&request).await?, member_hints())?;
            let reply = expect_done("room remove-member", reply)?;
            output.print(&reply, || format!("removed {user} from {room}"));
        }
        RoomCommand::SetRetention { room, days } => {
            let request = AdminRequest::RoomSetRetention {
                room: room.clone(),
                days: days.to_days(),
            };
            let hints = Hints {
                not_found: "list rooms with `chatctl room list`",
                already_exists: "nothing to do",
            };
            let reply = check(admin.request(&request).await?, hints)?;
            let reply = expect_done("room set-retention", reply)?;
            output.print(&reply, || match days.to_days() {
                None => format!("{room} now keeps history as long as the daemon's retention.days"),
                Some(0) => format!("{room} now keeps its history forever"),
                Some(days) => format!("{room} now keeps {} of history", retention(Some(days))),
            });
        }
    }
    Ok(())
}

/// The RETENTION column: the room's own retention, or `default` (the daemon's
/// `retention.days`).
fn retention(days: Option<u32>) -> String {
    match days {
        None => "default".to_owned(),
        Some(0) => "forever".to_owned(),
        Some(1) => "1 day".to_owned(),
        Some(days) => format!("{days} days"),
    }
}

fn member_hints() -> Hints {
    Hints {
        not_found: "check the names with `chatctl room list` and `chatctl user list`",
        already_exists: "nothing to do",
    }
}
