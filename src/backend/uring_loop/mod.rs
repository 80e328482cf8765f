//! Completion model by hand: one io_uring per worker thread and a
//! hand-written completion loop over a fixed slab of connection slots, no
//! async runtime.
//!
//! Each pass of the loop prepares every SQE the previous completions call
//! for (connects, sends, receives), then makes one `io_uring_enter` that
//! submits them all and waits for a batch of completions sized to what is in
//! flight, then drains the whole completion queue. On kernels that have them
//! it uses `SINGLE_ISSUER|DEFER_TASKRUN`, multishot receives into a provided
//! buffer ring, `CQE_SKIP_SUCCESS` sends and timed batched waits; each has a
//! fallback to Linux 5.10 (see [`ring`]).
//!
//! Slot index, generation and operation kind travel in `user_data`: a
//! completion for a connection that was closed (timeout, deadline, server
//! close) carries an old generation and is never applied to the connection
//! that now uses the slot.

pub mod ring;
mod slot;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use self::ring::{BufRing, Features, OpKind, decode, encode};
use self::slot::{Slot, State};
use super::{ConnOptions, Fetched, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::http::Response;
use crate::plan::Ticket;
use crate::stats::Recorder;
use crate::target::Target;

/// Receive buffer size, per provided buffer and per slot in the 5.10 profile.
const BUF_SIZE: usize = 16 * 1024;
/// How often a run without a deadline still looks for Ctrl-C.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// Longest a batched wait holds completions back to gather more.
const BATCH_WAIT: Duration = Duration::from_micros(500);
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
    /// Operations submitted whose final completion has not arrived.
    inflight_ops: usize,
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
    /// Responses completed by one receive, reused across receives.
    responses: Vec<Response>,
    /// `get`: the response of each ticket, by sequence number.
    collect: Option<Collected>,
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
        first_connection: 0,
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
        let count = (n * 2).next_power_of_two().clamp(64, 4096) as u16;
        let (ring, features, bufs) = ring::setup(entries, ctx.conn.uring_profile, count, BUF_SIZE)
            .map_err(|e| FetchError::uring_setup(&e))?;
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
            inflight_ops: 0,
            exhausted: false,
            stopping: false,
            timer_op: None,
            timespec: types::Timespec::new(),
            cqes: Vec::with_capacity(1024),
            responses: Vec::with_capacity(pipeline),
            last_completions: 0,
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
            if (self.exhausted || self.stopping)
                && self.slots.iter().all(|s| s.state == State::Free)
            {
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
        self.drain();
    }

    /// Gives every free slot its next ticket (and, pipelined, the ones after).
    fn start_free_slots(&mut self, now: Instant) {
        while !self.exhausted && !self.stopping {
            let Some(&i) = self.free.last() else { break };
            let Some(ticket) = self.ctx.plan.next_ticket() else {
                self.exhausted = true;
                break;
            };
            self.free.pop();
            if ticket.intended > now {
                let s = &mut self.slots[i];
                s.state = State::Scheduled;
                s.tickets.push_back(ticket);
                let stamp = s.new_timer();
                self.timers.push(Reverse((ticket.intended, i, stamp)));
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
            match self.ctx.plan.next_ticket() {
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
        let s = &mut self.slots[i];
        if let Some((at, _)) = s.deadline {
            let stamp = s.new_timer();
            self.timers.push(Reverse((at, i, stamp)));
        }
    }

    /// Opens a connection for slot `i` and queues its CONNECT.
    fn connect(&mut self, i: usize, now: Instant) {
        self.close(i);
        let addr = self.ctx.targets[self.slots[i].target].addr;
        let bind = self.ctx.bind_addr(i);
        let fd = match slot::open_socket(addr, bind) {
            Ok(fd) => fd,
            Err(e) => return self.fail(i, FetchError::connect(&e, addr), false),
        };
        let connect_deadline = self.ctx.conn.connect_timeout.map(|t| now + t);
        let s = &mut self.slots[i];
        s.fd = fd;
        s.peer = Some(addr);
        s.sockaddr = socket2::SockAddr::from(addr);
        s.served = 0;
        s.connect_started = now;
        s.state = State::Connecting;
        if let Some(c) = connect_deadline
            && s.deadline.is_none_or(|(d, _)| c < d)
        {
            s.deadline = Some((c, true));
        }
        let entry = opcode::Connect::new(types::Fd(fd), s.sockaddr.as_ptr(), s.sockaddr.len())
            .build()
            .user_data(encode(i, s.generation, OpKind::Connect));
        self.push(entry, true);
    }

    /// The bytes of the slot's current write: the request, or its
    /// pipelined copies, one per awaited ticket.
    fn request_bytes(&self, i: usize) -> &[u8] {
        let s = &self.slots[i];
        let target = &self.ctx.targets[s.target];
        if self.pipeline > 1 {
            let end = (target.request.len() * s.tickets.len()).min(self.pipelined[s.target].len());
            &self.pipelined[s.target][..end]
        } else {
            &target.request
        }
    }

    /// Starts the slot's request: resets the parser and queues the write.
    fn send(&mut self, i: usize, now: Instant) {
        let total = self.request_bytes(i).len();
        let head_request = self.ctx.targets[self.slots[i].target].head_request;
        let s = &mut self.slots[i];
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
        let bytes = &self.request_bytes(i)[s.send_done.min(s.send_total)..];
        let skip = self.features.skip_success && self.features.send_waitall;
        let mut flags = libc::MSG_NOSIGNAL;
        if self.features.send_waitall {
            flags |= libc::MSG_WAITALL;
        }
        let mut entry = opcode::Send::new(types::Fd(s.fd), bytes.as_ptr(), bytes.len() as u32)
            .flags(flags)
            .build()
            .user_data(encode(i, s.generation, OpKind::Send));
        if skip {
            entry = entry.flags(squeue::Flags::SKIP_SUCCESS);
        }
        self.push(entry, !skip);
    }

    /// Queues a receive: multishot once per connection, or one per read.
    fn arm_recv(&mut self, i: usize) {
        let s = &mut self.slots[i];
        let entry = match &self.bufs {
            Some(b) => opcode::RecvMulti::new(types::Fd(s.fd), b.bgid).build(),
            None => {
                opcode::Recv::new(types::Fd(s.fd), s.buf.as_mut_ptr(), s.buf.len() as u32).build()
            }
        }
        .user_data(encode(i, s.generation, OpKind::Recv));
        s.recv_armed = true;
        self.push(entry, true);
    }

    /// Pushes an SQE, flushing the queue to the kernel when it is full.
    fn push(&mut self, entry: squeue::Entry, counted: bool) {
        loop {
            // SAFETY: every pointer in our SQEs (request bytes, per-slot
            // sockaddr and receive buffer, the provided-buffer ring, the
            // timespec) lives in `self` or in the run's targets, both of which
            // outlive the operation: slots are never moved (the Vec is never
            // resized) and `drain` waits for outstanding operations.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                break;
            }
            if self.ring.submit().is_err() {
                break;
            }
        }
        if counted {
            self.inflight_ops += 1;
        }
    }

    /// How many completions to wait for: one when little is in flight (no
    /// batching latency at low concurrency), up to 32 when much is.
    fn batch_target(&self) -> usize {
        let busy = self.slots.iter().filter(|s| s.is_busy()).count();
        if busy >= 16 { (busy / 2).min(32) } else { 1 }
    }

    /// One io_uring_enter: submit everything queued, wait for a batch or a timer.
    fn submit_and_wait(&mut self, now: Instant) -> std::io::Result<()> {
        let mut until = self.timers.peek().map(|Reverse((t, _, _))| *t);
        if !self.stopping {
            let poll = self
                .ctx
                .plan
                .deadline()
                .map_or(now + CANCEL_POLL, |d| d.min(now + CANCEL_POLL));
            until = Some(until.map_or(poll, |u| u.min(poll)));
        }
        let mut want = if self.inflight_ops == 0 {
            0
        } else {
            self.batch_target()
        };
        if self.stopping && self.inflight_ops == 0 {
            want = 0;
        }
        let wait = until.map(|u| u.saturating_duration_since(now));
        let result = if self.features.ext_arg {
            // Batching: wait for `want` completions, but never sleep through
            // a quiet spell on a batch timer. With the kernel's minimum-wait
            // (6.12) it returns on the first completion after BATCH_WAIT; else
            // a short timeout is used only while completions are flowing.
            let mut limit = wait;
            let mut min_wait = 0;
            if want > 1 {
                if self.features.min_wait {
                    min_wait = BATCH_WAIT.as_micros() as u32;
                } else if self.last_completions > 0 {
                    limit = Some(limit.map_or(BATCH_WAIT, |w| w.min(BATCH_WAIT)));
                } else {
                    want = 1;
                }
            }
            let want = want.max(1);
            match limit {
                Some(d) => {
                    self.timespec = types::Timespec::from(d);
                    let args = types::SubmitArgs::new()
                        .timespec(&self.timespec)
                        .min_wait_usec(min_wait);
                    self.ring.submitter().submit_with_args(want, &args)
                }
                None => self.ring.submit_and_wait(want),
            }
        } else {
            // 5.10: a TIMEOUT op bounds the wait; no batching without it.
            if let Some(at) = until
                && self.timer_op.is_none_or(|t| at < t)
            {
                self.timespec = types::Timespec::from(at.saturating_duration_since(now));
                let e = opcode::Timeout::new(&self.timespec)
                    .build()
                    .user_data(encode(0, 0, OpKind::Timer));
                self.push(e, true);
                self.timer_op = Some(at);
            }
            self.ring.submit_and_wait(1)
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Handles every completion in the queue.
    fn handle_completions(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        self.last_completions = cqes.len();
        let now = Instant::now();
        for &(ud, res, flags) in &cqes {
            let (i, generation, kind) = decode(ud);
            let final_cqe = !cqueue::more(flags);
            let counted = !(kind == Some(OpKind::Send)
                && self.features.skip_success
                && self.features.send_waitall);
            if final_cqe && counted {
                self.inflight_ops = self.inflight_ops.saturating_sub(1);
            }
            match kind {
                Some(OpKind::Timer) => {
                    self.timer_op = None;
                }
                Some(OpKind::Ignore) | None => {}
                Some(_) if i >= self.slots.len() => {}
                Some(OpKind::Recv) => self.on_recv(i, generation, res, flags, now),
                Some(k) => {
                    if self.slots[i].generation != generation {
                        continue;
                    }
                    match k {
                        OpKind::Connect => self.on_connect(i, res, now),
                        OpKind::Send => self.on_send(i, res),
                        _ => {}
                    }
                }
            }
        }
        if let Some(b) = &self.bufs {
            b.publish();
        }
        self.cqes = cqes;
    }

    fn on_connect(&mut self, i: usize, res: i32, now: Instant) {
        let addr = self.ctx.targets[self.slots[i].target].addr;
        if res < 0 {
            let e = std::io::Error::from_raw_os_error(-res);
            return self.fail(i, FetchError::connect(&e, addr), false);
        }
        let s = &mut self.slots[i];
        self.rec.connected(
            now.saturating_duration_since(s.connect_started),
            s.ever_connected,
        );
        s.ever_connected = true;
        // The connect deadline is met; the request deadline remains.
        if let Some((_, true)) = s.deadline {
            s.deadline = self
                .ctx
                .conn
                .timeout
                .map(|t| (s.connect_started + t, false));
            self.arm_deadline(i);
        }
        self.send(i, now);
    }

    fn on_send(&mut self, i: usize, res: i32) {
        if res < 0 {
            let addr = self.ctx.targets[self.slots[i].target].addr;
            let e = std::io::Error::from_raw_os_error(-res);
            let reused = self.slots[i].served > 0;
            return self.fail(i, FetchError::io(&e, addr), reused);
        }
        let s = &mut self.slots[i];
        s.send_done += res as usize;
        if s.state == State::Exchanging && s.send_done < s.send_total {
            self.queue_send(i);
        }
    }

    fn on_recv(&mut self, i: usize, generation: u32, res: i32, flags: u32, now: Instant) {
        let bid = cqueue::buffer_select(flags);
        if self.slots[i].generation != generation {
            // A closed connection's receive: only its buffer matters.
            if let (Some(b), Some(bid)) = (&mut self.bufs, bid) {
                b.stage(bid);
            }
            return;
        }
        if !cqueue::more(flags) {
            self.slots[i].recv_armed = false;
        }
        let addr = self.ctx.targets[self.slots[i].target].addr;
        if res <= 0 {
            if let (Some(b), Some(bid)) = (&mut self.bufs, bid) {
                b.stage(bid);
            }
            return match res {
                0 => self.on_eof(i, addr, now),
                // The buffer ring ran dry; buffers come back as this pass is handled.
                r if r == -libc::ENOBUFS => self.arm_recv(i),
                r => {
                    let e = std::io::Error::from_raw_os_error(-r);
                    self.on_peer_gone(i, FetchError::io(&e, addr));
                }
            };
        }
        let len = res as usize;
        self.rec.bytes_read += len as u64;
        let mut out = std::mem::take(&mut self.responses);
        out.clear();
        let fed = match (&mut self.bufs, bid) {
            (Some(b), Some(bid)) => {
                let fed = slot::feed(&mut self.slots[i], b.data(bid, len), &mut out);
                b.stage(bid);
                fed
            }
            _ => slot::feed_own(&mut self.slots[i], len, &mut out),
        };
        self.apply(i, &out, fed, now);
        self.responses = out;
    }

    /// The server closed the connection.
    fn on_eof(&mut self, i: usize, addr: std::net::SocketAddr, now: Instant) {
        let s = &mut self.slots[i];
        if s.state != State::Exchanging {
            // An idle keep-alive connection closed by the server: reopen on next use.
            self.close(i);
            return;
        }
        let started = s.parser.started();
        match s.parser.feed_eof() {
            Ok(resp) => {
                // A close-delimited body ends here; the connection is done.
                self.close(i);
                let fed = slot::Fed {
                    error: None,
                    trailing: 0,
                };
                self.apply(i, &[resp], fed, now);
            }
            Err(e) => {
                let reused = self.slots[i].served > 0 && !started;
                self.fail(i, FetchError::http(&e, addr), reused);
            }
        }
    }

    /// A socket error on a connection.
    fn on_peer_gone(&mut self, i: usize, err: FetchError) {
        if self.slots[i].state == State::Exchanging {
            let reused = self.slots[i].served > 0 && !self.slots[i].parser.started();
            self.fail(i, err, reused);
        } else {
            self.close(i);
        }
    }

    /// Records what a parse produced: responses, then an error, if any;
    /// then decides what the connection does next.
    fn apply(&mut self, i: usize, responses: &[Response], fed: slot::Fed, now: Instant) {
        let addr = self.ctx.targets[self.slots[i].target].addr;
        for resp in responses {
            self.complete(i, resp, now);
        }
        if let Some(e) = fed.error {
            return self.fail(i, FetchError::http(&e, addr), false);
        }
        let s = &self.slots[i];
        match s.state {
            State::Exchanging if s.tickets.is_empty() => {
                let reusable = responses.last().is_some_and(|r| r.keep_alive)
                    && self.ctx.conn.keep_alive
                    && fed.trailing == 0;
                if !reusable {
                    self.close(i);
                }
                self.release(i);
            }
            State::Exchanging if !s.recv_armed && s.fd >= 0 => self.arm_recv(i),
            State::Exchanging => {}
            // Bytes nobody asked for on an idle connection: it cannot be trusted.
            _ if fed.trailing > 0 => self.close(i),
            _ => {}
        }
    }

    /// One response finished: record it against its ticket.
    fn complete(&mut self, i: usize, resp: &Response, now: Instant) {
        let s = &mut self.slots[i];
        let Some(ticket) = s.tickets.pop_front() else {
            return;
        };
        s.served += 1;
        let origin = self.ctx.plan.latency_origin(&ticket, s.sent_at);
        self.rec.response(resp.status, origin, now);
        self.ctx.live.completed.fetch_add(1, Ordering::Relaxed);
        if let Some(results) = &mut self.collect {
            let fetched = Fetched {
                response: *resp,
                head: s.parser.head().to_vec(),
                body: s.parser.body().to_vec(),
                peer: self.ctx.targets[s.target].addr,
            };
            if let Some(slot) = results.get_mut(ticket.seq as usize) {
                *slot = Some(Ok(fetched));
            }
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
            self.connect(i, now);
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
    fn close(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.fd >= 0 {
            slot::shutdown_and_close(s.fd);
            s.fd = -1;
            s.peer = None;
            s.recv_armed = false;
            s.generation = ring::next_generation(s.generation);
        }
    }

    /// Returns a slot whose request cycle is over to the free list.
    fn release(&mut self, i: usize) {
        let s = &mut self.slots[i];
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

    /// Closes every connection and waits (boundedly) for the kernel to
    /// finish their operations, so the buffer ring can be unregistered.
    fn drain(&mut self) {
        for i in 0..self.slots.len() {
            self.close(i);
        }
        let start = Instant::now();
        while self.inflight_ops > 0 && start.elapsed() < DRAIN_LIMIT {
            self.timespec = types::Timespec::from(Duration::from_millis(10));
            let r = if self.features.ext_arg {
                let args = types::SubmitArgs::new().timespec(&self.timespec);
                self.ring.submitter().submit_with_args(1, &args)
            } else {
                self.ring.submit_and_wait(0)
            };
            if r.is_err() && !self.features.ext_arg {
                break;
            }
            let mut n = 0;
            for c in self.ring.completion() {
                let (_, _, kind) = decode(c.user_data());
                let skipped = kind == Some(OpKind::Send)
                    && self.features.skip_success
                    && self.features.send_waitall;
                if !cqueue::more(c.flags()) && !skipped {
                    n += 1;
                }
            }
            self.inflight_ops = self.inflight_ops.saturating_sub(n);
            if !self.features.ext_arg {
                std::thread::sleep(Duration::from_millis(1));
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
        let rec = std::mem::replace(&mut self.rec, Recorder::new(self.ctx.plan.start()));
        (rec, self.collect.take())
    }
}
