//! The client's QUIC transport (`quic://host:port`): TLS 1.3 with the ALPN `chatd/1`; one
//! bidirectional control stream the client opens (its frames out, replies and acks in); a
//! unidirectional stream per room that the server opens (that room's events, in order); and
//! datagrams (typing, presence). Every stream frame is length-prefixed
//! ([`crate::stream_frame`]); the server's close code is the connection's application error
//! code.
//!
//! The endpoint (the UDP socket) belongs to one connection, so [`Writer::rebind`] can move
//! it to a new local address, as a phone does when it changes networks; the server keeps
//! the session (QUIC connection migration).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use futures_util::stream::{BoxStream, SelectAll};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ConnectionError, IdleTimeout, RecvStream, SendStream, VarInt, WriteError};

use super::error::ClientError;
use super::options::ClientOptions;
use super::tls;
use super::transport::Received;
use crate::error_code::CloseCode;
use crate::stream_frame::{self, QUIC_ALPN, StreamDecoder};

/// Most bytes taken from a stream per read.
const READ_CHUNK: usize = 64 * 1024;

/// Streams the server may have open towards this client at once: one per room the session is
/// in, and a few kept for rooms it left. Far above any server's room limit; credit costs
/// nothing until used.
const MAX_SERVER_STREAMS: u32 = 4096;

/// Dials `url` (`quic://host:port`), completes the handshake and opens the control stream.
pub(crate) async fn dial(
    url: &str,
    options: &ClientOptions,
) -> Result<(Writer, Reader), ClientError> {
    let connect_error = |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Connect {
        url: url.to_owned(),
        source,
    };
    let (host, port) = host_and_port(url).map_err(|why| connect_error(why.into()))?;
    let address = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| connect_error(Box::new(e)))?
        .next()
        .ok_or_else(|| connect_error(format!("{host} has no address").into()))?;
    let endpoint = quinn::Endpoint::client(unspecified_like(address))
        .map_err(|e| connect_error(Box::new(e)))?;

    let mut crypto = tls::client_config(options)?;
    crypto.alpn_protocols = vec![QUIC_ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(crypto).map_err(|e| connect_error(Box::new(e)))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(options)?));

    let connecting = endpoint
        .connect_with(config, address, host)
        .map_err(|e| connect_error(Box::new(e)))?;
    let open = async {
        let connection = connecting.await?;
        let control = connection.open_bi().await?;
        Ok::<_, ConnectionError>((connection, control))
    };
    let (connection, (send, recv)) = tokio::time::timeout(options.request_timeout, open)
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|e| connect_error(Box::new(e)))?;
    let reader = Reader {
        connection: connection.clone(),
        control: frames(recv, options.max_frame_bytes),
        rooms: SelectAll::new(),
        max_frame_bytes: options.max_frame_bytes,
    };
    let writer = Writer {
        send,
        connection,
        endpoint,
    };
    Ok((writer, reader))
}

fn transport_config(options: &ClientOptions) -> Result<quinn::TransportConfig, ClientError> {
    let mut transport = quinn::TransportConfig::default();
    let idle =
        IdleTimeout::try_from(options.quic_idle_timeout).map_err(|_| ClientError::Connect {
            url: String::new(),
            source: "quic_idle_timeout is too large".into(),
        })?;
    transport.max_idle_timeout(Some(idle));
    transport.keep_alive_interval(
        (!options.quic_keep_alive.is_zero()).then_some(options.quic_keep_alive),
    );
    // The client opens one stream, the control stream; the server opens one per room.
    transport.max_concurrent_bidi_streams(VarInt::from_u32(0));
    transport.max_concurrent_uni_streams(VarInt::from_u32(MAX_SERVER_STREAMS));
    Ok(transport)
}

/// `host` and `port` of `quic://host:port[/...]`; IPv6 hosts in brackets.
fn host_and_port(url: &str) -> Result<(&str, u16), String> {
    let rest = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("quic://"))
        .map(|_| &url[7..])
        .ok_or_else(|| "the URL must start with quic://".to_owned())?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{authority} has no port; write quic://host:port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    Ok((host, port))
}

