//! What a run measured: one [`CellReport`] per transport × loss, one [`ReconnectReport`] per
//! transport × reconnect loss, as JSON (field names stable) and as the markdown tables of
//! `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::stream::Sent;
use super::{LossSettings, Transport};
use crate::histogram::LatencySummary;

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct LossReport {
    /// What was asked for.
    pub settings: LossSettings,
    /// Throughput and delivery latency, in the order measured.
    pub cells: Vec<CellReport>,
    /// Reconnect to first message, in the order measured.
    pub reconnects: Vec<ReconnectReport>,
}

impl LossReport {
    /// Both tables in markdown, each under a one-line caption.
    pub fn markdown(&self) -> String {
        let settings = &self.settings;
        let mut text = format!(
            "Delivery: {} senders x {} msg/s for {} s, {} receivers; latency from the scheduled \
             send time to the receiver reading it; msgs/s = messages read by all receivers \
             per second.\n\n",
            settings.senders,
            settings.rate_per_sender,
            settings.duration.as_secs_f64(),
            settings.receivers
        );
        text.push_str(
            "| transport | loss % | msgs/s | p50 ms | p99 ms | max ms | complete? |\n\
             |---|---:|---:|---:|---:|---:|---|\n",
        );
        for cell in &self.cells {
            let latency = &cell.delivery.latency;
            let _ = writeln!(
                text,
                "| {} | {} | {:.0} | {} | {} | {} | {} |",
                cell.transport,
                cell.loss_percent,
                cell.delivery.per_sec,
                millis(latency.p50_us),
                millis(latency.p99_us),
                millis(latency.max_us),
                cell.verdict()
            );
        }
        let _ = write!(
            text,
            "\nReconnect to first message ({} times each way): from the start of the reconnect \
             until the message sent meanwhile arrives.\n\n\
             | transport | loss % | resume median ms | resume max ms | login median ms | \
             login max ms |\n|---|---:|---:|---:|---:|---:|\n",
            settings.reconnect_repeats
        );
        for reconnect in &self.reconnects {
            let _ = writeln!(
                text,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                reconnect.transport,
                reconnect.loss_percent,
                reconnect.resume.median_ms,
                reconnect.resume.max_ms,
                reconnect.login.median_ms,
                reconnect.login.max_ms
            );
        }
        text
    }
}

/// One transport at one loss.
#[derive(Debug, Clone, Serialize)]
pub struct CellReport {
    /// The clients' transport.
    pub transport: Transport,
    /// Packets dropped in each direction, in percent.
    pub loss_percent: u8,
    /// Sends per second asked of all senders together.
    pub offered_per_sec: f64,
    /// Sends scheduled.
    pub sent: u64,
    /// Sends acknowledged (committed) before the drain time ran out.
    pub acked: u64,
    /// Sends that failed or were not acknowledged in time.
    pub send_failures: u64,
    /// The first few send failures.
    pub send_failure_examples: Vec<String>,
    /// From each send's scheduled time to its ack.
    pub ack_latency: LatencySummary,
    /// What the receivers read.
    pub delivery: Delivery,
    /// Every receiver read every scheduled message exactly once, every send was acked, and
    /// nothing went wrong on a connection.
    pub complete: bool,
}

impl CellReport {
    pub(super) fn new(
        transport: Transport,
        loss_percent: u8,
        settings: &LossSettings,
        sent: &Sent,
        delivery: Delivery,
    ) -> Self {
        let complete = sent.failed == 0
            && delivery.missing == 0
            && delivery.duplicates == 0
            && delivery.unknown == 0
            && delivery.incidents.is_empty();
        Self {
            transport,
            loss_percent,
            offered_per_sec: settings.senders as f64 * settings.rate_per_sender,
            sent: sent.scheduled,
            acked: sent.acked,
            send_failures: sent.failed,
            send_failure_examples: sent.failures.clone(),
            ack_latency: sent.ack_latency.summary(),
            delivery,
            complete,
        }
    }

