//! Before the clock starts: the run's rooms and users (created over the admin socket, names
//! unique per run so a long-lived daemon can be measured again), and one logged-in client per
//! user that has joined its rooms.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use protocol::admin::{AdminReply, AdminRequest, RegisterMode};
use protocol::client::admin::AdminClient;
use protocol::client::{Client, ClientOptions};
use protocol::{RoomId, UserId};
use tokio::sync::Semaphore;

use super::layout::Layout;

/// Events a client buffers before it stops reading its socket. Every client receives every
/// message of the room; 16 Ki events ride out a receiving task that is descheduled for a
/// while on a busy machine without pushing back on the daemon.
const EVENT_CAPACITY: usize = 16_384;

/// How long one request may take. A send under load waits behind the group commit and the
/// other clients' traffic; ten seconds (the default) is short when the machine is saturated.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Names for one run.
#[derive(Debug, Clone)]
pub(crate) struct RunNames {
    prefix: String,
}

impl RunNames {
    /// Names no earlier run has used: a prefix from the current time.
    pub(crate) fn fresh() -> anyhow::Result<Self> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        // 40 bits of milliseconds repeat after 34 years; the process id separates runs
        // started in the same millisecond.
        let prefix = format!(
            "lg{:x}-{:x}",
            millis & 0xff_ffff_ffff,
            std::process::id() & 0xffff
        );
        RoomId::parse(&prefix)?;
        Ok(Self { prefix })
    }

    pub(crate) fn room(&self, room: usize) -> anyhow::Result<RoomId> {
        Ok(RoomId::parse(&format!("{}-r{room}", self.prefix))?)
    }

    pub(crate) fn user(&self, client: usize) -> anyhow::Result<UserId> {
        Ok(UserId::parse(&format!("{}-{client}", self.prefix))?)
    }

    fn password(&self) -> String {
        format!("loadgen {} password", self.prefix)
    }
}

/// A client that is logged in and has joined its rooms.
pub(crate) struct Joined {
    pub(crate) client: Arc<Client>,
    /// Its rooms, ascending by number: number, name, and the room's last sequence number
    /// when this client joined.
    pub(crate) rooms: Vec<(usize, RoomId, u64)>,
}

/// Creates the rooms and users of `layout`, logs each user in on its own connection and
/// joins its rooms. The OPAQUE work (Argon2id, 64 MiB, on the client side of both registration and
/// login) runs at most once per core at a time, so no client sits past the daemon's
/// handshake timeout waiting for a core.
pub(crate) async fn prepare(
    url: &str,
    admin_socket: &Path,
    names: &RunNames,
    layout: Layout,
) -> anyhow::Result<Vec<Joined>> {
    let mut admin = AdminClient::connect(admin_socket).await?;
    for room in 0..layout.rooms {
        let reply = admin
            .request(&AdminRequest::RoomCreate {
                room: names.room(room)?,
                private: false,
            })
            .await?;
        expect_done("room_create", &reply)?;
    }
    drop(admin);

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let permits = Arc::new(Semaphore::new(cores));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..layout.clients {
        let user = names.user(index)?;
        let password = names.password();
        let (url, admin_socket) = (url.to_owned(), admin_socket.to_owned());
        let rooms = layout
            .rooms_of(index)
            .into_iter()
            .map(|room| Ok((room, names.room(room)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let joined = join_one(&url, &admin_socket, &user, &password, rooms).await;
            Ok::<_, anyhow::Error>((index, joined.with_context(|| format!("client {user}"))?))
        });
    }
    let mut joined: Vec<Option<Joined>> = (0..layout.clients).map(|_| None).collect();
    while let Some(result) = tasks.join_next().await {
        let (index, client) = result.context("a set-up task failed")??;
        joined[index] = Some(client);
    }
    Ok(joined.into_iter().flatten().collect())
}

async fn join_one(
    url: &str,
    admin_socket: &Path,
    user: &UserId,
    password: &str,
    rooms: Vec<(usize, RoomId)>,
) -> anyhow::Result<Joined> {
    let mut admin = AdminClient::connect(admin_socket).await?;
    let reply = admin
        .register_user(user, password, RegisterMode::Create)
        .await?;
    expect_done("register", &reply)?;
    drop(admin);

    let options = ClientOptions {
        event_capacity: EVENT_CAPACITY,
        request_timeout: REQUEST_TIMEOUT,
        ..ClientOptions::default()
    };
    let mut client = Client::connect(url, options).await?;
    client.login(user, password).await?;
    let mut joined = Vec::with_capacity(rooms.len());
    for (number, room) in rooms {
        let last_seq = client.join(&room, None).await?.last_seq.0;
        joined.push((number, room, last_seq));
    }
    Ok(Joined {
        client: Arc::new(client),
        rooms: joined,
    })
}

fn expect_done(request: &str, reply: &AdminReply) -> anyhow::Result<()> {
    match reply {
        AdminReply::Done => Ok(()),
        AdminReply::Error { kind, message } => {
            bail!("the daemon refused `{request}`: {kind:?}: {message}")
        }
        other => bail!("the daemon answered `{request}` with {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_valid_ids() {
        let names = RunNames::fresh().unwrap();
        let room = names.room(99).unwrap();
        assert!(room.as_str().starts_with("lg"));
        let user = names.user(65_535).unwrap();
        assert!(user.as_str().starts_with(&names.prefix));
        assert_ne!(room.as_str(), names.room(9).unwrap().as_str());
    }
}
