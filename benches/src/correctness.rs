//! Whether a run delivered what it should: every client received every message of each of
//! its rooms exactly once, in sequence order without a gap, and in the order the store
//! committed them (the sequence numbers in the acks). Pure bookkeeping, fed by the run and
//! unit tested here; one [`RoomPlan`] says which messages a room carries.
//!
//! The order is compared through a fingerprint, a hash over `(seq, sender, index)` in
//! arrival order, so the check keeps two bits per expected message per client instead of
//! every client's whole log.

use std::sync::Arc;

use serde::Serialize;

/// Problems listed in detail per client; beyond that they are only counted.
const MAX_LISTED_PROBLEMS: usize = 5;

/// Which messages one room carries. Each sender sends `messages_per_sender` messages in
/// turn to the rooms it is in: its message `index` goes to its room number
/// `index % rooms_of_sender`. A room's messages are numbered by slot, member by member.
#[derive(Debug, Clone)]
pub struct RoomPlan {
    messages_per_sender: usize,
    /// The members' numbers, ascending.
    senders: Vec<usize>,
    /// Per member: how many rooms it sends to, and which of them this room is.
    turns: Vec<(usize, usize)>,
    /// Per member: its first slot; one more entry holds the total.
    offsets: Vec<usize>,
}

impl RoomPlan {
    /// A room whose members are `(sender, rooms the sender sends to, this room's place among
    /// them)`, in ascending order of sender.
    pub fn new(members: &[(usize, usize, usize)], messages_per_sender: usize) -> Self {
        let mut offsets = Vec::with_capacity(members.len() + 1);
        let mut total = 0;
        for &(_, rooms, place) in members {
            offsets.push(total);
            total += messages_per_sender
                .saturating_sub(place)
                .div_ceil(rooms.max(1));
        }
        offsets.push(total);
        Self {
            messages_per_sender,
            senders: members.iter().map(|member| member.0).collect(),
            turns: members
                .iter()
                .map(|&(_, rooms, place)| (rooms.max(1), place))
                .collect(),
            offsets,
        }
    }

    /// One room that every one of `senders` sends all its messages to.
    pub fn single(senders: usize, messages_per_sender: usize) -> Self {
        let members: Vec<_> = (0..senders).map(|sender| (sender, 1, 0)).collect();
        Self::new(&members, messages_per_sender)
    }

    /// Messages the room carries.
    pub fn len(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Whether the room carries no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot of message `index` of `sender`, if this room carries it.
    pub fn slot(&self, sender: usize, index: usize) -> Option<usize> {
        let member = self.senders.binary_search(&sender).ok()?;
        let (rooms, place) = self.turns[member];
        (index < self.messages_per_sender && index % rooms == place)
            .then(|| self.offsets[member] + index / rooms)
    }

    /// The sender and index of the message in `slot`.
    fn origin(&self, slot: usize) -> (usize, usize) {
        let member = self.offsets.partition_point(|offset| *offset <= slot) - 1;
        let (rooms, place) = self.turns[member];
        (
            self.senders[member],
            (slot - self.offsets[member]) * rooms + place,
        )
    }
}

/// What one client received in one room.
#[derive(Debug, Clone)]
pub struct DeliveryCheck {
    client: usize,
    plan: Arc<RoomPlan>,
    seen: Vec<bool>,
    next_seq: u64,
    received: u64,
    fingerprint: Fingerprint,
    problems: Problems,
}

impl DeliveryCheck {
    /// A check for client `client` in the room of `plan`, whose first new message has
    /// sequence number `first_seq`.
    pub fn new(client: usize, plan: Arc<RoomPlan>, first_seq: u64) -> Self {
        Self {
            client,
            seen: vec![false; plan.len()],
            plan,
            next_seq: first_seq,
            received: 0,
            fingerprint: Fingerprint::new(),
            problems: Problems::default(),
        }
    }

    /// Records a message with `seq` whose body named `sender` and its `index`, or that could
    /// not be read (`None`).
    pub fn handle_message(&mut self, seq: u64, origin: Option<(usize, usize)>) {
        self.received += 1;
        if seq != self.next_seq {
            let client = self.client;
            let expected = self.next_seq;
            self.problems
                .push(|| format!("client {client}: seq {seq} arrived where {expected} was next"));
        }
        self.next_seq = seq.saturating_add(1);
        let slot = origin.and_then(|(sender, index)| {
            self.plan
                .slot(sender, index)
                .map(|slot| (slot, sender, index))
        });
        let Some((slot, sender, index)) = slot else {
            let client = self.client;
            self.problems
                .push(|| format!("client {client}: seq {seq} has a body this run did not send"));
            return;
        };
        if std::mem::replace(&mut self.seen[slot], true) {
            let client = self.client;
            self.problems.push(|| {
                format!("client {client}: message {sender}/{index} arrived twice (seq {seq})")
            });
        }
        self.fingerprint.add(seq, sender, index);
    }

