//! One cell of the throughput table: S senders send at a fixed pace into one room for the
//! run's duration while R receivers read; every delivery is timed from the message's
//! scheduled send time. Senders spawn each send, so a slow ack never delays the next send
//! (it is counted and timed on its own).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use protocol::client::{Client, Event};
use protocol::{ClientMsgId, RoomId};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::report::{CellReport, Delivery};
use super::{LossSettings, TestBed, Transport, discard_events};
use crate::histogram::LatencyHistogram;

/// From the end of the set-up to the first scheduled send: time for every task to start.
const START_DELAY: Duration = Duration::from_millis(100);

/// Send failures quoted in a report; the rest are only counted.
const QUOTED_FAILURES: usize = 5;

/// Runs the cell `transport` × `loss`: fresh room and clients logged in on the clean link,
/// the loss on for the sending and the draining, then off again.
pub(super) async fn run(
    bed: &mut TestBed,
    transport: Transport,
    loss: u8,
    settings: &LossSettings,
) -> anyhow::Result<CellReport> {
    let room = bed.create_room().await?;
    let users = bed.users();
    let (sender_users, receiver_users) = (
        users.get(..settings.senders),
        users.get(settings.senders..settings.senders + settings.receivers),
    );
    let (Some(sender_users), Some(receiver_users)) = (sender_users, receiver_users) else {
        anyhow::bail!("the test bed has too few users for this cell");
    };
    let senders = arcs(bed.log_in(transport, sender_users, &room).await?);
    let receivers = arcs(bed.log_in(transport, receiver_users, &room).await?);

    let schedule = Schedule::new(Instant::now() + START_DELAY, settings);
    let deadline = schedule.end() + settings.drain;
    let stop = CancellationToken::new();
    bed.set_loss(loss)?;

    let receiving: Vec<JoinHandle<Received>> = receivers
        .iter()
        .enumerate()
        .map(|(number, client)| {
            tokio::spawn(receive(Arc::clone(client), number, schedule, stop.clone()))
        })
        .collect();
    // Senders get every message too; reading them keeps their connections flowing.
    let discarding: Vec<JoinHandle<()>> = senders
        .iter()
        .map(|client| tokio::spawn(discard_events(Arc::clone(client), stop.clone())))
        .collect();
    let sending: Vec<JoinHandle<Sent>> = senders
        .iter()
        .enumerate()
        .map(|(number, client)| {
            let plan = SendPlan {
                client: Arc::clone(client),
                room: room.clone(),
                sender: number,
                schedule,
                deadline,
                body_bytes: settings.body_bytes,
            };
            tokio::spawn(send_paced(plan))
        })
        .collect();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            stop.cancel();
        })
    };

    let mut sent = Sent::default();
    for task in sending {
        sent.merge(task.await.context("a sending task failed")?)?;
    }
    let mut received = Vec::with_capacity(receiving.len());
    for task in receiving {
        received.push(task.await.context("a receiving task failed")?);
    }
    stop.cancel();
    timer.abort();
    for task in discarding {
        task.await.context("a sender's event reader failed")?;
    }
    bed.set_loss(0)?;
    close_all(senders.into_iter().chain(receivers)).await;

    let delivery = tally(&received, &schedule)?;
    Ok(CellReport::new(transport, loss, settings, &sent, delivery))
}

/// When each message is due: sender `s`'s message `i` at `epoch + (i + s / S) × period`, so
/// the senders' sends interleave evenly.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    epoch: Instant,
    period: Duration,
    senders: usize,
    per_sender: usize,
}

impl Schedule {
    fn new(epoch: Instant, settings: &LossSettings) -> Self {
        let per_sender = (settings.duration.as_secs_f64() * settings.rate_per_sender).round();
        Self {
            epoch,
            period: Duration::from_secs_f64(1.0 / settings.rate_per_sender),
            senders: settings.senders,
            // Saturates for absurd settings, which then run out of time instead.
            per_sender: (per_sender as usize).max(1),
        }
    }

