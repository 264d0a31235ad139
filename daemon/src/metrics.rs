//! Every metric chatd exports, in one place: the names (Prometheus conventions: `chatd_`
//! prefix, the unit in the name, `_total` on counters), their descriptions and histogram
//! buckets, and one small typed function per thing the rest of the daemon records, so no call
//! site spells a metric name or a label. `docs/operations.md#monitoring` lists them for
//! operators.
//!
//! The numbers go through the `metrics` facade to a Prometheus recorder that [`install`] sets
//! up once per process, when the first daemon with `listen.metrics` starts. The facade has
//! one global recorder, so every daemon in a process records into the same numbers: in
//! production that is one daemon, but a test process running several daemons sees their sum.
//! Until a recorder is installed (and in a daemon without `listen.metrics`, when no other
//! daemon of the process installed one) every function here does nothing.
//!
//! Hot paths stay cheap: metric names and label values are `'static`, and every label value is
//! a literal in one `match` arm, so the facade builds the key from statics and nothing is
//! allocated per message.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{
    Counter, Gauge, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::health::{self, BrokerState};
use crate::node::TransportKind;
use crate::transport::admission::Refusal;

/// `chatd_build_info{version}`: always 1; the label carries the version.
pub const BUILD_INFO: &str = "chatd_build_info";
/// Open client connections, any phase (handshake, login, logged in), by transport.
pub const CONNECTIONS: &str = "chatd_transport_connections";
/// Connections refused at accept by a connection limit, by reason.
pub const CONNECTIONS_REFUSED: &str = "chatd_connections_refused_total";
/// Logged-in sessions, by transport.
pub const SESSIONS: &str = "chatd_session_logged_in";
/// Login attempts, by outcome.
pub const LOGINS: &str = "chatd_auth_logins_total";
/// Requests refused by a rate limit, by kind.
pub const RATE_LIMITED: &str = "chatd_rate_limit_rejections_total";
/// Sends (room and direct) accepted from clients and queued for commit.
pub const MESSAGES_RECEIVED: &str = "chatd_session_messages_received_total";
/// New messages committed by the group-commit writer (resends of stored messages excluded).
pub const MESSAGES_COMMITTED: &str = "chatd_store_messages_committed_total";
/// Message events written to sessions' connections as live delivery.
pub const MESSAGES_DELIVERED: &str = "chatd_session_messages_delivered_total";
/// Duration of one group-commit transaction.
pub const COMMIT_SECONDS: &str = "chatd_store_commit_seconds";
/// Sends carried by one group-commit transaction.
pub const BATCH_MESSAGES: &str = "chatd_store_commit_batch_messages";
/// Group-commit transactions that failed (nothing of their batch was stored).
pub const COMMITS_FAILED: &str = "chatd_store_commits_failed_total";
/// Time from a message's commit reaching this node's hub to its event being written to one
/// session's connection.
pub const FANOUT_SECONDS: &str = "chatd_hub_fanout_seconds";
/// Events still queued in a session's outbox when it takes one out to write it. A histogram,
/// not a gauge: a gauge would be raised and lowered by every session on every event (one
/// shared value written from every core), and a total over all sessions would hide the one
/// session about to be cut off; the upper buckets show exactly that.
pub const OUTBOX_DEPTH: &str = "chatd_hub_outbox_depth_events";
/// Sessions closed because their outbox overflowed.
pub const SLOW_CONSUMERS: &str = "chatd_hub_slow_consumers_total";
/// `resume` requests (resume-token logins), by outcome.
pub const RESUMES: &str = "chatd_session_resumes_total";
/// Messages replayed from the store to a session that joined with `since`.
pub const MESSAGES_REPLAYED: &str = "chatd_session_messages_replayed_total";
/// Gaps in a room's sequence noticed during live delivery.
pub const GAPS_DETECTED: &str = "chatd_session_gaps_detected_total";
/// Of those gaps, the ones filled from the store.
pub const GAPS_FILLED: &str = "chatd_session_gaps_filled_total";
/// 1 while the broker carries events, 0 while it is degraded.
pub const BROKER_UP: &str = "chatd_broker_up";

