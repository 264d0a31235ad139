//! The history export file format: one record per message with the fields `room`, `seq`,
//! `sender`, `body`, `ts` (RFC 3339, UTC, milliseconds) and `cmid`, in that order, written as
//! JSON lines (one object per line with exactly those keys) or as CSV (RFC 4180: a header row,
//! CRLF line ends, fields quoted when they hold a comma, a quote or a line break). JSON lines
//! are also what `chatctl history import` reads back.

use std::io::Write;

use protocol::{ClientMsgId, Message, RoomId, Seq, UserId};
use serde::{Deserialize, Serialize};

use crate::timestamp;

/// The CSV header row, and the order of the fields in both formats.
pub(crate) const FIELDS: [&str; 6] = ["room", "seq", "sender", "body", "ts", "cmid"];

/// One exported message as it appears in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportRecord {
    /// The room (`dm:a:b` for a direct conversation).
    pub(crate) room: RoomId,
    /// Position in the room.
    pub(crate) seq: Seq,
    /// Who sent it.
    pub(crate) sender: UserId,
    /// The text.
    pub(crate) body: String,
    /// Commit time, RFC 3339.
    pub(crate) ts: String,
    /// The sender's client message id; `null` when unknown.
    pub(crate) cmid: Option<ClientMsgId>,
}

impl ExportRecord {
    /// The record for a stored message.
    ///
    /// # Errors
    /// When its time cannot be written as RFC 3339.
    pub(crate) fn from_message(message: Message) -> Result<Self, String> {
        Ok(Self {
            ts: timestamp::format_ms(message.ts)?,
            room: message.room,
            seq: message.seq,
            sender: message.from,
            body: message.body,
            cmid: message.cmid,
        })
    }

    /// The message to import.
    ///
    /// # Errors
    /// A message naming the field that is wrong: `seq` 0, or a `ts` that is not RFC 3339 or
    /// is more precise than a millisecond.
    pub(crate) fn into_message(self) -> Result<Message, String> {
        if self.seq == Seq::ZERO {
            return Err("`seq` is 0, but sequence numbers start at 1".to_owned());
        }
        let ts = timestamp::parse_exact_ms(&self.ts).map_err(|error| format!("`ts`: {error}"))?;
        Ok(Message {
            room: self.room,
            seq: self.seq,
            from: self.sender,
            body: self.body,
            ts,
            cmid: self.cmid,
        })
    }
}

/// Parses one JSON line of an export into the message to import.
///
/// # Errors
/// What is wrong with the line, with the column for JSON errors.
pub(crate) fn parse_line(line: &[u8]) -> Result<Message, String> {
    // serde would also take a struct from a JSON array of its fields; a record is an object.
    if !line.starts_with(b"{") {
        return Err(format!("not a JSON object; each line must be {OBJECT}"));
    }
    let record: ExportRecord = serde_json::from_slice(line).map_err(|error| json_error(&error))?;
    record.into_message()
}

/// A JSON error without serde_json's "at line 1 column N" (each record is parsed alone, so
/// the line is the caller's to name).
fn json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let what = text.strip_suffix(&position).unwrap_or(&text);
    let what = what.replace("struct ExportRecord", OBJECT);
    if error.column() > 0 {
        format!("{what} (column {})", error.column())
    } else {
        what
    }
}

/// What a line of a JSON-lines export is, for error messages.
const OBJECT: &str = "an object with the keys room, seq, sender, body, ts, cmid";

/// Which file format an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line; what `chatctl history import` reads.
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// Writes records in one format to `out`, buffered.
pub(crate) enum RecordWriter<W: Write> {
    /// JSON lines.
    Jsonl(std::io::BufWriter<W>),
    /// CSV (boxed: the csv writer carries its configuration and state inline).
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> RecordWriter<W> {
    /// Starts a file of `format` on `out` (for CSV, writes the header row).
    ///
    /// # Errors
    /// When writing fails.
    pub(crate) fn new(format: Format, out: W) -> std::io::Result<Self> {
        Ok(match format {
            Format::Jsonl => Self::Jsonl(std::io::BufWriter::with_capacity(64 * 1024, out)),
            Format::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .buffer_capacity(64 * 1024)
                    .from_writer(out);
                writer.write_record(FIELDS).map_err(csv_error)?;
                Self::Csv(Box::new(writer))
            }
        })
    }