/// A local address of the same family as `remote`, any port.
fn unspecified_like(remote: SocketAddr) -> SocketAddr {
    match remote {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// The frames of one stream, until it ends or breaks (a break is logged: the connection's
/// end is reported by the control stream).
fn frames(recv: RecvStream, max_frame_bytes: usize) -> BoxStream<'static, Bytes> {
    let decoder = StreamDecoder::new(max_frame_bytes);
    futures_util::stream::unfold(Some((recv, BytesMut::new())), move |state| async move {
        let (mut recv, mut buffer) = state?;
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(frame)) => return Some((frame, Some((recv, buffer)))),
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, "server stream broke the framing; ignoring it");
                    let _ = recv.stop(VarInt::from_u32(0));
                    return None;
                }
            }
            match recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => buffer.extend_from_slice(&chunk.bytes),
                Ok(None) => return None,
                Err(error) => {
                    tracing::debug!(%error, "server stream ended");
                    return None;
                }
            }
        }
    })
    .boxed()
}

/// The sending half: the control stream, and the endpoint it runs on.
pub(crate) struct Writer {
    send: SendStream,
    connection: quinn::Connection,
    endpoint: quinn::Endpoint,
}

impl Writer {
    pub(crate) async fn send(&mut self, frame: Bytes) -> Result<(), ClientError> {
        let header =
            stream_frame::header(frame.len()).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut chunks = [Bytes::copy_from_slice(&header), frame];
        self.send
            .write_all_chunks(&mut chunks)
            .await
            .map_err(|error| match error {
                WriteError::ConnectionLost(lost) => ClientError::Closed(close_code(&lost)),
                other => ClientError::Send(Box::new(other)),
            })
    }

    /// Closes the connection with the normal code. QUIC has no close reply to wait for.
    pub(crate) fn close(&mut self) -> bool {
        self.connection
            .close(VarInt::from_u32(u32::from(CloseCode::Normal.number())), b"");
        false
    }

    /// Waits until the close has been sent (and resent, should the server's packets show it
    /// was lost), so the server learns of it now rather than at its idle timeout.
    pub(crate) async fn closed(&self) {
        self.endpoint.wait_idle().await;
    }

    pub(crate) fn rebind(&self) -> Result<(), ClientError> {
        let local = self
            .endpoint
            .local_addr()
            .map_err(|e| ClientError::Send(Box::new(e)))?;
        let socket = std::net::UdpSocket::bind(unspecified_like(local))
            .map_err(|e| ClientError::Send(Box::new(e)))?;
        self.endpoint
            .rebind(socket)
            .map_err(|e| ClientError::Send(Box::new(e)))
    }
}

/// The receiving half: the control stream, the room streams and datagrams, merged.
pub(crate) struct Reader {
    connection: quinn::Connection,
    control: BoxStream<'static, Bytes>,
    rooms: SelectAll<BoxStream<'static, Bytes>>,
    max_frame_bytes: usize,
}

impl Reader {
    pub(crate) async fn next(&mut self) -> Received {
        loop {
            tokio::select! {
                // Frames already received come before the news that the connection ended.
                biased;
                frame = self.control.next() => {
                    return match frame {
                        Some(frame) => Received::Frame(frame),
                        None => Received::Closed(self.close_code()),
                    };
                }
                Some(frame) = self.rooms.next(), if !self.rooms.is_empty() => {
                    return Received::Frame(frame);
                }
                stream = self.connection.accept_uni() => match stream {
                    Ok(recv) => self.rooms.push(frames(recv, self.max_frame_bytes)),
                    Err(_) => return Received::Closed(self.close_code()),
                },
                datagram = self.connection.read_datagram() => match datagram {
                    Ok(frame) => return Received::Frame(frame),
                    Err(_) => return Received::Closed(self.close_code()),
                },
            }
        }
    }

    fn close_code(&self) -> Option<CloseCode> {
        self.connection
            .close_reason()
            .and_then(|reason| close_code(&reason))
    }
}

/// The server's close code, when the server closed the connection with one.
fn close_code(error: &ConnectionError) -> Option<CloseCode> {
    match error {
        ConnectionError::ApplicationClosed(close) => u16::try_from(close.error_code.into_inner())
            .ok()
            .and_then(CloseCode::from_number),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            host_and_port("quic://example.org:7879").unwrap(),
            ("example.org", 7879)
        );
        assert_eq!(
            host_and_port("QUIC://127.0.0.1:1/x").unwrap(),
            ("127.0.0.1", 1)
        );
        assert_eq!(host_and_port("quic://[::1]:7879").unwrap(), ("::1", 7879));
        assert!(
            host_and_port("quic://example.org")
                .unwrap_err()
                .contains("no port")
        );
        assert!(
            host_and_port("quic://h:99999")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(host_and_port("quic://:1").is_err());
        assert!(host_and_port("ws://h:1").is_err());
    }
}