/// Upper bounds of the commit-duration buckets, in seconds: a commit's statements take under a
/// millisecond each and a PostgreSQL batch of 126 messages 5.3 ms (docs/store.md), and an
/// `fsync` a few milliseconds, so the buckets are fine there and coarse up to the seconds a
/// struggling database takes.
const COMMIT_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Upper bounds of the fan-out buckets, in seconds: a local write takes tens of microseconds
/// (an estimate); above 100 ms a session is falling behind.
const FANOUT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Batch sizes by powers of two up to past `store.max_batch`'s default of 256.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Outbox depths by powers of two up to `limits.outbox_capacity`'s default of 1024, where a
/// session is cut off.
const OUTBOX_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How often recorded histogram samples are folded into their buckets. Samples wait in a
/// buffer until then (or until a scrape), so this bounds that buffer when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use.
static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's metrics recorder, once, and describes
/// every metric; later calls return the same handle.
///
/// # Errors
/// When another recorder was installed in this process first (chatd embedded in a program
/// with its own metrics); the text says so.
pub fn install() -> Result<PrometheusHandle, String> {
    RECORDER
        .get_or_init(|| {
            let handle = builder()
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|error| error.to_string())?;
            describe();
            register_at_zero();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Ok(handle)
        })
        .clone()
}

/// Folds histogram samples into their buckets every [`UPKEEP_INTERVAL`] and samples the
/// broker's state, until `shutdown` is cancelled.
pub async fn upkeep(handle: PrometheusHandle, broker: Broker, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = interval.tick() => {
                broker_state(health::broker_state(&broker));
                handle.run_upkeep();
            }
        }
    }
}

fn builder() -> Result<PrometheusBuilder, BuildError> {
    let buckets = [
        (COMMIT_SECONDS, COMMIT_BUCKETS),
        (FANOUT_SECONDS, FANOUT_BUCKETS),
        (BATCH_MESSAGES, BATCH_BUCKETS),
        (OUTBOX_DEPTH, OUTBOX_BUCKETS),
    ];
    // Buckets make the histograms true Prometheus histograms (aggregatable across nodes with
    // `histogram_quantile`) instead of per-process summaries.
    buckets
        .into_iter()
        .try_fold(PrometheusBuilder::new(), |builder, (name, bounds)| {
            builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), bounds)
        })
}

fn describe() {
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the running chatd."
    );
    describe_gauge!(
        CONNECTIONS,
        "Open client connections in any phase (handshake, login, logged in), by transport."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused at accept, before any handshake, by reason: per_address \
         (limits.max_connections_per_address), handshakes (limits.max_pending_handshakes)."
    );
    describe_gauge!(SESSIONS, "Logged-in sessions, by transport.");
    describe_counter!(
        LOGINS,
        "Login attempts by outcome: ok, bad_credentials, abandoned (no KE3 after KE2, usually a \
         wrong password), disabled, rate_limited, malformed, error."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by a rate limit, by kind: send, typing, login_user, login_address."
    );
    describe_counter!(
        MESSAGES_RECEIVED,
        "Sends (room and direct) accepted from clients and queued for commit."
    );
    describe_counter!(
        MESSAGES_COMMITTED,
        "New messages committed by the group-commit writer (resends of stored messages \
         excluded)."
    );
    describe_counter!(
        MESSAGES_DELIVERED,
        "Message events written to sessions' connections as live delivery (gap fills \
         included, join replays not)."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one group-commit transaction, committed or failed."
    );
    describe_histogram!(
        BATCH_MESSAGES,
        "Sends carried by one group-commit transaction."
    );
    describe_counter!(
        COMMITS_FAILED,
        "Group-commit transactions that failed; nothing of their batch was stored."
    );
    describe_histogram!(
        FANOUT_SECONDS,
        metrics::Unit::Seconds,
        "Time from a committed message reaching this node's hub to its event being written \
         to one session's connection."
    );
    describe_histogram!(
        OUTBOX_DEPTH,
        "Events still queued in a session's outbox each time it takes one out to write it."
    );
    describe_counter!(
        SLOW_CONSUMERS,
        "Sessions closed as slow consumers because their outbox overflowed."
    );
    describe_counter!(
        RESUMES,
        "Resume-token logins by outcome: ok, invalid_token, error."
    );
    describe_counter!(
        MESSAGES_REPLAYED,
        "Messages replayed from the store to sessions that joined with `since`."
    );
    describe_counter!(
        GAPS_DETECTED,
        "Gaps in a room's sequence noticed during live delivery."
    );
    describe_counter!(GAPS_FILLED, "Gaps filled from the store.");
    describe_gauge!(
        BROKER_UP,
        "1 while the broker carries events between sessions, 0 while it is degraded."
    );
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Logged in.
    Ok,
    /// Wrong password or no such user (indistinguishable by design), found by the server.
    BadCredentials,
    /// The server answered KE1 but no KE3 followed before the session ended. With OPAQUE a
    /// client learns from KE2 that its password is wrong, so this is how most wrong passwords
    /// (and guessing) show up.
    Abandoned,
    /// Right password, disabled account.
    Disabled,
    /// Refused by the per-user or per-address failure limit.
    RateLimited,
    /// KE1 or KE3 did not parse.
    Malformed,
    /// The server failed (store unavailable).
    Error,
}

