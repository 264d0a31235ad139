//! SQLite backend, the embedded default: one database file in WAL mode, opened with
//! `synchronous=FULL` so a commit (and with it every acknowledged send) survives power loss.
//! The group-commit writer pays that fsync once per batch, not once per message.
//!
//! Write transactions start with `BEGIN IMMEDIATE`: a deferred transaction that reads first and
//! then writes fails at once with `SQLITE_BUSY` when another connection committed in between,
//! while an immediate one waits for the write lock (up to the busy timeout) and then cannot fail
//! that way. Single-statement writes lock by themselves.
//!
//! The SQL sticks to what Postgres also accepts (`$N` parameters, `ON CONFLICT`, `RETURNING`,
//! `WITH ... AS (VALUES ...)`), so the Postgres backend can reuse the statements; only types and
//! `BEGIN IMMEDIATE` are SQLite's own.
//!
//! This file holds opening, accounts, rooms and resume tokens; `messages` holds the message
//! path (committing batches, history).

use std::str::FromStr;
use std::time::Duration;

use protocol::ids::DIRECT_ROOM_PREFIX;
use protocol::{RoomId, UserId};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::rows::{corrupt, seq_value, user_id, user_not_found};
use super::{RoomRecord, StoreError, StoreSettings, UserRecord, now_ms};

mod messages;
mod transfer;

