//! [`Report`]: the result of one run, as one line of JSON (stable field names, for scripts
//! and for comparing runs) and as a row of the markdown table in `docs/benchmarks.md`.

use serde::Serialize;

use crate::correctness::Correctness;
use crate::histogram::LatencySummary;

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The scenario (`durable`).
    pub scenario: &'static str,
    /// `embedded` (chatd in the load generator's process) or `remote`.
    pub mode: &'static str,
    /// Transport (`ws`).
    pub transport: &'static str,
    /// Clients; each sends and receives.
    pub clients: usize,
    /// Rooms the clients were spread over.
    pub rooms: usize,
    /// Messages each client sends.
    pub messages_per_client: usize,
    /// Sends each client keeps outstanding.
    pub concurrency: usize,
    /// The fixed total send rate asked for, if any (else as fast as acks return).
    pub rate: Option<f64>,
    /// Bytes per message body.
    pub body_bytes: usize,
    /// Seconds spent connecting, registering and logging in (not measured further).
    pub setup_secs: f64,
    /// Sends acknowledged.
    pub acked: u64,
    /// Sends repeated after a retryable refusal (`rate_limited`, `busy`) or a timeout.
    pub retries: u64,
    /// From the first send to the last ack, in seconds.
    pub send_secs: f64,
    /// Acknowledged sends per second over `send_secs`.
    pub acked_per_sec: f64,
    /// From the first send until its ack.
    pub ack_latency: LatencySummary,
    /// Message events received, over all clients.
    pub delivered: u64,
    /// From the first send to the last delivery, in seconds.
    pub delivery_secs: f64,
    /// Message events received per second over `delivery_secs`.
    pub delivered_per_sec: f64,
    /// From the send (time written into the body) until a client read the event.
    pub delivery_latency: LatencySummary,
    /// Whether every client received every message exactly once and in order.
    pub correctness: Correctness,
    /// The daemon's group commit over the measured phase, when its status could be read.
    pub batches: Option<BatchReport>,
    /// The daemon process over the measured phase, when it could be read.
    pub process: Option<ProcessReport>,
}

/// How the daemon's writer batched the sends of the measured phase (from its status before
/// and after; other traffic on the daemon during the run counts too).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchReport {
    /// Transactions the writer ran.
    pub commits: u64,
    /// Sends those transactions carried.
    pub sends: u64,
    /// `sends / commits`.
    pub mean_size: f64,
}

impl BatchReport {
    /// The difference of two `(commits, sends)` readings.
    pub fn between(before: (u64, u64), after: (u64, u64)) -> Self {
        let commits = after.0.saturating_sub(before.0);
        let sends = after.1.saturating_sub(before.1);
        Self {
            commits,
            sends,
            mean_size: if commits == 0 {
                0.0
            } else {
                sends as f64 / commits as f64
            },
        }
    }
}

/// CPU and memory of the daemon's process over the measured phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessReport {
    /// Which process: `daemon` (a separate chatd) or `daemon+loadgen` (embedded: the load
    /// generator's clients run in the same process and are counted too).
    pub measured: &'static str,
    /// Its process id.
    pub pid: u32,
    /// User plus system CPU seconds during the measured phase.
    pub cpu_secs: f64,
    /// `cpu_secs` over the phase's wall time, in percent of one core.
    pub cpu_percent: f64,
    /// Peak resident set size, in MiB: since the reset at the start of the measured phase
    /// when `peak_rss_reset`, else since the process started.
    pub peak_rss_mib: f64,
    /// Whether the peak was reset when the measured phase began.
    pub peak_rss_reset: bool,
    /// Resident set size at the end, in MiB.
    pub rss_mib: f64,
}

impl Report {
    /// The report as one line of JSON.
    ///
    /// # Errors
    /// Never for this type in practice (no maps with non-string keys); kept for `serde`.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// The markdown table header that [`Report::markdown_row`] fills.
    pub fn markdown_header() -> String {
        let titles = [
            "mode",
            "clients × msgs",
            "rooms",
            "conc",
            "rate/s",
            "acked/s",
            "ack p50 / p99 / p999 / max (ms)",
            "delivered/s",
            "delivery p50 / p99 / p999 / max (ms)",
            "CPU s (% of a core)",
            "peak RSS MiB",
            "commits (sends per commit)",
            "correct",
        ];
        let rule: Vec<&str> = titles.iter().map(|_| "---").collect();
        format!("| {} |\n| {} |", titles.join(" | "), rule.join(" | "))
    }

