//! The store: the source of truth for users, rooms, messages and resume tokens.
//!
//! Each room has a gap-free sequence assigned at commit. [`Store::append_batch`] commits a
//! batch of sends in one transaction and is only called by the group-commit writer
//! ([`writer`]); a client is acknowledged after that commit. A client message id makes a
//! resend idempotent: `(room, sender, cmid)` is unique, and a resend returns the first
//! commit marked as a duplicate.
//!
//! Backends are small, each with native types and its own migrations (`daemon/migrations/`),
//! behind this one enum; the store test suite runs against every backend.
//!
//! # Layout
//! - this file: the `Store` enum, its records and [`StoreError`].
//! - `sqlite`: the embedded default backend.
//! - `postgres`: the production backend; several daemons may share one database.
//! - `batch`: the per-batch bookkeeping both backends share (resend keys, slots).
//! - `rows`: stored columns to protocol types (ids, sequence numbers, history rows), for both.
//! - `writer`: the group-commit writer task and its bounded queue.
//! - `suite` (`tests/suite.rs`): the checks every backend must pass; public with the
//!   `test-suite` feature so the integration tests run them against PostgreSQL.
//! - `tests`: runs the suite against SQLite, and the writer's tests.

mod batch;
pub mod postgres;
mod rows;
pub mod sqlite;
pub mod writer;

#[cfg(any(test, feature = "test-suite"))]
#[path = "tests/suite.rs"]
#[expect(
    clippy::unwrap_used,
    reason = "the checks fail the test on an unexpected result, like tests"
)]
pub mod suite;

/// Invokes `$run!` with the name of every check in [`suite`], so each backend's test runner
/// (SQLite in `store/tests.rs`, PostgreSQL in the integration tests) takes the list from this
/// one place: a new check runs against every backend.
#[cfg(any(test, feature = "test-suite"))]
#[macro_export]
macro_rules! with_store_suite_checks {
    ($run:ident) => {
        $run!(
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
    };
}

use protocol::{ClientMsgId, Message, RoomId, Seq, UserId};
use sqlx::migrate::{Migrate, MigrateError, Migrator};

/// A send waiting to be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The room; it must exist (the session checks before queuing).
    pub room: RoomId,
    /// The sender.
    pub from: UserId,
    /// The sender's client message id.
    pub cmid: ClientMsgId,
    /// The text.
    pub body: String,
}

/// The outcome of committing one [`NewMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The message as stored (with its sequence number and commit time).
    pub message: Message,
    /// True when `(room, from, cmid)` was already stored: `message` is the first commit and
    /// nothing new was written, so nothing must be broadcast again.
    pub duplicate: bool,
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user name.
    pub name: UserId,
    /// The OPAQUE password file (`ServerRegistration`), serialized.
    pub password_file: Vec<u8>,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// A room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    /// The room name.
    pub name: RoomId,
    /// Only members may join.
    pub private: bool,
    /// The sequence number of the latest message (0 when empty).
    pub last_seq: Seq,
    /// Number of explicit members.
    pub members: u32,
    /// Days of history kept for this room; `None` means the global `retention.days`.
    pub retention_days: Option<u32>,
}

/// Which page of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRange {
    /// The newest messages.
    Latest,
    /// Messages with a sequence number below this one, newest of them first chosen.
    Before(Seq),
    /// Messages with a sequence number above this one, oldest of them first chosen.
    After(Seq),
}