    /// Messages received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether every expected message has arrived.
    pub fn is_complete(&self) -> bool {
        self.received >= self.seen.len() as u64
    }
}

/// The acks the senders got for one room's messages.
#[derive(Debug, Clone)]
pub struct AckLog {
    plan: Arc<RoomPlan>,
    seq_of: Vec<Option<u64>>,
}

impl AckLog {
    /// An empty log for the room of `plan`.
    pub fn new(plan: Arc<RoomPlan>) -> Self {
        Self {
            seq_of: vec![None; plan.len()],
            plan,
        }
    }

    /// Records that message `index` of `sender` was acknowledged with `seq`; ignored when
    /// the room does not carry that message.
    pub fn handle_ack(&mut self, sender: usize, index: usize, seq: u64) {
        if let Some(slot) = self
            .plan
            .slot(sender, index)
            .and_then(|slot| self.seq_of.get_mut(slot))
        {
            *slot = Some(seq);
        }
    }

    /// Acknowledged messages.
    pub fn acked(&self) -> u64 {
        self.seq_of.iter().flatten().count() as u64
    }
}

/// The verdict of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Correctness {
    /// Every message acknowledged, and delivered to every client exactly once, gap-free,
    /// in commit order.
    pub correct: bool,
    /// What went wrong, the first few of each client in detail.
    pub problems: Vec<String>,
}

/// Judges one room of a run: `first_seq` is the sequence number the room's first message of
/// the run should get.
pub fn judge(acks: &AckLog, deliveries: &[DeliveryCheck], first_seq: u64) -> Correctness {
    let mut problems = Problems::default();
    let expected = acks.seq_of.len() as u64;
    let missing_acks = expected - acks.acked();
    if missing_acks > 0 {
        problems.push(|| format!("{missing_acks} of {expected} sends were not acknowledged"));
    }

    // The commit order as the acks tell it.
    let mut by_seq: Vec<(u64, usize, usize)> = acks
        .seq_of
        .iter()
        .enumerate()
        .filter_map(|(slot, seq)| {
            seq.map(|seq| {
                let (sender, index) = acks.plan.origin(slot);
                (seq, sender, index)
            })
        })
        .collect();
    by_seq.sort_unstable();
    for (position, (seq, sender, index)) in by_seq.iter().enumerate() {
        let wanted = first_seq + position as u64;
        if *seq != wanted {
            problems.push(|| {
                format!("ack of {sender}/{index} has seq {seq} where {wanted} was expected")
            });
            break;
        }
    }
    let mut committed = Fingerprint::new();
    for (seq, sender, index) in &by_seq {
        committed.add(*seq, *sender, *index);
    }

    for check in deliveries {
        problems.extend(&check.problems);
        let client = check.client;
        let missed = check.seen.iter().filter(|seen| !**seen).count();
        if missed > 0 {
            problems.push(|| {
                format!(
                    "client {client}: {missed} of {} messages never arrived",
                    check.seen.len()
                )
            });
        } else if missing_acks == 0 && check.fingerprint != committed {
            problems.push(|| format!("client {client}: messages arrived out of commit order"));
        }
    }
    Correctness {
        correct: problems.is_empty(),
        problems: problems.into_list(),
    }
}

/// An order-sensitive hash (FNV-1a, 64 bit) of `(seq, sender, index)` triples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64);

impl Fingerprint {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn add(&mut self, seq: u64, sender: usize, index: usize) {
        for value in [seq, sender as u64, index as u64] {
            for byte in value.to_le_bytes() {
                self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(Self::PRIME);
            }
        }
    }
}

/// Problem messages, listed up to [`MAX_LISTED_PROBLEMS`] and counted beyond.
#[derive(Debug, Clone, Default)]
struct Problems {
    listed: Vec<String>,
    unlisted: usize,
}

