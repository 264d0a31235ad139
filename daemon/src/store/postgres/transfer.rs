//! Moving history in and out of the PostgreSQL backend: export pages in `(room, seq)` order,
//! imports that keep every message's identity, and retention deletes in bounded batches. Same
//! semantics as the SQLite backend.

use std::collections::BTreeMap;

use protocol::{Message, RoomId, Seq};

use super::messages::MessageColumns;
use super::statements::{DELETE_EXPIRED, EXPORT_PAGE, EXPORT_PAGE_OF_ROOMS, IMPORT_MESSAGES};
use super::{PgStore, failed, room_id, seq_param, seq_value, user_id};
use crate::store::rows::client_msg_id;
use crate::store::{ExportFilter, ImportOutcome, StoreError, now_ms};

impl PgStore {
    pub(in crate::store) async fn export_page(
        &self,
        filter: &ExportFilter,
        after: Option<(&RoomId, Seq)>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        // "" sorts before every room name (bytewise, "C" collation), so no key means the
        // first page.
        let (after_room, after_seq) =
            after.map_or(("", 0), |(room, seq)| (room.as_str(), seq_param(seq)));
        let query = if filter.rooms.is_empty() {
            sqlx::query_as(EXPORT_PAGE)
        } else {
            sqlx::query_as(EXPORT_PAGE_OF_ROOMS)
        };
        let query = query
            .bind(after_room)
            .bind(after_seq)
            .bind(filter.since_ms.unwrap_or(i64::MIN))
            .bind(filter.until_ms.unwrap_or(i64::MAX))
            .bind(i64::from(limit));
        let query = if filter.rooms.is_empty() {
            query
        } else {
            let rooms: Vec<&str> = filter.rooms.iter().map(RoomId::as_str).collect();
            query.bind(rooms)
        };
        // Planned per call like every read of `messages` (see `statements`).
        let rows: Vec<ExportRow> = query
            .persistent(false)
            .fetch_all(&self.pool)
            .await
            .map_err(failed("export history"))?;
        rows.into_iter().map(ExportRow::into_message).collect()
    }

    pub(in crate::store) async fn import_batch(
        &self,
        messages: &[Message],
    ) -> Result<ImportOutcome, StoreError> {
        const OP: &str = "import history";
        if messages.is_empty() {
            return Ok(ImportOutcome::default());
        }
        let mut tx = self.begin(OP).await?;
        // Rooms in name order, like a commit takes their locks, so an import running beside
        // live sends cannot deadlock with them.
        let mut newest: BTreeMap<&RoomId, Seq> = BTreeMap::new();
        for message in messages {
            let top = newest.entry(&message.room).or_insert(Seq::ZERO);
            *top = (*top).max(message.seq);
        }
        for (room, top) in &newest {
            sqlx::query(
                "INSERT INTO rooms (name, private, last_seq, created_ms) VALUES ($1, $2, 0, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(room.as_str())
            .bind(room.is_direct())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(failed(OP))?;
            if let Some((a, b)) = room.direct_participants() {
                // Members must be users of this installation; a participant who is not keeps
                // the room readable by the other one.
                sqlx::query(
                    "INSERT INTO room_members (room, user_name) \
                     SELECT $1, name FROM users WHERE name IN ($2, $3) \
                     ON CONFLICT (room, user_name) DO NOTHING",
                )
                .bind(room.as_str())
                .bind(a.as_str())
                .bind(b.as_str())
                .execute(&mut *tx)
                .await
                .map_err(failed(OP))?;
            }
            sqlx::query("UPDATE rooms SET last_seq = GREATEST(last_seq, $2) WHERE name = $1")
                .bind(room.as_str())
                .bind(seq_param(*top))
                .execute(&mut *tx)
                .await
                .map_err(failed(OP))?;
        }
        let cmids: Vec<String> = messages.iter().map(imported_cmid).collect();
        let mut columns = MessageColumns::of(messages.iter());
        columns.cmids = cmids.iter().map(String::as_str).collect();
        let inserted = sqlx::query(IMPORT_MESSAGES)
            .bind(&columns.rooms)
            .bind(&columns.seqs)
            .bind(&columns.senders)
            .bind(&columns.cmids)
            .bind(&columns.bodies)
            .bind(&columns.times)
            .execute(&mut *tx)
            .await
            .map_err(failed(OP))?
            .rows_affected();
        tx.commit().await.map_err(failed(OP))?;
        let total = u64::try_from(messages.len()).unwrap_or(u64::MAX);
        Ok(ImportOutcome {
            inserted,
            skipped: total.saturating_sub(inserted),
        })
    }

    pub(in crate::store) async fn delete_expired(
        &self,
        room: &RoomId,
        older_than_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let deleted = sqlx::query(DELETE_EXPIRED)
            .bind(room.as_str())
            .bind(older_than_ms)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(failed("delete expired messages"))?;
        Ok(deleted.rows_affected())
    }
}

/// Every stored message has a client message id; one imported without gets a stable one
/// derived from its position, unique in its room (as in the SQLite backend).
fn imported_cmid(message: &Message) -> String {
    message.cmid.as_ref().map_or_else(
        || format!("import:{}", message.seq),
        |cmid| cmid.as_str().to_owned(),
    )
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    room: String,
    seq: i64,
    sender: String,
    cmid: String,
    body: String,
    ts_ms: i64,
}

impl ExportRow {
    fn into_message(self) -> Result<Message, StoreError> {
        Ok(Message {
            room: room_id(&self.room)?,
            seq: seq_value(self.seq)?,
            from: user_id(&self.sender)?,
            body: self.body,
            ts: self.ts_ms,
            cmid: Some(client_msg_id(&self.cmid)?),
        })
    }
}
