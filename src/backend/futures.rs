//! The driver of the two futures backends: `uring-async` (tokio-uring,
//! completion model) and `epoll-async` (tokio, readiness model).
//!
//! One task per session performs what its session wants, one operation at
//! a time, each raced against the session's deadline and the end of the
//! run, and feeds back what happened. The two backends differ only in their
//! [`Transport`] (how a connection is opened, written, read and closed), so
//! comparing them measures the I/O model and nothing else.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::WorkerCtx;
use crate::session::{Session, Sink, Want};

/// Receive buffer per connection. Pages the kernel never writes to are never
/// resident, so 10,000 connections cost far less than 10,000 x this.
const READ_BUF: usize = 8 * 1024;
/// Receive buffer for `get`, which keeps whole bodies.
const FETCH_BUF: usize = 64 * 1024;

/// What an I/O model provides to the driver. Buffers pass by ownership (the
/// completion model lends them to the kernel).
pub(super) trait Transport: 'static {
    type Stream;

    /// Opens a connection, from source address `bind` if given.
    async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> std::io::Result<Self::Stream>;

    /// Writes some of `bytes`; how many the kernel took.
    async fn write(stream: &mut Self::Stream, bytes: Bytes) -> std::io::Result<usize>;

    /// Reads into `buf`, made with `vec![0; room]` and handed back each
    /// time: how many bytes came (0: the peer closed), and the buffer with
    /// them at its start.
    async fn read(stream: &mut Self::Stream, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>);

    /// What already came on an idle connection (a late `408`, the server's
    /// close), if the I/O model can tell without a system call: `None`
    /// when nothing came (or it cannot tell).
    fn idle_bytes(stream: &mut Self::Stream, buf: &mut [u8]) -> Option<std::io::Result<usize>>;

    /// Closes a connection now, even with an operation pending on it;
    /// first writes `parting` without waiting (see `Session::take_parting`).
    fn close(stream: Self::Stream, parting: Option<Vec<u8>>);

    /// Spawns a task on the worker thread's runtime.
    fn spawn<F: Future + 'static>(task: F) -> JoinHandle<F::Output>
    where
        F::Output: 'static;
}

/// State shared by one worker thread's session tasks.
struct Worker<S> {
    ctx: WorkerCtx,
    sink: RefCell<S>,
    stop: watch::Receiver<bool>,
}

/// How a raced operation ended.
enum Raced<T> {
    Done(T),
    /// The session's deadline passed first.
    Timer,
    /// The run ended first.
    Stop,
}

/// Runs `fut` until it ends, `deadline` passes or the run stops.
async fn race<T>(
    fut: impl Future<Output = T>,
    deadline: Option<Instant>,
    stop: &mut watch::Receiver<bool>,
) -> Raced<T> {
    let timer = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = stop.wait_for(|stopped| *stopped) => Raced::Stop,
        r = fut => Raced::Done(r),
        _ = timer => Raced::Timer,
    }
}

/// Runs one worker's sessions to the end of the plan; call it inside the
/// worker's runtime.
pub(super) async fn run<T: Transport, S: Sink + 'static>(ctx: WorkerCtx, sink: S) -> S {
    let (tx, rx) = watch::channel(false);
    let w = Rc::new(Worker {
        ctx,
        sink: RefCell::new(sink),
        stop: rx,
    });
    let tasks: Vec<_> = (0..w.ctx.connections)
        .map(|_| T::spawn(session_task::<T, S>(w.clone())))
        .collect();
    let cancelled = Arc::new(Notify::new());
    let notify = cancelled.clone();
    // A permit is stored if the run is cancelled before the watcher waits.
    w.ctx.plan.on_cancel(Box::new(move || notify.notify_one()));
    let watcher = T::spawn(watch_stop(w.ctx.clone(), tx, cancelled));
    for t in tasks {
        let _ = t.await;
    }
    watcher.abort();
    w.sink.borrow_mut().ended(Instant::now());
    drop(watcher);
    match Rc::try_unwrap(w) {
        Ok(w) => w.sink.into_inner(),
        // Every task has ended, so no other reference remains.
        Err(_) => unreachable!("session tasks outlived the worker"),
    }
}

