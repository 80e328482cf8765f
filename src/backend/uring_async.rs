//! Completion model with futures: tokio-uring.
//!
//! connect, send and recv are io_uring operations; a task per connection
//! awaits their completions. Buffers are passed to the kernel by ownership
//! and come back with the result, so one read buffer per connection is
//! reused for the whole run and the request bytes are shared, not copied.
//!
//! tokio-uring keeps a socket open while an operation on it is pending, even
//! if the future waiting for it is dropped. A request that times out or is
//! still running at the deadline therefore shuts its socket down, which
//! completes the pending receive and lets the descriptor close.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_uring::net::TcpStream;

use super::{ConnOptions, Fetched, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::http::{Progress, Response, ResponseParser};
use crate::stats::Recorder;
use crate::target::Target;

/// Receive buffer per connection. Pages the kernel never writes to are never
/// resident, so 10,000 connections cost far less than 10,000 x this.
const READ_BUF: usize = 8 * 1024;
/// Receive buffer for `get`, which keeps whole bodies anyway.
const FETCH_BUF: usize = 64 * 1024;

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

/// Opens a TCP connection through io_uring's connect.
///
/// With a source address (`--bind`) the socket must be bound before
/// connecting, and tokio-uring cannot connect a socket it did not create:
/// then connect(2) is issued directly (non-blocking), and the first send,
/// which io_uring parks until the socket is writable, completes the handshake.
async fn connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    limit: Option<Duration>,
) -> Result<TcpStream, FetchError> {
    let fut = async move {
        let stream = match bind {
            None => TcpStream::connect(addr).await,
            Some(ip) => connect_bound(addr, ip).map(TcpStream::from_std),
        }
        .map_err(|e| FetchError::connect(&e, addr))?;
        // Small requests must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    };
    with_limit(limit, |d| FetchError::connect_timeout(d, addr), fut).await
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

/// The per-connection-slot state an exchange works with, kept across
/// requests so the steady state allocates nothing.
struct SlotIo {
    parser: ResponseParser,
    /// Receive buffer, lent to the kernel for each read.
    buf: Vec<u8>,
    capacity: usize,
    /// Bytes moved, counted as they go so a cut-off request still counts.
    read: u64,
    written: u64,
}

impl SlotIo {
    fn new(collect: bool, capacity: usize) -> Self {
        Self {
            parser: ResponseParser::new(collect),
            buf: Vec::with_capacity(capacity),
            capacity,
            read: 0,
            written: 0,
        }
    }
}

/// A response and whether bytes followed it in the same read (a peer that
/// sent more than it framed: the connection cannot be trusted further).
struct Exchanged {
    response: Response,
    trailing: usize,
}

/// Why an exchange failed, and whether any response byte had arrived (a
/// reused connection that fails before any byte may be retried once).
struct ExchangeError {
    error: FetchError,
    started: bool,
}

/// Sends one request and reads its whole response.
async fn exchange(
    stream: &TcpStream,
    peer: SocketAddr,
    request: Bytes,
    head_request: bool,
    io: &mut SlotIo,
) -> Result<Exchanged, ExchangeError> {
    let len = request.len() as u64;
    let (res, _) = stream.write_all(request).await;
    res.map_err(|e| ExchangeError {
        error: FetchError::io(&e, peer),
        started: false,
    })?;
    io.written += len;
    io.parser.reset(head_request);
    loop {
        let mut owned = std::mem::take(&mut io.buf);
        owned.clear();
        // A read cut off by a timeout keeps its buffer; start a fresh one.
        if owned.capacity() < io.capacity {
            owned.reserve(io.capacity);
        }
        let (res, owned) = stream.read(owned).await;
        io.buf = owned;
        let n = res.map_err(|e| ExchangeError {
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

impl Conn {
    /// Closes now, even with an operation pending (see the module docs).
    fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
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
                if let Some(c) = conn.take() {
                    c.abort();
                }
                break;
            }
            Some(Ok((status, sent_at))) => {
                rec.response(status, w.ctx.plan.latency_origin(&ticket, sent_at), now);
                w.ctx
                    .live
                    .completed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Some(Err(e)) => {
                rec.error(e.kind, &e.message);
                w.ctx
                    .live
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(c) = conn.take() {
                    c.abort();
                }
            }
        }
    }
    let mut rec = w.rec.borrow_mut();
    rec.bytes_read += io.read;
    rec.bytes_written += io.written;
}

/// Runs one request on the slot's connection, opening one if needed;
/// returns the status and when the request was sent. A
/// reused connection that the server had already closed (no response byte
/// at all) is reopened and the request sent once more, as HTTP clients do.
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
            if let Some(old) = conn.take() {
                old.abort();
            }
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
        let Some(c) = conn.as_ref() else {
            continue;
        };
        let sent_at = Instant::now();
        let result = exchange(
            &c.stream,
            c.peer,
            target.request.clone(),
            target.head_request,
            io,
        )
        .await;
        match result {
            Ok(done) => {
                let reusable =
                    done.response.keep_alive && w.ctx.conn.keep_alive && done.trailing == 0;
                if !reusable && let Some(c) = conn.take() {
                    c.abort();
                }
                return Ok((done.response.status, sent_at));
            }
            Err(e) => {
                if let Some(c) = conn.take() {
                    c.abort();
                }
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

/// Runs one load worker thread's connections on its own ring.
pub fn run_worker(ctx: WorkerCtx) -> Result<Recorder, FetchError> {
    let rt = runtime(ctx.connections);
    ctx.ready();
    let rt = rt?;
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        let start = ctx.plan.start();
        let w = Rc::new(Worker {
            ctx,
            rec: RefCell::new(Recorder::new(start)),
            stop: rx,
        });
        let tasks: Vec<_> = (0..w.ctx.connections)
            .map(|slot| tokio_uring::spawn(connection(w.clone(), slot)))
            .collect();
        let watcher = tokio_uring::spawn(watch_stop(w.clone(), tx));
        for t in tasks {
            let _ = t.await;
        }
        watcher.abort();
        w.rec.borrow_mut().finished = Some(Instant::now());
        Ok(w.rec.replace(Recorder::new(start)))
    })
}

/// Fetches one target on a connection of its own, keeping head and body.
async fn fetch_one(target: Target, opts: ConnOptions) -> Result<Fetched, FetchError> {
    let peer = target.addr;
    let stream = connect(peer, opts.bind.first().copied(), opts.connect_timeout).await?;
    let mut io = SlotIo::new(true, FETCH_BUF);
    let done = exchange(
        &stream,
        peer,
        target.request.clone(),
        target.head_request,
        &mut io,
    )
    .await
    .map_err(|e| e.error)?;
    if done.trailing > 0 {
        return Err(FetchError::new(
            ErrorKind::BadResponse,
            format!(
                "bad response from {peer}: {} bytes after the end of the response (body longer than its Content-Length?)",
                done.trailing
            ),
        ));
    }
    Ok(Fetched {
        response: done.response,
        head: io.parser.head().to_vec(),
        body: io.parser.body().to_vec(),
        peer,
    })
}

/// Fetches every target concurrently on one ring.
pub fn fetch_all(
    targets: &[Target],
    opts: &ConnOptions,
) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
    let rt = runtime(targets.len())?;
    rt.block_on(async {
        let tasks: Vec<_> = targets
            .iter()
            .map(|t| {
                let (t, o) = (t.clone(), opts.clone());
                tokio_uring::spawn(async move {
                    let limit = o.timeout;
                    with_limit(limit, FetchError::timeout, fetch_one(t, o)).await
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
