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
use protocol::admin::{AdminErrorKind, AdminReply, AdminRequest, RegisterMode, RoomInfo};
use protocol::opaque_suite::Suite;
use protocol::{Base64Bytes, ClientMsgId, Message, RoomId, Seq, UserId};
use rand::rngs::OsRng;

fn chatctl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatctl"));
    command
        .args(args)
        .env_remove("CHATD_CONFIG")
        .env_remove("STATE_DIRECTORY");
    command
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
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
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
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
        "chatctl room set-retention ROOM DAYS|forever|default",
        "chatctl session list [--user USER]",
        "chatctl session kick ID | --user USER",
        "chatctl history export [--room ROOM]... [--since TIME] [--until TIME] [--format jsonl|csv] [--output FILE]",
        "chatctl history import FILE|-",
        "chatctl db migrate",
        "chatctl db status",
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
    for command in [
        "create",
        "list",
        "add-member",
        "remove-member",
        "set-retention",
    ] {
        assert!(room_help.contains(command), "{room_help}");
    }
    let history_help = text(&run(&mut chatctl(&["history", "--help"]), "").stdout);
    for command in ["export", "import"] {
        assert!(history_help.contains(command), "{history_help}");
    }
    let db_help = text(&run(&mut chatctl(&["db", "--help"]), "").stdout);
    for command in ["migrate", "status"] {
        assert!(db_help.contains(command), "{db_help}");
    }
}

#[test]
fn the_new_commands_explain_their_arguments() {
    let help = |args: &[&str]| {
        let output = run(&mut chatctl(args), "");
        assert!(output.status.success(), "{args:?}");
        text(&output.stdout)
    };
    let export = help(&["history", "export", "--help"]);
    for expected in [
        "--room <ROOM>",
        "--since <TIME>",
        "--until <TIME>",
        "--format <FORMAT>",
        "jsonl",
        "csv",
        "--output <FILE>",
        "RFC 3339",
        "midnight UTC",
        "exclusive",
    ] {
        assert!(
            export.contains(expected),
            "`{expected}` missing from:\n{export}"
        );
    }
    let import = help(&["history", "import", "--help"]);
    for expected in ["<FILE>", "`-` reads standard input", "skipped"] {
        assert!(
            import.contains(expected),
            "`{expected}` missing from:\n{import}"
        );
    }
    let retention = help(&["room", "set-retention", "--help"]);
    assert!(
        retention.contains("<ROOM> <DAYS|forever|default>"),
        "{retention}"
    );
    let migrate = help(&["db", "migrate", "--help"]);
    assert!(migrate.contains("pending schema migrations"), "{migrate}");
}

#[test]
fn bad_arguments_exit_2_before_anything_is_contacted() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here; a parse error must come first.
    let socket = dir.path().join("chatd.sock");
    let socket = socket.to_str().unwrap();
    for (args, expected) in [
        (
            &["history", "export", "--since", "yesterday"][..],
            "invalid value 'yesterday' for '--since <TIME>': `yesterday` is not a time: use RFC \
             3339 (2026-11-25T12:00:00Z, 2026-11-25T13:00:00.5+01:00) or a date (2026-11-25, \
             midnight UTC)",
        ),
        (
            &["history", "export", "--until", "2026-02-30"][..],
            "invalid value '2026-02-30' for '--until <TIME>'",
        ),
        (
            &["history", "export", "--format", "xml"][..],
            "[possible values: jsonl, csv]",
        ),
        (
            &["history", "export", "--room", "Lobby"][..],
            "invalid value 'Lobby' for '--room <ROOM>'",
        ),
        (&["history", "import"][..], "<FILE>"),
        (
            &["room", "set-retention", "lobby", "soon"][..],
            "expected a number of days (0 to 4294967295), `forever` or `default`",
        ),
        (&["room", "set-retention", "lobby", "-3"][..], "-3"),
    ] {
        let mut command = chatctl(&["--socket", socket]);
        command.args(args);
        let output = run(&mut command, "");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: `{expected}` missing from {stderr}"
        );
    }

    let output = run(
        &mut chatctl(&[
            "--socket",
            socket,
            "history",
            "export",
            "--since",
            "2026-02-01",
            "--until",
            "2026-01-01",
        ]),
        "",
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "chatctl: --since must be before --until (--until is exclusive); nothing was exported\n"
    );
}

