//! Readiness model, hand-written: one mio event loop per worker thread.
//!
//! This is the article's selectors client done right, and the baseline that
//! shows what the futures backends hide: each connection slot is a
//! [`Session`] driven by edge-triggered epoll events, and every deadline is
//! an entry in one timer heap whose earliest entry bounds the `epoll_wait`.
//!
//! Invariants:
//! - A slot's token is its slab index with a generation in the high 32 bits;
//!   the generation changes with every new socket, so an event for a socket
//!   that was closed (even one reported in the same batch) is ignored.
//! - Edges are never lost: a socket is registered once for both directions,
//!   a readable edge is remembered (`readable`) whatever the session is
//!   doing, and is only forgotten when a read comes back short or
//!   WouldBlock, or, once an event reported the peer's close or an error,
//!   only at EOF or WouldBlock (the close queued behind the data gets no
//!   edge of its own). Writes go on until WouldBlock.
//! - An idle keep-alive connection that an event marked readable or closed
//!   is read before its next request, so the session sees what came on it
//!   (a late `408`, the server's close) and does not reuse it.
//! - A slot has at most one live timer entry (`armed`); an entry that fires
//!   early finds nothing due and re-arms, and the heap is compacted if
//!   stale entries pile up.

mod io;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use self::io::{Read, connect_finished, read_some, start_connect, write_some};
use super::WorkerCtx;
use crate::error::{ErrorKind, FetchError};
use crate::session::{Session, Sink, Want};

/// Receive buffer of the loop (one per worker: every read is parsed at once).
const READ_BUF: usize = 16 * 1024;
/// The token of the waker that `plan.cancel()` wakes (no slot has it: a
/// slot's index is below 2^32).
const WAKE: Token = Token(usize::MAX);

// Tokens carry a generation in their high 32 bits.
const _: () = assert!(usize::BITS >= 64);

fn token(index: usize, generation: u32) -> Token {
    Token(index | (generation as usize) << 32)
}

fn untoken(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

fn poll_error(e: &std::io::Error) -> FetchError {
    FetchError::new(ErrorKind::Other, format!("epoll failed: {e}"))
}

/// One connection slot of the loop.
struct Slot {
    session: Session,
    generation: u32,
    stream: Option<TcpStream>,
    /// A readable edge (or error) came that no read has consumed yet.
    readable: bool,
    /// An event reported this socket's peer closed or failed: short reads
    /// no longer mean drained (see `read_some`).
    peer_closed: bool,
    /// An event came for the connecting socket: look whether it connected.
    /// `Some(true)`: the event says so already (writable, no error).
    connect_event: Option<bool>,
    /// The slot holds a connect turn.
    turn: bool,
    /// The slot waits for a turn: it is on the loop's wait list (once).
    waiting: bool,
    /// Deadline of this slot's live timer entry.
    armed: Option<Instant>,
    done: bool,
}

impl Slot {
    fn new(collect: bool, pipeline: usize) -> Self {
        Self {
            session: Session::new(collect, pipeline),
            generation: 0,
            stream: None,
            readable: false,
            peer_closed: false,
            connect_event: None,
            turn: false,
            waiting: false,
            armed: None,
            done: false,
        }
    }
}

/// A worker's epoll instance, set up and waiting for the run.
pub(crate) struct Prepared {
    poll: Poll,
}

/// Makes the worker's epoll instance, with a waker the plan's cancel wakes.
pub(crate) fn prepare(ctx: &WorkerCtx) -> Result<Prepared, FetchError> {
    let poll = Poll::new().map_err(|e| poll_error(&e))?;
    let waker = mio::Waker::new(poll.registry(), WAKE).map_err(|e| poll_error(&e))?;
    ctx.plan.on_cancel(Box::new(move || {
        let _ = waker.wake();
    }));
    Ok(Prepared { poll })
}

/// One worker thread's event loop.
struct EventLoop<'a, S> {
    ctx: &'a WorkerCtx,
    sink: S,
    poll: Poll,
    slots: Vec<Slot>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Slots waiting for a connect turn.
    waiting_turn: Vec<usize>,
    /// Slots to drive once the events at hand are handled (one got a turn).
    ready: Vec<usize>,
    buf: Vec<u8>,
    finished: usize,
}

