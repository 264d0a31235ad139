//! The cross-node broker: every event is dispatched to this node's hub at once and published
//! on Redis for the other nodes; each node keeps one subscriber connection and subscribes to a
//! room while at least one of its sessions is in it.
//!
//! Redis is never the source of truth. Pub/sub delivers nothing to a subscriber that was
//! disconnected, so:
//! - a join waits until this node's subscription to the room is confirmed before the session
//!   reads the store (the same order as on one node: subscribe, then read), so nothing
//!   committed elsewhere falls between the two;
//! - after the subscriber (re)connects, the newest stored message of every subscribed room is
//!   dispatched to the hub: a session that missed messages meanwhile sees a gap in its
//!   sequence and fills it from the store, and one that missed nothing drops it as a
//!   duplicate;
//! - events this node could not publish stay queued and are retried; if the queue overflows,
//!   the node publishes a resync once Redis is back, and every node catches up as above.
//!
//! While Redis is down the node keeps serving: local delivery and durable sends go on, and the
//! broker reports itself degraded (readiness, the `chatd_broker_up` metric, one log line).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use protocol::{Message, PresenceState, RoomId};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Event;
use super::presence::{HEARTBEAT, Presence};
use crate::hub::Hub;
use crate::lifecycle::Tasks;
use crate::store::{HistoryRange, Store};

/// Channel every node subscribes to: kicks and resyncs.
const NODES_CHANNEL: &str = "chatd:nodes";
/// Channel every node subscribes to: direct messages (their sessions may be anywhere).
const DIRECT_CHANNEL: &str = "chatd:direct";
/// Prefix of a room's channel.
const ROOM_CHANNEL_PREFIX: &str = "chatd:room:";

/// Events waiting to be published. Beyond this the oldest are dropped and a resync follows.
const PUBLISH_QUEUE: usize = 65_536;
/// Most events sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 256;
/// Longest a join waits for its room's subscription; past it the join goes on and the
/// catch-up after the next (re)connect covers the room.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect back-off bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why the Redis broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The URL is not one the Redis client accepts.
    #[error("broker.url is not a Redis URL: {0}")]
    Url(String),
}

/// What goes over Redis: the event and the node that published it (which skips its own).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: String,
    relay: Relay,
}

/// An event, or the node-to-node resync request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Relay {
    Event(Event),
    /// A node lost events it should have published: everyone catches up from the store.
    Resync,
}

impl Relay {
    /// The channel that carries this.
    fn channel(&self) -> String {
        match self {
            Self::Event(Event::Message(message)) if message.room.is_direct() => {
                DIRECT_CHANNEL.to_owned()
            }
            Self::Event(
                Event::Message(Message { room, .. })
                | Event::Presence { room, .. }
                | Event::Typing { room, .. },
            ) => room_channel(room),
            Self::Event(Event::Kick { .. }) | Self::Resync => NODES_CHANNEL.to_owned(),
        }
    }
}

fn room_channel(room: &RoomId) -> String {
    format!("{ROOM_CHANNEL_PREFIX}{room}")
}

/// The Redis broker's handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisBroker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    node: String,
    hub: Arc<Hub>,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    /// Set when an event could not even be queued; a resync follows the next publish.
    lost: AtomicBool,
    up: AtomicBool,
    subscriptions: Mutex<Subscriptions>,
    /// Rung when a room may have lost its last local session.
    interest_changed: Notify,
    presence: Presence,
}

#[derive(Debug, Default)]
struct Subscriptions {
    /// The live subscriber connection's command half, while connected.
    sink: Option<redis::aio::PubSubSink>,
    rooms: HashSet<RoomId>,
}

impl RedisBroker {
    /// Connects lazily to `url` and starts the publisher and the subscriber on `tasks`.
    ///
    /// # Errors
    /// [`RedisSetupError::Url`] when the URL does not parse.
    pub fn start(
        url: &str,
        hub: Arc<Hub>,
        store: Store,
        tasks: &Tasks,
    ) -> Result<Self, RedisSetupError> {
        let client = redis::Client::open(url).map_err(|e| RedisSetupError::Url(e.to_string()))?;
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        let node = format!("{:016x}", rand::random::<u64>());
        tracing::info!(node = %node, "cross-node broker: Redis");
        let shared = Arc::new(Shared {
            node: node.clone(),
            hub,
            outgoing,
            lost: AtomicBool::new(false),
            up: AtomicBool::new(false),
            subscriptions: Mutex::new(Subscriptions::default()),
            interest_changed: Notify::new(),
            presence: Presence::new(node, client.clone()),
        });
        tasks.spawn(
            "redis-publisher",
            publish_loop(
                client.clone(),
                Arc::clone(&shared),
                queue,
                tasks.token().clone(),
            ),
        );
        tasks.spawn(
            "redis-subscriber",
            subscribe_loop(client, Arc::clone(&shared), store, tasks.token().clone()),
        );
        tasks.spawn(
            "redis-heartbeat",
            heartbeat_loop(Arc::clone(&shared), tasks.token().clone()),
        );
        Ok(Self { shared })
    }

