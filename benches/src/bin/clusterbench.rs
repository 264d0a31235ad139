//! `clusterbench`: what crossing nodes costs. Two real chatd nodes share one private
//! PostgreSQL database and one private Redis (the test harness's `Cluster`); senders on node 0
//! post to one room, and two receivers read it, one on node 0 (same node) and one on node 1
//! (across Redis). Reports, for both receivers in the same run:
//!
//! - delivery latency p50/p99/max at a fixed send rate, counted from the time each send was
//!   due (so a stall counts, however long), which includes the commit both paths share;
//! - deliveries per second when the senders send as fast as the acks allow.
//!
//! ```text
//! cargo build --release -p chatd -p chatctl -p chatd-benches
//! target/release/clusterbench --rate 500 --secs 10
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatd_benches::histogram::{LatencyHistogram, LatencySummary};
use chatd_tests::Cluster;
use clap::Parser;
use protocol::client::{Client, ClientOptions, Event};
use protocol::{ClientMsgId, RoomId, UserId};

/// Delivery latency and throughput, same node against across nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Sends per second over all senders in the latency phase.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Length of the latency phase, in seconds.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Sending clients (all on node 0).
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Messages sent in the throughput phase, over all senders.
    #[arg(long, default_value_t = 20_000)]
    burst: usize,
    /// Sends each sender keeps in flight in the throughput phase.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
}

