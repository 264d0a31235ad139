//! Whether this node can serve: the store answers, the broker carries events, and the daemon
//! is not draining. `/readyz` and `chatctl status` report the same [`Readiness`].
//!
//! It only observes; deciding what to do about an unhealthy store or broker (refusing sends,
//! closing sessions) is the job of the sessions and the writer.

use std::fmt;
use std::time::Duration;

use crate::broker::Broker;
use crate::node::Node;
use crate::store::Store;

/// Longest the store probe may take before the store counts as unreachable. A load balancer
/// polls readiness every few seconds; an answer slower than this is as bad as none, and the
/// pool's own acquire timeout (2 s by default) would otherwise hold the probe longer.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Whether the broker carries events between sessions (and, with several nodes, between
/// nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// Events flow.
    Ok,
    /// Events may be lost or late; sessions fill gaps from the store.
    Degraded,
}

impl BrokerState {
    /// `ok` or `degraded`, as status and `/readyz` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
        }
    }
}

/// The node's readiness, as found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Shutdown has begun: the node accepts no new connections and its sessions are leaving.
    pub draining: bool,
    /// `Ok`, or why the store probe failed.
    pub store: Result<(), String>,
    /// The broker's state.
    pub broker: BrokerState,
}

impl Readiness {
    /// Whether the node should get new clients. A degraded broker does not make a node
    /// unready: its sessions still work, filling gaps from the store, and every other node
    /// shares the broker's trouble.
    pub fn is_ready(&self) -> bool {
        !self.draining && self.store.is_ok()
    }

    /// The store's health as status shows it: `ok` or the error.
    pub fn store_health(&self) -> String {
        match &self.store {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.clone(),
        }
    }
}

impl fmt::Display for Readiness {
    /// `ready`, or `not ready` followed by one reason per line; then the broker's state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ready() {
            writeln!(f, "ready")?;
        } else {
            writeln!(f, "not ready")?;
        }
        if self.draining {
            writeln!(f, "draining")?;
        }
        if let Err(error) = &self.store {
            writeln!(f, "store unreachable: {error}")?;
        }
        writeln!(f, "broker {}", self.broker.as_str())
    }
}

/// Checks the node: one cheap store query under [`STORE_PROBE_TIMEOUT`], the broker's state
/// and whether the daemon is draining.
///
/// # Cancel safety
/// Cancel-safe: the probe only reads.
pub async fn check(node: &Node) -> Readiness {
    Readiness {
        draining: node.is_draining(),
        store: probe_store(&node.store).await,
        broker: broker_state(&node.broker),
    }
}

/// The broker's state. The in-process broker is a function call into the hub and cannot fail;
/// a cross-node broker reports its connection here.
pub fn broker_state(broker: &Broker) -> BrokerState {
    match broker {
        Broker::Local(_) => BrokerState::Ok,
        Broker::Redis(redis) if redis.is_up() => BrokerState::Ok,
        Broker::Redis(_) => BrokerState::Degraded,
    }
}

/// A round trip to the database through the pool, which is what every session needs to work.
async fn probe_store(store: &Store) -> Result<(), String> {
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.ping()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no answer within {} ms",
            STORE_PROBE_TIMEOUT.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lists_the_broker_only() {
        let readiness = Readiness {
            draining: false,
            store: Ok(()),
            broker: BrokerState::Ok,
        };
        assert!(readiness.is_ready());
        assert_eq!(readiness.to_string(), "ready\nbroker ok\n");
        assert_eq!(readiness.store_health(), "ok");
    }

    #[test]
    fn not_ready_lists_every_reason() {
        let readiness = Readiness {
            draining: true,
            store: Err("store unavailable during room: pool timed out".to_owned()),
            broker: BrokerState::Degraded,
        };
        assert!(!readiness.is_ready());
        assert_eq!(
            readiness.to_string(),
            "not ready\ndraining\nstore unreachable: store unavailable during room: pool timed \
             out\nbroker degraded\n"
        );
    }

    #[test]
    fn a_degraded_broker_alone_keeps_the_node_ready() {
        let readiness = Readiness {
            draining: false,
            store: Ok(()),
            broker: BrokerState::Degraded,
        };
        assert!(readiness.is_ready());
    }
}
