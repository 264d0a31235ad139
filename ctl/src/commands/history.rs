//! `chatctl history export` and `chatctl history import`.
//!
//! Export reads the daemon's `export_page` lines one at a time and writes each page's records
//! before reading the next line, so memory stays at one page and a slow destination slows the
//! daemon down through the socket instead of piling up in either process.
//!
//! Import reads the JSON-lines file one line at a time and sends `history_import` batches of
//! at most [`BATCH_MESSAGES`] messages, waiting for each answer before reading on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read as _, Write};
use std::path::Path;

use protocol::Message;
use protocol::admin::{AdminReply, AdminRequest, MAX_REQUEST_BYTES};

use super::{Hints, check, unexpected};
use crate::admin_client::{Admin, ReplyStream};
use crate::cli::ExportArgs;
use crate::failure::Failure;
use crate::output::Output;
use crate::progress::Progress;
use crate::record::{self, ExportRecord, Format, RecordWriter};

/// Messages per `history_import` request: big enough that the round trip per batch is
/// small next to storing it, small enough that one batch is one short transaction.
const BATCH_MESSAGES: usize = 500;

/// Bytes of JSON lines per `history_import` request before it is sent even with fewer than
/// [`BATCH_MESSAGES`] messages: a quarter of the daemon's request limit, so a batch plus one
/// line of up to [`MAX_LINE_BYTES`] always fits. (A message's request encoding is never
/// longer than its line: `from` and a numeric `ts` are shorter than `sender` and RFC 3339.)
const BATCH_BYTES: usize = MAX_REQUEST_BYTES / 4;

/// Longest line an import accepts, so that a batch holding it stays below the daemon's
/// request limit.
const MAX_LINE_BYTES: usize = MAX_REQUEST_BYTES / 2;

/// Runs `chatctl history export` against the admin socket at `socket`.
pub(super) async fn export(socket: &Path, args: ExportArgs) -> Result<(), Failure> {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        return Err(Failure::Usage(
            "--since must be before --until (--until is exclusive); nothing was exported"
                .to_owned(),
        ));
    }
    let request = AdminRequest::HistoryExport {
        rooms: args.rooms,
        since_ms: args.since,
        until_ms: args.until,
    };
    // Connected before the output file is created, so an unreachable daemon leaves no file.
    let replies = ReplyStream::open(socket, &request).await?;
    let Some(path) = args.output else {
        let stdout = std::io::stdout().lock();
        return stream_export(replies, args.format, stdout, "standard output")
            .await
            .map(drop);
    };
    let file = File::create(&path)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", path.display())))?;
    let destination = path.display().to_string();
    let written = stream_export(replies, args.format, &file, &destination).await;
    let synced = written.and_then(|_| {
        // On disk before chatctl reports success, so a crash right after cannot leave a
        // short file behind a successful exit.
        file.sync_all()
            .map_err(|e| Failure::Local(format!("cannot flush {destination} to disk: {e}")))
    });
    if let Err(failure) = synced {
        drop(file);
        // A partial export must not be mistaken for a whole one.
        let note = match std::fs::remove_file(&path) {
            Ok(()) => format!(" — {destination} was removed"),
            Err(e) => format!(" — {destination} is incomplete and could not be removed ({e})"),
        };
        return Err(failure.with_note(&note));
    }
    sync_directory(&path);
    Ok(())
}

/// Reads the export's answer from `replies` and writes each message as a record of `format` to
/// `out`; returns how many were written. `destination` names `out` in messages.
async fn stream_export(
    mut replies: ReplyStream,
    format: Format,
    out: impl Write,
    destination: &str,
) -> Result<u64, Failure> {
    let write_failed = |written: u64, error: std::io::Error| {
        Failure::Local(format!(
            "cannot write to {destination} after {written} messages: {error}"
        ))
    };
    let mut writer = RecordWriter::new(format, out).map_err(|e| write_failed(0, e))?;
    let mut progress = Progress::on_terminal("exported");
    let mut written: u64 = 0;
    let incomplete = |failure: Failure, written: u64| {
        if written == 0 {
            failure
        } else {
            failure.with_note(&format!(
                " (after {written} messages; the export is incomplete)"
            ))
        }
    };
    loop {
        let reply = replies.next().await.map_err(|f| incomplete(f, written))?;
        match check(reply, export_hints()).map_err(|f| incomplete(f, written))? {
            AdminReply::ExportPage { messages } => {
                for message in messages {
                    let (room, seq) = (message.room.clone(), message.seq);
                    let record = ExportRecord::from_message(message).map_err(|error| {
                        incomplete(
                            Failure::Daemon(format!("message {seq} of {room}: {error}")),
                            written,
                        )
                    })?;
                    writer
                        .write(&record)
                        .map_err(|e| write_failed(written, e))?;
                    written += 1;
                }
                progress.update(written);
            }
            AdminReply::ExportDone { count } if count == written => break,
            AdminReply::ExportDone { count } => {
                return Err(Failure::Daemon(format!(
                    "chatd reported {count} exported messages but sent {written}; the export \
                     is incomplete — see the daemon's log"
                )));
            }
            other => return Err(incomplete(unexpected("history_export", &other), written)),
        }
    }
    writer.flush().map_err(|e| write_failed(written, e))?;
    progress.finish(written);
    Ok(written)
}

