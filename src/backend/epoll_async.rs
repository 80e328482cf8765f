//! Readiness model with futures: tokio's epoll reactor.
//!
//! The same driver as `uring-async` ([`super::futures`]: a task per
//! session, one operation at a time) on a current-thread tokio runtime per
//! worker thread, so that comparing the two measures completion against
//! readiness and nothing else. Here a read or write is a system call made
//! after epoll said the socket is ready; a dropped future cancels nothing
//! in the kernel, so a cut-off request simply drops (closes) its socket.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::WorkerCtx;
use super::futures::{self, Transport};
use crate::error::{ErrorKind, FetchError};
use crate::session::Sink;

/// A worker's runtime: tokio on the current thread.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, FetchError> {
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
    async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> std::io::Result<TcpStream> {
        let stream = match bind {
            None => TcpStream::connect(addr).await?,
            Some(ip) => bound(addr, ip)?.connect(addr).await?,
        };
        // Small requests must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn write(stream: &mut TcpStream, bytes: Bytes) -> std::io::Result<usize> {
        stream.write(&bytes).await
    }

    async fn read(stream: &mut TcpStream, mut buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        let r = stream.read(&mut buf).await;
        (r, buf)
    }

    /// tokio knows whether the socket was readable since the last read: a
    /// `try_read` makes no system call unless something came.
    fn idle_bytes(stream: &mut TcpStream, buf: &mut [u8]) -> Option<std::io::Result<usize>> {
        match stream.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            r => Some(r),
        }
    }

    fn close(stream: TcpStream, parting: Option<Vec<u8>>) {
        if let Some(bytes) = parting {
            super::part(std::os::fd::AsFd::as_fd(&stream), &bytes);
        }
        drop(stream);
    }

    fn spawn<F: Future + 'static>(task: F) -> JoinHandle<F::Output>
    where
        F::Output: 'static,
    {
        tokio::task::spawn_local(task)
    }
}

/// Runs one worker's sessions on its runtime.
pub(crate) fn run<S: Sink + 'static>(rt: &tokio::runtime::Runtime, ctx: WorkerCtx, sink: S) -> S {
    let local = tokio::task::LocalSet::new();
    local.block_on(rt, futures::run::<Epoll, S>(ctx, sink))
}
