//! The I/O models, one file (or folder) each, behind one worker contract.
//!
//! A backend is a driver of [`crate::session::Session`]s and does I/O and
//! nothing else: it performs what each session wants (connect, send,
//! receive, wait) with its own I/O model and feeds back what happened. It
//! never decides when to stop, how fast to go, how to parse HTTP, when to
//! retry or how to count. A worker is set up first ([`prepare`]), so that
//! the runner can start every worker's clock together, then run with a
//! [`Sink`] that receives the outcomes.

pub mod epoll_async;
pub mod epoll_loop;
mod futures;
pub mod threads;
pub mod uring_async;
pub mod uring_loop;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;

use crate::error::FetchError;
use crate::http::Response;
use crate::plan::Plan;
use crate::session::h2::H2Request;
use crate::session::{ConnectTurns, Sink};
use crate::target::Target;

/// Which I/O model runs the workload. The names say what each one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Completion model: a hand-written loop on the io-uring crate, batched, multishot.
    UringLoop,
    /// Completion model: tokio-uring futures (connect, send, recv through io_uring).
    UringAsync,
    /// Readiness model, futures: tokio's epoll reactor, one task per connection.
    EpollAsync,
    /// Readiness model, hand-written: a mio event loop with per-connection state machines.
    EpollLoop,
    /// Blocking model: std::net, one OS thread per connection.
    Threads,
}

impl BackendKind {
    pub const ALL: [BackendKind; 5] = [
        BackendKind::UringLoop,
        BackendKind::UringAsync,
        BackendKind::EpollLoop,
        BackendKind::EpollAsync,
        BackendKind::Threads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::UringLoop => "uring-loop",
            BackendKind::UringAsync => "uring-async",
            BackendKind::EpollAsync => "epoll-async",
            BackendKind::EpollLoop => "epoll-loop",
            BackendKind::Threads => "threads",
        }
    }

    /// Whether this backend needs io_uring from the kernel.
    pub fn uses_io_uring(self) -> bool {
        matches!(self, BackendKind::UringAsync | BackendKind::UringLoop)
    }

    /// Whether this backend writes a pipelined batch while it receives
    /// (`--pipeline`): the hand-written completion loop does; the others
    /// send a batch, then read its responses, which a server that answers
    /// while the batch is still arriving could deadlock.
    pub fn can_pipeline(self) -> bool {
        matches!(self, BackendKind::UringLoop)
    }

    /// Whether the backend hands a TLS connection's keys to the kernel
    /// (`--ktls`): the drivers that own their sockets' file descriptors
    /// do; the async runtimes' streams do their own receive buffering.
    pub fn can_kernel_tls(self) -> bool {
        matches!(
            self,
            BackendKind::UringLoop | BackendKind::EpollLoop | BackendKind::Threads
        )
    }
}

/// A backend and the options only it understands, apart from the
/// connection settings every backend shares ([`ConnOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    pub kind: BackendKind,
    /// io_uring feature set for `uring-loop` (`--uring-profile`).
    pub uring_profile: uring_loop::ring::Profile,
}

impl From<BackendKind> for Backend {
    fn from(kind: BackendKind) -> Self {
        Self {
            kind,
            uring_profile: uring_loop::ring::Profile::Auto,
        }
    }
}

impl Backend {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Connection-level settings of a load run, the same for every worker.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// Whole-request limit: connect (if any), send and the full response.
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    /// `false`: a new connection for every request.
    pub keep_alive: bool,
    /// Source addresses to spread connections over (`--bind`); empty: the kernel picks.
    pub bind: Vec<IpAddr>,
    /// Requests written at once per connection (`--pipeline`; only
    /// backends that [`BackendKind::can_pipeline`] are given more than 1).
    pub pipeline: usize,
    /// The TLS client configuration of `https://` targets, built once for
    /// the run (its session cache is shared by every connection).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Kernel TLS (`--ktls`): `Ok` if connections of backends that
    /// [`BackendKind::can_kernel_tls`] hand their keys to the kernel,
    /// else why not (the report says it).
    pub ktls: Result<(), String>,
    /// Whether connections speak HTTP/2 (`--http2`, `--http2-prior-knowledge`).
    pub http2: Http2,
    /// HTTP/2 requests in flight per connection (`--streams`), at most
    /// the server's `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub streams: usize,
}

