//! The checks every store backend must pass. Each takes an empty, migrated [`Store`] and
//! asserts behaviour through the public API only, so a new backend runs them unchanged.

use std::collections::BTreeMap;

use protocol::{ClientMsgId, Message, RoomId, Seq, UserId};

use crate::store::{
    Committed, ExportFilter, HistoryPage, HistoryRange, ImportOutcome, NewMessage, RoomRecord,
    Store, StoreError,
};

pub async fn users_are_created_once_and_updated(store: &Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    assert!(store.user(&alice).await.unwrap().is_none());
    store.create_user(&bob, b"bob-file").await.unwrap();
    store.create_user(&alice, b"alice-file").await.unwrap();
    let taken = store.create_user(&alice, b"other").await.unwrap_err();
    assert!(
        matches!(taken, StoreError::AlreadyExists { .. }),
        "{taken:?}"
    );

    let record = store.user(&alice).await.unwrap().unwrap();
    assert_eq!(record.name, alice);
    assert_eq!(record.password_file, b"alice-file");
    assert!(!record.disabled);
    assert!(record.created_ms > 0);

    store.set_password(&alice, b"new-file").await.unwrap();
    store.set_disabled(&alice, true).await.unwrap();
    let record = store.user(&alice).await.unwrap().unwrap();
    assert_eq!(record.password_file, b"new-file");
    assert!(record.disabled);
    store.set_disabled(&alice, false).await.unwrap();
    assert!(!store.user(&alice).await.unwrap().unwrap().disabled);

    let names: Vec<UserId> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, [alice, bob]);

    let ghost = user("ghost");
    let missing = store.set_password(&ghost, b"x").await.unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
    let missing = store.set_disabled(&ghost, true).await.unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
    assert!(store.user(&ghost).await.unwrap().is_none());
}

pub async fn rooms_and_members(store: &Store) {
    let (lobby, staff) = (room("lobby"), room("staff"));
    let (alice, bob) = (user("alice"), user("bob"));
    store.create_user(&alice, b"a").await.unwrap();
    store.create_user(&bob, b"b").await.unwrap();
    store.create_room(&staff, true).await.unwrap();
    store.create_room(&lobby, false).await.unwrap();
    let taken = store.create_room(&lobby, true).await.unwrap_err();
    assert!(
        matches!(taken, StoreError::AlreadyExists { .. }),
        "{taken:?}"
    );
    assert_eq!(
        store.room(&lobby).await.unwrap(),
        Some(RoomRecord {
            name: lobby.clone(),
            private: false,
            last_seq: Seq::ZERO,
            members: 0,
            retention_days: None,
        })
    );
    assert!(store.room(&room("nowhere")).await.unwrap().is_none());

    store.add_member(&staff, &alice).await.unwrap();
    store.add_member(&staff, &alice).await.unwrap();
    store.add_member(&staff, &bob).await.unwrap();
    assert!(store.is_member(&staff, &alice).await.unwrap());
    assert!(!store.is_member(&lobby, &alice).await.unwrap());
    let record = store.room(&staff).await.unwrap().unwrap();
    assert!(record.private);
    assert_eq!(record.members, 2);

    let no_room = store
        .add_member(&room("nowhere"), &alice)
        .await
        .unwrap_err();
    assert!(matches!(&no_room, StoreError::NotFound { what } if what.contains("nowhere")));
    let no_user = store.add_member(&staff, &user("ghost")).await.unwrap_err();
    assert!(matches!(&no_user, StoreError::NotFound { what } if what.contains("ghost")));

    store.remove_member(&staff, &bob).await.unwrap();
    assert!(!store.is_member(&staff, &bob).await.unwrap());
    let again = store.remove_member(&staff, &bob).await.unwrap_err();
    assert!(matches!(again, StoreError::NotFound { .. }), "{again:?}");
    let no_room = store
        .remove_member(&room("nowhere"), &bob)
        .await
        .unwrap_err();
    assert!(
        matches!(no_room, StoreError::NotFound { .. }),
        "{no_room:?}"
    );

    let listed = store.rooms().await.unwrap();
    let names: Vec<&RoomId> = listed.iter().map(|r| &r.name).collect();
    assert_eq!(names, [&lobby, &staff]);
    assert_eq!(listed[1].members, 1);
}

