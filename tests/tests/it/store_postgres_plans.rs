//! Query plans of the PostgreSQL store at scale: loads 10,000,000 messages (300 rooms of
//! 20,000 and one hot room of 4,000,000, interleaved in commit-time order as real traffic
//! writes them), then EXPLAINs (ANALYZE, BUFFERS) the statements the store runs, with the
//! custom plan (first executions of a prepared statement) and the generic plan (what
//! Postgres may switch to after five), and checks that each uses an index and touches few
//! buffers. The results are written up in `docs/store.md`.
//!
//! Not part of the normal run (it takes minutes and a few GB of disk); run with
//! `cargo test -p chatd-tests --test it stress_postgres_query_plans -- --ignored --nocapture`
//! (Postgres does the work; a debug build of the test is fine).

use chatd::store::postgres::statements::{
    DELETE_EXPIRED, EXPORT_PAGE, EXPORT_PAGE_OF_ROOMS, FIND_STORED, HISTORY_AFTER, HISTORY_BEFORE,
    HISTORY_LATEST,
};
use chatd::store::{ExportFilter, HistoryRange, Store, StoreSettings};
use chatd_tests::TestPostgres;
use protocol::Seq;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use crate::support::room;

/// Commit times start here (2023-11-14) and every message is 25 ms after the previous one of
/// its room in the hot room, 5 s in the others, so both span the same ~28 hours.
const T0: i64 = 1_700_000_000_000;
const HOT_MESSAGES: i64 = 4_000_000;
const ROOMS: i64 = 300;
const PER_ROOM: i64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "loads 10 million rows; run by hand, see docs/store.md"]
async fn stress_postgres_query_plans_at_scale() {
    let server = TestPostgres::start_with(&[
        ("shared_buffers", "2GB"),
        ("maintenance_work_mem", "1GB"),
        ("work_mem", "256MB"),
        ("max_wal_size", "16GB"),
    ])
    .await;
    let url = server.create_database().await;
    let store = Store::open(&StoreSettings::new(url.clone(), 4))
        .await
        .unwrap();
    let mut db = PgConnection::connect(&url).await.unwrap();
    load(&mut db).await;

    let hot_middle = HOT_MESSAGES / 2;
    let cold = "room-150";
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "history latest, hot room",
            HISTORY_LATEST,
            "('hot', 51)".into(),
        ),
        (
            "history latest, 20k room",
            HISTORY_LATEST,
            format!("('{cold}', 51)"),
        ),
        (
            "history before, middle of hot room",
            HISTORY_BEFORE,
            format!("('hot', {hot_middle}, 51)"),
        ),
        (
            "history after, middle of hot room",
            HISTORY_AFTER,
            format!("('hot', {hot_middle}, 51)"),
        ),
        (
            "export page (1000) from the middle of a 20k room",
            EXPORT_PAGE,
            format!(
                "('{cold}', 10000, {min}, {max}, 1000)",
                min = i64::MIN,
                max = i64::MAX
            ),
        ),
        (
            "export page (1000) from the middle of the hot room",
            EXPORT_PAGE,
            format!("('hot', {hot_middle}, {}, {}, 1000)", i64::MIN, i64::MAX),
        ),
        (
            "export page (1000) of two rooms",
            EXPORT_PAGE_OF_ROOMS,
            format!(
                "('room-150', 19500, {}, {}, 1000, ARRAY['room-150', 'room-151'])",
                i64::MIN,
                i64::MAX
            ),
        ),
        (
            "retention delete, 1000 expired in the hot room",
            DELETE_EXPIRED,
            format!("('hot', {}, 1000)", T0 + HOT_MESSAGES * 25),
        ),
        (
            "retention delete, nothing expired in the hot room",
            DELETE_EXPIRED,
            format!("('hot', {T0}, 1000)"),
        ),
        (
            "resend lookup, 100 keys in the hot room",
            FIND_STORED,
            resend_keys(),
        ),
    ];
    let mut failures = Vec::new();
    for (what, sql, args) in &cases {
        let mut costs = Vec::new();
        for mode in ["force_custom_plan", "force_generic_plan", "auto"] {
            let plan = explain(&mut db, sql, args, mode).await;
            let buffers = top_buffers(&plan);
            let time = execution_ms(&plan);
            // The estimated cost of the top node tells which plan `auto` ended up with.
            let cost = plan.split(" (actual").next().unwrap_or_default().to_owned();
            let chosen = match costs.iter().position(|c| *c == cost) {
                Some(0) => " -> custom",
                Some(_) => " -> generic",
                None => "",
            };
            costs.push(cost);
            println!("=== {what} [{mode}{chosen}]: {buffers} buffers, {time:.3} ms\n{plan}\n");
            if plan.contains("Seq Scan on messages") {
                failures.push(format!("{what} [{mode}] scans messages"));
            }
            // A page of 1,000 interleaved messages may sit on 1,000 heap pages; the deletes
            // also touch both indexes per row. Anything scanning a room reads far more.
            let limit = if *sql == DELETE_EXPIRED {
                12_000
            } else {
                2_500
            };
            if buffers > limit {
                failures.push(format!("{what} [{mode}] touched {buffers} buffers"));
            }
        }
    }

    sweep_backlog(&store, &mut db).await;

    // The store itself at this size: the same statements, through the real code.
    let hot = room("hot");
    let page = store.history(&hot, HistoryRange::Latest, 50).await.unwrap();
    assert_eq!(page.messages.last().unwrap().seq, Seq(4_000_000));
    let page = store
        .history(&hot, HistoryRange::Before(Seq(2_000_000)), 50)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 50);
    let exported = store
        .export_page(&ExportFilter::default(), Some((&hot, Seq(3_999_990))), 100)
        .await
        .unwrap();
    assert_eq!(exported.len(), 100);
    assert_eq!(exported[10].room.as_str(), "room-000");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A retention sweep through a backlog: the older half of the hot room expires and the store
