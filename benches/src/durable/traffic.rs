//! The measured phase: each client's sending workers and its receiving task, and the message
//! body that carries the sender, the message's index and the send time, so a receiver can
//! tell what arrived and how late without a shared table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use protocol::client::{Client, ClientError, Event};
use protocol::{ClientMsgId, RoomId};
use tokio_util::sync::CancellationToken;

use crate::correctness::DeliveryCheck;
use crate::histogram::LatencyHistogram;

/// Wait before resending after a retryable refusal that named no delay.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(5);

/// The shortest body a run may ask for: room for the header (`sender:index:micros:`) of any
/// plausible run, up to 99 999 clients sending 9 999 999 messages each for an hour. A longer
/// header still works; the body is then longer than asked.
pub(crate) const MIN_BODY_BYTES: usize = 32;

/// What one client sends, shared by its sending workers.
#[derive(Debug, Clone)]
pub(crate) struct SendPlan {
    pub(crate) client: Arc<Client>,
    /// The client's rooms; message `index` goes to `rooms[index % rooms.len()]`.
    pub(crate) rooms: Arc<Vec<RoomId>>,
    /// This client's number, written into each body.
    pub(crate) sender: usize,
    /// The next message index to send; workers take indexes from it until `messages`.
    pub(crate) next_index: Arc<AtomicUsize>,
    pub(crate) messages: usize,
    pub(crate) body_bytes: usize,
    /// The run's clock: bodies carry the send time as an offset from it.
    pub(crate) epoch: Instant,
    /// No new message is started after this.
    pub(crate) deadline: Instant,
}

/// When a worker at a fixed rate sends: at `first`, then every `period`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) first: Instant,
    pub(crate) period: Duration,
}

/// What one sending worker did.
#[derive(Debug, Default)]
pub(crate) struct SentByWorker {
    /// `(index, seq)` of every acknowledged message.
    pub(crate) acks: Vec<(usize, u64)>,
    pub(crate) ack_latency: LatencyHistogram,
    pub(crate) retries: u64,
    pub(crate) last_ack: Option<Instant>,
    /// Why the worker stopped early.
    pub(crate) failure: Option<String>,
}

/// One sending worker: sends messages one after another, taking the next index from the
/// plan, until every message of its client is taken, the deadline passes or a send fails for
/// good. A retryable refusal (`rate_limited`, `busy`) or a timeout resends the same message
/// with the same client message id, which the daemon answers with the first ack if the
/// first attempt was committed after all.
///
/// With a `pace`, each send waits for its due time and its latency counts from then: a send
/// that is late because the previous one took longer than a period is charged the delay.
pub(crate) async fn send_worker(plan: SendPlan, pace: Option<Pace>) -> SentByWorker {
    let mut sent = SentByWorker::default();
    let mut due = pace.map(|pace| pace.first);
    loop {
        let index = plan.next_index.fetch_add(1, Ordering::Relaxed);
        if index >= plan.messages {
            break;
        }
        if Instant::now() >= plan.deadline {
            sent.failure = Some(format!(
                "client {}: the run's time ran out before message {index}",
                plan.sender
            ));
            break;
        }
        let cmid = match ClientMsgId::parse(&format!("{}-{index}", plan.sender)) {
            Ok(cmid) => cmid,
            Err(error) => {
                sent.failure = Some(error.to_string());
                break;
            }
        };
        let started = match (due, pace) {
            (Some(at), Some(pace)) => {
                tokio::time::sleep_until(at.into()).await;
                due = Some(at + pace.period);
                at
            }
            _ => Instant::now(),
        };
        let body = encode_body(
            plan.sender,
            index,
            started.duration_since(plan.epoch),
            plan.body_bytes,
        );
        match send_with_retries(&plan, index, &cmid, &body, &mut sent.retries).await {
            Ok(seq) => {
                let acked_at = Instant::now();
                sent.ack_latency.record(acked_at.duration_since(started));
                sent.acks.push((index, seq));
                sent.last_ack = Some(acked_at);
            }
            Err(error) => {
                sent.failure = Some(format!(
                    "client {}: message {index} failed: {error}",
                    plan.sender
                ));
                break;
            }
        }
    }
    sent
}

