//! [`AdminClient`]: a connection to the daemon's admin socket (feature `client`), speaking
//! [`crate::admin`]: one JSON request line out, one reply line back, in order. It also runs
//! the client half of OPAQUE registration ([`AdminClient::register_user`]), so the password
//! never leaves this process.
//!
//! Failures are [`ClientError`]s that carry the socket path and the underlying cause, not
//! advice: chatctl turns them into messages with a next step, the load generator and the tests
//! report them as they are.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opaque_ke::{ClientRegistration, ClientRegistrationFinishParameters, RegistrationResponse};
use rand::rngs::OsRng;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::error::ClientError;
use crate::admin::{AdminReply, AdminRequest, RegisterMode};
use crate::bytes_b64::Base64Bytes;
use crate::ids::UserId;
use crate::opaque_suite::Suite;

/// How long to wait for one reply. Every admin request is a few store operations on the
/// daemon, so a reply this late means the daemon is stuck.
pub const ADMIN_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// An open admin connection. Requests go one at a time (`&mut self`), which is what keeps
/// replies matched to requests on this line protocol.
#[derive(Debug)]
pub struct AdminClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    path: PathBuf,
}

impl AdminClient {
    /// Connects to the admin socket at `path`.
    ///
    /// # Errors
    /// [`ClientError::AdminConnect`]; its source's `kind()` tells a missing socket
    /// (`NotFound`) from a stale one (`ConnectionRefused`) and a missing permission
    /// (`PermissionDenied`).
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream =
            UnixStream::connect(path)
                .await
                .map_err(|source| ClientError::AdminConnect {
                    path: path.to_owned(),
                    source,
                })?;
        let (reader, writer) = stream.into_split();
        Ok(Self {
            reader: BufReader::new(reader),
            writer,
            path: path.to_owned(),
        })
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and reads its reply. An `error` reply is returned as a reply, not as
    /// an `Err`, so the caller decides what a refusal means for its command.
    ///
    /// # Errors
    /// [`ClientError::AdminBroken`] when the socket fails, [`ClientError::AdminClosed`] when
    /// the daemon hangs up without answering, [`ClientError::Timeout`] after
    /// [`ADMIN_REPLY_TIMEOUT`], [`ClientError::AdminDecode`] for a reply this build cannot
    /// read (a daemon of another version).
    ///
    /// # Cancel safety
    /// Not cancel-safe: a cancelled request may leave its reply unread, after which replies
    /// no longer match requests. Drop the client instead of reusing it.
    pub async fn request(&mut self, request: &AdminRequest) -> Result<AdminReply, ClientError> {
        let mut line = serde_json::to_string(request)
            .map_err(|e| ClientError::Protocol(format!("cannot encode the request: {e}")))?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|source| self.broken(source))?;