/// deletes it batch after committed batch, as the retention task does. Postgres leaves the
/// deleted rows' index entries in place until vacuum, so every batch starts by walking past
/// those of the batches before it; this shows what that costs before autovacuum catches up.
async fn sweep_backlog(store: &Store, db: &mut PgConnection) {
    const BATCHES: usize = 500;
    let hot = room("hot");
    let cutoff = T0 + HOT_MESSAGES / 2 * 25;
    let mut times = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let started = std::time::Instant::now();
        let deleted = store.delete_expired(&hot, cutoff, 1_000).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1_000.0);
        assert_eq!(deleted, 1_000);
    }
    println!(
        "=== sweep of {BATCHES} batches of 1000 (hot room): batch 1 {:.1} ms, 100 {:.1} ms, \
         250 {:.1} ms, 500 {:.1} ms, total {:.0} ms",
        times[0],
        times[99],
        times[249],
        times[BATCHES - 1],
        times.iter().sum::<f64>()
    );
    let args = format!("('hot', {cutoff}, 1000)");
    let plan = explain(db, DELETE_EXPIRED, &args, "force_custom_plan").await;
    println!(
        "=== retention delete after the sweep, before vacuum: {} buffers, {:.3} ms\n{plan}\n",
        top_buffers(&plan),
        execution_ms(&plan)
    );
    sqlx::raw_sql("VACUUM messages")
        .execute(&mut *db)
        .await
        .unwrap();
    let plan = explain(db, DELETE_EXPIRED, &args, "force_custom_plan").await;
    println!(
        "=== retention delete after the sweep and VACUUM: {} buffers, {:.3} ms\n{plan}\n",
        top_buffers(&plan),
        execution_ms(&plan)
    );
}

