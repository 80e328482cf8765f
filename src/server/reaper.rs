//! Connection teardown behind the answers: a connection its peer closed
//! (or one that failed) hands its socket to its thread's [`Reaper`], which
//! shuts it down and closes it a chunk at a time, after whatever else is
//! ready to run.
//!
//! Why: on loopback, shutting a socket down and closing it does the FIN
//! exchange for both ends on the calling thread. When thousands of clients
//! close at once, their end-of-file completions reach the server together;
//! torn down in place, every one of them would run before a well-behaved
//! client's request queued behind them is even read. Handing a socket over
//! costs a queue push, so the backlog drains quickly, and the reaper then
//! closes REAP_CHUNK sockets per turn, each turn ending in the engine's
//! `end_turn`, so other ready tasks run between turns. The measurements
//! are in bench/README.md ("The demo server's reaper").
//!
//! The queue is bounded (REAP_QUEUE_MAX), and a reaper that is gone (its
//! task ended by a panic) is never waited for: past either, a socket is
//! closed in place, as before.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::Shutdown;
use std::rc::Rc;

use tokio::sync::Notify;

use super::io::Stream;

/// Sockets closed per turn (about a millisecond of FIN exchanges on loopback).
const REAP_CHUNK: usize = 32;
/// Sockets queued at most; more are closed in place. (Every connection
/// adds operations of its own to the ring, which end turns, so the queue
/// keeps up with connections that come and go; this bounds the delay of
/// the last close if something else holds the reaper back.)
const REAP_QUEUE_MAX: usize = 16 * 1024;

/// One server thread's queue of connections to shut down and close.
pub(crate) struct Reaper<S> {
    queue: RefCell<VecDeque<(S, Shutdown)>>,
    wake: Notify,
    /// Whether the reaper task is running (cleared if it ends).
    alive: Cell<bool>,
}

impl<S: Stream> Reaper<S> {
    /// Starts the thread's reaper task; call inside its runtime.
    pub(crate) fn start() -> Rc<Self> {
        let reaper = Rc::new(Self {
            queue: RefCell::default(),
            wake: Notify::new(),
            alive: Cell::new(true),
        });
        tokio::task::spawn_local(reap(reaper.clone()));
        reaper
    }

    /// Queues `stream` to be shut down (`how`) and closed, or does that at
    /// once if the queue is full or the reaper gone. Sockets still queued
    /// when the runtime is dropped are closed by their drop.
    pub(crate) fn hand(&self, stream: S, how: Shutdown) {
        let mut q = self.queue.borrow_mut();
        if !self.alive.get() || q.len() >= REAP_QUEUE_MAX {
            drop(q);
            let _ = stream.shutdown(how);
            return;
        }
        q.push_back((stream, how));
        // Stores a permit if the reaper is busy, so no hand-off is missed.
        self.wake.notify_one();
    }

    /// Connections waiting to be closed.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.borrow().len()
    }
}

/// Marks the reaper gone when its task ends, however it ends.
struct Alive<S: Stream>(Rc<Reaper<S>>);

impl<S: Stream> Drop for Alive<S> {
    fn drop(&mut self) {
        self.0.alive.set(false);
        // What is left is closed now rather than at the runtime's end.
        let left: Vec<_> = self.0.queue.borrow_mut().drain(..).collect();
        for (stream, how) in left {
            let _ = stream.shutdown(how);
        }
    }
}

