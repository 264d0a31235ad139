//! The two ways a client reaches a server, behind one small interface the connection uses:
//! a [`Writer`] that sends encoded client frames and a [`Reader`] that yields the server's
//! frames and, last, how the connection ended.
//!
//! - WebSocket (`ws://`, `wss://`): one text message per frame, close codes in close frames.
//! - QUIC (`quic://`): a control stream the client opens (requests out, replies in), a
//!   stream per room the server opens (events of that room, in order), datagrams (typing
//!   and presence); stream frames are length-prefixed; the close code is the connection's
//!   application error code.

use bytes::Bytes;

use super::error::ClientError;
use super::options::ClientOptions;
use super::{quic, websocket};
use crate::error_code::CloseCode;

/// What a [`Reader`] yields.
#[derive(Debug)]
pub(crate) enum Received {
    /// One complete server frame, undecoded.
    Frame(Bytes),
    /// The connection ended, with the server's close code when it sent one. Nothing follows.
    Closed(Option<CloseCode>),
}

/// Which transport a URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    WebSocket,
    Quic,
}

impl Scheme {
    /// The scheme of `url`; URL schemes are case-insensitive.
    pub(crate) fn of(url: &str) -> Result<Self, ClientError> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme.map(str::to_ascii_lowercase).as_deref() {
            Some("ws" | "wss") => Ok(Self::WebSocket),
            Some("quic") => Ok(Self::Quic),
            _ => Err(ClientError::Connect {
                url: url.to_owned(),
                source: "the URL must start with ws://, wss:// or quic://".into(),
            }),
        }
    }
}

/// The sending half of a connection.
pub(crate) enum Writer {
    WebSocket(websocket::Writer),
    Quic(quic::Writer),
}

impl Writer {
    /// Sends one encoded frame.
    pub(crate) async fn send(&mut self, frame: Bytes) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(writer) => writer.send(frame).await,
            Self::Quic(writer) => writer.send(frame).await,
        }
    }

    /// Starts a normal close. Returns whether the server is expected to answer it (then the
    /// reader ends when it does).
    pub(crate) async fn close(&mut self) -> bool {
        match self {
            Self::WebSocket(writer) => writer.close().await,
            Self::Quic(writer) => writer.close(),
        }
    }

    /// Waits until a close has reached the server (QUIC acknowledges it at transport level;
    /// a WebSocket close completes in the reader).
    pub(crate) async fn closed(&self) {
        if let Self::Quic(writer) = self {
            writer.closed().await;
        }
    }

    /// Moves the connection to a new local UDP socket (a new address), as a phone does when
    /// it changes networks. QUIC only.
    pub(crate) fn rebind(&self) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(_) => Err(ClientError::Unsupported(
                "rebind needs a quic:// connection; a WebSocket cannot change its address"
                    .to_owned(),
            )),
            Self::Quic(writer) => writer.rebind(),
        }
    }
}

/// The receiving half of a connection.
pub(crate) enum Reader {
    WebSocket(websocket::Reader),
    Quic(quic::Reader),
}

impl Reader {
    /// The next frame from the server, or how the connection ended.
    ///
    /// Cancel safety: cancel-safe; a frame partly received stays buffered.
    pub(crate) async fn next(&mut self) -> Received {
        match self {
            Self::WebSocket(reader) => reader.next().await,
            Self::Quic(reader) => reader.next().await,
        }
    }
}

/// Opens the transport `url` names.
pub(crate) async fn dial(
    url: &str,
    options: &ClientOptions,
) -> Result<(Writer, Reader), ClientError> {
    match Scheme::of(url)? {
        Scheme::WebSocket => {
            let (writer, reader) = websocket::dial(url, options).await?;
            Ok((Writer::WebSocket(writer), Reader::WebSocket(reader)))
        }
        Scheme::Quic => {
            let (writer, reader) = quic::dial(url, options).await?;
            Ok((Writer::Quic(writer), Reader::Quic(reader)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_transport() {
        assert_eq!(Scheme::of("ws://h:1").unwrap(), Scheme::WebSocket);
        assert_eq!(Scheme::of("WSS://h:1").unwrap(), Scheme::WebSocket);
        assert_eq!(Scheme::of("quic://h:1").unwrap(), Scheme::Quic);
        let error = Scheme::of("http://h:1").unwrap_err();
        assert!(
            std::error::Error::source(&error)
                .unwrap()
                .to_string()
                .contains("ws://, wss:// or quic://")
        );
        assert!(Scheme::of("h:1").is_err());
    }
}