impl Problems {
    fn push(&mut self, message: impl FnOnce() -> String) {
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(message());
        } else {
            self.unlisted += 1;
        }
    }

    fn extend(&mut self, other: &Self) {
        self.listed.extend(other.listed.iter().cloned());
        self.unlisted += other.unlisted;
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.unlisted == 0
    }

    fn into_list(mut self) -> Vec<String> {
        if self.unlisted > 0 {
            self.listed
                .push(format!("... and {} more problems", self.unlisted));
        }
        self.listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two senders with two messages each, committed as 0/0, 1/0, 0/1, 1/1 from seq 1.
    fn plan(senders: usize, messages: usize) -> Arc<RoomPlan> {
        Arc::new(RoomPlan::single(senders, messages))
    }

    fn acks() -> AckLog {
        let mut acks = AckLog::new(plan(2, 2));
        acks.handle_ack(0, 0, 1);
        acks.handle_ack(1, 0, 2);
        acks.handle_ack(0, 1, 3);
        acks.handle_ack(1, 1, 4);
        acks
    }

    fn delivered(order: &[(u64, usize, usize)]) -> DeliveryCheck {
        let mut check = DeliveryCheck::new(0, plan(2, 2), 1);
        for (seq, sender, index) in order {
            check.handle_message(*seq, Some((*sender, *index)));
        }
        check
    }

    const COMMIT_ORDER: [(u64, usize, usize); 4] = [(1, 0, 0), (2, 1, 0), (3, 0, 1), (4, 1, 1)];

    #[test]
    fn everything_once_in_commit_order_is_correct() {
        let check = delivered(&COMMIT_ORDER);
        assert!(check.is_complete());
        let verdict = judge(&acks(), &[check.clone(), check], 1);
        assert_eq!(
            verdict,
            Correctness {
                correct: true,
                problems: Vec::new()
            }
        );
    }

    #[test]
    fn a_missing_message_is_reported() {
        let check = delivered(&COMMIT_ORDER[..3]);
        assert!(!check.is_complete());
        let verdict = judge(&acks(), &[check], 1);
        assert!(!verdict.correct);
        assert_eq!(
            verdict.problems,
            ["client 0: 1 of 4 messages never arrived"]
        );
    }

    #[test]
    fn a_gap_and_a_duplicate_are_reported() {
        let check = delivered(&[(1, 0, 0), (3, 0, 1), (3, 0, 1), (2, 1, 0), (4, 1, 1)]);
        let verdict = judge(&acks(), &[check], 1);
        assert!(!verdict.correct);
        let text = verdict.problems.join("\n");
        assert!(text.contains("seq 3 arrived where 2 was next"), "{text}");
        assert!(text.contains("message 0/1 arrived twice"), "{text}");
    }

    #[test]
    fn the_same_seqs_carrying_other_messages_are_out_of_commit_order() {
        let check = delivered(&[(1, 1, 0), (2, 0, 0), (3, 0, 1), (4, 1, 1)]);
        let verdict = judge(&acks(), &[check], 1);
        assert_eq!(
            verdict.problems,
            ["client 0: messages arrived out of commit order"]
        );
    }

    #[test]
    fn missing_acks_and_foreign_bodies_are_reported() {
        let mut acks = AckLog::new(plan(2, 2));
        acks.handle_ack(0, 0, 1);
        let mut check = DeliveryCheck::new(3, plan(2, 2), 1);
        check.handle_message(1, None);
        check.handle_message(2, Some((7, 0)));
        let verdict = judge(&acks, &[check], 1);
        let text = verdict.problems.join("\n");
        assert!(
            text.contains("3 of 4 sends were not acknowledged"),
            "{text}"
        );
        assert!(text.contains("client 3: seq 1 has a body"), "{text}");
        assert!(text.contains("client 3: seq 2 has a body"), "{text}");
    }

    #[test]
    fn problems_beyond_the_listed_few_are_counted() {
        let mut check = DeliveryCheck::new(0, plan(1, 20), 1);
        for _ in 0..20 {
            check.handle_message(1, Some((0, 0)));
        }
        let verdict = judge(&AckLog::new(plan(0, 20)), &[check], 1);
        assert_eq!(verdict.problems.len(), MAX_LISTED_PROBLEMS + 1);
        assert!(verdict.problems.last().unwrap().contains("more problems"));
    }

    #[test]
    fn a_room_plan_numbers_the_turns_of_each_member() {
        // Sender 1 sends to 3 rooms and this is its second (indexes 1, 4, 7 of 0..9);
        // sender 4 sends only here (indexes 0..9).
        let plan = RoomPlan::new(&[(1, 3, 1), (4, 1, 0)], 9);
        assert_eq!(plan.len(), 3 + 9);
        assert_eq!(plan.slot(1, 1), Some(0));
        assert_eq!(plan.slot(1, 7), Some(2));
        assert_eq!(plan.slot(1, 2), None);
        assert_eq!(plan.slot(1, 10), None);
        assert_eq!(plan.slot(2, 0), None);
        assert_eq!(plan.slot(4, 0), Some(3));
        assert_eq!(plan.slot(4, 8), Some(11));
        for slot in 0..plan.len() {
            let (sender, index) = plan.origin(slot);
            assert_eq!(plan.slot(sender, index), Some(slot));
        }
    }

    #[test]
    fn a_room_judges_only_its_own_messages() {
        // Sender 0 alternates between two rooms; this is its first (indexes 0 and 2).
        let plan = Arc::new(RoomPlan::new(&[(0, 2, 0)], 4));
        let mut acks = AckLog::new(Arc::clone(&plan));
        acks.handle_ack(0, 0, 1);
        acks.handle_ack(0, 1, 1); // the other room's message: not this room's
        acks.handle_ack(0, 2, 2);
        let mut check = DeliveryCheck::new(0, plan, 1);
        check.handle_message(1, Some((0, 0)));
        assert!(!check.is_complete());
        check.handle_message(2, Some((0, 2)));
        assert!(check.is_complete());
        assert!(judge(&acks, &[check], 1).correct);
    }
}
