//! Cluster-wide presence in Redis: who is in which room on which node, and which nodes are
//! alive.
//!
//! - `chatd:present:{room}`: a hash with a field `{node}/{user}` for every user with a session
//!   in the room on that node. A node adds the field when the user's first local session joins
//!   and removes it when the last one leaves.
//! - `chatd:alive:{node}`: set by the node every [`HEARTBEAT`], expiring after [`NODE_TTL`].
//! - `chatd:nodes` (set of node ids) and `chatd:node-rooms:{node}` (set of rooms the node has
//!   entries in): the index the reaper walks.
//!
//! A node whose heartbeat expired is dead: the first node to notice (elected with `SET NX`)
//! removes its entries and publishes `offline` for each of its users that no live node still
//! has in the room. A dead node's users are therefore shown offline within `NODE_TTL +
//! HEARTBEAT` (20 s) of its last heartbeat.
//!
//! Every operation is bounded by `REDIS_TIMEOUT` (500 ms); when Redis does not answer,
//! presence falls back to this node's own view (the hub's), which is what one node would show.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use protocol::{RoomId, UserId};
use redis::AsyncCommands as _;
use tokio::sync::Mutex;

/// How often a node renews its heartbeat and looks for dead nodes.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a heartbeat keeps a node alive.
pub const NODE_TTL: Duration = Duration::from_secs(15);
/// Longest a presence operation waits for Redis.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

const NODES_KEY: &str = "chatd:nodes";

fn present_key(room: &RoomId) -> String {
    format!("chatd:present:{room}")
}

fn alive_key(node: &str) -> String {
    format!("chatd:alive:{node}")
}

fn node_rooms_key(node: &str) -> String {
    format!("chatd:node-rooms:{node}")
}

fn field(node: &str, user: &UserId) -> String {
    format!("{node}/{user}")
}

/// The users listed in a presence hash, by node.
fn parse_fields(fields: &[String]) -> Vec<(&str, UserId)> {
    fields
        .iter()
        .filter_map(|field| {
            let (node, user) = field.split_once('/')?;
            Some((node, UserId::parse(user).ok()?))
        })
        .collect()
}

/// This node's presence registry.
#[derive(Debug)]
pub struct Presence {
    node: String,
    client: redis::Client,
    connection: Mutex<Option<redis::aio::ConnectionManager>>,
}

/// What to tell the rooms after a dead node was reaped: `(room, user)` now offline everywhere.
pub type Departures = Vec<(RoomId, UserId)>;

