//! Property tests of the codec: every valid frame survives encode → decode unchanged, the
//! decoders never panic on hostile input and classify what they refuse, and oversized input is
//! refused before it is parsed.

mod common;

use std::collections::BTreeSet;

use chatd_protocol::limits::{
    MAX_CLIENT_MSG_ID_BYTES, MAX_REQUEST_ID_BYTES, MAX_ROOM_NAME_BYTES, MAX_USER_NAME_BYTES,
};
use chatd_protocol::{
    Base64Bytes, ClientFrame, ClientMsgId, DecodeError, ErrorCode, Limits, Message, PresenceState,
    RequestId, RoomId, Seq, ServerFrame, UserId, decode_client, decode_server, encode_client,
    encode_server,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value};

use common::variant_names;

/// A decode limit no test input reaches, for tests that are not about size.
const NO_LIMIT: usize = usize::MAX;

proptest! {
    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        let bytes = encode_client(&frame);
        prop_assert_eq!(decode_client(&bytes, NO_LIMIT), Ok(frame));
        // Re-encoding the decoded frame gives the same bytes: the encoding is canonical.
        prop_assert_eq!(encode_client(&decode_client(&bytes, NO_LIMIT).unwrap()), bytes);
    }

    #[test]
    fn server_frames_round_trip(frame in server_frame()) {
        let bytes = encode_server(&frame);
        prop_assert_eq!(decode_server(&bytes, NO_LIMIT), Ok(frame));
        prop_assert_eq!(encode_server(&decode_server(&bytes, NO_LIMIT).unwrap()), bytes);
    }

    #[test]
    fn a_frame_exactly_at_the_limit_is_accepted_and_one_byte_more_is_not(
        frame in client_frame(),
    ) {
        let bytes = encode_client(&frame);
        prop_assert_eq!(decode_client(&bytes, bytes.len()), Ok(frame));
        prop_assert_eq!(
            decode_client(&bytes, bytes.len() - 1),
            Err(DecodeError::TooLarge { len: bytes.len(), max: bytes.len() - 1 })
        );
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        check_client_decode(&bytes)?;
        check_server_decode(&bytes)?;
    }

    #[test]
    fn decoders_classify_json_shaped_input(value in frame_like_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        check_client_decode(&bytes)?;
        check_server_decode(&bytes)?;

        // An object with a string `type` (and, if any, a string `rid`) is never "malformed":
        // the connection survives it, and a valid `rid` is echoed in the error.
        let object = value.as_object().unwrap();
        let tag = object.get("type").and_then(Value::as_str);
        let rid = object.get("rid");
        let rid_is_text = rid.is_none_or(|rid| rid.is_string() || rid.is_null());
        if let (Some(tag), true) = (tag, rid_is_text) {
            let valid_rid = rid.and_then(Value::as_str).and_then(|r| RequestId::parse(r).ok());
            let client_kinds = variant_names::<ClientFrame>("type");
            match decode_client(&bytes, NO_LIMIT) {
                Ok(frame) => prop_assert_eq!(frame.kind(), tag),
                Err(error) => {
                    prop_assert!(!error.is_fatal(), "{error:?}");
                    prop_assert_eq!(error.rid(), valid_rid.as_ref());
                    let code = if client_kinds.contains(&tag) {
                        ErrorCode::InvalidFrame
                    } else {
                        ErrorCode::UnknownFrame
                    };
                    prop_assert_eq!(error.code(), code, "{:?}", error);
                }
            }
            if let Err(error) = decode_server(&bytes, NO_LIMIT) {
                prop_assert!(!error.is_fatal(), "{error:?}");
            }
        }
    }

    #[test]
    fn decoders_survive_corrupted_frames(
        frame in client_frame(),
        server in server_frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0..3_u8), 1..8),
    ) {
        for mut bytes in [encode_client(&frame).to_vec(), encode_server(&server).to_vec()] {
            for (at, byte, how) in &edits {
                let index = at.index(bytes.len() + 1);
                match how {
                    0 => bytes.insert(index, *byte),
                    1 if index < bytes.len() => bytes[index] = *byte,
                    _ => bytes.truncate(index),
                }
            }
            check_client_decode(&bytes)?;
            check_server_decode(&bytes)?;
        }
    }

    #[test]
    fn oversized_input_is_refused_before_parsing(
        max in 0_usize..4096,
        excess in 1_usize..512,
        frame in client_frame(),
        filler in any::<u8>(),
    ) {
        // A valid frame padded past the limit with JSON whitespace would parse; garbage of the
        // same length would not. Both must be refused for their size alone.
        let mut padded = encode_client(&frame).to_vec();
        let len = padded.len().max(max + excess);
        padded.resize(len, b' ');
        let refused = decode_client(&padded, len - excess);
        prop_assert_eq!(refused, Err(DecodeError::TooLarge { len, max: len - excess }));

        let garbage = vec![filler; max + excess];
        let refused = decode_server(&garbage, max);
        prop_assert_eq!(&refused, &Err(DecodeError::TooLarge { len: max + excess, max }));
        let error = refused.unwrap_err();
        prop_assert!(error.is_fatal());
        prop_assert_eq!(error.code(), ErrorCode::FrameTooLarge);
        prop_assert_eq!(error.rid(), None);
    }
}

