//! State machine tests: phases, limits and the delivery cursor, without sockets or a runtime.

use std::time::{Duration, Instant};

use protocol::{CloseCode, ErrorCode, RoomId, Seq, ServerFrame, UserId};

use super::*;

fn limits() -> SessionLimits {
    SessionLimits {
        max_frame_bytes: 1024,
        max_body_bytes: 16,
        max_rooms: 2,
        sends_per_sec: 2,
        send_burst: 1,
        max_history_page: 100,
        join_history: 20,
    }
}

fn ready(now: Instant) -> SessionState {
    let mut state = SessionState::new(limits(), now);
    assert!(matches!(
        state.handle_frame(br#"{"type":"hello","version":1}"#, now),
        Step::Reply(ServerFrame::Hello { .. })
    ));
    state.handle_logged_in(UserId::parse("alice").unwrap());
    state
}

fn error_code(step: &Step) -> Option<ErrorCode> {
    match step {
        Step::Reply(ServerFrame::Error { code, .. })
        | Step::Close(ServerFrame::Error { code, .. }, _) => Some(*code),
        _ => None,
    }
}

fn room(name: &str) -> RoomId {
    RoomId::parse(name).unwrap()
}

#[test]
fn hello_must_come_first_and_name_our_version() {
    let now = Instant::now();
    let mut state = SessionState::new(limits(), now);
    let step = state.handle_frame(br#"{"type":"join","room":"lobby"}"#, now);
    assert_eq!(error_code(&step), Some(ErrorCode::NotLoggedIn));
    let step = state.handle_frame(br#"{"type":"login_start","user":"a","ke1":"AAAA"}"#, now);
    assert_eq!(error_code(&step), Some(ErrorCode::UnexpectedFrame));

    let step = state.handle_frame(br#"{"type":"hello","version":99}"#, now);
    assert!(matches!(
        step,
        Step::Close(_, CloseCode::UnsupportedVersion)
    ));
    assert_eq!(error_code(&step), Some(ErrorCode::UnsupportedVersion));
}

#[test]
fn before_login_only_login_is_allowed() {
    let now = Instant::now();
    let mut state = SessionState::new(limits(), now);
    state.handle_frame(br#"{"type":"hello","version":1}"#, now);
    let step = state.handle_frame(br#"{"type":"join","rid":"1","room":"lobby"}"#, now);
    assert_eq!(error_code(&step), Some(ErrorCode::NotLoggedIn));
    let step = state.handle_frame(br#"{"type":"login_finish","ke3":"AAAA"}"#, now);
    assert_eq!(error_code(&step), Some(ErrorCode::UnexpectedFrame));
    let step = state.handle_frame(
        br#"{"type":"login_start","user":"alice","ke1":"AAAA"}"#,
        now,
    );
    assert!(matches!(step, Step::Run(Command::LoginStart { .. })));
    state.handle_challenge_sent();
    let step = state.handle_frame(br#"{"type":"login_finish","ke3":"AAAA"}"#, now);
    assert!(matches!(step, Step::Run(Command::LoginFinish { .. })));
    assert!(matches!(
        state.handle_frame(br#"{"type":"ping","rid":"p"}"#, now),
        Step::Reply(ServerFrame::Pong { .. })
    ));
}

#[test]
fn a_logged_in_session_cannot_log_in_again() {
    let now = Instant::now();
    let mut state = ready(now);
    let step = state.handle_frame(br#"{"type":"resume","token":"x"}"#, now);
    assert_eq!(error_code(&step), Some(ErrorCode::AlreadyLoggedIn));
}

#[test]
fn oversized_and_malformed_frames_close_unknown_ones_do_not() {
    let now = Instant::now();
    let mut state = ready(now);
    let big = format!(r#"{{"type":"ping","rid":"{}"}}"#, "x".repeat(2000));
    let step = state.handle_frame(big.as_bytes(), now);
    assert!(matches!(step, Step::Close(_, CloseCode::FrameTooLarge)));
    assert_eq!(error_code(&step), Some(ErrorCode::FrameTooLarge));

    let step = state.handle_frame(b"{nope", now);
    assert!(matches!(step, Step::Close(_, CloseCode::ProtocolError)));

    let step = state.handle_frame(br#"{"type":"fly","rid":"f"}"#, now);
    assert!(matches!(step, Step::Reply(_)));
    assert_eq!(error_code(&step), Some(ErrorCode::UnknownFrame));
}

#[test]
fn sends_need_a_joined_room_a_valid_body_and_tokens() {
    let now = Instant::now();
    let mut state = ready(now);
    let send =
        |body: &str| format!(r#"{{"type":"send","room":"lobby","cmid":"c","body":"{body}"}}"#);
    assert_eq!(
        error_code(&state.handle_frame(send("hi").as_bytes(), now)),
        Some(ErrorCode::NotJoined)
    );
    state.handle_joined(room("lobby"), Seq(0));
    assert_eq!(
        error_code(&state.handle_frame(send(&"x".repeat(17)).as_bytes(), now)),
        Some(ErrorCode::BodyTooLong)
    );
    assert_eq!(
        error_code(&state.handle_frame(send("").as_bytes(), now)),
        Some(ErrorCode::BodyTooLong)
    );
    // rate 2/s + burst 1 = 3 immediate sends, then limited
    for _ in 0..3 {
        assert!(matches!(
            state.handle_frame(send("hi").as_bytes(), now),
            Step::Run(Command::Send { .. })
        ));
    }
    let step = state.handle_frame(send("hi").as_bytes(), now);
    assert_eq!(error_code(&step), Some(ErrorCode::RateLimited));
    let Step::Reply(ServerFrame::Error {
        retry_after_ms: Some(wait),
        ..
    }) = step
    else {
        panic!("rate limit without retry hint: {step:?}")
    };
    assert!((1..=500).contains(&wait), "{wait}");
    let later = now + Duration::from_millis(500);
    assert!(matches!(
        state.handle_frame(send("hi").as_bytes(), later),
        Step::Run(Command::Send { .. })
    ));
}

#[test]
fn typing_over_the_rate_is_dropped_silently() {
    let now = Instant::now();
    let mut state = ready(now);
    state.handle_joined(room("lobby"), Seq(0));
    let typing = br#"{"type":"typing","room":"lobby"}"#;
    for _ in 0..3 {
        assert!(matches!(
            state.handle_frame(typing, now),
            Step::Run(Command::Typing { .. })
        ));
    }
    assert_eq!(state.handle_frame(typing, now), Step::Ignore);
}

#[test]
fn rooms_per_session_are_limited_but_direct_rooms_do_not_count() {
    let now = Instant::now();
    let mut state = ready(now);
    state.handle_joined(room("a"), Seq(0));
    state.handle_joined(room("b"), Seq(0));
    state.handle_joined(RoomId::parse("dm:alice:bob").unwrap(), Seq(0));
    let step = state.handle_frame(br#"{"type":"join","room":"c"}"#, now);
    assert_eq!(error_code(&step), Some(ErrorCode::TooManyRooms));
    // rejoining a room already joined is fine
    assert!(matches!(
        state.handle_frame(br#"{"type":"join","room":"a","since":3}"#, now),
        Step::Run(Command::Join { .. })
    ));
}

#[test]
fn history_caps_the_page_and_refuses_both_directions() {
    let now = Instant::now();
    let mut state = ready(now);
    state.handle_joined(room("lobby"), Seq(0));
    let step = state.handle_frame(
        br#"{"type":"history","room":"lobby","before":9,"limit":100000}"#,
        now,
    );
    assert_eq!(
        step,
        Step::Run(Command::History {
            rid: None,
            room: room("lobby"),
            range: HistoryRange::Before(Seq(9)),
            limit: 100
        })
    );
    let step = state.handle_frame(
        br#"{"type":"history","room":"lobby","before":9,"after":1}"#,
        now,
    );
    assert_eq!(error_code(&step), Some(ErrorCode::InvalidFrame));
}

#[test]
fn cursor_drops_duplicates_and_reports_gaps() {
    let now = Instant::now();
    let mut state = ready(now);
    let lobby = room("lobby");
    state.handle_joined(lobby.clone(), Seq(5));
    assert_eq!(state.handle_event(&lobby, Some(Seq(4))), Delivery::Drop);
    assert_eq!(state.handle_event(&lobby, Some(Seq(5))), Delivery::Drop);
    assert_eq!(state.handle_event(&lobby, Some(Seq(6))), Delivery::Deliver);
    assert_eq!(state.handle_event(&lobby, Some(Seq(6))), Delivery::Drop);
    assert_eq!(
        state.handle_event(&lobby, Some(Seq(9))),
        Delivery::Gap { after: Seq(6) }
    );
    assert_eq!(state.handle_event(&lobby, Some(Seq(7))), Delivery::Deliver);
    assert_eq!(
        state.handle_event(&lobby, None),
        Delivery::Deliver,
        "presence passes"
    );
    assert_eq!(
        state.handle_event(&room("other"), Some(Seq(1))),
        Delivery::Drop
    );
    state.handle_left(&lobby);
    assert_eq!(state.handle_event(&lobby, Some(Seq(8))), Delivery::Drop);
    let dm = RoomId::parse("dm:alice:bob").unwrap();
    assert_eq!(state.handle_event(&dm, Some(Seq(3))), Delivery::Deliver);
    assert_eq!(state.handle_event(&dm, Some(Seq(3))), Delivery::Drop);
    assert!(state.is_in(&dm));
}

#[test]
fn stored_messages_may_skip_what_retention_deleted() {
    let now = Instant::now();
    let mut state = ready(now);
    let lobby = room("lobby");
    state.handle_joined(lobby.clone(), Seq(2));
    assert_eq!(state.handle_stored(&lobby, Seq(2)), Delivery::Drop);
    assert_eq!(
        state.handle_stored(&lobby, Seq(40)),
        Delivery::Deliver,
        "3..39 were deleted"
    );
    assert_eq!(state.handle_event(&lobby, Some(Seq(41))), Delivery::Deliver);
    assert_eq!(
        state.handle_stored(&room("elsewhere"), Seq(1)),
        Delivery::Drop
    );
}

proptest::proptest! {
    /// Whatever order and repetition events arrive in, what is delivered (with gaps filled
    /// from a complete source) is exactly 1..=n once each, in order.
    #[test]
    fn delivered_sequence_is_gap_free_and_unique(arrivals in proptest::collection::vec(1u64..40, 0..200)) {
        let now = Instant::now();
        let mut state = ready(now);
        let lobby = room("lobby");
        state.handle_joined(lobby.clone(), Seq(0));
        let mut delivered = Vec::new();
        for seq in arrivals {
            match state.handle_event(&lobby, Some(Seq(seq))) {
                Delivery::Deliver => delivered.push(seq),
                Delivery::Drop => {}
                Delivery::Gap { after } => {
                    for missing in after.0 + 1..seq {
                        proptest::prop_assert_eq!(state.handle_event(&lobby, Some(Seq(missing))), Delivery::Deliver);
                        delivered.push(missing);
                    }
                    proptest::prop_assert_eq!(state.handle_event(&lobby, Some(Seq(seq))), Delivery::Deliver);
                    delivered.push(seq);
                }
            }
        }
        let expected: Vec<u64> = (1..=delivered.len() as u64).collect();
        proptest::prop_assert_eq!(delivered, expected);
    }
}
