//! Finds the `chatd` and `chatctl` binaries cargo built next to the test executable.
//! `cargo test --workspace` builds them because `daemon` and `ctl` have integration tests.

use std::path::PathBuf;

/// Path of a workspace binary, e.g. `chatctl`.
///
/// # Panics
/// When the binary has not been built; the message says how to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/debug/deps/it-<hash> → target/debug/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; run the tests with `cargo test --workspace` (it builds every binary) \
         or build it with `cargo build -p {}`",
        path.display(),
        if name == "chatd" { "chatd" } else { name }
    );
    path
}
