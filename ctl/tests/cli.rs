//! chatctl as an operator meets it: the built binary's `--help`, its messages and exit codes
//! when the daemon cannot be reached, and the admin-socket conversation for a few commands
//! against a peer on a real Unix socket that answers the way `protocol::admin` specifies
//! (with the real OPAQUE server half for registration).

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;

use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, CredentialResponse, RegistrationUpload, ServerLogin,
    ServerLoginParameters, ServerRegistration, ServerSetup,
};
use protocol::Base64Bytes;
use protocol::admin::{AdminErrorKind, AdminReply, AdminRequest, RegisterMode};
use protocol::opaque_suite::Suite;
use rand::rngs::OsRng;

fn chatctl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatctl"));
    command
        .args(args)
        .env_remove("CHATD_CONFIG")
        .env_remove("STATE_DIRECTORY");
    command
}

#[expect(clippy::unwrap_used, reason = "test helper: a failure here fails the test")]
fn run(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Serves one admin connection on `path`: answers each request line with `answer` and
/// returns the requests it saw.
#[expect(clippy::unwrap_used, reason = "test helper: a failure here fails the test")]
fn admin_peer(
    path: &Path,
    mut answer: impl FnMut(&AdminRequest) -> AdminReply + Send + 'static,
) -> JoinHandle<Vec<AdminRequest>> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut seen = Vec::new();
        for line in BufReader::new(stream).lines() {
            let request: AdminRequest = serde_json::from_str(&line.unwrap()).unwrap();
            let reply = answer(&request);
            writeln!(writer, "{}", serde_json::to_string(&reply).unwrap()).unwrap();
            seen.push(request);
        }
        seen
    })
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let output = run(&mut chatctl(&["--help"]), "");
    assert!(output.status.success());
    let help = text(&output.stdout);
    for command in [
        "chatctl user add NAME [--password-stdin]",
        "chatctl user passwd NAME [--password-stdin]",
        "chatctl user list",
        "chatctl user disable NAME",
        "chatctl user enable NAME",
        "chatctl room create NAME [--private]",
        "chatctl room list",
        "chatctl room add-member ROOM USER",
        "chatctl room remove-member ROOM USER",
        "chatctl status",
        "--config <PATH>",
        "--socket <PATH>",
        "--json",
    ] {
        assert!(help.contains(command), "`{command}` missing from:\n{help}");
    }
    for code in [
        "0  success",
        "1  the daemon refused",
        "2  usage error",
        "3  cannot reach",
        "4  the daemon failed",
    ] {
        assert!(
            help.contains(code),
            "exit code `{code}` missing from:\n{help}"
        );
    }

    let user_help = text(&run(&mut chatctl(&["user", "--help"]), "").stdout);
    for command in ["add", "passwd", "list", "disable", "enable"] {
        assert!(user_help.contains(command), "{user_help}");
    }
    let room_help = text(&run(&mut chatctl(&["room", "--help"]), "").stdout);
    for command in ["create", "list", "add-member", "remove-member"] {
        assert!(room_help.contains(command), "{room_help}");
    }
}

#[test]
fn a_missing_socket_exits_3_naming_the_path_and_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let output = run(
        &mut chatctl(&["--socket", socket.to_str().unwrap(), "status"]),
        "",
    );
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "chatctl: cannot connect to the admin socket {}: ",
            socket.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("is chatd running? Use --socket or --config"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn the_configuration_locates_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chatd.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let expected = dir.path().join("chatd.sock");

    let by_flag = run(
        &mut chatctl(&["--config", config.to_str().unwrap(), "user", "list"]),
        "",
    );
    assert_eq!(by_flag.status.code(), Some(3), "{}", text(&by_flag.stderr));
    assert!(text(&by_flag.stderr).contains(expected.to_str().unwrap()));

    let by_env = run(chatctl(&["room", "list"]).env("CHATD_CONFIG", &config), "");
    assert_eq!(by_env.status.code(), Some(3), "{}", text(&by_env.stderr));
    assert!(text(&by_env.stderr).contains(expected.to_str().unwrap()));
}

#[test]
fn a_missing_configuration_file_is_a_usage_error() {
    let output = run(
        &mut chatctl(&["--config", "/nonexistent/chatd.toml", "status"]),
        "",
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/nonexistent/chatd.toml"), "{stderr}");
    assert!(stderr.contains("--socket"), "{stderr}");
}

#[test]
fn a_refused_request_exits_1_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let peer = admin_peer(&socket, |_| AdminReply::Error {
        kind: AdminErrorKind::NotFound,
        message: "no user `bob`".into(),
    });
    let output = run(
        &mut chatctl(&[
            "--socket",
            socket.to_str().unwrap(),
            "user",
            "disable",
            "bob",
        ]),
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "chatctl: no user `bob` — list users with `chatctl user list`\n"
    );
    let requests = peer.join().unwrap();
    assert!(
        matches!(&requests[..], [AdminRequest::UserDisable { user }] if user.as_str() == "bob")
    );
}

