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
