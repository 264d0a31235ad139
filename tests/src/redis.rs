//! [`TestRedis`]: a private `redis-server` for tests, on a free port of 127.0.0.1 with a
//! temporary working directory, no persistence (`--save ''`, `--appendonly no`), run as a
//! child of the test process. A test may kill it ([`TestRedis::stop`]) and start it again
//! on the same port ([`TestRedis::restart`]), as a broker outage would.
//!
//! # Cleanup
//! The server is a child with `kill_on_drop`, but a child outlives a test process that is
//! killed with SIGKILL or aborts, since then no destructor runs. Each server therefore gets a
//! watchdog, as [`TestPostgres`](crate::TestPostgres) does: a shell loop started with
//! `setsid` that polls the test process with `kill -0` once a second and, once it is gone,
//! SIGKILLs the pid in the directory's pid file and deletes the directory. The pid file is
//! written by this module, not by Redis, and is removed while a stopped server is still an
//! unreaped zombie, so the watchdog never kills a reused pid.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::wait;

/// A private Redis server, killed and its directory deleted when dropped.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    dir: PathBuf,
    /// `None` while stopped.
    server: Mutex<Option<Child>>,
    watchdog: Option<std::process::Child>,
}

impl TestRedis {
    /// Starts a server on a free port and returns once it answers `PING`.
    ///
    /// # Panics
    /// When `redis-server` is missing or does not answer within 10 s (the message includes
    /// its log).
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("chatd-redis-")
            .tempdir()
            .expect("temporary directory for Redis")
            .keep();
        let mut redis = Self {
            port: 0,
            dir,
            server: Mutex::new(None),
            watchdog: None,
        };
        redis.watchdog = Some(redis.spawn_watchdog());
        // The free port is only free until someone else binds it: on a lost race, try
        // another one rather than fail the test.
        for _ in 0..START_ATTEMPTS {
            redis.port = free_port();
            let child = redis.spawn();
            if let Some(child) = redis.wait_answering(child).await {
                *redis.lock() = Some(child);
                return redis;
            }
        }
        panic!(
            "redis-server did not start on any of {START_ATTEMPTS} free ports; its log:\n{}",
            redis.log()
        );
    }

    /// The URL chatd's `[broker] url` takes: `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The TCP port of 127.0.0.1 the server listens on; the same across [`Self::stop`] and
    /// [`Self::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address, 127.0.0.1 and [`Self::port`].
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Everything the server logged so far (all its starts), for a failing test to print.
    pub fn log(&self) -> String {
        std::fs::read(self.dir.join(LOG_FILE))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|error| format!("(cannot read the Redis log: {error})"))
    }

    /// Whether the server answers `PING` with `+PONG` within a second now.
    pub async fn ping(&self) -> bool {
        ping(self.addr()).await
    }

    /// Kills the server with SIGKILL (a crash: clients see their connections break) and
    /// returns once its port refuses connections. Everything it held is gone.
    ///
    /// # Panics
    /// When it is already stopped, or its port still accepts connections after 10 s.
    pub async fn stop(&self) {
        let mut child = self.lock().take().expect("Redis is running");
        // Killed but not yet reaped, the pid cannot be reused: remove the pid file in
        // between, so the watchdog never sees a pid that is not this server's.
        child.start_kill().expect("SIGKILL redis-server");
        let _ = std::fs::remove_file(self.dir.join(PID_FILE));
        child.wait().await.expect("reap redis-server");
        let addr = self.addr();
        wait::until(
            "the Redis port to refuse connections",
            READY_TIMEOUT,
            || async move {
                let refused = TcpStream::connect(addr)
                    .await
                    .is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionRefused);
                refused.then_some(())
            },
        )
        .await;
    }

    /// Starts the server again on the same port, empty, after [`Self::stop`]; returns once it
    /// answers `PING`.
    ///
    /// # Panics
    /// When it is running, or does not answer within 10 s (e.g. something else took the
    /// port meanwhile; the message includes its log).
    pub async fn restart(&self) {
        assert!(self.lock().is_none(), "restart: Redis is still running");
        let child = self.spawn();
        let child = self.wait_answering(child).await.unwrap_or_else(|| {
            panic!(
                "redis-server did not come back on port {}; its log:\n{}",
                self.port,
                self.log()
            )
        });
        *self.lock() = Some(child);
    }

    /// `redis-server` on [`Self::port`], logging to the directory's log file, with its pid
    /// written to the pid file for the watchdog.
    fn spawn(&self) -> Child {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join(LOG_FILE))
            // Holding no pipe of ours: whoever reads the test output is not kept waiting.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server (Debian: `apt install redis-server`)");
        let pid = child.id().expect("a process just spawned has a pid");
        std::fs::write(self.dir.join(PID_FILE), pid.to_string()).expect("write the pid file");
        child
    }

    /// Waits until `child` answers `PING`; `None` (with `child` reaped) when it exits first,
    /// as it does when its port was taken.
    async fn wait_answering(&self, mut child: Child) -> Option<Child> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if child.try_wait().expect("poll redis-server").is_some() {
                let _ = std::fs::remove_file(self.dir.join(PID_FILE));
                return None;
            }
            if self.ping().await {
                return Some(child);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not answer PING on port {} within {READY_TIMEOUT:?}; its \
                 log:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        // A test that panicked while holding it left nothing half-done: the Option is
        // always whole.
        self.server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn_watchdog(&self) -> std::process::Child {
        let script = "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
                      pid=$(cat \"$2/$3\" 2>/dev/null) && kill -9 \"$pid\"; rm -rf \"$2\"";
        std::process::Command::new("setsid")
            .arg("sh")
            .arg("-c")
            .arg(script)
            .arg("chatd-test-redis-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(PID_FILE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Redis watchdog (needs `setsid` and `sh`)")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.lock().take() {
            // Fails only when it has exited already; tokio reaps it.
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// Whether a Redis server at `addr` answers an inline `PING` with `+PONG` within a second.
pub async fn ping(addr: SocketAddr) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = Vec::new();
        let mut buf = [0_u8; 64];
        while !reply.ends_with(b"\r\n") {
            let read = stream.read(&mut buf).await?;
            if read == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..read]);
        }
        Ok::<_, std::io::Error>(reply)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), exchange).await,
        Ok(Ok(reply)) if reply == b"+PONG\r\n"
    )
}

/// A TCP port of 127.0.0.1 that was free a moment ago (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free TCP port")
        .port()
}

const LOG_FILE: &str = "redis.log";
const PID_FILE: &str = "redis.pid";
const START_ATTEMPTS: usize = 3;
/// Bounds a hang; a healthy server answers within milliseconds.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
