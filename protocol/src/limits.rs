//! Protocol-wide hard limits shared by client and server. Operators can lower the
//! configurable ones (frame size, body length, page size) in the daemon's config; these are
//! the ceilings the wire format itself guarantees.

/// Longest user name in bytes.
pub const MAX_USER_NAME_BYTES: usize = 32;
/// Longest room name in bytes (ordinary rooms; direct rooms are `dm:` plus two user names).
pub const MAX_ROOM_NAME_BYTES: usize = 64;
/// Longest client message id in bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 64;
/// Longest request id in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 64;
/// Default largest frame a server accepts, in bytes. Large enough for a maximum-length body
/// (4 KiB of text, up to 6x when every character needs a JSON `\u` escape) plus the envelope.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 32 * 1024;
/// Default longest message body, in bytes of UTF-8.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024;
/// Largest history page a client may ask for.
pub const MAX_HISTORY_PAGE: u32 = 500;
