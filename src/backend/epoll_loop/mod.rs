//! Readiness model, hand-written: one mio event loop per worker thread.
//!
//! This is the article's selectors client done right, and the baseline that
//! shows what the futures backends hide: each connection is a state machine
//! (idle, waiting for its ticket, connecting, writing, reading) driven by
//! edge-triggered epoll events, and every timeout is an entry in one timer
//! heap whose earliest deadline bounds the `epoll_wait`.
//!
//! Invariants:
//! - A slot's token is its slab index with a generation in the high 32 bits;
//!   the generation changes with every new socket, so an event for a socket
//!   that was closed (even one reported in the same batch) is ignored.
//! - Edges are never lost: a socket is registered once for both directions,
//!   a readable edge is remembered (`readable`) whatever the slot is doing,
//!   and is only forgotten when a read comes back short or WouldBlock, or,
//!   once an event reported the peer's close or an error, only at EOF or
//!   WouldBlock (the close queued behind the data gets no edge of its own).
//!   Writes go on until WouldBlock; a connected socket is written at once.
//! - A slot has at most one live timer entry (`armed`); an entry whose
//!   deadline no longer matches is stale and skipped, and the heap is
//!   compacted if stale entries pile up.
//! - Slots that finish a request go on a ready list processed by the loop,
//!   so a run of instant completions or failures never recurses.

mod fetch;
mod steps;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use self::steps::{
    ExchangeError, Exchanged, connect_finished, read_some, start_connect, write_some,
};
use super::WorkerCtx;
use super::exchange::SlotIo;
use crate::error::{ErrorKind, FetchError};
use crate::plan::Ticket;
use crate::stats::Recorder;

pub use self::fetch::fetch_all;

/// Receive buffer per connection.
const READ_BUF: usize = 8 * 1024;
/// Receive buffer for `get`, which keeps whole bodies anyway.
const FETCH_BUF: usize = 64 * 1024;
/// Longest wait in `epoll_wait`: Ctrl-C only flips a flag in the plan, so
/// the loop must look at it this often.
const TICK: Duration = Duration::from_millis(50);

// Tokens carry a generation in their high 32 bits.
const _: () = assert!(usize::BITS >= 64);

fn token(index: usize, generation: u32) -> Token {
    Token(index | (generation as usize) << 32)
}

fn untoken(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

fn poll_error(e: &io::Error) -> FetchError {
    FetchError::new(ErrorKind::Other, format!("epoll failed: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: on the ready list for its next ticket.
    Idle,
    /// Holding a ticket whose intended start is in the future.
    Waiting,
    Connecting,
    Writing,
    Reading,
    /// No more tickets.
    Done,
}

/// The request a slot is working on.
#[derive(Debug, Clone, Copy)]
struct Job {
    ticket: Ticket,
    /// Whole-request deadline (`--timeout`), set when the ticket is issued.
    deadline: Option<Instant>,
    connect_by: Option<Instant>,
    connect_started: Instant,
    sent_at: Instant,
    /// Request bytes already written.
    written: usize,
    attempt: u8,
    reused: bool,
}

/// One connection slot of the loop.
struct Slot {
    phase: Phase,
    generation: u32,
    conn: Option<(TcpStream, SocketAddr)>,
    io: SlotIo,
    ever_connected: bool,
    /// A readable edge (or error) came that no read has consumed yet.
    readable: bool,
    /// An event reported this socket's peer closed or failed: short reads
    /// no longer mean drained (see `read_some`).
    peer_closed: bool,
    job: Job,
    /// Deadline of this slot's live timer entry.
    armed: Option<Instant>,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Self {
            phase: Phase::Idle,
            generation: 0,
            conn: None,
            io: SlotIo::new(false, READ_BUF),
            ever_connected: false,
            readable: false,
            peer_closed: false,
            job: Job {
                ticket: Ticket {
                    seq: 0,
                    intended: now,
                },
                deadline: None,
                connect_by: None,
                connect_started: now,
                sent_at: now,
                written: 0,
                attempt: 0,
                reused: false,
            },
            armed: None,
        }
    }

    /// When this slot next needs the clock.
    fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting => Some(self.job.ticket.intended),
            Phase::Connecting => match (self.job.deadline, self.job.connect_by) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            Phase::Writing | Phase::Reading => self.job.deadline,
            Phase::Idle | Phase::Done => None,
        }
    }

    /// Whether a request is under way (counts as in flight if cut off).
    fn busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Connecting | Phase::Writing | Phase::Reading
        )
    }
}

