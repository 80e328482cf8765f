//! The demo server: the article's `/foo` and `/bar` after a delay, plus a few
//! routes useful for load tests. It runs on io_uring (tokio-uring, one ring
//! per thread) or, where io_uring is unavailable, on epoll (tokio, one
//! runtime per thread): one connection loop, generic over the engine
//! ([`io`]), so the fallback answers exactly as the io_uring server does.
//! Each thread has its own `SO_REUSEPORT` listeners.
//!
//! Why this shape: a tokio-uring runtime is single-threaded (tasks are
//! `!Send`, spawned with `spawn_local`), so using several cores means several
//! independent runtimes. Giving each its own `SO_REUSEPORT` listeners lets
//! the kernel spread incoming connections across them with no shared accept
//! queue and no cross-thread hand-off; [`listen`] says how many and why, and
//! how an address another process holds is refused.
//!
//! Whether io_uring is usable is asked of the kernel before any thread
//! starts: a ring is set up and a no-op submitted and waited for
//! ([`crate::doctor::probe::usable`]), since a seccomp filter may allow
//! `io_uring_setup` and deny `io_uring_enter`, and then a server would
//! listen and never answer.
//!
//! Layout: [`routes`] chooses an answer (pure), [`request`] routes heads
//! that [`crate::http::server`] parses (pure), [`conn`] runs one connection
//! (and hands one that speaks HTTP/2 to [`h2`]: h2c with prior knowledge,
//! or h2 by ALPN under TLS, from the same routes),
//! [`reaper`] closes finished ones behind the answers, [`uring`] and
//! [`epoll`] are the engines; [`tls`] runs TLS over either engine's stream
//! and [`certs`] makes its configuration; this file owns threads and
//! shutdown.
//!
//! HTTPS (`serve --tls`, [`ServeOptions::tls`]) wraps each accepted stream
//! in a [`tls::TlsStream`] and runs the same connection loop over it: the
//! accept loop and the loop are generic over the stream, so plain
//! connections are served by exactly the code they were before.
//!
//! Shutdown: each thread's runtime runs until a shared `watch` channel
//! flips. When [`ServerHandle::shutdown`] flips it, `block_on` returns and
//! dropping the runtime drops every task, accept loops and connections
//! alike; on io_uring the driver cancels all in-flight operations
//! (including reads on idle connections) and closes their fds. So shutdown
//! does not wait for clients, only for the kernel to acknowledge the
//! cancellations.

mod certs;
mod conn;
mod epoll;
mod h2;
mod io;
mod listen;
mod reaper;
mod request;
mod routes;
#[cfg(test)]
mod tests;
mod tls;
mod uring;

pub use certs::{
    CertFile, LOCAL_NAMES, SelfSigned, config_from_files, config_from_pem, self_signed,
};
/// The streams an HTTP/2 client may have open on one connection
/// (`SETTINGS_MAX_CONCURRENT_STREAMS`).
pub(crate) use h2::codec::MAX_STREAMS as H2_MAX_STREAMS;

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::doctor::probe;
use crate::error::UringSetupCause;
use conn::ConnConfig;
use io::{Io, Stream};
use reaper::Reaper;
use tls::TlsStream;

/// Accept operations kept in flight per listener, so that a burst of
/// connects is not drained strictly one executor round trip at a time.
/// (1, 4 and 16 gave the same 10,000-connection figures within noise.
/// Draining the queue with non-blocking accepts after each completion made
/// them slower: with room in the kernel's queue, accepting lazily leaves the
/// CPU to the connects; see bench/README.md.)
const ACCEPTS_IN_FLIGHT: usize = 4;

/// Most server threads: each has a runtime and listeners of its own, so
/// more is a typo, not a machine.
const MAX_THREADS: usize = 1024;

/// After an accept error such as EMFILE, wait this long before retrying, so
/// fd exhaustion does not turn the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Which I/O engine the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// io_uring (tokio-uring); refuses to start where io_uring is unusable.
    Uring,
    /// epoll (tokio): the readiness model, wherever Linux runs.
    Epoll,
    /// io_uring where it is usable, else epoll.
    Auto,
}

impl Engine {
    /// How the engine is named in messages.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Uring => "io_uring",
            Engine::Epoll => "epoll",
            Engine::Auto => "auto",
        }
    }
}

