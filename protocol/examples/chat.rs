//! A terminal chat client on `chatd_protocol::client`: logs in, joins a room, prints its
//! history and live messages, and sends each line typed on stdin. When the connection drops
//! it reconnects and resumes, so no message is missed or shown twice.
//!
//! ```text
//! cargo run -p chatd-protocol --example chat --features client -- \
//!     --url ws://127.0.0.1:7878 --user alice --room lobby
//! ```
//!
//! Over QUIC, trusting the server's self-signed certificate by the fingerprint chatd prints at
//! start: `--url quic://127.0.0.1:7879 --pin 439faf26...`.
//!
//! The password is read from `CHAT_PASSWORD` or prompted without echo. Commands:
//! `/join ROOM` (switch rooms), `/dm USER TEXT` (direct message), `/quit`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use chatd_protocol::client::{CertificatePin, Client, ClientOptions, Event, ServerTrust};
use chatd_protocol::{ClientMsgId, Message, RoomId, UserId};
use clap::Parser;
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// Chat in a chatd room from the terminal.
#[derive(Parser)]
struct Args {
    /// The server's URL: `ws://` or `wss://` (WebSocket), `quic://` (QUIC).
    #[arg(long, default_value = "ws://127.0.0.1:7878")]
    url: String,
    /// Trust only the server certificate with this SHA-256 (hex, as chatd prints it): for
    /// a server's self-signed QUIC certificate.
    #[arg(long)]
    pin: Option<CertificatePin>,
    /// Your user name.
    #[arg(long)]
    user: UserId,
    /// The room to join first.
    #[arg(long, default_value = "lobby")]
    room: RoomId,
}

/// How often to try reconnecting before giving up.
const RECONNECT_ATTEMPTS: u32 = 5;

fn main() -> ExitCode {
    match start(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    let password = match std::env::var("CHAT_PASSWORD") {
        Ok(password) => password,
        Err(_) => rpassword::prompt_password(format!("password for {}: ", args.user))
            .context("cannot read the password")?,
    };
    tokio::runtime::Runtime::new()?.block_on(run(args, &password))
}

/// What woke the main loop up.
enum Input {
    Line(Option<String>),
    Event(Option<Event>),
}

async fn run(args: Args, password: &str) -> anyhow::Result<()> {
    let options = ClientOptions {
        trust: args
            .pin
            .map_or(ServerTrust::WebpkiRoots, ServerTrust::Pinned),
        ..ClientOptions::default()
    };
    let mut client = Client::connect(&args.url, options).await?;
    client
        .login(&args.user, password)
        .await
        .context("login failed")?;
    let mut room = args.room;
    show_join(&client, &room).await?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut reconnect_after = Duration::from_secs(1);
    loop {
        let input = tokio::select! {
            line = lines.next_line() => Input::Line(line?),
            event = client.next_event() => Input::Event(event),
        };
        match input {
            Input::Line(None) => break,
            Input::Line(Some(line)) => {
                if !handle_line(&client, &mut room, line.trim()).await {
                    break;
                }
            }
            Input::Event(Some(Event::Message(message))) => print_message(&message),
            Input::Event(Some(Event::Presence { room, user, state })) => {
                println!("* {user} {state:?} in {room}");
            }
            Input::Event(Some(Event::GoingAway {
                reason,
                reconnect_after: delay,
            })) => {
                println!("* server going away ({reason})");
                reconnect_after = delay;
            }
            Input::Event(Some(Event::Error { code, message })) => println!("! {code}: {message}"),
            Input::Event(Some(Event::Closed(code))) => {
                println!("* disconnected ({code:?}), reconnecting");
                reconnect(&mut client, &args.url, reconnect_after).await?;
            }
            Input::Event(Some(_)) => {}
            Input::Event(None) => break,
        }
    }
    client.close().await;
    Ok(())
}

/// Runs one typed line; `false` to quit.
async fn handle_line(client: &Client, room: &mut RoomId, line: &str) -> bool {
    if line == "/quit" {
        return false;
    }
    if let Err(error) = run_line(client, room, line).await {
        println!("! {error:#}");
    }
    true
}

async fn run_line(client: &Client, room: &mut RoomId, line: &str) -> anyhow::Result<()> {
    match line.split_once(' ').unwrap_or((line, "")) {
        ("", _) => {}
        ("/join", name) => {
            *room = name.trim().parse()?;
            show_join(client, room).await?;
        }
        ("/dm", rest) => {
            let (to, text) = rest.split_once(' ').context("usage: /dm USER TEXT")?;
            client.direct(&to.parse()?, &new_cmid()?, text).await?;
        }
        _ => {
            client.send(room, &new_cmid()?, line).await?;
        }
    }
    Ok(())
}

async fn show_join(client: &Client, room: &RoomId) -> anyhow::Result<()> {
    let joined = client.join(room, None).await?;
    println!("* joined {room}; online: {}", joined.online.len());
    joined.messages.iter().for_each(print_message);
    Ok(())
}

async fn reconnect(client: &mut Client, url: &str, delay: Duration) -> anyhow::Result<()> {
    let mut delay = delay;
    for _attempt in 0..RECONNECT_ATTEMPTS {
        tokio::time::sleep(delay).await;
        match client.reconnect(url).await {
            Ok(()) => {
                println!("* reconnected");
                return Ok(());
            }
            Err(error) => println!("! reconnect failed: {error}"),
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    anyhow::bail!("could not reconnect to {url}")
}

fn print_message(message: &Message) {
    println!(
        "[{} #{}] {}: {}",
        message.room, message.seq, message.from, message.body
    );
}

/// A client message id unique enough for one user typing by hand: the current time in
/// nanoseconds.
fn new_cmid() -> anyhow::Result<ClientMsgId> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    Ok(ClientMsgId::parse(&format!("chat-{nanos}"))?)
}