/// Fills the migrated database: rooms, then every message in commit-time order (so a room's
/// messages are spread over the heap as live traffic spreads them), then ANALYZE.
async fn load(db: &mut PgConnection) {
    let statements = [
        "SET synchronous_commit = off".to_owned(),
        format!(
            "INSERT INTO rooms (name, private, last_seq, created_ms) \
             SELECT 'room-' || lpad(r::text, 3, '0'), FALSE, {PER_ROOM}, {T0} \
             FROM generate_series(0, {last}) AS r",
            last = ROOMS - 1
        ),
        format!(
            "INSERT INTO rooms (name, private, last_seq, created_ms) \
             VALUES ('hot', FALSE, {HOT_MESSAGES}, {T0})"
        ),
        format!(
            "INSERT INTO messages (room, seq, sender, cmid, body, ts_ms) \
             SELECT room, seq, sender, cmid, body, ts_ms FROM ( \
                 SELECT 'hot' AS room, s AS seq, 'user' || (s % 997) AS sender, \
                        'c' || s AS cmid, 'a message of ordinary length, number ' || s AS body, \
                        {T0} + s * 25 AS ts_ms \
                 FROM generate_series(1, {HOT_MESSAGES}) AS s \
                 UNION ALL \
                 SELECT 'room-' || lpad(r::text, 3, '0'), s, 'user' || ((r * 31 + s) % 997), \
                        'c' || s, 'a message of ordinary length, number ' || s, \
                        {T0} + s * 5000 + r \
                 FROM generate_series(0, {last}) AS r, generate_series(1, {PER_ROOM}) AS s \
             ) AS m ORDER BY ts_ms",
            last = ROOMS - 1
        ),
        "VACUUM (ANALYZE) messages".to_owned(),
        "ANALYZE rooms".to_owned(),
    ];
    for statement in statements {
        let started = std::time::Instant::now();
        sqlx::raw_sql(AssertSqlSafe(statement.clone()))
            .execute(&mut *db)
            .await
            .unwrap();
        let head: String = statement.chars().take(60).collect();
        println!("{:>8.1} s  {head}...", started.elapsed().as_secs_f64());
    }
    let sizes: Vec<(String, String)> = sqlx::query_as(
        "SELECT relname::text, pg_size_pretty(pg_relation_size(oid)) FROM pg_class \
         WHERE relname IN ('messages', 'messages_pkey', 'messages_room_sender_cmid_key') \
         ORDER BY relname",
    )
    .fetch_all(&mut *db)
    .await
    .unwrap();
    println!("sizes: {sizes:?}");
}

/// 100 keys of the hot room, spread over its history, as `(rooms, senders, cmids)` arrays.
fn resend_keys() -> String {
    let seqs: Vec<i64> = (0..100).map(|i| 1 + i * (HOT_MESSAGES / 100)).collect();
    let quoted = |values: Vec<String>| {
        let items: Vec<String> = values.into_iter().map(|v| format!("'{v}'")).collect();
        format!("ARRAY[{}]", items.join(", "))
    };
    format!(
        "({}, {}, {})",
        quoted(vec!["hot".to_owned(); seqs.len()]),
        quoted(seqs.iter().map(|s| format!("user{}", s % 997)).collect()),
        quoted(seqs.iter().map(|s| format!("c{s}")).collect()),
    )
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of `sql` prepared and executed with `args` under
/// `plan_cache_mode = mode`, run twice so the second (reported) run sees a warm cache;
/// data-changing statements are rolled back. With `auto` the statement first runs six times,
/// as the store's cached statements do: from the sixth execution on Postgres compares the
/// generic plan with the custom ones and may keep it.
async fn explain(db: &mut PgConnection, sql: &str, args: &str, mode: &str) -> String {
    let mut plan = String::new();
    for _ in 0..2 {
        let mut tx = db.begin().await.unwrap();
        for setup in [
            format!("SET LOCAL plan_cache_mode = {mode}"),
            format!("PREPARE planned AS {sql}"),
        ] {
            sqlx::raw_sql(AssertSqlSafe(setup))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        if mode == "auto" {
            for _ in 0..6 {
                sqlx::raw_sql(AssertSqlSafe(format!("EXECUTE planned {args}")))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
        }
        let rows: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE planned {args}"
        )))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        sqlx::raw_sql("DEALLOCATE planned")
            .execute(&mut *db)
            .await
            .unwrap();
        plan = rows
            .into_iter()
            .map(|(line,)| line)
            .collect::<Vec<_>>()
            .join("\n");
    }
    plan
}

/// Shared buffers (hit + read) of the top plan node, which counts its children's too.
fn top_buffers(plan: &str) -> u64 {
    let Some(line) = plan
        .lines()
        .find(|l| l.trim_start().starts_with("Buffers:"))
    else {
        return 0;
    };
    ["hit=", "read="]
        .iter()
        .filter_map(|key| {
            let start = line.find(key)? + key.len();
            let digits: String = line[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

fn execution_ms(plan: &str) -> f64 {
    plan.lines()
        .find_map(|l| l.trim().strip_prefix("Execution Time: "))
        .and_then(|rest| rest.trim_end_matches(" ms").parse().ok())
        .unwrap_or(f64::NAN)
}
