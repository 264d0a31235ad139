//! Admission control at accept, shared by both client transports: how many connections one
//! remote address may have open (`limits.max_connections_per_address`) and how many
//! connections may be waiting to log in at once (`limits.max_pending_handshakes`). Both are
//! checked before the connection costs anything (no task, no TLS or QUIC handshake), so a
//! flood is refused at the price of an accept.
//!
//! Addresses are counted by [`AddressKey`]: an IPv4 address on its own, an IPv6 address by its
//! /64, since one host or home is handed a whole /64 and could otherwise open connections from
//! as many addresses as it likes.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::metrics;

/// The node's connection limiter.
#[derive(Debug)]
pub struct Admission {
    max_per_address: u32,
    /// Open connections per address key; a key leaves the map when its last one closes, so
    /// the map holds only addresses with connections.
    open: Mutex<HashMap<AddressKey, u32>>,
    handshakes: Arc<Semaphore>,
    max_handshakes: usize,
}

impl Admission {
    /// A limiter allowing `max_per_address` open connections per address key and
    /// `max_pending_handshakes` connections that have not logged in yet.
    pub fn new(max_per_address: u32, max_pending_handshakes: u32) -> Self {
        // More permits than the semaphore can count would panic; a value that large means
        // "no limit" anyway.
        let max_handshakes = usize::try_from(max_pending_handshakes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            max_per_address,
            open: Mutex::new(HashMap::new()),
            handshakes: Arc::new(Semaphore::new(max_handshakes)),
            max_handshakes,
        }
    }

    /// Admits a new connection from `ip`, or refuses it (and counts the refusal). The
    /// per-address limit is checked first, so one address can never hold more than its own
    /// budget of handshake permits.
    ///
    /// # Errors
    /// [`Refusal`] says which limit is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let key = AddressKey::of(ip);
        let result = self.try_admit(key);
        if let Err(refusal) = result {
            metrics::connection_refused(refusal);
        }
        result
    }

    fn try_admit(self: &Arc<Self>, key: AddressKey) -> Result<Admitted, Refusal> {
        {
            let mut open = self.lock_open();
            let count = open.entry(key).or_insert(0);
            if *count >= self.max_per_address {
                return Err(Refusal::PerAddress);
            }
            *count += 1;
        }
        // From here the address is counted: dropping `admitted` on refusal uncounts it.
        let mut admitted = Admitted {
            admission: Arc::clone(self),
            key,
            handshake: None,
        };
        match Arc::clone(&self.handshakes).try_acquire_owned() {
            Ok(permit) => admitted.handshake = Some(permit),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                return Err(Refusal::Handshakes);
            }
        }
        Ok(admitted)
    }

    /// Whether a connection from `ip` would take the second half of either budget: its
    /// address already holds half of its connections, or half of the handshake permits are
    /// in use. A QUIC connection whose source address is unproven is asked to prove it first
    /// then, so that forged UDP source addresses cannot fill more than half of either limit
    /// (and lock a victim's address or everyone out).
    pub fn is_under_pressure(&self, ip: IpAddr) -> bool {
        let key = AddressKey::of(ip);
        let open = self.lock_open().get(&key).copied().unwrap_or(0);
        u64::from(open) * 2 >= u64::from(self.max_per_address).max(2)
            || self.pending_handshakes() * 2 >= self.max_handshakes.max(2)
    }

    /// Open connections counted against `ip`'s key.
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.lock_open()
            .get(&AddressKey::of(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Connections holding a handshake permit.
    pub fn pending_handshakes(&self) -> usize {
        self.max_handshakes - self.handshakes.available_permits()
    }

    fn release(&self, key: AddressKey) {
        let mut open = self.lock_open();
        if let Some(count) = open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&key);
            }
        }
    }

    fn lock_open(&self) -> MutexGuard<'_, HashMap<AddressKey, u32>> {
        // Every update is a single increment, decrement or removal: a panic elsewhere cannot
        // leave the map half-changed.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One admitted connection. It counts against its address until dropped, and holds a
/// handshake permit until [`Admitted::logged_in`] (or until dropped).
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    key: AddressKey,
    handshake: Option<OwnedSemaphorePermit>,
}

impl Admitted {
    /// The session logged in: it no longer counts as a pending handshake. Calling it again
    /// does nothing.
    pub fn logged_in(&mut self) {
        self.handshake = None;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.release(self.key);
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `limits.max_connections_per_address` connections from this address are open.
    #[error("too many connections from this address")]
    PerAddress,
    /// `limits.max_pending_handshakes` connections are waiting to log in.
    #[error("too many connections waiting to log in")]
    Handshakes,
}

impl Refusal {
    /// Every reason.
    pub const ALL: [Self; 2] = [Self::PerAddress, Self::Handshakes];