async fn send_with_retries(
    plan: &SendPlan,
    index: usize,
    cmid: &ClientMsgId,
    body: &str,
    retries: &mut u64,
) -> Result<u64, ClientError> {
    let Some(room) = plan.rooms.get(index % plan.rooms.len().max(1)) else {
        return Err(ClientError::Protocol(format!(
            "client {} has no room to send to",
            plan.sender
        )));
    };
    loop {
        match plan.client.send(room, cmid, body).await {
            Ok(acked) => return Ok(acked.seq.0),
            Err(error) if error.is_retryable() && Instant::now() < plan.deadline => {
                *retries += 1;
                let delay = match &error {
                    ClientError::Server {
                        retry_after: Some(delay),
                        ..
                    } => *delay,
                    _ => DEFAULT_RETRY_DELAY,
                };
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// What one client received.
#[derive(Debug)]
pub(crate) struct Received {
    /// Per room of the client: the room's number and what arrived there.
    pub(crate) checks: Vec<(usize, DeliveryCheck)>,
    pub(crate) delivery_latency: LatencyHistogram,
    pub(crate) last_delivery: Option<Instant>,
    /// Events that mean the run went wrong: the connection closed, an error, a shutdown.
    pub(crate) incidents: Vec<String>,
}

/// Reads `client`'s events until every expected message of each of its rooms (`checks`: name,
/// number, check) has arrived, the connection ends, or `stop` fires.
pub(crate) async fn receive(
    client: Arc<Client>,
    receiver: usize,
    mut checks: Vec<(RoomId, usize, DeliveryCheck)>,
    epoch: Instant,
    stop: CancellationToken,
) -> Received {
    let mut latency = LatencyHistogram::new();
    let mut last_delivery = None;
    let mut incidents = Vec::new();
    let mut incomplete = checks
        .iter()
        .filter(|(_, _, check)| !check.is_complete())
        .count();
    while incomplete > 0 {
        // `next_event` is cancel-safe: stopping loses no event that matters after the stop.
        let event = tokio::select! {
            event = client.next_event() => event,
            () = stop.cancelled() => break,
        };
        match event {
            Some(Event::Message(message)) => {
                let now = Instant::now();
                let decoded = decode_body(&message.body);
                if let Some((_, _, sent)) = decoded {
                    latency.record(now.duration_since(epoch).saturating_sub(sent));
                }
                last_delivery = Some(now);
                let Some((_, _, check)) =
                    checks.iter_mut().find(|(room, _, _)| *room == message.room)
                else {
                    incidents.push(format!(
                        "client {receiver}: a message of room {} it did not join",
                        message.room
                    ));
                    continue;
                };
                let was_complete = check.is_complete();
                check.handle_message(
                    message.seq.0,
                    decoded.map(|(sender, index, _)| (sender, index)),
                );
                if !was_complete && check.is_complete() {
                    incomplete -= 1;
                }
            }
            Some(Event::Closed(code)) => {
                let received: u64 = checks.iter().map(|(_, _, check)| check.received()).sum();
                incidents.push(format!(
                    "client {receiver}: connection closed ({code:?}) after {received} messages"
                ));
                break;
            }
            None => break,
            Some(Event::Error { code, message }) => {
                incidents.push(format!("client {receiver}: error event {code}: {message}"));
            }
            Some(Event::GoingAway { reason, .. }) => {
                incidents.push(format!(
                    "client {receiver}: the daemon is going away: {reason}"
                ));
            }
            Some(_) => {}
        }
    }
    Received {
        checks: checks
            .into_iter()
            .map(|(_, room, check)| (room, check))
            .collect(),
        delivery_latency: latency,
        last_delivery,
        incidents,
    }
}

/// `sender:index:micros:` padded with `x` to `len` bytes (or longer when the header is).
pub(crate) fn encode_body(sender: usize, index: usize, sent: Duration, len: usize) -> String {
    let mut body = format!("{sender}:{index}:{}:", sent.as_micros());
    let padding = len.saturating_sub(body.len());
    body.extend(std::iter::repeat_n('x', padding));
    body
}

/// The sender, index and send time of a body made by [`encode_body`].
pub(crate) fn decode_body(body: &str) -> Option<(usize, usize, Duration)> {
    let mut fields = body.splitn(4, ':');
    let sender = fields.next()?.parse().ok()?;
    let index = fields.next()?.parse().ok()?;
    let micros = fields.next()?.parse().ok()?;
    fields.next()?;
    Some((sender, index, Duration::from_micros(micros)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_has_the_asked_length_and_reads_back() {
        let body = encode_body(12, 345, Duration::from_micros(6_789), 100);
        assert_eq!(body.len(), 100);
        assert!(body.starts_with("12:345:6789:xxx"), "{body}");
        assert_eq!(
            decode_body(&body),
            Some((12, 345, Duration::from_micros(6_789)))
        );
    }

    #[test]
    fn the_header_of_a_plausible_run_fits_the_minimum_body() {
        let body = encode_body(99_999, 9_999_999, Duration::from_secs(3600), 0);
        assert!(body.len() <= MIN_BODY_BYTES, "{}", body.len());
    }

    #[test]
    fn foreign_bodies_are_not_read() {
        assert_eq!(decode_body("hello"), None);
        assert_eq!(decode_body("1:2:3"), None);
        assert_eq!(decode_body("a:2:3:"), None);
    }
}