impl LoginOutcome {
    const ALL: [Self; 7] = [
        Self::Ok,
        Self::BadCredentials,
        Self::Abandoned,
        Self::Disabled,
        Self::RateLimited,
        Self::Malformed,
        Self::Error,
    ];
}

/// Which rate limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// A session's send rate (`send`, `direct`).
    Send,
    /// A session's send rate, hit by `typing` (dropped without an error).
    Typing,
    /// Failed logins of one user.
    LoginUser,
    /// Failed logins from one address.
    LoginAddress,
}

impl RateLimit {
    const ALL: [Self; 4] = [
        Self::Send,
        Self::Typing,
        Self::LoginUser,
        Self::LoginAddress,
    ];
}

/// How a `resume` request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// Logged in with the token.
    Ok,
    /// Unknown, used or expired token, or a disabled user.
    InvalidToken,
    /// The server failed.
    Error,
}

impl ResumeOutcome {
    const ALL: [Self; 3] = [Self::Ok, Self::InvalidToken, Self::Error];
}

/// A connection was accepted.
pub fn connection_opened(transport: TransportKind) {
    connections(transport).increment(1);
}

/// A connection ended.
pub fn connection_closed(transport: TransportKind) {
    connections(transport).decrement(1);
}

/// A connection was refused at accept by a connection limit.
pub fn connection_refused(reason: Refusal) {
    connections_refused(reason).increment(1);
}

/// A session logged in (by password or resume token).
pub fn session_logged_in(transport: TransportKind) {
    sessions(transport).increment(1);
}

/// A logged-in session ended.
pub fn session_ended(transport: TransportKind) {
    sessions(transport).decrement(1);
}

/// A login attempt ended.
pub fn login(outcome: LoginOutcome) {
    logins(outcome).increment(1);
}

/// A rate limit refused a request.
pub fn rate_limited(limit: RateLimit) {
    rate_limit_rejections(limit).increment(1);
}

/// A client's send was accepted and queued for commit.
pub fn message_received() {
    counter!(MESSAGES_RECEIVED).increment(1);
}

/// A group-commit transaction committed `sends` sends, `new` of them new messages.
pub fn batch_committed(sends: usize, new: usize, took: Duration) {
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
    histogram!(BATCH_MESSAGES).record(sends as f64);
    counter!(MESSAGES_COMMITTED).increment(new as u64);
}

/// A group-commit transaction of `sends` sends failed.
pub fn batch_failed(sends: usize, took: Duration) {
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
    histogram!(BATCH_MESSAGES).record(sends as f64);
    counter!(COMMITS_FAILED).increment(1);
}

/// A message event was written to a session as live delivery: `dispatched` is when the hub
/// took it, or `None` when a gap fill read it from the store (it then has no fan-out time).
pub fn message_delivered(dispatched: Option<Instant>) {
    counter!(MESSAGES_DELIVERED).increment(1);
    if let Some(dispatched) = dispatched {
        histogram!(FANOUT_SECONDS).record(dispatched.elapsed().as_secs_f64());
    }
}

/// A session took an event out of its outbox, leaving `depth` queued.
pub fn outbox_depth(depth: usize) {
    histogram!(OUTBOX_DEPTH).record(depth as f64);
}

/// A session was closed as a slow consumer.
pub fn slow_consumer_closed() {
    counter!(SLOW_CONSUMERS).increment(1);
}

/// A `resume` request ended.
pub fn resume(outcome: ResumeOutcome) {
    resumes(outcome).increment(1);
}

/// A stored message was replayed to a session that joined with `since`.
pub fn message_replayed() {
    counter!(MESSAGES_REPLAYED).increment(1);
}

/// Live delivery noticed a gap in a room's sequence.
pub fn gap_detected() {
    counter!(GAPS_DETECTED).increment(1);
}

/// A gap was filled from the store.
pub fn gap_filled() {
    counter!(GAPS_FILLED).increment(1);
}

/// The broker's state, sampled.
pub fn broker_state(state: BrokerState) {
    let up = match state {
        BrokerState::Ok => 1.0,
        BrokerState::Degraded => 0.0,
    };
    gauge!(BROKER_UP).set(up);
}

// The handles of labelled series: one literal label value per arm, so the key is static.

fn connections(transport: TransportKind) -> Gauge {
    match transport {
        TransportKind::WebSocket => gauge!(CONNECTIONS, "transport" => "websocket"),
        TransportKind::Quic => gauge!(CONNECTIONS, "transport" => "quic"),
    }
}

