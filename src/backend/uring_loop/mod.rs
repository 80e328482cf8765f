//! Completion model by hand: one io_uring per worker thread and a
//! hand-written completion loop over a fixed slab of connection slots, no
//! async runtime.
//!
//! Each pass of the loop prepares every SQE the previous completions call
//! for (connects, sends, receives), then makes one `io_uring_enter` that
//! submits them all and waits for a batch of completions sized to what is in
//! flight, the completion rate and the quicker responses' time (see [`pace`]),
//! then drains the whole completion queue. On kernels that have them
//! it uses `SINGLE_ISSUER|DEFER_TASKRUN`, multishot receives into a provided
//! buffer ring, `CQE_SKIP_SUCCESS` sends and timed batched waits; each has a
//! fallback to Linux 5.10 (see [`ring`]).
//!
//! Slot index, generation and operation kind travel in `user_data`: a
//! completion for a connection that was closed (timeout, deadline, server
//! close) carries an old generation and is never applied to the connection
//! that now uses the slot.

mod completions;
mod pace;
pub mod ring;
mod slot;
mod wait;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use self::ring::{BufRing, Features, OpKind, encode};
use self::slot::{Slot, State};
use super::{ConnOptions, Fetched, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::http::Response;
use crate::plan::Ticket;
use crate::stats::Recorder;
use crate::target::Target;

/// Runs `$body` with `$t` bound to slot `$i`'s socket as an SQE target:
/// its direct descriptor (fixed-file index `$i`) or its file descriptor.
/// (The io-uring builders take either type, not a value that may be both.)
macro_rules! with_target {
    ($lp:expr, $i:expr, |$t:ident| $body:expr) => {
        if $lp.features.direct_descriptors {
            let $t = types::Fixed($i as u32);
            $body
        } else {
            let $t = types::Fd($lp.slots[$i].fd);
            $body
        }
    };
}

/// Receive buffer size, per provided buffer and per slot in the 5.10 profile.
const BUF_SIZE: usize = 16 * 1024;
/// Provided buffers are smaller with many connections: each buffer the
/// kernel fills is resident, and C10K responses are small.
const SMALL_BUF_SIZE: usize = 4 * 1024;
/// New connections started per pass. A connect on loopback runs the whole
/// handshake inside io_uring_enter; thousands in one enter would hold back
/// every completion (and request) until the last handshake is done.
const CONNECTS_PER_PASS: usize = 256;
/// How often a run without a deadline still looks for Ctrl-C.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// Longest a batched wait holds completions back to gather more than the
/// last pass handled, and the horizon over which the completion rate sizes a
/// batch (less when quick responses take less, see [`pace`]). A 1-2 ms
/// horizon with batches up to 64-128 cut CPU per request at 1,000
/// connections to nginx (0.58x to 0.53x of wrk's), but in a client-bound
/// mix of quick and slow requests at 1,000 connections it doubled p50 and
/// cost 10-20% of req/s (bench/README.md).
const BATCH_WAIT: Duration = Duration::from_micros(500);
/// Longest a batched wait for no more than the last pass handled can take
/// (that count was reached a moment ago; this only bounds a sudden
/// slowdown, and one that takes over twice its budget plus 200 µs turns the
/// next waits budget-bound for a while, see `wait::plan_wait`). Longer than a
/// scheduler tick at HZ=250, so the timer is rarely the next one due and
/// arming it reprograms no hardware timer.
const STEADY_BATCH_WAIT: Duration = Duration::from_millis(5);
/// Above this many open connections at the end of a run, their teardown is
/// left to the kernel (see `drain`).
const HAND_OFF_ABOVE: usize = 512;
/// Longest the shutdown waits for the kernel to finish cancelled operations.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// `get`'s results by ticket sequence number; `None` until recorded.
type Collected = Vec<Option<Result<Fetched, FetchError>>>;

/// A timer: the slot's `timer_stamp` when set; an older stamp is stale.
type Timer = Reverse<(Instant, usize, u32)>;

/// One worker's ring, slots and counters.
struct Loop<'a> {
    ctx: &'a WorkerCtx,
    ring: IoUring,
    /// With `direct_descriptors`, slot `i`'s socket is fixed file `i` and
    /// `Slot::fd` only says whether one is open.
    features: Features,
    bufs: Option<BufRing>,
    slots: Vec<Slot>,
    rec: Recorder,
    timers: BinaryHeap<Timer>,
    free: Vec<usize>,
    /// Requests per connection write (`--pipeline`), 1 without.
    pipeline: usize,
    /// The request repeated `pipeline` times, per target.
    pipelined: Vec<Vec<u8>>,
    /// Slots connecting or exchanging (waiting on the kernel).
    busy: usize,
    /// Operations submitted whose final completion has not arrived.
    inflight_ops: usize,
    /// The kernel refused to take queued SQEs (see [`Loop::push`]).
    ring_error: Option<std::io::Error>,
    /// The plan has no more tickets.
    exhausted: bool,
    /// The run is over (deadline or Ctrl-C): nothing new starts.
    stopping: bool,
    /// The expiry of the pending TIMEOUT op (5.10 profile), if any.
    timer_op: Option<Instant>,
    timespec: types::Timespec,
    cqes: Vec<(u64, i32, u32)>,
    /// Completions handled in the last pass (batching only while they flow).
    last_completions: usize,
    /// Steady batched waits (see `wait::plan_wait`) are off until then,
    /// after one overran.
    steady_after: Instant,
    /// Completion rate and quick response time, which size batched waits,
    /// and whether the loop is too busy on the CPU to hold completions.
    pace: pace::Pace,
    /// Responses completed by one receive, reused across receives.
    responses: Vec<Response>,
    /// Sockets from socket(2) that are shut down but stay open until the
    /// next io_uring_enter has submitted what is queued (see
    /// [`Loop::close`]).
    closing: Vec<libc::c_int>,
    /// `drain` handed the open connections to the kernel without waiting.
    handed_off: bool,
    /// `get`: the response of each ticket, by sequence number.
    collect: Option<Collected>,
}

