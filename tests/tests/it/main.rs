//! Whole-daemon integration tests: real chatd, real WebSocket, real SQLite, real chatctl.
//! One test binary with modules, to save link time.

mod chat;
mod ctl;
mod fault;
mod history;
mod interop;
mod login;
mod shutdown;
mod support;
