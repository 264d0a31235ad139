//! The connection to the daemon's admin socket: newline-delimited JSON, one
//! [`AdminRequest`] line out, one [`AdminReply`] line back, in order. Every failure becomes a
//! [`Failure`] whose message names the socket and the next step.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::admin::{AdminReply, AdminRequest};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::failure::Failure;

/// How long to wait for one reply. Every admin request is a few store operations on the
/// daemon, so a reply this late means the daemon is stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// An open admin connection.
pub(crate) struct AdminClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    path: PathBuf,
}

impl AdminClient {
    /// Connects to the admin socket at `path`.
    pub(crate) async fn connect(path: &Path) -> Result<Self, Failure> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| connect_failure(path, &e))?;
        let (reader, writer) = stream.into_split();
        Ok(Self {
            reader: BufReader::new(reader),
            writer,
            path: path.to_owned(),
        })
    }

    /// Sends one request and reads its reply. An `error` reply is returned as a reply, so
    /// the caller can add a hint that fits the command.
    pub(crate) async fn request(&mut self, request: &AdminRequest) -> Result<AdminReply, Failure> {
        let mut line = serde_json::to_string(request)
            .map_err(|e| Failure::Daemon(format!("cannot encode the request: {e}")))?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| self.lost(&e))?;

        let mut reply = String::new();
        let read = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_line(&mut reply))
            .await
            .map_err(|_| {
                Failure::Daemon(format!(
                    "chatd did not answer within {} s on {}; see its log",
                    REPLY_TIMEOUT.as_secs(),
                    self.path.display()
                ))
            })?
            .map_err(|e| self.lost(&e))?;
        if read == 0 {
            return Err(Failure::Daemon(format!(
                "chatd closed the admin connection on {} without answering; see its log",
                self.path.display()
            )));
        }
        serde_json::from_str(reply.trim_end()).map_err(|e| {
            Failure::Daemon(format!(
                "chatd sent a reply chatctl does not understand ({e}); are chatctl and chatd \
                 the same version?"
            ))
        })
    }

    fn lost(&self, error: &io::Error) -> Failure {
        Failure::Daemon(format!(
            "the admin connection on {} broke: {error}; see chatd's log",
            self.path.display()
        ))
    }
}

/// The message for a failed connect: what happened and what to do about it.
fn connect_failure(path: &Path, error: &io::Error) -> Failure {
    let hint = match error.kind() {
        io::ErrorKind::NotFound => {
            "is chatd running? Use --socket or --config to point at its admin socket"
        }
        io::ErrorKind::PermissionDenied => {
            "you need to be in the group that owns the socket (see `ls -l` on it), or run \
             chatctl as that user"
        }
        io::ErrorKind::ConnectionRefused => {
            "nothing listens there: chatd is not running or left a stale socket; start chatd, \
             or use --socket or --config to point at the right socket"
        }
        _ => "is chatd running? Use --socket or --config to point at its admin socket",
    };
    Failure::Unreachable(format!(
        "cannot connect to the admin socket {}: {error} — {hint}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_names_the_path_and_the_next_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatd.sock");
        let Err(failure) = AdminClient::connect(&path).await else {
            panic!("connected")
        };
        let message = failure.to_string();
        assert!(matches!(failure, Failure::Unreachable(_)));
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("is chatd running?"), "{message}");
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatd.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let Err(failure) = AdminClient::connect(&path).await else {
            panic!("connected")
        };
        assert!(failure.to_string().contains("stale socket"), "{failure}");
    }
}
