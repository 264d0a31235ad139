//! The message path of the SQLite backend: committing batches of sends (sequence numbers,
//! resend detection) and reading history pages.

use std::collections::{BTreeMap, HashMap, HashSet};

use protocol::{ClientMsgId, Message, RoomId, Seq};
use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::{SqliteStore, failed, seq_value};
use crate::store::batch::{MessageKey, Slot, StoredMessage};
use crate::store::rows::{HistoryRow, history_page, seq_param};
use crate::store::{Committed, HistoryPage, HistoryRange, NewMessage, StoreError};

impl SqliteStore {
    /// One transaction for the whole batch. A room that does not exist fails the whole batch
    /// with `NotFound` and stores nothing: rooms are never deleted and the session checks the
    /// room before it queues a send, so that is a bug, not a condition to serve around.
    pub(in crate::store) async fn append_batch(
        &self,
        batch: &[NewMessage],
        now_ms: i64,
    ) -> Result<Vec<Committed>, StoreError> {
        const OP: &str = "append messages";
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write(OP).await?;
        let stored = find_stored(&mut tx, batch).await?;

        let mut first_of_key: HashMap<MessageKey<'_>, usize> = HashMap::new();
        // Sorted by room name so that backends with row locks (Postgres) always lock rooms in
        // the same order and two writers cannot deadlock.
        let mut new_per_room: BTreeMap<&RoomId, u64> = BTreeMap::new();
        let mut slots = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            let key = MessageKey::of(message);
            if let Some(earlier) = stored.get(&key) {
                slots.push(Slot::Stored(earlier.clone()));
            } else if let Some(&first) = first_of_key.get(&key) {
                slots.push(Slot::SameAs(first));
            } else {
                first_of_key.insert(key, index);
                *new_per_room.entry(&message.room).or_default() += 1;
                slots.push(Slot::New);
            }
        }

        let mut next_seq: HashMap<&RoomId, u64> = HashMap::with_capacity(new_per_room.len());
        for (room, count) in new_per_room {
            let last = reserve_seqs(&mut tx, room, count).await?;
            next_seq.insert(room, last - count + 1);
        }

        let mut committed: Vec<Committed> = Vec::with_capacity(batch.len());
        for (message, slot) in batch.iter().zip(slots) {
            let entry = match slot {
                Slot::Stored(earlier) => Committed {
                    message: earlier.into_message(message),
                    duplicate: true,
                },
                Slot::SameAs(first) => Committed {
                    message: committed[first].message.clone(),
                    duplicate: true,
                },
                Slot::New => {
                    let seq =
                        next_seq
                            .get_mut(&message.room)
                            .ok_or_else(|| StoreError::Corrupt {
                                detail: format!("no sequence reserved for room {}", message.room),
                            })?;
                    let message = Message {
                        room: message.room.clone(),
                        seq: Seq(*seq),
                        from: message.from.clone(),
                        body: message.body.clone(),
                        ts: now_ms,
                        cmid: Some(message.cmid.clone()),
                    };
                    *seq += 1;
                    Committed {
                        message,
                        duplicate: false,
                    }
                }
            };
            committed.push(entry);
        }

        let new: Vec<&Message> = committed
            .iter()
            .filter(|entry| !entry.duplicate)
            .map(|entry| &entry.message)
            .collect();
        insert_messages(&mut tx, &new).await?;
        tx.commit().await.map_err(failed(OP))?;
        Ok(committed)
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
            HistoryRange::Latest => sqlx::query_as(
                "SELECT seq, sender, cmid, body, ts_ms FROM messages \
                 WHERE room = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(room.as_str())
            .bind(fetch),
            HistoryRange::Before(before) => sqlx::query_as(
                "SELECT seq, sender, cmid, body, ts_ms FROM messages \
                 WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(room.as_str())
            .bind(seq_param(before))
            .bind(fetch),
            HistoryRange::After(after) => sqlx::query_as(
                "SELECT seq, sender, cmid, body, ts_ms FROM messages \
                 WHERE room = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
            )
            .bind(room.as_str())
            .bind(seq_param(after))
            .bind(fetch),
        };
        let rows: Vec<HistoryRow> = query.fetch_all(&self.pool).await.map_err(failed(OP))?;
        history_page(rows, room, range, limit)
    }
}