/// How the demo server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Delay before `/foo` and `/bar` answer.
    pub delay: Duration,
    /// Threads, each with its own runtime (a ring on io_uring) and
    /// listeners (0 is treated as 1, more than 1024 refused).
    pub threads: usize,
    /// Largest request head accepted, within
    /// `http::server::MIN_HEAD_LIMIT..=MAX_HEAD_LIMIT` (1 KiB to
    /// 1 MiB; `start` refuses others); larger gets 431, or 414 when the
    /// request line alone is larger.
    pub max_head_bytes: usize,
    /// A connection idle (or dribbling its head) this long is closed. A
    /// request body gets this long to start and must then average 500
    /// bytes/s; each write of up to 64 KiB gets this long too, so a peer
    /// that stops reading an answer is dropped.
    pub idle_timeout: Duration,
    pub engine: Engine,
    /// HTTPS: every connection speaks TLS with this configuration (see
    /// `certs::config`); `None` is plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServeOptions {
    /// The server `demo`, `compare` and `doctor --self-test` start
    /// in-process: a free loopback port, `/foo` and `/bar` after `delay`,
    /// one thread per core, 16 KiB heads, a 30 s idle timeout, and epoll
    /// where io_uring is unusable (their point is the client's I/O model;
    /// [`ServerHandle::fallback`] says why the server's is not io_uring).
    pub fn in_process(delay: Duration) -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            delay,
            threads: crate::runner::default_threads(),
            max_head_bytes: 16 * 1024,
            idle_timeout: Duration::from_secs(30),
            engine: Engine::Auto,
            tls: None,
        }
    }

    /// [`ServeOptions::in_process`] over HTTPS, with a self-signed
    /// certificate for `localhost`, `127.0.0.1` and `::1` made now; also
    /// returns that certificate in PEM, which a client must trust.
    pub fn in_process_tls(delay: Duration) -> std::io::Result<(Self, String)> {
        let made = self_signed(&[]).map_err(std::io::Error::other)?;
        let tls = made.config().map_err(std::io::Error::other)?;
        Ok((
            ServeOptions {
                tls: Some(tls),
                ..ServeOptions::in_process(delay)
            },
            made.cert_pem,
        ))
    }
}

impl Default for ServeOptions {
    /// The article's setup: 127.0.0.1:5555, one-second delay; one thread per
    /// core, 8 KiB heads, 60 s idle timeout, on io_uring.
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 5555)),
            delay: Duration::from_secs(1),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_head_bytes: 8 * 1024,
            idle_timeout: Duration::from_secs(60),
            engine: Engine::Uring,
            tls: None,
        }
    }
}

/// A running server; dropping it does not stop it, call `shutdown`.
pub struct ServerHandle {
    pub addr: SocketAddr,
    /// Whether it serves HTTPS.
    pub tls: bool,
    /// The engine it runs on: `Uring` or `Epoll`, never `Auto`.
    pub engine: Engine,
    /// With `Engine::Auto` on epoll: why not io_uring (cause and errno).
    pub fallback: Option<String>,
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
/// reached its accept loop. An error creating a runtime in any thread stops
/// the others and is returned. With `Engine::Uring` an unusable io_uring is
/// an error that names the cause and the way out; with `Engine::Auto` it
/// means epoll.
pub fn start(opts: ServeOptions) -> std::io::Result<ServerHandle> {
    crate::http::server::check_head_limit(opts.max_head_bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("max_head_bytes: {e}"),
        )
    })?;
    if opts.threads > MAX_THREADS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} threads: at most {MAX_THREADS} (each has its own runtime and listeners)",
                opts.threads
            ),
        ));
    }
    let (engine, fallback) = match opts.engine {
        Engine::Epoll => (Engine::Epoll, None),
        wanted => match probe::usable() {
            Ok(()) => (Engine::Uring, None),
            Err(u) if wanted == Engine::Auto => {
                let cause = UringSetupCause::of(&u.error);
                (
                    Engine::Epoll,
                    Some(format!("io_uring is unavailable: {} ({u})", cause.why)),
                )
            }
            Err(u) => return Err(uring_unavailable(&u)),
        },
    };
    let mut handle = match engine {
        Engine::Uring => start_on::<uring::Uring>(&opts),
        _ => start_on::<epoll::Epoll>(&opts),
    }?;
    handle.engine = engine;
    handle.fallback = fallback;
    Ok(handle)
}

/// Why io_uring cannot serve here and what to do, as `get` and `load` say
/// it, plus the server's own way out.
fn uring_unavailable(u: &probe::Unusable) -> std::io::Error {
    let cause = UringSetupCause::of(&u.error);
    std::io::Error::new(
        u.error.kind(),
        format!(
            "io_uring is unavailable: {} ({u}); {}; or serve on epoll: --engine epoll",
            cause.why, cause.fix
        ),
    )
}

