//! Per-room bookkeeping of what the application has seen: the highest sequence number per
//! room and the set of joined rooms. It is what makes a resume gap-free and duplicate-free from
//! the application's point of view: a reconnect re-joins with `since` = the last seen number,
//! and any `message` at or below it is dropped. Pure data, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::frame::Message;
use crate::ids::{RoomId, Seq};

/// What the application has seen, per room.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LastSeen {
    seen: BTreeMap<RoomId, Seq>,
    joined: BTreeSet<RoomId>,
}

impl LastSeen {
    /// Takes a live or replayed `message` event: `true` when it is new and must be shown,
    /// `false` for a duplicate (its number is at or below the room's last seen one).
    pub(crate) fn handle_message(&mut self, message: &Message) -> bool {
        match self.seen.get(&message.room) {
            Some(last) if message.seq <= *last => false,
            _ => {
                self.seen.insert(message.room.clone(), message.seq);
                true
            }
        }
    }

    /// Takes messages the application received in a reply (`joined`, `history_page`): the
    /// room's last seen number rises to the highest of them and never falls.
    pub(crate) fn handle_page<'a>(&mut self, messages: impl IntoIterator<Item = &'a Message>) {
        for message in messages {
            let last = self.seen.entry(message.room.clone()).or_insert(message.seq);
            *last = (*last).max(message.seq);
        }
    }

    /// Takes a `join` with `since` as it is sent: the application asked for everything after
    /// `since`, so that becomes the room's floor for de-duplication, even below what was seen
    /// before. Set before the request leaves, so no replayed message can be read against the
    /// old floor.
    pub(crate) fn handle_join_since(&mut self, room: &RoomId, since: Seq) {
        self.seen.insert(room.clone(), since);
    }

    /// Records a successful join; the room is re-joined after a reconnect.
    pub(crate) fn handle_joined(&mut self, room: &RoomId) {
        self.joined.insert(room.clone());
    }

    /// Records a successful leave. The last seen number is kept: joining again with it as
    /// `since` picks up where the application stopped.
    pub(crate) fn handle_left(&mut self, room: &RoomId) {
        self.joined.remove(room);
    }

    /// The highest sequence number seen per room.
    pub(crate) fn last_seen(&self) -> &BTreeMap<RoomId, Seq> {
        &self.seen
    }

    /// The rooms to re-join after a reconnect, each with the `since` to ask for: the last seen
    /// number, or zero (replay everything) for a joined room where nothing was seen yet.
    pub(crate) fn rejoin_plan(&self) -> Vec<(RoomId, Seq)> {
        self.joined
            .iter()
            .map(|room| {
                (
                    room.clone(),
                    self.seen.get(room).copied().unwrap_or(Seq::ZERO),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;

    fn room(name: &str) -> RoomId {
        RoomId::parse(name).unwrap()
    }

    fn message(room_name: &str, seq: u64) -> Message {
        Message {
            room: room(room_name),
            seq: Seq(seq),
            from: UserId::parse("alice").unwrap(),
            body: format!("m{seq}"),
            ts: 0,
            cmid: None,
        }
    }

    #[test]
    fn messages_at_or_below_last_seen_are_dropped_per_room() {
        let mut seen = LastSeen::default();
        assert!(seen.handle_message(&message("lobby", 1)));
        assert!(seen.handle_message(&message("lobby", 2)));
        assert!(!seen.handle_message(&message("lobby", 2)), "duplicate");
        assert!(!seen.handle_message(&message("lobby", 1)), "older");
        assert!(
            seen.handle_message(&message("other", 1)),
            "rooms are independent"
        );
        assert!(
            seen.handle_message(&message("lobby", 5)),
            "a gap is not a duplicate"
        );
        assert_eq!(seen.last_seen().get(&room("lobby")), Some(&Seq(5)));
        assert_eq!(seen.last_seen().get(&room("other")), Some(&Seq(1)));
    }

    #[test]
    fn pages_raise_last_seen_and_never_lower_it() {
        let mut seen = LastSeen::default();
        seen.handle_page(&[message("lobby", 3), message("lobby", 4)]);
        assert_eq!(seen.last_seen().get(&room("lobby")), Some(&Seq(4)));
        seen.handle_page(&[message("lobby", 1), message("lobby", 2)]);
        assert_eq!(
            seen.last_seen().get(&room("lobby")),
            Some(&Seq(4)),
            "older page"
        );
        assert!(
            !seen.handle_message(&message("lobby", 4)),
            "already in a page"
        );
        assert!(seen.handle_message(&message("lobby", 5)));
        seen.handle_page(&[]);
        assert_eq!(seen.last_seen().len(), 1);
    }

    #[test]
    fn join_with_since_sets_the_floor() {
        let mut seen = LastSeen::default();
        seen.handle_page(&[message("lobby", 9)]);
        seen.handle_join_since(&room("lobby"), Seq(3));
        assert!(
            seen.handle_message(&message("lobby", 4)),
            "replay after since 3"
        );
        assert!(!seen.handle_message(&message("lobby", 4)));
        seen.handle_joined(&room("other"));
        assert!(
            !seen.last_seen().contains_key(&room("other")),
            "no since, nothing seen"
        );
    }

    #[test]
    fn rejoin_plan_lists_joined_rooms_with_their_last_seen() {
        let mut seen = LastSeen::default();
        seen.handle_joined(&room("lobby"));
        seen.handle_joined(&room("quiet"));
        seen.handle_joined(&room("gone"));
        seen.handle_left(&room("gone"));
        seen.handle_message(&message("lobby", 7));
        seen.handle_message(&message("gone", 2));
        assert_eq!(
            seen.rejoin_plan(),
            vec![(room("lobby"), Seq(7)), (room("quiet"), Seq::ZERO)],
            "left rooms are not re-joined; unseen rooms replay from zero"
        );
        assert_eq!(
            seen.last_seen().get(&room("gone")),
            Some(&Seq(2)),
            "kept after leave"
        );
    }
}
