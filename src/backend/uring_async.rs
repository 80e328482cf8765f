//! Completion model with futures: tokio-uring.
//!
//! connect, send and recv are io_uring operations; a task per session
//! awaits their completions (the driver itself is [`super::futures`],
//! shared with `epoll-async`). Buffers are passed to the kernel by ownership and
//! come back with the result, so one read buffer per connection is reused
//! for the whole run and the request bytes are shared, not copied.
//!
//! tokio-uring keeps a socket open while an operation on it is pending, even
//! if the future waiting for it is dropped. A request that times out or is
//! still running at the deadline therefore shuts its socket down, which
//! completes the pending receive and lets the descriptor close.
//!
//! One case cannot be mended from here: a CONNECT op that `--connect-timeout`
//! abandons. tokio-uring creates that socket itself and offers no way to
//! reach it, so it stays open until the kernel gives up on the handshake
//! (about two minutes of SYN retries). Against a peer that drops SYNs, a
//! long run holds one descriptor per timed-out connect (1,263 after 2.5 s at
//! `-c 50 --connect-timeout 100ms`; the other backends about 60) and may
//! reach the open-file limit. With `--bind` the socket is ours and is shut
//! down on timeout (63).

use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_uring::net::TcpStream;

use super::WorkerCtx;
use super::futures::{self, Transport};
use crate::error::FetchError;
use crate::session::Sink;

/// A runtime whose ring has room for one pending operation per connection,
/// with headroom; io_uring caps a ring at 32768 entries.
pub(crate) fn runtime(connections: usize) -> Result<tokio_uring::Runtime, FetchError> {
    let entries = (connections.saturating_mul(2))
        .next_power_of_two()
        .clamp(256, 32768) as u32;
    let mut builder = tokio_uring::builder();
    builder.entries(entries);
    // tokio-uring panics if it cannot enter its ring (a seccomp filter that
    // allows only the setup): find out first, on a ring of our own.
    if let Err(u) = crate::doctor::probe::usable() {
        return Err(match u.call {
            "io_uring_enter" => FetchError::uring_enter(&u.error),
            _ => FetchError::uring_setup(&u.error),
        });
    }
    tokio_uring::Runtime::new(&builder).map_err(|e| FetchError::uring_setup(&e))
}

/// [`super::connect_bound`], then waits for the handshake with an empty write.
/// If the wait is dropped (connect timeout, end of run), the socket is shut
/// down, which ends the handshake and the pending write: tokio-uring would
/// otherwise keep the socket open until the kernel gave up on it.
async fn connect_bound_async(addr: SocketAddr, ip: IpAddr) -> io::Result<TcpStream> {
    use std::os::fd::AsRawFd;
    let std = super::connect_bound(addr, ip)?;
    let fd = std.as_raw_fd();
    let stream = TcpStream::from_std(std);
    // Declared after `stream`, so dropped before it: the descriptor is
    // still open when the guard shuts it down.
    let guard = ShutdownOnDrop(fd);
    let (res, _) = stream.write(Vec::<u8>::new()).submit().await;
    res?;
    std::mem::forget(guard);
    Ok(stream)
}

/// Shuts a socket down when dropped (see [`connect_bound_async`]).
struct ShutdownOnDrop(std::os::fd::RawFd);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        // SAFETY: the descriptor belongs to the stream declared before this
        // guard in `connect_bound_async`, which is dropped after the guard,
        // so it is still open and still that socket; shutdown(2) touches no
        // memory of ours.
        unsafe {
            libc::shutdown(self.0, libc::SHUT_RDWR);
        }
    }
}

/// The completion model's transport.
struct Uring;

impl Transport for Uring {
    type Stream = TcpStream;

    /// Opens a TCP connection through io_uring's connect.
    ///
    /// With a source address (`--bind`) the socket must be bound before
    /// connecting, and tokio-uring cannot connect a socket it did not
    /// create: then connect(2) is issued directly (non-blocking), and an
    /// empty io_uring write, which the kernel parks until the handshake is
    /// over, waits for it; so the connect is timed and counted as on the
    /// other backends (it once finished inside the first send: no connect
    /// timeout, a refusal counted as an opened connection).
    async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
        let stream = match bind {
            None => TcpStream::connect(addr).await?,
            Some(ip) => connect_bound_async(addr, ip).await?,
        };
        // Small requests must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn write(stream: &mut TcpStream, bytes: Bytes) -> io::Result<usize> {
        stream.write(bytes).submit().await.0
    }

    async fn read(stream: &mut TcpStream, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // tokio-uring reads into the whole capacity and sets the length.
        stream.read(buf).await
    }

    /// The completion model knows nothing of a socket without an operation
    /// on it, and a check would cost a system call per request: an idle
    /// connection is reused unchecked (as by `threads`).
    fn idle_bytes(_stream: &mut TcpStream, _buf: &mut [u8]) -> Option<io::Result<usize>> {
        None
    }

    fn close(stream: TcpStream, parting: Option<Vec<u8>>) {
        if let Some(bytes) = parting {
            use std::os::fd::{AsRawFd, BorrowedFd};
            // SAFETY: `stream` owns this descriptor and is alive for the
            // whole borrow, which ends with the call: it cannot be closed
            // (or its number reused) meanwhile.
            let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
            super::part(fd, &bytes);
        }
        let _ = stream.shutdown(Shutdown::Both);
    }

    fn spawn<F: Future + 'static>(task: F) -> JoinHandle<F::Output>
    where
        F::Output: 'static,
    {
        tokio_uring::spawn(task)
    }
}

/// Runs one worker's sessions on its ring.
pub(crate) fn run<S: Sink + 'static>(rt: &tokio_uring::Runtime, ctx: WorkerCtx, sink: S) -> S {
    rt.block_on(futures::run::<Uring, S>(ctx, sink))
}
