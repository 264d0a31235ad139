//! `chatctl history export` and `chatctl history import` against real daemons: every field of
//! every message in both formats, read back with standard JSON and CSV readers, in
//! `(room, seq)` order, with the room and time filters; an import into a fresh daemon exports
//! byte for byte what was imported, and importing again stores nothing. The ignored
//! `stress_export_million` shows that memory stays flat from 100 000 to 1 000 000 messages.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chatd::store::{Store, StoreSettings};
use chatd_tests::TestDaemon;
use chatd_tests::binaries::binary;
use chatd_tests::wait::until;
use protocol::client::Client;
use protocol::{ClientMsgId, Message, RoomId, Seq};
use tokio::io::AsyncReadExt as _;

use crate::support::{cmid, login, room, user};

/// The record fields, in the order both formats write them.
const FIELDS: [&str; 6] = ["room", "seq", "sender", "body", "ts", "cmid"];

#[tokio::test]
async fn export_writes_every_field_in_room_seq_order_as_json_lines_and_csv() {
    let (daemon, sent) = daemon_with_history().await;
    let expected = in_export_order(sent.clone());
    assert_ne!(
        expected, sent,
        "the sends interleave rooms, so the order is the export's"
    );

    let jsonl = export(&daemon, &[]).await;
    check_json_lines(&jsonl, &expected);
    let csv = export(&daemon, &["--format", "csv"]).await;
    assert!(csv.starts_with("room,seq,sender,body,ts,cmid\r\n"), "{csv}");
    check_csv(&csv, &expected);

    // --output writes the same bytes to a file, and nothing to stdout or (no terminal) stderr.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.csv");
    let (code, out, err) = daemon
        .chatctl(
            &[
                "history",
                "export",
                "--format",
                "csv",
                "--output",
                path(&file),
            ],
            "",
        )
        .await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), csv);
}

#[tokio::test]
async fn export_filters_by_room_and_time() {
    let (daemon, sent) = daemon_with_history().await;
    let expected = in_export_order(sent.clone());

    let rooms = ["lobby", "dm:alice:bob"];
    let only: Vec<Message> = expected
        .iter()
        .filter(|m| rooms.contains(&m.room.as_str()))
        .cloned()
        .collect();
    assert!(only.iter().any(|m| m.room.is_direct()));
    let text = export(&daemon, &["--room", "lobby", "--room", "dm:alice:bob"]).await;
    check_json_lines(&text, &only);

    // The fifth send's time splits the history: --since is inclusive, --until exclusive.
    let pivot = sent[4].ts;
    let since = rfc3339(pivot);
    let after: Vec<Message> = expected.iter().filter(|m| m.ts >= pivot).cloned().collect();
    let before: Vec<Message> = expected.iter().filter(|m| m.ts < pivot).cloned().collect();
    assert!(!after.is_empty() && !before.is_empty());
    check_json_lines(&export(&daemon, &["--since", &since]).await, &after);
    check_json_lines(&export(&daemon, &["--until", &since]).await, &before);
    let first = rfc3339(sent[0].ts);
    let between: Vec<Message> = before
        .iter()
        .filter(|m| m.ts >= sent[0].ts)
        .cloned()
        .collect();
    let text = export(
        &daemon,
        &["--since", &first, "--until", &since, "--format", "csv"],
    )
    .await;
    check_csv(&text, &between);
    let lobby_after: Vec<Message> = after
        .iter()
        .filter(|m| m.room.as_str() == "lobby")
        .cloned()
        .collect();
    check_json_lines(
        &export(&daemon, &["--room", "lobby", "--since", &since]).await,
        &lobby_after,
    );

    // A plain date is midnight UTC.
    check_json_lines(
        &export(&daemon, &["--since", "2000-01-01"]).await,
        &expected,
    );
    assert_eq!(export(&daemon, &["--until", "2000-01-01"]).await, "");
    assert_eq!(
        export(&daemon, &["--until", "2000-01-01", "--format", "csv"]).await,
        "room,seq,sender,body,ts,cmid\r\n"
    );
}

#[tokio::test]
async fn export_refuses_unknown_rooms_and_empty_time_ranges() {
    let (daemon, _) = daemon_with_history().await;
    let (code, out, err) = daemon
        .chatctl(
            &["history", "export", "--room", "lobby", "--room", "nosuch"],
            "",
        )
        .await;
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err,
        "chatctl: no room `nosuch` — list rooms with `chatctl room list`; direct rooms are \
         named dm:USER:USER\n"
    );
    let (code, _, err) = daemon
        .chatctl(
            &[
                "history",
                "export",
                "--since",
                "2026-01-02",
                "--until",
                "2026-01-01",
            ],
            "",
        )
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--since must be before --until"), "{err}");
}

