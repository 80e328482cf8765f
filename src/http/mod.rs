//! Sans-IO HTTP, both sides of a connection.
//!
//! Nothing here touches a socket. The client encodes requests to bytes once
//! (`request`) and parses responses from byte slices of any size as they
//! arrive (`response`); the demo server parses request heads and encodes
//! answers (`server`). Framing rules both sides must agree on
//! (`Content-Length` repeats, where a head ends) live once, in `fields`;
//! HTTP/2's frame layout and frame encoders, which the client's session
//! (`session::h2`) and the demo server (`server::h2`) both use, live once
//! in [`h2`].
//! Every backend shares the client half, so a comparison of backends
//! measures I/O models, not parsers.

mod chunked;
mod fields;
pub(crate) mod h2;
mod request;
mod response;
pub(crate) mod server;
#[cfg(test)]
mod tests;

pub use request::{RequestSpec, Version, encode_request};
pub use response::{HttpError, Progress, Response, ResponseParser};

/// Largest response header block accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response headers accepted.
pub const MAX_HEADERS: usize = 100;
