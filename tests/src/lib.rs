//! The integration-test harness: starts real chatd daemons (in-process through
//! [`chatd::start`], on 127.0.0.1 port 0 with a private temporary data directory), runs the
//! real `chatctl` binary against their admin socket, and offers polling helpers so tests
//! never sleep a fixed time to wait for something.
//!
//! # Layout
//! - `daemon`: [`TestDaemon`].
//! - `cluster`: [`Cluster`], several `chatd` processes on one database and one broker.
//! - `postgres`: [`TestPostgres`], a private PostgreSQL server with a fresh database per test.
//! - `process`: [`ProcessDaemon`], the `chatd` binary as a child process, optionally inside a
//!   [`LossyNetwork`].
//! - `redis`: [`TestRedis`], a private Redis server that a test may kill and restart.
//! - `netns`: [`LossyNetwork`], a network namespace behind a veth link that drops a chosen
//!   share of packets (needs root and nftables).
//! - `binaries`: locating the built `chatd` and `chatctl` binaries.
//! - `wait`: polling with a deadline.

pub mod binaries;
pub mod cluster;
pub mod daemon;
pub mod netns;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod wait;

pub use cluster::Cluster;
pub use daemon::TestDaemon;
pub use netns::LossyNetwork;
pub use postgres::TestPostgres;
pub use process::{ProcessDaemon, ProcessOptions};
pub use redis::TestRedis;