#[tokio::test]
async fn an_import_into_a_fresh_daemon_exports_the_same_bytes_and_twice_stores_once() {
    let (daemon, sent) = daemon_with_history().await;
    let jsonl = export(&daemon, &[]).await;
    let csv = export(&daemon, &["--format", "csv"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, &jsonl).unwrap();

    let fresh = TestDaemon::start().await;
    let count = sent.len();
    let (code, out, err) = fresh
        .chatctl(&["--json", "history", "import", path(&file)], "")
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("{{\"reply\":\"imported\",\"inserted\":{count},\"skipped\":0}}\n")
    );
    assert_eq!(export(&fresh, &[]).await, jsonl);
    assert_eq!(export(&fresh, &["--format", "csv"]).await, csv);

    let (code, out, err) = fresh.chatctl(&["history", "import", "-"], &jsonl).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "read {count} messages from standard input: 0 imported, {count} already stored \
             (skipped)\n"
        )
    );
    assert_eq!(export(&fresh, &[]).await, jsonl);

    // Imported rooms continue after their imported messages.
    let (code, out, _) = fresh.chatctl(&["--json", "room", "list"], "").await;
    assert_eq!(code, 0);
    let rooms: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lobby = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lobby")
        .unwrap();
    let lobby_last = sent.iter().filter(|m| m.room.as_str() == "lobby").count();
    assert_eq!(lobby["last_seq"], lobby_last);
}

#[tokio::test]
async fn a_bad_line_stops_the_import_there_and_says_what_is_wrong() {
    let (daemon, _) = daemon_with_history().await;
    let jsonl = export(&daemon, &[]).await;
    let lines: Vec<&str> = jsonl.lines().collect();
    let input = format!(
        "{}\n{}\n\n{{\"room\":\"lobby\",\"seq\":9}}\n{}\n",
        lines[0], lines[1], lines[2]
    );

    let fresh = TestDaemon::start().await;
    let (code, out, err) = fresh.chatctl(&["history", "import", "-"], &input).await;
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(
        err,
        "chatctl: standard input, line 4: missing field `sender` (column 24) — nothing from \
         line 4 on was imported; the 2 messages before it were (importing again skips what is \
         already stored, so fix the problem and import the whole file again)\n"
    );
    assert_eq!(
        export(&fresh, &[]).await,
        format!("{}\n{}\n", lines[0], lines[1])
    );

    let (code, _, err) = fresh
        .chatctl(&["history", "import", "/nonexistent/history.jsonl"], "")
        .await;
    assert_eq!(code, 2);
    assert!(
        err.starts_with("chatctl: cannot open /nonexistent/history.jsonl: "),
        "{err}"
    );
}

/// A daemon where alice and bob wrote to three rooms and to each other, with bodies that
/// need quoting or escaping in CSV and JSON; returns the messages in the order they were sent.
async fn daemon_with_history() -> (TestDaemon, Vec<Message>) {
    let daemon = TestDaemon::start().await;
    daemon.add_user("alice", "pw-a").await;
    daemon.add_user("bob", "pw-b").await;
    for name in ["zeta", "lobby", "alpha"] {
        daemon.create_room(name, false).await;
    }
    let alice = login(daemon.url(), "alice", "pw-a").await;
    let bob = login(daemon.url(), "bob", "pw-b").await;
    for name in ["zeta", "lobby", "alpha"] {
        alice.join(&room(name), None).await.unwrap();
        bob.join(&room(name), None).await.unwrap();
    }
    let script: [(&Client, &str, &str, &str); 9] = [
        (&alice, "alice", "lobby", "hello, world"),
        (&bob, "bob", "zeta", "she said \"hi\""),
        (&alice, "alice", "@bob", "private: line one\nline two"),
        (&bob, "bob", "lobby", "ünïcødé ✓ 日本語 🎉"),
        (&alice, "alice", "alpha", "a,b,\"c\"\r\nd"),
        (&bob, "bob", "@alice", "reply, with a comma"),
        (&alice, "alice", "lobby", "  spaces\tand a tab "),
        (&bob, "bob", "zeta", "=1+2"),
        (&alice, "alice", "alpha", "last"),
    ];
    let mut sent = Vec::new();
    for (index, (client, sender, target, body)) in script.into_iter().enumerate() {
        let id = cmid(&format!("{sender}-{index}"));
        let acked = match target.strip_prefix('@') {
            Some(to) => client.direct(&user(to), &id, body).await.unwrap(),
            None => client.send(&room(target), &id, body).await.unwrap(),
        };
        sent.push(Message {
            room: acked.room,
            seq: acked.seq,
            from: user(sender),
            body: body.to_owned(),
            ts: acked.ts,
            cmid: Some(acked.cmid),
        });
    }
    (daemon, sent)
}