/// Which protocol connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Http2 {
    /// HTTP/1.x only.
    #[default]
    Off,
    /// `--http2`: `https://` offers ALPN `h2,http/1.1` and speaks what the
    /// server picks; `http://` stays HTTP/1.1.
    Alpn,
    /// `--http2-prior-knowledge`: `http://` speaks HTTP/2 from the first
    /// byte (h2c); `https://` as with `--http2`.
    PriorKnowledge,
}

impl Default for ConnOptions {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(30)),
            connect_timeout: Some(Duration::from_secs(10)),
            keep_alive: true,
            bind: Vec::new(),
            pipeline: 1,
            tls: None,
            ktls: Err("--ktls off".into()),
            http2: Http2::Off,
            streams: 1,
        }
    }
}

/// Live counters a progress view reads while workers run, and the
/// per-second series the run's collector builds (see [`crate::stats::series`]).
///
/// Each worker writes only its own slot, a cache line of its own, with
/// plain relaxed loads and stores (no read-modify-write, no lock): the
/// view sums the slots when it draws, so a worker never waits for it nor
/// shares a line with another worker.
#[derive(Debug)]
pub struct Live {
    slots: Box<[LiveSlot]>,
    /// Filled by the runner's thread from the workers' intervals; read by the view.
    pub series: std::sync::Mutex<crate::stats::series::Series>,
}

/// Worker slots, a power of two; a run with more worker threads shares
/// them round-robin (then two workers add into one slot with a
/// read-modify-write each).
const LIVE_SLOTS: usize = 64;

impl Default for Live {
    fn default() -> Self {
        Self {
            slots: (0..LIVE_SLOTS).map(|_| LiveSlot::default()).collect(),
            series: Default::default(),
        }
    }
}

/// One worker's counters, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct LiveSlot {
    issued: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    connected: AtomicU64,
    closed: AtomicU64,
    /// Whether another worker shares the slot (more workers than slots).
    shared: std::sync::atomic::AtomicBool,
}

/// The sum of every worker's counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LiveTotals {
    pub issued: u64,
    pub completed: u64,
    pub errors: u64,
    pub connected: u64,
    pub closed: u64,
}

impl LiveTotals {
    /// Connections established and not closed yet.
    pub fn open(&self) -> u64 {
        self.connected.saturating_sub(self.closed)
    }

    /// Requests started that have neither a response nor an error yet.
    pub fn in_flight(&self) -> u64 {
        self.issued
            .saturating_sub(self.completed.saturating_add(self.errors))
    }
}

/// Which counter of a [`LiveSlot`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Issued,
    Completed,
    Errors,
    Connected,
    Closed,
}

impl LiveSlot {
    /// Adds `n`: a plain load and store when the worker owns the slot.
    #[inline]
    pub(crate) fn add(&self, which: Counter, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = match which {
            Counter::Issued => &self.issued,
            Counter::Completed => &self.completed,
            Counter::Errors => &self.errors,
            Counter::Connected => &self.connected,
            Counter::Closed => &self.closed,
        };
        if self.shared.load(Relaxed) {
            c.fetch_add(n, Relaxed);
        } else {
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        }
    }
}

impl Live {
    /// Worker `index`'s slot. Only one worker may own a slot for the plain
    /// stores of [`LiveSlot::add`] to be exact: a run with more workers than
    /// slots marks the shared ones (see [`Live::prepare`]).
    #[inline]
    pub(crate) fn slot(&self, index: usize) -> &LiveSlot {
        &self.slots[index % LIVE_SLOTS]
    }

