//! `chatctl completions SHELL` and `chatctl man`, run as an operator would: the built binary,
//! its output fed to the shell and checked for the commands it must know.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Every top-level command, and a few nested ones, that completion and the manual must know.
const TOP_LEVEL: &[&str] = &[
    "user",
    "room",
    "session",
    "status",
    "history",
    "db",
    "completions",
    "man",
];

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn chatctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatctl"))
        .args(args)
        .env_remove("CHATD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn stdout_of(args: &[&str]) -> String {
    let output = chatctl(args);
    assert!(
        output.status.success(),
        "chatctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_bash_script_completes_every_command_and_bash_accepts_it() {
    let script = stdout_of(&["completions", "bash"]);
    for command in TOP_LEVEL.iter().chain(&[
        "add",
        "passwd",
        "set-retention",
        "export",
        "import",
        "migrate",
    ]) {
        assert!(
            script.contains(command),
            "`{command}` missing from the bash completion script"
        );
    }
    assert!(
        script.contains("complete -F _chatctl"),
        "not registered for chatctl"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chatctl.bash");
    std::fs::write(&file, &script).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n rejects the script: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn every_supported_shell_gets_a_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains("chatctl"), "{shell}: {script}");
        assert!(script.contains("set-retention"), "{shell}: {script}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_that_lists_the_choices() {
    let output = chatctl(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bash, elvish, fish, powershell, zsh"),
        "{stderr}"
    );
}

#[test]
fn the_man_page_opens_with_its_title_and_names_every_command() {
    let page = stdout_of(&["man"]);
    assert!(page.starts_with(".TH chatctl 1 "), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for command in TOP_LEVEL {
        // roff escapes the dash: chatctl\-user(1) refers to the user command's own page.
        let reference = format!("chatctl\\-{command}(1)");
        assert!(
            page.contains(&reference),
            "`{reference}` missing from:\n{page}"
        );
    }
    assert_groff_accepts(&page);
}

#[test]
fn man_output_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man1");
    let listing = stdout_of(&["man", "--output", man1.to_str().unwrap()]);
    for name in [
        "chatctl.1",
        "chatctl-user.1",
        "chatctl-user-add.1",
        "chatctl-room-set-retention.1",
        "chatctl-history-export.1",
        "chatctl-db-migrate.1",
        "chatctl-completions.1",
    ] {
        let path = man1.join(name);
        assert!(
            listing.lines().any(|line| Path::new(line) == path),
            "{name} not listed in:\n{listing}"
        );
        let page = std::fs::read_to_string(&path).unwrap();
        let title = name.trim_end_matches(".1");
        assert!(
            page.starts_with(&format!(".TH {title} 1 ")),
            "{name}:\n{page}"
        );
    }
    let add = std::fs::read_to_string(man1.join("chatctl-user-add.1")).unwrap();
    assert!(add.contains("password\\-stdin"), "{add}");
    assert!(
        !man1.join("chatctl-help.1").exists(),
        "clap's help subcommand gets no page"
    );
}

/// groff, when installed, renders the page without a warning.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn assert_groff_accepts(page: &str) {
    let Ok(mut groff) = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        println!("groff is not installed; the page is not rendered");
        return;
    };
    std::io::Write::write_all(&mut groff.stdin.take().unwrap(), page.as_bytes()).unwrap();
    let output = groff.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
