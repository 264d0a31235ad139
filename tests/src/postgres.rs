//! [`TestPostgres`]: a private PostgreSQL server for tests, started with `initdb` and
//! `pg_ctl` in a temporary directory on a free port of 127.0.0.1, with one fresh database per
//! test. [`TestPostgres::shared`] is one server per test process; [`TestPostgres::start`] gives
//! a test its own server, which it may stop and start again (fault tests).
//!
//! The server runs with `fsync=on` and `synchronous_commit=on`, as in production: a commit
//! here is a durable commit.
//!
//! `initdb` and `pg_ctl` refuse to run as root, so when the tests run as root both run as the
//! `postgres` user (through `runuser`) in a directory handed to that user.
//!
//! # Cleanup
//! `pg_ctl` starts the postmaster in a session of its own, so it outlives the test process
//! unless someone stops it, and the shared server lives in a static whose `Drop` never runs.
//! Each server therefore gets a watchdog: a small shell loop, started with `setsid` so a
//! Ctrl-C on the terminal does not kill it before the tests, that polls the test process with
//! `kill -0` once a second and, once it is gone (normal exit, panic, SIGKILL alike), stops the
//! server with `pg_ctl -m immediate` and deletes the directory. A server owned by a test is
//! stopped and deleted by its `Drop` right away; the watchdog then has nothing left to do and
//! is killed.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// A private PostgreSQL server.
#[derive(Debug)]
pub struct TestPostgres {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    as_postgres_user: bool,
    next_database: AtomicU64,
    watchdog: Option<Child>,
}

impl TestPostgres {
    /// The server shared by every test of this process, started on first use. Tests must not
    /// stop it; fault tests use [`Self::start`].
    ///
    /// # Panics
    /// When the server cannot be set up (the message says why, e.g. `initdb` is missing).
    pub async fn shared() -> &'static Self {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        if let Some(server) = SHARED.get() {
            return server;
        }
        tokio::task::spawn_blocking(|| SHARED.get_or_init(|| Self::start_blocking(&[])))
            .await
            .expect("starting the shared PostgreSQL server")
    }

    /// Starts a server of the test's own, stopped and deleted when dropped.
    ///
    /// # Panics
    /// When the server cannot be set up.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`Self::start`] with extra `postgresql.conf` settings, e.g. `("shared_buffers",
    /// "1GB")`.
    ///
    /// # Panics
    /// When the server cannot be set up.
    pub async fn start_with(settings: &[(&str, &str)]) -> Self {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let settings: Vec<(&str, &str)> = settings
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            Self::start_blocking(&settings)
        })
        .await
        .expect("starting a PostgreSQL server")
    }

    /// The TCP port the server listens on (127.0.0.1); it stays the same across
    /// [`Self::stop`] and [`Self::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` as the superuser `postgres` (trust authentication).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The server log, worth printing when a test fails.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Creates a new empty database (`t_1`, `t_2`, ...) and returns its URL.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn create_database(&self) -> String {
        let name = format!(
            "t_{}",
            self.next_database.fetch_add(1, Ordering::Relaxed) + 1
        );
        let mut admin = PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test PostgreSQL server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        admin.close().await.expect("close the admin connection");
        self.url(&name)
    }

    /// Stops the server at once, without a shutdown checkpoint, as a crash or a power cut
    /// would; open connections break. Committed data survives (`fsync=on`).
    ///
    /// # Panics
    /// When `pg_ctl` fails.
    pub async fn stop(&self) {
        let command = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        run_async(command, "pg_ctl stop").await;
    }

    /// Starts the server again on the same port and data (after [`Self::stop`]); returns once
    /// it accepts connections.
    ///
    /// # Panics
    /// When `pg_ctl` fails, e.g. because something else took the port meanwhile.
    pub async fn restart(&self) {
        let command = self.start_command();
        run_async(command, "pg_ctl start").await;
    }

    fn start_blocking(settings: &[(&str, &str)]) -> Self {
        let bin = find_bin_dir();
        let as_postgres_user = running_as_root();
        let root = tempfile::Builder::new()
            .prefix("chatd-pg-")
            .tempdir()
            .expect("temporary directory for PostgreSQL")
            .keep();
        if as_postgres_user {
            run(
                Command::new("chown").arg("postgres:").arg(&root),
                "chown the PostgreSQL directory to postgres",
            );
        }
        let mut server = Self {
            bin,
            root,
            port: free_port(),
            as_postgres_user,
            next_database: AtomicU64::new(0),
            watchdog: None,
        };
        server.watchdog = Some(server.spawn_watchdog());
        let data = server.data_dir();
        let mut initdb = server.command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            // Only initdb's own files skip fsync; the server below runs with fsync=on.
            .arg("--no-sync");
        run(&mut initdb, "initdb");
        server.write_config(settings);
        run(&mut server.start_command(), "pg_ctl start");
        server
    }

    fn write_config(&self, settings: &[(&str, &str)]) {
        let mut config = format!(
            "\n# chatd test server\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             fsync = on\n\
             synchronous_commit = on\n\
             max_connections = 400\n",
            port = self.port,
            socket_dir = self.root.display(),
        );
        for (key, value) in settings {
            config.push_str(&format!("{key} = '{value}'\n"));
        }
        let path = self.data_dir().join("postgresql.conf");
        let mut current = std::fs::read_to_string(&path).expect("read postgresql.conf");
        current.push_str(&config);
        // Root may write the postgres user's file; rewriting keeps its owner.
        std::fs::write(&path, current).expect("write postgresql.conf");
    }

    fn start_command(&self) -> Command {
        let log = self.root.join("postgres.log");
        let mut command = self.pg_ctl(&["-w", "-t", "60", "start"]);
        command.arg("-l").arg(log);
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = self.command("pg_ctl");
        command.arg("-D").arg(self.data_dir()).args(args);
        command
    }

    /// `program` from the PostgreSQL bin directory, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn spawn_watchdog(&self) -> Child {
        let stop = if self.as_postgres_user {
            "runuser -u postgres -- \"$2\" -D \"$3\" -m immediate -w stop"
        } else {
            "\"$2\" -D \"$3\" -m immediate -w stop"
        };
        let script =
            format!("while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; {stop}; rm -rf \"$4\"");
        Command::new("setsid")
            .arg("sh")
            .arg("-c")
            .arg(script)
            .arg("chatd-test-postgres-watchdog")
            .arg(std::process::id().to_string())
            .arg(self.bin.join("pg_ctl"))
            .arg(self.data_dir())
            .arg(&self.root)
            // Holding no pipe of ours: whoever reads the test output is not kept waiting.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL watchdog (needs `setsid` and `sh`)")
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl(&["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// Where `initdb` and `pg_ctl` live: `$CHATD_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`), else `PATH`.
fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHATD_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").exists(),
            "CHATD_TEST_PG_BIN={} holds no initdb",
            dir.display()
        );
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin \
             or on PATH: install the PostgreSQL server (Debian: `apt install postgresql`) or \
             set CHATD_TEST_PG_BIN to the directory holding initdb"
        )
    })
}

/// `/proc/self` belongs to the effective user: a way to ask "am I root" without `unsafe`.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// A port nothing listens on right now. Another process could take it before the server
/// binds it; on these test machines that has not been seen.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot run {command:?}: {error}"));
    check(&output, what);
    output
}

async fn run_async(command: Command, what: &str) {
    let mut command = tokio::process::Command::from(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("{what}: cannot run: {error}"));
    check(&output, what);
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
