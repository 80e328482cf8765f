//! The readiness-model engine: tokio on epoll, a current-thread runtime per
//! server thread. It serves where io_uring is unavailable (old kernels,
//! `kernel.io_uring_disabled`, container seccomp profiles) with the same
//! connection loop, routes, limits and timeouts as the io_uring engine;
//! only the way a socket operation is carried out differs.

use std::future::Future;
use std::io;
use std::net::Shutdown;

use super::io::{Io, Stream};

/// The epoll engine.
pub(crate) struct Epoll;

impl Io for Epoll {
    type Runtime = tokio::runtime::Runtime;
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;

    fn runtime() -> io::Result<Self::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }

    fn block_on<F: Future>(rt: &Self::Runtime, fut: F) -> F::Output {
        // The local set, and every task spawned on it, is dropped on return.
        tokio::task::LocalSet::new().block_on(rt, fut)
    }

    fn listener(l: std::net::TcpListener) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::from_std(l)
    }

    async fn accept(l: &Self::Listener) -> io::Result<Self::Stream> {
        let (stream, _peer) = l.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Stream for tokio::net::TcpStream {
    async fn read_append(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if buf.len() == buf.capacity() {
            buf.reserve(4096);
        }
        loop {
            if let Err(e) = self.readable().await {
                return (Err(e), buf);
            }
            // Appends into the spare capacity.
            match self.try_read_buf(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                res => return (res, buf),
            }
        }
    }

    async fn write_vec(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let res = write_all(self, &buf).await;
        (res, buf)
    }

    async fn write_static(&self, buf: &'static [u8]) -> io::Result<()> {
        write_all(self, buf).await
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        socket2::SockRef::from(self).shutdown(how)
    }

    async fn end_turn() {
        tokio::task::yield_now().await;
    }
}

async fn write_all(s: &tokio::net::TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