    /// `yes`, or what went wrong.
    pub fn verdict(&self) -> String {
        if self.complete {
            return "yes".to_owned();
        }
        let delivery = &self.delivery;
        let mut problems = Vec::new();
        for (count, what) in [
            (delivery.missing, "missing"),
            (delivery.duplicates, "duplicated"),
            (delivery.unknown, "unknown"),
            (self.send_failures, "sends failed"),
            (delivery.incidents.len() as u64, "connection incidents"),
        ] {
            if count > 0 {
                problems.push(format!("{count} {what}"));
            }
        }
        format!("**NO**: {}", problems.join(", "))
    }

    /// A line for the progress output.
    pub fn progress_line(&self) -> String {
        let latency = &self.delivery.latency;
        format!(
            "{} at {}% loss: {:.0} msgs/s, p50 {} ms, p99 {} ms, max {} ms, complete: {}",
            self.transport,
            self.loss_percent,
            self.delivery.per_sec,
            millis(latency.p50_us),
            millis(latency.p99_us),
            millis(latency.max_us),
            self.verdict()
        )
    }
}

/// What the receivers of one cell read, summed over them.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Messages each receiver should read (every scheduled send).
    pub expected_per_receiver: u64,
    /// Message events read by all receivers.
    pub deliveries: u64,
    /// Deliveries per second, from the first scheduled send to the last delivery.
    pub per_sec: f64,
    /// From each message's scheduled send time until a receiver read it.
    pub latency: LatencySummary,
    /// (receiver, message) pairs that never arrived.
    pub missing: u64,
    /// Extra copies read.
    pub duplicates: u64,
    /// Messages whose body names no scheduled message.
    pub unknown: u64,
    /// Closed connections, error events, shutdown notices.
    pub incidents: Vec<String>,
}

/// Reconnects over one transport at one loss.
#[derive(Debug, Clone, Serialize)]
pub struct ReconnectReport {
    /// The transport reconnected over.
    pub transport: Transport,
    /// Packets dropped in each direction, in percent.
    pub loss_percent: u8,
    /// With the resume token.
    pub resume: ReconnectTimes,
    /// With a new connection and a full OPAQUE login.
    pub login: ReconnectTimes,
}

impl ReconnectReport {
    /// A line for the progress output.
    pub fn progress_line(&self) -> String {
        format!(
            "reconnect over {} at {}% loss: resume median {:.1} ms (max {:.1}), login median \
             {:.1} ms (max {:.1})",
            self.transport,
            self.loss_percent,
            self.resume.median_ms,
            self.resume.max_ms,
            self.login.median_ms,
            self.login.max_ms
        )
    }
}

/// Repeated reconnect times, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct ReconnectTimes {
    /// Every measurement, in the order taken.
    pub samples_ms: Vec<f64>,
    /// The median (the mean of the middle two for an even count); 0 without samples.
    pub median_ms: f64,
    /// The slowest; 0 without samples.
    pub max_ms: f64,
}

impl ReconnectTimes {
    /// Summarises `samples`.
    pub fn from_samples(samples: &[Duration]) -> Self {
        let samples_ms: Vec<f64> = samples
            .iter()
            .map(|sample| sample.as_secs_f64() * 1000.0)
            .collect();
        let mut sorted = samples_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median_ms = match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[middle],
            _ => (sorted[middle - 1] + sorted[middle]) / 2.0,
        };
        Self {
            max_ms: sorted.last().copied().unwrap_or(0.0),
            median_ms,
            samples_ms,
        }
    }
}

/// Microseconds as milliseconds with one decimal.
fn millis(micros: u64) -> String {
    format!("{:.1}", micros as f64 / 1000.0)
}

/// A duration as seconds, for the JSON settings.
pub(super) fn as_secs<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let ms = |values: &[u64]| {
            values
                .iter()
                .map(|&v| Duration::from_millis(v))
                .collect::<Vec<_>>()
        };
        let odd = ReconnectTimes::from_samples(&ms(&[30, 10, 20]));
        assert_eq!((odd.median_ms, odd.max_ms), (20.0, 30.0));
        assert_eq!(
            odd.samples_ms,
            vec![30.0, 10.0, 20.0],
            "kept in order taken"
        );
        let even = ReconnectTimes::from_samples(&ms(&[40, 10, 20, 30]));
        assert_eq!((even.median_ms, even.max_ms), (25.0, 40.0));
        let none = ReconnectTimes::from_samples(&[]);
        assert_eq!((none.median_ms, none.max_ms), (0.0, 0.0));
    }
}