/// One page of history, oldest message first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// The messages, ascending by sequence number.
    pub messages: Vec<Message>,
    /// Whether more messages exist beyond the page in the requested direction.
    pub has_more: bool,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the operation failed in it; retryable.
    #[error("store unavailable during {op}: {source}")]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// The named user or room does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was missing, e.g. "user alice".
        what: String,
    },
    /// The user or room already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists, e.g. "room lobby".
        what: String,
    },
    /// Stored data that cannot be read back (corruption or a bug).
    #[error("corrupt store data: {detail}")]
    Corrupt {
        /// What was wrong.
        detail: String,
    },
    /// Migrations failed at start-up.
    #[error("store migration failed: {0}")]
    Migrate(#[from] MigrateError),
    /// Automatic migration is off and the database lacks migrations this chatd needs.
    #[error(
        "the database schema is older than this chatd needs ({pending} migration(s) pending); \
         run `chatctl db migrate`, or set store.run_migrations = true"
    )]
    SchemaOutdated {
        /// How many migrations are pending.
        pending: usize,
    },
    /// The URL names a database this chatd cannot use.
    #[error("unsupported store URL scheme `{scheme}`: use sqlite://PATH or postgres://...")]
    UnsupportedUrl {
        /// The scheme given.
        scheme: String,
    },
}

/// The store, whichever backend.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite, the embedded default.
    Sqlite(sqlite::SqliteStore),
    /// PostgreSQL, for production and several daemons on one database.
    Postgres(postgres::PgStore),
}

