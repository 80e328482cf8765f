//! The demo server: the article's `/foo` and `/bar` after a delay, plus a few
//! routes useful for load tests. Built on tokio-uring, one ring per thread,
//! each thread with its own `SO_REUSEPORT` listeners.
//!
//! Why this shape: a tokio-uring runtime is single-threaded (tasks are
//! `!Send`, spawned with `spawn_local`), so using several cores means several
//! independent runtimes. Giving each its own `SO_REUSEPORT` listeners lets
//! the kernel spread incoming connections across them with no shared accept
//! queue and no cross-thread hand-off; [`listen`] says how many and why, and
//! how an address another process holds is refused.
//!
//! Layout: [`routes`] chooses an answer (pure), [`request`] parses heads
//! (pure), [`conn`] runs one connection on the ring, [`reaper`] closes
//! finished ones behind the answers; this file owns sockets, threads and
//! shutdown.
//!
//! Shutdown: every accept loop also waits on a shared `watch` channel. When
//! [`ServerHandle::shutdown`] flips it, each loop returns, which ends that
//! thread's `block_on`; dropping the runtime then drops every connection task
//! and the tokio-uring driver cancels all in-flight operations (including
//! reads on idle connections) and closes their fds. So shutdown does not wait
//! for clients, only for the kernel to acknowledge the cancellations.

mod conn;
mod listen;
mod reaper;
mod request;
mod routes;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use conn::ConnConfig;
use reaper::Reaper;

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
/// 6 runs with 32 entries): handing teardown to [`reaper`] took the slowest
/// answer to 206-220 ms over 16.
const SQ_ENTRIES: u32 = 32;

/// Accept operations kept in flight per listener, so that a burst of
/// connects is not drained strictly one executor round trip at a time.
/// (1, 4 and 16 gave the same 10,000-connection figures within noise.
/// Draining the queue with non-blocking accepts after each completion made
/// them slower: with room in the kernel's queue, accepting lazily leaves the
/// CPU to the connects; see bench/README.md.)
const ACCEPTS_IN_FLIGHT: usize = 4;

/// After an accept error such as EMFILE, wait this long before retrying, so
/// fd exhaustion does not turn the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// How the demo server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Delay before `/foo` and `/bar` answer.
    pub delay: Duration,
    /// Threads, each with one io_uring and its own listeners (0 is treated as 1).
    pub threads: usize,
    /// Largest request head accepted, within
    /// `http::server::MIN_HEAD_LIMIT..=MAX_HEAD_LIMIT` (1 KiB to
    /// 1 MiB; `start` refuses others); larger gets 431, or 414 when the
    /// request line alone is larger.
    pub max_head_bytes: usize,
    /// A connection idle (or dribbling its head) this long is closed. Also
    /// bounds each body read and each write of up to 64 KiB, so a peer that
    /// stops reading an answer is dropped too.
    pub idle_timeout: Duration,
}

impl Default for ServeOptions {
    /// The article's setup: 127.0.0.1:5555, one-second delay; one thread per
    /// core, 8 KiB heads, 60 s idle timeout.
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 5555)),
            delay: Duration::from_secs(1),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_head_bytes: 8 * 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A running server; dropping it does not stop it, call `shutdown`.
pub struct ServerHandle {
    pub addr: SocketAddr,
    /// Flipped to `true` by `shutdown`. Kept here so that dropping the handle
    /// does not close the channel; the accept loops treat a closed channel
    /// as "run forever", as documented above.
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops every server thread and waits for them: listeners and all
    /// connections (idle or mid-answer) are closed. Returns promptly; it does
    /// not wait for in-flight answers or delays.
    pub fn shutdown(self) {
        self.stop.send_replace(true);
        for t in self.threads {
            // A panicked server thread has nothing left to clean up.
            let _ = t.join();
        }
    }