/// Runs `chatctl history export ARGS` and returns its standard output, asserting success and
/// a quiet stderr (not a terminal).
async fn export(daemon: &TestDaemon, args: &[&str]) -> String {
    let mut command = vec!["history", "export"];
    command.extend_from_slice(args);
    let (code, out, err) = daemon.chatctl(&command, "").await;
    assert_eq!((code, err.as_str()), (0, ""), "chatctl {command:?}");
    out
}

fn in_export_order(mut messages: Vec<Message>) -> Vec<Message> {
    messages.sort_by(|a, b| (a.room.as_str(), a.seq).cmp(&(b.room.as_str(), b.seq)));
    messages
}

fn check_json_lines(text: &str, expected: &[Message]) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, message) in lines.into_iter().zip(expected) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let object = value.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["body", "cmid", "room", "sender", "seq", "ts"],
            "{line}"
        );
        // The keys come in record order.
        let positions: Vec<usize> = FIELDS
            .iter()
            .map(|key| line.find(&format!("\"{key}\":")).unwrap())
            .collect();
        assert!(positions.is_sorted(), "{line}");
        assert_eq!(object["room"], message.room.as_str());
        assert_eq!(object["seq"], message.seq.0);
        assert_eq!(object["sender"], message.from.as_str());
        assert_eq!(object["body"], message.body.as_str());
        assert_eq!(object["ts"], rfc3339(message.ts));
        assert_eq!(object["cmid"], message.cmid.as_ref().unwrap().as_str());
    }
}