impl Drop for Loop<'_> {
    /// Releases the ring's registered index first, so that dropping the
    /// ring really tears it down (see [`ring::unregister_ring_index`]). A
    /// loop is made and dropped on the same thread.
    fn drop(&mut self) {
        if let Some(index) = self.features.ring_index.take() {
            ring::unregister_ring_index(&self.ring, index);
        }
    }
}

/// Runs one load worker on its own ring.
pub fn run_worker(ctx: WorkerCtx) -> Result<Recorder, FetchError> {
    let setup = Loop::new(&ctx, false);
    ctx.ready();
    let mut lp = setup?;
    lp.rec = Recorder::new(ctx.plan.start());
    lp.run();
    Ok(lp.finish().0)
}

/// Fetches every target concurrently, one connection each.
pub fn fetch_all(
    targets: &[Target],
    opts: &ConnOptions,
) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
    use std::sync::Arc;
    let n = targets.len();
    let ctx = WorkerCtx {
        index: 0,
        connections: n,
        bind_cursor: Arc::default(),
        plan: crate::plan::Plan::new(
            crate::plan::Stop::Count(n as u64),
            crate::plan::Rate::Closed,
        ),
        targets: Arc::new(targets.to_vec()),
        conn: Arc::new(ConnOptions {
            pipeline: 1,
            ..opts.clone()
        }),
        live: Arc::default(),
        gate: Arc::default(),
    };
    let mut lp = Loop::new(&ctx, true)?;
    lp.run();
    let results = lp.finish().1.unwrap_or_default();
    Ok(results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(FetchError::new(ErrorKind::Other, "no response recorded")))
        })
        .collect())
}