    /// Number of server threads (one ring each).
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

/// Binds the listeners and starts the server threads; returns once it accepts.
///
/// All listeners are bound (and listening) before any thread starts, so a
/// connect right after `start` returns is queued even if a thread has not yet
/// reached its accept loop. An error creating a ring in any thread stops the
/// others and is returned.
pub fn start(opts: ServeOptions) -> io::Result<ServerHandle> {
    crate::http::server::check_head_limit(opts.max_head_bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("max_head_bytes: {e}")))?;
    let n = opts.threads.max(1);
    let listen::Listeners {
        addr,
        per_thread: listeners,
    } = listen::bind(opts.addr, n)?;

    let cfg = ConnConfig {
        delay: opts.delay,
        max_head_bytes: opts.max_head_bytes,
        idle_timeout: opts.idle_timeout,
    };
    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    let mut threads = Vec::with_capacity(n);
    for (i, listener) in listeners.into_iter().enumerate() {
        let cfg = cfg.clone();
        let stop_rx = stop_rx.clone();
        let ready_tx = ready_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("uringfetch-server-{i}"))
            .spawn(move || server_thread(listener, cfg, stop_rx, ready_tx));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                ServerHandle {
                    addr,
                    stop,
                    threads,
                }
                .shutdown();
                return Err(e);
            }
        }
    }
    drop(ready_tx);

    let handle = ServerHandle {
        addr,
        stop,
        threads,
    };
    for _ in 0..n {
        let result = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("server thread exited before it was ready")));
        if let Err(e) = result {
            handle.shutdown();
            return Err(e);
        }
    }
    Ok(handle)
}

/// Starts the server, prints where it listens, waits for Ctrl-C (SIGINT) or
/// SIGTERM, shuts down and prints `stopped`.
pub fn run_foreground(opts: ServeOptions) -> anyhow::Result<()> {
    // Signal handlers are installed before the server starts, so a signal
    // sent as soon as the "listening" line appears is not lost.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut sigint, mut sigterm) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        io::Result::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;

    let delay = opts.delay;
    let handle = start(opts)?;
    {
        let mut stdout = io::stdout().lock();
        writeln!(
            stdout,
            "listening on http://{} ({} threads, delay {:?})",
            handle.addr,
            handle.threads(),
            delay
        )?;
        stdout.flush()?;
    }

    rt.block_on(async {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    });
    handle.shutdown();
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "stopped")?;
    stdout.flush()?;
    Ok(())
}

/// Body of one server thread: build a ring, report readiness, accept until
/// told to stop. The runtime (and with it every connection) is dropped when
/// this returns.
fn server_thread(
    listeners: Vec<std::net::TcpListener>,
    cfg: ConnConfig,
    stop: watch::Receiver<bool>,
    ready: mpsc::Sender<io::Result<()>>,
) {
    let rt = match tokio_uring::Runtime::new(tokio_uring::builder().entries(SQ_ENTRIES)) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    rt.block_on(async move {
        let cfg = Rc::new(cfg);
        let reaper = Reaper::start();
        for listener in listeners {
            let listener = Rc::new(tokio_uring::net::TcpListener::from_std(listener));
            for _ in 0..ACCEPTS_IN_FLIGHT {
                tokio_uring::spawn(accept_loop(
                    listener.clone(),
                    cfg.clone(),
                    reaper.clone(),
                    stop.clone(),
                ));
            }
        }
        // When shutdown is called, `block_on` ends and the runtime drop takes
        // the accept loops (and all connections) with it.
        stopped(&mut stop.clone()).await;
    });
}

/// Accepts connections and spawns a task for each until `stop` flips.
/// Several run per listener, each with one accept op in flight.
async fn accept_loop(
    listener: Rc<tokio_uring::net::TcpListener>,
    cfg: Rc<ConnConfig>,
    reaper: Rc<Reaper>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Answers go out in one write each; no Nagle delay for
                    // the rare multi-write one.
                    let _ = stream.set_nodelay(true);
                    tokio_uring::spawn(conn::serve(stream, cfg.clone(), reaper.clone()));
                }
                // ECONNABORTED and friends concern one connection; EMFILE
                // and ENFILE clear when connections close. Either way keep
                // serving, after a short pause.
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
        }
    }
}

/// Resolves once `shutdown` has been called. If the sender is gone without
/// a shutdown (the handle was dropped), never resolves: the server keeps
/// running, as `ServerHandle` documents.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