pub async fn direct_rooms_are_private_and_unlisted(store: &Store) {
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    for name in [&alice, &bob] {
        store.create_user(name, b"f").await.unwrap();
    }
    store.create_room(&room("lobby"), false).await.unwrap();
    let direct = RoomId::direct(&bob, &alice).unwrap();

    store.ensure_direct_room(&direct).await.unwrap();
    store.ensure_direct_room(&direct).await.unwrap();
    let record = store.room(&direct).await.unwrap().unwrap();
    assert!(record.private);
    assert_eq!(record.members, 2);
    assert!(store.is_member(&direct, &alice).await.unwrap());
    assert!(store.is_member(&direct, &bob).await.unwrap());
    let listed: Vec<RoomId> = store
        .rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(listed, [room("lobby")]);

    // A participant that does not exist creates nothing.
    let with_ghost = RoomId::direct(&alice, &carol).unwrap();
    let error = store.ensure_direct_room(&with_ghost).await.unwrap_err();
    assert!(matches!(&error, StoreError::NotFound { what } if what.contains("carol")));
    assert!(store.room(&with_ghost).await.unwrap().is_none());

    let not_direct = store.ensure_direct_room(&room("lobby")).await.unwrap_err();
    assert!(
        matches!(not_direct, StoreError::NotFound { .. }),
        "{not_direct:?}"
    );
}

pub async fn append_numbers_each_room_from_one_in_input_order(store: &Store) {
    let (lobby, staff) = (room("lobby"), room("staff"));
    store.create_room(&lobby, false).await.unwrap();
    store.create_room(&staff, false).await.unwrap();
    let alice = user("alice");
    let batch = [
        send(&lobby, &alice, "c1", "one"),
        send(&staff, &alice, "c2", "two"),
        send(&lobby, &alice, "c3", "three"),
        send(&lobby, &alice, "c4", "four"),
    ];
    let committed = store.append_batch(&batch, 1_000).await.unwrap();
    let seqs: Vec<(&str, u64, bool)> = committed
        .iter()
        .map(|c| (c.message.room.as_str(), c.message.seq.0, c.duplicate))
        .collect();
    assert_eq!(
        seqs,
        [
            ("lobby", 1, false),
            ("staff", 1, false),
            ("lobby", 2, false),
            ("lobby", 3, false)
        ]
    );
    assert_eq!(
        committed[0].message,
        Message {
            room: lobby.clone(),
            seq: Seq(1),
            from: alice.clone(),
            body: "one".to_owned(),
            ts: 1_000,
            cmid: Some(cmid("c1")),
        }
    );

    let next = store
        .append_batch(&[send(&lobby, &alice, "c5", "five")], 2_000)
        .await
        .unwrap();
    assert_eq!(next[0].message.seq, Seq(4));
    assert_eq!(store.room(&lobby).await.unwrap().unwrap().last_seq, Seq(4));
    assert_eq!(store.room(&staff).await.unwrap().unwrap().last_seq, Seq(1));
    let page = store
        .history(&lobby, HistoryRange::Latest, 10)
        .await
        .unwrap();
    let stored: Vec<Message> = committed
        .iter()
        .chain(&next)
        .filter(|c| c.message.room == lobby)
        .map(|c| c.message.clone())
        .collect();
    assert_eq!(
        page,
        HistoryPage {
            messages: stored,
            has_more: false
        }
    );
    assert!(store.append_batch(&[], 0).await.unwrap().is_empty());
}

