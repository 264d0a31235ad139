//! The integration-test harness: starts real chatd daemons (in-process through
//! [`chatd::start`], on 127.0.0.1 port 0 with a private temporary data directory), runs the
//! real `chatctl` binary against their admin socket, and offers polling helpers so tests
//! never sleep a fixed time to wait for something.
//!
//! # Layout
//! - `daemon`: [`TestDaemon`].
//! - `postgres`: [`TestPostgres`], a private PostgreSQL server with a fresh database per test.
//! - `binaries`: locating the built `chatd` and `chatctl` binaries.
//! - `wait`: polling with a deadline.

pub mod binaries;
pub mod daemon;
pub mod postgres;
pub mod wait;

pub use daemon::TestDaemon;
pub use postgres::TestPostgres;
