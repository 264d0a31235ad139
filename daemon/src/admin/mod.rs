//! The admin socket: a Unix stream socket (mode 0660) that serves chatctl. Each connection
//! carries newline-delimited JSON requests ([`protocol::admin::AdminRequest`]), each answered
//! by exactly one reply line, in order. Nothing but admin requests is served here.
//!
//! # Layout
//! - this file: the listener and the per-connection loop.
//! - `commands`: one function per request.

mod commands;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::admin::{AdminErrorKind, AdminReply, AdminRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::lifecycle::Tasks;
use crate::node::Node;

/// Longest admin request line. Registration messages are the largest (a few hundred bytes
/// of base64); this leaves ample room while bounding what a connection can make us buffer.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

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
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_REQUEST_BYTES)
            .read_line(&mut line)
            .await?;
        if read == 0 {
            return Ok(());
        }
        let reply = match serde_json::from_str::<AdminRequest>(line.trim_end()) {
            Ok(request) => commands::handle(node, request).await,
            Err(error) => AdminReply::Error {
                kind: AdminErrorKind::Invalid,
                message: format!("not a valid admin request: {error}"),
            },
        };
        let mut encoded = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
        encoded.push(b'\n');
        write.write_all(&encoded).await?;
        if !line.ends_with('\n') {
            // The request was cut at the size limit; the rest of the line is not trusted.
            return Ok(());
        }
    }
}
