//! [`TestBed`]: a [`LossyNetwork`] with the real `chatd` binary inside, QUIC on, the send
//! limits raised, and the users and rooms the runs need, created over the admin socket
//! (which is a file, so it is reachable from this namespace).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chatd_tests::{LossyNetwork, ProcessDaemon, ProcessOptions};
use protocol::admin::{AdminReply, AdminRequest, RegisterMode};
use protocol::client::admin::AdminClient;
use protocol::client::{CertificatePin, Client, ClientOptions, ServerTrust};
use protocol::{RoomId, UserId};
use tokio::sync::Semaphore;

use super::Transport;

/// The daemon's configuration beyond the harness's: the per-session send limit and the
/// outbox are raised so the runs measure the transports, not the limiter or the
/// slow-consumer cut-off (a receiver whose TCP connection stalls for seconds at high loss
/// would otherwise be dropped once 1024 events queue up).
const EXTRA_TOML: &str =
    "[limits]\nsends_per_sec = 10000\nsend_burst = 10000\noutbox_capacity = 65536\n";

/// How long one request may take. A send or a login may meet several losses in a row at
/// 10 %; the run's own deadlines bound a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Events a client buffers before it stops reading its socket: a whole default cell (2000
/// messages) and more, so a receiver descheduled for a while never pushes back on chatd.
const EVENT_CAPACITY: usize = 16_384;

/// Every user's password: the benchmark measures logins, not secrecy.
const PASSWORD: &str = "lossbench password";

/// The namespace, the daemon inside it, and what was created there.
#[derive(Debug)]
pub struct TestBed {
    // Declared (so dropped) before the network: chatd is killed before its link goes.
    daemon: ProcessDaemon,
    network: Arc<LossyNetwork>,
    pin: CertificatePin,
    users: Vec<UserId>,
    rooms_created: usize,
}

impl TestBed {
    /// Creates the network, starts chatd inside it and registers `users` users.
    ///
    /// # Errors
    /// When the network cannot be made (not root, no `ip` or `nft`), chatd does not start
    /// (its log is in the message), or a registration fails.
    pub async fn start(users: usize) -> anyhow::Result<Self> {
        let network = Arc::new(LossyNetwork::create()?);
        let options = ProcessOptions {
            quic: true,
            extra_toml: EXTRA_TOML.to_owned(),
            ..ProcessOptions::default()
        };
        // The harness panics on failure (it is made for tests); a task turns that into an
        // error with the same message.
        let inside = Arc::clone(&network);
        let daemon =
            tokio::spawn(async move { ProcessDaemon::start(Some(&inside), &options).await })
                .await
                .map_err(|error| anyhow::anyhow!("chatd did not start: {}", panic_text(error)))?;
        let pin = daemon
            .quic_sha256()
            .context("chatd logged no QUIC certificate fingerprint")?
            .parse()
            .context("chatd's QUIC certificate fingerprint")?;
        let mut bed = Self {
            daemon,
            network,
            pin,
            users: Vec::new(),
            rooms_created: 0,
        };
        bed.register(users).await?;
        Ok(bed)
    }

    /// The network, to set its loss.
    pub fn network(&self) -> &LossyNetwork {
        &self.network
    }

    /// Drops `percent` of the packets in each direction from now on.
    ///
    /// # Errors
    /// When `nft` fails.
    pub fn set_loss(&self, percent: u8) -> anyhow::Result<()> {
        self.network.set_loss(percent)
    }

    /// The URL of `transport`'s listener.
    ///
    /// # Errors
    /// Never in practice: QUIC is always on.
    pub fn url(&self, transport: Transport) -> anyhow::Result<String> {
        match transport {
            Transport::Ws => Ok(self.daemon.url()),
            Transport::Quic => self.daemon.quic_url().context("chatd serves no QUIC"),
        }
    }

    /// Client options that trust chatd's self-signed QUIC certificate.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            trust: ServerTrust::Pinned(self.pin),
            request_timeout: REQUEST_TIMEOUT,
            event_capacity: EVENT_CAPACITY,
            ..ClientOptions::default()
        }
    }

    /// The registered users, all with [`TestBed::password`].
    pub fn users(&self) -> &[UserId] {
        &self.users
    }

    /// Every user's password.
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// Registers `count` more users (`u0`, `u1`, ...).
    ///
    /// # Errors
    /// When the admin socket cannot be reached or chatd refuses a registration.
    pub async fn register(&mut self, count: usize) -> anyhow::Result<()> {
        let mut admin = AdminClient::connect(&self.daemon.admin_socket()).await?;
        for _ in 0..count {
            let user = UserId::parse(&format!("u{}", self.users.len()))?;
            let reply = admin
                .register_user(&user, PASSWORD, RegisterMode::Create)
                .await?;
            expect_done("register", &reply)?;
            self.users.push(user);
        }
        Ok(())
    }

    /// Creates a fresh public room (`room0`, `room1`, ...).
    ///
    /// # Errors
    /// When the admin socket cannot be reached or chatd refuses.
    pub async fn create_room(&mut self) -> anyhow::Result<RoomId> {
        let room = RoomId::parse(&format!("room{}", self.rooms_created))?;
        let mut admin = AdminClient::connect(&self.daemon.admin_socket()).await?;
        let reply = admin
            .request(&AdminRequest::RoomCreate {
                room: room.clone(),
                private: false,
            })
            .await?;
        expect_done("room_create", &reply)?;
        self.rooms_created += 1;
        Ok(room)
    }

    /// Logs `users` in over `transport`, each on its own connection, and joins each to
    /// `room`. At most one login per core runs at a time: each runs Argon2id (64 MiB) in
    /// this process.
    ///
    /// # Errors
    /// The first client that cannot connect, log in or join.
    pub async fn log_in(
        &self,
        transport: Transport,
        users: &[UserId],
        room: &RoomId,
    ) -> anyhow::Result<Vec<Client>> {
        let url = self.url(transport)?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let permits = Arc::new(Semaphore::new(cores));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, user) in users.iter().enumerate() {
            let (url, user, room) = (url.clone(), user.clone(), room.clone());
            let (options, permits) = (self.client_options(), Arc::clone(&permits));
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await?;
                let mut client = Client::connect(&url, options).await?;
                client.login(&user, PASSWORD).await?;
                client.join(&room, None).await?;
                Ok::<_, anyhow::Error>((index, client))
            });
        }
        let mut clients: Vec<Option<Client>> = users.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (index, client) = joined.context("a login task failed")??;
            clients[index] = Some(client);
        }
        Ok(clients.into_iter().flatten().collect())
    }

    /// Stops chatd (SIGKILL: nothing it holds matters any more) and removes the network.
    pub async fn stop(mut self) {
        self.daemon.kill().await;
    }
}

fn expect_done(request: &str, reply: &AdminReply) -> anyhow::Result<()> {
    match reply {
        AdminReply::Done => Ok(()),
        AdminReply::Error { kind, message } => {
            bail!("chatd refused `{request}`: {kind:?}: {message}")
        }
        other => bail!("chatd answered `{request}` with {other:?}"),
    }
}

/// The message of a task that panicked, or why it ended otherwise.
fn panic_text(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let payload = error.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
        })
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
