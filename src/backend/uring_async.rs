//! Completion model with futures: tokio-uring.
//!
//! connect, send and recv are io_uring operations; a task per connection
//! awaits their completions (the loop itself is [`super::tasks`], shared
//! with `epoll-async`). Buffers are passed to the kernel by ownership and
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

use tokio::task::JoinHandle;
use tokio_uring::net::TcpStream;

use super::tasks::{self, ExchangeError, Exchanged, SlotIo, Transport};
use super::{ConnOptions, Fetched, WorkerCtx};
use crate::error::FetchError;
use crate::stats::Recorder;
use crate::target::Target;

/// A runtime whose ring has room for one pending operation per connection,
/// with headroom; io_uring caps a ring at 32768 entries.
fn runtime(connections: usize) -> Result<tokio_uring::Runtime, FetchError> {
    let entries = (connections.saturating_mul(2))
        .next_power_of_two()
        .clamp(256, 32768) as u32;
    let mut builder = tokio_uring::builder();
    builder.entries(entries);
    tokio_uring::Runtime::new(&builder).map_err(|e| FetchError::uring_setup(&e))
}

/// A socket bound to `ip` (port chosen at connect time, so one source address
/// serves many destinations) with a non-blocking connect under way.
pub(crate) fn connect_bound(addr: SocketAddr, ip: IpAddr) -> io::Result<std::net::TcpStream> {
    let socket = super::bound_socket(addr, ip)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// [`connect_bound`], then waits for the handshake with an empty write.
/// If the wait is dropped (connect timeout, end of run), the socket is shut
/// down, which ends the handshake and the pending write: tokio-uring would
/// otherwise keep the socket open until the kernel gave up on it.
async fn connect_bound_async(addr: SocketAddr, ip: IpAddr) -> io::Result<TcpStream> {
    use std::os::fd::AsRawFd;
    let std = connect_bound(addr, ip)?;
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
    async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> Result<TcpStream, FetchError> {
        let stream = match bind {
            None => TcpStream::connect(addr).await,
            Some(ip) => connect_bound_async(addr, ip).await,
        }
        .map_err(|e| FetchError::connect(&e, addr))?;
        // Small requests must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn exchange(
        stream: &mut TcpStream,
        peer: SocketAddr,
        target: &Target,
        io: &mut SlotIo,
    ) -> Result<Exchanged, ExchangeError> {
        let (res, _) = stream.write_all(target.request.clone()).await;
        res.map_err(|e| ExchangeError::io(&e, peer, false))?;
        io.written += target.request.len() as u64;
        io.parser.reset(target.head_request);
        loop {
            let mut owned = std::mem::take(&mut io.buf);
            owned.clear();
            // A read cut off by a timeout keeps its buffer; start a fresh one.
            if owned.capacity() < io.capacity {
                owned.reserve(io.capacity);
            }
            let (res, owned) = stream.read(owned).await;
            io.buf = owned;
            let n = res.map_err(|e| ExchangeError::io(&e, peer, io.parser.started()))?;
            if let Some(done) = tasks::after_read(io, n, peer) {
                return done;
            }
        }
    }

    fn abort(stream: TcpStream) {
        let _ = stream.shutdown(Shutdown::Both);
    }

    fn spawn<F: Future + 'static>(task: F) -> JoinHandle<F::Output>
    where
        F::Output: 'static,
    {
        tokio_uring::spawn(task)
    }
}

/// Runs one load worker thread's connections on its own ring.
pub fn run_worker(ctx: WorkerCtx) -> Result<Recorder, FetchError> {
    let rt = runtime(ctx.connections);
    ctx.ready();
    Ok(rt?.block_on(tasks::run_connections::<Uring>(ctx)))
}

/// Fetches every target concurrently on one ring.
pub fn fetch_all(
    targets: &[Target],
    opts: &ConnOptions,
) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
    let rt = runtime(targets.len())?;
    Ok(rt.block_on(tasks::fetch_targets::<Uring>(targets, opts)))
}