impl<'a> Loop<'a> {
    fn new(ctx: &'a WorkerCtx, collect: bool) -> Result<Self, FetchError> {
        let n = ctx.connections.max(1);
        let entries = (n * 4).next_power_of_two().clamp(64, 16384) as u32;
        // Provided buffers are small with many connections: each buffer the
        // kernel fills is resident, and C10K responses are small.
        let count = (n * 2).next_power_of_two().clamp(64, 1024) as u16;
        let size = if n > 256 { SMALL_BUF_SIZE } else { BUF_SIZE };
        let (ring, mut features, bufs) = ring::setup(entries, ctx.conn.uring_profile, count, size)
            .map_err(|e| FetchError::uring_setup(&e))?;
        // One table entry per slot; without one (RLIMIT_NOFILE below the
        // slot count, or memory) sockets come from socket(2) instead.
        features.direct_descriptors = features.direct_descriptors
            && ctx.conn.bind.is_empty()
            && ring.submitter().register_files_sparse(n as u32).is_ok();
        let pipeline = ctx.conn.pipeline.max(1);
        let pipelined = if pipeline > 1 {
            ctx.targets
                .iter()
                .map(|t| t.request.repeat(pipeline))
                .collect()
        } else {
            Vec::new()
        };
        let slots = (0..n)
            .map(|_| Slot::new(collect, if bufs.is_some() { 0 } else { BUF_SIZE }, pipeline))
            .collect();
        Ok(Self {
            ctx,
            ring,
            features,
            bufs,
            slots,
            // Replaced once the run starts: the plan's clock must not start during setup.
            rec: Recorder::new(Instant::now()),
            timers: BinaryHeap::new(),
            free: (0..n).rev().collect(),
            pipeline,
            pipelined,
            busy: 0,
            inflight_ops: 0,
            ring_error: None,
            exhausted: false,
            stopping: false,
            timer_op: None,
            timespec: types::Timespec::new(),
            cqes: Vec::with_capacity(1024),
            responses: Vec::with_capacity(pipeline),
            closing: Vec::new(),
            handed_off: false,
            last_completions: 0,
            steady_after: Instant::now(),
            pace: pace::Pace::new(
                Instant::now(),
                match ctx.plan.rate() {
                    crate::plan::Rate::Closed => pace::CLOSED_LOOP_SHARE,
                    crate::plan::Rate::Open(_) => pace::OPEN_LOOP_SHARE,
                },
            ),
            collect: collect.then(|| (0..n).map(|_| None).collect()),
        })
    }