impl Presence {
    /// The registry of node `node`.
    pub fn new(node: String, client: redis::Client) -> Self {
        Self {
            node,
            client,
            connection: Mutex::new(None),
        }
    }

    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let mut slot = self.connection.lock().await;
        if slot.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1);
            match self.client.get_connection_manager_with_config(config).await {
                Ok(manager) => *slot = Some(manager),
                Err(error) => {
                    tracing::debug!(%error, "presence: Redis unreachable");
                    return None;
                }
            }
        }
        slot.clone()
    }

    /// Runs `operation` on Redis within the timeout; `None` when Redis did not answer.
    async fn run<T, F>(
        &self,
        operation: impl FnOnce(redis::aio::ConnectionManager) -> F,
    ) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        let failure = match tokio::time::timeout(REDIS_TIMEOUT, operation(connection)).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        tracing::debug!(%failure, "presence: Redis command failed");
        // A connection from before a Redis restart may fail for a while yet; the next
        // operation starts afresh.
        *self.connection.lock().await = None;
        None
    }

    /// Nodes whose heartbeat has not expired, this one included.
    async fn alive_nodes(&self, candidates: &BTreeSet<&str>) -> BTreeSet<String> {
        let mut alive = BTreeSet::from([self.node.clone()]);
        let others: Vec<&str> = candidates
            .iter()
            .copied()
            .filter(|node| *node != self.node)
            .collect();
        if others.is_empty() {
            return alive;
        }
        let keys: Vec<String> = others.iter().map(|node| alive_key(node)).collect();
        let flags: Option<Vec<Option<String>>> =
            self.run(|mut c| async move { c.mget(keys).await }).await;
        for (node, flag) in others.into_iter().zip(flags.unwrap_or_default()) {
            if flag.is_some() {
                alive.insert(node.to_owned());
            }
        }
        alive
    }

    /// Users present in `room` on live nodes, this node's `local` users included.
    pub async fn online(&self, room: &RoomId, local: Vec<UserId>) -> Vec<UserId> {
        let key = present_key(room);
        let fields: Option<Vec<String>> = self.run(|mut c| async move { c.hkeys(key).await }).await;
        let mut online: BTreeSet<UserId> = local.into_iter().collect();
        if let Some(fields) = fields {
            let entries = parse_fields(&fields);
            let nodes: BTreeSet<&str> = entries.iter().map(|(node, _)| *node).collect();
            let alive = self.alive_nodes(&nodes).await;
            online.extend(
                entries
                    .into_iter()
                    .filter(|(node, _)| alive.contains(*node))
                    .map(|(_, user)| user),
            );
        }
        online.into_iter().collect()
    }

    /// Whether `user` is in `room` on a live node other than this one.
    async fn elsewhere(&self, room: &RoomId, user: &UserId) -> bool {
        let key = present_key(room);
        let fields: Option<Vec<String>> = self.run(|mut c| async move { c.hkeys(key).await }).await;
        let Some(fields) = fields else {
            return false;
        };
        let entries = parse_fields(&fields);
        let nodes: BTreeSet<&str> = entries
            .iter()
            .filter(|(node, u)| *node != self.node && u == user)
            .map(|(node, _)| *node)
            .collect();
        if nodes.is_empty() {
            return false;
        }
        self.alive_nodes(&nodes).await.len() > 1
    }

    /// The user's first local session entered `room`. Returns whether the room should hear of
    /// it: `false` when a live node already has the user there.
    pub async fn arrive(&self, room: &RoomId, user: &UserId) -> bool {
        let first = !self.elsewhere(room, user).await;
        let (key, index, field, room_name) = (
            present_key(room),
            node_rooms_key(&self.node),
            field(&self.node, user),
            room.to_string(),
        );
        let _: Option<()> = self
            .run(|mut c| async move {
                redis::pipe()
                    .hset(&key, &field, 1)
                    .ignore()
                    .sadd(&index, &room_name)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await;
        first
    }

    /// The user's last local session left `room`. Returns whether the room should hear of it:
    /// `false` when the user is still there on another live node.
    pub async fn depart(&self, room: &RoomId, user: &UserId) -> bool {
        let (key, field) = (present_key(room), field(&self.node, user));
        let _: Option<()> = self
            .run(|mut c| async move { c.hdel(key, field).await })
            .await;
        !self.elsewhere(room, user).await
    }

    /// Renews this node's heartbeat and reaps dead nodes; returns the users the reaped nodes
    /// left behind that are now offline everywhere.
    pub async fn heartbeat(&self) -> Departures {
        if !self.renew().await {
            return Vec::new();
        }
        let nodes: Vec<String> = self
            .run(|mut c| async move { c.smembers(NODES_KEY).await })
            .await
            .unwrap_or_default();
        let candidates: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
        let alive = self.alive_nodes(&candidates).await;
        let mut departures = Vec::new();
        for dead in nodes.iter().filter(|node| !alive.contains(*node)) {
            departures.extend(self.reap(dead).await);
        }
        departures
    }

    /// Renews this node's heartbeat key and its place in the node set; `false` when Redis did
    /// not answer.
    async fn renew(&self) -> bool {
        let (alive, node) = (alive_key(&self.node), self.node.clone());
        let ttl = u64::try_from(NODE_TTL.as_millis()).unwrap_or(u64::MAX);
        let renewed: Option<()> = self
            .run(|mut c| async move {
                redis::pipe()
                    .pset_ex(&alive, 1, ttl)
                    .ignore()
                    .sadd(NODES_KEY, &node)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await;
        renewed.is_some()
    }

    /// Removes a dead node's entries, if this node wins the right to; returns who left.
    async fn reap(&self, dead: &str) -> Departures {
        let (claim, me) = (format!("chatd:reaping:{dead}"), self.node.clone());
        let won: Option<bool> = self
            .run(|mut c| async move {
                let options = redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::EX(60));
                let reply: Option<String> = c.set_options(claim, me, options).await?;
                Ok(reply.is_some())
            })
            .await;
        if won != Some(true) {
            return Vec::new();
        }
        let left = self.remove_entries(dead).await;
        let dead_owned = dead.to_owned();
        let _: Option<()> = self
            .run(|mut c| async move { c.srem(NODES_KEY, dead_owned).await })
            .await;
        tracing::info!(node = %dead, "reaped a node whose heartbeat expired");
        let mut departures = Vec::new();
        for (room, users) in left {
            for user in users {
                if !self.elsewhere(&room, &user).await {
                    departures.push((room.clone(), user));
                }
            }
        }
        departures
    }

    /// Replaces this node's entries with `present` (every local (room, user)) and renews its
    /// heartbeat: after Redis was unreachable, arrivals and departures of that time were not
    /// recorded, and a Redis that restarted empty has lost the rest.
    pub async fn republish(&self, present: Vec<(RoomId, UserId)>) {
        // The cached connection may date from before the outage.
        *self.connection.lock().await = None;
        // A Redis that restarted empty has lost the heartbeat too: without it the entries
        // below would count as a dead node's until the next beat.
        self.renew().await;
        self.remove_entries(&self.node).await;
        if present.is_empty() {
            return;
        }
        let index = node_rooms_key(&self.node);
        let mut pipeline = redis::pipe();
        for (room, user) in &present {
            pipeline
                .hset(present_key(room), field(&self.node, user), 1)
                .ignore()
                .sadd(&index, room.to_string())
                .ignore();
        }
        let _: Option<()> = self
            .run(|mut c| async move { pipeline.query_async(&mut c).await })
            .await;
    }

    /// Removes this node's own entries (a clean shutdown), so the others need not wait for its
    /// heartbeat to expire.
    pub async fn leave_cluster(&self) {
        self.remove_entries(&self.node).await;
        let (alive, node) = (alive_key(&self.node), self.node.clone());
        let _: Option<()> = self
            .run(|mut c| async move {
                redis::pipe()
                    .del(&alive)
                    .ignore()
                    .srem(NODES_KEY, &node)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await;
    }

    /// Removes every presence entry of `node` and its room index; returns, per room, the
    /// users it had there.
    async fn remove_entries(&self, node: &str) -> HashMap<RoomId, Vec<UserId>> {
        let index = node_rooms_key(node);
        let rooms: Vec<String> = {
            let index = index.clone();
            self.run(|mut c| async move { c.smembers(index).await })
                .await
                .unwrap_or_default()
        };
        let mut removed = HashMap::new();
        for room in rooms.iter().filter_map(|r| RoomId::parse(r).ok()) {
            let key = present_key(&room);
            let fields: Vec<String> = {
                let key = key.clone();
                self.run(|mut c| async move { c.hkeys(key).await })
                    .await
                    .unwrap_or_default()
            };
            let theirs: Vec<String> = fields
                .into_iter()
                .filter(|f| f.split_once('/').is_some_and(|(owner, _)| owner == node))
                .collect();
            let users: Vec<UserId> = parse_fields(&theirs).into_iter().map(|(_, u)| u).collect();
            if !theirs.is_empty() {
                let _: Option<()> = self
                    .run(|mut c| async move { c.hdel(key, theirs).await })
                    .await;
            }
            removed.insert(room, users);
        }
        let _: Option<()> = self.run(|mut c| async move { c.del(index).await }).await;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_the_node_and_the_user() {
        let alice = UserId::parse("alice").unwrap();
        let fields = vec![
            field("n1", &alice),
            "garbage".to_owned(),
            "n2/NOT A USER".to_owned(),
        ];
        assert_eq!(parse_fields(&fields), vec![("n1", alice)]);
    }
}
