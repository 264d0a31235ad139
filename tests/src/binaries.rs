//! Finds the `chatd` and `chatctl` binaries cargo built next to the test executable (or next
//! to a workspace binary such as `lossbench`).
//! `cargo test --workspace` builds them because `daemon` and `ctl` have integration tests.

use std::path::PathBuf;

/// Path of a workspace binary, e.g. `chatctl`.
///
/// # Panics
/// When the binary has not been built; the message says how to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // A test is target/<profile>/deps/it-<hash>, one directory below the binaries; a
    // workspace binary such as target/<profile>/lossbench sits beside them.
    let own_dir = exe.parent().expect("an executable lives in a directory");
    let dir = match own_dir.parent() {
        Some(profile_dir) if own_dir.ends_with("deps") => profile_dir,
        _ => own_dir,
    };
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