pub async fn append_is_gap_free_under_concurrent_batches(store: &Store) {
    const TASKS: usize = 16;
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 3;
    let (lobby, staff) = (room("lobby"), room("staff"));
    store.create_room(&lobby, false).await.unwrap();
    store.create_room(&staff, false).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        let (lobby, staff) = (lobby.clone(), staff.clone());
        tasks.spawn(async move {
            let from = user(&format!("user{task}"));
            let mut acks = Vec::new();
            for batch in 0..BATCHES {
                let sends: Vec<NewMessage> = (0..PER_BATCH)
                    .map(|i| {
                        let target = if i % 2 == 0 { &lobby } else { &staff };
                        send(target, &from, &format!("{batch}-{i}"), "x")
                    })
                    .collect();
                acks.extend(store.append_batch(&sends, 1).await.unwrap());
            }
            acks
        });
    }
    let mut seqs: BTreeMap<RoomId, Vec<u64>> = BTreeMap::new();
    while let Some(acks) = tasks.join_next().await {
        for ack in acks.unwrap() {
            assert!(!ack.duplicate);
            seqs.entry(ack.message.room)
                .or_default()
                .push(ack.message.seq.0);
        }
    }
    let lobby_count = TASKS * BATCHES * PER_BATCH.div_ceil(2);
    let staff_count = TASKS * BATCHES * (PER_BATCH / 2);
    for (name, count) in [(&lobby, lobby_count), (&staff, staff_count)] {
        let mut got = seqs.remove(name).unwrap();
        got.sort_unstable();
        let expected: Vec<u64> = (1..=count as u64).collect();
        assert_eq!(got, expected, "sequence numbers of {name}");
        let last = store.room(name).await.unwrap().unwrap().last_seq;
        assert_eq!(last, Seq(count as u64));
        let page = store
            .history(name, HistoryRange::Latest, 10_000)
            .await
            .unwrap();
        assert_eq!(page.messages.len(), count);
    }
}

pub async fn resend_returns_the_first_commit(store: &Store) {
    let lobby = room("lobby");
    let staff = room("staff");
    store.create_room(&lobby, false).await.unwrap();
    store.create_room(&staff, false).await.unwrap();
    let (alice, bob) = (user("alice"), user("bob"));
    let first = store
        .append_batch(&[send(&lobby, &alice, "c1", "hello")], 100)
        .await
        .unwrap();
    let again = store
        .append_batch(
            &[
                send(&lobby, &alice, "c1", "hello, edited"),
                send(&lobby, &alice, "c2", "next"),
            ],
            200,
        )
        .await
        .unwrap();
    assert_eq!(
        again[0],
        Committed {
            message: first[0].message.clone(),
            duplicate: true
        }
    );
    assert_eq!(again[0].message.body, "hello");
    assert_eq!(again[0].message.ts, 100);
    // The resend took no number: the next new message follows the first directly.
    assert_eq!((again[1].message.seq, again[1].duplicate), (Seq(2), false));

    // The same id from another sender or in another room is a different message.
    let others = store
        .append_batch(
            &[
                send(&lobby, &bob, "c1", "bob's"),
                send(&staff, &alice, "c1", "elsewhere"),
            ],
            300,
        )
        .await
        .unwrap();
    assert!(others.iter().all(|c| !c.duplicate));
    assert_eq!(others[0].message.seq, Seq(3));
    assert_eq!(others[1].message.seq, Seq(1));

    let page = store
        .history(&lobby, HistoryRange::Latest, 10)
        .await
        .unwrap();
    let bodies: Vec<&str> = page.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["hello", "next", "bob's"]);
}

pub async fn resend_within_one_batch_returns_the_first_entry(store: &Store) {
    let lobby = room("lobby");
    store.create_room(&lobby, false).await.unwrap();
    let alice = user("alice");
    let committed = store
        .append_batch(
            &[
                send(&lobby, &alice, "c1", "first"),
                send(&lobby, &alice, "c1", "resent"),
                send(&lobby, &alice, "c2", "second"),
                send(&lobby, &alice, "c1", "resent again"),
            ],
            500,
        )
        .await
        .unwrap();
    let summary: Vec<(u64, bool, &str)> = committed
        .iter()
        .map(|c| (c.message.seq.0, c.duplicate, c.message.body.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, false, "first"),
            (1, true, "first"),
            (2, false, "second"),
            (1, true, "first")
        ]
    );
    assert_eq!(store.room(&lobby).await.unwrap().unwrap().last_seq, Seq(2));
    let page = store
        .history(&lobby, HistoryRange::Latest, 10)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2);
}