/// A new frame variant must be added to the strategies above, or its round trip goes
/// untested: sample the strategies and compare with the variants serde knows.
#[test]
fn strategies_cover_every_frame_type() {
    let mut runner = TestRunner::deterministic();
    let (client, server) = (client_frame(), server_frame());
    let mut client_kinds = BTreeSet::new();
    let mut server_kinds = BTreeSet::new();
    for _ in 0..500 {
        let frame = client.new_tree(&mut runner).unwrap().current();
        client_kinds.insert(tag_of(&encode_client(&frame)));
        let frame = server.new_tree(&mut runner).unwrap().current();
        server_kinds.insert(tag_of(&encode_server(&frame)));
    }
    let expected_client: BTreeSet<String> = variant_names::<ClientFrame>("type")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let expected_server: BTreeSet<String> = variant_names::<ServerFrame>("type")
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(client_kinds, expected_client);
    assert_eq!(server_kinds, expected_server);
}

#[test]
fn decode_refuses_frames_with_extra_fields_or_bad_ids() {
    let cases: &[(&str, ErrorCode)] = &[
        (r#"{"type":"ping","extra":true}"#, ErrorCode::InvalidFrame),
        (r#"{"type":"join","room":"Lobby"}"#, ErrorCode::InvalidFrame),
        (
            r#"{"type":"join","room":"dm:bob:alice"}"#,
            ErrorCode::InvalidFrame,
        ),
        (
            r#"{"type":"join","room":"dm:alice:alice"}"#,
            ErrorCode::InvalidFrame,
        ),
        (
            r#"{"type":"send","room":"a","cmid":"has space","body":"x"}"#,
            ErrorCode::InvalidFrame,
        ),
        (
            r#"{"type":"login_start","user":"alice","ke1":"AA=="}"#,
            ErrorCode::InvalidFrame,
        ),
        (
            r#"{"type":"join","room":"a","since":-1}"#,
            ErrorCode::InvalidFrame,
        ),
        (
            r#"{"type":"typing","room":"a","rid":"r1"}"#,
            ErrorCode::InvalidFrame,
        ),
        (r#"{"type":"teleport"}"#, ErrorCode::UnknownFrame),
        (r#"{"type":"pong"}"#, ErrorCode::UnknownFrame),
        (r#"{"room":"a"}"#, ErrorCode::BadFrame),
        ("{\"type\":\"ping\"", ErrorCode::BadFrame),
    ];
    assert_codes(cases);
}

/// serde's tagged enums also accept the array form `["join","r1","lobby"]`, which is not a
/// frame; and a known frame with a non-string `rid` is an invalid field, not a malformed frame
/// (so the connection survives it).
#[test]
fn only_objects_are_frames_and_a_bad_rid_is_an_invalid_field() {
    assert_codes(&[
        (r#"["ping"]"#, ErrorCode::BadFrame),
        (r#"["join","r1","lobby",4]"#, ErrorCode::BadFrame),
        (r#"{"type":"ping","rid":5}"#, ErrorCode::InvalidFrame),
        (
            r#"{"type":"join","rid":["r1"],"room":"lobby"}"#,
            ErrorCode::InvalidFrame,
        ),
    ]);
}

fn assert_codes(cases: &[(&str, ErrorCode)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(
            |(json, code)| match decode_client(json.as_bytes(), NO_LIMIT) {
                Err(error) if error.code() == *code => None,
                other => Some(format!("{json}: expected {code}, got {other:?}")),
            },
        )
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Decodes `bytes` as a client frame: never panics, and anything accepted round-trips.
fn check_client_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode_client(bytes, NO_LIMIT) {
        Ok(frame) => {
            let again = decode_client(&encode_client(&frame), NO_LIMIT);
            prop_assert_eq!(again, Ok(frame));
        }
        Err(error) => check_error(&error)?,
    }
    Ok(())
}

/// Decodes `bytes` as a server frame: never panics, and anything accepted round-trips.
fn check_server_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode_server(bytes, NO_LIMIT) {
        Ok(frame) => {
            let again = decode_server(&encode_server(&frame), NO_LIMIT);
            prop_assert_eq!(again, Ok(frame));
        }
        Err(error) => check_error(&error)?,
    }
    Ok(())
}

/// A decode failure is consistent with its own classification.
fn check_error(error: &DecodeError) -> Result<(), TestCaseError> {
    prop_assert_ne!(error.code(), ErrorCode::FrameTooLarge, "no limit was set");
    let fatal = matches!(
        error,
        DecodeError::Malformed { .. } | DecodeError::TooLarge { .. }
    );
    prop_assert_eq!(error.is_fatal(), fatal);
    if fatal {
        prop_assert_eq!(error.rid(), None);
    }
    Ok(())
}

fn tag_of(bytes: &[u8]) -> String {
    let value: Value = serde_json::from_slice(bytes).expect("the encoder writes JSON");
    value["type"]
        .as_str()
        .expect("every frame has a string `type`")
        .to_owned()
}

fn user() -> impl Strategy<Value = UserId> {
    let valid = "the pattern matches user names only";
    matching(&name_pattern(MAX_USER_NAME_BYTES)).prop_map(|name| UserId::parse(&name).expect(valid))
}

fn room() -> impl Strategy<Value = RoomId> {
    let valid = "the pattern matches room names only";
    let ordinary = matching(&name_pattern(MAX_ROOM_NAME_BYTES))
        .prop_map(|name| RoomId::parse(&name).expect(valid));
    let direct = (user(), user()).prop_filter_map("a direct room needs two users", |(a, b)| {
        RoomId::direct(&a, &b)
    });
    prop_oneof![3 => ordinary, 1 => direct]
}

/// The user and room name grammar, up to `max` bytes.
fn name_pattern(max: usize) -> String {
    format!("[a-z0-9][a-z0-9._-]{{0,{}}}", max - 1)
}

fn cmid() -> impl Strategy<Value = ClientMsgId> {
    matching(&format!("[!-~]{{1,{MAX_CLIENT_MSG_ID_BYTES}}}"))
        .prop_map(|id| ClientMsgId::parse(&id).expect("the pattern matches printable ASCII only"))
}

fn rid() -> impl Strategy<Value = Option<RequestId>> {
    option::of(
        matching(&format!("[!-~]{{1,{MAX_REQUEST_ID_BYTES}}}")).prop_map(|id| {
            RequestId::parse(&id).expect("the pattern matches printable ASCII only")
        }),
    )
}

/// Strings matching a regular expression.
fn matching(pattern: &str) -> impl Strategy<Value = String> + use<> {
    proptest::string::string_regex(pattern).expect("the patterns above are valid")
}

fn seq() -> impl Strategy<Value = Seq> {
    any::<u64>().prop_map(Seq)
}

/// Any Unicode text, including control characters, quotes and non-BMP characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[\\PC\"\\\\\n\t\u{0}-\u{1f}]{0,300}"]
}

fn opaque_bytes() -> impl Strategy<Value = Base64Bytes> {
    vec(any::<u8>(), 0..400).prop_map(Base64Bytes)
}

fn message() -> impl Strategy<Value = Message> {
    (
        room(),
        seq(),
        user(),
        text(),
        any::<i64>(),
        option::of(cmid()),
    )
        .prop_map(|(room, seq, from, body, ts, cmid)| Message {
            room,
            seq,
            from,
            body,
            ts,
            cmid,
        })
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (any::<u32>(), option::of(text()))
            .prop_map(|(version, client)| ClientFrame::Hello { version, client }),
        (rid(), user(), opaque_bytes()).prop_map(|(rid, user, ke1)| ClientFrame::LoginStart {
            rid,
            user,
            ke1
        }),
        (rid(), opaque_bytes()).prop_map(|(rid, ke3)| ClientFrame::LoginFinish { rid, ke3 }),
        (rid(), text()).prop_map(|(rid, token)| ClientFrame::Resume { rid, token }),
        (rid(), room(), option::of(seq())).prop_map(|(rid, room, since)| ClientFrame::Join {
            rid,
            room,
            since
        }),
        (rid(), room()).prop_map(|(rid, room)| ClientFrame::Leave { rid, room }),
        (rid(), room(), cmid(), text()).prop_map(|(rid, room, cmid, body)| ClientFrame::Send {
            rid,
            room,
            cmid,
            body
        }),
        (
            rid(),
            room(),
            option::of(seq()),
            option::of(seq()),
            option::of(any::<u32>())
        )
            .prop_map(|(rid, room, before, after, limit)| ClientFrame::History {
                rid,
                room,
                before,
                after,
                limit
            }),
        (rid(), user(), cmid(), text()).prop_map(|(rid, to, cmid, body)| ClientFrame::Direct {
            rid,
            to,
            cmid,
            body
        }),
        room().prop_map(|room| ClientFrame::Typing { room }),
        rid().prop_map(|rid| ClientFrame::Ping { rid }),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        (any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |(
                max_frame_bytes,
                max_body_bytes,
                max_rooms_per_session,
                max_history_page,
                (sends_per_sec, send_burst),
            )| {
                Limits {
                    max_frame_bytes,
                    max_body_bytes,
                    max_rooms_per_session,
                    max_history_page,
                    sends_per_sec,
                    send_burst,
                }
            },
        )
}

fn presence_state() -> impl Strategy<Value = PresenceState> {
    prop::sample::select(vec![
        PresenceState::Joined,
        PresenceState::Left,
        PresenceState::Online,
        PresenceState::Offline,
    ])
}

fn error_frame() -> impl Strategy<Value = ServerFrame> {
    (
        rid(),
        prop::sample::select(ErrorCode::ALL),
        text(),
        option::of(any::<u64>()),
    )
        .prop_map(
            |(rid, code, message, retry_after_ms)| match retry_after_ms {
                Some(delay) => ServerFrame::retry_error(rid, code, message, delay),
                None => ServerFrame::error(rid, code, message),
            },
        )
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (any::<u32>(), text(), limits()).prop_map(|(version, server, limits)| ServerFrame::Hello {
            version,
            server,
            limits
        }),
        (rid(), opaque_bytes()).prop_map(|(rid, ke2)| ServerFrame::LoginChallenge { rid, ke2 }),
        (rid(), user(), text(), text(), any::<u64>()).prop_map(
            |(rid, user, session, resume_token, resume_expires_in_secs)| ServerFrame::Welcome {
                rid,
                user,
                session,
                resume_token,
                resume_expires_in_secs,
            }
        ),
        (
            rid(),
            room(),
            vec(user(), 0..5),
            vec(message(), 0..5),
            seq()
        )
            .prop_map(
                |(rid, room, online, messages, last_seq)| ServerFrame::Joined {
                    rid,
                    room,
                    online,
                    messages,
                    last_seq,
                }
            ),
        (rid(), room()).prop_map(|(rid, room)| ServerFrame::Left { rid, room }),
        message().prop_map(ServerFrame::Message),
        (rid(), room(), seq(), cmid(), any::<i64>()).prop_map(|(rid, room, seq, cmid, ts)| {
            ServerFrame::Acked {
                rid,
                room,
                seq,
                cmid,
                ts,
            }
        }),
        (rid(), room(), vec(message(), 0..5), any::<bool>()).prop_map(
            |(rid, room, messages, has_more)| ServerFrame::HistoryPage {
                rid,
                room,
                messages,
                has_more,
            }
        ),
        (room(), user(), presence_state()).prop_map(|(room, user, state)| ServerFrame::Presence {
            room,
            user,
            state
        }),
        (room(), user()).prop_map(|(room, user)| ServerFrame::Typing { room, user }),
        rid().prop_map(|rid| ServerFrame::Pong { rid }),
        error_frame(),
        (text(), any::<u64>()).prop_map(|(reason, reconnect_after_ms)| ServerFrame::GoingAway {
            reason,
            reconnect_after_ms,
        }),
    ]
}

/// Field names and values the frames use, so generated objects often come close to a valid
/// frame and reach the field-level checks instead of failing on the first key.
const FIELD_NAMES: &[&str] = &[
    "type",
    "rid",
    "room",
    "since",
    "user",
    "ke1",
    "ke2",
    "ke3",
    "token",
    "cmid",
    "body",
    "before",
    "after",
    "limit",
    "to",
    "version",
    "client",
    "server",
    "limits",
    "seq",
    "from",
    "ts",
    "online",
    "messages",
    "last_seq",
    "has_more",
    "state",
    "code",
    "number",
    "message",
    "retry_after_ms",
    "reason",
    "reconnect_after_ms",
    "session",
    "resume_token",
    "resume_expires_in_secs",
];
const STRING_VALUES: &[&str] = &[
    "",
    "lobby",
    "dm:alice:bob",
    "dm:bob:alice",
    "alice",
    "Alice",
    "r-1",
    "has space",
    "AAAA",
    "AA==",
    "joined",
    "busy",
    "bogus",
    "ping",
    "join",
    "message",
    "error",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(STRING_VALUES).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(field_name(), inner, 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FIELD_NAMES).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// A JSON object that usually has a `type` naming a real or made-up frame and a handful of
/// frame fields with values of any shape.
fn frame_like_json() -> impl Strategy<Value = Value> {
    let mut tags: Vec<&'static str> = variant_names::<ClientFrame>("type");
    tags.extend(variant_names::<ServerFrame>("type"));
    tags.push("teleport");
    let tag = prop_oneof![
        4 => prop::sample::select(tags).prop_map(Value::from),
        1 => json_leaf(),
    ];
    (
        option::weighted(0.9, tag),
        btree_map(field_name(), json_value(), 0..6),
    )
        .prop_map(|(tag, fields)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            object.remove("type");
            if let Some(tag) = tag {
                object.insert("type".to_owned(), tag);
            }
            Value::Object(object)
        })
}
