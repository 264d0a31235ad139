//! Load generation and measurement for chatd. The `loadgen` binary drives a daemon (embedded
//! in its own process, or a separate one by URL) with many clients and reports throughput,
//! latency percentiles, the daemon's CPU time and memory, and whether every message arrived
//! exactly once and in order. The same code runs as a test with a quick setting, so the load
//! generator keeps working; the numbers are recorded in `docs/benchmarks.md`, never judged
//! by a test.
//!
//! # Layout
//! - [`target`]: the daemon under test, embedded (temporary SQLite, port 0, rate limits
//!   raised) or remote.
//! - [`durable`]: the `durable` scenario: one room, every client sends and receives.
//! - [`correctness`]: exactly-once, gap-free, commit-order delivery bookkeeping.
//! - [`histogram`]: latency histograms (HDR) and their summaries.
//! - [`process`]: CPU time and peak RSS from `/proc`.
//! - [`report`]: one run as JSON and as a markdown table row.
//! - [`loss`]: the `lossbench` binary's runs: WebSocket against QUIC on a link that drops
//!   packets (the real chatd in a network namespace), delivery latency and reconnect time.

pub mod correctness;
pub mod durable;
pub mod histogram;
pub mod loss;
pub mod process;
pub mod report;
pub mod target;

pub use durable::DurableSettings;
pub use report::Report;
pub use target::{RunningTarget, Target};