/// The SQLite store: a pool of connections to one database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `settings.url` and runs the migrations.
    ///
    /// Use a file: `sqlite::memory:` gives each pooled connection its own empty database.
    ///
    /// # Errors
    /// When the URL is invalid, the file cannot be opened or a migration fails.
    pub async fn open(settings: &StoreSettings) -> Result<Self, StoreError> {
        Self::open_with_busy_timeout(settings, BUSY_TIMEOUT).await
    }

    /// [`Self::open`] with another busy timeout: how long a write waits for the database lock
    /// held by another connection (or process) before it fails as unavailable.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub async fn open_with_busy_timeout(
        settings: &StoreSettings,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        const OP: &str = "open";
        let options = SqliteConnectOptions::from_str(&settings.url)
            .map_err(failed(OP))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .connect_with(options)
            .await
            .map_err(failed(OP))?;
        super::prepare_schema(&MIGRATOR, &pool, settings.run_migrations).await?;
        Ok(Self { pool })
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(failed("ping"))
    }

    pub(super) async fn create_user(
        &self,
        user: &UserId,
        password_file: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (name, password_file, disabled, created_ms) \
             VALUES ($1, $2, 0, $3)",
        )
        .bind(user.as_str())
        .bind(password_file)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|source| {
            if is_unique_violation(&source) {
                StoreError::AlreadyExists {
                    what: format!("user {user}"),
                }
            } else {
                failed("create user")(source)
            }
        })?;
        Ok(())
    }

    pub(super) async fn set_password(
        &self,
        user: &UserId,
        password_file: &[u8],
    ) -> Result<(), StoreError> {
        const OP: &str = "set password";
        let mut tx = self.begin_write(OP).await?;
        let updated = sqlx::query("UPDATE users SET password_file = $2 WHERE name = $1")
            .bind(user.as_str())
            .bind(password_file)
            .execute(&mut *tx)
            .await
            .map_err(failed(OP))?;
        if updated.rows_affected() == 0 {
            return Err(user_not_found(user));
        }
        revoke_resume_tokens(&mut tx, user, OP).await?;
        tx.commit().await.map_err(failed(OP))
    }

    pub(super) async fn user(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT name, password_file, disabled, created_ms FROM users WHERE name = $1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("read user"))?;
        row.map(UserRow::into_record).transpose()
    }

    pub(super) async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT name, password_file, disabled, created_ms FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list users"))?;
        rows.into_iter().map(UserRow::into_record).collect()
    }

    pub(super) async fn set_disabled(
        &self,
        user: &UserId,
        disabled: bool,
    ) -> Result<(), StoreError> {
        const OP: &str = "set user disabled";
        let mut tx = self.begin_write(OP).await?;
        let updated = sqlx::query("UPDATE users SET disabled = $2 WHERE name = $1")
            .bind(user.as_str())
            .bind(disabled)
            .execute(&mut *tx)
            .await
            .map_err(failed(OP))?;
        if updated.rows_affected() == 0 {
            return Err(user_not_found(user));
        }
        if disabled {
            revoke_resume_tokens(&mut tx, user, OP).await?;
        }
        tx.commit().await.map_err(failed(OP))
    }

    pub(super) async fn load_or_insert_secret(
        &self,
        name: &str,
        generated: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        const OP: &str = "load secret";
        // Whoever inserts first wins; everyone, the winner included, then reads the stored row.
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(generated)
        .execute(&self.pool)
        .await
        .map_err(failed(OP))?;
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(failed(OP))
    }

    pub(super) async fn create_room(&self, room: &RoomId, private: bool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO rooms (name, private, last_seq, created_ms) VALUES ($1, $2, 0, $3)",
        )
        .bind(room.as_str())
        .bind(private)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|source| {
            if is_unique_violation(&source) {
                StoreError::AlreadyExists {
                    what: format!("room {room}"),
                }
            } else {
                failed("create room")(source)
            }
        })?;
        Ok(())
    }

    pub(super) async fn room(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let row: Option<RoomRow> = sqlx::query_as(
            "SELECT r.name, r.private, r.last_seq, r.retention_days, \
                    (SELECT COUNT(*) FROM room_members m WHERE m.room = r.name) AS members \
             FROM rooms r WHERE r.name = $1",
        )
        .bind(room.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("read room"))?;
        row.map(RoomRow::into_record).transpose()
    }

    pub(super) async fn rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let rows: Vec<RoomRow> = sqlx::query_as(
            "SELECT r.name, r.private, r.last_seq, r.retention_days, \
                    (SELECT COUNT(*) FROM room_members m WHERE m.room = r.name) AS members \
             FROM rooms r WHERE r.name NOT LIKE $1 ORDER BY r.name",
        )
        .bind(format!("{DIRECT_ROOM_PREFIX}%"))
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list rooms"))?;
        rows.into_iter().map(RoomRow::into_record).collect()
    }

    pub(super) async fn add_member(&self, room: &RoomId, user: &UserId) -> Result<(), StoreError> {
        const OP: &str = "add member";
        let mut tx = self.begin_write(OP).await?;
        require_room(&mut tx, room, OP).await?;
        require_user(&mut tx, user, OP).await?;
        sqlx::query(
            "INSERT INTO room_members (room, user_name) VALUES ($1, $2) \
             ON CONFLICT (room, user_name) DO NOTHING",
        )
        .bind(room.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .map_err(failed(OP))?;
        tx.commit().await.map_err(failed(OP))
    }

    pub(super) async fn remove_member(
        &self,
        room: &RoomId,
        user: &UserId,
    ) -> Result<(), StoreError> {
        let removed = sqlx::query("DELETE FROM room_members WHERE room = $1 AND user_name = $2")
            .bind(room.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("remove member"))?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: format!("member {user} of room {room}"),
            });
        }
        Ok(())
    }

    pub(super) async fn is_member(&self, room: &RoomId, user: &UserId) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM room_members WHERE room = $1 AND user_name = $2")
                .bind(room.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(failed("check member"))?;
        Ok(found.is_some())
    }

    pub(super) async fn ensure_direct_room(&self, room: &RoomId) -> Result<(), StoreError> {
        const OP: &str = "create direct room";
        let Some((low, high)) = room.direct_participants() else {
            return Err(StoreError::NotFound {
                what: format!("direct room {room}"),
            });
        };
        // Every direct message passes here and the room nearly always exists: check without
        // taking the write lock first.
        if self.room_exists(room, OP).await? {
            return Ok(());
        }
        let mut tx = self.begin_write(OP).await?;
        require_user(&mut tx, &low, OP).await?;
        require_user(&mut tx, &high, OP).await?;
        sqlx::query(
            "INSERT INTO rooms (name, private, last_seq, created_ms) VALUES ($1, 1, 0, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(room.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(failed(OP))?;
        sqlx::query(
            "INSERT INTO room_members (room, user_name) VALUES ($1, $2), ($1, $3) \
             ON CONFLICT (room, user_name) DO NOTHING",
        )
        .bind(room.as_str())
        .bind(low.as_str())
        .bind(high.as_str())
        .execute(&mut *tx)
        .await
        .map_err(failed(OP))?;
        tx.commit().await.map_err(failed(OP))
    }

    pub(super) async fn insert_resume_token(
        &self,
        token_hash: &[u8],
        user: &UserId,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO resume_tokens (hash, user_name, expires_ms) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(user.as_str())
            .bind(expires_ms)
            .execute(&self.pool)
            .await
            .map_err(|source| match source.as_database_error() {
                Some(db) if db.is_foreign_key_violation() => user_not_found(user),
                Some(db) if db.is_unique_violation() => StoreError::AlreadyExists {
                    what: "resume token".to_owned(),
                },
                _ => failed("insert resume token")(source),
            })?;
        Ok(())
    }

    pub(super) async fn take_resume_token(
        &self,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<UserId>, StoreError> {
        const OP: &str = "take resume token";
        let mut tx = self.begin_write(OP).await?;
        let token: Option<(String, i64)> = sqlx::query_as(
            "DELETE FROM resume_tokens WHERE hash = $1 RETURNING user_name, expires_ms",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(failed(OP))?;
        // Expired tokens of users who never came back would otherwise stay forever; purging
        // them here costs one indexed delete per resume.
        sqlx::query("DELETE FROM resume_tokens WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(failed(OP))?;
        let user = match token {
            Some((user, expires_ms)) if now_ms < expires_ms => {
                let disabled: Option<bool> =
                    sqlx::query_scalar("SELECT disabled FROM users WHERE name = $1")
                        .bind(&user)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(failed(OP))?;
                match disabled {
                    Some(false) => Some(user_id(&user)?),
                    Some(true) | None => None,
                }
            }
            Some(_) | None => None,
        };
        tx.commit().await.map_err(failed(OP))?;
        Ok(user)
    }

    pub(super) async fn set_room_retention(
        &self,
        room: &RoomId,
        days: Option<u32>,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE rooms SET retention_days = $2 WHERE name = $1")
            .bind(room.as_str())
            .bind(days.map(i64::from))
            .execute(&self.pool)
            .await
            .map_err(failed("set room retention"))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: format!("room {room}"),
            });
        }
        Ok(())
    }

    pub(super) async fn all_room_names(&self) -> Result<Vec<RoomId>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM rooms ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("list room names"))?;
        names
            .iter()
            .map(|name| RoomId::parse(name).map_err(|error| corrupt("room name", name, error)))
            .collect()
    }

    async fn begin_write(
        &self,
        op: &'static str,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(failed(op))
    }

    async fn room_exists(&self, room: &RoomId, op: &'static str) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM rooms WHERE name = $1")
            .bind(room.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed(op))?;
        Ok(found.is_some())
    }
}