/// Serves one admin connection on `path`, answering each request with the reply lines
/// `answer` gives (several for `history_export`); returns the requests it saw.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn streaming_peer(
    path: &Path,
    mut answer: impl FnMut(&AdminRequest) -> Vec<AdminReply> + Send + 'static,
) -> JoinHandle<Vec<AdminRequest>> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut seen = Vec::new();
        for line in BufReader::new(stream).lines() {
            let request: AdminRequest = serde_json::from_str(&line.unwrap()).unwrap();
            for reply in answer(&request) {
                writeln!(writer, "{}", serde_json::to_string(&reply).unwrap()).unwrap();
            }
            seen.push(request);
        }
        seen
    })
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
fn message(room: &str, seq: u64, body: &str) -> Message {
    Message {
        room: RoomId::parse(room).unwrap(),
        seq: Seq(seq),
        from: UserId::parse("alice").unwrap(),
        body: body.to_owned(),
        ts: 1_795_608_000_123 + i64::try_from(seq).unwrap(),
        cmid: Some(ClientMsgId::parse(&format!("c-{seq}")).unwrap()),
    }
}

#[test]
fn history_export_writes_each_streamed_page_and_checks_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let peer = streaming_peer(&socket, |_| {
        vec![
            AdminReply::ExportPage {
                messages: vec![message("alpha", 1, "a, \"b\"\nc"), message("alpha", 2, "ü")],
            },
            AdminReply::ExportPage {
                messages: vec![message("dm:alice:bob", 1, "x")],
            },
            AdminReply::ExportDone { count: 3 },
        ]
    });
    let args = [
        "--socket",
        socket.to_str().unwrap(),
        "history",
        "export",
        "--room",
        "alpha",
        "--room",
        "dm:alice:bob",
        "--since",
        "2026-11-25T13:00:00+01:00",
        "--until",
        "2026-11-26",
        "--format",
        "csv",
    ];
    let output = run(&mut chatctl(&args), "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    assert_eq!(
        text(&output.stdout),
        "room,seq,sender,body,ts,cmid\r\n\
         alpha,1,alice,\"a, \"\"b\"\"\nc\",2026-11-25T12:00:00.124Z,c-1\r\n\
         alpha,2,alice,ü,2026-11-25T12:00:00.125Z,c-2\r\n\
         dm:alice:bob,1,alice,x,2026-11-25T12:00:00.124Z,c-1\r\n"
    );
    let requests = peer.join().unwrap();
    let [
        AdminRequest::HistoryExport {
            rooms,
            since_ms,
            until_ms,
        },
    ] = &requests[..]
    else {
        panic!("{requests:?}")
    };
    let rooms: Vec<&str> = rooms.iter().map(RoomId::as_str).collect();
    assert_eq!(rooms, ["alpha", "dm:alice:bob"]);
    assert_eq!(*since_ms, Some(1_795_608_000_000));
    assert_eq!(*until_ms, Some(1_795_651_200_000));

    // A stream whose end does not match what came is reported, not taken as complete.
    std::fs::remove_file(&socket).unwrap();
    let peer = streaming_peer(&socket, |_| {
        vec![
            AdminReply::ExportPage {
                messages: vec![message("alpha", 1, "a")],
            },
            AdminReply::ExportDone { count: 2 },
        ]
    });
    let file = dir.path().join("out.jsonl");
    let args = [
        "--socket",
        socket.to_str().unwrap(),
        "history",
        "export",
        "--output",
        file.to_str().unwrap(),
    ];
    let output = run(&mut chatctl(&args), "");
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        text(&output.stderr),
        format!(
            "chatctl: chatd reported 2 exported messages but sent 1; the export is incomplete \
             — see the daemon's log — {} was removed\n",
            file.display()
        )
    );
    assert!(!file.exists(), "a partial export is not left behind");
    peer.join().unwrap();
}