/// The room every message goes to.
const ROOM: &str = "bench";
/// The per-session send limit would otherwise be what is measured.
const LIMITS: &str = "[limits]\nsends_per_sec = 100000\nsend_burst = 100000\n";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("clusterbench: {error}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clusterbench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What one receiver saw in one phase.
struct Received {
    latency: LatencyHistogram,
    first: Option<Instant>,
    last: Option<Instant>,
    count: usize,
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let cluster = Cluster::start(2, LIMITS).await;
    let room = RoomId::parse(ROOM)?;
    cluster.create_room(ROOM, false).await;
    let mut senders = Vec::new();
    for i in 0..cli.senders {
        let name = format!("sender{i}");
        cluster.add_user(&name, "pw").await;
        senders.push(Arc::new(login(&cluster.node(0).url(), &name, &room).await?));
    }
    cluster.add_user("near", "pw").await;
    cluster.add_user("far", "pw").await;
    let near = login(&cluster.node(0).url(), "near", &room).await?;
    let far = login(&cluster.node(1).url(), "far", &room).await?;

    // Latency: each sender sends on its own schedule; message `k` of sender `s` is due at
    // `start + (k * senders + s) / rate`.
    let per_sender = ((cli.rate * cli.secs as f64) / cli.senders as f64).ceil() as usize;
    let total = per_sender * cli.senders;
    let interval = Duration::from_secs_f64(1.0 / cli.rate);
    let start = Instant::now() + Duration::from_millis(200);
    let due = move |sender: usize, k: usize, senders: usize| {
        start + interval.mul_f64((k * senders + sender) as f64)
    };
    let sending = paced(&senders, &room, per_sender, due);
    let (sent, near_got, far_got) = tokio::join!(
        sending,
        receive(&near, total, |body| due_of(body, cli.senders, &due)),
        receive(&far, total, |body| due_of(body, cli.senders, &due)),
    );
    sent?;
    let (near_latency, far_latency) = (near_got?, far_got?);

    // Throughput: as fast as the acks allow.
    let per_sender = cli.burst / cli.senders;
    let burst_total = per_sender * cli.senders;
    let (sent, near_burst, far_burst) = tokio::join!(
        flat_out(&senders, &room, per_sender, cli.in_flight),
        receive(&near, burst_total, |_| None),
        receive(&far, burst_total, |_| None),
    );
    sent?;
    let (near_burst, far_burst) = (near_burst?, far_burst?);

    println!(
        "| receiver | latency phase: messages | p50 ms | p99 ms | max ms | throughput phase: deliveries/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, latency, burst) in [
        ("same node", &near_latency, &near_burst),
        ("other node (Redis)", &far_latency, &far_burst),
    ] {
        let summary: LatencySummary = latency.latency.summary();
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.0} |",
            latency.count,
            ms(summary.p50_us),
            ms(summary.p99_us),
            ms(summary.max_us),
            rate(burst),
        );
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Deliveries per second from a receiver's first to its last message.
fn rate(received: &Received) -> f64 {
    match (received.first, received.last) {
        (Some(first), Some(last)) if last > first => {
            received.count as f64 / (last - first).as_secs_f64()
        }
        _ => 0.0,
    }
}

async fn login(url: &str, name: &str, room: &RoomId) -> anyhow::Result<Client> {
    let options = ClientOptions {
        event_capacity: 1 << 16,
        request_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    let mut client = Client::connect(url, options).await?;
    client.login(&UserId::parse(name)?, "pw").await?;
    client.join(room, None).await?;
    Ok(client)
}

/// The body of message `k` of sender `s`.
fn body(sender: usize, k: usize) -> String {
    format!("{sender}:{k}")
}

/// When the message with `body` was due, from its sender and number.
fn due_of(
    body: &str,
    senders: usize,
    due: &impl Fn(usize, usize, usize) -> Instant,
) -> Option<Instant> {
    let (sender, k) = body.split_once(':')?;
    Some(due(sender.parse().ok()?, k.parse().ok()?, senders))
}

/// Sends `per_sender` messages from each sender, each when it is due, without waiting for
/// earlier acks (a late ack must not delay the next send).
async fn paced(
    senders: &[Arc<Client>],
    room: &RoomId,
    per_sender: usize,
    due: impl Fn(usize, usize, usize) -> Instant + Copy,
) -> anyhow::Result<()> {
    let mut acks = tokio::task::JoinSet::new();
    let mut schedule: Vec<(Instant, usize, usize)> = (0..senders.len())
        .flat_map(|s| (0..per_sender).map(move |k| (due(s, k, senders.len()), s, k)))
        .collect();
    schedule.sort_unstable_by_key(|(at, ..)| *at);
    for (at, s, k) in schedule {
        tokio::time::sleep_until(at.into()).await;
        let client = Arc::clone(&senders[s]);
        let room = room.clone();
        acks.spawn(async move {
            let cmid = ClientMsgId::parse(&format!("p{s}-{k}"))?;
            client.send(&room, &cmid, &body(s, k)).await?;
            anyhow::Ok(())
        });
        while let Some(done) = acks.try_join_next() {
            done.context("send task")??;
        }
    }
    while let Some(done) = acks.join_next().await {
        done.context("send task")??;
    }
    Ok(())
}

/// Sends `per_sender` messages from each sender, `in_flight` at a time per sender.
async fn flat_out(
    senders: &[Arc<Client>],
    room: &RoomId,
    per_sender: usize,
    in_flight: usize,
) -> anyhow::Result<()> {
    let mut workers = Vec::new();
    for (s, client) in senders.iter().enumerate() {
        for lane in 0..in_flight {
            let client = Arc::clone(client);
            let room = room.clone();
            workers.push(tokio::spawn(async move {
                for k in (lane..per_sender).step_by(in_flight) {
                    let cmid = ClientMsgId::parse(&format!("f{s}-{k}"))?;
                    client.send(&room, &cmid, &body(s, k)).await?;
                }
                anyhow::Ok(())
            }));
        }
    }
    for worker in workers {
        worker.await.context("send task")??;
    }
    Ok(())
}

/// Reads `count` messages; records each one's latency from the time `due` gives for it.
async fn receive(
    client: &Client,
    count: usize,
    due: impl Fn(&str) -> Option<Instant>,
) -> anyhow::Result<Received> {
    let mut received = Received {
        latency: LatencyHistogram::new(),
        first: None,
        last: None,
        count: 0,
    };
    while received.count < count {
        let event = tokio::time::timeout(Duration::from_secs(60), client.next_event())
            .await
            .context("no message for 60 s")?;
        match event {
            Some(Event::Message(message)) => {
                let now = Instant::now();
                if let Some(at) = due(&message.body) {
                    received.latency.record(now.saturating_duration_since(at));
                }
                received.first.get_or_insert(now);
                received.last = Some(now);
                received.count += 1;
            }
            Some(Event::Closed(code)) => anyhow::bail!("connection closed ({code:?})"),
            None => anyhow::bail!("events ended"),
            Some(_) => {}
        }
    }
    Ok(received)
}
