//! chatctl's view of the admin connection: the shared [`protocol::client::admin::AdminClient`]
//! with every failure turned into a [`Failure`] whose message names the socket and the next
//! step, and [`ReplyStream`] for the one request answered by several reply lines
//! (`history_export`), which the shared client, one reply per request, does not read.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use protocol::UserId;
use protocol::admin::{AdminReply, AdminRequest, RegisterMode};
use protocol::client::ClientError;
use protocol::client::admin::{ADMIN_REPLY_TIMEOUT, AdminClient};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::failure::Failure;

/// An open admin connection.
pub(crate) struct Admin {
    client: AdminClient,
}

impl Admin {
    /// Connects to the admin socket at `path`.
    pub(crate) async fn connect(path: &Path) -> Result<Self, Failure> {
        let client = AdminClient::connect(path)
            .await
            .map_err(|error| failure(path, error))?;
        Ok(Self { client })
    }

    /// Sends one request and reads its reply. An `error` reply is returned as a reply, so
    /// the caller can add a hint that fits the command.
    pub(crate) async fn request(&mut self, request: &AdminRequest) -> Result<AdminReply, Failure> {
        self.client
            .request(request)
            .await
            .map_err(|error| failure(self.client.path(), error))
    }

    /// Runs OPAQUE registration for `user`; the reply that ended it (`done` or an `error`
    /// reply), as [`Admin::request`] returns it.
    pub(crate) async fn register_user(
        &mut self,
        user: &UserId,
        password: &str,
        mode: RegisterMode,
    ) -> Result<AdminReply, Failure> {
        self.client
            .register_user(user, password, mode)
            .await
            .map_err(|error| failure(self.client.path(), error))
    }
}

/// A connection that has sent one request and reads its answer line by line. Each line is
/// read only when asked for, so a caller that is slow to consume them holds the daemon back
/// through the socket instead of making either side buffer.
pub(crate) struct ReplyStream {
    reader: BufReader<OwnedReadHalf>,
    /// Held so the connection stays open both ways until the answer is read; dropping it
    /// would shut down our sending side.
    _writer: OwnedWriteHalf,
    path: PathBuf,
    line: String,
}

impl ReplyStream {
    /// Connects to the admin socket at `path` and sends `request`.
    pub(crate) async fn open(path: &Path, request: &AdminRequest) -> Result<Self, Failure> {
        let stream = UnixStream::connect(path).await.map_err(|source| {
            failure(
                path,
                ClientError::AdminConnect {
                    path: path.to_owned(),
                    source,
                },
            )
        })?;
        let (reader, mut writer) = stream.into_split();
        let mut line = serde_json::to_string(request)
            .map_err(|e| Failure::Daemon(format!("cannot encode the request: {e}")))?;
        line.push('\n');
        writer
            .write_all(line.as_bytes())
            .await
            .map_err(|source| broken(path, source))?;
        Ok(Self {
            reader: BufReader::new(reader),
            _writer: writer,
            path: path.to_owned(),
            line,
        })
    }

    /// The next reply line of the answer.
    pub(crate) async fn next(&mut self) -> Result<AdminReply, Failure> {
        self.line.clear();
        let read = tokio::time::timeout(ADMIN_REPLY_TIMEOUT, self.reader.read_line(&mut self.line))
            .await
            .map_err(|_| failure(&self.path, ClientError::Timeout))?
            .map_err(|source| broken(&self.path, source))?;
        if read == 0 {
            return Err(failure(
                &self.path,
                ClientError::AdminClosed {
                    path: self.path.clone(),
                },
            ));
        }
        serde_json::from_str(self.line.trim_end())
            .map_err(|error| failure(&self.path, ClientError::AdminDecode(error)))
    }
}

fn broken(path: &Path, source: io::Error) -> Failure {
    failure(
        path,
        ClientError::AdminBroken {
            path: path.to_owned(),
            source,
        },
    )
}

/// The failure for a client error on the admin socket at `path`: what happened and what to
/// do about it.
fn failure(socket: &Path, error: ClientError) -> Failure {
    let path = socket.display();
    match error {
        ClientError::AdminConnect { source, .. } => connect_failure(socket, &source),
        ClientError::AdminBroken { source, .. } => Failure::Daemon(format!(
            "the admin connection on {path} broke: {source}; see chatd's log"
        )),
        ClientError::AdminClosed { .. } => Failure::Daemon(format!(
            "chatd closed the admin connection on {path} without answering; see its log"
        )),
        ClientError::Timeout => Failure::Daemon(format!(
            "chatd did not answer within {} s on {path}; see its log",
            ADMIN_REPLY_TIMEOUT.as_secs()
        )),
        ClientError::AdminDecode(source) => Failure::Daemon(format!(
            "chatd sent a reply chatctl does not understand ({source}); are chatctl and chatd \
             the same version?"
        )),
        ClientError::Password(reason) => {
            Failure::Usage(format!("cannot use this password: {reason}"))
        }
        ClientError::Registration(message) => Failure::Daemon(message),
        ClientError::Protocol(message) => Failure::Daemon(format!(
            "{message} — are chatctl and chatd the same version?"
        )),
        other => Failure::Daemon(other.to_string()),
    }
}

/// The message for a failed connect: what happened and what to do about it.
fn connect_failure(path: &Path, error: &io::Error) -> Failure {
    let hint = match error.kind() {
        io::ErrorKind::NotFound => {
            "is chatd running? Use --socket or --config to point at its admin socket".to_owned()
        }
        // EACCES and EPERM: the socket's mode (0660) or a directory on the way to it.
        io::ErrorKind::PermissionDenied => permission_hint(path),
        io::ErrorKind::ConnectionRefused => {
            "nothing listens there: chatd is not running or left a stale socket; start chatd, \
             or use --socket or --config to point at the right socket"
                .to_owned()
        }
        _ => "is chatd running? Use --socket or --config to point at its admin socket".to_owned(),
    };
    Failure::Unreachable(format!(
        "cannot connect to the admin socket {}: {error} — {hint}",
        path.display()
    ))
}

