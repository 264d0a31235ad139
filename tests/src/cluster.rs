//! [`Cluster`]: several real `chatd` processes ([`ProcessDaemon`]s, QUIC on) on one fresh
//! database of the shared [`TestPostgres`] and one private [`TestRedis`] as their broker,
//! the way nodes behind a load balancer run.
//!
//! Users and rooms live in the shared database, so they are made once, through node 0.

use crate::postgres::TestPostgres;
use crate::process::{ProcessDaemon, ProcessOptions};
use crate::redis::TestRedis;

/// Running chatd nodes sharing a database and a broker. Dropping it kills the nodes, then
/// the Redis server; the database stays in the shared server until the test process ends.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: the nodes go before their broker.
    nodes: Vec<ProcessDaemon>,
    redis: TestRedis,
    database_url: String,
}

impl Cluster {
    /// Starts a Redis server, creates a database, then starts `nodes` chatd processes one
    /// after the other (the first applies the migrations; starting the others alongside it
    /// would race it). Each node's configuration is `extra_toml`, then `[store] url` and
    /// `[broker] url`, then its `[listen]` section: `extra_toml` may hold top-level keys and
    /// tables other than `[store]`, `[broker]` and `[listen]`.
    ///
    /// # Panics
    /// When `nodes` is 0, or a server or node does not start (the message says why).
    pub async fn start(nodes: usize, extra_toml: &str) -> Self {
        assert!(nodes > 0, "a cluster has at least one node");
        let redis = TestRedis::start().await;
        let database_url = TestPostgres::shared().await.create_database().await;
        let options = ProcessOptions {
            quic: true,
            extra_toml: node_toml(extra_toml, &database_url, &redis.url()),
            ..ProcessOptions::default()
        };
        let mut started = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            started.push(ProcessDaemon::start(None, &options).await);
        }
        Self {
            nodes: started,
            redis,
            database_url,
        }
    }

    /// Node `i` (0-based), running or killed.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub fn node(&self, i: usize) -> &ProcessDaemon {
        &self.nodes[i]
    }

    /// Every node, in start order.
    pub fn nodes(&self) -> &[ProcessDaemon] {
        &self.nodes
    }

    /// How many nodes were started (killed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Kills node `i` with SIGKILL (a crash: no drain, its clients' connections break) and
    /// reaps it. The other nodes, the database and the broker keep running.
    ///
    /// # Panics
    /// When there is no node `i`.
    pub async fn kill(&mut self, i: usize) {
        self.nodes[i].kill().await;
    }

    /// The nodes' broker, which a test may stop and restart.
    pub fn redis(&self) -> &TestRedis {
        &self.redis
    }

    /// The URL of the nodes' database, for a test to inspect what they stored.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// `chatctl user add NAME --password-stdin` through node 0, asserting success; every node
    /// sees the user, since they share the database.
    pub async fn add_user(&self, name: &str, password: &str) {
        self.node(0).add_user(name, password).await;
    }

    /// `chatctl room create NAME [--private]` through node 0, asserting success; every node
    /// sees the room.
    pub async fn create_room(&self, name: &str, private: bool) {
        self.node(0).create_room(name, private).await;
    }
}

/// The caller's TOML, then the shared database and broker. The caller's part comes first so
/// that any top-level keys in it stay top-level.
fn node_toml(extra_toml: &str, database_url: &str, redis_url: &str) -> String {
    format!(
        "{extra_toml}\n[store]\nurl = {}\n[broker]\nurl = {}\n",
        toml_string(database_url),
        toml_string(redis_url)
    )
}

/// A TOML basic string: a JSON string is one, escapes included.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}
