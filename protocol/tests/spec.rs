//! Keeps `docs/protocol.md` true: every JSON example in it decodes as the frame or admin
//! message it shows and re-encodes to the same JSON, every frame and admin message type has an
//! example, and the error-code, close-code and limit tables match the code.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chatd_protocol::admin::{AdminReply, AdminRequest};
use chatd_protocol::codec::DecodeError;
use chatd_protocol::limits::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_FRAME_BYTES, MAX_CLIENT_MSG_ID_BYTES, MAX_HISTORY_PAGE,
    MAX_REQUEST_ID_BYTES, MAX_ROOM_NAME_BYTES, MAX_USER_NAME_BYTES,
};
use chatd_protocol::{
    ClientFrame, CloseCode, ErrorCode, PROTOCOL_VERSION, ServerFrame, decode_client, decode_server,
    encode_client, encode_server,
};
use serde_json::Value;

use common::variant_names;

/// The `##` heading whose section holds the admin socket examples.
const ADMIN_SECTION: &str = "Admin socket";

#[test]
fn every_example_decodes_and_re_encodes_to_itself() {
    let spec = Spec::load();
    assert!(
        !spec.examples.is_empty(),
        "no ```json examples found in {}",
        spec.path.display()
    );
    let failures: Vec<String> = spec
        .examples
        .iter()
        .filter_map(|example| {
            check_example(example)
                .err()
                .map(|e| format!("line {}: {e}", example.line))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "bad examples in docs/protocol.md:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_frame_and_admin_message_has_an_example() {
    let spec = Spec::load();
    let mut covered: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
    // Broken examples are reported by the test above; here they simply cover nothing.
    for (kind, tag) in spec
        .examples
        .iter()
        .filter_map(|example| check_example(example).ok())
    {
        covered.entry(kind).or_default().insert(tag);
    }
    let expected = [
        (Kind::Client, variant_names::<ClientFrame>("type")),
        (Kind::Server, variant_names::<ServerFrame>("type")),
        (Kind::AdminRequest, variant_names::<AdminRequest>("op")),
        (Kind::AdminReply, variant_names::<AdminReply>("reply")),
    ];
    let mut missing = Vec::new();
    for (kind, names) in expected {
        assert!(!names.is_empty(), "no variant names read for {kind:?}");
        let have = covered.get(&kind).cloned().unwrap_or_default();
        missing.extend(
            names
                .into_iter()
                .filter(|name| !have.contains(*name))
                .map(|name| format!("{kind:?} `{name}`")),
        );
    }
    assert!(
        missing.is_empty(),
        "docs/protocol.md has no example for: {}",
        missing.join(", ")
    );
}

#[test]
fn error_code_table_lists_every_code_with_its_properties() {
    let spec = Spec::load();
    let rows = spec.numbered_rows("Error codes");
    for code in ErrorCode::ALL {
        let row = rows.get(&u32::from(code.number())).unwrap_or_else(|| {
            panic!(
                "error code {} `{}` is not in the table",
                code.number(),
                code
            )
        });
        assert_eq!(
            row[1],
            format!("`{}`", code.name()),
            "name of error code {}",
            code.number()
        );
        let retryable = if code.is_retryable() { "yes" } else { "no" };
        assert_eq!(row[3], retryable, "retryable column of `{code}`");
        let closes = &row[4];
        if let Some(close) = closes.strip_prefix("yes, ") {
            let number: u16 = close
                .parse()
                .unwrap_or_else(|_| panic!("`{code}` closes with {close}"));
            assert!(
                CloseCode::from_number(number).is_some(),
                "`{code}` closes with unknown {number}"
            );
        } else {
            assert_eq!(closes, "no", "closes column of `{code}`");
        }
    }
    for number in rows.keys() {
        let known = u16::try_from(*number).ok().and_then(ErrorCode::from_number);
        assert!(
            known.is_some(),
            "the error code table lists {number}, which is not a code"
        );
    }

    // The decoder's own failures say whether they close the connection; the table must agree.
    let failures = [
        DecodeError::TooLarge { len: 2, max: 1 },
        DecodeError::Malformed {
            detail: String::new(),
        },
        DecodeError::UnknownType {
            kind: String::new(),
            rid: None,
        },
        DecodeError::Invalid {
            kind: String::new(),
            detail: String::new(),
            rid: None,
        },
    ];
    for failure in failures {
        let row = &rows[&u32::from(failure.code().number())];
        assert_eq!(
            row[4].starts_with("yes"),
            failure.is_fatal(),
            "closes column of `{}` disagrees with the decoder",
            failure.code()
        );
    }
}

#[test]
fn close_code_table_lists_every_code() {
    let spec = Spec::load();
    let rows = spec.numbered_rows("Close codes");
    for code in CloseCode::ALL {
        let row = rows.get(&u32::from(code.number())).unwrap_or_else(|| {
            panic!(
                "close code {} `{}` is not in the table",
                code.number(),
                code
            )
        });
        assert_eq!(
            row[1],
            format!("`{}`", code.name()),
            "name of close code {}",
            code.number()
        );
    }
    for number in rows.keys() {
        let known = u16::try_from(*number).ok().and_then(CloseCode::from_number);
        assert!(
            known.is_some(),
            "the close code table lists {number}, which is not a code"
        );
    }
}

#[test]
fn limits_tables_match_the_protocol_constants() {
    let spec = Spec::load();
    let rows = spec.labelled_rows("Limits");
    let expected = [
        ("user name", MAX_USER_NAME_BYTES),
        ("ordinary room name", MAX_ROOM_NAME_BYTES),
        ("`cmid`", MAX_CLIENT_MSG_ID_BYTES),
        ("`rid`", MAX_REQUEST_ID_BYTES),
        (
            "history page (`limit`)",
            usize::try_from(MAX_HISTORY_PAGE).unwrap(),
        ),
        ("largest client frame", DEFAULT_MAX_FRAME_BYTES),
        ("longest message body", DEFAULT_MAX_BODY_BYTES),
        (
            "largest history page",
            usize::try_from(MAX_HISTORY_PAGE).unwrap(),
        ),
    ];
    for (label, value) in expected {
        let row = rows
            .get(label)
            .unwrap_or_else(|| panic!("no `{label}` row under Limits"));
        assert_eq!(
            leading_number(&row[1]),
            Some(value),
            "value of `{label}`: {:?}",
            row[1]
        );
    }
}

#[test]
fn hello_examples_speak_this_protocol_version() {
    let spec = Spec::load();
    assert!(spec.text.starts_with(&format!(
        "# chatd wire protocol, version {PROTOCOL_VERSION}\n"
    )));
    let mut hellos = 0;
    for example in spec.examples.iter().filter(|e| e.section != ADMIN_SECTION) {
        match decode_client(example.json.as_bytes(), usize::MAX) {
            Ok(ClientFrame::Hello { version, .. }) => {
                hellos += 1;
                assert_eq!(version, PROTOCOL_VERSION, "line {}", example.line);
            }
            _ => {
                if let Ok(ServerFrame::Hello { version, .. }) =
                    decode_server(example.json.as_bytes(), usize::MAX)
                {
                    hellos += 1;
                    assert_eq!(version, PROTOCOL_VERSION, "line {}", example.line);
                }
            }
        }
    }
    assert!(hellos >= 2, "expected client and server hello examples");
}

/// Which decoder accepted an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Client,
    Server,
    AdminRequest,
    AdminReply,
}

/// Decodes one example with the decoders its section calls for, checks that re-encoding gives
/// back the same value and the same JSON, and returns which kind it is and its tag.
fn check_example(example: &Example) -> Result<(Kind, String), String> {
    let written: Value = serde_json::from_str(&example.json)
        .map_err(|e| format!("not exactly one JSON value: {e}"))?;
    if !written.is_object() {
        return Err("not a JSON object".to_owned());
    }
    let (kind, encoded) = if example.section == ADMIN_SECTION {
        decode_admin(&example.json)?
    } else {
        decode_frame(&example.json)?
    };
    let encoded: Value = serde_json::from_slice(&encoded).map_err(|e| e.to_string())?;
    if encoded != written {
        return Err(format!(
            "the example is not what the encoder writes (a null, a default or a misspelt \
             field?)\n  doc:     {written}\n  encoded: {encoded}"
        ));
    }
    let tag_field = match kind {
        Kind::Client | Kind::Server => "type",
        Kind::AdminRequest => "op",
        Kind::AdminReply => "reply",
    };
    let tag = encoded[tag_field].as_str().unwrap_or_default().to_owned();
    Ok((kind, tag))
}

/// Tries the example as a client frame, then as a server frame.
fn decode_frame(json: &str) -> Result<(Kind, Vec<u8>), String> {
    let client_error = match decode_client(json.as_bytes(), DEFAULT_MAX_FRAME_BYTES) {
        Ok(frame) => {
            let encoded = encode_client(&frame);
            if decode_client(&encoded, DEFAULT_MAX_FRAME_BYTES).as_ref() != Ok(&frame) {
                return Err("client frame changed on re-encode".to_owned());
            }
            return Ok((Kind::Client, encoded.to_vec()));
        }
        Err(error) => error,
    };
    let frame = decode_server(json.as_bytes(), usize::MAX).map_err(|server_error| {
        format!("neither a client frame ({client_error}) nor a server frame ({server_error})")
    })?;
    if let ServerFrame::Error { code, number, .. } = &frame
        && *number != code.number()
    {
        return Err(format!("`number` {number} does not match `code` {code}"));
    }
    let encoded = encode_server(&frame);
    if decode_server(&encoded, usize::MAX).as_ref() != Ok(&frame) {
        return Err("server frame changed on re-encode".to_owned());
    }
    Ok((Kind::Server, encoded.to_vec()))
}

/// Tries the example as an admin request, then as an admin reply.
fn decode_admin(json: &str) -> Result<(Kind, Vec<u8>), String> {
    let request_error = match serde_json::from_str::<AdminRequest>(json) {
        Ok(request) => {
            let encoded = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
            if serde_json::from_slice::<AdminRequest>(&encoded)
                .ok()
                .as_ref()
                != Some(&request)
            {
                return Err("admin request changed on re-encode".to_owned());
            }
            return Ok((Kind::AdminRequest, encoded));
        }
        Err(error) => error,
    };
    let reply = serde_json::from_str::<AdminReply>(json).map_err(|reply_error| {
        format!("neither an admin request ({request_error}) nor an admin reply ({reply_error})")
    })?;
    let encoded = serde_json::to_vec(&reply).map_err(|e| e.to_string())?;
    if serde_json::from_slice::<AdminReply>(&encoded).ok().as_ref() != Some(&reply) {
        return Err("admin reply changed on re-encode".to_owned());
    }
    Ok((Kind::AdminReply, encoded))
}

/// The parsed document.
struct Spec {
    path: PathBuf,
    text: String,
    examples: Vec<Example>,
}

/// One ```json fenced block.
struct Example {
    /// 1-based line of the opening fence, for failure messages.
    line: usize,
    /// The `##` heading the block sits under.
    section: String,
    json: String,
}

impl Spec {
    fn load() -> Self {
        let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let examples = json_blocks(&text);
        Self {
            path,
            text,
            examples,
        }
    }

    /// The lines of the `##` section named `section`.
    fn section(&self, section: &str) -> Vec<&str> {
        let heading = format!("## {section}");
        let mut lines = self.text.lines().skip_while(|line| *line != heading);
        assert!(lines.next().is_some(), "no `{heading}` section");
        lines.take_while(|line| !line.starts_with("## ")).collect()
    }

    /// Table rows of a section keyed by their first cell, when that cell is a number.
    fn numbered_rows(&self, section: &str) -> BTreeMap<u32, Vec<String>> {
        let mut rows = BTreeMap::new();
        for cells in table_rows(&self.section(section)) {
            if let Ok(number) = cells[0].parse::<u32>() {
                let previous = rows.insert(number, cells);
                assert!(
                    previous.is_none(),
                    "{section}: number {number} is listed twice"
                );
            }
        }
        assert!(!rows.is_empty(), "{section}: no numbered table rows");
        rows
    }

    /// Table rows of a section keyed by their first cell.
    fn labelled_rows(&self, section: &str) -> BTreeMap<String, Vec<String>> {
        table_rows(&self.section(section))
            .map(|cells| (cells[0].clone(), cells))
            .collect()
    }
}

/// Every ```json block with its line and section. Fences may be indented (inside list items).
fn json_blocks(text: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut section = String::new();
    let mut open: Option<(usize, bool, Vec<&str>)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        match open.as_mut() {
            Some((start, is_json, body)) => {
                if trimmed == "```" {
                    if *is_json {
                        examples.push(Example {
                            line: *start,
                            section: section.clone(),
                            json: body.join("\n"),
                        });
                    }
                    open = None;
                } else {
                    body.push(line);
                }
            }
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((index + 1, info.trim() == "json", Vec::new()));
                } else if let Some(heading) = line.strip_prefix("## ") {
                    heading.trim().clone_into(&mut section);
                }
            }
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    examples
}

/// The cells of every table row (not header or separator rows) among `lines`.
fn table_rows<'a>(lines: &'a [&'a str]) -> impl Iterator<Item = Vec<String>> + 'a {
    lines
        .iter()
        .filter(|line| line.starts_with('|') && !line.starts_with("| ---"))
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect::<Vec<_>>()
        })
}

/// The integer a cell starts with, e.g. 32768 for "32768 bytes".
fn leading_number(cell: &str) -> Option<usize> {
    let digits: String = cell.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
