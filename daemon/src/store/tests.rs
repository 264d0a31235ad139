//! Store tests. `suite` holds the checks every backend must pass, each a function taking a
//! [`Store`] that is empty and migrated; this file runs them against SQLite files in temporary
//! directories (the integration tests run them against PostgreSQL), and checks opening:
//! choosing the backend by URL, migrations, the schema check with migrations off. `writer`
//! tests the group-commit writer on SQLite.

use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tempfile::TempDir;

use super::sqlite::SqliteStore;
use super::{Store, StoreError, StoreSettings, suite};

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

crate::with_store_suite_checks!(sqlite_suite);

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
        matches!(error, StoreError::Unavailable { op: "open", .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn sqlite_without_migrations_refuses_an_unmigrated_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chatd.db").display()
    );
    let mut settings = StoreSettings::new(url, 2);
    settings.run_migrations = false;
    let error = Store::open(&settings).await.unwrap_err();
    let pending = sqlx::migrate!("./migrations/sqlite").iter().count();
    assert!(
        matches!(error, StoreError::SchemaOutdated { pending: p } if p == pending),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("run `chatctl db migrate`"),
        "{error}"
    );

    // Once migrated (by a daemon with migrations on), it opens without running any.
    settings.run_migrations = true;
    Store::open(&settings).await.unwrap();
    settings.run_migrations = false;
    let store = Store::open(&settings).await.unwrap();
    store
        .create_room(&suite::room("lobby"), false)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused_by_name() {
    let settings = StoreSettings::new("mysql://db.example/chat", 1);
    let error = Store::open(&settings).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::UnsupportedUrl { scheme } if scheme == "mysql"),
        "{error:?}"
    );
}

#[tokio::test]
async fn postgres_urls_choose_the_postgres_backend() {
    // Nothing listens on port 1: opening fails fast as unavailable, which shows the URL went
    // to the PostgreSQL backend (the integration tests run it against a real server).
    for scheme in ["postgres", "postgresql"] {
        let mut settings = StoreSettings::new(format!("{scheme}://chatd@127.0.0.1:1/chatd"), 1);
        settings.acquire_timeout = Duration::from_millis(500);
        let error = Store::open(&settings).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Unavailable { op: "open", .. }),
            "{scheme}: {error:?}"
        );
    }
}