impl Prepared {
    /// Runs the worker's sessions to the end of the plan.
    pub(crate) fn run<S: Sink>(self, ctx: &WorkerCtx, sink: S) -> Result<S, FetchError> {
        let n = ctx.connections;
        let mut events = Events::with_capacity(n.clamp(64, 1024));
        let mut lp = EventLoop {
            ctx,
            sink,
            poll: self.poll,
            slots: (0..n)
                .map(|_| Slot::new(S::COLLECT, ctx.conn.pipeline))
                .collect(),
            timers: BinaryHeap::with_capacity(2 * n + 64),
            waiting_turn: Vec::new(),
            ready: Vec::new(),
            buf: vec![0; READ_BUF],
            finished: 0,
        };
        let result = lp.run(&mut events);
        lp.sink.ended(Instant::now());
        result.map(|()| lp.sink)
    }
}

impl<S: Sink> EventLoop<'_, S> {
    fn run(&mut self, events: &mut Events) -> Result<(), FetchError> {
        self.ready = (0..self.slots.len()).rev().collect();
        loop {
            while let Some(i) = self.ready.pop() {
                self.drive(i);
            }
            let now = Instant::now();
            if self.ctx.plan.is_over(now) {
                for slot in &mut self.slots {
                    slot.session.cut_off(&mut self.sink, now);
                    slot.stream = None;
                }
                return Ok(());
            }
            if self.finished == self.slots.len() {
                return Ok(());
            }
            if let Err(e) = self.poll.poll(events, self.poll_timeout(now)) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(poll_error(&e));
            }
            for event in events.iter() {
                self.on_event(event);
            }
            self.fire_timers(Instant::now());
        }
    }

    /// Until the earliest timer or the run's deadline (Ctrl-C wakes the
    /// waker); no bound if there is neither.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let until = match (timer, self.ctx.plan.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        until.map(|u| u.saturating_duration_since(now))
    }

    fn on_event(&mut self, event: &mio::event::Event) {
        if event.token() == WAKE {
            // The loop sees the plan cancelled.
            return;
        }
        let (i, generation) = untoken(event.token());
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.generation != generation || slot.stream.is_none() {
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            slot.readable = true;
        }
        slot.peer_closed |= event.is_read_closed() || event.is_error();
        if slot.session.want() == Want::Connecting {
            // Writable without an error on a connecting socket means
            // connected (tcp_poll reports no EPOLLOUT in SYN_SENT): that
            // spares asking the socket, two system calls per connection.
            let connected = event.is_writable() && !event.is_error() && !event.is_write_closed();
            slot.connect_event = Some(connected);
        }
        self.drive(i);
    }

    /// Performs what slot `i`'s session wants, feeding back what happened,
    /// until it waits for an event, a timer or a connect turn.
    fn drive(&mut self, i: usize) {
        let ctx = self.ctx;
        let mut closed_now = false;
        loop {
            let slot = &mut self.slots[i];
            if slot.session.take_close() {
                closed_now = true;
                if let (Some(bytes), Some(stream)) = (slot.session.take_parting(), &slot.stream) {
                    super::part(std::os::fd::AsFd::as_fd(stream), &bytes);
                }
                slot.stream = None;
                slot.readable = false;
                slot.peer_closed = false;
            }
            let want = slot.session.want();
            if slot.turn && want != Want::Connecting {
                slot.turn = false;
                self.give_back_turn();
            }
            let slot = &mut self.slots[i];
            let now = Instant::now();
            if matches!(want, Want::Start | Want::Wait(_))
                && slot.stream.is_some()
                && (slot.readable || slot.peer_closed)
            {
                // What came on the idle connection (a late `408`, the
                // server's close) goes to the session, which will not
                // reuse it.
                self.read(i, now);
                continue;
            }
            match want {
                Want::Done => {
                    if !slot.done {
                        slot.done = true;
                        self.finished += 1;
                    }
                    return;
                }
                Want::Start if closed_now => {
                    // A slot whose connection just closed opens its next
                    // one after the events at hand, as this loop did before
                    // the session: a connect(2) at once, between the other
                    // connections' reads, cost about 8% more CPU per new
                    // connection (bench/README.md).
                    self.ready.push(i);
                    return;
                }
                Want::Start => slot.session.start(ctx, &mut self.sink, now),
                Want::Wait(_) => break,
                Want::Connect => {
                    if !ctx.turns.try_take() {
                        if !slot.waiting {
                            slot.waiting = true;
                            self.waiting_turn.push(i);
                        }
                        return;
                    }
                    // Its entry on the wait list, if any, is skipped.
                    slot.waiting = false;
                    slot.turn = true;
                    let (addr, bind) = slot.session.connect_started(ctx, now);
                    if let Err(e) = self.open(i, addr, bind) {
                        let slot = &mut self.slots[i];
                        slot.session.on_connect_error(ctx, &mut self.sink, &e, now);
                    }
                }
                Want::Connecting => {
                    let Some(connected) = slot.connect_event.take() else {
                        break;
                    };
                    let status = match (&slot.stream, connected) {
                        (_, true) => Ok(true),
                        (Some(stream), false) => connect_finished(stream),
                        (None, false) => Ok(false),
                    };
                    match status {
                        Ok(false) => break,
                        Ok(true) => slot.session.on_connected(ctx, &mut self.sink, now),
                        Err(e) => slot.session.on_connect_error(ctx, &mut self.sink, &e, now),
                    }
                }
                Want::Exchange { send: true } => {
                    let Some(stream) = slot.stream.as_mut() else {
                        break;
                    };
                    match write_some(stream, slot.session.to_send(ctx)) {
                        Ok(0) => break,
                        Ok(n) => slot.session.on_sent(ctx, &mut self.sink, n),
                        Err(e) => slot.session.on_io_error(ctx, &mut self.sink, &e, now),
                    }
                }
                Want::Exchange { send: false } => {
                    if !slot.readable {
                        break;
                    }
                    self.read(i, now);
                }
                Want::Offload => {
                    let Some(stream) = slot.stream.as_ref() else {
                        break;
                    };
                    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
                    crate::backend::offload(&mut slot.session, ctx, &mut self.sink, fd, now);
                }
            }
        }
        self.arm(i);
    }

    /// Opens slot `i`'s new socket and registers it for both directions.
    fn open(
        &mut self,
        i: usize,
        addr: std::net::SocketAddr,
        bind: Option<std::net::IpAddr>,
    ) -> std::io::Result<()> {
        let slot = &mut self.slots[i];
        let mut stream = start_connect(addr, bind)?;
        let generation = slot.generation.wrapping_add(1);
        self.poll.registry().register(
            &mut stream,
            token(i, generation),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        slot.generation = generation;
        slot.stream = Some(stream);
        slot.readable = false;
        slot.peer_closed = false;
        slot.connect_event = None;
        Ok(())
    }

    /// One read of slot `i`'s socket, fed to its session.
    fn read(&mut self, i: usize, now: Instant) {
        let ctx = self.ctx;
        let slot = &mut self.slots[i];
        let Some(stream) = slot.stream.as_mut() else {
            slot.readable = false;
            return;
        };
        match read_some(stream, &mut self.buf) {
            Read::Data(n) => {
                // A short read emptied the socket, unless a close is queued
                // behind the data (it gets no edge of its own).
                slot.readable = n == self.buf.len() || slot.peer_closed;
                let data = &self.buf[..n];
                slot.session.on_recv(ctx, &mut self.sink, data, now);
            }
            Read::Eof => slot.session.on_eof(ctx, &mut self.sink, now),
            Read::Drained => slot.readable = false,
            Read::Error(e) => {
                let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
                crate::backend::recv_failed(&mut slot.session, ctx, &mut self.sink, fd, &e, now);
            }
        }
    }

    /// A connect turn came back: the first slot on the wait list that still
    /// waits gets driven (entries of slots that got a turn some other way
    /// are dropped). If another slot takes the turn first, it waits again,
    /// and that slot's turn comes back in its time.
    fn give_back_turn(&mut self) {
        self.ctx.turns.give_back();
        while let Some(j) = self.waiting_turn.pop() {
            if std::mem::take(&mut self.slots[j].waiting) {
                self.ready.push(j);
                return;
            }
        }
    }

    /// Makes sure a timer entry fires no later than the session's deadline.
    fn arm(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(at) = slot.session.deadline() else {
            return;
        };
        if slot.armed.is_some_and(|a| a <= at) {
            return;
        }
        slot.armed = Some(at);
        self.timers.push(Reverse((at, i)));
        if self.timers.len() > 4 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.timers
                .retain(|Reverse((at, i))| slots.get(*i).is_some_and(|s| s.armed == Some(*at)));
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            if slot.armed != Some(at) {
                continue;
            }
            slot.armed = None;
            slot.session.on_timer(self.ctx, &mut self.sink, now);
            self.drive(i);
        }
    }
}
