//! Moving history in and out of the SQLite backend: export pages in `(room, seq)` order,
//! imports that keep every message's identity, and retention deletes in bounded batches.

use std::collections::BTreeMap;

use protocol::{Message, RoomId, Seq};
use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, failed, seq_value, user_id};
use crate::store::rows::seq_param;
use crate::store::{ExportFilter, ImportOutcome, StoreError};

impl SqliteStore {
    pub(in crate::store) async fn export_page(
        &self,
        filter: &ExportFilter,
        after: Option<(&RoomId, Seq)>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        if filter.rooms.is_empty() {
            return self.export_rows(None, filter, after, limit).await;
        }
        // With a room filter, each room is read on its own (`room = ? AND seq > ?`): an
        // `IN` list would make SQLite restart every page at the start of the room.
        let mut rooms: Vec<&RoomId> = filter.rooms.iter().collect();
        rooms.sort();
        rooms.dedup();
        let mut page = Vec::new();
        for room in rooms {
            let from = match after {
                Some((after_room, _)) if room < after_room => continue,
                Some((after_room, seq)) if room == after_room => Some((room, seq)),
                _ => None,
            };
            let wanted = limit.saturating_sub(u32::try_from(page.len()).unwrap_or(u32::MAX));
            if wanted == 0 {
                break;
            }
            page.extend(self.export_rows(Some(room), filter, from, wanted).await?);
        }
        Ok(page)
    }

    /// One export page over every room, or over `only` when given.
    async fn export_rows(
        &self,
        only: Option<&RoomId>,
        filter: &ExportFilter,
        after: Option<(&RoomId, Seq)>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        // The row-value comparison walks the (room, seq) primary key from the last key the
        // caller saw, so every page costs the same however deep into the export it is.
        let (after_room, after_seq) = match (after, only) {
            (Some((room, seq)), _) => (room.as_str(), seq_param(seq)),
            (None, Some(room)) => (room.as_str(), 0),
            (None, None) => ("", 0),
        };
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT room, seq, sender, cmid, body, ts_ms FROM messages WHERE (room, seq) > (",
        );
        query
            .push_bind(after_room)
            .push(", ")
            .push_bind(after_seq)
            .push(")");
        if let Some(room) = only {
            query.push(" AND room = ").push_bind(room.as_str());
        }
        query
            .push(" AND ts_ms >= ")
            .push_bind(filter.since_ms.unwrap_or(i64::MIN));
        query
            .push(" AND ts_ms < ")
            .push_bind(filter.until_ms.unwrap_or(i64::MAX));
        query
            .push(" ORDER BY room, seq LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<ExportRow> = query
            .build_query_as()
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
        let mut tx = self.begin_write(OP).await?;
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
            .bind(crate::store::now_ms())
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
            sqlx::query("UPDATE rooms SET last_seq = MAX(last_seq, $2) WHERE name = $1")
                .bind(room.as_str())
                .bind(seq_param(*top))
                .execute(&mut *tx)
                .await
                .map_err(failed(OP))?;
        }
        let mut inserted = 0;
        for chunk in messages.chunks(ROWS_PER_STATEMENT) {
            let mut query: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO messages (room, seq, sender, cmid, body, ts_ms) ");
            query.push_values(chunk, |mut row, message| {
                row.push_bind(message.room.as_str())
                    .push_bind(seq_param(message.seq))
                    .push_bind(message.from.as_str())
                    .push_bind(imported_cmid(message))
                    .push_bind(message.body.as_str())
                    .push_bind(message.ts);
            });
            // Either key (room, seq) or (room, sender, cmid) already stored means this
            // message was imported (or sent) before.
            query.push(" ON CONFLICT DO NOTHING");
            inserted += query
                .build()
                .execute(&mut *tx)
                .await
                .map_err(failed(OP))?
                .rows_affected();
        }
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
        // Only the room's oldest `limit` messages are looked at, so a sweep of a room with
        // nothing to delete reads one bounded page, not the whole room.
        let deleted = sqlx::query(
            "DELETE FROM messages WHERE room = $1 AND seq IN ( \
                 SELECT seq FROM ( \
                     SELECT seq, ts_ms FROM messages WHERE room = $1 ORDER BY seq LIMIT $3 \
                 ) AS oldest WHERE ts_ms < $2)",
        )
        .bind(room.as_str())
        .bind(older_than_ms)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(failed("delete expired messages"))?;
        Ok(deleted.rows_affected())
    }
}

/// Rows per multi-row insert (6 parameters each), as in the message path.
const ROWS_PER_STATEMENT: usize = 100;

/// Every stored message has a client message id; one imported without gets a stable one
/// derived from its position, unique in its room.
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
            room: RoomId::parse(&self.room)
                .map_err(|error| super::corrupt("room name", &self.room, error))?,
            seq: seq_value(self.seq)?,
            from: user_id(&self.sender)?,
            body: self.body,
            ts: self.ts_ms,
            cmid: Some(
                protocol::ClientMsgId::parse(&self.cmid)
                    .map_err(|error| super::corrupt("client message id", &self.cmid, error))?,
            ),
        })
    }
}