    fn due(&self, sender: usize, index: usize) -> Instant {
        let slots = index as f64 + sender as f64 / self.senders as f64;
        self.epoch + self.period.mul_f64(slots)
    }

    /// The last message's due time.
    fn end(&self) -> Instant {
        self.due(self.senders - 1, self.per_sender - 1)
    }

    fn total(&self) -> usize {
        self.senders * self.per_sender
    }

    /// The slot of sender `sender`'s message `index` in a per-receiver count table.
    fn slot(&self, sender: usize, index: usize) -> Option<usize> {
        (sender < self.senders && index < self.per_sender).then(|| sender * self.per_sender + index)
    }
}

/// What one sender sends.
struct SendPlan {
    client: Arc<Client>,
    room: RoomId,
    sender: usize,
    schedule: Schedule,
    /// Acks not in by then count as failed.
    deadline: Instant,
    body_bytes: usize,
}

/// What the senders saw of their sends.
#[derive(Debug, Default)]
pub(super) struct Sent {
    pub(super) scheduled: u64,
    pub(super) acked: u64,
    pub(super) failed: u64,
    /// The first few failures, for the report.
    pub(super) failures: Vec<String>,
    /// From each message's scheduled send time to its ack.
    pub(super) ack_latency: LatencyHistogram,
}

impl Sent {
    fn handle(&mut self, sender: usize, outcome: SendOutcome) {
        match outcome.result {
            Ok(()) => {
                self.acked += 1;
                self.ack_latency
                    .record(outcome.acked_at.saturating_duration_since(outcome.due));
            }
            Err(why) => self.fail(format!("sender {sender}: {why}")),
        }
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.failures.len() < QUOTED_FAILURES {
            self.failures.push(why);
        }
    }

    fn merge(&mut self, other: Self) -> anyhow::Result<()> {
        self.scheduled += other.scheduled;
        self.acked += other.acked;
        self.failed += other.failed;
        let room = QUOTED_FAILURES.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
        self.ack_latency.merge(&other.ack_latency)
    }
}

struct SendOutcome {
    due: Instant,
    acked_at: Instant,
    result: Result<(), String>,
}

/// Sends the plan's messages at their due times, each in a task of its own, then waits for
/// the outstanding acks until the deadline.
async fn send_paced(plan: SendPlan) -> Sent {
    let mut sent = Sent::default();
    let mut in_flight = JoinSet::new();
    for index in 0..plan.schedule.per_sender {
        let due = plan.schedule.due(plan.sender, index);
        tokio::time::sleep_until(due.into()).await;
        while let Some(done) = in_flight.try_join_next() {
            handle_joined(&mut sent, plan.sender, done);
        }
        sent.scheduled += 1;
        let cmid = match ClientMsgId::parse(&format!("s{}-{index}", plan.sender)) {
            Ok(cmid) => cmid,
            Err(error) => {
                sent.fail(format!("sender {}: {error}", plan.sender));
                continue;
            }
        };
        let body = encode_body(plan.sender, index, plan.body_bytes);
        let (client, room) = (Arc::clone(&plan.client), plan.room.clone());
        in_flight.spawn(async move {
            let result = client.send(&room, &cmid, &body).await;
            SendOutcome {
                due,
                acked_at: Instant::now(),
                result: result.map(drop).map_err(|error| error.to_string()),
            }
        });
    }
    let drained = tokio::time::timeout_at(plan.deadline.into(), async {
        while let Some(done) = in_flight.join_next().await {
            handle_joined(&mut sent, plan.sender, done);
        }
    })
    .await;
    if drained.is_err() {
        for _ in 0..in_flight.len() {
            sent.fail(format!(
                "sender {}: no ack by the end of the drain time",
                plan.sender
            ));
        }
        in_flight.abort_all();
    }
    sent
}