    /// The loop: start work, submit and wait once, handle every completion.
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            if !self.stopping && self.ctx.plan.is_over(now) {
                self.stop_all();
            }
            self.expire_timers(now);
            self.start_free_slots(now);
            if (self.exhausted || self.stopping) && self.free.len() == self.slots.len() {
                break;
            }
            if let Err(e) = self.submit_and_wait(now) {
                // A ring that cannot enter any more: fail what is running.
                let err = FetchError::new(ErrorKind::Other, format!("io_uring_enter failed: {e}"));
                for i in 0..self.slots.len() {
                    if self.slots[i].is_busy() {
                        self.fail(i, err.clone(), false);
                    }
                }
                self.stopping = true;
                continue;
            }
            self.handle_completions();
        }
        self.rec.finished = Some(Instant::now());
        self.drain();
    }

    /// Gives every free slot its next ticket (and, pipelined, the ones after),
    /// opening at most [`CONNECTS_PER_PASS`] new connections.
    fn start_free_slots(&mut self, now: Instant) {
        let mut connects = 0;
        while !self.exhausted && !self.stopping {
            let Some(&i) = self.free.last() else { break };
            if self.slots[i].fd < 0 {
                if connects == CONNECTS_PER_PASS {
                    break;
                }
                connects += 1;
            }
            let Some(ticket) = self.ctx.plan.next_ticket_at(now) else {
                self.exhausted = true;
                break;
            };
            self.free.pop();
            // A closed-loop ticket is stamped `now` and starts at once; an
            // open-loop one waits for its time, checked against a fresh clock
            // so that one already due is not left to a timer.
            if ticket.intended > now && ticket.intended > Instant::now() {
                let s = &mut self.slots[i];
                s.state = State::Scheduled;
                s.tickets.push_back(ticket);
                self.push_timer(ticket.intended, i);
            } else {
                self.begin(i, ticket, now);
            }
        }
    }

    /// Issues a ticket's request on slot `i`, connecting first if needed.
    fn begin(&mut self, i: usize, ticket: Ticket, now: Instant) {
        let s = &mut self.slots[i];
        s.tickets.clear();
        s.tickets.push_back(ticket);
        while s.tickets.len() < self.pipeline {
            match self.ctx.plan.next_ticket_at(now) {
                Some(t) => s.tickets.push_back(t),
                None => {
                    self.exhausted = true;
                    break;
                }
            }
        }
        for _ in 0..s.tickets.len() {
            self.rec.issue();
        }
        s.retried = false;
        let target = self.ctx.target(ticket.seq);
        s.target = (ticket.seq % self.ctx.targets.len() as u64) as usize;
        s.deadline = self.ctx.conn.timeout.map(|t| (now + t, false));
        let reuse = s.fd >= 0 && s.peer == Some(target.addr);
        if reuse {
            self.send(i, now);
        } else {
            self.connect(i, now);
        }
        self.arm_deadline(i);
    }

    /// Sets the slot's timer to its earliest deadline.
    fn arm_deadline(&mut self, i: usize) {
        if let Some((at, _)) = self.slots[i].deadline {
            self.push_timer(at, i);
        }
    }

    /// Makes `at` slot `i`'s only live timer. Replaced timers stay in the
    /// heap until they come due, so the heap is compacted once it holds
    /// more than twice as many entries as there are slots: memory stays
    /// constant in the number of requests.
    fn push_timer(&mut self, at: Instant, i: usize) {
        let stamp = self.slots[i].new_timer();
        self.timers.push(Reverse((at, i, stamp)));
        if self.timers.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.timers
                .retain(|&Reverse((_, j, st))| slots.get(j).is_some_and(|s| s.timer_stamp == st));
        }
    }

    /// Opens a connection for slot `i`: with direct descriptors, queues a
    /// SOCKET into the slot's table entry (its completion queues the
    /// CONNECT, see [`Loop::connect_socket`]); else makes a socket with
    /// socket(2) and queues its CONNECT at once.
    ///
    /// SOCKET and CONNECT are not linked on purpose: a linked CONNECT is
    /// issued from task work after the whole submission, so a CLOSE and a
    /// new SOCKET for the same entry later in that submission would run
    /// before it, and it would connect the wrong socket. Unlinked, every
    /// operation on an entry is issued in queue order.
    fn connect(&mut self, i: usize, now: Instant) {
        self.close(i);
        let addr = self.ctx.targets[self.slots[i].target].addr;
        // The slot is taken from here on, before anything can fail: a slot
        // fresh off the free list is still `Free`, and `release` gives back
        // only slots that are not, so a failed socket(2) would lose it and
        // the run would never end.
        let s = &mut self.slots[i];
        if !s.is_busy() {
            self.busy += 1;
        }
        s.state = State::Connecting;
        let fd = if self.features.direct_descriptors {
            i as libc::c_int
        } else {
            // Sockets closed this pass are still open (see `close`): let
            // them go before opening more, or churn at -c near the
            // open-file limit would hold c + a pass of connects.
            self.flush_closing();
            let bind = self.ctx.bind_addr();
            match slot::open_socket(addr, bind) {
                Ok(fd) => fd,
                Err(e) => return self.fail(i, FetchError::connect(&e, addr), false),
            }
        };
        let connect_deadline = self.ctx.conn.connect_timeout.map(|t| now + t);
        let s = &mut self.slots[i];
        s.fd = fd;
        s.peer = Some(addr);
        s.sockaddr = socket2::SockAddr::from(addr);
        s.served = 0;
        s.connect_started = now;
        if let Some(c) = connect_deadline
            && s.deadline.is_none_or(|(d, _)| c < d)
        {
            s.deadline = Some((c, true));
        }
        if self.features.direct_descriptors {
            let domain = if addr.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            let dest = types::DestinationSlot::try_from_slot_target(i as u32).ok();
            let socket = opcode::Socket::new(domain, libc::SOCK_STREAM, libc::IPPROTO_TCP)
                .file_index(dest)
                .build()
                .user_data(encode(i, s.generation, OpKind::Socket));
            self.push(socket, true);
        } else {
            self.connect_socket(i);
        }
    }

    /// Queues the CONNECT of slot `i`'s new socket.
    fn connect_socket(&mut self, i: usize) {
        let s = &self.slots[i];
        let (ptr, len) = (s.sockaddr.as_ptr(), s.sockaddr.len());
        let entry = with_target!(self, i, |t| opcode::Connect::new(t, ptr, len).build())
            .user_data(encode(i, s.generation, OpKind::Connect));
        self.push(entry, true);
    }

    /// What the slot's writes are cut from: its target's request, or the
    /// request repeated `pipeline` times.
    fn write_source(&self, i: usize) -> &[u8] {
        let t = self.slots[i].target;
        if self.pipeline > 1 {
            &self.pipelined[t]
        } else {
            &self.ctx.targets[t].request
        }
    }

    /// The length of the slot's next write: the request once per awaited
    /// ticket.
    fn write_len(&self, i: usize) -> usize {
        let s = &self.slots[i];
        let one = self.ctx.targets[s.target].request.len();
        (one * s.tickets.len()).min(self.write_source(i).len())
    }

    /// Starts the slot's request: resets the parser and queues the write.
    fn send(&mut self, i: usize, now: Instant) {
        let total = self.write_len(i);
        let head_request = self.ctx.targets[self.slots[i].target].head_request;
        let s = &mut self.slots[i];
        if !s.is_busy() {
            self.busy += 1;
        }
        s.state = State::Exchanging;
        s.sent_at = now;
        s.send_total = total;
        s.send_done = 0;
        s.head_request = head_request;
        s.parser.reset(head_request);
        self.rec.bytes_written += total as u64;
        self.queue_send(i);
        if !self.slots[i].recv_armed {
            self.arm_recv(i);
        }
    }

    /// Queues a SEND of what the kernel has not taken yet. With MSG_WAITALL
    /// the kernel finishes short sends itself, so a successful send needs no
    /// completion at all (CQE_SKIP_SUCCESS).
    fn queue_send(&mut self, i: usize) {
        let s = &self.slots[i];
        // Up to the write's own length, fixed when it started: pipelined
        // responses that arrive meanwhile shorten `tickets`, and with it
        // what `write_len` would give now.
        let bytes = &self.write_source(i)[s.send_done.min(s.send_total)..s.send_total];
        let skip = self.features.silent_sends();
        let mut flags = libc::MSG_NOSIGNAL;
        if self.features.send_waitall {
            flags |= libc::MSG_WAITALL;
        }
        let mut entry = with_target!(self, i, |t| opcode::Send::new(
            t,
            bytes.as_ptr(),
            bytes.len() as u32
        )
        .flags(flags)
        .build())
        .user_data(encode(i, s.generation, OpKind::Send));
        if skip {
            entry = entry.flags(squeue::Flags::SKIP_SUCCESS);
        }
        self.push(entry, !skip);
    }

    /// Queues a receive: multishot once per connection, or one per read.
    fn arm_recv(&mut self, i: usize) {
        let entry = match &self.bufs {
            Some(b) => with_target!(self, i, |t| opcode::RecvMulti::new(t, b.bgid).build()),
            None => {
                let s = &mut self.slots[i];
                let (ptr, len) = (s.buf.as_mut_ptr(), s.buf.len() as u32);
                with_target!(self, i, |t| opcode::Recv::new(t, ptr, len).build())
            }
        };
        let s = &mut self.slots[i];
        let entry = entry.user_data(encode(i, s.generation, OpKind::Recv));
        s.recv_armed = true;
        self.push(entry, true);
    }

    /// Pushes an SQE, flushing the queue to the kernel when it is full.
    /// If the kernel refuses the flush, the entry is kept in `ring_error`'s
    /// stead: the next wait reports the error and fails every request, so
    /// no slot waits for a completion that can never come.
    fn push(&mut self, entry: squeue::Entry, counted: bool) {
        loop {
            // SAFETY: every pointer in our SQEs (request bytes, per-slot
            // sockaddr and receive buffer, the provided-buffer ring, the
            // timespec) lives in `self` or in the run's targets, and stays
            // put: slots are never moved (the Vec is never resized). The
            // kernel reads a sockaddr or timespec when the SQE is submitted,
            // which happens while `self` lives. What it may use later: request
            // bytes, which it only reads (a send outliving the run could at
            // worst send stale bytes on a dying connection), and the receive
            // buffers it writes into. `drain` waits (boundedly)
            // for outstanding operations, and `finish` never frees a receive
            // buffer (buffer ring or per-slot) while any may still be in
            // flight.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                break;
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    self.ring_error.get_or_insert(e);
                    return;
                }
            }
        }
        if counted {
            self.inflight_ops += 1;
        }
    }

    /// Fails the slot's outstanding requests, or retries once on a fresh
    /// connection when a reused one was found closed before any byte came back.
    fn fail(&mut self, i: usize, err: FetchError, retryable: bool) {
        let now = Instant::now();
        let s = &mut self.slots[i];
        let retry = retryable
            && !s.retried
            && !self.stopping
            && matches!(err.kind, ErrorKind::EarlyEof | ErrorKind::Reset)
            && !s.tickets.is_empty();
        if retry {
            s.retried = true;
            self.rec.retries += 1;
            self.connect(i, now);
            // The new connect may have brought the deadline forward.
            self.arm_deadline(i);
            return;
        }
        for t in s.tickets.drain(..) {
            self.rec.error(err.kind, &err.message);
            self.ctx.live.errors.fetch_add(1, Ordering::Relaxed);
            if let Some(results) = &mut self.collect
                && let Some(slot) = results.get_mut(t.seq as usize)
            {
                *slot = Some(Err(err.clone()));
            }
        }
        self.close(i);
        self.release(i);
    }

    /// Closes the slot's connection, if any; its pending operations finish
    /// with an old generation and are ignored.
    ///
    /// A direct descriptor is closed by two SQEs that run in order when
    /// submitted, before anything queued after them (a SOCKET reusing the
    /// table entry): ASYNC_CANCEL of every operation on it (a pending
    /// receive keeps the socket alive), then CLOSE of the entry. A file
    /// descriptor is shut down (which completes its pending receive) at
    /// once, and closed after the next io_uring_enter: SQEs already queued
    /// for it name it by number, which the kernel resolves only when they
    /// are submitted, and closed now the number could by then belong to a
    /// socket another worker thread opened.
    fn close(&mut self, i: usize) {
        let open = self.slots[i].fd >= 0;
        if open && self.features.direct_descriptors {
            let cancel =
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fixed(i as u32)).all())
                    .build()
                    .user_data(encode(i, 0, OpKind::Ignore));
            self.push(cancel, true);
            let close = opcode::Close::new(types::Fixed(i as u32))
                .build()
                .user_data(encode(i, 0, OpKind::Ignore));
            self.push(close, true);
        } else if open {
            slot::shutdown(self.slots[i].fd);
            self.closing.push(self.slots[i].fd);
        }
        let s = &mut self.slots[i];
        if open {
            s.fd = -1;
            s.peer = None;
            s.recv_armed = false;
            s.generation = ring::next_generation(s.generation);
        }
    }

    /// Submits what is queued, then closes the sockets waiting for that
    /// (see [`Loop::close`]); keeps them if anything stays unsubmitted.
    fn flush_closing(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        let _ = self.ring.submit();
        self.close_submitted();
    }

    /// Closes the sockets waiting in `closing` once nothing queued can
    /// still name them: the submission queue is empty (the kernel took it,
    /// not refused it with EBUSY or EAGAIN).
    pub(super) fn close_submitted(&mut self) {
        if self.ring.submission().is_empty() {
            slot::close_all(&mut self.closing);
        }
    }

    /// Returns a slot whose request cycle is over to the free list.
    fn release(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.is_busy() {
            self.busy -= 1;
        }
        if s.state != State::Free {
            s.state = State::Free;
            s.deadline = None;
            s.new_timer();
            s.tickets.clear();
            self.free.push(i);
        }
    }

    /// Fires due timers: scheduled open-loop starts and request deadlines.
    fn expire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, i, stamp))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.slots[i].timer_stamp != stamp {
                continue;
            }
            match self.slots[i].state {
                State::Scheduled => {
                    if let Some(t) = self.slots[i].tickets.pop_front() {
                        self.begin(i, t, now);
                    }
                }
                State::Connecting | State::Exchanging => {
                    let s = &self.slots[i];
                    let addr = self.ctx.targets[s.target].addr;
                    let err = match s.deadline {
                        Some((_, true)) => FetchError::connect_timeout(
                            self.ctx.conn.connect_timeout.unwrap_or_default(),
                            addr,
                        ),
                        _ => FetchError::timeout(self.ctx.conn.timeout.unwrap_or_default()),
                    };
                    self.fail(i, err, false);
                }
                State::Free => {}
            }
        }
    }

    /// The run is over: requests still running are in flight, not errors.
    fn stop_all(&mut self) {
        self.stopping = true;
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            match s.state {
                State::Connecting | State::Exchanging => {
                    self.rec.in_flight += s.tickets.len() as u64;
                    s.tickets.clear();
                    self.close(i);
                    self.release(i);
                }
                State::Scheduled => {
                    s.tickets.clear();
                    self.release(i);
                }
                State::Free => {}
            }
        }
    }

    fn finish(mut self) -> (Recorder, Option<Collected>) {
        if let Some(b) = self.bufs.take() {
            if self.inflight_ops == 0 && b.unregister(&self.ring).is_ok() {
                drop(b);
            } else {
                // The kernel may still write into these buffers: never free them.
                std::mem::forget(b);
            }
        }
        if self.inflight_ops > 0 {
            // Plain receives (5.10 profile) still armed write into their
            // slot's own buffer: those are never freed either. After a
            // hand-off (`drain`) the armed ones are the slots still marked
            // so; after a drain that gave up, any may be. Multishot
            // receives have no such buffer (empty vectors).
            let handed_off = self.handed_off;
            for s in &mut self.slots {
                if s.recv_armed || !handed_off {
                    std::mem::forget(std::mem::take(&mut s.buf));
                }
            }
        }
        let rec = std::mem::replace(&mut self.rec, Recorder::new(self.ctx.plan.start()));
        (rec, self.collect.take())
    }
}