/// Dispatches a method to the backend.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(store) => store.$method($($arg),*).await,
            Store::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens the store named by `settings`, choosing the backend by the URL's scheme
    /// (`sqlite:`, `postgres:` or `postgresql:`), and runs its migrations (with
    /// `run_migrations` off, checks that none is pending instead).
    ///
    /// # Errors
    /// `UnsupportedUrl` for another scheme; `Unavailable` when the database cannot be
    /// reached; `SchemaOutdated` or `Migrate` when its schema is not what this chatd needs.
    pub async fn open(settings: &StoreSettings) -> Result<Self, StoreError> {
        let scheme = settings
            .url
            .split_once(':')
            .map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Self::Sqlite(sqlite::SqliteStore::open(settings).await?)),
            "postgres" | "postgresql" => {
                Ok(Self::Postgres(postgres::PgStore::open(settings).await?))
            }
            other => Err(StoreError::UnsupportedUrl {
                scheme: other.to_owned(),
            }),
        }
    }

    /// The backend's name, for status and logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// One round trip to the database (`SELECT 1` through the pool), for readiness checks.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// Creates a user with an OPAQUE password file.
    ///
    /// # Errors
    /// `AlreadyExists` when the name is taken.
    pub async fn create_user(&self, user: &UserId, password_file: &[u8]) -> Result<(), StoreError> {
        dispatch!(self.create_user(user, password_file))
    }

    /// Replaces a user's password file and revokes their resume tokens.
    ///
    /// # Errors
    /// `NotFound` when there is no such user.
    pub async fn set_password(
        &self,
        user: &UserId,
        password_file: &[u8],
    ) -> Result<(), StoreError> {
        dispatch!(self.set_password(user, password_file))
    }

    /// Looks a user up.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn user(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        dispatch!(self.user(user))
    }

    /// Every user, by name.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        dispatch!(self.users())
    }

    /// Disables or enables a user. Disabling also revokes their resume tokens.
    ///
    /// # Errors
    /// `NotFound` when there is no such user.
    pub async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<(), StoreError> {
        dispatch!(self.set_disabled(user, disabled))
    }

    /// Returns the secret stored under `name`, storing `generated` first if there is none.
    /// Concurrent callers (several nodes at first start) all get the same stored value.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn load_or_insert_secret(
        &self,
        name: &str,
        generated: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        dispatch!(self.load_or_insert_secret(name, generated))
    }

    /// Creates a room.
    ///
    /// # Errors
    /// `AlreadyExists` when the name is taken.
    pub async fn create_room(&self, room: &RoomId, private: bool) -> Result<(), StoreError> {
        dispatch!(self.create_room(room, private))
    }

    /// Looks a room up.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn room(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        dispatch!(self.room(room))
    }

    /// Every room except direct-message rooms, by name.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        dispatch!(self.rooms())
    }

    /// Adds a member to a room (idempotent).
    ///
    /// # Errors
    /// `NotFound` when the room or user does not exist.
    pub async fn add_member(&self, room: &RoomId, user: &UserId) -> Result<(), StoreError> {
        dispatch!(self.add_member(room, user))
    }

    /// Removes a member from a room.
    ///
    /// # Errors
    /// `NotFound` when the room does not exist or the user is not a member.
    pub async fn remove_member(&self, room: &RoomId, user: &UserId) -> Result<(), StoreError> {
        dispatch!(self.remove_member(room, user))
    }

    /// Whether the user is a member of the room.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn is_member(&self, room: &RoomId, user: &UserId) -> Result<bool, StoreError> {
        dispatch!(self.is_member(room, user))
    }

    /// Creates the private direct-message room `room` (`dm:a:b`) with both participants as
    /// members, if it does not exist yet.
    ///
    /// # Errors
    /// `NotFound` when `room` is not a direct room or a participant does not exist (then
    /// nothing is created); `Unavailable` when the store is.
    pub async fn ensure_direct_room(&self, room: &RoomId) -> Result<(), StoreError> {
        dispatch!(self.ensure_direct_room(room))
    }

    /// Commits a batch of sends in one transaction, assigning each new message the next
    /// sequence number of its room and the commit time `now_ms`. The result has one entry
    /// per input, in input order. Sends whose `(room, from, cmid)` is already stored (also
    /// earlier in the same batch) return the stored message with `duplicate = true`.
    ///
    /// # Errors
    /// When the transaction fails; then nothing of the batch is stored. A room of the batch
    /// that does not exist fails the whole batch with `NotFound` (the session checks rooms
    /// before queuing, so that is a bug, not a condition to serve around).
    pub async fn append_batch(
        &self,
        batch: &[NewMessage],
        now_ms: i64,
    ) -> Result<Vec<Committed>, StoreError> {
        dispatch!(self.append_batch(batch, now_ms))
    }

    /// A page of at most `limit` messages of `room`, oldest first.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn history(
        &self,
        room: &RoomId,
        range: HistoryRange,
        limit: u32,
    ) -> Result<HistoryPage, StoreError> {
        dispatch!(self.history(room, range, limit))
    }

    /// Stores a resume token (by its SHA-256 hash) for `user`, valid until `expires_ms`.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn insert_resume_token(
        &self,
        token_hash: &[u8],
        user: &UserId,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.insert_resume_token(token_hash, user, expires_ms))
    }

    /// Deletes the token with this hash and returns its user if it had not expired by
    /// `now_ms` and the user is not disabled. A token works once.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn take_resume_token(
        &self,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<UserId>, StoreError> {
        dispatch!(self.take_resume_token(token_hash, now_ms))
    }

    /// One page of an export: at most `limit` messages matching `filter`, in `(room, seq)`
    /// order, strictly after the key `after` (keyset paging, so a caller holds one page at a
    /// time however large the history is).
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn export_page(
        &self,
        filter: &ExportFilter,
        after: Option<(&RoomId, Seq)>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        dispatch!(self.export_page(filter, after, limit))
    }

    /// Stores exported messages as they were (same room, seq, sender, body, time and
    /// cmid) in one transaction. Missing rooms are created (public; direct rooms private
    /// with their two members) and each room's `last_seq` is raised to its highest imported
    /// seq. A message whose `(room, seq)` is already stored is skipped, so importing twice
    /// adds nothing.
    ///
    /// # Errors
    /// When the store is unavailable; then nothing of the batch is stored.
    pub async fn import_batch(&self, messages: &[Message]) -> Result<ImportOutcome, StoreError> {
        dispatch!(self.import_batch(messages))
    }

    /// Deletes at most `limit` of the oldest messages of `room` committed before
    /// `older_than_ms`; returns how many were deleted (0 when none is left). Sequence
    /// numbers are never reused: `last_seq` stays.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn delete_expired(
        &self,
        room: &RoomId,
        older_than_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        dispatch!(self.delete_expired(room, older_than_ms, limit))
    }

    /// Sets (or with `None` clears) the room's own retention in days, overriding the
    /// global `retention.days`; `Some(0)` keeps the room's history forever.
    ///
    /// # Errors
    /// `NotFound` when the room does not exist.
    pub async fn set_room_retention(
        &self,
        room: &RoomId,
        days: Option<u32>,
    ) -> Result<(), StoreError> {
        dispatch!(self.set_room_retention(room, days))
    }

    /// The names of every room, direct rooms included (for retention).
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn all_room_names(&self) -> Result<Vec<RoomId>, StoreError> {
        dispatch!(self.all_room_names())
    }
}

