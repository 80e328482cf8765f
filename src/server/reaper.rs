//! Connection teardown behind the answers: a finished connection hands its
//! socket to its thread's [`Reaper`], which shuts it down and closes it a
//! chunk at a time, after whatever else is ready to run.
//!
//! Why: on loopback, shutting a socket down and closing it does the FIN
//! exchange for both ends on the calling thread, about 40 µs here. When
//! 10,000 clients close at once, their end-of-file completions reach the
//! server together, and a well-behaved client's request read is queued
//! behind them; torn down in place, every one of them ran before that
//! request was even seen (the hostile tests' keep-alive probe waited
//! 220-260 ms for a 200 ms answer, and now and then over their 300 ms
//! bound). Handing a socket over costs a queue push, so the backlog of
//! completions drains quickly, and the reaper then closes REAP_CHUNK
//! sockets per turn, each turn ending in an io_uring no-op: other ready
//! tasks run before the next turn, and the ring's queued submissions (a
//! waiting answer's write among them) go to the kernel when the runtime
//! parks for it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::Shutdown;
use std::rc::Rc;

use tokio::sync::Notify;
use tokio_uring::net::TcpStream;

/// Sockets closed per turn (about 1.3 ms of FIN exchanges on loopback).
const REAP_CHUNK: usize = 32;

/// One server thread's queue of connections to shut down and close.
#[derive(Default)]
pub(crate) struct Reaper {
    queue: RefCell<VecDeque<(TcpStream, Shutdown)>>,
    wake: Notify,
}

impl Reaper {
    /// Starts the thread's reaper task; call inside its tokio-uring runtime.
    pub(crate) fn start() -> Rc<Self> {
        let reaper = Rc::new(Self::default());
        tokio_uring::spawn(reap(reaper.clone()));
        reaper
    }

    /// Queues `stream` to be shut down (`how`) and closed. Sockets still
    /// queued when the runtime is dropped are closed by their drop.
    pub(crate) fn hand(&self, stream: TcpStream, how: Shutdown) {
        self.queue.borrow_mut().push_back((stream, how));
        // Stores a permit if the reaper is busy, so no hand-off is missed.
        self.wake.notify_one();
    }

    /// Connections waiting to be closed.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.borrow().len()
    }
}

async fn reap(reaper: Rc<Reaper>) {
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
            let _ = tokio_uring::no_op().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

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

    #[test]
    fn closes_everything_a_chunk_per_turn_letting_others_run_between() {
        tokio_uring::start(async {
            let reaper = Reaper::start();
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
            let start = Instant::now();
            while reaper.queued() > 0 {
                assert!(start.elapsed() < Duration::from_secs(5), "reaper stalled");
                tokio_uring::no_op().await.expect("no-op");
            }
            // Every peer sees an orderly end of stream.
            for mut p in peers {
                p.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                assert_eq!(p.read(&mut [0u8; 16]).expect("peer reads EOF"), 0);
            }
        });
    }
}
