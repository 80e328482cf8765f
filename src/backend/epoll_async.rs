//! Readiness model with futures: tokio's epoll reactor.
//!
//! The same loop as `uring-async` ([`super::tasks`]: a task per connection,
//! the same ticket loop, retry rule and timeouts) on a current-thread tokio
//! runtime per worker thread, so that comparing the two measures completion
//! against readiness and nothing else. Here a read or write is a system call
//! made after epoll said the socket is ready; a dropped future cancels
//! nothing in the kernel, so a cut-off request simply drops (closes) its
//! socket.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::tasks::{self, ExchangeError, Exchanged, SlotIo, Transport};
use super::{ConnOptions, Fetched, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::stats::Recorder;
use crate::target::Target;

fn runtime() -> Result<tokio::runtime::Runtime, FetchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            FetchError::new(
                ErrorKind::Other,
                format!("cannot start a tokio runtime: {e}"),
            )
        })
}

/// An unconnected tokio socket bound to `ip` with the port left to connect time.
fn bound(addr: SocketAddr, ip: IpAddr) -> std::io::Result<TcpSocket> {
    let socket = super::bound_socket(addr, ip)?;
    socket.set_nonblocking(true)?;
    Ok(TcpSocket::from_std_stream(socket.into()))
}

/// The readiness model's transport.
struct Epoll;

impl Transport for Epoll {
    type Stream = TcpStream;

    /// Opens a connection, from source address `bind` if given (bound with
    /// `IP_BIND_ADDRESS_NO_PORT` by [`super::bound_socket`], then connected by
    /// tokio, which waits for writability and checks `SO_ERROR`).
    async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> Result<TcpStream, FetchError> {
        let stream = match bind {
            None => TcpStream::connect(addr).await,
            Some(ip) => match bound(addr, ip) {
                Ok(socket) => socket.connect(addr).await,
                Err(e) => Err(e),
            },
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
        stream
            .write_all(&target.request)
            .await
            .map_err(|e| ExchangeError::io(&e, peer, false))?;
        io.written += target.request.len() as u64;
        io.parser.reset(target.head_request);
        if io.buf.len() != io.capacity {
            io.buf.resize(io.capacity, 0);
        }
        loop {
            let n = stream
                .read(&mut io.buf)
                .await
                .map_err(|e| ExchangeError::io(&e, peer, io.parser.started()))?;
            if let Some(done) = tasks::after_read(io, n, peer) {
                return done;
            }
        }
    }

    fn abort(stream: TcpStream) {
        drop(stream);
    }

    fn spawn<F: Future + 'static>(task: F) -> JoinHandle<F::Output>
    where
        F::Output: 'static,
    {
        tokio::task::spawn_local(task)
    }
}

/// Runs one load worker thread's connections on its own runtime.
pub fn run_worker(ctx: WorkerCtx) -> Result<Recorder, FetchError> {
    let rt = runtime();
    ctx.ready();
    let rt = rt?;
    let local = tokio::task::LocalSet::new();
    Ok(local.block_on(&rt, tasks::run_connections::<Epoll>(ctx)))
}

/// Fetches every target concurrently on one current-thread runtime.
pub fn fetch_all(
    targets: &[Target],
    opts: &ConnOptions,
) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
    let rt = runtime()?;
    let local = tokio::task::LocalSet::new();
    Ok(local.block_on(&rt, tasks::fetch_targets::<Epoll>(targets, opts)))
}
