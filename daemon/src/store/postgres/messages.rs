//! The message path of the PostgreSQL backend: committing batches of sends (room locks,
//! sequence numbers, resend detection) and reading history pages.
//!
//! A batch costs the same six round trips whatever its size: begin, lock the rooms, look for
//! resends, take sequence numbers, insert, commit.

use std::collections::{BTreeSet, HashMap, HashSet};

use protocol::{ClientMsgId, Message, RoomId, Seq};
use sqlx::{Postgres, Transaction};

use super::statements::{
    FIND_STORED, HISTORY_AFTER, HISTORY_BEFORE, HISTORY_LATEST, INSERT_MESSAGES, LOCK_ROOMS,
    RESERVE_SEQS,
};
use super::{PgStore, corrupt, failed, seq_param, seq_value, user_id};
use crate::store::batch::{MessageKey, Slot, StoredMessage};
use crate::store::{Committed, HistoryPage, HistoryRange, NewMessage, StoreError};

impl PgStore {
    /// One transaction for the whole batch, with the SQLite backend's semantics: a room that
    /// does not exist fails the whole batch with `NotFound` and stores nothing.
    ///
    /// Against other daemons on the same database: the rows of the batch's rooms are locked
    /// first, in name order, and held until commit. Two writers of one room therefore take
    /// turns (gap-free sequences), two writers of several rooms cannot deadlock, and the
    /// search for resends runs after any concurrent commit of the same room has finished, so
    /// a resend racing its first commit on another node is answered as a duplicate instead of
    /// failing the batch on the unique index.
    pub(in crate::store) async fn append_batch(
        &self,
        batch: &[NewMessage],
        now_ms: i64,
    ) -> Result<Vec<Committed>, StoreError> {
        const OP: &str = "append messages";
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin(OP).await?;
        let rooms: BTreeSet<&RoomId> = batch.iter().map(|message| &message.room).collect();
        lock_rooms(&mut tx, &rooms).await?;
        let stored = find_stored(&mut tx, batch).await?;

        let mut first_of_key: HashMap<MessageKey<'_>, usize> = HashMap::new();
        let mut new_per_room: HashMap<&RoomId, u64> = HashMap::new();
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

        let mut next_seq = reserve_seqs(&mut tx, &new_per_room).await?;
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
                    let seq = next_seq.get_mut(message.room.as_str()).ok_or_else(|| {
                        StoreError::Corrupt {
                            detail: format!("no sequence reserved for room {}", message.room),
                        }
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
        let mut rows: Vec<HistoryRow> = query
            .persistent(false)
            .fetch_all(&self.pool)
            .await
            .map_err(failed(OP))?;
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
}

/// Locks the rows of `rooms` in name order until commit; the first one missing fails the
/// batch with `NotFound`.
async fn lock_rooms(
    tx: &mut Transaction<'static, Postgres>,
    rooms: &BTreeSet<&RoomId>,
) -> Result<(), StoreError> {
    const OP: &str = "lock rooms";
    let names: Vec<&str> = rooms.iter().map(|room| room.as_str()).collect();
    let found: Vec<String> = sqlx::query_scalar(LOCK_ROOMS)
        .bind(&names)
        .fetch_all(&mut **tx)
        .await
        .map_err(failed(OP))?;
    if found.len() == names.len() {
        return Ok(());
    }
    let found: HashSet<&str> = found.iter().map(String::as_str).collect();
    let missing = rooms
        .iter()
        .find(|room| !found.contains(room.as_str()))
        .map_or_else(String::new, ToString::to_string);
    Err(StoreError::NotFound {
        what: format!("room {missing}"),
    })
}

/// The already committed messages among the batch's keys.
async fn find_stored<'a>(
    tx: &mut Transaction<'static, Postgres>,
    batch: &'a [NewMessage],
) -> Result<HashMap<MessageKey<'a>, StoredMessage>, StoreError> {
    const OP: &str = "find resent messages";
    let keys: HashSet<MessageKey<'a>> = batch.iter().map(MessageKey::of).collect();
    let (mut rooms, mut senders, mut cmids) = (
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
    );
    for key in &keys {
        rooms.push(key.room);
        senders.push(key.sender);
        cmids.push(key.cmid);
    }
    let rows: Vec<StoredRow> = sqlx::query_as(FIND_STORED)
        .bind(&rooms)
        .bind(&senders)
        .bind(&cmids)
        .persistent(false)
        .fetch_all(&mut **tx)
        .await
        .map_err(failed(OP))?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let wanted = MessageKey {
            room: &row.room,
            sender: &row.sender,
            cmid: &row.cmid,
        };
        // The columns compare bytewise ("C" collation), so every row matches a key. A linear
        // search: `HashSet::get` would tie the row's lifetime to the batch's, and a batch has
        // a few hundred keys at most.
        if let Some(key) = keys.iter().find(|key| **key == wanted) {
            let message = StoredMessage {
                seq: seq_value(row.seq)?,
                body: row.body,
                ts_ms: row.ts_ms,
            };
            stored.insert(*key, message);
        }
    }
    Ok(stored)
}

/// Advances each room's last sequence number by its count of new messages; returns, per room
/// name, the first of the numbers taken (they end at the new `last_seq`).
async fn reserve_seqs(
    tx: &mut Transaction<'static, Postgres>,
    new_per_room: &HashMap<&RoomId, u64>,
) -> Result<HashMap<String, u64>, StoreError> {
    const OP: &str = "reserve sequence numbers";
    if new_per_room.is_empty() {
        return Ok(HashMap::new());
    }
    let mut names = Vec::with_capacity(new_per_room.len());
    let mut counts = Vec::with_capacity(new_per_room.len());
    for (room, count) in new_per_room {
        names.push(room.as_str());
        counts.push(i64::try_from(*count).map_err(|_| StoreError::Corrupt {
            detail: format!("batch of {count} messages for room {room}"),
        })?);
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(RESERVE_SEQS)
        .bind(&names)
        .bind(&counts)
        .fetch_all(&mut **tx)
        .await
        .map_err(failed(OP))?;
    let mut first = HashMap::with_capacity(rows.len());
    for (name, last) in rows {
        let last = seq_value(last)?.0;
        let count = new_per_room
            .iter()
            .find(|(room, _)| room.as_str() == name)
            .map_or(0, |(_, count)| *count);
        first.insert(name, last + 1 - count);
    }
    Ok(first)
}

async fn insert_messages(
    tx: &mut Transaction<'static, Postgres>,
    messages: &[&Message],
) -> Result<(), StoreError> {
    const OP: &str = "insert messages";
    if messages.is_empty() {
        return Ok(());
    }
    let columns = MessageColumns::of(messages.iter().copied());
    sqlx::query(INSERT_MESSAGES)
        .bind(&columns.rooms)
        .bind(&columns.seqs)
        .bind(&columns.senders)
        .bind(&columns.cmids)
        .bind(&columns.bodies)
        .bind(&columns.times)
        .execute(&mut **tx)
        .await
        .map_err(failed(OP))?;
    Ok(())
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

#[derive(sqlx::FromRow)]
struct HistoryRow {
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

#[derive(sqlx::FromRow)]
struct StoredRow {
    room: String,
    sender: String,
    cmid: String,
    seq: i64,
    body: String,
    ts_ms: i64,
}

pub(super) fn client_msg_id(raw: &str) -> Result<ClientMsgId, StoreError> {
    ClientMsgId::parse(raw).map_err(|error| corrupt("client message id", raw, error))
}
