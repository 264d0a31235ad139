//! `chatctl db migrate` and `chatctl db status`: the database schema, for operators who run
//! chatd with `store.run_migrations = false` (chatd then refuses to start while a migration is
//! pending). These open the database named by chatd's configuration directly, not through the
//! daemon, which may not be running, and carry the daemon's migrations embedded at build
//! time, so a chatctl applies exactly the schema of the chatd of its version.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use serde::Serialize;
use sqlx::migrate::{AppliedMigration, Migrate, MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::cli::DbCommand;
use crate::failure::Failure;
use crate::output::{Output, table};

/// The SQLite schema, as the daemon embeds it.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../daemon/migrations/sqlite");

/// The PostgreSQL schema, as the daemon embeds it.
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../daemon/migrations/postgres");

/// How long to wait for the database: a lock held by a running chatd, or a slow network.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a `chatctl db` command on the database in chatd's configuration.
pub(super) async fn run(
    config_file: Option<&Path>,
    output: Output,
    command: DbCommand,
) -> Result<(), Failure> {
    let config = super::load_config(config_file, "find the database").map_err(|error| {
        Failure::Usage(format!(
            "{error}\nFix the configuration, or point at chatd's with --config PATH"
        ))
    })?;
    let url = config.store_url();
    match command {
        DbCommand::Migrate => {
            let database = Database::open(&url, Access::Create).await?;
            let report = database.migrate().await?;
            output.print(&report, || report.to_text());
        }
        DbCommand::Status => {
            let report = match missing_sqlite_file(&url) {
                Some(file) => Report::missing_sqlite(&file),
                None => {
                    Database::open(&url, Access::Existing)
                        .await?
                        .status()
                        .await?
                }
            };
            output.print(&report, || report.to_text());
        }
    }
    Ok(())
}

/// Whether opening may create a SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Create the database file if it is missing (`migrate`).
    Create,
    /// Only open an existing file (`status` must not leave an empty database behind).
    Existing,
}

/// An open database and what to call it in messages (never the URL, which may hold a
/// password).
enum Database {
    Sqlite { pool: SqlitePool, name: String },
    Postgres { pool: PgPool, name: String },
}

impl Database {
    /// Connects to the database at `url`.
    async fn open(url: &str, access: Access) -> Result<Self, Failure> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url).map_err(|e| {
                    Failure::Usage(format!("store.url is not a usable SQLite URL: {e}"))
                })?;
                let name = sqlite_name(options.get_filename());
                // As chatd opens it, so the file is in the same journal mode afterwards.
                let options = options
                    .create_if_missing(access == Access::Create)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(DATABASE_TIMEOUT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .map_err(|e| cannot_open(&name, &e))?;
                Ok(Self::Sqlite { pool, name })
            }
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url).map_err(|e| {
                    Failure::Usage(format!("store.url is not a usable PostgreSQL URL: {e}"))
                })?;
                let name = format!(
                    "PostgreSQL database {} on {}:{}",
                    options.get_database().unwrap_or("(default)"),
                    options.get_host(),
                    options.get_port()
                );
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(DATABASE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| cannot_open(&name, &e))?;
                Ok(Self::Postgres { pool, name })
            }
            other => Err(Failure::Usage(format!(
                "store.url has the scheme `{other}`, which chatd does not support: use \
                 sqlite://PATH or postgres://..."
            ))),
        }
    }

    /// Applies the pending migrations.
    async fn migrate(&self) -> Result<Report, Failure> {
        match self {
            Self::Sqlite { pool, name } => migrate(&SQLITE_MIGRATIONS, pool, name).await,
            Self::Postgres { pool, name } => migrate(&POSTGRES_MIGRATIONS, pool, name).await,
        }
    }

    /// Lists the migrations and their state.
    async fn status(&self) -> Result<Report, Failure> {
        let (migrations, name) = match self {
            Self::Sqlite { pool, name } => (states(&SQLITE_MIGRATIONS, pool, name).await?, name),
            Self::Postgres { pool, name } => {
                (states(&POSTGRES_MIGRATIONS, pool, name).await?, name)
            }
        };
        Ok(Report {
            database: name.clone(),
            applied_now: None,
            migrations,
        })
    }
}

fn sqlite_name(file: &Path) -> String {
    format!("SQLite database {}", file.display())
}

/// The SQLite file `url` names, when it does not exist yet.
fn missing_sqlite_file(url: &str) -> Option<PathBuf> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    (!file.exists()).then(|| file.to_path_buf())
}

fn cannot_open(name: &str, error: &sqlx::Error) -> Failure {
    Failure::Unreachable(format!(
        "cannot open the {name}: {error} — is it running and reachable, and are store.url \
         (or data_dir) and the credentials right?"
    ))
}

