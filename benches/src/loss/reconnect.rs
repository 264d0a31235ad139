//! Reconnect to first message: a client that is logged in and has joined a room stops
//! reading (its connection is as good as gone, as when a phone changes networks), a message
//! is committed meanwhile, and the clock runs from the start of the reconnect until that
//! message arrives on the new connection. Two ways, alternating:
//!
//! - *resume*: [`Client::reconnect`]: a new connection, `resume` with the token from the
//!   last `welcome`, and a re-join with `since` = the last sequence number read;
//! - *login*: a new [`Client`], an OPAQUE login with the password (Argon2id, 64 MiB, in the
//!   client) and a join with `since`.
//!
//! Either way the old connection is dropped when the reconnect starts, and chatd replays the
//! missed message from its store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use protocol::client::{Client, Event};
use protocol::{ClientMsgId, RoomId, Seq, UserId};
use tokio_util::sync::CancellationToken;

use super::report::{ReconnectReport, ReconnectTimes};
use super::{TestBed, Transport, discard_events};

/// Users a reconnect measurement needs: the sender, the resuming client, the logging-in one.
pub(super) const USERS: usize = 3;

/// Longest wait for the missed message after the reconnect's requests were answered.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Measures `repeats` reconnects each way over `transport` at `loss`.
pub(super) async fn run(
    bed: &mut TestBed,
    transport: Transport,
    loss: u8,
    repeats: usize,
) -> anyhow::Result<ReconnectReport> {
    let Some([sender_user, resumer_user, login_user]) = bed.users().get(..USERS) else {
        bail!("the test bed has too few users for the reconnect measurement");
    };
    let (sender_user, resumer_user, login_user) = (
        sender_user.clone(),
        resumer_user.clone(),
        login_user.clone(),
    );
    // One room per way, so a resume replays only its own missed message.
    let resume_room = bed.create_room().await?;
    let login_room = bed.create_room().await?;
    let sender = first(bed.log_in(transport, &[sender_user], &resume_room).await?)?;
    sender.join(&login_room, None).await?;
    let sender = Arc::new(sender);
    let resumer = first(bed.log_in(transport, &[resumer_user], &resume_room).await?)?;
    let old_login = first(
        bed.log_in(transport, std::slice::from_ref(&login_user), &login_room)
            .await?,
    )?;

    let stop = CancellationToken::new();
    let discarding = tokio::spawn(discard_events(Arc::clone(&sender), stop.clone()));
    let way = Way {
        bed,
        url: bed.url(transport)?,
        sender: &sender,
    };
    bed.set_loss(loss)?;
    let measured = way
        .measure(
            repeats,
            resumer,
            old_login,
            &resume_room,
            &login_room,
            &login_user,
        )
        .await;
    bed.set_loss(0)?;
    stop.cancel();
    discarding
        .await
        .context("the sender's event reader failed")?;
    if let Ok(sender) = Arc::try_unwrap(sender) {
        sender.close().await;
    }
    let (resume, login) = measured?;
    Ok(ReconnectReport {
        transport,
        loss_percent: loss,
        resume: ReconnectTimes::from_samples(&resume),
        login: ReconnectTimes::from_samples(&login),
    })
}

/// What both ways share.
struct Way<'a> {
    bed: &'a TestBed,
    url: String,
    sender: &'a Client,
}

impl Way<'_> {
    /// Alternates the two ways `repeats` times; returns (resume times, login times).
    async fn measure(
        &self,
        repeats: usize,
        mut resumer: Client,
        old_login: Client,
        resume_room: &RoomId,
        login_room: &RoomId,
        login_user: &UserId,
    ) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
        let (mut resumed, mut logged_in) = (Vec::new(), Vec::new());
        let mut old_login = Some(old_login);
        for repeat in 0..repeats {
            let seq = self.send_missed(resume_room, "r", repeat).await?;
            let started = Instant::now();
            resumer
                .reconnect(&self.url)
                .await
                .context("reconnect with the resume token")?;
            wait_for(&resumer, resume_room, seq).await?;
            resumed.push(started.elapsed());

            let seq = self.send_missed(login_room, "l", repeat).await?;
            drop(old_login.take());
            let started = Instant::now();
            let client = self
                .log_in_again(login_user, login_room, Seq(seq.0.saturating_sub(1)))
                .await?;
            wait_for(&client, login_room, seq).await?;
            logged_in.push(started.elapsed());
            old_login = Some(client);
        }
        resumer.close().await;
        if let Some(client) = old_login {
            client.close().await;
        }
        Ok((resumed, logged_in))
    }

    /// Sends the message the reconnecting client misses; returns its sequence number once
    /// it is committed.
    async fn send_missed(&self, room: &RoomId, way: &str, repeat: usize) -> anyhow::Result<Seq> {
        let cmid = ClientMsgId::parse(&format!("{way}{repeat}"))?;
        let acked = self
            .sender
            .send(room, &cmid, "sent while you were away")
            .await
            .context("the message to miss")?;
        Ok(acked.seq)
    }

    /// The full way back: a new connection, an OPAQUE login and a join with `since`.
    async fn log_in_again(
        &self,
        user: &UserId,
        room: &RoomId,
        since: Seq,
    ) -> anyhow::Result<Client> {
        let mut client = Client::connect(&self.url, self.bed.client_options())
            .await
            .context("connect for a full login")?;
        client
            .login(user, self.bed.password())
            .await
            .context("full login")?;
        client
            .join(room, Some(since))
            .await
            .context("join after a full login")?;
        Ok(client)
    }
}

/// Reads `client`'s events until message `seq` of `room` arrives.
async fn wait_for(client: &Client, room: &RoomId, seq: Seq) -> anyhow::Result<()> {
    let waiting = async {
        loop {
            match client.next_event().await {
                Some(Event::Message(message)) if message.room == *room && message.seq >= seq => {
                    return Ok(());
                }
                Some(Event::Closed(code)) => {
                    bail!("the connection closed ({code:?}) before message {seq} arrived")
                }
                None => bail!("the events ended before message {seq} arrived"),
                Some(_) => {}
            }
        }
    };
    tokio::time::timeout(WAIT_TIMEOUT, waiting)
        .await
        .with_context(|| format!("message {seq} did not arrive within {WAIT_TIMEOUT:?}"))?
}

fn first(clients: Vec<Client>) -> anyhow::Result<Client> {
    clients
        .into_iter()
        .next()
        .context("a login returned no client")
}
