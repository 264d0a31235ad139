//! The admin socket: a Unix stream socket (mode 0660) that serves chatctl. Each connection
//! carries newline-delimited JSON requests ([`protocol::admin::AdminRequest`]), each answered
//! by one reply line, in order; `history_export` is answered by a stream of lines, written as
//! the store is read, so a slow reader holds the export back instead of making it buffer.
//! Nothing but admin requests is served here.
//!
//! # Layout
//! - this file: the listener, the per-connection loop and `Replies` (the writing half).
//! - `commands`: one function per request.
//! - `history`: exporting and importing history.
//! - `sessions`: listing and kicking live sessions.

mod commands;
mod history;
mod sessions;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::admin::{AdminErrorKind, AdminReply, AdminRequest, MAX_REQUEST_BYTES};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::lifecycle::Tasks;
use crate::node::Node;

/// Request buffer kept between requests; a larger one (after a `history_import` batch) is
/// released, so an idle connection does not keep megabytes.
const KEPT_REQUEST_BUFFER_BYTES: usize = 64 * 1024;

/// Binds the admin socket at `path`, replacing a stale socket file left by a crash.
///
/// # Errors
/// When the path is taken by a live daemon or cannot be bound.
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running chatd", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let listener = UnixListener::bind(path)?;
    // Owner and group may administer; the group is how operators grant access.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves admin connections until `tasks` is cancelled, then removes the socket file.
pub async fn serve(listener: UnixListener, path: PathBuf, node: Arc<Node>, tasks: Tasks) {
    loop {
        let accepted = tokio::select! {
            () = tasks.token().cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let node = Arc::clone(&node);
                let token = tasks.token().clone();
                tasks.spawn("admin-connection", async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        result = serve_connection(stream, &node) => {
                            if let Err(error) = result {
                                tracing::debug!(%error, "admin connection ended");
                            }
                        }
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    if let Err(error) = std::fs::remove_file(&path) {
        tracing::debug!(%error, "removing the admin socket failed");
    }
}

async fn serve_connection(stream: UnixStream, node: &Node) -> std::io::Result<()> {
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut replies = Replies::new(write);
    let mut line = Vec::new();
    loop {
        line.clear();
        line.shrink_to(KEPT_REQUEST_BUFFER_BYTES);
        let read = (&mut reader)
            .take(MAX_REQUEST_BYTES as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Ok(());
        }
        let complete = line.ends_with(b"\n");
        if !complete && line.len() >= MAX_REQUEST_BYTES {
            // The rest of the line is still unread, so nothing after it can be trusted to
            // start a request.
            let message = format!(
                "request line longer than {MAX_REQUEST_BYTES} bytes; send less per request"
            );
            return replies
                .send(&AdminReply::Error {
                    kind: AdminErrorKind::Invalid,
                    message,
                })
                .await;
        }
        match serde_json::from_slice::<AdminRequest>(line.trim_ascii_end()) {
            Ok(request) => commands::handle(node, request, &mut replies).await?,
            Err(error) => {
                let reply = AdminReply::Error {
                    kind: AdminErrorKind::Invalid,
                    message: format!("not a valid admin request: {error}"),
                };
                replies.send(&reply).await?;
            }
        }
        if !complete {
            return Ok(());
        }
    }
}

/// The writing half of an admin connection: one JSON line per reply. A write waits while the
/// peer does not read, which is what paces a streamed answer.
struct Replies<W> {
    out: W,
}

impl<W: AsyncWrite + Unpin> Replies<W> {
    fn new(out: W) -> Self {
        Self { out }
    }

    /// Writes one reply line.
    ///
    /// # Errors
    /// When the connection fails; it is then unusable.
    async fn send(&mut self, reply: &AdminReply) -> std::io::Result<()> {
        // An AdminReply holds only strings, numbers, booleans and lists of them, which
        // serde_json always serializes.
        let mut encoded = serde_json::to_vec(reply).unwrap_or_else(|_| b"{}".to_vec());
        encoded.push(b'\n');
        self.out.write_all(&encoded).await
    }
}
