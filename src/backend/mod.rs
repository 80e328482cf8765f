//! The I/O models, one file each, behind one worker contract.
//!
//! A backend does I/O and nothing else. A load worker gets a [`WorkerCtx`]:
//! its share of the connections, the shared [`Plan`] it asks for tickets, and
//! the encoded targets; it returns the [`Recorder`] it filled. It never
//! decides when to stop, how fast to go, how to parse HTTP or how to count.

pub mod epoll_async;
pub mod epoll_loop;
mod exchange;
mod tasks;
pub mod threads;
pub mod uring_async;
pub mod uring_loop;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::error::FetchError;
use crate::http::Response;
use crate::plan::Plan;
use crate::stats::Recorder;
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
    /// Requests written at once per connection (`--pipeline`, uring-loop only).
    pub pipeline: usize,
    /// io_uring feature set for `uring-loop` (`--uring-profile`).
    pub uring_profile: uring_loop::ring::Profile,
}

impl Default for ConnOptions {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(30)),
            connect_timeout: Some(Duration::from_secs(10)),
            keep_alive: true,
            bind: Vec::new(),
            pipeline: 1,
            uring_profile: uring_loop::ring::Profile::Auto,
        }
    }
}

/// Holds the workers until all of them are set up, so that setup (rings,
/// runtimes, a thousand threads) is not measured as part of the run.
#[derive(Debug, Default)]
pub struct StartGate {
    state: std::sync::Mutex<(usize, bool)>,
    cv: std::sync::Condvar,
}

impl StartGate {
    /// A worker is ready; blocks until the runner opens the gate.
    pub fn ready_and_wait(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 += 1;
        self.cv.notify_all();
        while !st.1 {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until `workers` are ready, then lets them all go.
    pub fn open_when_ready(&self, workers: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.0 < workers {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.1 = true;
        self.cv.notify_all();
    }
}

/// Live counters the progress bar reads while workers run.
#[derive(Debug, Default)]
pub struct Live {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

/// Everything one load worker thread needs.
#[derive(Debug, Clone)]
pub struct WorkerCtx {
    /// 0-based worker index (also picks this worker's `--bind` addresses).
    pub index: usize,
    /// Connections this worker owns.
    pub connections: usize,
    /// Which `--bind` address the run's next connection takes.
    pub bind_cursor: Arc<std::sync::atomic::AtomicUsize>,
    pub plan: Arc<Plan>,
    pub targets: Arc<Vec<Target>>,
    pub conn: Arc<ConnOptions>,
    pub live: Arc<Live>,
    pub gate: Arc<StartGate>,
}

impl WorkerCtx {
    /// The target of ticket `seq`: URLs are used round-robin.
    #[inline]
    pub fn target(&self, seq: u64) -> &Target {
        &self.targets[(seq % self.targets.len() as u64) as usize]
    }

    /// Every backend calls this exactly once, after its setup (ring,
    /// runtime, threads) and before its first ticket, whether the setup
    /// worked or not: the run's clock starts when every worker is ready.
    /// Nothing may ask the plan for its start (or a ticket) before this
    /// returns, or the clock would start during setup.
    pub fn ready(&self) {
        self.gate.ready_and_wait();
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

/// A fetched response with its raw head and decoded body (for `get`).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub response: Response,
    pub head: Vec<u8>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

/// Runs one load worker to completion on the chosen backend.
pub fn run_worker(kind: BackendKind, ctx: WorkerCtx) -> Result<Recorder, FetchError> {
    match kind {
        BackendKind::UringLoop => uring_loop::run_worker(ctx),
        BackendKind::UringAsync => uring_async::run_worker(ctx),
        BackendKind::EpollAsync => epoll_async::run_worker(ctx),
        BackendKind::EpollLoop => epoll_loop::run_worker(ctx),
        BackendKind::Threads => threads::run_worker(ctx),
    }
}

/// Fetches every target concurrently, one connection each; results in target order.
pub fn fetch_all(
    kind: BackendKind,
    targets: &[Target],
    conn: &ConnOptions,
) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
    match kind {
        BackendKind::UringLoop => uring_loop::fetch_all(targets, conn),
        BackendKind::UringAsync => uring_async::fetch_all(targets, conn),
        BackendKind::EpollAsync => epoll_async::fetch_all(targets, conn),
        BackendKind::EpollLoop => epoll_loop::fetch_all(targets, conn),
        BackendKind::Threads => Ok(threads::fetch_all(targets, conn)),
    }
}

/// The error `get` reports for a response followed by bytes it did not frame.
pub(crate) fn trailing_error(peer: SocketAddr, trailing: usize) -> FetchError {
    FetchError::new(
        crate::error::ErrorKind::BadResponse,
        format!(
            "bad response from {peer}: {trailing} bytes after the end of the response (body longer than its Content-Length?)"
        ),
    )
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
