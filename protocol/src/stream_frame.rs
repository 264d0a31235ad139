//! Frames on a byte stream (QUIC): each frame is a 4-byte big-endian length followed by that
//! many bytes of the frame's JSON. A WebSocket message carries its own length, so only
//! stream transports use this.
//!
//! The decoder is sans-IO: the transport appends whatever bytes arrived to a buffer and asks
//! for complete frames. The length is checked against the limit as soon as the 4 header bytes
//! are in, before any room is reserved for the frame, so a peer cannot make the receiver
//! allocate more than the limit by announcing a huge frame.

use bytes::{Buf as _, Bytes, BytesMut};

use crate::codec::DecodeError;

/// Bytes of the length prefix.
pub const HEADER_BYTES: usize = 4;

/// ALPN protocol name of chatd over QUIC. The version is part of the name, so a client and a
/// server that share no protocol version fail the TLS handshake with a clear alert instead of
/// exchanging frames neither understands.
pub const QUIC_ALPN: &[u8] = b"chatd/1";

/// The length prefix for a frame of `len` bytes.
///
/// # Errors
/// [`DecodeError::TooLarge`] when `len` does not fit in 32 bits (no frame is ever that large;
/// the limits are far below).
pub fn header(len: usize) -> Result<[u8; HEADER_BYTES], DecodeError> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| DecodeError::TooLarge {
            len,
            max: u32::MAX as usize,
        })
}

/// Splits a byte stream into frames of at most `max_frame_bytes` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDecoder {
    max_frame_bytes: usize,
}

impl StreamDecoder {
    /// A decoder that refuses frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// Takes the next complete frame off the front of `buffer`: `Ok(None)` when more bytes are
    /// needed (having reserved room for the rest of an announced frame, at most the limit).
    ///
    /// # Errors
    /// [`DecodeError::TooLarge`] as soon as a header announces a frame over the limit; the
    /// stream cannot be resynchronised after that, so the connection must be closed.
    pub fn decode(&self, buffer: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let Some(prefix) = buffer.first_chunk::<HEADER_BYTES>() else {
            return Ok(None);
        };
        // A u32 always fits in usize on the 32- and 64-bit targets chatd builds for; on a
        // smaller one the saturation still refuses the frame.
        let len = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
        if len > self.max_frame_bytes {
            return Err(DecodeError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let total = HEADER_BYTES + len;
        if buffer.len() < total {
            buffer.reserve(total - buffer.len());
            return Ok(None);
        }
        buffer.advance(HEADER_BYTES);
        Ok(Some(buffer.split_to(len).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn framed(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            out.extend_from_slice(&header(frame.len()).unwrap());
            out.extend_from_slice(frame);
        }
        out
    }

    #[test]
    fn frames_come_out_whole_and_in_order() {
        let decoder = StreamDecoder::new(64);
        let mut buffer = BytesMut::from(&framed(&[b"{\"a\":1}", b"", b"xyz"])[..]);
        assert_eq!(
            decoder.decode(&mut buffer).unwrap().as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        assert_eq!(
            decoder.decode(&mut buffer).unwrap().as_deref(),
            Some(&b""[..])
        );
        assert_eq!(
            decoder.decode(&mut buffer).unwrap().as_deref(),
            Some(&b"xyz"[..])
        );
        assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        let decoder = StreamDecoder::new(64);
        let bytes = framed(&[b"hello"]);
        let mut buffer = BytesMut::new();
        for (index, byte) in bytes.iter().enumerate() {
            assert_eq!(
                decoder.decode(&mut buffer).unwrap(),
                None,
                "after {index} bytes"
            );
            buffer.extend_from_slice(&[*byte]);
        }
        assert_eq!(
            decoder.decode(&mut buffer).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
    }

    #[test]
    fn an_oversized_header_is_refused_before_any_allocation() {
        let decoder = StreamDecoder::new(1024);
        let mut buffer = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let capacity = buffer.capacity();
        let error = decoder.decode(&mut buffer).unwrap_err();
        assert_eq!(
            error,
            DecodeError::TooLarge {
                len: u32::MAX as usize,
                max: 1024
            }
        );
        assert_eq!(buffer.capacity(), capacity, "nothing was reserved");
    }

    #[test]
    fn a_frame_exactly_at_the_limit_is_accepted() {
        let decoder = StreamDecoder::new(3);
        let mut buffer = BytesMut::from(&framed(&[b"abc"])[..]);
        assert_eq!(
            decoder.decode(&mut buffer).unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        let mut buffer = BytesMut::from(&framed(&[b"abcd"])[..]);
        assert!(decoder.decode(&mut buffer).is_err());
    }

    proptest! {
        /// However the stream is cut into reads, the same frames come out.
        #[test]
        fn chunking_does_not_change_the_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            cuts in proptest::collection::vec(1usize..17, 0..64),
        ) {
            let decoder = StreamDecoder::new(40);
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            let bytes = framed(&refs);
            let mut buffer = BytesMut::new();
            let mut out = Vec::new();
            let mut rest = &bytes[..];
            let mut cuts = cuts.into_iter().cycle();
            while !rest.is_empty() {
                let take = cuts.next().unwrap_or(rest.len()).min(rest.len());
                buffer.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
                    out.push(frame.to_vec());
                }
            }
            prop_assert_eq!(out, frames);
        }
    }
}
