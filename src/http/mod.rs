//! Sans-IO HTTP/1.x client framing.
//!
//! Nothing here touches a socket: requests are encoded to bytes once, and
//! responses are parsed from byte slices of any size as they arrive. Every
//! backend and the demo server share this code, so a comparison of backends
//! measures I/O models, not parsers.

mod chunked;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use request::{RequestSpec, Version, encode_request};
pub use response::{HttpError, Progress, Response, ResponseParser};

/// Largest response header block accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response headers accepted.
pub const MAX_HEADERS: usize = 100;
