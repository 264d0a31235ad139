//! The lossy-network benchmark: WebSocket against QUIC while a share of packets is dropped.
//!
//! The real `chatd` binary runs inside a [`LossyNetwork`](chatd_tests::LossyNetwork)'s
//! namespace; the clients run in this process, outside, through the client library. For each
//! loss and each transport one *cell* runs the same workload: one room, S senders at a fixed
//! pace and R receivers that time every delivery from the message's scheduled send time (so
//! a stall shows up as latency instead of slowing the load). Then, per transport and loss,
//! the time from starting to reconnect until a missed message arrives, with the resume
//! token and with a full OPAQUE login. Clients log in on a clean link; the loss is set
//! for the measured phase only.
//!
//! # Layout
//! - `bed`: [`TestBed`]: the namespace, the chatd process inside, users, rooms and
//!   logged-in clients.
//! - `stream`: one cell: paced senders, receivers, exactly-once bookkeeping.
//! - `reconnect`: reconnect-to-first-message, resume against login.
//! - `report`: the results, as JSON and as markdown tables.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use protocol::client::{Client, Event};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

mod bed;
mod reconnect;
mod report;
mod stream;

pub use bed::TestBed;
pub use report::{CellReport, LossReport, ReconnectReport, ReconnectTimes};

/// A client transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket over TCP (`ws://`).
    Ws,
    /// QUIC over UDP (`quic://`).
    Quic,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ws => "WebSocket",
            Self::Quic => "QUIC",
        })
    }
}

/// What one run measures.
#[derive(Debug, Clone, Serialize)]
pub struct LossSettings {
    /// Packet loss of the throughput cells, in percent, each direction.
    pub losses: Vec<u8>,
    /// Packet loss of the reconnect measurements, in percent.
    pub reconnect_losses: Vec<u8>,
    /// Transports, in the order they run at each loss.
    pub transports: Vec<Transport>,
    /// Sending clients per cell.
    pub senders: usize,
    /// Receiving clients per cell.
    pub receivers: usize,
    /// Messages per second each sender sends.
    pub rate_per_sender: f64,
    /// How long the senders send.
    #[serde(serialize_with = "report::as_secs")]
    pub duration: Duration,
    /// How long after the last scheduled send receivers and acks are waited for.
    #[serde(serialize_with = "report::as_secs")]
    pub drain: Duration,
    /// Bytes per message body.
    pub body_bytes: usize,
    /// Reconnects measured per way, transport and loss.
    pub reconnect_repeats: usize,
}

impl Default for LossSettings {
    fn default() -> Self {
        Self {
            losses: vec![0, 1, 5, 10],
            reconnect_losses: vec![0, 5],
            transports: vec![Transport::Ws, Transport::Quic],
            senders: 4,
            receivers: 4,
            rate_per_sender: 50.0,
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(20),
            body_bytes: 100,
            reconnect_repeats: 10,
        }
    }
}

/// Runs every cell, then every reconnect measurement, on one daemon; `progress` gets a line
/// per finished step (the binary prints them on standard error).
///
/// # Errors
/// When the network or the daemon cannot be set up (not root, no nftables, no `chatd`
/// binary beside this one), a client cannot log in on the clean link, or a reconnect fails.
/// Messages lost or duplicated in a cell are not errors: the cell's report says so.
pub async fn run(
    settings: &LossSettings,
    mut progress: impl FnMut(String),
) -> anyhow::Result<LossReport> {
    anyhow::ensure!(
        settings.senders > 0 && settings.receivers > 0,
        "a cell needs at least one sender and one receiver"
    );
    anyhow::ensure!(
        settings.rate_per_sender > 0.0 && settings.rate_per_sender.is_finite(),
        "the send rate must be a positive number of messages per second"
    );
    let users = (settings.senders + settings.receivers).max(reconnect::USERS);
    let mut bed = TestBed::start(users).await?;
    progress(format!(
        "chatd is up in network namespace {}",
        bed.network().namespace()
    ));
    let mut cells = Vec::new();
    for &loss in &settings.losses {
        for &transport in &settings.transports {
            let cell = stream::run(&mut bed, transport, loss, settings).await?;
            progress(cell.progress_line());
            cells.push(cell);
        }
    }
    let mut reconnects = Vec::new();
    for &loss in &settings.reconnect_losses {
        for &transport in &settings.transports {
            let measured =
                reconnect::run(&mut bed, transport, loss, settings.reconnect_repeats).await?;
            progress(measured.progress_line());
            reconnects.push(measured);
        }
    }
    bed.stop().await;
    Ok(LossReport {
        settings: settings.clone(),
        cells,
        reconnects,
    })
}

/// Reads and drops a client's events (a sender's own messages) until `stop` fires or the
/// connection ends, so its connection keeps flowing.
async fn discard_events(client: Arc<Client>, stop: CancellationToken) {
    loop {
        // `next_event` is cancel-safe.
        let event = tokio::select! {
            event = client.next_event() => event,
            () = stop.cancelled() => return,
        };
        if matches!(event, None | Some(Event::Closed(_))) {
            return;
        }
    }
}
