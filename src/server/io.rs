//! What the server needs of an I/O engine, so that one connection loop
//! ([`conn`](super::conn)), one teardown queue ([`reaper`](super::reaper))
//! and one accept loop run on io_uring ([`uring`](super::uring)) and on
//! epoll ([`epoll`](super::epoll)) alike. The engines differ only in how a
//! socket operation is carried out.
//!
//! Buffers are *owned* and handed back, because that is what io_uring
//! needs: the kernel writes into a read buffer until the operation
//! completes, so a read future dropped early (a timeout) takes its buffer
//! with it. The connection loop therefore treats any timeout as the end of
//! the connection, on both engines.
//!
//! One read and one write may be in flight on a stream at once (HTTP/2's
//! loop, [`h2`](super::h2), keeps a read pending while it writes answers):
//! every stream allows that, never two reads or two writes.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::time::Duration;

/// One engine: its runtime, listeners and streams. Every task runs on the
/// thread's runtime and is spawned with `tokio::task::spawn_local`.
pub(crate) trait Io: 'static {
    type Runtime;
    type Listener;
    type Stream: Stream;

    /// This thread's runtime.
    fn runtime() -> io::Result<Self::Runtime>;
    /// Runs `fut` to completion on `rt`; tasks it spawned end with it.
    fn block_on<F: Future>(rt: &Self::Runtime, fut: F) -> F::Output;
    /// Takes over a non-blocking listening socket; called inside `block_on`.
    fn listener(l: std::net::TcpListener) -> io::Result<Self::Listener>;
    /// The next connection, with Nagle's delay off.
    async fn accept(l: &Self::Listener) -> io::Result<Self::Stream>;
}

/// A connected socket as the connection loop uses it.
pub(crate) trait Stream: Sized + 'static {
    /// Reads once into the spare capacity of `buf`, appending; 0 is end of
    /// stream. Gives the buffer back.
    async fn read_append(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Writes all of `buf` and gives it back.
    async fn write_vec(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Writes all of a static slice (large bodies, never copied).
    async fn write_static(&self, buf: &'static [u8]) -> io::Result<()>;
    /// `shutdown(2)`; also completes a read still in flight on io_uring.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// Before an orderly close: ends the protocol that runs over the socket,
    /// within `limit` (TLS sends its `close_notify` alert). Plain TCP has
    /// nothing to say, and this costs it nothing.
    async fn close_notify(&self, _limit: Duration) {}
    /// Whether the protocol under HTTP agreed on HTTP/2 (TLS's ALPN `h2`);
    /// known once the first bytes were read. Plain TCP agrees on nothing.
    fn speaks_h2(&self) -> bool {
        false
    }
    /// Lets every other ready task run before this one goes on (and on
    /// io_uring, hands queued submissions to the kernel).
    async fn end_turn();
}