pub async fn append_to_a_missing_room_stores_nothing(store: &Store) {
    let lobby = room("lobby");
    store.create_room(&lobby, false).await.unwrap();
    let alice = user("alice");
    let error = store
        .append_batch(
            &[
                send(&lobby, &alice, "c1", "kept?"),
                send(&room("nowhere"), &alice, "c2", "x"),
            ],
            1,
        )
        .await
        .unwrap_err();
    assert!(matches!(&error, StoreError::NotFound { what } if what.contains("nowhere")));
    assert_eq!(
        store.room(&lobby).await.unwrap().unwrap().last_seq,
        Seq::ZERO
    );
    assert_eq!(
        store
            .history(&lobby, HistoryRange::Latest, 10)
            .await
            .unwrap(),
        HistoryPage::default()
    );
    // The failed batch left no trace: the same ids commit normally afterwards.
    let retry = store
        .append_batch(&[send(&lobby, &alice, "c1", "kept")], 2)
        .await
        .unwrap();
    assert_eq!((retry[0].message.seq, retry[0].duplicate), (Seq(1), false));
}

pub async fn history_pages_both_ways(store: &Store) {
    let (lobby, empty) = (room("lobby"), room("empty"));
    store.create_room(&lobby, false).await.unwrap();
    store.create_room(&empty, false).await.unwrap();
    let alice = user("alice");
    let sends: Vec<NewMessage> = (1..=25)
        .map(|i| send(&lobby, &alice, &format!("c{i}"), &format!("m{i}")))
        .collect();
    store.append_batch(&sends, 7).await.unwrap();

    let lobby = &lobby;
    let page = |range, limit| async move {
        let page = store.history(lobby, range, limit).await.unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq.0).collect();
        (seqs, page.has_more)
    };
    let span = |from: u64, to: u64| (from..=to).collect::<Vec<u64>>();
    assert_eq!(page(HistoryRange::Latest, 10).await, (span(16, 25), true));
    assert_eq!(
        page(HistoryRange::Before(Seq(16)), 10).await,
        (span(6, 15), true)
    );
    assert_eq!(
        page(HistoryRange::Before(Seq(6)), 10).await,
        (span(1, 5), false)
    );
    assert_eq!(
        page(HistoryRange::Before(Seq(11)), 10).await,
        (span(1, 10), false)
    );
    assert_eq!(
        page(HistoryRange::Before(Seq(1)), 10).await,
        (vec![], false)
    );
    assert_eq!(
        page(HistoryRange::Before(Seq(u64::MAX)), 3).await,
        (span(23, 25), true)
    );
    assert_eq!(
        page(HistoryRange::After(Seq::ZERO), 10).await,
        (span(1, 10), true)
    );
    assert_eq!(
        page(HistoryRange::After(Seq(15)), 10).await,
        (span(16, 25), false)
    );
    assert_eq!(
        page(HistoryRange::After(Seq(20)), 10).await,
        (span(21, 25), false)
    );
    assert_eq!(
        page(HistoryRange::After(Seq(25)), 10).await,
        (vec![], false)
    );
    assert_eq!(
        page(HistoryRange::After(Seq(u64::MAX)), 10).await,
        (vec![], false)
    );
    assert_eq!(page(HistoryRange::Latest, 25).await, (span(1, 25), false));
    assert_eq!(page(HistoryRange::Latest, 0).await, (vec![], true));

    let latest = store.history(lobby, HistoryRange::Latest, 1).await.unwrap();
    assert_eq!(latest.messages[0].body, "m25");
    assert_eq!(latest.messages[0].cmid, Some(cmid("c25")));
    assert_eq!(latest.messages[0].ts, 7);
    for name in [&empty, &room("nowhere")] {
        let page = store.history(name, HistoryRange::Latest, 10).await.unwrap();
        assert_eq!(page, HistoryPage::default());
    }
}

