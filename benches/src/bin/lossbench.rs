//! `lossbench`: WebSocket against QUIC on a link that drops packets.
//!
//! Starts the real `chatd` (built in the same profile, beside this binary) inside a network
//! namespace whose veth link drops a share of packets in each direction, then measures, for
//! each loss and transport, delivery throughput and latency under a fixed send rate, and the
//! time from a reconnect to the first missed message, with the resume token and with a full
//! login. Needs root and nftables.
//!
//! ```text
//! cargo build --release -p chatd -p chatd-benches
//! target/release/lossbench                      # 0, 1, 5, 10 % loss; about 2 minutes
//! target/release/lossbench --loss 5 --duration-secs 2 --senders 1 --receivers 1 --reconnect-loss 5 --reconnect-repeats 1
//! ```
//!
//! Prints the two markdown tables on stdout (`--json`: one JSON object instead) and a line
//! per finished step on stderr. Exits 0 when the run finished (a cell that lost or
//! duplicated messages says so in its `complete?` column and in a warning on stderr), 1 when
//! it could not run, 2 for bad arguments.

use std::process::ExitCode;
use std::time::Duration;

use chatd_benches::loss::{self, LossSettings, Transport};
use clap::Parser;

/// Measure chatd over WebSocket and QUIC on a lossy link: delivery latency under a fixed
/// send rate, and reconnect to first message (resume token against full login).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Packet loss of the delivery runs, in percent each direction, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5,10",
          value_parser = clap::value_parser!(u8).range(0..=100))]
    loss: Vec<u8>,
    /// Packet loss of the reconnect measurements, in percent, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,5",
          value_parser = clap::value_parser!(u8).range(0..=100))]
    reconnect_loss: Vec<u8>,
    /// Transports, comma-separated, in the order they run at each loss.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ws,quic")]
    transport: Vec<Transport>,
    /// Sending clients per run.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    senders: u16,
    /// Receiving clients per run.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    receivers: u16,
    /// Messages per second each sender sends, at a fixed pace.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seconds the senders send.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,
    /// Seconds after the last scheduled send that acks and deliveries are waited for.
    #[arg(long, default_value_t = 20)]
    drain_secs: u64,
    /// Bytes per message body (chatd's default limit is 4096).
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// Reconnects measured per way, transport and loss.
    #[arg(long, default_value_t = 10)]
    reconnect_repeats: usize,
    /// Print the report as one JSON object instead of the markdown tables.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lossbench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    anyhow::ensure!(
        cli.rate > 0.0 && cli.rate.is_finite(),
        "--rate must be a positive number of messages per second, not {}",
        cli.rate
    );
    let settings = LossSettings {
        losses: cli.loss,
        reconnect_losses: cli.reconnect_loss,
        transports: cli.transport,
        senders: usize::from(cli.senders),
        receivers: usize::from(cli.receivers),
        rate_per_sender: cli.rate,
        duration: Duration::from_secs(cli.duration_secs),
        drain: Duration::from_secs(cli.drain_secs),
        body_bytes: cli.body_bytes,
        reconnect_repeats: cli.reconnect_repeats,
    };
    let report = loss::run(&settings, |line| eprintln!("{line}")).await?;
    for cell in report.cells.iter().filter(|cell| !cell.complete) {
        eprintln!(
            "warning: {} at {}% loss did not deliver every message exactly once: {}",
            cell.transport,
            cell.loss_percent,
            cell.verdict()
        );
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.markdown());
    }
    Ok(())
}
