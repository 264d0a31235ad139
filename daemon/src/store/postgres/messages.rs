//! The message path of the PostgreSQL backend: committing batches of sends and reading
//! history pages.
//!
//! A batch costs one round trip whatever its size: the server-side function
//! `chatd_append_batch` does the room locks, resend detection, sequence numbers and insert.

use protocol::{ClientMsgId, Message, RoomId};

use super::statements::{
    APPEND_BATCH, APPEND_ROOM_MISSING, HISTORY_AFTER, HISTORY_BEFORE, HISTORY_LATEST,
};
use super::{PgStore, failed, seq_param, seq_value};
use crate::store::rows::{HistoryRow, history_page};
use crate::store::{Committed, HistoryPage, HistoryRange, NewMessage, StoreError};

impl PgStore {
    /// One transaction for the whole batch, with the SQLite backend's semantics: a room that
    /// does not exist fails the whole batch with `NotFound` and stores nothing.
    ///
    /// The work is one call of `chatd_append_batch` (migration `0002_commit_function.sql`),
    /// which locks the batch's rooms in name order, looks for resends, takes sequence numbers
    /// and inserts, so a batch costs one round trip. Against other daemons on the same
    /// database the room locks make two writers of one room take turns (gap-free sequences)
    /// and let a resend racing its first commit on another node be answered as a duplicate.
    ///
    /// The call runs outside a transaction block: the server commits when the statement ends
    /// and sends ReadyForQuery only after the commit (with `synchronous_commit = on`, after
    /// the WAL is flushed), and `fetch_all` returns only on ReadyForQuery, so nothing is
    /// acknowledged before it is committed. A failed commit arrives as an error instead.
    pub(in crate::store) async fn append_batch(
        &self,
        batch: &[NewMessage],
        now_ms: i64,
    ) -> Result<Vec<Committed>, StoreError> {
        const OP: &str = "append messages";
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len();
        let (mut rooms, mut senders, mut cmids, mut bodies) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for message in batch {
            rooms.push(message.room.as_str());
            senders.push(message.from.as_str());
            cmids.push(message.cmid.as_str());
            bodies.push(message.body.as_str());
        }
        let rows: Vec<(i64, String, i64, bool)> = sqlx::query_as(APPEND_BATCH)
            .bind(&rooms)
            .bind(&senders)
            .bind(&cmids)
            .bind(&bodies)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| match room_missing(&error) {
                Some(room) => StoreError::NotFound {
                    what: format!("room {room}"),
                },
                None => failed(OP)(error),
            })?;
        if rows.len() != n {
            return Err(StoreError::Corrupt {
                detail: format!("{OP}: {} results for a batch of {n}", rows.len()),
            });
        }
        batch
            .iter()
            .zip(rows)
            .map(|(message, (seq, body, ts_ms, duplicate))| {
                Ok(Committed {
                    message: Message {
                        room: message.room.clone(),
                        seq: seq_value(seq)?,
                        from: message.from.clone(),
                        body,
                        ts: ts_ms,
                        cmid: Some(message.cmid.clone()),
                    },
                    duplicate,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn history(
        &self,
        room: &RoomId,
        range: HistoryRange,
        limit: u32,
    ) -> Result<HistoryPage, StoreError> {
        const OP: &str = "read history";
        // One row more than asked says whether more exist in that direction.
        let fetch = i64::from(limit) + 1;
        let query = match range {
            HistoryRange::Latest => sqlx::query_as(HISTORY_LATEST)
                .bind(room.as_str())
                .bind(fetch),
            HistoryRange::Before(before) => sqlx::query_as(HISTORY_BEFORE)
                .bind(room.as_str())
                .bind(seq_param(before))
                .bind(fetch),
            HistoryRange::After(after) => sqlx::query_as(HISTORY_AFTER)
                .bind(room.as_str())
                .bind(seq_param(after))
                .bind(fetch),
        };
        // Planned per call, not cached: see `statements` on why reads of `messages` are not
        // prepared once per connection.
        let rows: Vec<HistoryRow> = query
            .persistent(false)
            .fetch_all(&self.pool)
            .await
            .map_err(failed(OP))?;
        history_page(rows, room, range, limit)
    }
}

/// The room a failed `chatd_append_batch` call named as missing (SQLSTATE `CHD01`).
fn room_missing(error: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    if db.code().as_deref() != Some(APPEND_ROOM_MISSING) {
        return None;
    }
    let detail = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.detail().map(str::to_owned));
    Some(detail.unwrap_or_default())
}

/// Messages split into one array per column, the shape `unnest` takes.
pub(super) struct MessageColumns<'a> {
    pub(super) rooms: Vec<&'a str>,
    pub(super) seqs: Vec<i64>,
    pub(super) senders: Vec<&'a str>,
    pub(super) cmids: Vec<&'a str>,
    pub(super) bodies: Vec<&'a str>,
    pub(super) times: Vec<i64>,
}

impl<'a> MessageColumns<'a> {
    /// The columns of `messages`; a message without a client message id gets an empty one
    /// (callers that can meet one replace `cmids`).
    pub(super) fn of(messages: impl ExactSizeIterator<Item = &'a Message>) -> Self {
        let n = messages.len();
        let mut columns = Self {
            rooms: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            senders: Vec::with_capacity(n),
            cmids: Vec::with_capacity(n),
            bodies: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
        };
        for message in messages {
            columns.rooms.push(message.room.as_str());
            columns.seqs.push(seq_param(message.seq));
            columns.senders.push(message.from.as_str());
            columns
                .cmids
                .push(message.cmid.as_ref().map_or("", ClientMsgId::as_str));
            columns.bodies.push(message.body.as_str());
            columns.times.push(message.ts);
        }
        columns
    }
}