async fn reap<S: Stream>(reaper: Rc<Reaper<S>>) {
    let guard = Alive(reaper);
    let reaper = &guard.0;
    let mut chunk = Vec::with_capacity(REAP_CHUNK);
    loop {
        reaper.wake.notified().await;
        loop {
            {
                let mut q = reaper.queue.borrow_mut();
                let n = q.len().min(REAP_CHUNK);
                chunk.extend(q.drain(..n));
            }
            if chunk.is_empty() {
                break;
            }
            for (stream, how) in chunk.drain(..) {
                // A shutdown also completes a read still in flight, so the
                // descriptor is really released once that op lets go of it.
                let _ = stream.shutdown(how);
            }
            // Everything else that is ready runs before the next chunk.
            S::end_turn().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};
    use tokio_uring::net::TcpStream;

    /// `n` connected pairs: (our end as a tokio-uring stream, the peer's end).
    async fn pairs(n: usize) -> Vec<(TcpStream, std::net::TcpStream)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut out = Vec::new();
        for _ in 0..n {
            let peer = std::net::TcpStream::connect(addr).expect("connect");
            let (ours, _) = listener.accept().expect("accept");
            out.push((TcpStream::from_std(ours), peer));
        }
        out
    }

    /// Waits (boundedly) until the reaper's queue is empty.
    async fn drained(reaper: &Reaper<TcpStream>) {
        let start = Instant::now();
        while reaper.queued() > 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "reaper stalled");
            tokio_uring::no_op().await.expect("no-op");
        }
    }

    /// Every peer sees an orderly end of stream (not a reset, not silence).
    fn all_see_eof(peers: Vec<std::net::TcpStream>) {
        for mut p in peers {
            p.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            assert_eq!(p.read(&mut [0u8; 16]).expect("peer reads EOF"), 0);
        }
    }

    #[test]
    fn closes_everything_a_chunk_per_turn_letting_others_run_between() {
        tokio_uring::start(async {
            let reaper = Reaper::<TcpStream>::start();
            let n = 3 * REAP_CHUNK;
            let mut peers = Vec::new();
            for (i, (ours, peer)) in pairs(n).await.into_iter().enumerate() {
                let how = if i % 2 == 0 {
                    Shutdown::Write
                } else {
                    Shutdown::Both
                };
                reaper.hand(ours, how);
                peers.push(peer);
            }
            assert_eq!(reaper.queued(), n);
            // One kernel round trip of ours: the reaper got a turn, not three.
            tokio_uring::no_op().await.expect("no-op");
            let left = reaper.queued();
            assert!(
                (REAP_CHUNK..n).contains(&left),
                "{left} of {n} queued after one turn"
            );
            // Hand-offs while it is busy, and after it went back to sleep,
            // are closed too.
            let mut more = pairs(2 * REAP_CHUNK).await.into_iter();
            for (ours, peer) in more.by_ref().take(REAP_CHUNK) {
                reaper.hand(ours, Shutdown::Write);
                peers.push(peer);
            }
            drained(&reaper).await;
            all_see_eof(peers);
            let mut peers = Vec::new();
            for (ours, peer) in more {
                reaper.hand(ours, Shutdown::Write);
                peers.push(peer);
            }
            drained(&reaper).await;
            all_see_eof(peers);
        });
    }

    #[test]
    fn an_abort_with_a_read_in_flight_still_closes() {
        tokio_uring::start(async {
            let reaper = Reaper::<TcpStream>::start();
            let (ours, peer) = pairs(1).await.pop().expect("a pair");
            // A read whose future is dropped by a timeout: the kernel
            // operation keeps a reference to the socket.
            let read = ours.read(vec![0u8; 16]);
            let timed_out = tokio::time::timeout(Duration::from_millis(20), read).await;
            assert!(timed_out.is_err(), "nothing was sent, the read waits");
            let fd = ours.as_raw_fd();
            reaper.hand(ours, Shutdown::Both);
            drained(&reaper).await;
            all_see_eof(vec![peer]);
            // The shutdown completed the read, which let go of the socket,
            // so the descriptor is closed (nothing in this test opens
            // another that could take its number).
            let start = Instant::now();
            // SAFETY: F_GETFD only reads the descriptor's flags, or fails
            // with EBADF if it is closed.
            while unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "descriptor {fd} still open"
                );
                tokio_uring::no_op().await.expect("no-op");
            }
        });
    }
}
