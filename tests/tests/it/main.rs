//! Whole-daemon integration tests: real chatd, real WebSocket, real SQLite, real chatctl.
//! One test binary with modules, to save link time.
#![expect(
    clippy::unwrap_used,
    reason = "helpers shared by the tests fail the test on an unexpected result, like the tests"
)]

mod chat;
mod cluster;
mod ctl;
mod ctl_db;
mod daemon_postgres;
mod export;
mod fault;
mod harness_redis;
mod history;
mod interop;
mod limits;
mod login;
mod lossy;
mod metrics;
mod netns;
mod quic;
mod sessions;
mod shutdown;
mod store_postgres;
mod store_postgres_plans;
mod support;