    /// The reason as logs and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerAddress => "per_address",
            Self::Handshakes => "handshakes",
        }
    }
}

/// What connections are counted by: an IPv4 address, or the /64 network of an IPv6 address
/// (with the host half zeroed). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
/// dual-stack socket reports for an IPv4 client) is its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key `ip` counts against.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !u128::from(u64::MAX);
                Self(IpAddr::V6(Ipv6Addr::from(network)))
            }
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_gets_its_budget_and_a_closed_connection_frees_a_place() {
        let admission = Arc::new(Admission::new(2, 100));
        let first = admission.admit(ip("192.0.2.1")).unwrap();
        let _second = admission.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::PerAddress
        );
        // Another address has a budget of its own.
        let _other = admission.admit(ip("192.0.2.2")).unwrap();
        drop(first);
        let _third = admission.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(admission.open_from(ip("192.0.2.1")), 2);
    }

    #[test]
    fn a_refusal_takes_nothing() {
        let admission = Arc::new(Admission::new(1, 100));
        let _held = admission.admit(ip("192.0.2.1")).unwrap();
        for _ in 0..5 {
            assert!(admission.admit(ip("192.0.2.1")).is_err());
        }
        assert_eq!(admission.open_from(ip("192.0.2.1")), 1);
        assert_eq!(admission.pending_handshakes(), 1);
    }

    #[test]
    fn the_map_forgets_addresses_without_connections() {
        let admission = Arc::new(Admission::new(4, 100));
        drop(admission.admit(ip("192.0.2.1")).unwrap());
        drop(admission.admit(ip("2001:db8::1")).unwrap());
        assert!(admission.lock_open().is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddressKey::of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            AddressKey::of(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            AddressKey::of(ip("2001:db8:1:2::1")),
            AddressKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddressKey::of(ip("::ffff:192.0.2.7")),
            AddressKey::of(ip("192.0.2.7"))
        );
        assert_eq!(
            AddressKey::of(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            AddressKey::of(ip("::ffff:192.0.2.7")).to_string(),
            "192.0.2.7"
        );

        let admission = Arc::new(Admission::new(2, 100));
        let _a = admission.admit(ip("2001:db8:1:2::1")).unwrap();
        let _b = admission.admit(ip("2001:db8:1:2::ffff")).unwrap();
        assert_eq!(
            admission.admit(ip("2001:db8:1:2:1:2:3:4")).unwrap_err(),
            Refusal::PerAddress
        );
        let _c = admission.admit(ip("2001:db8:1:3::1")).unwrap();

        let _v4 = admission.admit(ip("192.0.2.7")).unwrap();
        let _mapped = admission.admit(ip("::ffff:192.0.2.7")).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.7")).unwrap_err(),
            Refusal::PerAddress
        );
    }

    #[test]
    fn handshake_permits_return_at_login_or_close() {
        let admission = Arc::new(Admission::new(100, 2));
        let mut first = admission.admit(ip("192.0.2.1")).unwrap();
        let second = admission.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(
            admission.admit(ip("192.0.2.3")).unwrap_err(),
            Refusal::Handshakes
        );
        // The refused connection's address is not left counted.
        assert_eq!(admission.open_from(ip("192.0.2.3")), 0);

        first.logged_in();
        first.logged_in();
        assert_eq!(admission.pending_handshakes(), 1);
        let third = admission.admit(ip("192.0.2.3")).unwrap();
        assert!(admission.admit(ip("192.0.2.4")).is_err());

        // A logged-in connection still counts against its address.
        assert_eq!(admission.open_from(ip("192.0.2.1")), 1);
        drop(second);
        drop(third);
        assert_eq!(admission.pending_handshakes(), 0);
        assert_eq!(admission.open_from(ip("192.0.2.1")), 1);
    }

    #[test]
    fn pressure_starts_at_half_of_either_budget() {
        let admission = Arc::new(Admission::new(4, 100));
        let address = ip("192.0.2.1");
        let _a = admission.admit(address).unwrap();
        assert!(!admission.is_under_pressure(address));
        let _b = admission.admit(address).unwrap();
        assert!(admission.is_under_pressure(address));
        assert!(!admission.is_under_pressure(ip("192.0.2.2")));

        let admission = Arc::new(Admission::new(100, 4));
        let _c = admission.admit(ip("192.0.2.1")).unwrap();
        assert!(!admission.is_under_pressure(ip("192.0.2.9")));
        let _d = admission.admit(ip("192.0.2.2")).unwrap();
        assert!(admission.is_under_pressure(ip("192.0.2.9")));
    }

    #[test]
    fn a_huge_handshake_limit_does_not_overflow_the_semaphore() {
        let admission = Arc::new(Admission::new(u32::MAX, u32::MAX));
        let _admitted = admission.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(admission.pending_handshakes(), 1);
    }
}