    /// Dispatches `event` here and queues it for the other nodes. Never waits.
    pub fn publish(&self, event: &Event) {
        self.shared.hub.dispatch(event);
        self.shared.enqueue(Relay::Event(event.clone()));
    }

    /// Makes sure this node hears `room`'s events from the other nodes before the caller reads
    /// the store. Returns at once while Redis is down.
    pub async fn watch_room(&self, room: &RoomId) {
        if room.is_direct() {
            return;
        }
        let subscribe = async {
            let mut subscriptions = self.shared.subscriptions.lock().await;
            if subscriptions.rooms.contains(room) {
                return;
            }
            let Some(sink) = subscriptions.sink.as_mut() else {
                return;
            };
            if sink.subscribe(room_channel(room)).await.is_ok() {
                subscriptions.rooms.insert(room.clone());
            }
        };
        if tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
            .await
            .is_err()
        {
            tracing::debug!(%room, "room subscription not confirmed in time");
        }
    }

    /// A room may have lost its last local session: unsubscribe when it has.
    pub fn room_left(&self) {
        self.shared.interest_changed.notify_one();
    }

    /// The cluster-wide presence registry.
    pub fn presence(&self) -> &Presence {
        &self.shared.presence
    }

    /// Whether the subscriber connection is up.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn enqueue(&self, relay: Relay) {
        let channel = relay.channel();
        let envelope = Envelope {
            node: self.node.clone(),
            relay,
        };
        let Ok(payload) = serde_json::to_vec(&envelope) else {
            return;
        };
        if self.outgoing.try_send((channel, payload)).is_err() {
            // Full (Redis has been away long) or shutting down: the store has the messages,
            // and a resync after the next successful publish lets every node catch up.
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            crate::metrics::broker_state(if up {
                crate::health::BrokerState::Ok
            } else {
                crate::health::BrokerState::Degraded
            });
            if up {
                tracing::info!("Redis reachable again; cross-node delivery resumed");
            } else {
                tracing::warn!("Redis unreachable; serving local sessions only until it is back");
            }
        }
    }

    /// An event another node published.
    async fn receive(&self, payload: &[u8], store: &Store) {
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::debug!(%error, "ignoring an undecodable broker event");
                return;
            }
        };
        if envelope.node == self.node {
            return;
        }
        let event = match envelope.relay {
            Relay::Event(event) => event,
            Relay::Resync => {
                self.catch_up(store).await;
                return;
            }
        };
        self.hub.dispatch(&event);
    }

    /// Dispatches the newest stored message of every room this node serves, so each session
    /// notices (as a gap in its sequence) anything it missed while events did not flow.
    async fn catch_up(&self, store: &Store) {
        for room in self.hub.room_ids() {
            match store.history(&room, HistoryRange::Latest, 1).await {
                Ok(page) => {
                    if let Some(message) = page.messages.into_iter().last() {
                        self.hub.dispatch(&Event::Message(message));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, %room, "cannot catch up a room from the store");
                }
            }
        }
    }

    /// Brings the subscriptions in line with the rooms local sessions are in.
    async fn sync_subscriptions(&self) -> redis::RedisResult<()> {
        let mut subscriptions = self.subscriptions.lock().await;
        // Read under the lock: a join that subscribes after this snapshot is serialised after
        // it, so a room is never unsubscribed under a session that just joined it.
        let wanted: HashSet<RoomId> = self.hub.room_ids().into_iter().collect();
        let Subscriptions { sink, rooms } = &mut *subscriptions;
        let Some(sink) = sink.as_mut() else {
            return Ok(());
        };
        for room in rooms.difference(&wanted).cloned().collect::<Vec<_>>() {
            sink.unsubscribe(room_channel(&room)).await?;
            rooms.remove(&room);
        }
        for room in wanted.difference(rooms).cloned().collect::<Vec<_>>() {
            sink.subscribe(room_channel(&room)).await?;
            rooms.insert(room);
        }
        Ok(())
    }
}