/// What `db migrate` and `db status` print: with `--json` this object.
#[derive(Debug, Serialize)]
struct Report {
    /// Which database, e.g. `SQLite database /var/lib/chatd/chatd.db`.
    database: String,
    /// For `migrate`: the migrations it applied (possibly none).
    #[serde(skip_serializing_if = "Option::is_none")]
    applied_now: Option<Vec<MigrationState>>,
    /// Every migration, known to this chatctl or recorded in the database.
    migrations: Vec<MigrationState>,
}

impl Report {
    /// `db status` for a SQLite file that does not exist yet: everything is pending.
    fn missing_sqlite(file: &Path) -> Self {
        Self {
            database: format!("{} (not created yet)", sqlite_name(file)),
            applied_now: None,
            migrations: SQLITE_MIGRATIONS
                .iter()
                .filter(|migration| !migration.migration_type.is_down_migration())
                .map(|migration| MigrationState {
                    version: migration.version,
                    description: migration.description.to_string(),
                    state: State::Pending,
                })
                .collect(),
        }
    }

    fn to_text(&self) -> String {
        let mut text = format!("{}\n", self.database);
        if let Some(applied) = &self.applied_now {
            for migration in applied {
                text.push_str(&format!(
                    "applied {} {}\n",
                    migration.version, migration.description
                ));
            }
        } else {
            let rows: Vec<[String; 3]> = self
                .migrations
                .iter()
                .map(|m| {
                    [
                        m.version.to_string(),
                        m.description.clone(),
                        m.state.to_string(),
                    ]
                })
                .collect();
            text.push_str(&table(["VERSION", "DESCRIPTION", "STATE"], &rows));
        }
        let pending = self.count(State::Pending);
        let total = self.migrations.len();
        let plural = if total == 1 { "" } else { "s" };
        let summary = match (&self.applied_now, pending) {
            (Some(applied), 0) if applied.is_empty() => {
                format!("nothing to apply: the schema is up to date ({total} migration{plural})")
            }
            (_, 0) => format!("the schema is up to date ({total} migration{plural})"),
            (_, pending) => format!(
                "{pending} pending: apply with `chatctl db migrate` (or start chatd with \
                 store.run_migrations = true)"
            ),
        };
        text.push_str(&summary);
        text
    }

    fn count(&self, state: State) -> usize {
        self.migrations.iter().filter(|m| m.state == state).count()
    }
}

/// One migration and where the database stands with it.
#[derive(Debug, Clone, Serialize)]
struct MigrationState {
    version: i64,
    description: String,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// In the database, as this chatctl has it.
    Applied,
    /// Not in the database yet.
    Pending,
    /// Started and failed midway (only on a database without transactional DDL, or after a
    /// crash); needs repair by hand.
    Failed,
    /// In the database, but with other SQL than this chatctl has: another build.
    Modified,
    /// In the database, but unknown to this chatctl: a newer chatd migrated it.
    Unknown,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Applied => "applied",
            Self::Pending => "pending",
            Self::Failed => "failed (repair by hand)",
            Self::Modified => "applied, but differs from this chatctl's",
            Self::Unknown => "applied, unknown to this chatctl (newer chatd)",
        })
    }
}

/// Applies `migrator`'s pending migrations on `pool`, after checking that the database's
/// history matches this chatctl's.
async fn migrate<DB>(
    migrator: &Migrator,
    pool: &sqlx::Pool<DB>,
    name: &str,
) -> Result<Report, Failure>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    let before = states(migrator, pool, name).await?;
    if let Some(problem) = before.iter().find_map(|m| problem(m, name)) {
        return Err(problem);
    }
    migrator
        .run(pool)
        .await
        .map_err(|error| migrate_failure(&error, name))?;
    let migrations = states(migrator, pool, name).await?;
    let applied_now = before
        .into_iter()
        .filter(|m| m.state == State::Pending)
        .collect();
    Ok(Report {
        database: name.to_owned(),
        applied_now: Some(applied_now),
        migrations,
    })
}

/// Why `migration`'s state stops `db migrate`, if it does.
fn problem(migration: &MigrationState, name: &str) -> Option<Failure> {
    let version = migration.version;
    let message = match migration.state {
        State::Applied | State::Pending => return None,
        State::Failed => format!(
            "migration {version} of the {name} failed midway earlier; repair the database by \
             hand (compare with the migration's SQL) and delete its row from _sqlx_migrations"
        ),
        State::Modified => format!(
            "migration {version} in the {name} differs from the one this chatctl carries; \
             use the chatctl of the chatd version that migrated it"
        ),
        State::Unknown => format!(
            "the {name} has migration {version}, which this chatctl does not know: a newer \
             chatd migrated it; use the chatctl of that version"
        ),
    };
    Some(Failure::Local(format!("{message}; nothing was applied")))
}

