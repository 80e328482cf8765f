//! The task-per-connection loop shared by the two futures backends:
//! `uring-async` (tokio-uring, completion model) and `epoll-async` (tokio,
//! readiness model).
//!
//! They differ only in their [`Transport`]: how a connection is opened, how
//! one request is exchanged on it, how it is cut off, and how a task is
//! spawned. Tickets, the stop signal, timeouts, the retry rule and recording
//! live here once, so comparing the two measures the I/O model and nothing
//! else.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(super) use super::exchange::{ExchangeError, SlotIo};
use super::exchange::{Step, parse_read};
use super::{ConnOptions, Fetched, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::http::Response;
use crate::stats::Recorder;
use crate::target::Target;

/// Receive buffer per connection. Pages the kernel never writes to are never
/// resident, so 10,000 connections cost far less than 10,000 x this.
pub(super) const READ_BUF: usize = 8 * 1024;
/// Receive buffer for `get`, which keeps whole bodies anyway.
pub(super) const FETCH_BUF: usize = 64 * 1024;
/// Connects in flight per worker thread: a loopback connect runs its whole
/// handshake in the kernel call that starts it, and thousands started at
/// once would hold every request back until the last handshake is done.
const CONNECTS_IN_FLIGHT: usize = 256;

/// What an I/O model provides to the shared loop.
pub(super) trait Transport: 'static {
    type Stream;

    /// Opens a connection, from source address `bind` if given.
    async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> Result<Self::Stream, FetchError>;

    /// Sends one request and reads its whole response.
    async fn exchange(
        stream: &mut Self::Stream,
        peer: SocketAddr,
        target: &Target,
        io: &mut SlotIo,
    ) -> Result<Exchanged, ExchangeError>;

    /// Closes a connection now, even with an operation pending on it.
    fn abort(stream: Self::Stream);

    /// Spawns a task on the worker thread's runtime.
    fn spawn<F: Future + 'static>(task: F) -> JoinHandle<F::Output>
    where
        F::Output: 'static;
}

/// A response and how many bytes followed it in the same read (a peer that
/// sent more than it framed: the connection cannot be trusted further).
pub(super) struct Exchanged {
    pub response: Response,
    pub trailing: usize,
}

/// [`parse_read`] for a transport: `Some` once the exchange is decided.
pub(super) fn after_read(
    io: &mut SlotIo,
    n: usize,
    peer: SocketAddr,
) -> Option<Result<Exchanged, ExchangeError>> {
    match parse_read(io, n, peer) {
        Step::NeedMore => None,
        Step::Done(response, trailing) => Some(Ok(Exchanged { response, trailing })),
        Step::Failed(e) => Some(Err(e)),
    }
}

/// Awaits `fut`, failing with `on_timeout` after `limit` if one is set.
pub(super) async fn with_limit<T>(
    limit: Option<Duration>,
    on_timeout: impl FnOnce(Duration) -> FetchError,
    fut: impl Future<Output = Result<T, FetchError>>,
) -> Result<T, FetchError> {
    match limit {
        Some(d) => tokio::time::timeout(d, fut)
            .await
            .unwrap_or_else(|_| Err(on_timeout(d))),
        None => fut.await,
    }
}

/// Connects with the connect timeout.
async fn connect<T: Transport>(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    limit: Option<Duration>,
) -> Result<T::Stream, FetchError> {
    with_limit(
        limit,
        |d| FetchError::connect_timeout(d, addr),
        T::connect(addr, bind),
    )
    .await
}

/// An open connection of a load worker.
struct Conn<S> {
    stream: S,
    peer: SocketAddr,
}

/// State shared by the connection tasks of one worker thread.
struct Worker {
    ctx: WorkerCtx,
    rec: RefCell<Recorder>,
    stop: watch::Receiver<bool>,
    connecting: tokio::sync::Semaphore,
}

/// Runs one worker's connections to the end of the plan; call it inside the
/// worker's runtime, after `ctx.ready()`.
pub(super) async fn run_connections<T: Transport>(ctx: WorkerCtx) -> Recorder {
    let (tx, rx) = watch::channel(false);
    let start = ctx.plan.start();
    let w = Rc::new(Worker {
        ctx,
        rec: RefCell::new(Recorder::new(start)),
        stop: rx,
        connecting: tokio::sync::Semaphore::new(CONNECTS_IN_FLIGHT),
    });
    let tasks: Vec<_> = (0..w.ctx.connections)
        .map(|_| T::spawn(connection::<T>(w.clone())))
        .collect();
    let watcher = T::spawn(watch_stop(w.clone(), tx));
    for t in tasks {
        let _ = t.await;
    }
    watcher.abort();
    w.rec.borrow_mut().finished = Some(Instant::now());
    w.rec.replace(Recorder::new(start))
}