/// Publishes queued events in pipelines; keeps an event that failed and retries it.
async fn publish_loop(
    client: redis::Client,
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<(String, Vec<u8>)>,
    shutdown: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    let mut connection: Option<redis::aio::ConnectionManager> = None;
    let mut batch: Vec<(String, Vec<u8>)> = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        if batch.is_empty() {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                received = queue.recv_many(&mut batch, PUBLISH_BATCH) => received,
            };
            if received == 0 {
                return;
            }
        }
        let manager = match &mut connection {
            Some(manager) => manager,
            None => match client.get_connection_manager().await {
                Ok(manager) => connection.insert(manager),
                Err(error) => {
                    tracing::debug!(%error, "Redis publisher cannot connect");
                    if sleep_or_stop(&shutdown, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let mut pipeline = redis::pipe();
        for (channel, payload) in &batch {
            pipeline.publish(channel, payload).ignore();
        }
        if shared.lost.swap(false, Ordering::Relaxed) {
            let resync = Envelope {
                node: shared.node.clone(),
                relay: Relay::Resync,
            };
            if let Ok(payload) = serde_json::to_vec(&resync) {
                pipeline.publish(NODES_CHANNEL, payload).ignore();
            }
        }
        match pipeline.query_async::<()>(manager).await {
            Ok(()) => {
                batch.clear();
                backoff = MIN_BACKOFF;
            }
            Err(error) => {
                tracing::debug!(%error, "Redis publish failed; retrying");
                // Keep the batch; a resync is owed if anything was lost meanwhile.
                if sleep_or_stop(&shutdown, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

/// Keeps one subscriber connection: (re)connects, (re)subscribes, catches up, and hands
/// every event to the hub.
async fn subscribe_loop(
    client: redis::Client,
    shared: Arc<Shared>,
    store: Store,
    shutdown: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = client.get_async_pubsub() => connected,
        };
        let pubsub = match connected {
            Ok(pubsub) => pubsub,
            Err(error) => {
                tracing::debug!(%error, "Redis subscriber cannot connect");
                shared.set_up(false);
                if sleep_or_stop(&shutdown, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let subscribed = async {
            sink.subscribe(NODES_CHANNEL).await?;
            sink.subscribe(DIRECT_CHANNEL).await?;
            {
                let mut subscriptions = shared.subscriptions.lock().await;
                subscriptions.rooms.clear();
                subscriptions.sink = Some(sink);
            }
            shared.sync_subscriptions().await
        };
        if let Err(error) = subscribed.await {
            tracing::debug!(%error, "Redis subscriber cannot subscribe");
            shared.subscriptions.lock().await.sink = None;
            shared.set_up(false);
            if sleep_or_stop(&shutdown, &mut backoff).await {
                return;
            }
            continue;
        }
        backoff = MIN_BACKOFF;
        shared.set_up(true);
        // Presence changes made while Redis was away were not recorded there.
        shared.presence.republish(shared.hub.presence()).await;
        shared.catch_up(&store).await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = shared.interest_changed.notified() => {
                    if let Err(error) = shared.sync_subscriptions().await {
                        tracing::debug!(%error, "Redis subscription change failed");
                        break;
                    }
                }
                message = stream.next() => match message {
                    Some(message) => shared.receive(message.get_payload_bytes(), &store).await,
                    None => break,
                },
            }
        }
        shared.subscriptions.lock().await.sink = None;
        shared.set_up(false);
    }
}

/// Renews this node's heartbeat and tells rooms about the users of nodes found dead; on
/// shutdown removes this node's presence so the others need not wait for it to expire.
async fn heartbeat_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        for (room, user) in shared.presence.heartbeat().await {
            let event = Event::Presence {
                room,
                user,
                state: PresenceState::Offline,
            };
            shared.hub.dispatch(&event);
            shared.enqueue(Relay::Event(event));
        }
    }
    shared.presence.leave_cluster().await;
}

/// Sleeps for the back-off (doubling it up to the cap); `true` when shutdown came first.
async fn sleep_or_stop(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    let delay = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests {
    use protocol::{CloseCode, UserId};

    use super::*;

    #[test]
    fn events_cross_the_wire_unchanged_on_their_channels() {
        let alice = UserId::parse("alice").unwrap();
        let lobby = RoomId::parse("lobby").unwrap();
        let direct = RoomId::parse("dm:alice:bob").unwrap();
        let message = |room: &RoomId| Message {
            room: room.clone(),
            seq: protocol::Seq(7),
            from: alice.clone(),
            body: "hi".to_owned(),
            ts: 1,
            cmid: None,
        };
        let cases = [
            (
                Relay::Event(Event::Message(message(&lobby))),
                "chatd:room:lobby",
            ),
            (
                Relay::Event(Event::Message(message(&direct))),
                DIRECT_CHANNEL,
            ),
            (
                Relay::Event(Event::Presence {
                    room: lobby.clone(),
                    user: alice.clone(),
                    state: PresenceState::Offline,
                }),
                "chatd:room:lobby",
            ),
            (
                Relay::Event(Event::Kick {
                    user: alice.clone(),
                    code: CloseCode::UserDisabled,
                }),
                NODES_CHANNEL,
            ),
            (Relay::Resync, NODES_CHANNEL),
        ];
        for (relay, channel) in cases {
            assert_eq!(relay.channel(), channel);
            let envelope = Envelope {
                node: "n1".to_owned(),
                relay,
            };
            let bytes = serde_json::to_vec(&envelope).unwrap();
            let back: Envelope = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back.node, "n1");
            assert_eq!(format!("{:?}", back.relay), format!("{:?}", envelope.relay));
        }
    }
}