    /// Called before `workers` workers start: slots that two of them share
    /// count with read-modify-writes.
    pub(crate) fn prepare(&self, workers: usize) {
        for i in LIVE_SLOTS..workers {
            self.slot(i)
                .shared
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Every worker's counters added up.
    pub fn totals(&self) -> LiveTotals {
        use std::sync::atomic::Ordering::Relaxed;
        let mut t = LiveTotals::default();
        for s in self.slots.iter() {
            t.issued += s.issued.load(Relaxed);
            t.completed += s.completed.load(Relaxed);
            t.errors += s.errors.load(Relaxed);
            t.connected += s.connected.load(Relaxed);
            t.closed += s.closed.load(Relaxed);
        }
        t
    }
}

/// Everything one worker thread's sessions share.
#[derive(Debug, Clone)]
pub struct WorkerCtx {
    /// Connections this worker owns.
    pub connections: usize,
    /// Which `--bind` address the run's next connection takes.
    pub bind_cursor: Arc<std::sync::atomic::AtomicUsize>,
    pub plan: Arc<Plan>,
    pub targets: Arc<Vec<Target>>,
    /// Per target, what one write of a pipelined batch sends: the request
    /// `conn.pipeline` times (just the request without pipelining).
    pub wire: Arc<Vec<Bytes>>,
    pub conn: Arc<ConnOptions>,
    /// This worker's connect turns (see [`crate::session::pacing`]).
    pub(crate) turns: Arc<ConnectTurns>,
    /// TLS connections hand their keys to the kernel (see
    /// [`WorkerCtx::for_backend`]).
    pub kernel_tls: bool,
    /// Per target, its request in HTTP/2 form (empty without HTTP/2).
    pub(crate) h2: Arc<Vec<H2Request>>,
}

impl WorkerCtx {
    /// A worker's context; `wire` is shared by the run's workers (see [`wire`]).
    pub fn new(
        connections: usize,
        plan: Arc<Plan>,
        targets: Arc<Vec<Target>>,
        wire: Arc<Vec<Bytes>>,
        conn: Arc<ConnOptions>,
        bind_cursor: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        let h2 = if conn.http2 == Http2::Off {
            Vec::new()
        } else {
            targets
                .iter()
                .map(|t| {
                    let scheme = if t.tls { "https" } else { "http" };
                    // The run encoded the request itself: it reads back.
                    crate::session::h2::request::from_http1(&t.request, scheme).unwrap_or_default()
                })
                .collect()
        };
        Self {
            connections,
            bind_cursor,
            plan,
            targets,
            wire,
            conn,
            turns: Arc::default(),
            kernel_tls: false,
            h2: Arc::new(h2),
        }
    }

    /// The context for a run on `kind`: kernel TLS where the options
    /// allow it and the backend can.
    pub fn for_backend(mut self, kind: BackendKind) -> Self {
        self.kernel_tls =
            self.conn.ktls.is_ok() && kind.can_kernel_tls() && self.conn.http2 == Http2::Off;
        self
    }

    /// What a write of target `i`'s batch is cut from.
    #[inline]
    pub fn wire(&self, i: usize) -> &[u8] {
        &self.wire[i]
    }

    /// The source address for the next new connection, if `--bind` was
    /// given: every connection takes the next address of the list, round
    /// robin over the whole run, so even a few connections that reconnect
    /// often (`--disable-keepalive`) spread over every address's ports.
    pub fn bind_addr(&self) -> Option<IpAddr> {
        let list = &self.conn.bind;
        (!list.is_empty()).then(|| {
            list[self
                .bind_cursor
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % list.len()]
        })
    }
}

/// Per target, the bytes of one pipelined write: the request `depth` times,
/// encoded once for the whole run.
pub fn wire(targets: &[Target], depth: usize) -> Arc<Vec<Bytes>> {
    Arc::new(
        targets
            .iter()
            .map(|t| {
                if depth > 1 {
                    Bytes::from(t.request.repeat(depth))
                } else {
                    t.request.clone()
                }
            })
            .collect(),
    )
}

/// A fetched response with its raw head and decoded body (for `get`).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub response: Response,
    pub head: Vec<u8>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// Bytes the server sent after the end of the response: ignored.
    pub excess: usize,
}

/// A worker whose setup (ring, runtime, threads) is done: the run's clock
/// may start. The runner holds every worker here until all are prepared.
pub(crate) enum Prepared<'a> {
    UringLoop(Box<uring_loop::Prepared<'a>>),
    UringAsync(tokio_uring::Runtime),
    EpollAsync(tokio::runtime::Runtime),
    EpollLoop(epoll_loop::Prepared),
    Threads(threads::Prepared),
}

/// Sets a worker up on the chosen backend, without starting it.
pub(crate) fn prepare(backend: Backend, ctx: &WorkerCtx) -> Result<Prepared<'_>, FetchError> {
    Ok(match backend.kind {
        BackendKind::UringLoop => {
            Prepared::UringLoop(Box::new(uring_loop::prepare(ctx, backend.uring_profile)?))
        }
        BackendKind::UringAsync => Prepared::UringAsync(uring_async::runtime(ctx.connections)?),
        BackendKind::EpollAsync => Prepared::EpollAsync(epoll_async::runtime()?),
        BackendKind::EpollLoop => Prepared::EpollLoop(epoll_loop::prepare(ctx)?),
        BackendKind::Threads => Prepared::Threads(threads::prepare(ctx)?),
    })
}