#[test]
fn history_import_sends_batches_of_500_and_prints_totals() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let peer = admin_peer(&socket, |request| match request {
        AdminRequest::HistoryImport { messages } => AdminReply::Imported {
            inserted: u64::try_from(messages.len()).unwrap() - 1,
            skipped: 1,
        },
        other => panic!("unexpected {other:?}"),
    });
    let input: String = (1..=1201)
        .map(|seq| {
            format!(
                "{{\"room\":\"lobby\",\"seq\":{seq},\"sender\":\"bob\",\"body\":\"m{seq}\",\
                 \"ts\":\"2026-11-25T12:00:00.000Z\",\"cmid\":null}}\n"
            )
        })
        .collect();
    let args = [
        "--socket",
        socket.to_str().unwrap(),
        "history",
        "import",
        "-",
    ];
    let output = run(&mut chatctl(&args), &input);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "read 1201 messages from standard input: 1198 imported, 3 already stored (skipped)\n"
    );
    let requests = peer.join().unwrap();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|request| match request {
            AdminRequest::HistoryImport { messages } => messages.len(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sizes, [500, 500, 201]);
    let AdminRequest::HistoryImport { messages } = &requests[2] else {
        unreachable!()
    };
    let last = messages.last().unwrap();
    assert_eq!(
        (last.seq, last.from.as_str(), last.ts),
        (Seq(1201), "bob", 1_795_608_000_000)
    );
    assert_eq!(last.cmid, None);
}

#[test]
fn room_list_shows_retention_and_set_retention_sends_the_days() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let peer = admin_peer(&socket, |request| match request {
        AdminRequest::RoomList => AdminReply::Rooms {
            rooms: [(None, "lobby"), (Some(0), "archive"), (Some(30), "ops")]
                .into_iter()
                .map(|(retention_days, name)| RoomInfo {
                    name: RoomId::parse(name).unwrap(),
                    private: false,
                    members: 0,
                    last_seq: Seq(7),
                    retention_days,
                })
                .collect(),
        },
        _ => AdminReply::Done,
    });
    let socket_arg = socket.to_str().unwrap();
    let output = run(&mut chatctl(&["--socket", socket_arg, "room", "list"]), "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "NAME     ACCESS  MEMBERS  LAST SEQ  RETENTION\n\
         lobby    public  -        7         default\n\
         archive  public  -        7         forever\n\
         ops      public  -        7         30 days\n"
    );
    peer.join().unwrap();

    for (days, expected, printed) in [
        ("30", Some(30), "ops now keeps 30 days of history\n"),
        ("forever", Some(0), "ops now keeps its history forever\n"),
        (
            "default",
            None,
            "ops now keeps history as long as the daemon's retention.days\n",
        ),
    ] {
        std::fs::remove_file(&socket).unwrap();
        let peer = admin_peer(&socket, |_| AdminReply::Done);
        let args = ["--socket", socket_arg, "room", "set-retention", "ops", days];
        let output = run(&mut chatctl(&args), "");
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(text(&output.stdout), printed);
        let requests = peer.join().unwrap();
        assert!(
            matches!(&requests[..], [AdminRequest::RoomSetRetention { room, days }]
                if room.as_str() == "ops" && *days == expected),
            "{requests:?}"
        );
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
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure here fails the test"
)]
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

#[test]
fn an_export_to_a_file_with_no_daemon_exits_3_and_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("chatd.sock");
    let file = dir.path().join("history.jsonl");
    let args = [
        "--socket",
        socket.to_str().unwrap(),
        "history",
        "export",
        "--output",
        file.to_str().unwrap(),
    ];
    let output = run(&mut chatctl(&args), "");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(!file.exists());
}
