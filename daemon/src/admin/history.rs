//! Moving history through the admin socket: `history_export` streams the store page by page
//! (each page read, written and dropped before the next is read, so memory stays flat however
//! long the history and however slow the reader), and `history_import` stores one batch.

use protocol::admin::{AdminErrorKind, AdminReply};
use protocol::{Message, RoomId, Seq};
use tokio::io::AsyncWrite;

use super::Replies;
use super::commands::AdminFailure;
use crate::node::Node;
use crate::store::ExportFilter;

/// Messages per `export_page` line. One page is all an export holds at a time on either side:
/// about 150 KiB for typical chat lines, at most about 4 MiB at the default 4 KiB body limit.
/// Large enough that the per-page cost (one keyset query, one socket write) is small next to
/// the rows it moves.
const EXPORT_PAGE_MESSAGES: u32 = 1000;

/// Streams the messages matching `filter` as `export_page` lines, then `export_done`; or one
/// `error` line if the filter is refused or the store fails (after the pages sent so far).
///
/// # Errors
/// When writing to the connection fails (the reader went away); the export just stops.
pub(super) async fn export<W: AsyncWrite + Unpin>(
    node: &Node,
    filter: &ExportFilter,
    replies: &mut Replies<W>,
) -> std::io::Result<()> {
    if let Err(failure) = check_export(node, filter).await {
        return replies.send(&failure.into_reply()).await;
    }
    let mut after: Option<(RoomId, Seq)> = None;
    let mut count: u64 = 0;
    loop {
        let key = after.as_ref().map(|(room, seq)| (room, *seq));
        let page = match node
            .store
            .export_page(filter, key, EXPORT_PAGE_MESSAGES)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, exported = count, "history export failed midway");
                return replies.send(&AdminFailure::from(error).into_reply()).await;
            }
        };
        let Some(last) = page.last() else { break };
        after = Some((last.room.clone(), last.seq));
        let is_last_page = page.len() < EXPORT_PAGE_MESSAGES as usize;
        count += page.len() as u64;
        replies
            .send(&AdminReply::ExportPage { messages: page })
            .await?;
        if is_last_page {
            break;
        }
    }
    tracing::info!(messages = count, "history exported");
    replies.send(&AdminReply::ExportDone { count }).await
}

/// Refuses an empty time range and rooms that do not exist, so a mistyped `--room` is an
/// error instead of an empty export.
async fn check_export(node: &Node, filter: &ExportFilter) -> Result<(), AdminFailure> {
    if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms)
        && since >= until
    {
        return Err(AdminFailure(
            AdminErrorKind::Invalid,
            format!("since_ms ({since}) must be before until_ms ({until})"),
        ));
    }
    for room in &filter.rooms {
        if node.store.room(room).await?.is_none() {
            return Err(AdminFailure(
                AdminErrorKind::NotFound,
                format!("no room `{room}`"),
            ));
        }
    }
    Ok(())
}

/// Stores one batch of exported messages; answers how many were new.
pub(super) async fn import(node: &Node, messages: &[Message]) -> Result<AdminReply, AdminFailure> {
    if let Some((index, message)) = messages
        .iter()
        .enumerate()
        .find(|(_, message)| message.seq == Seq::ZERO)
    {
        return Err(AdminFailure(
            AdminErrorKind::Invalid,
            format!(
                "message {} of the batch (room `{}`) has seq 0, but sequence numbers start at \
                 1; nothing of this batch was stored",
                index + 1,
                message.room
            ),
        ));
    }
    let outcome = node.store.import_batch(messages).await?;
    // One line per batch would flood the log during a large import.
    tracing::debug!(
        inserted = outcome.inserted,
        skipped = outcome.skipped,
        "history batch imported"
    );
    Ok(AdminReply::Imported {
        inserted: outcome.inserted,
        skipped: outcome.skipped,
    })
}