        let mut reply = String::new();
        let read = tokio::time::timeout(ADMIN_REPLY_TIMEOUT, self.reader.read_line(&mut reply))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|source| self.broken(source))?;
        if read == 0 {
            return Err(ClientError::AdminClosed {
                path: self.path.clone(),
            });
        }
        serde_json::from_str(reply.trim_end()).map_err(ClientError::AdminDecode)
    }

    /// Registers `user` with `password` (OPAQUE, two requests on this connection): creates
    /// the user ([`RegisterMode::Create`]) or replaces its password
    /// ([`RegisterMode::Replace`]). The key stretching (Argon2id, 64 MiB, about 150 ms of CPU
    /// in an optimised build) runs on tokio's blocking pool.
    ///
    /// Returns the reply that ended the registration: `done` on success, or the daemon's
    /// `error` reply to either step (`already_exists`, `not_found`, ...), as
    /// [`AdminClient::request`] does.
    ///
    /// # Errors
    /// [`ClientError::Password`] when OPAQUE cannot use the password (empty, or longer than
    /// 65 535 bytes); [`ClientError::Protocol`] when the daemon answers `register_start` with
    /// something other than a challenge or sends an invalid one;
    /// [`ClientError::Registration`] when the client half fails; the errors of
    /// [`AdminClient::request`].
    pub async fn register_user(
        &mut self,
        user: &UserId,
        password: &str,
        mode: RegisterMode,
    ) -> Result<AdminReply, ClientError> {
        let start = ClientRegistration::<Suite>::start(&mut OsRng, password.as_bytes())
            .map_err(|e| ClientError::Password(e.to_string()))?;
        let request = Base64Bytes(start.message.serialize().to_vec());
        let reply = self
            .request(&AdminRequest::RegisterStart {
                user: user.clone(),
                request,
            })
            .await?;
        let response = match reply {
            AdminReply::RegisterChallenge { response } => response,
            refused @ AdminReply::Error { .. } => return Ok(refused),
            _ => {
                return Err(ClientError::Protocol(
                    "chatd answered `register_start` with something other than a challenge"
                        .to_owned(),
                ));
            }
        };
        let response =
            RegistrationResponse::<Suite>::deserialize(response.as_bytes()).map_err(|e| {
                ClientError::Protocol(format!("chatd sent an invalid registration response: {e}"))
            })?;
        let password = password.as_bytes().to_vec();
        let finished = tokio::task::spawn_blocking(move || {
            start.state.finish(
                &mut OsRng,
                &password,
                response,
                ClientRegistrationFinishParameters::default(),
            )
        })
        .await
        .map_err(|e| ClientError::Registration(format!("the key stretching task failed: {e}")))?
        .map_err(|e| ClientError::Registration(format!("cannot finish the registration: {e}")))?;
        let upload = Base64Bytes(finished.message.serialize().to_vec());
        self.request(&AdminRequest::RegisterFinish {
            user: user.clone(),
            upload,
            mode,
        })
        .await
    }

    fn broken(&self, source: std::io::Error) -> ClientError {
        ClientError::AdminBroken {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use opaque_ke::{RegistrationUpload, ServerRegistration, ServerSetup};
    use tokio::net::UnixListener;

    use super::*;
    use crate::admin::AdminErrorKind;

    /// Serves one admin connection on `listener`, answering each request with `answer`;
    /// returns the requests it saw.
    fn peer(
        listener: UnixListener,
        mut answer: impl FnMut(&AdminRequest) -> Option<AdminReply> + Send + 'static,
    ) -> tokio::task::JoinHandle<Vec<AdminRequest>> {
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (reader, mut writer) = stream.into_split();
            let mut lines = BufReader::new(reader).lines();
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                let request: AdminRequest = serde_json::from_str(&line).unwrap();
                let reply = answer(&request);
                seen.push(request);
                let Some(reply) = reply else { break };
                let mut line = serde_json::to_string(&reply).unwrap();
                line.push('\n');
                writer.write_all(line.as_bytes()).await.unwrap();
            }
            seen
        })
    }

    /// A socket path of its own for each test, removed when the test ends.
    struct SocketPath(PathBuf);

    impl SocketPath {
        fn new(test: &str) -> Self {
            let name = format!("chatd-admin-{}-{test}.sock", std::process::id());
            let path = std::env::temp_dir().join(name);
            let _ = std::fs::remove_file(&path);
            Self(path)
        }

        fn bind(&self) -> UnixListener {
            UnixListener::bind(&self.0).unwrap()
        }
    }

    impl Drop for SocketPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error_naming_the_path() {
        let socket = SocketPath::new("missing");
        let path = socket.0.clone();
        let Err(ClientError::AdminConnect {
            path: named,
            source,
        }) = AdminClient::connect(&path).await
        else {
            panic!("connected or failed otherwise")
        };
        assert_eq!(named, path);
        assert_eq!(source.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_request_gets_its_reply_and_an_error_reply_is_a_reply() {
        let socket = SocketPath::new("reply");
        let (path, listener) = (socket.0.clone(), socket.bind());
        let server = peer(listener, |request| {
            Some(match request {
                AdminRequest::UserList => AdminReply::Users { users: Vec::new() },
                _ => AdminReply::Error {
                    kind: AdminErrorKind::NotFound,
                    message: "no user `x`".to_owned(),
                },
            })
        });
        let mut admin = AdminClient::connect(&path).await.unwrap();
        assert_eq!(admin.path(), path);
        let users = admin.request(&AdminRequest::UserList).await.unwrap();
        assert_eq!(users, AdminReply::Users { users: Vec::new() });
        let user = UserId::parse("x").unwrap();
        let refused = admin
            .request(&AdminRequest::UserEnable { user })
            .await
            .unwrap();
        assert!(matches!(
            refused,
            AdminReply::Error {
                kind: AdminErrorKind::NotFound,
                ..
            }
        ));
        drop(admin);
        assert_eq!(server.await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_hang_up_without_a_reply_is_reported_as_closed() {
        let socket = SocketPath::new("hangup");
        let (path, listener) = (socket.0.clone(), socket.bind());
        let _server = peer(listener, |_| None);
        let mut admin = AdminClient::connect(&path).await.unwrap();
        let error = admin.request(&AdminRequest::Status).await.unwrap_err();
        assert!(
            matches!(&error, ClientError::AdminClosed { path: named } if *named == path),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn registration_uploads_a_password_file_and_never_the_password() {
        let socket = SocketPath::new("register");
        let (path, listener) = (socket.0.clone(), socket.bind());
        let setup = ServerSetup::<Suite>::new(&mut OsRng);
        let server_setup = setup.clone();
        let server = peer(listener, move |request| {
            Some(match request {
                AdminRequest::RegisterStart { user, request } => {
                    let request =
                        opaque_ke::RegistrationRequest::deserialize(request.as_bytes()).unwrap();
                    let start = ServerRegistration::<Suite>::start(
                        &server_setup,
                        request,
                        user.as_str().as_bytes(),
                    )
                    .unwrap();
                    AdminReply::RegisterChallenge {
                        response: Base64Bytes(start.message.serialize().to_vec()),
                    }
                }
                _ => AdminReply::Done,
            })
        });
        let mut admin = AdminClient::connect(&path).await.unwrap();
        let bob = UserId::parse("bob").unwrap();
        let reply = admin
            .register_user(&bob, "hunter2", RegisterMode::Replace)
            .await
            .unwrap();
        assert_eq!(reply, AdminReply::Done);
        drop(admin);

        let requests = server.await.unwrap();
        let [
            AdminRequest::RegisterStart { .. },
            AdminRequest::RegisterFinish { user, upload, mode },
        ] = &requests[..]
        else {
            panic!("{requests:?}")
        };
        assert_eq!((user, *mode), (&bob, RegisterMode::Replace));
        for request in &requests {
            let line = serde_json::to_string(request).unwrap();
            assert!(!line.contains("hunter2"), "password on the socket: {line}");
        }
        // The upload is a valid password file for the server's setup.
        RegistrationUpload::<Suite>::deserialize(upload.as_bytes()).unwrap();
    }

    #[tokio::test]
    async fn a_refused_register_start_is_returned_as_the_reply() {
        let socket = SocketPath::new("refused");
        let (path, listener) = (socket.0.clone(), socket.bind());
        let server = peer(listener, |_| {
            Some(AdminReply::Error {
                kind: AdminErrorKind::AlreadyExists,
                message: "user `bob` exists".to_owned(),
            })
        });
        let mut admin = AdminClient::connect(&path).await.unwrap();
        let bob = UserId::parse("bob").unwrap();
        let reply = admin
            .register_user(&bob, "hunter2", RegisterMode::Create)
            .await
            .unwrap();
        assert!(matches!(
            reply,
            AdminReply::Error {
                kind: AdminErrorKind::AlreadyExists,
                ..
            }
        ));
        drop(admin);
        assert_eq!(server.await.unwrap().len(), 1, "no register_finish sent");
    }
}