    /// Writes one record.
    ///
    /// # Errors
    /// When writing fails.
    pub(crate) fn write(&mut self, record: &ExportRecord) -> std::io::Result<()> {
        match self {
            Self::Jsonl(out) => {
                serde_json::to_writer(&mut *out, record)?;
                out.write_all(b"\n")
            }
            Self::Csv(out) => {
                let seq = record.seq.to_string();
                let cmid = record.cmid.as_ref().map_or("", ClientMsgId::as_str);
                out.write_record([
                    record.room.as_str(),
                    &seq,
                    record.sender.as_str(),
                    &record.body,
                    &record.ts,
                    cmid,
                ])
                .map_err(csv_error)
            }
        }
    }

    /// Writes out what is buffered.
    ///
    /// # Errors
    /// When writing fails.
    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Jsonl(out) => out.flush(),
            Self::Csv(out) => out.flush(),
        }
    }
}

/// The I/O error inside a csv error; the writer only fails on I/O with string fields.
fn csv_error(error: csv::Error) -> std::io::Error {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => error,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: &str, seq: u64, body: &str, cmid: Option<&str>) -> Message {
        Message {
            room: RoomId::parse(room).unwrap(),
            seq: Seq(seq),
            from: UserId::parse("alice").unwrap(),
            body: body.to_owned(),
            ts: 1_795_608_000_123,
            cmid: cmid.map(|id| ClientMsgId::parse(id).unwrap()),
        }
    }

    fn write_all(format: Format, messages: &[Message]) -> String {
        let mut out = Vec::new();
        let mut writer = RecordWriter::new(format, &mut out).unwrap();
        for message in messages {
            let record = ExportRecord::from_message(message.clone()).unwrap();
            writer.write(&record).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_lines_hold_exactly_the_six_keys_in_order() {
        let text = write_all(
            Format::Jsonl,
            &[
                message("lobby", 1, "hi, \"you\"\nthere", Some("c-1")),
                message("dm:alice:bob", 2, "ünïcødé ✓", None),
            ],
        );
        assert_eq!(
            text,
            "{\"room\":\"lobby\",\"seq\":1,\"sender\":\"alice\",\"body\":\"hi, \\\"you\\\"\\nthere\",\
             \"ts\":\"2026-11-25T12:00:00.123Z\",\"cmid\":\"c-1\"}\n\
             {\"room\":\"dm:alice:bob\",\"seq\":2,\"sender\":\"alice\",\"body\":\"ünïcødé ✓\",\
             \"ts\":\"2026-11-25T12:00:00.123Z\",\"cmid\":null}\n"
        );
    }

    #[test]
    fn csv_follows_rfc_4180() {
        let text = write_all(
            Format::Csv,
            &[
                message("lobby", 1, "a, \"b\"\r\nc", Some("c-1")),
                message("lobby", 2, "plain", None),
            ],
        );
        assert_eq!(
            text,
            "room,seq,sender,body,ts,cmid\r\n\
             lobby,1,alice,\"a, \"\"b\"\"\r\nc\",2026-11-25T12:00:00.123Z,c-1\r\n\
             lobby,2,alice,plain,2026-11-25T12:00:00.123Z,\r\n"
        );
    }

    #[test]
    fn a_written_line_parses_back_to_the_message() {
        let original = message("dm:alice:bob", 7, "x,\"y\"\n✓", Some("c-7"));
        let text = write_all(Format::Jsonl, std::slice::from_ref(&original));
        assert_eq!(parse_line(text.trim_end().as_bytes()), Ok(original));
        let without_cmid = message("lobby", 1, "", None);
        let text = write_all(Format::Jsonl, std::slice::from_ref(&without_cmid));
        assert_eq!(parse_line(text.trim_end().as_bytes()), Ok(without_cmid));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let line = |json: &str| parse_line(json.as_bytes()).unwrap_err();
        let valid =
            r#""room":"lobby","seq":1,"sender":"alice","body":"b","ts":"2026-11-25T12:00:00Z""#;
        assert_eq!(
            line(r#"{"room":"lobby","seq":1}"#),
            "missing field `sender` (column 24)"
        );
        assert!(line(&format!("{{{valid},\"extra\":1}}")).starts_with("unknown field `extra`"));
        assert!(line(&format!("{{{valid},\"cmid\":\"has space\"}}")).contains("client message id"));
        assert_eq!(
            line(&format!("{{{}}}", valid.replace("\"seq\":1", "\"seq\":0"))),
            "`seq` is 0, but sequence numbers start at 1"
        );
        assert!(line(&format!("{{{}}}", valid.replace("12:00:00Z", "noon"))).starts_with("`ts`: "));
        for not_an_object in ["[1,2]", "5", "\"text\""] {
            assert_eq!(
                line(not_an_object),
                "not a JSON object; each line must be an object with the keys room, seq, \
                 sender, body, ts, cmid"
            );
        }
        assert!(line("{\"room\":").starts_with("EOF while parsing"));
    }
}