fn export_hints() -> Hints {
    Hints {
        not_found: "list rooms with `chatctl room list`; direct rooms are named dm:USER:USER",
        already_exists: "",
    }
}

/// Makes the new file's directory entry durable too. Best effort: the data itself is already
/// on disk, and some file systems refuse to sync a directory.
fn sync_directory(path: &Path) {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let Ok(directory) = File::open(directory) {
        let _ = directory.sync_all();
    }
}

/// Runs `chatctl history import FILE` (`-` for standard input) over `admin`.
pub(super) async fn import(admin: &mut Admin, output: Output, file: &Path) -> Result<(), Failure> {
    let (mut input, name): (Box<dyn BufRead>, String) = if file == Path::new("-") {
        (
            Box::new(std::io::stdin().lock()),
            "standard input".to_owned(),
        )
    } else {
        let opened = File::open(file)
            .map_err(|e| Failure::Usage(format!("cannot open {}: {e}", file.display())))?;
        let reader = BufReader::with_capacity(256 * 1024, opened);
        (Box::new(reader), file.display().to_string())
    };
    let mut importer = Importer::new(admin);
    let mut line = Vec::new();
    let mut number: u64 = 0;
    loop {
        line.clear();
        number += 1;
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX);
        let read = match (&mut input).take(limit + 1).read_until(b'\n', &mut line) {
            Ok(read) => read,
            Err(e) => {
                return Err(importer
                    .stop_at(&name, number, &format!("cannot read: {e}"))
                    .await);
            }
        };
        if read == 0 {
            break;
        }
        if !line.ends_with(b"\n") && line.len() > MAX_LINE_BYTES {
            let what = format!("the line is longer than {MAX_LINE_BYTES} bytes");
            return Err(importer.stop_at(&name, number, &what).await);
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match record::parse_line(text) {
            Ok(message) => importer.push(message, text.len(), number).await?,
            Err(what) => return Err(importer.stop_at(&name, number, &what).await),
        }
    }
    importer.send().await?;
    importer
        .progress
        .finish(importer.inserted + importer.skipped);
    let (inserted, skipped) = (importer.inserted, importer.skipped);
    output.print(&AdminReply::Imported { inserted, skipped }, || {
        let total = inserted + skipped;
        let plural = if total == 1 { "" } else { "s" };
        format!(
            "read {total} message{plural} from {name}: {inserted} imported, {skipped} already \
             stored (skipped)"
        )
    });
    Ok(())
}

/// The batch being filled and what earlier batches stored.
struct Importer<'a> {
    admin: &'a mut Admin,
    batch: Vec<Message>,
    batch_bytes: usize,
    /// The line of the batch's first message.
    batch_from_line: u64,
    inserted: u64,
    skipped: u64,
    progress: Progress,
}

impl<'a> Importer<'a> {
    fn new(admin: &'a mut Admin) -> Self {
        Self {
            admin,
            batch: Vec::with_capacity(BATCH_MESSAGES),
            batch_bytes: 0,
            batch_from_line: 0,
            inserted: 0,
            skipped: 0,
            progress: Progress::on_terminal("imported"),
        }
    }

    /// Adds the message read from line `number` (`bytes` long), sending the batch when it is
    /// full.
    async fn push(&mut self, message: Message, bytes: usize, number: u64) -> Result<(), Failure> {
        if self.batch_bytes + bytes > BATCH_BYTES {
            self.send().await?;
        }
        if self.batch.is_empty() {
            self.batch_from_line = number;
        }
        self.batch.push(message);
        self.batch_bytes += bytes;
        if self.batch.len() >= BATCH_MESSAGES {
            self.send().await?;
        }
        Ok(())
    }

    /// Sends the batch, if any, and adds up the answer.
    async fn send(&mut self) -> Result<(), Failure> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let request = AdminRequest::HistoryImport {
            messages: std::mem::take(&mut self.batch),
        };
        self.batch_bytes = 0;
        let from_line = self.batch_from_line;
        let hints = Hints {
            not_found: "",
            already_exists: "",
        };
        let reply = self
            .admin
            .request(&request)
            .await
            .and_then(|reply| check(reply, hints))
            .map_err(|failure| self.stopped_before(from_line, failure))?;
        let AdminReply::Imported { inserted, skipped } = reply else {
            return Err(self.stopped_before(from_line, unexpected("history_import", &reply)));
        };
        self.inserted += inserted;
        self.skipped += skipped;
        self.progress.update(self.inserted + self.skipped);
        Ok(())
    }

    /// The failure for bad line `number` of `name`, after sending the messages before it.
    async fn stop_at(&mut self, name: &str, number: u64, what: &str) -> Failure {
        if let Err(failure) = self.send().await {
            return failure;
        }
        self.stopped_before(
            number,
            Failure::Usage(format!("{name}, line {number}: {what}")),
        )
    }

    /// `failure` with a note on what was imported: everything before line `number`, nothing
    /// from it on.
    fn stopped_before(&self, number: u64, failure: Failure) -> Failure {
        let done = self.inserted + self.skipped;
        let note = if done == 0 {
            " — nothing was imported".to_owned()
        } else {
            format!(
                " — nothing from line {number} on was imported; the {done} messages before it \
                 were (importing again skips what is already stored, so fix the problem and \
                 import the whole file again)"
            )
        };
        failure.with_note(&note)
    }
}