pub async fn resume_tokens_work_once_and_only_while_valid(store: &Store) {
    let alice = user("alice");
    store.create_user(&alice, b"f").await.unwrap();
    store
        .insert_resume_token(b"token-1", &alice, 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.take_resume_token(b"token-1", 999).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.take_resume_token(b"token-1", 999).await.unwrap(),
        None
    );

    // Expired at `expires_ms`; presenting it also consumes it.
    store
        .insert_resume_token(b"token-2", &alice, 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.take_resume_token(b"token-2", 1_000).await.unwrap(),
        None
    );
    assert_eq!(store.take_resume_token(b"token-2", 0).await.unwrap(), None);

    assert_eq!(
        store.take_resume_token(b"never-issued", 0).await.unwrap(),
        None
    );
    let error = store
        .insert_resume_token(b"token-3", &user("ghost"), 1_000)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
}

pub async fn resume_tokens_die_with_disable_and_new_password(store: &Store) {
    let alice = user("alice");
    store.create_user(&alice, b"f").await.unwrap();
    let valid_until = i64::MAX;

    store
        .insert_resume_token(b"before-disable", &alice, valid_until)
        .await
        .unwrap();
    store.set_disabled(&alice, true).await.unwrap();
    // Issued while disabled (a login racing the disable): refused at use.
    store
        .insert_resume_token(b"while-disabled", &alice, valid_until)
        .await
        .unwrap();
    assert_eq!(
        store.take_resume_token(b"while-disabled", 0).await.unwrap(),
        None
    );
    store.set_disabled(&alice, false).await.unwrap();
    assert_eq!(
        store.take_resume_token(b"before-disable", 0).await.unwrap(),
        None
    );

    store
        .insert_resume_token(b"before-password", &alice, valid_until)
        .await
        .unwrap();
    store
        .insert_resume_token(b"also-before-password", &alice, valid_until)
        .await
        .unwrap();
    store.set_password(&alice, b"new").await.unwrap();
    assert_eq!(
        store
            .take_resume_token(b"before-password", 0)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_resume_token(b"also-before-password", 0)
            .await
            .unwrap(),
        None
    );

    store
        .insert_resume_token(b"after", &alice, valid_until)
        .await
        .unwrap();
    store.set_disabled(&alice, false).await.unwrap();
    assert_eq!(
        store.take_resume_token(b"after", 0).await.unwrap(),
        Some(alice)
    );
}

pub async fn secret_is_inserted_once(store: &Store) {
    assert_eq!(
        store
            .load_or_insert_secret("setup", b"first")
            .await
            .unwrap(),
        b"first"
    );
    assert_eq!(
        store
            .load_or_insert_secret("setup", b"second")
            .await
            .unwrap(),
        b"first"
    );

    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..8_u8 {
        let store = store.clone();
        callers.spawn(async move {
            store
                .load_or_insert_secret("raced", &[caller; 16])
                .await
                .unwrap()
        });
    }
    let mut seen = Vec::new();
    while let Some(value) = callers.join_next().await {
        seen.push(value.unwrap());
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "every caller gets the one stored value");
    assert_eq!(
        store.load_or_insert_secret("raced", b"late").await.unwrap(),
        seen[0]
    );
}

/// Reads a whole export page by page.
async fn export_all(store: &Store, filter: &ExportFilter, page: u32) -> Vec<Message> {
    let mut all: Vec<Message> = Vec::new();
    loop {
        let after = all.last().map(|m| (&m.room, m.seq));
        let next = store.export_page(filter, after, page).await.unwrap();
        if next.is_empty() {
            return all;
        }
        assert!(next.len() <= page as usize);
        all.extend(next);
    }
}

