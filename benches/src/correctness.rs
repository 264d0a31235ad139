//! Whether a run delivered what it should: every client received every message of the room
//! exactly once, in sequence order without a gap, and in the order the store committed them
//! (the sequence numbers in the acks). Pure bookkeeping, fed by the run and unit tested here.
//!
//! The order is compared through a fingerprint, a hash over `(seq, sender, index)` in
//! arrival order, so the check keeps two bits per expected message per client instead of
//! every client's whole log.

use serde::Serialize;

/// Problems listed in detail per client; beyond that they are only counted.
const MAX_LISTED_PROBLEMS: usize = 5;

/// What one client received.
#[derive(Debug, Clone)]
pub struct DeliveryCheck {
    client: usize,
    messages_per_sender: usize,
    seen: Vec<bool>,
    next_seq: u64,
    received: u64,
    fingerprint: Fingerprint,
    problems: Problems,
}

impl DeliveryCheck {
    /// A check for client `client` of `senders` clients sending `messages_per_sender` each,
    /// whose room's first new message has sequence number `first_seq`.
    pub fn new(client: usize, senders: usize, messages_per_sender: usize, first_seq: u64) -> Self {
        Self {
            client,
            messages_per_sender,
            seen: vec![false; senders * messages_per_sender],
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
            (index < self.messages_per_sender)
                .then(|| sender * self.messages_per_sender + index)
                .filter(|slot| *slot < self.seen.len())
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

/// The acks every sender got, by sender and index.
#[derive(Debug, Clone)]
pub struct AckLog {
    messages_per_sender: usize,
    seq_of: Vec<Option<u64>>,
}

impl AckLog {
    /// An empty log for `senders` clients sending `messages_per_sender` each.
    pub fn new(senders: usize, messages_per_sender: usize) -> Self {
        Self {
            messages_per_sender,
            seq_of: vec![None; senders * messages_per_sender],
        }
    }

    /// Records that message `index` of `sender` was acknowledged with `seq`.
    pub fn handle_ack(&mut self, sender: usize, index: usize, seq: u64) {
        if let Some(slot) = self
            .seq_of
            .get_mut(sender * self.messages_per_sender + index)
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

/// Judges a run: `first_seq` is the sequence number the room's first message of the run
/// should get.
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
                let sender = slot / acks.messages_per_sender;
                (seq, sender, slot % acks.messages_per_sender)
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
    fn acks() -> AckLog {
        let mut acks = AckLog::new(2, 2);
        acks.handle_ack(0, 0, 1);
        acks.handle_ack(1, 0, 2);
        acks.handle_ack(0, 1, 3);
        acks.handle_ack(1, 1, 4);
        acks
    }

    fn delivered(order: &[(u64, usize, usize)]) -> DeliveryCheck {
        let mut check = DeliveryCheck::new(0, 2, 2, 1);
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
        let mut acks = AckLog::new(2, 2);
        acks.handle_ack(0, 0, 1);
        let mut check = DeliveryCheck::new(3, 2, 2, 1);
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
        let mut check = DeliveryCheck::new(0, 1, 20, 1);
        for _ in 0..20 {
            check.handle_message(1, Some((0, 0)));
        }
        let verdict = judge(&AckLog::new(0, 20), &[check], 1);
        assert_eq!(verdict.problems.len(), MAX_LISTED_PROBLEMS + 1);
        assert!(verdict.problems.last().unwrap().contains("more problems"));
    }
}