/// One session, driven one operation at a time.
async fn session_task<T: Transport, S: Sink>(w: Rc<Worker<S>>) {
    let ctx = &w.ctx;
    let mut session = Session::new(S::COLLECT, ctx.conn.pipeline);
    let mut stream: Option<T::Stream> = None;
    let room = if S::COLLECT { FETCH_BUF } else { READ_BUF };
    // A read cut off by a timeout keeps its buffer: a new one is made.
    let mut buf: Option<Vec<u8>> = None;
    let mut stop = w.stop.clone();
    loop {
        if session.take_close()
            && let Some(s) = stream.take()
        {
            T::close(s, session.take_parting());
        }
        let want = session.want();
        let raced: Raced<()> = match want {
            Want::Done => break,
            Want::Start => {
                if !idle_seen::<T, S>(&w, &mut session, &mut stream, &mut buf, room) {
                    session.start(ctx, &mut *w.sink.borrow_mut(), Instant::now());
                }
                continue;
            }
            Want::Wait(at) => match race(std::future::pending::<()>(), Some(at), &mut stop).await {
                Raced::Stop => Raced::Stop,
                // Before the ticket reuses the connection.
                _ if idle_seen::<T, S>(&w, &mut session, &mut stream, &mut buf, room) => continue,
                _ => Raced::Timer,
            },
            Want::Connect => {
                // The request's --timeout starts with its connect turn.
                if let Raced::Stop = race(ctx.turns.take(), None, &mut stop).await {
                    session.cut_off(&mut *w.sink.borrow_mut(), Instant::now());
                    break;
                }
                let (addr, bind) = session.connect_started(ctx, Instant::now());
                let r = race(T::connect(addr, bind), session.deadline(), &mut stop).await;
                ctx.turns.give_back();
                match r {
                    Raced::Done(Ok(s)) => {
                        stream = Some(s);
                        session.on_connected(ctx, &mut *w.sink.borrow_mut(), Instant::now());
                        continue;
                    }
                    Raced::Done(Err(e)) => {
                        let mut sink = w.sink.borrow_mut();
                        session.on_connect_error(ctx, &mut *sink, &e, Instant::now());
                        continue;
                    }
                    Raced::Timer => Raced::Timer,
                    Raced::Stop => Raced::Stop,
                }
            }
            // A sequential driver finishes its connect before it asks again.
            Want::Connecting => Raced::Timer,
            // Not asked of a backend that cannot (`can_kernel_tls`).
            Want::Offload => {
                let e = std::io::Error::other("this backend does not use kernel TLS");
                let mut sink = w.sink.borrow_mut();
                session.on_offloaded(ctx, &mut *sink, Err(e), Instant::now());
                continue;
            }
            Want::Exchange { send } => {
                let Some(s) = stream.as_mut() else {
                    // Cannot happen: the session is connected when it exchanges.
                    session.cut_off(&mut *w.sink.borrow_mut(), Instant::now());
                    break;
                };
                if send {
                    let bytes = session.to_send_bytes(ctx);
                    match race(T::write(s, bytes), session.deadline(), &mut stop).await {
                        Raced::Done(r) => {
                            let mut sink = w.sink.borrow_mut();
                            match r {
                                Ok(0) => {
                                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                                    session.on_io_error(ctx, &mut *sink, &e, Instant::now());
                                }
                                Ok(n) => session.on_sent(ctx, &mut *sink, n),
                                Err(e) => session.on_io_error(ctx, &mut *sink, &e, Instant::now()),
                            }
                            continue;
                        }
                        other => other.map_none(),
                    }
                } else {
                    let owned = buf.take().unwrap_or_else(|| vec![0; room]);
                    match race(T::read(s, owned), session.deadline(), &mut stop).await {
                        Raced::Done((r, owned)) => {
                            let now = Instant::now();
                            let mut sink = w.sink.borrow_mut();
                            match r {
                                Ok(0) => session.on_eof(ctx, &mut *sink, now),
                                Ok(n) => {
                                    let data = owned.get(..n).unwrap_or_default();
                                    session.on_recv(ctx, &mut *sink, data, now);
                                }
                                Err(e) => session.on_io_error(ctx, &mut *sink, &e, now),
                            }
                            buf = Some(owned);
                            continue;
                        }
                        other => other.map_none(),
                    }
                }
            }
        };
        let now = Instant::now();
        let mut sink = w.sink.borrow_mut();
        match raced {
            Raced::Stop => {
                session.cut_off(&mut *sink, now);
                break;
            }
            _ => session.on_timer(ctx, &mut *sink, now),
        }
    }
    if let Some(s) = stream.take() {
        T::close(s, None);
    }
}

/// Feeds what already came on the session's idle connection, if anything
/// (see [`Transport::idle_bytes`]); whether something did.
fn idle_seen<T: Transport, S: Sink>(
    w: &Worker<S>,
    session: &mut Session,
    stream: &mut Option<T::Stream>,
    buf: &mut Option<Vec<u8>>,
    room: usize,
) -> bool {
    let Some(s) = stream.as_mut() else {
        return false;
    };
    let owned = buf.get_or_insert_with(|| vec![0; room]);
    let Some(r) = T::idle_bytes(s, owned) else {
        return false;
    };
    let (ctx, now) = (&w.ctx, Instant::now());
    let mut sink = w.sink.borrow_mut();
    match r {
        Ok(0) => session.on_eof(ctx, &mut *sink, now),
        Ok(n) => session.on_recv(ctx, &mut *sink, owned.get(..n).unwrap_or_default(), now),
        Err(e) => session.on_io_error(ctx, &mut *sink, &e, now),
    }
    true
}

impl<T> Raced<T> {
    /// A race that did not finish: its output is not needed.
    fn map_none(self) -> Raced<()> {
        match self {
            Raced::Done(_) => Raced::Done(()),
            Raced::Timer => Raced::Timer,
            Raced::Stop => Raced::Stop,
        }
    }
}

/// Tells every session task when the run is over: at the deadline, or
/// when the plan's cancel (Ctrl-C) notifies `cancelled`.
async fn watch_stop(ctx: WorkerCtx, tx: watch::Sender<bool>, cancelled: Arc<Notify>) {
    let deadline = async {
        match ctx.plan.deadline() {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cancelled.notified() => {}
        _ = deadline => {}
    }
    let _ = tx.send(true);
}