/// Embedded at compile time; paths are relative to `daemon/Cargo.toml`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a write waits for the database lock before it fails as unavailable. The writer
/// holds the lock for one batch (milliseconds); the margin covers a checkpoint or an
/// administrator's `sqlite3` session holding it briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

async fn require_room(
    tx: &mut Transaction<'static, Sqlite>,
    room: &RoomId,
    op: &'static str,
) -> Result<(), StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM rooms WHERE name = $1")
        .bind(room.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(failed(op))?;
    found.map(drop).ok_or_else(|| StoreError::NotFound {
        what: format!("room {room}"),
    })
}

async fn require_user(
    tx: &mut Transaction<'static, Sqlite>,
    user: &UserId,
    op: &'static str,
) -> Result<(), StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = $1")
        .bind(user.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(failed(op))?;
    found.map(drop).ok_or_else(|| user_not_found(user))
}

async fn revoke_resume_tokens(
    tx: &mut Transaction<'static, Sqlite>,
    user: &UserId,
    op: &'static str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM resume_tokens WHERE user_name = $1")
        .bind(user.as_str())
        .execute(&mut **tx)
        .await
        .map_err(failed(op))?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct UserRow {
    name: String,
    password_file: Vec<u8>,
    disabled: bool,
    created_ms: i64,
}

impl UserRow {
    fn into_record(self) -> Result<UserRecord, StoreError> {
        Ok(UserRecord {
            name: user_id(&self.name)?,
            password_file: self.password_file,
            disabled: self.disabled,
            created_ms: self.created_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RoomRow {
    name: String,
    private: bool,
    last_seq: i64,
    members: i64,
    retention_days: Option<i64>,
}

impl RoomRow {
    fn into_record(self) -> Result<RoomRecord, StoreError> {
        Ok(RoomRecord {
            name: RoomId::parse(&self.name)
                .map_err(|error| corrupt("room name", &self.name, error))?,
            private: self.private,
            last_seq: seq_value(self.last_seq)?,
            members: u32::try_from(self.members).unwrap_or(u32::MAX),
            retention_days: self
                .retention_days
                .map(|days| {
                    u32::try_from(days)
                        .map_err(|error| corrupt("retention days", &days.to_string(), error))
                })
                .transpose()?,
        })
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

/// Maps a database error of operation `op`. Callers that know which row collided or was
/// missing map unique and foreign-key violations themselves, with a better name.
fn failed(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| match &source {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists {
            what: format!("row written by {op}"),
        },
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound {
            what: format!("row referenced by {op}"),
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt {
            detail: format!("{op}: {source}"),
        },
        _ => StoreError::Unavailable { op, source },
    }
}