pub async fn export_pages_in_room_seq_order_with_filters(store: &Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (lobby, annex) = (room("lobby"), room("annex"));
    store.create_room(&lobby, false).await.unwrap();
    store.create_room(&annex, false).await.unwrap();
    for (i, ts) in [100, 200, 300].into_iter().enumerate() {
        let batch = [
            send(&lobby, &alice, &format!("l{i}"), &format!("lobby {i}")),
            send(&annex, &bob, &format!("a{i}"), &format!("annex {i}")),
        ];
        store.append_batch(&batch, ts).await.unwrap();
    }
    let dm = RoomId::direct(&alice, &bob).unwrap();
    store.create_user(&alice, b"a").await.unwrap();
    store.create_user(&bob, b"b").await.unwrap();
    store.ensure_direct_room(&dm).await.unwrap();
    store
        .append_batch(&[send(&dm, &alice, "d0", "psst")], 400)
        .await
        .unwrap();

    let all = export_all(store, &ExportFilter::default(), 2).await;
    let keys: Vec<(String, u64)> = all.iter().map(|m| (m.room.to_string(), m.seq.0)).collect();
    assert_eq!(
        keys,
        [
            ("annex", 1),
            ("annex", 2),
            ("annex", 3),
            ("dm:alice:bob", 1),
            ("lobby", 1),
            ("lobby", 2),
            ("lobby", 3)
        ]
        .map(|(r, s)| (r.to_owned(), s))
    );
    assert_eq!(all[0].body, "annex 0");
    assert_eq!(all[0].from, bob);
    assert_eq!(all[0].ts, 100);
    assert_eq!(all[0].cmid, Some(cmid("a0")));

    let only_lobby = ExportFilter {
        rooms: vec![lobby.clone()],
        ..ExportFilter::default()
    };
    let lobby_seqs: Vec<u64> = export_all(store, &only_lobby, 10)
        .await
        .iter()
        .map(|m| m.seq.0)
        .collect();
    assert_eq!(lobby_seqs, [1, 2, 3]);

    let two_rooms = ExportFilter {
        rooms: vec![lobby.clone(), annex.clone(), lobby.clone()],
        ..ExportFilter::default()
    };
    let both: Vec<(String, u64)> = export_all(store, &two_rooms, 2)
        .await
        .iter()
        .map(|m| (m.room.to_string(), m.seq.0))
        .collect();
    assert_eq!(
        both,
        [
            ("annex", 1),
            ("annex", 2),
            ("annex", 3),
            ("lobby", 1),
            ("lobby", 2),
            ("lobby", 3)
        ]
        .map(|(r, s)| (r.to_owned(), s)),
        "pages cross from one filtered room to the next"
    );

    let window = ExportFilter {
        since_ms: Some(200),
        until_ms: Some(300),
        ..ExportFilter::default()
    };
    let in_window: Vec<(String, u64)> = export_all(store, &window, 10)
        .await
        .iter()
        .map(|m| (m.room.to_string(), m.seq.0))
        .collect();
    assert_eq!(
        in_window,
        [("annex".to_owned(), 2), ("lobby".to_owned(), 2)],
        "since inclusive, until exclusive"
    );
}

