//! The `durable` scenario: N clients over R rooms (one room by default), all sending and all
//! receiving. Each client sends M messages with C sends outstanding at a time, in turn to
//! the rooms it is in (see `layout`), and reads every message of its rooms.
//! It measures acknowledged sends per second and the ack latency (the store commits before
//! it acks, so this is the durable path), delivered messages per second and the delivery
//! latency, and checks that every client got every message exactly once and in commit order.
//!
//! # Layout
//! - this file: [`DurableSettings`] and [`run`], which sequences set-up, the measured phase
//!   and the report.
//! - `layout`: which clients are in which rooms.
//! - `setup`: the run's rooms, users and logged-in clients.
//! - `traffic`: the sending workers, the receiving tasks and the message body.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use protocol::admin::{AdminReply, AdminRequest};
use protocol::client::admin::AdminClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::correctness::{AckLog, Correctness, DeliveryCheck, RoomPlan, judge};
use crate::histogram::LatencyHistogram;
use crate::process::{ProcessProbe, ProcessSample};
use crate::report::{BatchReport, ProcessReport, Report};
use crate::target::RunningTarget;

mod layout;
mod setup;
mod traffic;

use self::layout::Layout;
use self::setup::{Joined, RunNames};
use self::traffic::{MIN_BODY_BYTES, Pace, Received, SendPlan, SentByWorker};

/// After the last ack, how long the receivers get for the messages still on their way before
/// the run counts the rest as lost.
const SETTLE_TIME: Duration = Duration::from_secs(10);

/// The size of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableSettings {
    /// Clients; each sends and receives. Default 4.
    pub clients: usize,
    /// Rooms the clients are spread over. Default 1.
    pub rooms: usize,
    /// Messages each client sends. Default 2000.
    pub messages: usize,
    /// Sends each client keeps outstanding. Default 1.
    pub concurrency: usize,
    /// Total sends per second over all clients, spread evenly over their sending workers;
    /// `None` sends as fast as the acks come back. At a fixed rate each latency counts from
    /// the time the send was due, so a daemon that falls behind shows it in the latencies
    /// rather than by slowing the load down.
    pub rate: Option<f64>,
    /// Bytes per message body. Default 100.
    pub body_bytes: usize,
    /// Longest the measured phase may take; sends not started by then are not made. Default
    /// 10 minutes.
    pub time_limit: Duration,
}

impl DurableSettings {
    /// A run of a few seconds for a smoke test: 2 clients × 100 messages, 4 outstanding.
    pub fn quick() -> Self {
        Self {
            clients: 2,
            messages: 100,
            concurrency: 4,
            rate: None,
            time_limit: Duration::from_secs(60),
            ..Self::default()
        }
    }