#[test]
fn an_internal_daemon_error_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let peer = admin_peer(&socket, |_| AdminReply::Error {
        kind: AdminErrorKind::Internal,
        message: "store unavailable".into(),
    });
    let output = run(
        &mut chatctl(&["--socket", socket.to_str().unwrap(), "room", "list"]),
        "",
    );
    assert_eq!(output.status.code(), Some(4));
    assert!(text(&output.stderr).contains("see the daemon's log"));
    peer.join().unwrap();
}

#[test]
fn user_disable_reports_closed_sessions_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("chatd.sock");
    let peer = admin_peer(&socket, |_| AdminReply::Disabled { sessions_closed: 2 });
    let output = run(
        &mut chatctl(&[
            "--socket",
            socket.to_str().unwrap(),
            "user",
            "disable",
            "bob",
        ]),
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "disabled bob; closed 2 live sessions\n"
    );
    peer.join().unwrap();

    std::fs::remove_file(&socket).unwrap();
    let peer = admin_peer(&socket, |_| AdminReply::Disabled { sessions_closed: 2 });
    let args = [
        "--json",
        "--socket",
        socket.to_str().unwrap(),
        "user",
        "disable",
        "bob",
    ];
    let output = run(&mut chatctl(&args), "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "{\"reply\":\"disabled\",\"sessions_closed\":2}\n"
    );
    peer.join().unwrap();
}

#[test]
fn user_add_registers_with_opaque_and_the_password_stays_local() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let setup = ServerSetup::<Suite>::new(&mut OsRng);
    let server_setup = setup.clone();
    let peer = admin_peer(&socket, move |request| match request {
        AdminRequest::RegisterStart { user, request } => {
            let request = opaque_ke::RegistrationRequest::deserialize(request.as_bytes()).unwrap();
            let start = ServerRegistration::<Suite>::start(
                &server_setup,
                request,
                user.as_str().as_bytes(),
            )
            .unwrap();
            AdminReply::RegisterChallenge {
                response: Base64Bytes(start.message.serialize().to_vec()),
            }
        }
        AdminRequest::RegisterFinish { .. } => AdminReply::Done,
        other => panic!("unexpected {other:?}"),
    });
    let args = [
        "--socket",
        socket.to_str().unwrap(),
        "user",
        "add",
        "bob",
        "--password-stdin",
    ];
    let output = run(&mut chatctl(&args), "tr0ub4dor &3\n");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "created user bob\n");

    let requests = peer.join().unwrap();
    let [
        AdminRequest::RegisterStart { .. },
        AdminRequest::RegisterFinish { user, upload, mode },
    ] = &requests[..]
    else {
        panic!("{requests:?}")
    };
    assert_eq!((user.as_str(), *mode), ("bob", RegisterMode::Create));
    for request in &requests {
        let line = serde_json::to_string(request).unwrap();
        assert!(
            !line.contains("tr0ub4dor"),
            "the password went over the socket: {line}"
        );
    }
    // The uploaded password file accepts a login with the password, without its newline.
    let record = ServerRegistration::finish(
        RegistrationUpload::<Suite>::deserialize(upload.as_bytes()).unwrap(),
    );
    assert!(login(&setup, record.clone(), "bob", "tr0ub4dor &3"));
    assert!(!login(&setup, record, "bob", "tr0ub4dor &3\n"));
}

/// Runs both halves of an OPAQUE login; whether it succeeded.
#[expect(clippy::unwrap_used, reason = "test helper: a failure here fails the test")]
fn login(
    setup: &ServerSetup<Suite>,
    record: ServerRegistration<Suite>,
    user: &str,
    password: &str,
) -> bool {
    let client = ClientLogin::<Suite>::start(&mut OsRng, password.as_bytes()).unwrap();
    let server = ServerLogin::start(
        &mut OsRng,
        setup,
        Some(record),
        client.message,
        user.as_bytes(),
        ServerLoginParameters::default(),
    )
    .unwrap();
    let response = CredentialResponse::deserialize(&server.message.serialize()).unwrap();
    client
        .state
        .finish(
            &mut OsRng,
            password.as_bytes(),
            response,
            ClientLoginFinishParameters::default(),
        )
        .is_ok()
}

#[test]
fn an_empty_password_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let peer = admin_peer(&socket, |request| panic!("unexpected {request:?}"));
    let args = [
        "--socket",
        socket.to_str().unwrap(),
        "user",
        "passwd",
        "bob",
        "--password-stdin",
    ];
    let output = run(&mut chatctl(&args), "\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("empty; nothing was changed"),
        "{}",
        text(&output.stderr)
    );
    assert!(peer.join().unwrap().is_empty());
}