/// Who may use the socket at `path`, by name where the system's user and group files know
/// the ids. When even the socket's owner cannot be seen (a directory on the way is closed),
/// the names the packaged systemd unit uses are given.
fn permission_hint(path: &Path) -> String {
    let Ok(socket) = std::fs::metadata(path) else {
        return format!(
            "permission denied on the way to the socket: run chatctl as a member of chatd's \
             admin group ({PACKAGED_ADMIN_GROUP} with the packaged systemd unit) or as the \
             {PACKAGED_USER} user"
        );
    };
    let owner = name_of(Path::new("/etc/passwd"), socket.uid())
        .unwrap_or_else(|| format!("uid {}", socket.uid()));
    let group = name_of(Path::new("/etc/group"), socket.gid())
        .unwrap_or_else(|| format!("gid {}", socket.gid()));
    format!(
        "permission denied: only the socket's owner ({owner}) and members of its group \
         ({group}) may use it; run chatctl as a member of {group} (`usermod -aG {group} \
         USER`, then log in again) or as {owner}"
    )
}

/// The admin group and the daemon's user in `systemd/chatd.sysusers`.
const PACKAGED_ADMIN_GROUP: &str = "chatd-admin";
const PACKAGED_USER: &str = "chatd";

/// The name with numeric id `id` in `database`, a file in the format of `/etc/passwd` or
/// `/etc/group` (both have the name first and the id third). Directory services (LDAP and
/// the like) are not asked: the caller falls back to the number.
fn name_of(database: &Path, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(database).ok()?;
    text.lines().find_map(|entry| {
        let mut fields = entry.split(':');
        let name = fields.next()?;
        let entry_id: u32 = fields.nth(1)?.parse().ok()?;
        (entry_id == id && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_names_the_path_and_the_next_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatd.sock");
        let Err(failure) = Admin::connect(&path).await else {
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
        let Err(failure) = Admin::connect(&path).await else {
            panic!("connected")
        };
        assert!(failure.to_string().contains("stale socket"), "{failure}");
    }

    #[test]
    fn permission_denied_names_the_socket_and_who_may_use_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatd.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        let owner = name_of(Path::new("/etc/passwd"), metadata.uid())
            .unwrap_or_else(|| format!("uid {}", metadata.uid()));
        let group = name_of(Path::new("/etc/group"), metadata.gid())
            .unwrap_or_else(|| format!("gid {}", metadata.gid()));
        let denied = io::Error::from_raw_os_error(13);
        let failure = connect_failure(&path, &denied);
        assert!(matches!(failure, Failure::Unreachable(_)), "{failure:?}");
        assert_eq!(
            failure.to_string(),
            format!(
                "cannot connect to the admin socket {}: {denied} — permission denied: only the \
                 socket's owner ({owner}) and members of its group ({group}) may use it; run \
                 chatctl as a member of {group} (`usermod -aG {group} USER`, then log in \
                 again) or as {owner}",
                path.display()
            )
        );
        // EPERM reads the same as EACCES.
        let not_permitted = connect_failure(&path, &io::Error::from_raw_os_error(1));
        assert!(
            not_permitted.to_string().contains("may use it"),
            "{not_permitted}"
        );
    }

    #[test]
    fn permission_denied_on_an_unseen_socket_names_the_packaged_group() {
        let failure = connect_failure(
            Path::new("/nonexistent/chatd.sock"),
            &io::Error::from_raw_os_error(13),
        );
        let message = failure.to_string();
        assert!(message.contains("/nonexistent/chatd.sock"), "{message}");
        assert!(
            message.contains("member of chatd's admin group (chatd-admin"),
            "{message}"
        );
        assert!(message.contains("or as the chatd user"), "{message}");
    }

    #[test]
    fn names_are_looked_up_by_id_in_passwd_and_group_files() {
        let dir = tempfile::tempdir().unwrap();
        let group = dir.path().join("group");
        std::fs::write(
            &group,
            "root:x:0:\n# comment\nbroken\nchatd-admin:x:999:alice,bob\n",
        )
        .unwrap();
        assert_eq!(name_of(&group, 999).as_deref(), Some("chatd-admin"));
        assert_eq!(name_of(&group, 0).as_deref(), Some("root"));
        assert_eq!(name_of(&group, 5), None);
        assert_eq!(name_of(&dir.path().join("missing"), 0), None);
    }

    #[test]
    fn daemon_side_failures_name_the_socket_and_exit_4() {
        let path = Path::new("/run/chatd/chatd.sock");
        let closed = failure(
            path,
            ClientError::AdminClosed {
                path: path.to_owned(),
            },
        );
        assert_eq!(
            closed.to_string(),
            "chatd closed the admin connection on /run/chatd/chatd.sock without answering; \
             see its log"
        );
        let timeout = failure(path, ClientError::Timeout);
        assert_eq!(
            timeout.to_string(),
            "chatd did not answer within 30 s on /run/chatd/chatd.sock; see its log"
        );
        for failure in [closed, timeout] {
            assert!(matches!(failure, Failure::Daemon(_)));
        }
    }

    #[test]
    fn an_unusable_password_is_a_usage_error() {
        let failure = failure(
            Path::new("chatd.sock"),
            ClientError::Password("too long".to_owned()),
        );
        assert!(matches!(failure, Failure::Usage(_)), "{failure:?}");
        assert_eq!(failure.to_string(), "cannot use this password: too long");
    }
}
