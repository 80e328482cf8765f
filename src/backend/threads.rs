//! Blocking model: `std::net` sockets, one OS thread per connection.
//!
//! This is the model the article argues against, kept as the baseline: each
//! request blocks its thread in connect, write and read. `get --sequential`
//! is the article's synchronous client on the same code.
//!
//! A load worker thread spawns one small-stack thread per connection; they
//! record into one shared [`Recorder`] per worker. Blocked threads
//! cannot see the deadline, so the worker keeps a handle on every open
//! connection and shuts them all down when the run is over; a request cut
//! off that way counts as in flight, not as an error.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::exchange::{SlotIo, Step, parse_read};
use super::{ConnOptions, Fetched, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::http::Response;
use crate::plan::Plan;
use crate::stats::Recorder;
use crate::stats::resources::Usage;
use crate::target::Target;

const FETCH_BUF: usize = 64 * 1024;

/// Opens a blocking connection, optionally from a given source address.
pub(crate) fn connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    limit: Option<Duration>,
) -> Result<TcpStream, FetchError> {
    let map = |e: io::Error| match (e.kind(), limit) {
        (io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock, Some(d)) => {
            FetchError::connect_timeout(d, addr)
        }
        _ => FetchError::connect(&e, addr),
    };
    let stream = match bind {
        None => match limit {
            Some(d) => TcpStream::connect_timeout(&addr, d),
            None => TcpStream::connect(addr),
        }
        .map_err(map)?,
        Some(ip) => {
            let socket =
                super::bound_socket(addr, ip).map_err(|e| FetchError::connect(&e, addr))?;
            match limit {
                Some(d) => socket.connect_timeout(&addr.into(), d),
                None => socket.connect(&addr.into()),
            }
            .map_err(map)?;
            socket.into()
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends one request and reads its response before `deadline` (the instant
/// and the limit it came from). Returns the response and how many bytes
/// followed it in the last read; on failure, the error and whether any
/// response byte had arrived.
pub(crate) fn exchange(
    stream: &TcpStream,
    peer: SocketAddr,
    target: &Target,
    io: &mut SlotIo,
    deadline: Option<(Instant, Duration)>,
) -> Result<(Response, usize), (FetchError, bool)> {
    let remaining =
        |deadline: Option<(Instant, Duration)>| -> Result<Option<Duration>, (FetchError, bool)> {
            match deadline {
                None => Ok(None),
                Some((at, limit)) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        Err((FetchError::timeout(limit), false))
                    } else {
                        Ok(Some(left))
                    }
                }
            }
        };
    let timed_out = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    let limit = deadline.map(|(_, l)| l);
    // `&TcpStream` reads and writes, so a connection shared with the worker
    // thread (which may shut it down) needs no lock.
    let mut stream = stream;
    // Each write gets what is left of the deadline: a write timeout is per
    // call, so one set for the whole request let every partial write start
    // it afresh (an 8 MB body to a peer that never read took 3x --timeout).
    let request = &target.request[..];
    let mut sent = 0;
    while sent < request.len() {
        let _ = stream.set_write_timeout(remaining(deadline)?);
        match stream.write(&request[sent..]) {
            Ok(0) => {
                let e = io::Error::from(io::ErrorKind::WriteZero);
                return Err((FetchError::io(&e, peer), false));
            }
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let err = match (timed_out(&e), limit) {
                    (true, Some(l)) => FetchError::timeout(l),
                    _ => FetchError::io(&e, peer),
                };
                return Err((err, false));
            }
        }
    }
    io.written += request.len() as u64;
    io.parser.reset(target.head_request);
    loop {
        let left = remaining(deadline).map_err(|(e, _)| (e, io.parser.started()))?;
        let _ = stream.set_read_timeout(left);
        let n = match stream.read(&mut io.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let err = match (timed_out(&e), limit) {
                    (true, Some(l)) => FetchError::timeout(l),
                    _ => FetchError::io(&e, peer),
                };
                return Err((err, io.parser.started()));
            }
        };
        match parse_read(io, n, peer) {
            Step::NeedMore => {}
            Step::Done(r, trailing) => return Ok((r, trailing)),
            Step::Failed(e) => return Err((e.error, e.started)),
        }
    }
}

