//! Stored columns to protocol types, the same for both backends: ids parsed on the way out
//! (a value that does not parse is `Corrupt`, naming what and where), sequence numbers
//! between `u64` and the databases' signed 64-bit integers, and the history row.

use protocol::{ClientMsgId, Message, RoomId, Seq, UserId};

use super::{HistoryPage, HistoryRange, StoreError};

/// A message as history and resume read it from either backend.
#[derive(sqlx::FromRow)]
pub(super) struct HistoryRow {
    seq: i64,
    sender: String,
    cmid: String,
    body: String,
    ts_ms: i64,
}

impl HistoryRow {
    fn into_message(self, room: &RoomId) -> Result<Message, StoreError> {
        Ok(Message {
            room: room.clone(),
            seq: seq_value(self.seq)?,
            from: user_id(&self.sender)?,
            body: self.body,
            ts: self.ts_ms,
            cmid: Some(client_msg_id(&self.cmid)?),
        })
    }
}

/// The page of `room` from `rows` as a history query returned them: newest first for
/// `Latest` and `Before`, oldest first for `After`, with one row more than `limit` when more
/// exist in that direction. The page is oldest first.
pub(super) fn history_page(
    mut rows: Vec<HistoryRow>,
    room: &RoomId,
    range: HistoryRange,
    limit: u32,
) -> Result<HistoryPage, StoreError> {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    if !matches!(range, HistoryRange::After(_)) {
        rows.reverse();
    }
    let messages = rows
        .into_iter()
        .map(|row| row.into_message(room))
        .collect::<Result<_, _>>()?;
    Ok(HistoryPage { messages, has_more })
}

pub(super) fn user_id(raw: &str) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(|error| corrupt("user name", raw, error))
}

pub(super) fn room_id(raw: &str) -> Result<RoomId, StoreError> {
    RoomId::parse(raw).map_err(|error| corrupt("room name", raw, error))
}

pub(super) fn client_msg_id(raw: &str) -> Result<ClientMsgId, StoreError> {
    ClientMsgId::parse(raw).map_err(|error| corrupt("client message id", raw, error))
}

pub(super) fn seq_value(raw: i64) -> Result<Seq, StoreError> {
    u64::try_from(raw)
        .map(Seq)
        .map_err(|error| corrupt("sequence number", &raw.to_string(), error))
}

/// Sequence numbers are stored as signed 64-bit integers; no room reaches 2^63 messages, and
/// a bound beyond that clamps to a bound no row passes.
pub(super) fn seq_param(seq: Seq) -> i64 {
    i64::try_from(seq.0).unwrap_or(i64::MAX)
}

pub(super) fn corrupt(what: &str, raw: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        detail: format!("stored {what} {raw:?}: {error}"),
    }
}

pub(super) fn user_not_found(user: &UserId) -> StoreError {
    StoreError::NotFound {
        what: format!("user {user}"),
    }
}