    /// The report as one markdown table row.
    pub fn markdown_row(&self) -> String {
        let (cpu, rss) = self.process.as_ref().map_or_else(
            || ("–".to_owned(), "–".to_owned()),
            |process| {
                (
                    format!("{:.1} ({:.0} %)", process.cpu_secs, process.cpu_percent),
                    format!("{:.0}", process.peak_rss_mib),
                )
            },
        );
        let mode = match &self.process {
            Some(process) if self.mode == "embedded" => format!("embedded ({})", process.measured),
            _ => self.mode.to_owned(),
        };
        let cells = [
            mode,
            format!("{} × {}", self.clients, self.messages_per_client),
            self.rooms.to_string(),
            self.concurrency.to_string(),
            self.rate
                .map_or_else(|| "max".to_owned(), |rate| format!("{rate:.0}")),
            format!("{:.0}", self.acked_per_sec),
            latencies(&self.ack_latency),
            format!("{:.0}", self.delivered_per_sec),
            latencies(&self.delivery_latency),
            cpu,
            rss,
            self.batches.as_ref().map_or_else(
                || "–".to_owned(),
                |batches| format!("{} ({:.1})", batches.commits, batches.mean_size),
            ),
            if self.correctness.correct {
                "yes"
            } else {
                "NO"
            }
            .to_owned(),
        ];
        format!("| {} |", cells.join(" | "))
    }
}

/// `p50 / p99 / p999 / max` in milliseconds.
fn latencies(summary: &LatencySummary) -> String {
    let ms = |micros: u64| micros as f64 / 1000.0;
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2}",
        ms(summary.p50_us),
        ms(summary.p99_us),
        ms(summary.p999_us),
        ms(summary.max_us)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(p50_us: u64) -> LatencySummary {
        LatencySummary {
            count: 10,
            p50_us,
            p99_us: p50_us * 2,
            p999_us: p50_us * 3,
            max_us: p50_us * 4,
            mean_us: p50_us as f64,
        }
    }

    fn report() -> Report {
        Report {
            scenario: "durable",
            mode: "embedded",
            transport: "ws",
            clients: 4,
            rooms: 1,
            messages_per_client: 2000,
            concurrency: 16,
            rate: None,
            body_bytes: 100,
            setup_secs: 1.5,
            acked: 8000,
            retries: 0,
            send_secs: 2.0,
            acked_per_sec: 4000.0,
            ack_latency: latency(1500),
            delivered: 32_000,
            delivery_secs: 2.0,
            delivered_per_sec: 16_000.0,
            delivery_latency: latency(2000),
            correctness: Correctness {
                correct: true,
                problems: Vec::new(),
            },
            batches: Some(BatchReport::between((10, 100), (110, 3300))),
            process: Some(ProcessReport {
                measured: "daemon+loadgen",
                pid: 1,
                cpu_secs: 3.25,
                cpu_percent: 162.5,
                peak_rss_mib: 41.2,
                peak_rss_reset: true,
                rss_mib: 30.0,
            }),
        }
    }

    #[test]
    fn the_markdown_row_fills_every_column_of_the_header() {
        let columns = |line: &str| line.matches('|').count();
        let header = Report::markdown_header();
        let row = report().markdown_row();
        for line in header.lines() {
            assert_eq!(columns(line), columns(&row), "{header}\n{row}");
        }
        assert_eq!(
            row,
            "| embedded (daemon+loadgen) | 4 × 2000 | 1 | 16 | max | 4000 | 1.50 / 3.00 / 4.50 / 6.00 \
             | 16000 | 2.00 / 4.00 / 6.00 / 8.00 | 3.2 (162 %) | 41 | 100 (32.0) | yes |"
        );
    }

    #[test]
    fn the_json_is_one_line_with_the_verdict() {
        let json = report().to_json().unwrap();
        assert!(!json.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["correctness"]["correct"], true);
        assert_eq!(value["ack_latency"]["p99_us"], 3000);
        assert_eq!(value["process"]["measured"], "daemon+loadgen");
    }
}