/// One worker thread's event loop.
struct EventLoop {
    ctx: WorkerCtx,
    poll: Poll,
    slots: Slab<Slot>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Slots that want their next ticket.
    ready: Vec<usize>,
    rec: Recorder,
    finished: usize,
}

/// Runs one load worker thread's connections on its own epoll instance.
pub fn run_worker(ctx: WorkerCtx) -> Result<Recorder, FetchError> {
    let n = ctx.connections;
    let setup = Poll::new().map(|poll| {
        let now = Instant::now();
        let mut slots = Slab::with_capacity(n);
        for _ in 0..n {
            slots.insert(Slot::new(now));
        }
        (poll, slots, Events::with_capacity(n.clamp(64, 1024)))
    });
    ctx.ready();
    let (poll, slots, mut events) = setup.map_err(|e| poll_error(&e))?;
    let rec = Recorder::new(ctx.plan.start());
    let mut lp = EventLoop {
        ctx,
        poll,
        slots,
        timers: BinaryHeap::with_capacity(2 * n + 64),
        ready: (0..n).rev().collect(),
        rec,
        finished: 0,
    };
    let result = lp.run(&mut events);
    lp.rec.finished = Some(Instant::now());
    for (_, slot) in &lp.slots {
        lp.rec.bytes_read += slot.io.read;
        lp.rec.bytes_written += slot.io.written;
    }
    result.map(|()| lp.rec)
}

