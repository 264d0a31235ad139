//! The `durable` scenario: one room, N clients that all send and all receive. Each client
//! sends M messages with C sends outstanding at a time and reads every message of the room.
//! It measures acknowledged sends per second and the ack latency (the store commits before
//! it acks, so this is the durable path), delivered messages per second and the delivery
//! latency, and checks that every client got every message exactly once and in commit order.
//!
//! # Layout
//! - this file: [`DurableSettings`] and [`run`], which sequences set-up, the measured phase
//!   and the report.
//! - `setup`: the run's room, users and logged-in clients.
//! - `traffic`: the sending workers, the receiving tasks and the message body.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::correctness::{AckLog, DeliveryCheck, judge};
use crate::histogram::LatencyHistogram;
use crate::process::{ProcessProbe, ProcessSample};
use crate::report::{ProcessReport, Report};
use crate::target::RunningTarget;

mod setup;
mod traffic;

use self::setup::{Joined, RunNames};
use self::traffic::{MIN_BODY_BYTES, Received, SendPlan, SentByWorker};

/// After the last ack, how long the receivers get for the messages still on their way before
/// the run counts the rest as lost.
const SETTLE_TIME: Duration = Duration::from_secs(10);

/// The size of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableSettings {
    /// Clients; each sends and receives. Default 4.
    pub clients: usize,
    /// Messages each client sends. Default 2000.
    pub messages: usize,
    /// Sends each client keeps outstanding. Default 1.
    pub concurrency: usize,
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
            time_limit: Duration::from_secs(60),
            ..Self::default()
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(self.clients >= 1, "at least one client is needed");
        ensure!(
            self.messages >= 1,
            "at least one message per client is needed"
        );
        ensure!(self.concurrency >= 1, "the concurrency must be at least 1");
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
            messages: 2000,
            concurrency: 1,
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
    let joined = setup::prepare(&target.url, &target.admin_socket, &names, settings.clients)
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

    let phase = measure(&joined, &names, settings).await?;

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
    Ok(phase.into_report(settings, target, setup_secs, process))
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
    correctness: crate::correctness::Correctness,
    /// From the first send until the receivers finished.
    wall: Duration,
}

async fn measure(
    joined: &[Joined],
    names: &RunNames,
    settings: &DurableSettings,
) -> anyhow::Result<Phase> {
    let clients = joined.len();
    // Nobody sends before every client has joined, so each room head is the same.
    let first_seq = joined.iter().map(|j| j.last_seq).max().unwrap_or(0) + 1;
    let stop = CancellationToken::new();
    let epoch = Instant::now();
    let deadline = epoch + settings.time_limit;

    let receivers: Vec<JoinHandle<Received>> = joined
        .iter()
        .enumerate()
        .map(|(receiver, joined)| {
            let check = DeliveryCheck::new(receiver, clients, settings.messages, first_seq);
            tokio::spawn(traffic::receive(
                Arc::clone(&joined.client),
                receiver,
                check,
                epoch,
                stop.clone(),
            ))
        })
        .collect();
    let mut senders: Vec<(usize, JoinHandle<SentByWorker>)> = Vec::new();
    for (sender, joined) in joined.iter().enumerate() {
        let plan = SendPlan {
            client: Arc::clone(&joined.client),
            room: names.room.clone(),
            sender,
            next_index: Arc::new(AtomicUsize::new(0)),
            messages: settings.messages,
            body_bytes: settings.body_bytes,
            epoch,
            deadline,
        };
        for _ in 0..settings.concurrency {
            senders.push((sender, tokio::spawn(traffic::send_worker(plan.clone()))));
        }
    }

    let mut acks = AckLog::new(clients, settings.messages);
    let mut ack_latency = LatencyHistogram::new();
    let (mut retries, mut last_ack, mut incidents) = (0, epoch, Vec::new());
    for (sender, worker) in senders {
        let sent = worker.await.context("a sending worker panicked")?;
        for (index, seq) in sent.acks {
            acks.handle_ack(sender, index, seq);
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
    let mut checks = Vec::with_capacity(clients);
    let mut delivery_latency = LatencyHistogram::new();
    let mut last_delivery = epoch;
    for receiver in receivers {
        let received = receiver.await.context("a receiving task panicked")?;
        delivery_latency.merge(&received.delivery_latency)?;
        last_delivery = last_delivery.max(received.last_delivery.unwrap_or(epoch));
        incidents.extend(received.incidents);
        checks.push(received.check);
    }
    stopper.abort();
    let wall = epoch.elapsed();

    let mut correctness = judge(&acks, &checks, first_seq);
    if !incidents.is_empty() {
        correctness.correct = false;
        correctness.problems.extend(incidents);
    }
    let delivered = checks.iter().map(DeliveryCheck::received).sum();
    Ok(Phase {
        acked: acks.acked(),
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

impl Phase {
    fn into_report(
        self,
        settings: &DurableSettings,
        target: &RunningTarget,
        setup_secs: f64,
        process: Option<ProcessReport>,
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
            messages_per_client: settings.messages,
            concurrency: settings.concurrency,
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