fn connections_refused(reason: Refusal) -> Counter {
    match reason {
        Refusal::PerAddress => counter!(CONNECTIONS_REFUSED, "reason" => "per_address"),
        Refusal::Handshakes => counter!(CONNECTIONS_REFUSED, "reason" => "handshakes"),
    }
}

fn sessions(transport: TransportKind) -> Gauge {
    match transport {
        TransportKind::WebSocket => gauge!(SESSIONS, "transport" => "websocket"),
        TransportKind::Quic => gauge!(SESSIONS, "transport" => "quic"),
    }
}

fn logins(outcome: LoginOutcome) -> Counter {
    match outcome {
        LoginOutcome::Ok => counter!(LOGINS, "outcome" => "ok"),
        LoginOutcome::BadCredentials => counter!(LOGINS, "outcome" => "bad_credentials"),
        LoginOutcome::Abandoned => counter!(LOGINS, "outcome" => "abandoned"),
        LoginOutcome::Disabled => counter!(LOGINS, "outcome" => "disabled"),
        LoginOutcome::RateLimited => counter!(LOGINS, "outcome" => "rate_limited"),
        LoginOutcome::Malformed => counter!(LOGINS, "outcome" => "malformed"),
        LoginOutcome::Error => counter!(LOGINS, "outcome" => "error"),
    }
}

fn rate_limit_rejections(limit: RateLimit) -> Counter {
    match limit {
        RateLimit::Send => counter!(RATE_LIMITED, "kind" => "send"),
        RateLimit::Typing => counter!(RATE_LIMITED, "kind" => "typing"),
        RateLimit::LoginUser => counter!(RATE_LIMITED, "kind" => "login_user"),
        RateLimit::LoginAddress => counter!(RATE_LIMITED, "kind" => "login_address"),
    }
}

fn resumes(outcome: ResumeOutcome) -> Counter {
    match outcome {
        ResumeOutcome::Ok => counter!(RESUMES, "outcome" => "ok"),
        ResumeOutcome::InvalidToken => counter!(RESUMES, "outcome" => "invalid_token"),
        ResumeOutcome::Error => counter!(RESUMES, "outcome" => "error"),
    }
}

/// Creates every counter and gauge series at 0, so that a scrape shows them before their
/// first event and `rate()`/`increase()` see that first event as an increase.
fn register_at_zero() {
    for transport in TransportKind::ALL {
        connections(transport).increment(0.0);
        sessions(transport).increment(0.0);
    }
    for reason in Refusal::ALL {
        connections_refused(reason).absolute(0);
    }
    for outcome in LoginOutcome::ALL {
        logins(outcome).absolute(0);
    }
    for limit in RateLimit::ALL {
        rate_limit_rejections(limit).absolute(0);
    }
    for outcome in ResumeOutcome::ALL {
        resumes(outcome).absolute(0);
    }
    for name in [
        MESSAGES_RECEIVED,
        MESSAGES_COMMITTED,
        MESSAGES_DELIVERED,
        COMMITS_FAILED,
        SLOW_CONSUMERS,
        MESSAGES_REPLAYED,
        GAPS_DETECTED,
        GAPS_FILLED,
    ] {
        counter!(name).absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let counters = [
            CONNECTIONS_REFUSED,
            LOGINS,
            RATE_LIMITED,
            MESSAGES_RECEIVED,
            MESSAGES_COMMITTED,
            MESSAGES_DELIVERED,
            COMMITS_FAILED,
            SLOW_CONSUMERS,
            RESUMES,
            MESSAGES_REPLAYED,
            GAPS_DETECTED,
            GAPS_FILLED,
        ];
        let others = [
            BUILD_INFO,
            CONNECTIONS,
            SESSIONS,
            COMMIT_SECONDS,
            BATCH_MESSAGES,
            FANOUT_SECONDS,
            OUTBOX_DEPTH,
            BROKER_UP,
        ];
        for name in counters.iter().chain(&others) {
            assert!(name.starts_with("chatd_"), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
        }
        for name in counters {
            assert!(name.ends_with("_total"), "{name}");
        }
        for name in others {
            assert!(!name.ends_with("_total"), "{name}");
        }
    }

    #[test]
    fn bucket_bounds_ascend() {
        for bounds in [
            COMMIT_BUCKETS,
            FANOUT_BUCKETS,
            BATCH_BUCKETS,
            OUTBOX_BUCKETS,
        ] {
            assert!(
                bounds.windows(2).all(|pair| pair[0] < pair[1]),
                "{bounds:?}"
            );
        }
    }
}
