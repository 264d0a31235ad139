//! The retention sweeper: a background task that, every `sweep_interval`, deletes messages
//! older than each room's retention (its own, else the global one) in bounded batches, so
//! no single statement holds the database for long and a sweep can stop between batches at
//! shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError, now_ms};

/// What the sweeper needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    /// Days kept in rooms without their own retention; 0 keeps forever.
    pub default_days: u32,
    /// Time between sweeps.
    pub sweep_interval: Duration,
    /// Most messages deleted per statement.
    pub batch: u32,
}

const MS_PER_DAY: i64 = 86_400_000;

/// Runs sweeps until `token` is cancelled. The first sweep runs one interval after start,
/// so a restart loop cannot turn into a delete loop.
pub async fn run(store: Store, settings: RetentionSettings, token: CancellationToken) {
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(settings.sweep_interval) => {}
        }
        match sweep(&store, settings, &token).await {
            Ok(0) => tracing::debug!("retention sweep: nothing expired"),
            Ok(deleted) => tracing::info!(deleted, "retention sweep deleted expired messages"),
            Err(error) => tracing::warn!(%error, "retention sweep failed; retrying next interval"),
        }
    }
}

/// One pass over every room; returns how many messages were deleted.
///
/// # Errors
/// When the store fails; rooms already swept stay swept.
pub async fn sweep(
    store: &Store,
    settings: RetentionSettings,
    token: &CancellationToken,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for room in store.all_room_names().await? {
        let Some(record) = store.room(&room).await? else {
            continue;
        };
        let days = record.retention_days.unwrap_or(settings.default_days);
        if days == 0 {
            continue;
        }
        let cutoff = now_ms().saturating_sub(i64::from(days).saturating_mul(MS_PER_DAY));
        loop {
            if token.is_cancelled() {
                return Ok(deleted);
            }
            let removed = store.delete_expired(&room, cutoff, settings.batch).await?;
            deleted += removed;
            if removed < u64::from(settings.batch) {
                break;
            }
            // Let sends and reads in between batches.
            tokio::task::yield_now().await;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use protocol::{ClientMsgId, RoomId, UserId};

    use super::*;
    use crate::store::tests::TempSqlite;
    use crate::store::{HistoryRange, NewMessage};

    async fn fill(store: &Store, room: &RoomId, ages_in_days: &[i64]) {
        store.create_room(room, false).await.unwrap();
        for (i, age) in ages_in_days.iter().enumerate() {
            let message = NewMessage {
                room: room.clone(),
                from: UserId::parse("alice").unwrap(),
                cmid: ClientMsgId::parse(&format!("m{i}")).unwrap(),
                body: "x".to_owned(),
            };
            store
                .append_batch(&[message], now_ms() - age * MS_PER_DAY)
                .await
                .unwrap();
        }
    }

    async fn seqs(store: &Store, room: &RoomId) -> Vec<u64> {
        let page = store
            .history(room, HistoryRange::Latest, 100)
            .await
            .unwrap();
        page.messages.iter().map(|m| m.seq.0).collect()
    }

    #[tokio::test]
    async fn a_sweep_applies_room_retention_over_the_global_one() {
        let db = TempSqlite::new().await;
        let store = &db.store;
        let (global, short, forever) = (
            RoomId::parse("global").unwrap(),
            RoomId::parse("short").unwrap(),
            RoomId::parse("forever").unwrap(),
        );
        let ages = [40, 20, 8, 3, 0];
        fill(store, &global, &ages).await;
        fill(store, &short, &ages).await;
        fill(store, &forever, &ages).await;
        store.set_room_retention(&short, Some(5)).await.unwrap();
        store.set_room_retention(&forever, Some(0)).await.unwrap();

        let settings = RetentionSettings {
            default_days: 10,
            sweep_interval: Duration::from_secs(3600),
            batch: 1,
        };
        let token = CancellationToken::new();
        let deleted = sweep(store, settings, &token).await.unwrap();
        assert_eq!(
            deleted,
            2 + 3,
            "two in `global` (10 days), three in `short` (5 days)"
        );
        assert_eq!(seqs(store, &global).await, [3, 4, 5]);
        assert_eq!(seqs(store, &short).await, [4, 5]);
        assert_eq!(seqs(store, &forever).await, [1, 2, 3, 4, 5]);
        assert_eq!(
            sweep(store, settings, &token).await.unwrap(),
            0,
            "nothing left to delete"
        );
    }

    #[tokio::test]
    async fn no_global_retention_keeps_everything() {
        let db = TempSqlite::new().await;
        let room = RoomId::parse("lobby").unwrap();
        fill(&db.store, &room, &[4000, 1]).await;
        let settings = RetentionSettings {
            default_days: 0,
            sweep_interval: Duration::from_secs(1),
            batch: 100,
        };
        let deleted = sweep(&db.store, settings, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(deleted, 0);
        assert_eq!(seqs(&db.store, &room).await, [1, 2]);
    }
}