impl Prepared<'_> {
    /// Runs the worker's sessions to the end of the plan, reporting to `sink`.
    pub(crate) fn run<S: Sink + Send + 'static>(
        self,
        ctx: &WorkerCtx,
        sink: S,
    ) -> Result<S, FetchError> {
        match self {
            Prepared::UringLoop(p) => p.run(sink),
            Prepared::UringAsync(rt) => Ok(uring_async::run(&rt, ctx.clone(), sink)),
            Prepared::EpollAsync(rt) => Ok(epoll_async::run(&rt, ctx.clone(), sink)),
            Prepared::EpollLoop(p) => p.run(ctx, sink),
            Prepared::Threads(p) => p.run(ctx, sink),
        }
    }
}

/// A TCP socket for `peer`, bound to source address `ip` with the port left
/// to connect time (`IP_BIND_ADDRESS_NO_PORT`), so one source address can
/// reach many destinations and `--bind` ranges multiply the usable ports.
pub(crate) fn bound_socket(peer: SocketAddr, ip: IpAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::AsRawFd;
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    if ip.is_ipv4() {
        let one: libc::c_int = 1;
        // SAFETY: the descriptor is a live socket owned by `socket`, and the
        // option value points to a c_int of the size we pass.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // Without the option binding still works, it just reserves ports early.
        let _ = rc;
    }
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    Ok(socket)
}

/// A socket bound to `ip` (port chosen at connect time, so one source address
/// serves many destinations) with a non-blocking connect under way.
pub(crate) fn connect_bound(addr: SocketAddr, ip: IpAddr) -> std::io::Result<std::net::TcpStream> {
    let socket = bound_socket(addr, ip)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// Writes a session's parting bytes ([`crate::session::Session::take_parting`],
/// an HTTP/2 GOAWAY) on socket `fd` once, without waiting, right before
/// it closes: best effort, so an error (a full buffer, a reset) is ignored.
pub(crate) fn part(fd: std::os::fd::BorrowedFd<'_>, bytes: &[u8]) {
    let _ =
        socket2::SockRef::from(&fd).send_with_flags(bytes, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
}

/// Performs a session's [`Want::Offload`](crate::session::Want::Offload):
/// installs the keys it holds on socket `fd` and reports how it went.
pub(crate) fn offload<S: Sink>(
    session: &mut crate::session::Session,
    ctx: &WorkerCtx,
    sink: &mut S,
    fd: std::os::fd::RawFd,
    now: std::time::Instant,
) {
    let result = match session.offload() {
        Some((dir, info)) => crate::ktls::install(fd, dir, info),
        None => return,
    };
    session.on_offloaded(ctx, sink, result, now);
}

/// A receive on socket `fd` failed with `error`. Under kernel TLS an
/// `EIO` means a record that is not application data waits (a session
/// ticket, an alert): it is read with its type and given to the session.
pub(crate) fn recv_failed<S: Sink>(
    session: &mut crate::session::Session,
    ctx: &WorkerCtx,
    sink: &mut S,
    fd: std::os::fd::RawFd,
    error: &std::io::Error,
    now: std::time::Instant,
) {
    if error.raw_os_error() == Some(libc::EIO) && session.kernel_rx() {
        match crate::ktls::read_record(fd) {
            // The peer closed right after.
            Ok((_, payload)) if payload.is_empty() => session.on_eof(ctx, sink, now),
            Ok((kind, payload)) => session.on_tls_record(ctx, sink, kind, &payload, now),
            Err(e) => session.on_io_error(ctx, sink, &e, now),
        }
        return;
    }
    session.on_io_error(ctx, sink, error, now);
}
