//! The client's WebSocket transport (`ws://`, `wss://`): one text message per frame; the
//! server's close code arrives in its close frame.

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::ClientError;
use super::options::ClientOptions;
use super::tls;
use super::transport::Received;
use crate::error_code::CloseCode;

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Dials `url` and completes the WebSocket handshake (TLS first for `wss://`).
pub(crate) async fn dial(
    url: &str,
    options: &ClientOptions,
) -> Result<(Writer, Reader), ClientError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(options.max_frame_bytes))
        .max_frame_size(Some(options.max_frame_bytes));
    // `None` for ws://, which ignores the connector anyway: only wss:// pays for the root
    // store, and only wss:// fails on a bad extra root.
    let connector = if tls::is_tls_url(url) {
        Some(tls::connector(options)?)
    } else {
        None
    };
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector);
    let (socket, _response) = tokio::time::timeout(options.request_timeout, connect)
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|source| ClientError::Connect {
            url: url.to_owned(),
            source: Box::new(source),
        })?;
    let (sink, stream) = socket.split();
    Ok((
        Writer { sink },
        Reader {
            stream,
            close_code: None,
        },
    ))
}

/// The sending half.
pub(crate) struct Writer {
    sink: SplitSink<WsStream, WsMessage>,
}

impl Writer {
    pub(crate) async fn send(&mut self, frame: Bytes) -> Result<(), ClientError> {
        let text = Utf8Bytes::try_from(frame)
            .map_err(|e| ClientError::Protocol(format!("encoded frame is not UTF-8: {e}")))?;
        self.sink
            .send(WsMessage::Text(text))
            .await
            .map_err(send_error)
    }

    /// Sends a close frame with the normal code; the server answers with its own.
    pub(crate) async fn close(&mut self) -> bool {
        let frame = CloseFrame {
            code: WsCloseCode::Normal,
            reason: Utf8Bytes::default(),
        };
        self.sink.send(WsMessage::Close(Some(frame))).await.is_ok()
    }
}

fn send_error(error: WsError) -> ClientError {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => ClientError::Closed(None),
        other => ClientError::Send(Box::new(other)),
    }
}

/// The receiving half.
pub(crate) struct Reader {
    stream: SplitStream<WsStream>,
    close_code: Option<CloseCode>,
}

impl Reader {
    pub(crate) async fn next(&mut self) -> Received {
        loop {
            match self.stream.next().await {
                Some(Ok(WsMessage::Text(text))) => return Received::Frame(Bytes::from(text)),
                Some(Ok(WsMessage::Close(frame))) => {
                    // Keep reading: the next read sends tungstenite's close reply and then
                    // ends the stream, which completes the close handshake.
                    self.close_code = frame.and_then(|f| CloseCode::from_number(u16::from(f.code)));
                }
                Some(Ok(WsMessage::Binary(_))) => {
                    tracing::debug!("ignoring a binary message; chatd frames are text");
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "websocket read failed");
                    return Received::Closed(self.close_code);
                }
                None => return Received::Closed(self.close_code),
            }
        }
    }
}