fn migrate_failure(error: &MigrateError, name: &str) -> Failure {
    match error {
        MigrateError::ExecuteMigration(source, version) => Failure::Local(format!(
            "migration {version} failed on the {name}: {source}; it was rolled back, earlier \
             ones stay applied — see `chatctl db status`"
        )),
        other => Failure::Local(format!("migrating the {name} failed: {other}")),
    }
}

/// Every migration known to `migrator` or recorded in the database, by version, with its
/// state. Reads the bookkeeping table without creating it.
async fn states<DB>(
    migrator: &Migrator,
    pool: &sqlx::Pool<DB>,
    name: &str,
) -> Result<Vec<MigrationState>, Failure>
where
    DB: sqlx::Database,
    DB::Connection: Migrate,
{
    let failed = |error: &dyn std::fmt::Display| {
        Failure::Local(format!("cannot read the migrations of the {name}: {error}"))
    };
    let mut connection = pool.acquire().await.map_err(|e| cannot_open(name, &e))?;
    let applied = match connection
        .list_applied_migrations(&migrator.table_name)
        .await
    {
        Ok(applied) => applied,
        // A database no chatd has migrated yet: every migration is pending.
        Err(MigrateError::Execute(sqlx::Error::Database(error))) if is_undefined_table(&*error) => {
            Vec::new()
        }
        Err(error) => return Err(failed(&error)),
    };
    let dirty = if applied.is_empty() {
        None
    } else {
        connection
            .dirty_version(&migrator.table_name)
            .await
            .map_err(|e| failed(&e))?
    };
    Ok(merge(migrator, &applied, dirty))
}

/// The states of `migrator`'s migrations given what the database recorded.
fn merge(
    migrator: &Migrator,
    applied: &[AppliedMigration],
    dirty: Option<i64>,
) -> Vec<MigrationState> {
    let mut states: Vec<MigrationState> = migrator
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .map(|migration| {
            let recorded = applied
                .iter()
                .find(|done| done.version == migration.version);
            let state = match recorded {
                _ if dirty == Some(migration.version) => State::Failed,
                None => State::Pending,
                Some(done) if done.checksum == migration.checksum => State::Applied,
                Some(_) => State::Modified,
            };
            MigrationState {
                version: migration.version,
                description: migration.description.to_string(),
                state,
            }
        })
        .collect();
    for done in applied {
        if !migrator.version_exists(done.version) {
            states.push(MigrationState {
                version: done.version,
                description: "(not in this chatctl)".to_owned(),
                state: if dirty == Some(done.version) {
                    State::Failed
                } else {
                    State::Unknown
                },
            });
        }
    }
    states.sort_by_key(|m| m.version);
    states
}

/// Whether `error` says a table does not exist: SQLSTATE 42P01 in PostgreSQL, "no such table"
/// in SQLite (which has no finer error code for it).
fn is_undefined_table(error: &dyn sqlx::error::DatabaseError) -> bool {
    error.code().as_deref() == Some("42P01") || error.message().starts_with("no such table")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(version: i64, checksum: &[u8]) -> AppliedMigration {
        AppliedMigration {
            version,
            checksum: checksum.to_vec().into(),
        }
    }

    #[test]
    fn states_compare_the_database_with_the_embedded_migrations() {
        let first = SQLITE_MIGRATIONS.iter().next().unwrap();
        let pending = merge(&SQLITE_MIGRATIONS, &[], None);
        assert!(pending.iter().all(|m| m.state == State::Pending));
        assert_eq!(pending.len(), SQLITE_MIGRATIONS.iter().count());

        let done = merge(
            &SQLITE_MIGRATIONS,
            &[applied(first.version, &first.checksum)],
            None,
        );
        assert_eq!(done[0].state, State::Applied);

        let modified = merge(
            &SQLITE_MIGRATIONS,
            &[applied(first.version, b"other")],
            None,
        );
        assert_eq!(modified[0].state, State::Modified);
        assert!(problem(&modified[0], "db").is_some());

        let newer = merge(
            &SQLITE_MIGRATIONS,
            &[
                applied(first.version, &first.checksum),
                applied(99_999, b"x"),
            ],
            None,
        );
        let unknown = newer.last().unwrap();
        assert_eq!((unknown.version, unknown.state), (99_999, State::Unknown));
        let message = problem(unknown, "SQLite database x").unwrap().to_string();
        assert!(message.contains("a newer chatd migrated it"), "{message}");

        let failed = merge(
            &SQLITE_MIGRATIONS,
            &[applied(first.version, &first.checksum)],
            Some(first.version),
        );
        assert_eq!(failed[0].state, State::Failed);
    }
}