    fn layout(&self) -> Layout {
        Layout {
            clients: self.clients,
            rooms: self.rooms,
            messages: self.messages,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(self.clients >= 1, "at least one client is needed");
        ensure!(self.rooms >= 1, "at least one room is needed");
        ensure!(
            self.messages >= 1,
            "at least one message per client is needed"
        );
        ensure!(self.concurrency >= 1, "the concurrency must be at least 1");
        ensure!(
            self.rate.is_none_or(|rate| rate.is_finite() && rate > 0.0),
            "the rate must be a positive number of sends per second"
        );
        ensure!(
            self.body_bytes >= MIN_BODY_BYTES,
            "bodies must be at least {MIN_BODY_BYTES} bytes, to carry the sender, the index \
             and the send time"
        );
        Ok(())
    }
}

impl Default for DurableSettings {
    fn default() -> Self {
        Self {
            clients: 4,
            rooms: 1,
            messages: 2000,
            concurrency: 1,
            rate: None,
            body_bytes: 100,
            time_limit: Duration::from_secs(600),
        }
    }
}

/// Runs the scenario against `target` and reports it. A run that loses, repeats or reorders
/// messages still returns a report, with `correctness.correct` false and the problems listed.
///
/// # Errors
/// When the settings are invalid or the set-up fails (the daemon is unreachable, refuses
/// the room or a user, or the login fails).
pub async fn run(target: &RunningTarget, settings: &DurableSettings) -> anyhow::Result<Report> {
    settings.check()?;
    let setup_started = Instant::now();
    let names = RunNames::fresh()?;
    let joined = setup::prepare(&target.url, &target.admin_socket, &names, settings.layout())
        .await
        .context("set-up failed")?;
    let max_body = joined
        .first()
        .map_or(u32::MAX, |first| first.client.limits().max_body_bytes);
    ensure!(
        settings.body_bytes <= usize::try_from(max_body).unwrap_or(usize::MAX),
        "bodies of {} bytes exceed the daemon's limit of {max_body}",
        settings.body_bytes
    );
    let setup_secs = setup_started.elapsed().as_secs_f64();

    let probe = target.daemon_pid.map(ProcessProbe::new);
    let peak_rss_reset = probe.as_ref().is_some_and(ProcessProbe::reset_peak_rss);
    let before = probe.as_ref().and_then(|probe| probe.sample().ok());

    let commits_before = store_commits(&target.admin_socket).await;
    let phase = measure(&joined, settings).await?;
    let commits_after = store_commits(&target.admin_socket).await;
    let batches = match (commits_before, commits_after) {
        (Some(before), Some(after)) => Some(BatchReport::between(before, after)),
        _ => None,
    };

    let after = probe.as_ref().and_then(|probe| probe.sample().ok());
    let process = match (target.daemon_pid, before, after) {
        (Some(pid), Some(before), Some(after)) => Some(process_report(
            pid,
            target.is_embedded(),
            peak_rss_reset,
            (before, after),
            phase.wall,
        )),
        _ => None,
    };
    for client in joined {
        if let Ok(client) = Arc::try_unwrap(client.client) {
            client.close().await;
        }
    }
    Ok(phase.into_report(settings, target, setup_secs, process, batches))
}

/// What the measured phase produced.
struct Phase {
    acked: u64,
    retries: u64,
    send_secs: f64,
    ack_latency: LatencyHistogram,
    delivered: u64,
    delivery_secs: f64,
    delivery_latency: LatencyHistogram,
    correctness: Correctness,
    /// From the first send until the receivers finished.
    wall: Duration,
}

async fn measure(joined: &[Joined], settings: &DurableSettings) -> anyhow::Result<Phase> {
    let layout = settings.layout();
    let plans: Vec<Arc<RoomPlan>> = (0..layout.rooms)
        .map(|room| Arc::new(layout.plan(room)))
        .collect();
    // Nobody sends before every client has joined, so each room's head is the same for all
    // of its members.
    let mut first_seqs = vec![1_u64; layout.rooms];
    for (room, _, last_seq) in joined.iter().flat_map(|joined| &joined.rooms) {
        first_seqs[*room] = first_seqs[*room].max(last_seq + 1);
    }
    let stop = CancellationToken::new();
    let epoch = Instant::now();
    let deadline = epoch + settings.time_limit;

    let receivers = start_receivers(joined, &plans, &first_seqs, epoch, &stop);
    let senders = start_senders(joined, settings, epoch, deadline);

    let mut acks: Vec<AckLog> = plans
        .iter()
        .map(|plan| AckLog::new(Arc::clone(plan)))
        .collect();
    let mut ack_latency = LatencyHistogram::new();
    let (mut retries, mut last_ack, mut incidents) = (0, epoch, Vec::new());
    for (sender, worker) in senders {
        let sent = worker.await.context("a sending worker panicked")?;
        for (index, seq) in sent.acks {
            acks[layout.room_of(sender, index)].handle_ack(sender, index, seq);
        }
        ack_latency.merge(&sent.ack_latency)?;
        retries += sent.retries;
        last_ack = last_ack.max(sent.last_ack.unwrap_or(epoch));
        incidents.extend(sent.failure);
    }

    // Receivers that are still waiting get a bounded time for messages in flight.
    let settle = stop.clone();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(SETTLE_TIME).await;
        settle.cancel();
    });
    let mut checks: Vec<Vec<DeliveryCheck>> = vec![Vec::new(); layout.rooms];
    let mut delivery_latency = LatencyHistogram::new();
    let mut last_delivery = epoch;
    for receiver in receivers {
        let received = receiver.await.context("a receiving task panicked")?;
        delivery_latency.merge(&received.delivery_latency)?;
        last_delivery = last_delivery.max(received.last_delivery.unwrap_or(epoch));
        incidents.extend(received.incidents);
        for (room, check) in received.checks {
            checks[room].push(check);
        }
    }
    stopper.abort();
    let wall = epoch.elapsed();

    let mut correctness = Correctness {
        correct: true,
        problems: Vec::new(),
    };
    for ((acks, checks), first_seq) in acks.iter().zip(&checks).zip(first_seqs) {
        let room = judge(acks, checks, first_seq);
        correctness.correct &= room.correct;
        correctness.problems.extend(room.problems);
    }
    if !incidents.is_empty() {
        correctness.correct = false;
        correctness.problems.extend(incidents);
    }
    let delivered = checks.iter().flatten().map(DeliveryCheck::received).sum();
    let acked = acks.iter().map(AckLog::acked).sum();
    Ok(Phase {
        acked,
        retries,
        send_secs: last_ack.duration_since(epoch).as_secs_f64(),
        ack_latency,
        delivered,
        delivery_secs: last_delivery.duration_since(epoch).as_secs_f64(),
        delivery_latency,
        correctness,
        wall,
    })
}