/// One connection slot: takes tickets until the plan says stop.
async fn connection<T: Transport>(w: Rc<Worker>) {
    let mut conn: Option<Conn<T::Stream>> = None;
    let mut io = SlotIo::new(false, READ_BUF);
    let mut stop = w.stop.clone();
    let mut ever_connected = false;
    while let Some(ticket) = w.ctx.plan.next_ticket() {
        if ticket.intended > Instant::now() {
            let sleep = tokio::time::sleep_until(ticket.intended.into());
            let stopped = tokio::select! {
                _ = sleep => false,
                _ = stop.changed() => true,
            };
            if stopped {
                break;
            }
        }
        if w.ctx.plan.is_over(Instant::now()) {
            break;
        }
        // A request that must open a connection first waits for its
        // connect turn before its --timeout starts, as uring-loop starts a
        // request only when it can start the connect: behind 256 connects
        // to a peer that drops SYNs, the others used to time out as
        // requests, not as connects.
        let target = w.ctx.target(ticket.seq);
        let permit = if !matches!(&conn, Some(c) if c.peer == target.addr) {
            tokio::select! {
                biased;
                p = w.connecting.acquire() => p.ok(),
                _ = stop.changed() => break,
            }
        } else {
            None
        };
        w.rec.borrow_mut().issue();
        let request = one_request::<T>(&w, &mut conn, &mut ever_connected, target, &mut io, permit);
        let outcome = tokio::select! {
            biased;
            r = with_limit(w.ctx.conn.timeout, FetchError::timeout, request) => Some(r),
            _ = stop.changed() => None,
        };
        let now = Instant::now();
        let mut rec = w.rec.borrow_mut();
        match outcome {
            None => {
                rec.in_flight += 1;
                if let Some(c) = conn.take() {
                    T::abort(c.stream);
                }
                break;
            }
            Some(Ok((status, sent_at))) => {
                rec.response(status, w.ctx.plan.latency_origin(&ticket, sent_at), now);
                w.ctx.live.completed.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                rec.error(e.kind, &e.message);
                w.ctx.live.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = conn.take() {
                    T::abort(c.stream);
                }
            }
        }
    }
    let mut rec = w.rec.borrow_mut();
    rec.bytes_read += io.read;
    rec.bytes_written += io.written;
}

/// Runs one request on the slot's connection, opening one if needed;
/// returns the status and when the request was sent. A reused connection
/// that the server had already closed (no response byte at all) is reopened
/// and the request sent once more, as HTTP clients do.
async fn one_request<T: Transport>(
    w: &Worker,
    conn: &mut Option<Conn<T::Stream>>,
    ever_connected: &mut bool,
    target: &Target,
    io: &mut SlotIo,
    mut permit: Option<tokio::sync::SemaphorePermit<'_>>,
) -> Result<(u16, Instant), FetchError> {
    for attempt in 0..2 {
        let reused = matches!(conn, Some(c) if c.peer == target.addr);
        if !reused {
            if let Some(old) = conn.take() {
                T::abort(old.stream);
            }
            let permit = match permit.take() {
                Some(p) => Some(p),
                None => w.connecting.acquire().await.ok(),
            };
            let t0 = Instant::now();
            let bind = w.ctx.bind_addr();
            let stream = connect::<T>(target.addr, bind, w.ctx.conn.connect_timeout).await?;
            drop(permit);
            w.rec.borrow_mut().connected(t0.elapsed(), *ever_connected);
            *ever_connected = true;
            *conn = Some(Conn {
                stream,
                peer: target.addr,
            });
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let sent_at = Instant::now();
        let result = T::exchange(&mut c.stream, c.peer, target, io).await;
        match result {
            Ok(done) => {
                let reusable =
                    done.response.keep_alive && w.ctx.conn.keep_alive && done.trailing == 0;
                if !reusable && let Some(c) = conn.take() {
                    T::abort(c.stream);
                }
                return Ok((done.response.status, sent_at));
            }
            Err(e) => {
                if let Some(c) = conn.take() {
                    T::abort(c.stream);
                }
                let retry = reused
                    && attempt == 0
                    && !e.started
                    && matches!(e.error.kind, ErrorKind::EarlyEof | ErrorKind::Reset);
                if !retry {
                    return Err(e.error);
                }
                w.rec.borrow_mut().retries += 1;
            }
        }
    }
    Err(FetchError::new(
        ErrorKind::Other,
        "request retry loop ended",
    ))
}

/// Tells every connection task when the run is over: at the deadline, or
/// soon after Ctrl-C cancels the plan.
async fn watch_stop(w: Rc<Worker>, tx: watch::Sender<bool>) {
    const POLL: Duration = Duration::from_millis(50);
    loop {
        let now = Instant::now();
        if w.ctx.plan.is_over(now) {
            let _ = tx.send(true);
            return;
        }
        let wait = w
            .ctx
            .plan
            .deadline()
            .map_or(POLL, |d| d.saturating_duration_since(now).min(POLL));
        tokio::time::sleep(wait).await;
    }
}

/// Fetches one target on a connection of its own, keeping head and body.
async fn fetch_one<T: Transport>(target: Target, opts: ConnOptions) -> Result<Fetched, FetchError> {
    let peer = target.addr;
    let mut stream = connect::<T>(peer, opts.bind.first().copied(), opts.connect_timeout).await?;
    let mut io = SlotIo::new(true, FETCH_BUF);
    let result = T::exchange(&mut stream, peer, &target, &mut io).await;
    T::abort(stream);
    let done = result.map_err(|e| e.error)?;
    if done.trailing > 0 {
        return Err(super::trailing_error(peer, done.trailing));
    }
    Ok(Fetched {
        response: done.response,
        head: io.parser.head().to_vec(),
        body: io.parser.body().to_vec(),
        peer,
    })
}

/// Fetches every target concurrently, one task each; call it inside the runtime.
pub(super) async fn fetch_targets<T: Transport>(
    targets: &[Target],
    opts: &ConnOptions,
) -> Vec<Result<Fetched, FetchError>> {
    let tasks: Vec<_> = targets
        .iter()
        .map(|t| {
            let (t, o) = (t.clone(), opts.clone());
            T::spawn(async move {
                let limit = o.timeout;
                with_limit(limit, FetchError::timeout, fetch_one::<T>(t, o)).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| {
            Err(FetchError::new(
                ErrorKind::Other,
                format!("fetch task failed: {e}"),
            ))
        }));
    }
    out
}