/// Rows per multi-row statement: 100 messages are 600 parameters, far below SQLite's 32 766
/// and Postgres's 65 535, and large enough that a full batch takes few statements.
const ROWS_PER_STATEMENT: usize = 100;

/// The already committed messages among the batch's keys.
async fn find_stored<'a>(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &'a [NewMessage],
) -> Result<HashMap<MessageKey<'a>, StoredMessage>, StoreError> {
    const OP: &str = "find resent messages";
    let keys: Vec<MessageKey<'a>> = batch
        .iter()
        .map(MessageKey::of)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut stored = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        // A join, not `(room, sender, cmid) IN (VALUES ...)`: SQLite plans the IN form as a
        // scan of the whole table, the join as one unique-index lookup per key.
        let mut query = QueryBuilder::<Sqlite>::new("WITH k (room, sender, cmid) AS (");
        query.push_values(chunk, |mut row, key| {
            row.push_bind(key.room)
                .push_bind(key.sender)
                .push_bind(key.cmid);
        });
        query.push(
            ") SELECT m.room, m.sender, m.cmid, m.seq, m.body, m.ts_ms \
             FROM k JOIN messages m \
             ON m.room = k.room AND m.sender = k.sender AND m.cmid = k.cmid",
        );
        let rows: Vec<StoredRow> = query
            .build_query_as()
            .fetch_all(&mut **tx)
            .await
            .map_err(failed(OP))?;
        for row in rows {
            let wanted = MessageKey {
                room: &row.room,
                sender: &row.sender,
                cmid: &row.cmid,
            };
            // Equality on TEXT is binary in both backends, so every row matches a key.
            if let Some(key) = chunk.iter().find(|key| **key == wanted) {
                let message = StoredMessage {
                    seq: seq_value(row.seq)?,
                    body: row.body,
                    ts_ms: row.ts_ms,
                };
                stored.insert(*key, message);
            }
        }
    }
    Ok(stored)
}

/// Advances `room`'s last sequence number by `count` and returns the new value; the batch's new
/// messages of that room take the `count` numbers ending there. The row stays locked until
/// commit, so no other transaction can take the same numbers.
async fn reserve_seqs(
    tx: &mut Transaction<'static, Sqlite>,
    room: &RoomId,
    count: u64,
) -> Result<u64, StoreError> {
    const OP: &str = "reserve sequence numbers";
    let count = i64::try_from(count).map_err(|_| StoreError::Corrupt {
        detail: format!("batch of {count} messages for room {room}"),
    })?;
    let last: Option<i64> = sqlx::query_scalar(
        "UPDATE rooms SET last_seq = last_seq + $2 WHERE name = $1 RETURNING last_seq",
    )
    .bind(room.as_str())
    .bind(count)
    .fetch_optional(&mut **tx)
    .await
    .map_err(failed(OP))?;
    let last = last.ok_or_else(|| StoreError::NotFound {
        what: format!("room {room}"),
    })?;
    Ok(seq_value(last)?.0)
}

async fn insert_messages(
    tx: &mut Transaction<'static, Sqlite>,
    messages: &[&Message],
) -> Result<(), StoreError> {
    const OP: &str = "insert messages";
    for chunk in messages.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (room, seq, sender, cmid, body, ts_ms) ",
        );
        query.push_values(chunk, |mut row, message| {
            row.push_bind(message.room.as_str())
                .push_bind(seq_param(message.seq))
                .push_bind(message.from.as_str())
                .push_bind(message.cmid.as_ref().map(ClientMsgId::as_str))
                .push_bind(message.body.as_str())
                .push_bind(message.ts);
        });
        query.build().execute(&mut **tx).await.map_err(failed(OP))?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    room: String,
    sender: String,
    cmid: String,
    seq: i64,
    body: String,
    ts_ms: i64,
}