/// Fetches one target with a blocking socket, keeping head and body.
pub fn fetch_one(target: &Target, opts: &ConnOptions) -> Result<Fetched, FetchError> {
    let start = Instant::now();
    let peer = target.addr;
    let stream = connect(peer, opts.bind.first().copied(), opts.connect_timeout)?;
    let mut io = SlotIo::new(true, FETCH_BUF);
    let deadline = opts.timeout.map(|t| (start + t, t));
    let (response, trailing) =
        exchange(&stream, peer, target, &mut io, deadline).map_err(|(e, _)| e)?;
    if trailing > 0 {
        return Err(super::trailing_error(peer, trailing));
    }
    Ok(Fetched {
        response,
        head: io.parser.head().to_vec(),
        body: io.parser.body().to_vec(),
        peer,
    })
}

/// Fetches every target concurrently, one thread and connection each.
pub fn fetch_all(targets: &[Target], opts: &ConnOptions) -> Vec<Result<Fetched, FetchError>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| scope.spawn(move || fetch_one(t, opts)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(FetchError::new(ErrorKind::Other, "a fetch thread panicked"))
                })
            })
            .collect()
    })
}

/// Receive buffer per connection thread.
const READ_BUF: usize = 8 * 1024;
/// Stack of a connection thread: an exchange needs little, and 10,000
/// default-sized stacks would reserve tens of gigabytes of address space.
const STACK: usize = 64 * 1024;
/// How often blocked waits look at the deadline and Ctrl-C.
const TICK: Duration = Duration::from_millis(20);

/// Start signal and exit count between a worker and its connection threads.
#[derive(Debug, Default)]
struct GateState {
    /// `Some(true)`: run; `Some(false)`: setup failed, exit at once.
    go: Option<bool>,
    finished: usize,
}

/// What a worker thread and its connection threads share.
struct Shared {
    ctx: WorkerCtx,
    state: Mutex<GateState>,
    cv: Condvar,
    /// Each slot's open connection, so the worker can shut it down when the
    /// run is over. The socket closes when both the slot and this drop it.
    open: Vec<Mutex<Option<Arc<TcpStream>>>>,
    /// One recorder for all of this worker's connection threads: a recorder
    /// per thread would cost each thread two full histograms, and that
    /// memory would be charged to the blocking model.
    rec: Mutex<Option<Recorder>>,
}

impl Shared {
    /// Runs `f` on the worker's recorder (created at the run's start).
    fn record<R>(&self, f: impl FnOnce(&mut Recorder) -> R) -> R {
        let mut guard = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.get_or_insert_with(|| Recorder::new(self.ctx.plan.start())))
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open_gate(&self, go: bool) {
        self.lock().go = Some(go);
        self.cv.notify_all();
    }