fn handle_joined(
    sent: &mut Sent,
    sender: usize,
    joined: Result<SendOutcome, tokio::task::JoinError>,
) {
    match joined {
        Ok(outcome) => sent.handle(sender, outcome),
        Err(error) => sent.fail(format!("sender {sender}: the send task failed: {error}")),
    }
}

/// What one receiver read.
#[derive(Debug)]
pub(super) struct Received {
    /// Per scheduled message (see [`Schedule::slot`]): how often it arrived.
    counts: Vec<u32>,
    latency: LatencyHistogram,
    deliveries: u64,
    /// Messages whose body names no scheduled message.
    unknown: u64,
    last_delivery: Option<Instant>,
    incidents: Vec<String>,
}

/// Reads `client`'s events until every scheduled message arrived, the connection ends or
/// `stop` fires.
async fn receive(
    client: Arc<Client>,
    receiver: usize,
    schedule: Schedule,
    stop: CancellationToken,
) -> Received {
    let mut received = Received {
        counts: vec![0; schedule.total()],
        latency: LatencyHistogram::new(),
        deliveries: 0,
        unknown: 0,
        last_delivery: None,
        incidents: Vec::new(),
    };
    let mut distinct = 0;
    while distinct < schedule.total() {
        // `next_event` is cancel-safe.
        let event = tokio::select! {
            event = client.next_event() => event,
            () = stop.cancelled() => break,
        };
        match event {
            Some(Event::Message(message)) => {
                let now = Instant::now();
                received.deliveries += 1;
                received.last_delivery = Some(now);
                let Some((sender, index)) = decode_body(&message.body) else {
                    received.unknown += 1;
                    continue;
                };
                let Some(count) = schedule
                    .slot(sender, index)
                    .and_then(|slot| received.counts.get_mut(slot))
                else {
                    received.unknown += 1;
                    continue;
                };
                if *count == 0 {
                    distinct += 1;
                }
                *count += 1;
                received
                    .latency
                    .record(now.saturating_duration_since(schedule.due(sender, index)));
            }
            Some(Event::Closed(code)) => {
                received.incidents.push(format!(
                    "receiver {receiver}: connection closed ({code:?}) after {distinct} messages"
                ));
                break;
            }
            None => break,
            Some(Event::Error { code, message }) => received.incidents.push(format!(
                "receiver {receiver}: error event {code}: {message}"
            )),
            Some(Event::GoingAway { reason, .. }) => received.incidents.push(format!(
                "receiver {receiver}: chatd is going away: {reason}"
            )),
            Some(_) => {}
        }
    }
    received
}

/// Sums the receivers' bookkeeping into what the report shows.
fn tally(received: &[Received], schedule: &Schedule) -> anyhow::Result<Delivery> {
    let (mut deliveries, mut unknown, mut missing, mut duplicates) = (0, 0, 0, 0);
    let mut incidents = Vec::new();
    let mut latency = LatencyHistogram::new();
    let mut last = None;
    for receiver in received {
        deliveries += receiver.deliveries;
        unknown += receiver.unknown;
        for &count in &receiver.counts {
            match count {
                0 => missing += 1,
                1 => {}
                more => duplicates += u64::from(more - 1),
            }
        }
        incidents.extend(receiver.incidents.iter().cloned());
        latency.merge(&receiver.latency)?;
        last = last.max(receiver.last_delivery);
    }
    let elapsed = last.map_or(Duration::ZERO, |last: Instant| {
        last.saturating_duration_since(schedule.epoch)
    });
    let per_sec = if elapsed.is_zero() {
        0.0
    } else {
        deliveries as f64 / elapsed.as_secs_f64()
    };
    Ok(Delivery {
        expected_per_receiver: schedule.total() as u64,
        deliveries,
        per_sec,
        latency: latency.summary(),
        missing,
        duplicates,
        unknown,
        incidents,
    })
}

/// Closes every client whose tasks have all ended (the others just drop).
async fn close_all(clients: impl Iterator<Item = Arc<Client>>) {
    let mut closing = JoinSet::new();
    for client in clients {
        if let Ok(client) = Arc::try_unwrap(client) {
            closing.spawn(client.close());
        }
    }
    while closing.join_next().await.is_some() {}
}

