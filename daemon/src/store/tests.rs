//! Store tests. `suite` holds the checks every backend must pass, each a function taking a
//! [`Store`] that is empty and migrated; this file runs them against SQLite files in temporary
//! directories. `writer` tests the group-commit writer on SQLite.

use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tempfile::TempDir;

use super::sqlite::SqliteStore;
use super::{Store, StoreSettings};

mod suite;
mod writer;

/// A migrated SQLite store in a temporary directory, removed on drop.
pub(crate) struct TempSqlite {
    pub(crate) store: Store,
    url: String,
    _dir: TempDir,
}

impl TempSqlite {
    pub(crate) async fn new() -> Self {
        Self::with_busy_timeout(Duration::from_secs(10)).await
    }

    pub(crate) async fn with_busy_timeout(busy_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("chatd.db").display()
        );
        let settings = StoreSettings::new(url.clone(), 4);
        let store = SqliteStore::open_with_busy_timeout(&settings, busy_timeout)
            .await
            .unwrap();
        Self {
            store: Store::Sqlite(store),
            url,
            _dir: dir,
        }
    }

    /// Takes the database's write lock from another connection, as a second process would;
    /// every write through the store waits (up to its busy timeout) until it is released.
    pub(crate) async fn lock_writes(&self) -> WriteLock {
        let mut connection = SqliteConnection::connect(&self.url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .unwrap();
        WriteLock { connection }
    }
}

/// The write lock held by [`TempSqlite::lock_writes`].
pub(crate) struct WriteLock {
    connection: SqliteConnection,
}

impl WriteLock {
    pub(crate) async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.connection)
            .await
            .unwrap();
        self.connection.close().await.unwrap();
    }
}

/// Runs each named check of [`suite`] as its own test, on a fresh SQLite store.
macro_rules! sqlite_suite {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let db = TempSqlite::new().await;
            suite::$check(&db.store).await;
        }
    )*};
}

sqlite_suite!(
    users_are_created_once_and_updated,
    rooms_and_members,
    direct_rooms_are_private_and_unlisted,
    append_numbers_each_room_from_one_in_input_order,
    append_is_gap_free_under_concurrent_batches,
    resend_returns_the_first_commit,
    resend_within_one_batch_returns_the_first_entry,
    append_to_a_missing_room_stores_nothing,
    history_pages_both_ways,
    resume_tokens_work_once_and_only_while_valid,
    resume_tokens_die_with_disable_and_new_password,
    secret_is_inserted_once,
    export_pages_in_room_seq_order_with_filters,
    import_keeps_identities_and_is_idempotent,
    retention_deletes_old_messages_in_bounded_batches,
);

#[tokio::test]
async fn sqlite_reopen_keeps_data_and_skips_applied_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested.db").display());
    let settings = StoreSettings::new(url, 2);
    let room = protocol::RoomId::parse("lobby").unwrap();
    {
        let store = Store::open(&settings).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        store.create_room(&room, false).await.unwrap();
    }
    let store = Store::open(&settings).await.unwrap();
    assert!(store.room(&room).await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_unreachable_file_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("missing-dir").join("chatd.db").display()
    );
    let settings = StoreSettings::new(url, 1);
    let error = Store::open(&settings).await.unwrap_err();
    assert!(
        matches!(error, super::StoreError::Unavailable { op: "open", .. }),
        "{error:?}"
    );
}