pub async fn import_keeps_identities_and_is_idempotent(store: &Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    store.create_user(&alice, b"a").await.unwrap();
    let lobby = room("lobby");
    let dm = RoomId::direct(&alice, &bob).unwrap();
    let exported: Vec<Message> = (1..=5)
        .map(|seq| Message {
            room: lobby.clone(),
            seq: Seq(seq),
            from: if seq % 2 == 0 {
                bob.clone()
            } else {
                alice.clone()
            },
            body: format!("old {seq}"),
            ts: 1_000 + i64::try_from(seq).unwrap(),
            cmid: Some(cmid(&format!("c{seq}"))),
        })
        .chain([Message {
            room: dm.clone(),
            seq: Seq(1),
            from: alice.clone(),
            body: "direct".to_owned(),
            ts: 2_000,
            cmid: None,
        }])
        .collect();

    let first = store.import_batch(&exported).await.unwrap();
    assert_eq!(
        first,
        ImportOutcome {
            inserted: 6,
            skipped: 0
        }
    );
    let again = store.import_batch(&exported).await.unwrap();
    assert_eq!(
        again,
        ImportOutcome {
            inserted: 0,
            skipped: 6
        },
        "importing twice adds nothing"
    );

    let record = store.room(&lobby).await.unwrap().unwrap();
    assert_eq!(record.last_seq, Seq(5));
    assert!(!record.private);
    let direct = store.room(&dm).await.unwrap().unwrap();
    assert!(direct.private);
    assert!(
        store.is_member(&dm, &alice).await.unwrap(),
        "existing participant is a member"
    );

    let page = store
        .history(&lobby, HistoryRange::Latest, 10)
        .await
        .unwrap();
    let expected: Vec<Message> = exported[..5].to_vec();
    assert_eq!(
        page.messages, expected,
        "same seq, sender, body, time and cmid"
    );

    // New sends continue after the imported history, and an imported cmid stays idempotent.
    let next = store
        .append_batch(
            &[
                send(&lobby, &alice, "c1", "resend of an imported message"),
                send(&lobby, &alice, "new", "new"),
            ],
            5_000,
        )
        .await
        .unwrap();
    assert!(next[0].duplicate);
    assert_eq!(next[0].message.seq, Seq(1));
    assert_eq!(next[1].message.seq, Seq(6));
    assert!(store.import_batch(&[]).await.unwrap() == ImportOutcome::default());
}

pub async fn retention_deletes_old_messages_in_bounded_batches(store: &Store) {
    let (alice, lobby) = (user("alice"), room("lobby"));
    store.create_room(&lobby, false).await.unwrap();
    for seq in 1..=10 {
        store
            .append_batch(&[send(&lobby, &alice, &format!("m{seq}"), "x")], seq * 100)
            .await
            .unwrap();
    }
    // Messages at 100..=700 are older than 750: seven, deleted three at a time.
    assert_eq!(store.delete_expired(&lobby, 750, 3).await.unwrap(), 3);
    assert_eq!(store.delete_expired(&lobby, 750, 3).await.unwrap(), 3);
    assert_eq!(store.delete_expired(&lobby, 750, 3).await.unwrap(), 1);
    assert_eq!(store.delete_expired(&lobby, 750, 3).await.unwrap(), 0);
    let page = store
        .history(&lobby, HistoryRange::Latest, 50)
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq.0).collect::<Vec<_>>(),
        [8, 9, 10]
    );
    let record = store.room(&lobby).await.unwrap().unwrap();
    assert_eq!(
        record.last_seq,
        Seq(10),
        "sequence numbers are never reused"
    );
    let next = store
        .append_batch(&[send(&lobby, &alice, "after", "x")], 2_000)
        .await
        .unwrap();
    assert_eq!(next[0].message.seq, Seq(11));

    store.set_room_retention(&lobby, Some(7)).await.unwrap();
    assert_eq!(
        store.room(&lobby).await.unwrap().unwrap().retention_days,
        Some(7)
    );
    store.set_room_retention(&lobby, None).await.unwrap();
    assert_eq!(
        store.room(&lobby).await.unwrap().unwrap().retention_days,
        None
    );
    let missing = store
        .set_room_retention(&room("nowhere"), Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );

    let dm = RoomId::direct(&alice, &user("bob")).unwrap();
    store.create_user(&alice, b"a").await.unwrap();
    store.create_user(&user("bob"), b"b").await.unwrap();
    store.ensure_direct_room(&dm).await.unwrap();
    assert_eq!(
        store.all_room_names().await.unwrap(),
        [dm, lobby],
        "direct rooms included"
    );
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub fn room(name: &str) -> RoomId {
    RoomId::parse(name).unwrap()
}

pub fn cmid(id: &str) -> ClientMsgId {
    ClientMsgId::parse(id).unwrap()
}

pub fn send(room: &RoomId, from: &UserId, id: &str, body: &str) -> NewMessage {
    NewMessage {
        room: room.clone(),
        from: from.clone(),
        cmid: cmid(id),
        body: body.to_owned(),
    }
}