/// What the store needs from the configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Database URL: `sqlite://PATH?mode=rwc`, or `postgres://...` / `postgresql://...`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// Run pending migrations at open. When false, opening fails with
    /// [`StoreError::SchemaOutdated`] if migrations are pending (the operator runs
    /// `chatctl db migrate`).
    pub run_migrations: bool,
    /// How long an operation waits for a database connection before failing with
    /// `Unavailable`; short, so sends fail fast while the database is down.
    pub acquire_timeout: std::time::Duration,
}

impl StoreSettings {
    /// Settings for `url` with a pool of `max_connections`, migrating at open and waiting at
    /// most two seconds for a connection.
    pub fn new(url: impl Into<String>, max_connections: u32) -> Self {
        Self {
            url: url.into(),
            max_connections,
            run_migrations: true,
            acquire_timeout: std::time::Duration::from_secs(2),
        }
    }
}

/// Which messages an export covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// Only these rooms; empty means every room (direct rooms included).
    pub rooms: Vec<RoomId>,
    /// Only messages committed at or after this time (milliseconds since the epoch).
    pub since_ms: Option<i64>,
    /// Only messages committed before this time (milliseconds since the epoch).
    pub until_ms: Option<i64>,
}

/// What an import batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Messages stored.
    pub inserted: u64,
    /// Messages skipped because a message with the same `(room, seq)` was already stored.
    pub skipped: u64,
}

/// Runs `migrator`'s pending migrations on `pool`, or with `run` false only checks that none
/// is pending: then the bookkeeping table is read, never created, so a database user without
/// the right to change the schema can run chatd once an operator has migrated.
///
/// # Errors
/// `SchemaOutdated` when migrations are pending and `run` is false; `Migrate` when a
/// migration fails or one failed earlier; `Unavailable` when no connection is available.
async fn prepare_schema<DB>(
    migrator: &Migrator,
    pool: &sqlx::Pool<DB>,
    run: bool,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    if run {
        migrator.run(pool).await?;
        return Ok(());
    }
    let mut connection = pool
        .acquire()
        .await
        .map_err(|source| StoreError::Unavailable {
            op: "check schema",
            source,
        })?;
    let applied = match connection
        .list_applied_migrations(&migrator.table_name)
        .await
    {
        Ok(applied) => applied,
        // A database no chatd has migrated yet: every migration is pending.
        Err(MigrateError::Execute(sqlx::Error::Database(error))) if is_undefined_table(&*error) => {
            Vec::new()
        }
        Err(error) => return Err(error.into()),
    };
    if !applied.is_empty()
        && let Some(version) = connection.dirty_version(&migrator.table_name).await?
    {
        return Err(MigrateError::Dirty(version).into());
    }
    let pending = migrator
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .filter(|migration| !applied.iter().any(|done| done.version == migration.version))
        .count();
    if pending == 0 {
        Ok(())
    } else {
        Err(StoreError::SchemaOutdated { pending })
    }
}

/// Whether `error` says a table does not exist: SQLSTATE 42P01 in PostgreSQL, "no such table"
/// in SQLite (which has no finer error code for it).
fn is_undefined_table(error: &dyn sqlx::error::DatabaseError) -> bool {
    error.code().as_deref() == Some("42P01") || error.message().starts_with("no such table")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
