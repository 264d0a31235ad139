//! chatctl refused by the admin socket's file permissions. The socket is mode 0660, so only
//! its owner and the members of its group may connect (the systemd unit makes that group
//! `chatd-admin`); anyone else must get a message that names the socket and says whom to run
//! as, and exit 3 ("cannot reach the daemon").
//!
//! The tests run chatctl as `nobody` through `runuser`, so they need root; without root or
//! without runuser they say so and pass without checking anything.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use protocol::admin::{AdminErrorKind, AdminReply};

/// A scratch area `nobody` can enter, holding a copy of chatctl it may run (the build's target
/// directory need not be open to it).
struct Scratch {
    dir: tempfile::TempDir,
    chatctl: PathBuf,
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
impl Scratch {
    /// `None`, with the reason printed, when chatctl cannot be run as another user here.
    fn new() -> Option<Self> {
        let Ok(uid) = Command::new("id").arg("-u").output() else {
            println!("skipped: `id` is not available to tell whether the test runs as root");
            return None;
        };
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            println!("skipped: only root may run chatctl as `nobody` through runuser");
            return None;
        }
        if Command::new("runuser")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            println!("skipped: runuser (util-linux) is not installed");
            return None;
        }
        if !Command::new("id")
            .arg("nobody")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            println!("skipped: there is no user `nobody` to run chatctl as");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        open_to_all(dir.path());
        let chatctl = dir.path().join("chatctl");
        std::fs::copy(env!("CARGO_BIN_EXE_chatctl"), &chatctl).unwrap();
        std::fs::set_permissions(&chatctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(Self { dir, chatctl })
    }

    /// A listening socket at `name` with mode 0660, owned by root and the group `gid`, as
    /// chatd leaves its admin socket. It answers each connection's first request with an
    /// `invalid` error reply saying "reached", then hangs up.
    fn socket(&self, name: &str, gid: u32) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let listener = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
        std::os::unix::fs::chown(&path, Some(0), Some(gid)).unwrap();
        // Detached: it lives until the test process ends, and blocks nothing.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut request = String::new();
                if BufReader::new(&stream).read_line(&mut request).is_ok() {
                    let reply = AdminReply::Error {
                        kind: AdminErrorKind::Invalid,
                        message: "reached".to_owned(),
                    };
                    let _ = writeln!(&stream, "{}", serde_json::to_string(&reply).unwrap());
                }
            }
        });
        path
    }

    /// Runs `chatctl --socket SOCKET status` as `nobody`.
    fn status_as_nobody(&self, socket: &Path) -> Output {
        Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(&self.chatctl)
            .arg("--socket")
            .arg(socket)
            .arg("status")
            .env_remove("CHATD_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn open_to_all(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn gid_of_nobody() -> u32 {
    let output = Command::new("id").args(["-g", "nobody"]).output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_user_outside_the_sockets_group_is_told_whom_to_run_as() {
    let Some(scratch) = Scratch::new() else {
        return;
    };
    // Owner root, group root: nobody is neither.
    let socket = scratch.socket("chatd.sock", 0);

    let output = scratch.status_as_nobody(&socket);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let expected = format!(
        "chatctl: cannot connect to the admin socket {}: Permission denied (os error 13) — \
         permission denied: only the socket's owner (root) and members of its group (root) \
         may use it; run chatctl as a member of root (`usermod -aG root USER`, then log in \
         again) or as root\n",
        socket.display()
    );
    assert_eq!(stderr, expected);
}

#[test]
fn a_member_of_the_sockets_group_gets_through() {
    let Some(scratch) = Scratch::new() else {
        return;
    };
    // The same socket, but its group is nobody's own: the request gets through, and the
    // peer's refusal is what chatctl reports.
    let socket = scratch.socket("chatd.sock", gid_of_nobody());

    let output = scratch.status_as_nobody(&socket);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr, "chatctl: reached\n");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
}

#[test]
fn a_closed_directory_names_the_socket_and_the_admin_group() {
    let Some(scratch) = Scratch::new() else {
        return;
    };
    // /run/chatd is 0750 chatd:chatd-admin under the systemd unit: outsiders cannot even
    // see the socket's owner.
    let socket = scratch.socket("private/chatd.sock", 0);
    std::fs::set_permissions(
        socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();

    let output = scratch.status_as_nobody(&socket);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(
        stderr.contains(
            "run chatctl as a member of chatd's admin group (chatd-admin with the packaged \
             systemd unit) or as the chatd user"
        ),
        "{stderr}"
    );
}
