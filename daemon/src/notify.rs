//! systemd's service notification protocol (`sd_notify(3)`), spoken by hand: each message is
//! one datagram of `KEY=VALUE` lines sent to the Unix socket that `$NOTIFY_SOCKET` names (a
//! path, or an abstract socket when it starts with `@`), and the watchdog task that pings it.
//! When `$NOTIFY_SOCKET` is unset (chatd was not started by systemd as `Type=notify`), every
//! call is a no-op.
//!
//! This module owns the wire format and the watchdog; *when* chatd is ready, reloading or
//! stopping is decided by `main.rs`. A failure to notify is never fatal: it is logged once
//! and chatd keeps serving (systemd acts on the missing message itself, e.g. by timing out
//! the start).

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Sends notifications to systemd. Cheap to clone; the clones share one socket.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    /// `None` when there is nobody to notify.
    target: Option<Arc<Target>>,
}

#[derive(Debug)]
struct Target {
    /// Unbound: systemd identifies the sender by its credentials, not by an address.
    socket: UnixDatagram,
    address: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for log messages.
    name: String,
    /// Set by the first failed send; later failures are not logged, so an unreachable socket
    /// costs one warning rather than one per watchdog ping.
    has_failed: AtomicBool,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`; a no-op one when it is unset or unusable (the
    /// latter is logged).
    pub(crate) fn from_env() -> Self {
        match Self::from_socket_var(std::env::var_os("NOTIFY_SOCKET").as_deref()) {
            Ok(notifier) => notifier,
            Err(reason) => {
                tracing::warn!(%reason, "cannot notify systemd; continuing without it");
                Self { target: None }
            }
        }
    }

    /// The notifier for a `$NOTIFY_SOCKET` value.
    fn from_socket_var(var: Option<&OsStr>) -> Result<Self, String> {
        let Some(var) = var.filter(|var| !var.is_empty()) else {
            return Ok(Self { target: None });
        };
        let name = var.to_string_lossy().into_owned();
        let address = match var.as_bytes() {
            // An abstract socket: the name is everything after the `@` (the kernel's
            // leading NUL byte), and it may hold any bytes.
            [b'@', abstract_name @ ..] => SocketAddr::from_abstract_name(abstract_name),
            [b'/', ..] => SocketAddr::from_pathname(var),
            // systemd also knows `vsock:` addresses (for virtual machines); chatd does not
            // run where only those exist.
            _ => {
                return Err(format!(
                    "NOTIFY_SOCKET={name} is neither an absolute path nor an abstract socket \
                     (@name)"
                ));
            }
        }
        .map_err(|error| format!("NOTIFY_SOCKET={name}: {error}"))?;
        let socket = UnixDatagram::unbound()
            .map_err(|error| format!("cannot create a socket to notify systemd: {error}"))?;
        // A send must never block the runtime; a full queue at systemd's end is a failed
        // send like any other.
        socket
            .set_nonblocking(true)
            .map_err(|error| format!("cannot create a socket to notify systemd: {error}"))?;
        Ok(Self {
            target: Some(Arc::new(Target {
                socket,
                address,
                name,
                has_failed: AtomicBool::new(false),
            })),
        })
    }

    /// Whether there is a systemd to notify.
    pub(crate) fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Start-up or a reload is complete: chatd serves. `status` is shown by `systemctl
    /// status`.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&["READY=1", &status_line(status)]);
    }

    /// A change of state worth showing in `systemctl status`.
    pub(crate) fn status(&self, status: &str) {
        self.send(&[&status_line(status)]);
    }

    /// A reload begins; [`Notifier::ready`] ends it. systemd wants the time the reload
    /// began, so it can tell this reload from an older one.
    pub(crate) fn reloading(&self, status: &str) {
        let status = status_line(status);
        match monotonic_usec() {
            Some(usec) => self.send(&["RELOADING=1", &format!("MONOTONIC_USEC={usec}"), &status]),
            None => self.send(&["RELOADING=1", &status]),
        }
    }

    /// The drain begins; from here on chatd is going away.
    pub(crate) fn stopping(&self, status: &str) {
        self.send(&["STOPPING=1", &status_line(status)]);
    }

    /// Tells the watchdog chatd is alive.
    fn ping(&self) {
        self.send(&["WATCHDOG=1"]);
    }

    fn send(&self, lines: &[&str]) {
        let Some(target) = &self.target else {
            return;
        };
        let message = lines.join("\n");
        match target
            .socket
            .send_to_addr(message.as_bytes(), &target.address)
        {
            Ok(_) => tracing::trace!(%message, "notified systemd"),
            Err(error) => {
                if !target.has_failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %error,
                        socket = %target.name,
                        "cannot notify systemd; further failures are not logged"
                    );
                }
            }
        }
    }
}

/// How often to ping the watchdog: half the interval systemd gives in `$WATCHDOG_USEC`
/// (`sd_watchdog_enabled(3)` recommends pinging at half), or `None` when no watchdog is
/// asked for, or it is meant for another process (`$WATCHDOG_PID`). Bad values are logged.
pub(crate) fn watchdog_interval_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()).unwrap_or_else(
        |reason| {
            tracing::warn!(%reason, "ignoring the systemd watchdog settings");
            None
        },
    )
}

fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if let Some(pid) = pid {
        let pid: u32 = pid
            .parse()
            .map_err(|_| format!("WATCHDOG_PID={pid} is not a process id"))?;
        if pid != own_pid {
            // Inherited from a parent the watchdog watches; not ours to ping.
            return Ok(None);
        }
    }
    match usec.parse::<u64>() {
        Ok(0) | Err(_) => Err(format!(
            "WATCHDOG_USEC={usec} is not a positive number of microseconds"
        )),
        Ok(usec) => Ok(Some(Duration::from_micros(usec / 2))),
    }
}

/// Pings the watchdog every `interval` until `shutdown` fires. It runs on the daemon's
/// runtime on purpose: when the runtime stops polling tasks (every worker blocked, or
/// deadlocked), the pings stop too and systemd restarts chatd. Once shutdown begins systemd
/// no longer watches (the stop has its own timeout), so the pings end with it.
pub(crate) async fn run_watchdog(
    notifier: Notifier,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    // After a stall, ping once and keep the pace from there: a burst of catch-up pings
    // would hide how late the runtime was.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => notifier.ping(),
        }
    }
}

/// `STATUS=` with `status` on one line: a newline would end the field and start an
/// unintended one.
fn status_line(status: &str) -> String {
    let parts: Vec<&str> = status
        .lines()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    format!("STATUS={}", parts.join("; "))
}

/// Now on `CLOCK_MONOTONIC`, in microseconds, as `MONOTONIC_USEC=` wants it; `None` if the
/// reading does not fit.
fn monotonic_usec() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec)
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(u64::try_from(now.tv_nsec).ok()? / 1_000)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0; 4096];
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let read = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..read].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_socket_named_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::from_socket_var(Some(path.as_os_str())).unwrap();
        assert!(notifier.is_enabled());

        notifier.ready("listening on ws://127.0.0.1:7878");
        assert_eq!(
            receive(&systemd),
            "READY=1\nSTATUS=listening on ws://127.0.0.1:7878"
        );
        notifier.stopping("draining");
        assert_eq!(receive(&systemd), "STOPPING=1\nSTATUS=draining");
        notifier.ping();
        assert_eq!(receive(&systemd), "WATCHDOG=1");
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("chatd-notify-test-{}", std::process::id());
        let systemd =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::from_socket_var(Some(OsStr::new(&format!("@{name}")))).unwrap();

        notifier.reloading("reloading");
        let message = receive(&systemd);
        let lines: Vec<_> = message.lines().collect();
        assert_eq!(lines[0], "RELOADING=1", "{message}");
        assert!(lines[1].starts_with("MONOTONIC_USEC="), "{message}");
        assert_eq!(lines[2], "STATUS=reloading", "{message}");
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        for var in [None, Some(OsStr::new(""))] {
            let notifier = Notifier::from_socket_var(var).unwrap();
            assert!(!notifier.is_enabled());
            notifier.ready("ready");
        }
    }

    #[test]
    fn a_relative_notify_socket_is_refused() {
        let error = Notifier::from_socket_var(Some(OsStr::new("run/notify"))).unwrap_err();
        assert!(error.contains("NOTIFY_SOCKET=run/notify"), "{error}");
    }

    #[test]
    fn an_unreachable_socket_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let notifier =
            Notifier::from_socket_var(Some(dir.path().join("nobody-listens").as_os_str())).unwrap();
        notifier.ready("ready");
        notifier.ping();
        assert!(
            notifier
                .target
                .as_ref()
                .unwrap()
                .has_failed
                .load(Ordering::Relaxed)
        );
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(
            status_line("reload failed:\n  bad key\n\nat line 3"),
            "STATUS=reload failed:; bad key; at line 3"
        );
        assert_eq!(status_line("draining"), "STATUS=draining");
    }

    #[test]
    fn the_watchdog_pings_at_half_its_interval_and_only_for_this_process() {
        let half = Some(Duration::from_millis(100));
        assert_eq!(watchdog_interval(Some("200000"), None, 7), Ok(half));
        assert_eq!(watchdog_interval(Some("200000"), Some("7"), 7), Ok(half));
        assert_eq!(watchdog_interval(Some("200000"), Some("8"), 7), Ok(None));
        assert_eq!(watchdog_interval(None, Some("7"), 7), Ok(None));
        for bad in ["0", "-1", "soon", ""] {
            assert!(watchdog_interval(Some(bad), None, 7).is_err(), "{bad}");
        }
        assert!(watchdog_interval(Some("200000"), Some("me"), 7).is_err());
    }

    #[test]
    fn monotonic_usec_reads_clock_monotonic() {
        let first = monotonic_usec().expect("CLOCK_MONOTONIC is readable");
        let started = Instant::now();
        // CLOCK_MONOTONIC counts from boot, but not time suspended: it never exceeds the
        // boot clock that /proc/uptime shows.
        let uptime = std::fs::read_to_string("/proc/uptime").unwrap();
        let uptime_secs: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
        assert!(first > 0);
        assert!(
            (first as f64) / 1e6 <= uptime_secs + 1.0,
            "{first} µs vs uptime {uptime_secs} s"
        );
        // It advances with Instant, microsecond for microsecond.
        let mut second = first;
        while started.elapsed() < Duration::from_millis(20) {
            second = monotonic_usec().unwrap();
        }
        let advanced = Duration::from_micros(second - first);
        assert!(advanced >= Duration::from_millis(19), "{advanced:?}");
        assert!(
            advanced <= started.elapsed() + Duration::from_millis(1),
            "{advanced:?}"
        );
    }
}