fn check_csv(text: &str, expected: &[Message]) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap(), &FIELDS[..]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), expected.len(), "{text}");
    for (row, message) in rows.iter().zip(expected) {
        let seq = message.seq.to_string();
        let ts = rfc3339(message.ts);
        let fields = [
            message.room.as_str(),
            &seq,
            message.from.as_str(),
            &message.body,
            &ts,
            message.cmid.as_ref().unwrap().as_str(),
        ];
        assert_eq!(row, &fields[..]);
    }
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`, computed here rather than by the code
/// under test.
fn rfc3339(ms: i64) -> String {
    let (days, of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

#[test]
fn the_reference_formatter_is_right() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_795_608_000_123), "2026-11-25T12:00:00.123Z");
    assert_eq!(rfc3339(951_782_400_001), "2000-02-29T00:00:00.001Z");
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Fills one store with 100 000 messages and another with 1 000 000, then exports each with a
/// fresh `chatd` process and the `chatctl` process, sampling both processes' memory. Run in
/// release:
/// `cargo test --release -p chatd-tests --test it stress_export_million -- --ignored --nocapture`
#[tokio::test]
#[ignore = "takes a minute and a GiB of disk; run in release with --ignored --nocapture"]
async fn stress_export_million() {
    const ROOMS: u64 = 10;
    let mut runs = Vec::new();
    for per_room in [10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let filled = Instant::now();
        fill(dir.path(), ROOMS, per_room).await;
        println!(
            "filled {} messages in {:.1} s",
            ROOMS * per_room,
            filled.elapsed().as_secs_f64()
        );
        let run = measure_export(dir.path(), &[]).await;
        println!("{run}");
        assert_eq!(run.records, ROOMS * per_room);
        runs.push(run);
    }
    let [small, large] = &runs[..] else {
        unreachable!("two runs")
    };
    // Flat: ten times the messages may not cost noticeably more memory on either side.
    let flat = |small: u64, large: u64| large <= small + small / 4 + 4 * 1024;
    assert!(
        flat(small.daemon_peak_kib, large.daemon_peak_kib),
        "chatd: {small} vs {large}"
    );
    assert!(
        flat(small.chatctl_peak_kib, large.chatctl_peak_kib),
        "chatctl: {small} vs {large}"
    );
}

/// Stores `rooms` × `per_room` messages (rooms `r0`, `r1`, ...) in the SQLite file chatd
/// uses in `dir`, through the store's import path.
async fn fill(dir: &Path, rooms: u64, per_room: u64) {
    const BATCH: u64 = 10_000;
    let url = format!("sqlite://{}?mode=rwc", dir.join("chatd.db").display());
    let store = Store::open(&StoreSettings::new(url, 2)).await.unwrap();
    let sender = user("alice");
    for room_number in 0..rooms {
        let room_id = RoomId::parse(&format!("r{room_number}")).unwrap();
        for start in (1..=per_room).step_by(usize::try_from(BATCH).unwrap()) {
            let batch: Vec<Message> = (start..(start + BATCH).min(per_room + 1))
                .map(|seq| Message {
                    room: room_id.clone(),
                    seq: Seq(seq),
                    from: sender.clone(),
                    body: format!(
                        "message {seq} of {room_id}: lorem ipsum dolor sit amet, \"quoted\", ünï"
                    ),
                    ts: 1_767_225_600_000 + i64::try_from(seq).unwrap() * 10,
                    cmid: Some(ClientMsgId::parse(&format!("m-{seq}")).unwrap()),
                })
                .collect();
            let outcome = store.import_batch(&batch).await.unwrap();
            assert_eq!(outcome.inserted, u64::try_from(batch.len()).unwrap());
        }
    }
}

/// One measured export.
struct ExportRun {
    records: u64,
    bytes: u64,
    secs: f64,
    daemon_start_kib: u64,
    daemon_peak_kib: u64,
    chatctl_peak_kib: u64,
}

impl std::fmt::Display for ExportRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A rate for display; counts are far below 2^52.
        let rate = self.records as f64 / self.secs;
        write!(
            f,
            "export of {:>9} messages ({:>4} MiB): {:>6.2} s ({:>7.0} messages/s); chatd peak \
             RSS {:>6} KiB (at start {} KiB), chatctl peak RSS {:>6} KiB",
            self.records,
            self.bytes / (1024 * 1024),
            self.secs,
            rate,
            self.daemon_peak_kib,
            self.daemon_start_kib,
            self.chatctl_peak_kib
        )
    }
}

/// Starts a `chatd` process on `dir`, runs `chatctl history export ARGS` as a process reading
/// its standard output here, samples both processes' memory until chatctl exits, and stops
/// chatd.
async fn measure_export(dir: &Path, args: &[&str]) -> ExportRun {
    let socket = dir.join("chatd.sock");
    let mut daemon = tokio::process::Command::new(binary("chatd"))
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .env_remove("CHATD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let daemon_pid = daemon.id().unwrap();
    until("chatd's admin socket", Duration::from_secs(60), || async {
        tokio::net::UnixStream::connect(&socket)
            .await
            .ok()
            .map(drop)
    })
    .await;
    let daemon_start_kib = memory(daemon_pid).unwrap().rss_kib;

    let started = Instant::now();
    let mut chatctl = tokio::process::Command::new(binary("chatctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["history", "export"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let chatctl_pid = chatctl.id().unwrap();
    let mut stdout = chatctl.stdout.take().unwrap();
    let counter = tokio::spawn(async move {
        let (mut records, mut bytes) = (0_u64, 0_u64);
        let mut buffer = vec![0; 256 * 1024];
        loop {
            let read = stdout.read(&mut buffer).await.unwrap();
            if read == 0 {
                return (records, bytes);
            }
            bytes += u64::try_from(read).unwrap();
            records +=
                u64::try_from(buffer[..read].iter().filter(|&&b| b == b'\n').count()).unwrap();
        }
    });
    let (mut daemon_peak_kib, mut chatctl_peak_kib) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(sample) = memory(chatctl_pid) {
            chatctl_peak_kib = chatctl_peak_kib.max(sample.hwm_kib);
        }
        if let Some(sample) = memory(daemon_pid) {
            daemon_peak_kib = daemon_peak_kib.max(sample.hwm_kib);
        }
        if let Some(status) = chatctl.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the export took over 10 minutes");
        // A sampling interval, not a wait for an event: the loop ends when chatctl exits.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    let mut stderr = String::new();
    chatctl
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "chatctl failed: {stderr}");
    let (records, bytes) = counter.await.unwrap();
    if let Some(sample) = memory(daemon_pid) {
        daemon_peak_kib = daemon_peak_kib.max(sample.hwm_kib);
    }

    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &daemon_pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let exit = tokio::time::timeout(Duration::from_secs(60), daemon.wait())
        .await
        .expect("chatd stops within a minute of SIGTERM")
        .unwrap();
    assert!(exit.success(), "chatd exited with {exit}");
    ExportRun {
        records,
        bytes,
        secs,
        daemon_start_kib,
        daemon_peak_kib,
        chatctl_peak_kib,
    }
}

/// A process's resident memory now and at its peak.
struct MemorySample {
    rss_kib: u64,
    hwm_kib: u64,
}

/// `VmRSS` and `VmHWM` from `/proc/<pid>/status`; `None` once the process has exited.
fn memory(pid: u32) -> Option<MemorySample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    };
    Some(MemorySample {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}
