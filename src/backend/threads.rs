//! Blocking model: `std::net` sockets, one OS thread per connection.
//!
//! This is the model the article argues against, kept as the baseline: each
//! session's thread blocks in connect, write and read. `get --sequential`
//! is the article's synchronous client: this driver with one session.
//!
//! A worker starts its session threads while it is prepared (they wait for
//! the run's start), then supervises them. Blocked threads cannot see the
//! end of the run, so the worker keeps a handle on every open connection
//! and shuts them all down when the run is over; the session counts what
//! that cut off as in flight.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::WorkerCtx;
use crate::error::{ErrorKind, FetchError};
use crate::plan::Plan;
use crate::session::{Session, Sink, Want};
use crate::stats::resources::Usage;

/// Receive buffer per connection thread.
const READ_BUF: usize = 8 * 1024;
/// Receive buffer for `get`, which keeps whole bodies.
const FETCH_BUF: usize = 64 * 1024;
/// Stack of a connection thread: a session needs little, and 10,000
/// default-sized stacks would reserve tens of gigabytes of address space.
const STACK: usize = 64 * 1024;
/// After the run is over, how often the worker shuts down connections
/// opened since (a session thread that was between two calls).
const RESHUT: Duration = Duration::from_millis(20);

/// What a session thread runs once the run starts: its index.
type Job = Arc<dyn Fn(usize) + Send + Sync>;

