//! Live sessions through the admin socket: `session_list` reads the hub's registry of this
//! node's connections and `session_kick` closes some of them with close code `kicked`, through
//! the same kick signal that closes slow consumers and disabled users. Neither looks beyond
//! this node, and a kick leaves the account alone: the client may reconnect and resume.

use std::time::{SystemTime, UNIX_EPOCH};

use protocol::admin::{AdminErrorKind, AdminReply, SessionInfo};
use protocol::{CloseCode, UserId};

use super::commands::AdminFailure;
use crate::hub::{SessionId, SessionSummary};
use crate::node::Node;

/// Answers `session_list`: every live session on this node, or `user`'s, oldest first.
pub(super) fn list(node: &Node, user: Option<&UserId>) -> AdminReply {
    AdminReply::Sessions {
        sessions: node.hub.sessions(user).into_iter().map(to_info).collect(),
    }
}

/// Answers `session_kick`: closes session `id`, or every session of `user` (exactly one of
/// the two), and says how many were told to close.
pub(super) fn kick(
    node: &Node,
    id: Option<&str>,
    user: Option<&UserId>,
) -> Result<AdminReply, AdminFailure> {
    let sessions = match (id, user) {
        (Some(text), None) => {
            let kicked =
                SessionId::parse(text).filter(|id| node.hub.kick_session(*id, CloseCode::Kicked));
            let Some(id) = kicked else {
                return Err(AdminFailure(
                    AdminErrorKind::NotFound,
                    format!("no session `{text}` on this node"),
                ));
            };
            tracing::info!(session = %id, "session kicked by an operator");
            1
        }
        (None, Some(user)) => {
            let sessions = node.hub.kick_user(user, CloseCode::Kicked);
            tracing::info!(%user, sessions, "sessions kicked by an operator");
            sessions
        }
        (Some(_), Some(_)) | (None, None) => {
            return Err(AdminFailure(
                AdminErrorKind::Invalid,
                "`session_kick` names exactly one of `id` and `user`".to_owned(),
            ));
        }
    };
    Ok(AdminReply::Kicked { sessions })
}

fn to_info(summary: SessionSummary) -> SessionInfo {
    let connection = summary.connection;
    SessionInfo {
        id: summary.id.to_string(),
        user: summary.user,
        transport: connection.transport.to_owned(),
        remote: connection.remote.to_string(),
        connected_ms: epoch_ms(connection.connected),
        rooms: summary.rooms,
    }
}

/// Milliseconds since the Unix epoch; 0 for a clock set before it.
fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}