fn arcs(clients: Vec<Client>) -> Vec<Arc<Client>> {
    clients.into_iter().map(Arc::new).collect()
}

/// `sender:index:` padded with `x` to `len` bytes (or longer when the header is).
fn encode_body(sender: usize, index: usize, len: usize) -> String {
    let mut body = format!("{sender}:{index}:");
    let padding = len.saturating_sub(body.len());
    body.extend(std::iter::repeat_n('x', padding));
    body
}

fn decode_body(body: &str) -> Option<(usize, usize)> {
    let mut fields = body.splitn(3, ':');
    let sender = fields.next()?.parse().ok()?;
    let index = fields.next()?.parse().ok()?;
    fields.next()?;
    Some((sender, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(senders: usize, rate: f64, secs: u64) -> LossSettings {
        LossSettings {
            senders,
            rate_per_sender: rate,
            duration: Duration::from_secs(secs),
            ..LossSettings::default()
        }
    }

    #[test]
    fn bodies_name_their_message_and_have_the_asked_length() {
        let body = encode_body(3, 417, 100);
        assert_eq!(body.len(), 100);
        assert_eq!(decode_body(&body), Some((3, 417)));
        assert_eq!(decode_body(&encode_body(12, 5, 0)), Some((12, 5)));
        assert_eq!(decode_body("hello"), None);
        assert_eq!(decode_body("1:x:"), None);
    }

    #[test]
    fn senders_interleave_evenly_at_their_rate() {
        let epoch = Instant::now();
        let schedule = Schedule::new(epoch, &settings(4, 50.0, 10));
        assert_eq!(schedule.per_sender, 500);
        assert_eq!(schedule.total(), 2000);
        let at = |sender, index| schedule.due(sender, index).duration_since(epoch);
        assert_eq!(at(0, 0), Duration::ZERO);
        assert_eq!(at(1, 0), Duration::from_millis(5));
        assert_eq!(at(3, 0), Duration::from_millis(15));
        assert_eq!(at(0, 1), Duration::from_millis(20));
        assert_eq!(schedule.end().duration_since(epoch), at(3, 499));
        assert!(at(3, 499) < Duration::from_secs(10));
    }

    #[test]
    fn slots_cover_every_scheduled_message_once() {
        let schedule = Schedule::new(Instant::now(), &settings(3, 2.0, 2));
        let mut slots: Vec<usize> = (0..3)
            .flat_map(|sender| (0..4).map(move |index| (sender, index)))
            .filter_map(|(sender, index)| schedule.slot(sender, index))
            .collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..12).collect::<Vec<_>>());
        assert_eq!(schedule.slot(3, 0), None);
        assert_eq!(schedule.slot(0, 4), None);
    }

    #[test]
    fn the_tally_counts_missing_duplicate_and_unknown_messages() {
        let epoch = Instant::now();
        let schedule = Schedule::new(epoch, &settings(1, 2.0, 2));
        let mut latency = LatencyHistogram::new();
        latency.record(Duration::from_millis(3));
        let receiver = Received {
            counts: vec![1, 0, 2, 1],
            latency,
            deliveries: 5,
            unknown: 1,
            last_delivery: Some(epoch + Duration::from_secs(2)),
            incidents: vec!["receiver 0: closed".to_owned()],
        };
        let delivery = tally(&[receiver], &schedule).unwrap();
        assert_eq!(delivery.expected_per_receiver, 4);
        assert_eq!(
            (delivery.missing, delivery.duplicates, delivery.unknown),
            (1, 1, 1)
        );
        assert_eq!(delivery.deliveries, 5);
        assert!((delivery.per_sec - 2.5).abs() < 1e-9);
        assert_eq!(delivery.latency.count, 1);
        assert_eq!(delivery.incidents.len(), 1);
    }
}