/// One receiving task per client, checking each of its rooms against the room's plan.
fn start_receivers(
    joined: &[Joined],
    plans: &[Arc<RoomPlan>],
    first_seqs: &[u64],
    epoch: Instant,
    stop: &CancellationToken,
) -> Vec<JoinHandle<Received>> {
    joined
        .iter()
        .enumerate()
        .map(|(receiver, joined)| {
            let checks = joined
                .rooms
                .iter()
                .map(|(room, name, _)| {
                    let plan = Arc::clone(&plans[*room]);
                    let check = DeliveryCheck::new(receiver, plan, first_seqs[*room]);
                    (name.clone(), *room, check)
                })
                .collect();
            tokio::spawn(traffic::receive(
                Arc::clone(&joined.client),
                receiver,
                checks,
                epoch,
                stop.clone(),
            ))
        })
        .collect()
}

/// `concurrency` sending workers per client, each with its client's number.
fn start_senders(
    joined: &[Joined],
    settings: &DurableSettings,
    epoch: Instant,
    deadline: Instant,
) -> Vec<(usize, JoinHandle<SentByWorker>)> {
    let workers = settings.clients * settings.concurrency;
    // At a fixed rate each worker sends every `period`, the workers' turns spread evenly.
    let period = settings
        .rate
        .map(|rate| Duration::from_secs_f64(workers as f64 / rate));
    let mut senders = Vec::with_capacity(workers);
    for (sender, joined) in joined.iter().enumerate() {
        let plan = SendPlan {
            client: Arc::clone(&joined.client),
            rooms: Arc::new(
                joined
                    .rooms
                    .iter()
                    .map(|(_, name, _)| name.clone())
                    .collect(),
            ),
            sender,
            next_index: Arc::new(AtomicUsize::new(0)),
            messages: settings.messages,
            body_bytes: settings.body_bytes,
            epoch,
            deadline,
        };
        for slot in 0..settings.concurrency {
            let worker = sender * settings.concurrency + slot;
            let pace = period.map(|period| Pace {
                first: epoch + period.mul_f64(worker as f64 / workers as f64),
                period,
            });
            senders.push((
                sender,
                tokio::spawn(traffic::send_worker(plan.clone(), pace)),
            ));
        }
    }
    senders
}

/// The daemon's writer counters `(transactions, sends)` from its status, if it answers.
async fn store_commits(admin_socket: &std::path::Path) -> Option<(u64, u64)> {
    let mut admin = AdminClient::connect(admin_socket).await.ok()?;
    match admin.request(&AdminRequest::Status).await.ok()? {
        AdminReply::Status(status) => Some((status.store_commits, status.store_committed_sends)),
        _ => None,
    }
}

impl Phase {
    fn into_report(
        self,
        settings: &DurableSettings,
        target: &RunningTarget,
        setup_secs: f64,
        process: Option<ProcessReport>,
        batches: Option<BatchReport>,
    ) -> Report {
        Report {
            scenario: "durable",
            mode: if target.is_embedded() {
                "embedded"
            } else {
                "remote"
            },
            transport: "ws",
            clients: settings.clients,
            rooms: settings.rooms,
            messages_per_client: settings.messages,
            concurrency: settings.concurrency,
            rate: settings.rate,
            body_bytes: settings.body_bytes,
            setup_secs,
            acked: self.acked,
            retries: self.retries,
            send_secs: self.send_secs,
            acked_per_sec: per_sec(self.acked, self.send_secs),
            ack_latency: self.ack_latency.summary(),
            delivered: self.delivered,
            delivery_secs: self.delivery_secs,
            delivered_per_sec: per_sec(self.delivered, self.delivery_secs),
            delivery_latency: self.delivery_latency.summary(),
            correctness: self.correctness,
            batches,
            process,
        }
    }
}

fn process_report(
    pid: u32,
    embedded: bool,
    peak_rss_reset: bool,
    (before, after): (ProcessSample, ProcessSample),
    wall: Duration,
) -> ProcessReport {
    let cpu_secs = after.cpu.saturating_sub(before.cpu).as_secs_f64();
    let mib = |kib: u64| kib as f64 / 1024.0;
    ProcessReport {
        measured: if embedded { "daemon+loadgen" } else { "daemon" },
        pid,
        cpu_secs,
        cpu_percent: 100.0 * cpu_secs / wall.as_secs_f64().max(f64::EPSILON),
        peak_rss_mib: mib(after.peak_rss_kib),
        peak_rss_reset,
        rss_mib: mib(after.rss_kib),
    }
}

fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}
