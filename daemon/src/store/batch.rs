//! What a commit batch is made of, for every backend: the key that makes a resend
//! idempotent, a message a resend finds already stored, and what each entry of a batch turned
//! out to be. The backends differ in SQL, not in this bookkeeping.

use protocol::{Message, Seq};

use super::NewMessage;

/// `(room, sender, cmid)`, the key that makes a resend idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct MessageKey<'a> {
    pub(super) room: &'a str,
    pub(super) sender: &'a str,
    pub(super) cmid: &'a str,
}

impl<'a> MessageKey<'a> {
    pub(super) fn of(message: &'a NewMessage) -> Self {
        Self {
            room: message.room.as_str(),
            sender: message.from.as_str(),
            cmid: message.cmid.as_str(),
        }
    }
}

/// A message committed by an earlier transaction, as a resend finds it.
#[derive(Debug, Clone)]
pub(super) struct StoredMessage {
    pub(super) seq: Seq,
    pub(super) body: String,
    pub(super) ts_ms: i64,
}

impl StoredMessage {
    /// The stored message, named by the resend's ids (equal to the stored ones by the key).
    pub(super) fn into_message(self, resend: &NewMessage) -> Message {
        Message {
            room: resend.room.clone(),
            seq: self.seq,
            from: resend.from.clone(),
            body: self.body,
            ts: self.ts_ms,
            cmid: Some(resend.cmid.clone()),
        }
    }
}

/// What one entry of a batch turned out to be.
pub(super) enum Slot {
    /// Committed before this batch.
    Stored(StoredMessage),
    /// A resend of the entry at this earlier index of the same batch.
    SameAs(usize),
    /// New: it takes the next sequence number of its room.
    New,
}