    /// Blocks until the worker opens the gate; `false`: do not run.
    fn wait_gate(&self) -> bool {
        let mut st = self.lock();
        loop {
            match st.go {
                Some(go) => return go,
                None => st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Waits for `n` connection threads to end, shutting their connections
    /// down (again every tick, for ones opened meanwhile) once the run is over.
    fn supervise(&self, n: usize) {
        let mut st = self.lock();
        while st.finished < n {
            if self.ctx.plan.is_over(Instant::now()) {
                drop(st);
                for slot in &self.open {
                    let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(s) = slot.as_ref() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                st = self.lock();
            }
            // Wake at the deadline itself, not up to a tick after it.
            let wait = self.ctx.plan.deadline().map_or(TICK, |d| {
                d.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), TICK)
            });
            st = self
                .cv
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn register(&self, slot: usize, stream: Option<Arc<TcpStream>>) {
        *self.open[slot].lock().unwrap_or_else(|e| e.into_inner()) = stream;
    }
}

/// Counts a connection thread as finished even if it panics.
struct Finished<'a>(&'a Shared);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.lock().finished += 1;
        self.0.cv.notify_all();
    }
}

/// An open connection of a connection thread.
struct Conn {
    stream: Arc<TcpStream>,
    peer: SocketAddr,
}

/// One connection thread's state, kept across requests.
struct Slot {
    index: usize,
    conn: Option<Conn>,
    io: SlotIo,
    ever_connected: bool,
}

impl Slot {
    fn close(&mut self, sh: &Shared) {
        if self.conn.take().is_some() {
            sh.register(self.index, None);
        }
    }
}

/// Runs one load worker: a thread per connection, supervised from here.
pub fn run_worker(ctx: WorkerCtx) -> Result<Recorder, FetchError> {
    let n = ctx.connections;
    let sh = Arc::new(Shared {
        ctx: ctx.clone(),
        state: Mutex::new(GateState::default()),
        cv: Condvar::new(),
        open: (0..n).map(|_| Mutex::new(None)).collect(),
        rec: Mutex::new(None),
    });
    let mut handles = Vec::with_capacity(n);
    let mut failure = None;
    for index in 0..n {
        let sh = sh.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || connection_thread(&sh, index));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                failure = Some(thread_limit_error(&e, index, n));
                break;
            }
        }
    }
    ctx.ready();
    sh.open_gate(failure.is_none());
    if failure.is_none() {
        sh.supervise(n);
    }
    for h in handles {
        match h.join() {
            Ok(()) => {}
            Err(_) => {
                failure.get_or_insert(FetchError::new(
                    ErrorKind::Other,
                    "a connection thread panicked",
                ));
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(sh.record(|r| std::mem::replace(r, Recorder::new(ctx.plan.start())))),
    }
}

fn thread_limit_error(e: &io::Error, index: usize, n: usize) -> FetchError {
    FetchError::new(
        ErrorKind::Other,
        format!(
            "cannot start connection thread {} of {n}: {e}; the threads backend needs one OS \
             thread per connection: raise the limits (ulimit -u, kernel.threads-max, \
             vm.max_map_count) or lower -c",
            index + 1
        ),
    )
}

/// One connection: takes tickets until the plan says stop, recording into
/// the worker's recorder.
fn connection_thread(sh: &Shared, index: usize) {
    let _finished = Finished(sh);
    if !sh.wait_gate() {
        return;
    }
    let before = Usage::thread_now();
    let plan = &sh.ctx.plan;
    let mut slot = Slot {
        index,
        conn: None,
        io: SlotIo::new(false, READ_BUF),
        ever_connected: false,
    };
    while let Some(ticket) = plan.next_ticket() {
        if !sleep_until(plan, ticket.intended) || plan.is_over(Instant::now()) {
            break;
        }
        sh.record(Recorder::issue);
        let target = sh.ctx.target(ticket.seq);
        let result = one_request(sh, &mut slot, target);
        let now = Instant::now();
        match result {
            Ok(_) if plan.is_over(now) => {
                // Answered after the deadline (or Ctrl-C): in flight then,
                // as the other backends count it.
                sh.record(|r| r.in_flight += 1);
                break;
            }
            Ok((status, sent_at)) => {
                let origin = plan.latency_origin(&ticket, sent_at);
                sh.record(|r| r.response(status, origin, now));
                sh.ctx.live.completed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) if plan.is_over(now) => {
                // Cut off by the deadline or Ctrl-C (the worker shut the socket down).
                sh.record(|r| r.in_flight += 1);
                slot.close(sh);
                break;
            }
            Err(e) => {
                sh.record(|r| r.error(e.kind, &e.message));
                sh.ctx.live.errors.fetch_add(1, Ordering::Relaxed);
                slot.close(sh);
            }
        }
    }
    // The run ends with this thread's last request; closing is teardown.
    let end = Instant::now();
    sh.record(|r| r.finished = r.finished.max(Some(end)));
    slot.close(sh);
    let cpu = Usage::thread_now().since(&before);
    sh.record(|r| {
        r.bytes_read += slot.io.read;
        r.bytes_written += slot.io.written;
        r.cpu += cpu;
    });
}

/// Sleeps until `at` in short slices; `false` if the run ended first.
fn sleep_until(plan: &Plan, at: Instant) -> bool {
    loop {
        let now = Instant::now();
        if plan.is_over(now) {
            return false;
        }
        if now >= at {
            return true;
        }
        std::thread::sleep((at - now).min(TICK));
    }
}

/// Runs one request on the slot's connection, opening one if needed;
/// returns the status and when the request was sent. A reused connection
/// that the server had already closed (no response byte at all) is reopened
/// and the request sent once more.
fn one_request(
    sh: &Shared,
    slot: &mut Slot,
    target: &Target,
) -> Result<(u16, Instant), FetchError> {
    let opts = &sh.ctx.conn;
    let deadline = opts.timeout.map(|t| (Instant::now() + t, t));
    for attempt in 0..2 {
        let reused = matches!(&slot.conn, Some(c) if c.peer == target.addr);
        if !reused {
            slot.close(sh);
            let t0 = Instant::now();
            let bind = sh.ctx.bind_addr();
            let stream = connect_until(&sh.ctx.plan, target.addr, bind, opts, deadline)?;
            let (took, again) = (t0.elapsed(), slot.ever_connected);
            sh.record(|r| r.connected(took, again));
            slot.ever_connected = true;
            let stream = Arc::new(stream);
            sh.register(slot.index, Some(stream.clone()));
            slot.conn = Some(Conn {
                stream,
                peer: target.addr,
            });
        }
        let Some(c) = slot.conn.as_ref() else {
            continue;
        };
        let sent_at = Instant::now();
        match exchange(&c.stream, c.peer, target, &mut slot.io, deadline) {
            Ok((response, trailing)) => {
                if !(response.keep_alive && opts.keep_alive && trailing == 0) {
                    slot.close(sh);
                }
                return Ok((response.status, sent_at));
            }
            Err((e, started)) => {
                slot.close(sh);
                let retry = reused
                    && attempt == 0
                    && !started
                    && matches!(e.kind, ErrorKind::EarlyEof | ErrorKind::Reset)
                    && !sh.ctx.plan.is_over(Instant::now());
                if !retry {
                    return Err(e);
                }
                sh.record(|r| r.retries += 1);
            }
        }
    }
    Err(FetchError::new(
        ErrorKind::Other,
        "request retry loop ended",
    ))
}

/// Connects without blocking past the connect limit, the request deadline
/// or the end of the run (checked every tick), then returns a blocking stream.
fn connect_until(
    plan: &Plan,
    addr: SocketAddr,
    bind: Option<IpAddr>,
    opts: &ConnOptions,
    deadline: Option<(Instant, Duration)>,
) -> Result<TcpStream, FetchError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let fail = |e: io::Error| FetchError::connect(&e, addr);
    let socket = match bind {
        Some(ip) => super::bound_socket(addr, ip),
        None => Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)),
    }
    .map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let connect_by = opts.connect_timeout.map(|d| (Instant::now() + d, d));
            wait_writable(&socket, plan, addr, connect_by, deadline)?;
            if let Some(e) = socket.take_error().map_err(fail)? {
                return Err(fail(e));
            }
        }
        Err(e) => return Err(fail(e)),
    }
    socket.set_nonblocking(false).map_err(fail)?;
    let _ = socket.set_nodelay(true);
    Ok(socket.into())
}

/// Waits for a connecting socket to become writable (connected or failed).
fn wait_writable(
    socket: &socket2::Socket,
    plan: &Plan,
    addr: SocketAddr,
    connect_by: Option<(Instant, Duration)>,
    deadline: Option<(Instant, Duration)>,
) -> Result<(), FetchError> {
    use std::os::fd::AsRawFd;
    loop {
        let now = Instant::now();
        if let Some((at, d)) = connect_by
            && now >= at
        {
            return Err(FetchError::connect_timeout(d, addr));
        }
        if let Some((at, d)) = deadline
            && now >= at
        {
            return Err(FetchError::timeout(d));
        }
        if plan.is_over(now) {
            return Err(FetchError::new(ErrorKind::Other, "the run ended"));
        }
        let mut wait = TICK;
        for (at, _) in [connect_by, deadline].into_iter().flatten() {
            wait = wait.min(at.saturating_duration_since(now));
        }
        let mut pfd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: `pfd` is one valid, writable pollfd for a descriptor that
        // `socket` keeps open for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            return Ok(());
        }
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(FetchError::connect(&e, addr));
            }
        }
    }
}