impl EventLoop {
    fn run(&mut self, events: &mut Events) -> Result<(), FetchError> {
        loop {
            while let Some(i) = self.ready.pop() {
                self.next(i);
            }
            let now = Instant::now();
            if self.ctx.plan.is_over(now) {
                self.cut_off();
                return Ok(());
            }
            if self.finished == self.slots.len() {
                return Ok(());
            }
            if let Err(e) = self.poll.poll(events, Some(self.poll_timeout(now))) {
                if e.kind() == io::ErrorKind::Interrupted {
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

    /// Until the earliest timer, the run's deadline, or one tick.
    fn poll_timeout(&self, now: Instant) -> Duration {
        let mut wait = TICK;
        if let Some(Reverse((at, _))) = self.timers.peek() {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if let Some(d) = self.ctx.plan.deadline() {
            wait = wait.min(d.saturating_duration_since(now));
        }
        wait
    }

    /// The run is over: requests under way count as in flight and close.
    fn cut_off(&mut self) {
        for (_, slot) in self.slots.iter_mut() {
            if slot.busy() {
                self.rec.in_flight += 1;
            }
            slot.conn = None;
            slot.phase = Phase::Done;
        }
    }

    /// Takes the slot's next ticket: waits for it, starts it, or retires the slot.
    fn next(&mut self, i: usize) {
        let Some(ticket) = self.ctx.plan.next_ticket() else {
            self.retire(i);
            return;
        };
        let now = Instant::now();
        self.slots[i].job.ticket = ticket;
        if ticket.intended > now {
            self.slots[i].phase = Phase::Waiting;
            self.arm(i);
        } else {
            self.issue(i, now);
        }
    }

    fn retire(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.phase != Phase::Done {
            slot.phase = Phase::Done;
            slot.conn = None;
            self.finished += 1;
        }
    }

    /// Starts the slot's ticket now, unless the run is over.
    fn issue(&mut self, i: usize, now: Instant) {
        if self.ctx.plan.is_over(now) {
            self.retire(i);
            return;
        }
        self.rec.issue();
        let job = &mut self.slots[i].job;
        job.deadline = self.ctx.conn.timeout.map(|t| now + t);
        job.attempt = 0;
        self.attempt(i, now);
    }

    /// Sends the request on the slot's connection, opening one if needed.
    fn attempt(&mut self, i: usize, now: Instant) {
        let addr = self.ctx.target(self.slots[i].job.ticket.seq).addr;
        let bind = self.ctx.bind_addr();
        let slot = &mut self.slots[i];
        let mut reused = matches!(&slot.conn, Some((_, peer)) if *peer == addr);
        if reused && (slot.readable || slot.peer_closed) && idle_conn_spoiled(slot) {
            // The server closed the idle connection or sent on it unasked
            // (a late `408`): those bytes are no answer to this request.
            // A fresh connection, as uring-loop's armed receive would see.
            reused = false;
        }
        slot.job.reused = reused;
        if reused {
            self.start_write(i, now);
            return;
        }
        slot.conn = None;
        let opened = start_connect(addr, bind).and_then(|mut stream| {
            let generation = slot.generation.wrapping_add(1);
            self.poll.registry().register(
                &mut stream,
                token(i, generation),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            slot.generation = generation;
            slot.readable = false;
            slot.peer_closed = false;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                slot.conn = Some((stream, addr));
                slot.phase = Phase::Connecting;
                slot.job.connect_started = now;
                slot.job.connect_by = self.ctx.conn.connect_timeout.map(|d| now + d);
                self.arm(i);
            }
            Err(e) => self.fail(
                i,
                ExchangeError {
                    error: FetchError::connect(&e, addr),
                    started: false,
                },
            ),
        }
    }

    fn on_event(&mut self, event: &mio::event::Event) {
        let (i, generation) = untoken(event.token());
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            slot.readable = true;
        }
        slot.peer_closed |= event.is_read_closed() || event.is_error();
        match slot.phase {
            Phase::Connecting => {
                // Writable without an error on a connecting socket means
                // connected (tcp_poll reports no EPOLLOUT in SYN_SENT).
                let connected =
                    event.is_writable() && !event.is_error() && !event.is_write_closed();
                self.on_connectable(i, connected);
            }
            Phase::Writing => self.write(i),
            Phase::Reading if slot.readable => self.read(i),
            Phase::Reading => {}
            // Idle connections need no events: a peer's close shows up in
            // the next request's write or read (and is retried there).
            Phase::Idle | Phase::Waiting | Phase::Done => {}
        }
    }

    /// `connected`: the event already says so, which spares two system
    /// calls per connection; otherwise ask the socket (mio's recipe).
    fn on_connectable(&mut self, i: usize, connected: bool) {
        let slot = &mut self.slots[i];
        let Some((stream, peer)) = &slot.conn else {
            return;
        };
        let status = if connected {
            Ok(true)
        } else {
            connect_finished(stream)
        };
        match status {
            Ok(false) => {}
            Ok(true) => {
                let now = Instant::now();
                let took = now.saturating_duration_since(slot.job.connect_started);
                self.rec.connected(took, slot.ever_connected);
                slot.ever_connected = true;
                self.start_write(i, now);
            }
            Err(e) => {
                let error = FetchError::connect(&e, *peer);
                self.fail(
                    i,
                    ExchangeError {
                        error,
                        started: false,
                    },
                );
            }
        }
    }

    fn start_write(&mut self, i: usize, now: Instant) {
        let slot = &mut self.slots[i];
        slot.job.sent_at = now;
        slot.job.written = 0;
        slot.phase = Phase::Writing;
        self.arm(i);
        self.write(i);
    }

    fn write(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let target = self.ctx.target(slot.job.ticket.seq);
        let Some((stream, peer)) = &mut slot.conn else {
            return;
        };
        match write_some(stream, &target.request, &mut slot.job.written, &mut slot.io) {
            Ok(false) => {}
            Ok(true) => {
                slot.phase = Phase::Reading;
                slot.io.parser.reset(target.head_request);
                // Bytes (or a close) whose edge came before the request was
                // all out would get no second edge: read them now.
                if slot.readable {
                    self.read(i);
                }
            }
            Err(e) => {
                let error = FetchError::io(&e, *peer);
                self.fail(
                    i,
                    ExchangeError {
                        error,
                        started: false,
                    },
                );
            }
        }
    }

    fn read(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some((stream, peer)) = &mut slot.conn else {
            return;
        };
        match read_some(stream, *peer, &mut slot.io, slot.peer_closed) {
            Ok(None) => slot.readable = false,
            Ok(Some(done)) => {
                // A close still queued behind this response gets no new edge.
                slot.readable = done.full || slot.peer_closed;
                self.complete(i, done);
            }
            Err(e) => self.fail(i, e),
        }
    }

    fn complete(&mut self, i: usize, done: Exchanged) {
        let now = Instant::now();
        let slot = &mut self.slots[i];
        if !(done.response.keep_alive && self.ctx.conn.keep_alive && done.trailing == 0) {
            slot.conn = None;
        }
        let origin = self
            .ctx
            .plan
            .latency_origin(&slot.job.ticket, slot.job.sent_at);
        self.rec.response(done.response.status, origin, now);
        self.ctx.live.completed.fetch_add(1, Ordering::Relaxed);
        slot.phase = Phase::Idle;
        self.ready.push(i);
    }

    /// Closes the connection, then retries once (a reused connection the
    /// server had closed before any response byte) or counts the error.
    fn fail(&mut self, i: usize, e: ExchangeError) {
        let slot = &mut self.slots[i];
        slot.conn = None;
        let retry = slot.job.reused
            && slot.job.attempt == 0
            && !e.started
            && matches!(e.error.kind, ErrorKind::EarlyEof | ErrorKind::Reset);
        if retry {
            slot.job.attempt = 1;
            self.rec.retries += 1;
            self.attempt(i, Instant::now());
            return;
        }
        self.rec.error(e.error.kind, &e.error.message);
        self.ctx.live.errors.fetch_add(1, Ordering::Relaxed);
        slot.phase = Phase::Idle;
        self.ready.push(i);
    }

    /// Makes sure a timer entry fires no later than the slot's next deadline.
    fn arm(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(at) = slot.next_deadline() else {
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
            self.on_timer(i, now);
            self.arm(i);
        }
    }

    /// Acts on whatever deadline of the slot has passed.
    fn on_timer(&mut self, i: usize, now: Instant) {
        let slot = &self.slots[i];
        let job = slot.job;
        let passed = |at: Option<Instant>| at.is_some_and(|a| now >= a);
        // The earlier of the two limits names the failure.
        let connect_first = match (job.connect_by, job.deadline) {
            (Some(c), Some(d)) => c <= d,
            (c, _) => c.is_some(),
        };
        let error = match slot.phase {
            Phase::Waiting if now >= job.ticket.intended => {
                self.issue(i, now);
                return;
            }
            Phase::Connecting if connect_first && passed(job.connect_by) => {
                let addr = self.ctx.target(job.ticket.seq).addr;
                let limit = self.ctx.conn.connect_timeout.unwrap_or_default();
                FetchError::connect_timeout(limit, addr)
            }
            Phase::Connecting | Phase::Writing | Phase::Reading if passed(job.deadline) => {
                FetchError::timeout(self.ctx.conn.timeout.unwrap_or_default())
            }
            _ => return,
        };
        // A timeout is never retried: `fail` only retries early EOF and reset.
        self.fail(
            i,
            ExchangeError {
                error,
                started: true,
            },
        );
    }
}

/// Whether an idle keep-alive connection that an event marked readable or
/// closed can no longer carry a request: the peer closed it, or sent bytes
/// nobody asked for (read and dropped here). Costs a read only when an
/// event came while the connection was idle.
fn idle_conn_spoiled(slot: &mut Slot) -> bool {
    use std::io::Read;
    if slot.peer_closed {
        return true;
    }
    let Some((stream, _)) = slot.conn.as_mut() else {
        return true;
    };
    let mut scratch = [0u8; 512];
    match stream.read(&mut scratch) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            slot.readable = false;
            false
        }
        _ => true,
    }
}