fn start_on<E: Io>(opts: &ServeOptions) -> std::io::Result<ServerHandle> {
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
    let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
    let mut handle = ServerHandle {
        addr,
        tls: opts.tls.is_some(),
        engine: opts.engine,
        fallback: None,
        stop,
        threads: Vec::with_capacity(n),
    };
    for (i, listeners) in listeners.into_iter().enumerate() {
        let cfg = cfg.clone();
        let tls = opts.tls.clone();
        let stop_rx = stop_rx.clone();
        let ready_tx = ready_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("uringfetch-server-{i}"))
            .spawn(move || server_thread::<E>(listeners, cfg, tls, stop_rx, ready_tx));
        match spawned {
            Ok(t) => handle.threads.push(t),
            Err(e) => {
                handle.shutdown();
                return Err(e);
            }
        }
    }
    drop(ready_tx);
    for _ in 0..n {
        let result = ready_rx.recv().unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "server thread exited before it was ready",
            ))
        });
        if let Err(e) = result {
            handle.shutdown();
            return Err(e);
        }
    }
    Ok(handle)
}

/// Starts the server, prints where it listens (and `note`, if any, on the
/// next line), waits for Ctrl-C (SIGINT) or SIGTERM, shuts down and prints
/// `stopped`.
pub fn run_foreground(opts: ServeOptions, note: Option<&str>) -> anyhow::Result<()> {
    // Signal handlers are installed before the server starts, so a signal
    // sent as soon as the "listening" line appears is not lost.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut sigint, mut sigterm) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        std::io::Result::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;

    let delay = opts.delay;
    let handle = start(opts)?;
    if let Some(why) = &handle.fallback {
        crate::say!("uringfetch: {why}; serving on epoll instead");
    }
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "listening on {}://{} ({} thread{} on {}, delay {})",
            if handle.tls { "https" } else { "http" },
            handle.addr,
            handle.threads(),
            if handle.threads() == 1 { "" } else { "s" },
            handle.engine.name(),
            crate::error::fmt_duration(delay)
        )?;
        if let Some(note) = note {
            writeln!(stdout, "{note}")?;
        }
        stdout.flush()?;
    }

    rt.block_on(async {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    });
    handle.shutdown();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "stopped")?;
    stdout.flush()?;
    Ok(())
}

/// Body of one server thread: build its runtime, report readiness, accept
/// until told to stop. The runtime (and with it every connection) is
/// dropped when this returns.
fn server_thread<E: Io>(
    listeners: Vec<std::net::TcpListener>,
    cfg: ConnConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::Sender<std::io::Result<()>>,
) {
    let rt = match E::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    E::block_on(&rt, async move {
        let mut ours = Vec::with_capacity(listeners.len());
        for l in listeners {
            match E::listener(l) {
                Ok(l) => ours.push(Rc::new(l)),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(()));
        drop(ready);
        let cfg = Rc::new(cfg);
        match tls {
            None => spawn_accept_loops::<E, E::Stream>(&ours, &cfg, Some),
            Some(tls) => spawn_accept_loops::<E, TlsStream<E::Stream>>(&ours, &cfg, move |s| {
                // Fails only for a configuration rustls would not have
                // built; the connection is closed.
                TlsStream::new(s, &tls).ok()
            }),
        }
        // `block_on` ends here, and dropping the runtime takes the accept
        // loops (and all connections) with it.
        stopped(&mut stop).await;
    });
}

/// Starts the thread's reaper and its accept loops, serving each accepted
/// stream as `wrap` makes it (the stream itself for plain HTTP).
fn spawn_accept_loops<E: Io, S: Stream>(
    listeners: &[Rc<E::Listener>],
    cfg: &Rc<ConnConfig>,
    wrap: impl Fn(E::Stream) -> Option<S> + 'static,
) {
    let reaper = Reaper::<S>::start();
    let wrap = Rc::new(wrap);
    for listener in listeners {
        for _ in 0..ACCEPTS_IN_FLIGHT {
            tokio::task::spawn_local(accept_loop::<E, S, _>(
                listener.clone(),
                cfg.clone(),
                reaper.clone(),
                wrap.clone(),
            ));
        }
    }
}

/// Accepts connections and spawns a task for each, for as long as the
/// runtime runs. Several run per listener, each with one accept in flight.
async fn accept_loop<E: Io, S: Stream, W: Fn(E::Stream) -> Option<S>>(
    listener: Rc<E::Listener>,
    cfg: Rc<ConnConfig>,
    reaper: Rc<Reaper<S>>,
    wrap: Rc<W>,
) {
    loop {
        match E::accept(&listener).await {
            Ok(stream) => {
                if let Some(stream) = wrap(stream) {
                    tokio::task::spawn_local(conn::serve(stream, cfg.clone(), reaper.clone()));
                }
            }
            // ECONNABORTED and friends concern one connection; EMFILE and
            // ENFILE clear when connections close. Either way keep serving,
            // after a short pause.
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
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
