//! The SQL of the PostgreSQL message path: committing, history, export and retention.
//!
//! Public so the query-plan check (`tests/tests/it/store_postgres_plans.rs`, described in
//! `docs/store.md`) explains exactly the statements the store runs. Lists travel as arrays
//! (`unnest`, `= ANY`) rather than as one `VALUES` row per entry: the text of each statement
//! is the same for every batch size, so each is parsed and planned once per connection and
//! stays in sqlx's statement cache.
//!
//! Except the reads of `messages` (history, export): those run unprepared and are planned per
//! call (the commit function instead runs with sequential scans off). A prepared statement
//! switches to a generic plan after five runs, and on a young table (never analyzed, a few pages) that plan is a sequential scan which then
//! stays cached on the connection while the table grows: measured on a fresh database, the
//! resend lookup degraded to 747 sequential scans reading 9 million rows in one 20,000-message
//! run (4.9 ms per batch, 3,430 acked sends/s). Planning per call costs a fraction of a
//! millisecond and always sees the table's real size.

/// Commits a batch: `$1..$4` are the sends' rooms, senders, client message ids and bodies,
/// `$5` the commit time. One row per send, in order: sequence number, stored body, stored
/// time, and whether it was a resend. See `migrations/postgres/0002_commit_function.sql`.
pub const APPEND_BATCH: &str = "SELECT o_seq, o_body, o_ts_ms, o_duplicate \
     FROM chatd_append_batch($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint)";

/// The SQLSTATE with which [`APPEND_BATCH`] fails when a room does not exist; the error's
/// detail is the room's name.
pub const APPEND_ROOM_MISSING: &str = "CHD01";

/// The already committed messages among the keys `($1[i], $2[i], $3[i])` = (room, sender,
/// cmid), as [`APPEND_BATCH`] looks them up: one probe of the `(room, sender, cmid)` unique
/// index per key. The SQL function is inlined, so EXPLAIN shows the probes.
pub const FIND_STORED: &str =
    "SELECT idx, seq, body, ts_ms FROM chatd_stored_messages($1::text[], $2::text[], $3::text[])";

/// The newest `$2` messages of room `$1`, newest first.
pub const HISTORY_LATEST: &str = "SELECT seq, sender, cmid, body, ts_ms FROM messages \
     WHERE room = $1 ORDER BY seq DESC LIMIT $2";

/// The `$3` messages of room `$1` just below seq `$2`, newest first.
pub const HISTORY_BEFORE: &str = "SELECT seq, sender, cmid, body, ts_ms FROM messages \
     WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";

/// The `$3` messages of room `$1` just above seq `$2`, oldest first.
pub const HISTORY_AFTER: &str = "SELECT seq, sender, cmid, body, ts_ms FROM messages \
     WHERE room = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3";

/// An export page over every room: the `$5` messages after key `($1, $2)` in `(room, seq)`
/// order with `$3 <= ts_ms < $4`. The row comparison is an index condition on the primary
/// key, so each page starts where the previous one ended.
pub const EXPORT_PAGE: &str = "SELECT room, seq, sender, cmid, body, ts_ms FROM messages \
     WHERE (room, seq) > ($1, $2) AND ts_ms >= $3 AND ts_ms < $4 \
     ORDER BY room, seq LIMIT $5";

/// [`EXPORT_PAGE`] limited to the rooms `$6`.
pub const EXPORT_PAGE_OF_ROOMS: &str = "SELECT room, seq, sender, cmid, body, ts_ms \
     FROM messages \
     WHERE (room, seq) > ($1, $2) AND ts_ms >= $3 AND ts_ms < $4 AND room = ANY($6) \
     ORDER BY room, seq LIMIT $5";

/// Deletes, of the `$3` oldest messages of room `$1`, those committed before `$2`. Only
/// those `$3` rows of the primary key are read, so sweeping a room with nothing expired is
/// cheap however long its history.
pub const DELETE_EXPIRED: &str = "DELETE FROM messages WHERE room = $1 AND seq IN ( \
         SELECT seq FROM ( \
             SELECT seq, ts_ms FROM messages WHERE room = $1 ORDER BY seq LIMIT $3 \
         ) AS oldest WHERE ts_ms < $2)";

/// Stores imported messages given column by column, skipping any whose `(room, seq)` or
/// `(room, sender, cmid)` is already stored (imported or sent before).
pub const IMPORT_MESSAGES: &str = "INSERT INTO messages (room, seq, sender, cmid, body, ts_ms) \
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                          $6::bigint[]) \
     ON CONFLICT DO NOTHING";
