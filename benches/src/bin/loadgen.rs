//! `loadgen`: drives a chatd daemon with many clients and reports what it measured.
//!
//! Run with an embedded daemon (in this process, on a temporary SQLite data directory):
//!
//! ```text
//! cargo run --release -p chatd-benches --bin loadgen -- --clients 4 --messages 2000 --concurrency 16
//! ```
//!
//! or against a running daemon, with its admin socket to create the room and the users and
//! its process id to read its CPU time and memory:
//!
//! ```text
//! loadgen --url ws://127.0.0.1:7878 --admin-socket /run/chatd/chatd.sock --daemon-pid 1234
//! ```
//!
//! Prints one JSON object on stdout and a markdown table row on stderr (`--markdown` prints
//! the table header and row on stdout instead of the JSON). Exits 0 when every message
//! arrived exactly once and in order, 1 when not, 2 for bad arguments and 3 when the run
//! could not be set up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chatd_benches::{DurableSettings, Report, Target};
use clap::{Parser, ValueEnum};

/// Drive a chatd daemon with many clients; report throughput, latency, CPU, memory and
/// whether every message arrived exactly once and in order.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// What the clients do. `durable`: every client sends and receives every message of its
    /// rooms; acks come after the store committed.
    #[arg(long, value_enum, default_value_t = Scenario::Durable)]
    scenario: Scenario,
    /// Clients (each sends and receives). Default 4.
    #[arg(long)]
    clients: Option<usize>,
    /// Rooms the clients are spread over. With more rooms than clients each client is in
    /// several rooms and sends to them in turn; with fewer, rooms are shared. Default 1.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Messages each client sends. Default 2000.
    #[arg(long)]
    messages: Option<usize>,
    /// Sends each client keeps outstanding. Default 1.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Total sends per second over all clients, at a fixed pace (each latency counts from
    /// the time its send was due). Without it, every worker sends as soon as its previous
    /// send was acknowledged.
    #[arg(long)]
    rate: Option<f64>,
    /// Bytes per message body (at least 32).
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// Longest the measured phase may take, in seconds.
    #[arg(long, default_value_t = 600)]
    time_limit_secs: u64,
    /// A run of a few seconds (2 clients × 100 messages, 4 outstanding), to check that the
    /// load generator works; its numbers mean little.
    #[arg(long, conflicts_with_all = ["clients", "messages", "concurrency"])]
    quick: bool,
    /// Measure a running daemon at this WebSocket URL instead of an embedded one.
    #[arg(long, requires = "admin_socket")]
    url: Option<String>,
    /// The running daemon's admin socket (with --url), to create the room and the users.
    #[arg(long, requires = "url")]
    admin_socket: Option<PathBuf>,
    /// The running daemon's process id (with --url), to report its CPU time and memory.
    #[arg(long, requires = "url")]
    daemon_pid: Option<u32>,
    /// Print the markdown table (header and row) on stdout instead of the JSON.
    #[arg(long)]
    markdown: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    Durable,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match run(&cli) {
        Ok(report) => {
            print(&cli, &report);
            if report.correctness.correct {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::from(3)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<Report> {
    let target = match (&cli.url, &cli.admin_socket) {
        (Some(url), Some(admin_socket)) => Target::Remote {
            url: url.clone(),
            admin_socket: admin_socket.clone(),
            daemon_pid: cli.daemon_pid,
        },
        _ => Target::Embedded,
    };
    let settings = settings(cli);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let running = target.start().await?;
        let Scenario::Durable = cli.scenario;
        let report = chatd_benches::durable::run(&running, &settings).await;
        running.stop().await;
        report
    })
}

fn settings(cli: &Cli) -> DurableSettings {
    let base = if cli.quick {
        DurableSettings::quick()
    } else {
        DurableSettings::default()
    };
    DurableSettings {
        clients: cli.clients.unwrap_or(base.clients),
        rooms: cli.rooms,
        rate: cli.rate,
        messages: cli.messages.unwrap_or(base.messages),
        concurrency: cli.concurrency.unwrap_or(base.concurrency),
        body_bytes: cli.body_bytes,
        time_limit: if cli.quick {
            base.time_limit
                .min(Duration::from_secs(cli.time_limit_secs))
        } else {
            Duration::from_secs(cli.time_limit_secs)
        },
    }
}

fn print(cli: &Cli, report: &Report) {
    if cli.markdown {
        println!("{}\n{}", Report::markdown_header(), report.markdown_row());
    } else {
        match report.to_json() {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("loadgen: cannot write the report as JSON: {error}"),
        }
        eprintln!("{}", report.markdown_row());
    }
    if !report.correctness.correct {
        eprintln!("loadgen: the run was NOT correct:");
        for problem in &report.correctness.problems {
            eprintln!("  {problem}");
        }
    }
}
