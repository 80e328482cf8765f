//! Readiness model with futures: tokio's epoll reactor.
//!
//! The same shape as `uring_async.rs` (a task per connection, the same
//! ticket loop, retry rule and timeouts) on a current-thread tokio runtime
//! per worker thread, so that comparing the two measures completion against
//! readiness and nothing else. Here a read or write is a system call made
//! after epoll said the socket is ready; a dropped future cancels nothing in
//! the kernel, so a cut-off request simply drops (closes) its socket.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::threads::SlotIo;
use super::{ConnOptions, Fetched, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::http::{Progress, Response};
use crate::stats::Recorder;
use crate::target::Target;

/// Receive buffer per connection.
const READ_BUF: usize = 8 * 1024;
/// Receive buffer for `get`, which keeps whole bodies anyway.
const FETCH_BUF: usize = 64 * 1024;

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

/// Awaits `fut`, failing with `on_timeout` after `limit` if one is set.
async fn with_limit<T>(
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

/// Opens a connection, from source address `bind` if given (bound with
/// `IP_BIND_ADDRESS_NO_PORT` by [`super::bound_socket`], then connected by
/// tokio, which waits for writability and checks `SO_ERROR`).
async fn connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    limit: Option<Duration>,
) -> Result<TcpStream, FetchError> {
    let fut = async move {
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
    };
    with_limit(limit, |d| FetchError::connect_timeout(d, addr), fut).await
}

/// An unconnected tokio socket bound to `ip` with the port left to connect time.
fn bound(addr: SocketAddr, ip: IpAddr) -> std::io::Result<TcpSocket> {
    let socket = super::bound_socket(addr, ip)?;
    socket.set_nonblocking(true)?;
    Ok(TcpSocket::from_std_stream(socket.into()))
}

/// A response and how many bytes followed it in the same read.
struct Exchanged {
    response: Response,
    trailing: usize,
}

/// Why an exchange failed, and whether any response byte had arrived.
struct ExchangeError {
    error: FetchError,
    started: bool,
}

/// Sends one request and reads its whole response.
async fn exchange(
    stream: &mut TcpStream,
    peer: SocketAddr,
    target: &Target,
    io: &mut SlotIo,
) -> Result<Exchanged, ExchangeError> {
    stream
        .write_all(&target.request)
        .await
        .map_err(|e| ExchangeError {
            error: FetchError::io(&e, peer),
            started: false,
        })?;
    io.written += target.request.len() as u64;
    io.parser.reset(target.head_request);
    loop {
        let n = stream.read(&mut io.buf).await.map_err(|e| ExchangeError {
            error: FetchError::io(&e, peer),
            started: io.parser.started(),
        })?;
        io.read += n as u64;
        let progress = if n == 0 {
            let started = io.parser.started();
            io.parser
                .feed_eof()
                .map(Progress::Done)
                .map_err(|e| (e, started))
        } else {
            io.parser.feed(&io.buf[..n]).map_err(|e| (e, true))
        };
        match progress {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::Done(response)) => {
                let trailing = n.saturating_sub(response.consumed);
                return Ok(Exchanged { response, trailing });
            }
            Err((e, started)) => {
                return Err(ExchangeError {
                    error: FetchError::http(&e, peer),
                    started,
                });
            }
        }
    }
}

/// An open connection of a load worker.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
}

/// State shared by the connection tasks of one worker thread.
struct Worker {
    ctx: WorkerCtx,
    rec: RefCell<Recorder>,
    stop: watch::Receiver<bool>,
}

/// One connection slot: takes tickets until the plan says stop.
async fn connection(w: Rc<Worker>, slot: usize) {
    let mut conn: Option<Conn> = None;
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
        let target = w.ctx.target(ticket.seq);
        w.rec.borrow_mut().issue();
        let request = one_request(&w, slot, &mut conn, &mut ever_connected, target, &mut io);
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
                conn = None;
                break;
            }
            Some(Ok((status, sent_at))) => {
                rec.response(status, w.ctx.plan.latency_origin(&ticket, sent_at), now);
                w.ctx.live.completed.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                rec.error(e.kind, &e.message);
                w.ctx.live.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
    drop(conn);
    let mut rec = w.rec.borrow_mut();
    rec.bytes_read += io.read;
    rec.bytes_written += io.written;
}

/// Runs one request on the slot's connection, opening one if needed;
/// returns the status and when the request was sent. A reused connection
/// that the server had already closed (no response byte at all) is reopened
/// and the request sent once more, as HTTP clients do.
async fn one_request(
    w: &Worker,
    slot: usize,
    conn: &mut Option<Conn>,
    ever_connected: &mut bool,
    target: &Target,
    io: &mut SlotIo,
) -> Result<(u16, Instant), FetchError> {
    for attempt in 0..2 {
        let reused = matches!(conn, Some(c) if c.peer == target.addr);
        if !reused {
            *conn = None;
            let t0 = Instant::now();
            let stream = connect(
                target.addr,
                w.ctx.bind_addr(slot),
                w.ctx.conn.connect_timeout,
            )
            .await?;
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
        let peer = c.peer;
        match exchange(&mut c.stream, peer, target, io).await {
            Ok(done) => {
                let reusable =
                    done.response.keep_alive && w.ctx.conn.keep_alive && done.trailing == 0;
                if !reusable {
                    *conn = None;
                }
                return Ok((done.response.status, sent_at));
            }
            Err(e) => {
                *conn = None;
                let retry = reused
                    && attempt == 0
                    && !e.started
                    && matches!(e.error.kind, ErrorKind::EarlyEof | ErrorKind::Reset);
                if !retry {
                    return Err(e.error);
                }
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

/// Runs one load worker thread's connections on its own runtime.
pub fn run_worker(ctx: WorkerCtx) -> Result<Recorder, FetchError> {
    let rt = runtime();
    ctx.ready();
    let rt = rt?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let (tx, rx) = watch::channel(false);
        let start = ctx.plan.start();
        let w = Rc::new(Worker {
            ctx,
            rec: RefCell::new(Recorder::new(start)),
            stop: rx,
        });
        let tasks: Vec<_> = (0..w.ctx.connections)
            .map(|slot| tokio::task::spawn_local(connection(w.clone(), slot)))
            .collect();
        let watcher = tokio::task::spawn_local(watch_stop(w.clone(), tx));
        for t in tasks {
            let _ = t.await;
        }
        watcher.abort();
        w.rec.borrow_mut().finished = Some(Instant::now());
        Ok(w.rec.replace(Recorder::new(start)))
    })
}

/// Fetches one target on a connection of its own, keeping head and body.
async fn fetch_one(target: &Target, opts: &ConnOptions) -> Result<Fetched, FetchError> {
    let peer = target.addr;
    let mut stream = connect(peer, opts.bind.first().copied(), opts.connect_timeout).await?;
    let mut io = SlotIo::new(true, FETCH_BUF);
    let done = exchange(&mut stream, peer, target, &mut io)
        .await
        .map_err(|e| e.error)?;
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

/// Fetches every target concurrently on one current-thread runtime.
pub fn fetch_all(
    targets: &[Target],
    opts: &ConnOptions,
) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
    let rt = runtime()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tasks: Vec<_> = targets
            .iter()
            .map(|t| {
                let (t, o) = (t.clone(), opts.clone());
                tokio::task::spawn_local(async move {
                    with_limit(o.timeout, FetchError::timeout, fetch_one(&t, &o)).await
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
        Ok(out)
    })
}