/// The start signal between a worker and its session threads.
#[derive(Default)]
struct Gate {
    /// `Some(Some(job))`: run it; `Some(None)`: the run is off, exit.
    job: Mutex<Option<Option<Job>>>,
    cv: Condvar,
    /// Session threads that have ended.
    finished: Mutex<usize>,
    done_cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gate {
    fn open(&self, job: Option<Job>) {
        *lock(&self.job) = Some(job);
        self.cv.notify_all();
    }

    fn wait(&self) -> Option<Job> {
        let mut job = lock(&self.job);
        loop {
            match &*job {
                Some(j) => return j.clone(),
                None => job = self.cv.wait(job).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Counts a session thread as finished even if it panics.
struct Finished<'a>(&'a Gate);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        *lock(&self.0.finished) += 1;
        self.0.done_cv.notify_all();
    }
}

/// A worker whose session threads are started and waiting.
pub(crate) struct Prepared {
    gate: Arc<Gate>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Prepared {
    /// A worker dropped without running lets its threads go.
    fn drop(&mut self) {
        if lock(&self.gate.job).is_none() {
            self.gate.open(None);
        }
    }
}

/// Starts one thread per connection, waiting for [`Prepared::run`].
pub(crate) fn prepare(ctx: &WorkerCtx) -> Result<Prepared, FetchError> {
    let n = ctx.connections;
    let gate = Arc::new(Gate::default());
    let mut prepared = Prepared {
        gate: gate.clone(),
        handles: Vec::with_capacity(n.min(65_536)),
    };
    for index in 0..n {
        let gate = gate.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                let _finished = Finished(&gate);
                if let Some(job) = gate.wait() {
                    job(index);
                }
            });
        match spawned {
            Ok(h) => prepared.handles.push(h),
            Err(e) => return Err(thread_limit_error(&e, index, n)),
        }
    }
    Ok(prepared)
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

/// What a worker's session threads share.
struct Shared<S> {
    ctx: WorkerCtx,
    sink: Mutex<S>,
    /// Each session's open (or connecting) socket, so the worker can shut
    /// it down when the run is over. The socket closes when both drop it.
    open: Vec<Mutex<Option<Arc<TcpStream>>>>,
    /// Session threads waiting for an open-loop ticket's time sleep here;
    /// the plan's cancel wakes them.
    sleep: (Mutex<()>, Condvar),
}

impl<S> Shared<S> {
    fn sink(&self) -> MutexGuard<'_, S> {
        lock(&self.sink)
    }

    fn register(&self, index: usize, stream: Option<Arc<TcpStream>>) {
        if let Some(slot) = self.open.get(index) {
            *lock(slot) = stream;
        }
    }

    /// Sleeps until `at`; `false` if the run ended first.
    fn sleep_until(&self, at: Instant) -> bool {
        let plan = &self.ctx.plan;
        let mut guard = lock(&self.sleep.0);
        loop {
            let now = Instant::now();
            if plan.is_over(now) {
                return false;
            }
            if now >= at {
                return true;
            }
            guard = self
                .sleep
                .1
                .wait_timeout(guard, at - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wakes the session threads that wait for a ticket's time or a
    /// connect turn, to see that the run is over.
    fn wake_waiters(&self) {
        {
            let _held = lock(&self.sleep.0);
            self.sleep.1.notify_all();
        }
        self.ctx.turns.wake_all();
    }

    /// Shuts every open connection down, which ends blocked reads, writes
    /// and connects.
    fn shut_all(&self) {
        for slot in &self.open {
            if let Some(s) = lock(slot).as_ref() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Prepared {
    /// Runs the sessions: one per thread, recording into one shared sink (a
    /// sink per thread would cost each thread two full histograms, charged
    /// to the blocking model); shuts connections down once the run is over.
    pub(crate) fn run<S: Sink + Send + 'static>(
        self,
        ctx: &WorkerCtx,
        sink: S,
    ) -> Result<S, FetchError> {
        let n = self.handles.len();
        let sh = Arc::new(Shared {
            ctx: ctx.clone(),
            sink: Mutex::new(sink),
            open: (0..n).map(|_| Mutex::new(None)).collect(),
            sleep: (Mutex::new(()), Condvar::new()),
        });
        // Ctrl-C wakes whoever waits: the supervisor, sleepers, threads
        // waiting for a connect turn. (Weak: the plan outlives the run.)
        let (gate, weak) = (Arc::downgrade(&self.gate), Arc::downgrade(&sh));
        let turns = ctx.turns.clone();
        ctx.plan.on_cancel(Box::new(move || {
            if let Some(gate) = gate.upgrade() {
                let _held = lock(&gate.finished);
                gate.done_cv.notify_all();
            }
            if let Some(sh) = weak.upgrade() {
                sh.wake_waiters();
            } else {
                turns.wake_all();
            }
        }));
        let job_sh = sh.clone();
        let job: Job = Arc::new(move |index| session_thread(&job_sh, index));
        self.gate.open(Some(job));
        self.supervise(&sh, n);
        let mut prepared = self;
        let mut panicked = false;
        for h in prepared.handles.drain(..) {
            panicked |= h.join().is_err();
        }
        // The job (and its reference) goes with the gate's slot.
        *lock(&prepared.gate.job) = Some(None);
        if panicked {
            return Err(FetchError::new(
                ErrorKind::Other,
                "a connection thread panicked",
            ));
        }
        match Arc::try_unwrap(sh) {
            Ok(sh) => Ok(sh.sink.into_inner().unwrap_or_else(|e| e.into_inner())),
            Err(_) => Err(FetchError::new(
                ErrorKind::Other,
                "a connection thread outlived its worker",
            )),
        }
    }

    /// Waits for `n` session threads to end; once the run is over (its
    /// deadline, or the plan's cancel waking this wait), shuts their
    /// connections down, and again every RESHUT for ones opened meanwhile.
    fn supervise<S>(&self, sh: &Shared<S>, n: usize) {
        let plan = &sh.ctx.plan;
        let mut finished = lock(&self.gate.finished);
        while *finished < n {
            let now = Instant::now();
            let wait = if plan.is_over(now) {
                drop(finished);
                sh.shut_all();
                sh.wake_waiters();
                finished = lock(&self.gate.finished);
                Some(RESHUT)
            } else {
                plan.deadline().map(|d| d.saturating_duration_since(now))
            };
            finished = match wait {
                Some(d) => {
                    self.gate
                        .done_cv
                        .wait_timeout(finished, d.max(Duration::from_millis(1)))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .gate
                    .done_cv
                    .wait(finished)
                    .unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// One session on its own thread, driven one blocking call at a time.
fn session_thread<S: Sink>(sh: &Shared<S>, index: usize) {
    let before = Usage::thread_now();
    let ctx = &sh.ctx;
    let plan = &ctx.plan;
    let mut session = Session::new(S::COLLECT, ctx.conn.pipeline);
    let mut stream: Option<Arc<TcpStream>> = None;
    let mut buf = vec![0; if S::COLLECT { FETCH_BUF } else { READ_BUF }];
    loop {
        if session.take_close()
            && let Some(s) = stream.take()
        {
            if let Some(bytes) = session.take_parting() {
                super::part(std::os::fd::AsFd::as_fd(&*s), &bytes);
            }
            sh.register(index, None);
        }
        let now = Instant::now();
        match session.want() {
            Want::Done => break,
            Want::Start => session.start(ctx, &mut *sh.sink(), now),
            Want::Wait(at) => {
                if !sh.sleep_until(at) {
                    session.cut_off(&mut *sh.sink(), Instant::now());
                    break;
                }
                session.on_timer(ctx, &mut *sh.sink(), Instant::now());
            }
            Want::Connect => {
                if !ctx.turns.take_blocking(|| plan.is_over(Instant::now())) {
                    session.cut_off(&mut *sh.sink(), Instant::now());
                    break;
                }
                let (addr, bind) = session.connect_started(ctx, Instant::now());
                let result = connect_until(sh, index, addr, bind, session.deadline());
                ctx.turns.give_back();
                let now = Instant::now();
                let mut sink = sh.sink();
                match result {
                    Ok(s) => {
                        stream = Some(s);
                        session.on_connected(ctx, &mut *sink, now);
                    }
                    Err(Blocked::Io(e)) => session.on_connect_error(ctx, &mut *sink, &e, now),
                    Err(Blocked::Deadline) => session.on_timer(ctx, &mut *sink, now),
                    Err(Blocked::Stopped) => {
                        session.cut_off(&mut *sink, now);
                        break;
                    }
                }
            }
            // A sequential driver finishes its connect before it asks again.
            Want::Connecting => session.on_timer(ctx, &mut *sh.sink(), now),
            Want::Offload => {
                let Some(s) = stream.as_deref() else {
                    session.cut_off(&mut *sh.sink(), now);
                    break;
                };
                let fd = std::os::fd::AsRawFd::as_raw_fd(s);
                super::offload(&mut session, ctx, &mut *sh.sink(), fd, now);
            }
            Want::Exchange { send } => {
                let Some(s) = stream.as_deref() else {
                    session.cut_off(&mut *sh.sink(), now);
                    break;
                };
                let result = if send {
                    write_until(s, session.to_send(ctx), session.deadline())
                } else {
                    read_until(s, &mut buf, session.deadline())
                };
                let now = Instant::now();
                let mut sink = sh.sink();
                match result {
                    Ok(n) if send && n > 0 => session.on_sent(ctx, &mut *sink, n),
                    Ok(0) if send => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        session.on_io_error(ctx, &mut *sink, &e, now);
                    }
                    Ok(0) => session.on_eof(ctx, &mut *sink, now),
                    Ok(n) => session.on_recv(ctx, &mut *sink, &buf[..n], now),
                    Err(Blocked::Io(e)) if !send => {
                        let fd = std::os::fd::AsRawFd::as_raw_fd(s);
                        super::recv_failed(&mut session, ctx, &mut *sink, fd, &e, now);
                    }
                    Err(Blocked::Io(e)) => session.on_io_error(ctx, &mut *sink, &e, now),
                    Err(Blocked::Deadline) => session.on_timer(ctx, &mut *sink, now),
                    Err(Blocked::Stopped) => {
                        session.cut_off(&mut *sink, now);
                        break;
                    }
                }
            }
        }
    }
    let end = Instant::now();
    if stream.take().is_some() {
        sh.register(index, None);
    }
    let cpu = Usage::thread_now().since(&before);
    let mut sink = sh.sink();
    sink.ended(end);
    sink.cpu(cpu);
}

/// Why a blocking call returned without its result.
enum Blocked {
    Io(io::Error),
    /// The session's deadline passed.
    Deadline,
    /// The run ended.
    Stopped,
}

/// What is left until `deadline`: `Err(Deadline)` once it has passed.
fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>, Blocked> {
    match deadline {
        None => Ok(None),
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(Blocked::Deadline)
            } else {
                Ok(Some(left))
            }
        }
    }
}

/// A socket timeout is a deadline; anything else is the error itself.
fn blocked(e: io::Error) -> Blocked {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Blocked::Deadline,
        _ => Blocked::Io(e),
    }
}

/// One write, bounded by `deadline`: how many bytes the kernel took.
fn write_until(
    mut stream: &TcpStream,
    bytes: &[u8],
    deadline: Option<Instant>,
) -> Result<usize, Blocked> {
    // A write timeout is per call: each write gets what is left.
    let _ = stream.set_write_timeout(remaining(deadline)?);
    loop {
        match stream.write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r.map_err(blocked),
        }
    }
}

/// One read, bounded by `deadline`: how many bytes came (0: the peer closed).
fn read_until(
    mut stream: &TcpStream,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> Result<usize, Blocked> {
    let _ = stream.set_read_timeout(remaining(deadline)?);
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r.map_err(blocked),
        }
    }
}

/// Connects without blocking past `deadline` or the end of the run (the
/// socket is registered with the worker from the start, so the stop's
/// shutdown ends the wait), then returns the stream, blocking again.
fn connect_until<S>(
    sh: &Shared<S>,
    index: usize,
    addr: SocketAddr,
    bind: Option<IpAddr>,
    deadline: Option<Instant>,
) -> Result<Arc<TcpStream>, Blocked> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = match bind {
        Some(ip) => super::bound_socket(addr, ip),
        None => Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)),
    }
    .map_err(Blocked::Io)?;
    socket.set_nonblocking(true).map_err(Blocked::Io)?;
    let stream = Arc::new(TcpStream::from(socket));
    sh.register(index, Some(stream.clone()));
    let result = connect_registered(&sh.ctx.plan, &stream, addr, deadline);
    if result.is_err() {
        sh.register(index, None);
    }
    result.map(|()| stream)
}

fn connect_registered(
    plan: &Plan,
    stream: &TcpStream,
    addr: SocketAddr,
    deadline: Option<Instant>,
) -> Result<(), Blocked> {
    let socket = socket2::SockRef::from(stream);
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            wait_writable(stream, plan, deadline)?;
            if let Some(e) = socket.take_error().map_err(Blocked::Io)? {
                return Err(Blocked::Io(e));
            }
        }
        Err(e) => return Err(Blocked::Io(e)),
    }
    socket.set_nonblocking(false).map_err(Blocked::Io)?;
    let _ = socket.set_nodelay(true);
    Ok(())
}

/// Waits for a connecting socket to become writable (connected, failed, or
/// shut down by the worker at the end of the run).
fn wait_writable(
    stream: &TcpStream,
    plan: &Plan,
    deadline: Option<Instant>,
) -> Result<(), Blocked> {
    use std::os::fd::AsRawFd;
    loop {
        let left = remaining(deadline)?;
        if plan.is_over(Instant::now()) {
            return Err(Blocked::Stopped);
        }
        let mut pfd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // Without a deadline, a second at a time (the worker's shutdown
        // ends the wait anyway).
        let ms = left.map_or(1000, |l| l.as_millis().clamp(1, 1000)) as libc::c_int;
        // SAFETY: `pfd` is one valid, writable pollfd for a descriptor that
        // `stream` keeps open for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            if plan.is_over(Instant::now()) {
                return Err(Blocked::Stopped);
            }
            return Ok(());
        }
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Blocked::Io(e));
            }
        }
    }
}
