//! One function per admin request. Failures become [`AdminReply::Error`] with a kind chatctl
//! maps to an exit code and a message that says what to do.

use protocol::admin::{
    AdminErrorKind, AdminReply, AdminRequest, RoomInfo, StatusInfo, TransportConnections, UserInfo,
};
use protocol::{CloseCode, RoomId, UserId};
use tokio::io::AsyncWrite;

use super::{Replies, history};
use crate::auth::AuthError;
use crate::broker::Event;
use crate::health;
use crate::node::Node;
use crate::store::{ExportFilter, StoreError};

/// Answers one admin request on `replies`: one reply line, or for `history_export` the
/// stream of lines that answers it.
///
/// # Errors
/// When writing to the connection fails.
pub(super) async fn handle<W: AsyncWrite + Unpin>(
    node: &Node,
    request: AdminRequest,
    replies: &mut Replies<W>,
) -> std::io::Result<()> {
    let result = match request {
        AdminRequest::RegisterStart { user, request } => node
            .auth
            .register_start(&user, request.as_bytes())
            .await
            .map(|response| AdminReply::RegisterChallenge {
                response: response.into(),
            })
            .map_err(AdminFailure::from),
        AdminRequest::RegisterFinish { user, upload, mode } => node
            .auth
            .register_finish(&user, upload.as_bytes(), mode)
            .await
            .map(|()| AdminReply::Done)
            .map_err(AdminFailure::from),
        AdminRequest::UserList => user_list(node).await,
        AdminRequest::UserDisable { user } => user_disable(node, &user).await,
        AdminRequest::UserEnable { user } => node
            .store
            .set_disabled(&user, false)
            .await
            .map(|()| AdminReply::Done)
            .map_err(Into::into),
        AdminRequest::RoomCreate { room, private } => room_create(node, &room, private).await,
        AdminRequest::RoomList => room_list(node).await,
        AdminRequest::RoomAddMember { room, user } => room_add_member(node, &room, &user).await,
        AdminRequest::RoomRemoveMember { room, user } => node
            .store
            .remove_member(&room, &user)
            .await
            .map(|()| AdminReply::Done)
            .map_err(Into::into),
        AdminRequest::RoomSetRetention { room, days } => node
            .store
            .set_room_retention(&room, days)
            .await
            .map(|()| AdminReply::Done)
            .map_err(Into::into),
        AdminRequest::Status => Ok(AdminReply::Status(status(node).await)),
        AdminRequest::HistoryExport {
            rooms,
            since_ms,
            until_ms,
        } => {
            let filter = ExportFilter {
                rooms,
                since_ms,
                until_ms,
            };
            return history::export(node, &filter, replies).await;
        }
        AdminRequest::HistoryImport { messages } => history::import(node, &messages).await,
        AdminRequest::SessionList { user } => Ok(super::sessions::list(node, user.as_ref())),
        AdminRequest::SessionKick { id, user } => {
            super::sessions::kick(node, id.as_deref(), user.as_ref())
        }
        _ => Err(AdminFailure(
            AdminErrorKind::Invalid,
            "this daemon does not know that request; upgrade it".to_owned(),
        )),
    };
    replies
        .send(&result.unwrap_or_else(AdminFailure::into_reply))
        .await
}

/// What the node reports about itself; the health part is the same check `/readyz` makes.
async fn status(node: &Node) -> StatusInfo {
    let readiness = health::check(node).await;
    StatusInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: node.started.elapsed().as_secs(),
        sessions: node.hub.session_count(),
        listeners: node.listeners.clone(),
        store: node.store.backend().to_owned(),
        store_commits: node.writer.transactions(),
        store_committed_sends: node.writer.batched_sends(),
        connections: node
            .connections()
            .into_iter()
            .map(|(transport, connections)| TransportConnections {
                transport: transport.as_str().to_owned(),
                connections,
            })
            .collect(),
        store_health: readiness.store_health(),
        broker: readiness.broker.as_str().to_owned(),
        draining: readiness.draining,
        pending_restart: node.pending_restart(),
    }
}

async fn user_list(node: &Node) -> Result<AdminReply, AdminFailure> {
    let users = node.store.users().await?;
    Ok(AdminReply::Users {
        users: users
            .into_iter()
            .map(|record| UserInfo {
                sessions: node.hub.sessions_of(&record.name),
                name: record.name,
                disabled: record.disabled,
                created_ms: record.created_ms,
            })
            .collect(),
    })
}

/// Disables the account (which also revokes its resume tokens) and closes its sessions.
async fn user_disable(node: &Node, user: &UserId) -> Result<AdminReply, AdminFailure> {
    node.store.set_disabled(user, true).await?;
    let sessions_closed = node.hub.sessions_of(user);
    node.broker.publish(&Event::Kick {
        user: user.clone(),
        code: CloseCode::UserDisabled,
    });
    Ok(AdminReply::Disabled { sessions_closed })
}

async fn room_create(
    node: &Node,
    room: &RoomId,
    private: bool,
) -> Result<AdminReply, AdminFailure> {
    if room.is_direct() {
        return Err(AdminFailure(
            AdminErrorKind::Invalid,
            "direct-message rooms are created by sending a direct message".to_owned(),
        ));
    }
    node.store.create_room(room, private).await?;
    Ok(AdminReply::Done)
}

async fn room_list(node: &Node) -> Result<AdminReply, AdminFailure> {
    let rooms = node.store.rooms().await?;
    Ok(AdminReply::Rooms {
        rooms: rooms
            .into_iter()
            .map(|record| RoomInfo {
                name: record.name,
                private: record.private,
                members: record.members,
                last_seq: record.last_seq,
                retention_days: record.retention_days,
            })
            .collect(),
    })
}

async fn room_add_member(
    node: &Node,
    room: &RoomId,
    user: &UserId,
) -> Result<AdminReply, AdminFailure> {
    if node.store.user(user).await?.is_none() {
        return Err(AdminFailure(
            AdminErrorKind::NotFound,
            format!("no user `{user}`"),
        ));
    }
    node.store.add_member(room, user).await?;
    Ok(AdminReply::Done)
}

/// An admin failure: its kind and an operator-facing message.
pub(super) struct AdminFailure(pub(super) AdminErrorKind, pub(super) String);

impl AdminFailure {
    /// The `error` reply that reports this failure.
    pub(super) fn into_reply(self) -> AdminReply {
        let Self(kind, message) = self;
        AdminReply::Error { kind, message }
    }
}

impl From<StoreError> for AdminFailure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what } => {
                Self(AdminErrorKind::NotFound, format!("{what} not found"))
            }
            StoreError::AlreadyExists { what } => Self(
                AdminErrorKind::AlreadyExists,
                format!("{what} already exists"),
            ),
            other => {
                tracing::error!(error = %other, "admin request failed in the store");
                Self(
                    AdminErrorKind::Internal,
                    format!("the store failed: {other}"),
                )
            }
        }
    }
}

impl From<AuthError> for AdminFailure {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Store(store) => store.into(),
            AuthError::NotFound => Self(AdminErrorKind::NotFound, "no such user".to_owned()),
            AuthError::AlreadyExists => Self(
                AdminErrorKind::AlreadyExists,
                "that user already exists".to_owned(),
            ),
            AuthError::Malformed(what) => {
                Self(AdminErrorKind::Invalid, format!("malformed {what}"))
            }
            other => Self(AdminErrorKind::Internal, other.to_string()),
        }
    }
}
