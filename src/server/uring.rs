//! The io_uring engine: tokio-uring, one ring per server thread.
//!
//! tokio-uring hands queued submissions to the kernel only when its runtime
//! parks or the submission queue is full, which is why the queue is small
//! (see [`SQ_ENTRIES`]) and why a turn of the reaper ends in a no-op.

use std::future::Future;
use std::io;
use std::net::Shutdown;

use tokio_uring::buf::BoundedBuf;

use super::io::{Io, Stream};

/// Submission-queue entries per ring (the completion queue gets twice
/// that). Small on purpose, for fairness between connections:
/// - tokio-uring hands queued SQEs to the kernel only when its runtime parks
///   (no task ready) or the queue is full. Under a flood of work the runtime
///   never parks, so with a large queue a well-behaved client's answer sat
///   unsent behind the flood.
/// - Each pass over the completion queue wakes one task per completion, and
///   they run first come, first served. A small queue keeps that batch, and
///   with it the wait of a task woken just after it, short.
///
/// With 2048 entries a burst of 10,000 connects delayed a keep-alive
/// client's 200 ms answers to 300-480 ms on the 2-core test machine; with
/// 64, the slowest was 215-318 ms over 14 later runs (3 over the tests'
/// 300 ms bound, each when 10,000 connections closed at once); with 32,
/// 216-308 ms over 18 (1 over; mean 252 ms against 267): suggestive, not
/// conclusive (16: 228-270 ms over 8, no better). The cost is one `io_uring_enter`
/// per 32 operations at most: 64 keep-alive connections of `uring-loop` on
/// `/bar?delay=0` got 170-177k req/s from either size.
///
/// What was left of those delays came from the mass close (220-260 ms over
/// 6 runs with 32 entries): handing teardown to [`reaper`](super::reaper)
/// took the slowest answer to 206-220 ms over 16.
const SQ_ENTRIES: u32 = 32;

/// The io_uring engine.
pub(crate) struct Uring;

impl Io for Uring {
    type Runtime = tokio_uring::Runtime;
    type Listener = tokio_uring::net::TcpListener;
    type Stream = tokio_uring::net::TcpStream;

    fn runtime() -> io::Result<Self::Runtime> {
        // The probe's small ring worked; a ring per thread may still not
        // (RLIMIT_MEMLOCK on kernels before 5.12): say why, as the probe would.
        tokio_uring::Runtime::new(tokio_uring::builder().entries(SQ_ENTRIES)).map_err(|error| {
            super::uring_unavailable(&crate::doctor::probe::Unusable {
                call: "io_uring_setup",
                error,
            })
        })
    }

    fn block_on<F: Future>(rt: &Self::Runtime, fut: F) -> F::Output {
        rt.block_on(fut)
    }

    fn listener(l: std::net::TcpListener) -> io::Result<Self::Listener> {
        Ok(tokio_uring::net::TcpListener::from_std(l))
    }

    async fn accept(l: &Self::Listener) -> io::Result<Self::Stream> {
        let (stream, _peer) = l.accept().await?;
        // Answers go out in one write each; no Nagle delay for the rare
        // multi-write one.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Stream for tokio_uring::net::TcpStream {
    async fn read_append(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let len = buf.len();
        if len == buf.capacity() {
            // An empty slice would read 0 bytes, which means end of stream.
            buf.reserve(4096);
        }
        let (res, slice) = self.read(buf.slice(len..)).await;
        (res, slice.into_inner())
    }

    async fn write_vec(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (res, buf) = self.write_all(buf).await;
        (res, buf)
    }

    async fn write_static(&self, buf: &'static [u8]) -> io::Result<()> {
        self.write_all(buf).await.0
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        tokio_uring::net::TcpStream::shutdown(self, how)
    }

    async fn end_turn() {
        // A round trip through the kernel: the runtime submits what is
        // queued and runs every task that is ready before this one resumes.
        let _ = tokio_uring::no_op().await;
    }
}
