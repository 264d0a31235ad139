//! One QUIC connection adapted to [`Transport`]: frames from the client arrive on the one
//! bidirectional control stream the client opens; replies and acks go back on it; the events
//! of each room go on a unidirectional stream of their own, opened by the server on the
//! room's first event, so a packet lost in one room does not hold back the others; typing and
//! presence go as datagrams when the client accepts them and they fit, else on the control
//! stream. Every stream frame is length-prefixed ([`protocol::stream_frame`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::stream_frame::{self, StreamDecoder};
use protocol::{CloseCode, RoomId};
use quinn::{ConnectionError, ReadError, RecvStream, SendDatagramError, SendStream, VarInt};

use crate::transport::{Lane, Transport, TransportError};

/// Most bytes taken from the control stream per read.
const READ_CHUNK: usize = 64 * 1024;

/// Room streams kept open after their room was left. A room's events stay on one stream for
/// as long as it is open, so a rejoin cannot see an older event overtake a newer one on
/// another stream; past this many left rooms the longest-left stream is finished.
const MAX_LEFT_ROOM_STREAMS: usize = 64;

/// How long a close waits for the client to acknowledge the control stream (the going-away
/// frame and the last acks) before the connection is closed anyway.
const CLOSE_FLUSH: Duration = Duration::from_millis(1500);

/// A QUIC connection after the handshake and the control stream's first bytes.
pub struct QuicTransport {
    connection: quinn::Connection,
    control_send: SendStream,
    control_recv: RecvStream,
    received: BytesMut,
    decoder: StreamDecoder,
    rooms: HashMap<RoomId, SendStream>,
    /// Rooms the session left whose streams are still open, oldest first.
    left_rooms: VecDeque<RoomId>,
}

impl QuicTransport {
    /// Adapts `connection`, whose control stream is `control_send`/`control_recv`; frames over
    /// `max_frame_bytes` close the connection.
    pub fn new(
        connection: quinn::Connection,
        (control_send, control_recv): (SendStream, RecvStream),
        max_frame_bytes: usize,
    ) -> Self {
        Self {
            connection,
            control_send,
            control_recv,
            received: BytesMut::new(),
            decoder: StreamDecoder::new(max_frame_bytes),
            rooms: HashMap::new(),
            left_rooms: VecDeque::new(),
        }
    }

    async fn room_stream(&mut self, room: &RoomId) -> Result<&mut SendStream, TransportError> {
        if !self.rooms.contains_key(room) {
            let stream = self
                .connection
                .open_uni()
                .await
                .map_err(|error| connection_lost(&error))?;
            self.rooms.insert(room.clone(), stream);
        }
        self.left_rooms.retain(|left| left != room);
        self.rooms
            .get_mut(room)
            .ok_or_else(|| TransportError::Io("room stream vanished".to_owned()))
    }

    /// Sends an ephemeral frame as a datagram; `false` when it must go on a stream instead
    /// (the client takes no datagrams, or this one is too large for the path).
    fn send_datagram(&self, frame: &Bytes) -> Result<bool, TransportError> {
        if self
            .connection
            .max_datagram_size()
            .is_none_or(|max| frame.len() > max)
        {
            return Ok(false);
        }
        match self.connection.send_datagram(frame.clone()) {
            Ok(()) => Ok(true),
            Err(SendDatagramError::ConnectionLost(error)) => Err(connection_lost(&error)),
            // The path's MTU shrank between the check and the send, or support went away.
            Err(
                SendDatagramError::TooLarge
                | SendDatagramError::UnsupportedByPeer
                | SendDatagramError::Disabled,
            ) => Ok(false),
        }
    }
}

async fn write_frame(stream: &mut SendStream, frame: Bytes) -> Result<(), TransportError> {
    let header = stream_frame::header(frame.len()).map_err(|_| TransportError::TooLarge)?;
    let mut chunks = [Bytes::copy_from_slice(&header), frame];
    stream
        .write_all_chunks(&mut chunks)
        .await
        .map_err(|error| TransportError::Io(error.to_string()))
}

fn connection_lost(error: &ConnectionError) -> TransportError {
    TransportError::Io(error.to_string())
}

impl Transport for QuicTransport {
    async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        loop {
            match self.decoder.decode(&mut self.received) {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) => {}
                Err(_too_large) => return Some(Err(TransportError::TooLarge)),
            }
            // Cancel-safe: a chunk is only taken off the stream when this completes.
            match self.control_recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.received.extend_from_slice(&chunk.bytes),
                // The client finished its control stream, or closed the connection.
                Ok(None)
                | Err(ReadError::ConnectionLost(
                    ConnectionError::ApplicationClosed(_) | ConnectionError::LocallyClosed,
                )) => return None,
                Err(error) => return Some(Err(TransportError::Io(error.to_string()))),
            }
        }
    }

    async fn send(&mut self, lane: Lane<'_>, frame: Bytes) -> Result<(), TransportError> {
        match lane {
            Lane::Control => write_frame(&mut self.control_send, frame).await,
            Lane::Room(room) => write_frame(self.room_stream(room).await?, frame).await,
            Lane::Ephemeral => {
                if self.send_datagram(&frame)? {
                    return Ok(());
                }
                write_frame(&mut self.control_send, frame).await
            }
        }
    }

    fn room_left(&mut self, room: &RoomId) {
        if !self.rooms.contains_key(room) || self.left_rooms.contains(room) {
            return;
        }
        self.left_rooms.push_back(room.clone());
        if self.left_rooms.len() > MAX_LEFT_ROOM_STREAMS
            && let Some(oldest) = self.left_rooms.pop_front()
            && let Some(mut stream) = self.rooms.remove(&oldest)
        {
            // Finishing frees the client's stream credit once it has read the rest.
            let _ = stream.finish();
        }
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        for stream in self.rooms.values_mut() {
            let _ = stream.finish();
        }
        // A close discards whatever is unsent, so first let the control stream's last frames
        // (going-away, acks) reach the client, as long as it keeps reading.
        if self.control_send.finish().is_ok() {
            let flushed = self.control_send.stopped();
            let _ = tokio::time::timeout(CLOSE_FLUSH, flushed).await;
        }
        self.connection.close(
            VarInt::from_u32(u32::from(code.number())),
            reason.as_bytes(),
        );
    }

    fn peer(&self) -> SocketAddr {
        self.connection.remote_address()
    }

    fn name(&self) -> &'static str {
        "quic"
    }
}
