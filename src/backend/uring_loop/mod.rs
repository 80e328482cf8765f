//! Completion model by hand: one io_uring per worker thread and a
//! hand-written completion loop over a fixed set of connection slots, each
//! a [`Session`] and its socket, no async runtime.
//!
//! Each pass of the loop drives the sessions that have something to do
//! (queueing the connects, sends and receives they want), then makes one
//! `io_uring_enter` that submits them all and waits for a batch of
//! completions sized to what is in flight, the completion rate and the
//! quicker responses' time (see [`pace`]), then feeds every completion to
//! its session. On kernels that have them it uses
//! `SINGLE_ISSUER|DEFER_TASKRUN`, multishot receives into a provided buffer
//! ring, `CQE_SKIP_SUCCESS` sends, direct descriptors and timed batched
//! waits; each has a fallback to Linux 5.10 (see [`ring`]).
//!
//! Every operation in the kernel is an entry of a table that owns what the
//! kernel may touch ([`ops`]); an entry records its slot and the slot's
//! connection generation, so a completion for a connection that was closed
//! (timeout, deadline, server close) is never applied to the connection
//! that now uses the slot.

mod completions;
mod ops;
mod pace;
pub mod ring;
mod slot;
mod wait;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types};

use self::ops::{Op, OpKind, Ops, Owned, Uring};
use self::slot::SlotIo;
use super::WorkerCtx;
use crate::error::{ErrorKind, FetchError};
use crate::session::{Session, Sink, Want};

/// Runs `$body` with `$t` bound to slot `$i`'s socket as an SQE target:
/// its direct descriptor (fixed-file index `$i`) or its file descriptor.
/// (The io-uring builders take either type, not a value that may be both.)
macro_rules! with_target {
    ($lp:expr, $i:expr, |$t:ident| $body:expr) => {
        if $lp.uring.features.direct_descriptors {
            let $t = types::Fixed($i as u32);
            $body
        } else {
            let $t = types::Fd($lp.io[$i].fd);
            $body
        }
    };
}

/// Receive buffer size, per provided buffer and per slot in the 5.10 profile.
const BUF_SIZE: usize = 16 * 1024;
/// Provided buffers are smaller with many connections: each buffer the
/// kernel fills is resident, and C10K responses are small.
const SMALL_BUF_SIZE: usize = 4 * 1024;
/// Writes up to this size go out with MSG_WAITALL and post no completion on
/// success (CQE_SKIP_SUCCESS): they fit the socket's send buffer, so the
/// kernel takes them whole as it submits them, and they count as sent when
/// queued. Longer writes (large bodies) post a completion per partial send,
/// so a body cut off midway counts what went out, as on the other backends.
const SILENT_SEND_MAX: usize = 64 * 1024;
/// Longest a batched wait holds completions back to gather more than the
/// last pass handled, and the horizon over which the completion rate sizes
/// a batch (less when quick responses take less, see [`pace`]; the
/// measurements behind it are in bench/README.md).
const BATCH_WAIT: Duration = Duration::from_micros(500);
/// Longest a batched wait for no more than the last pass handled can take
/// (that count was reached a moment ago, so this only bounds a sudden
/// slowdown; see `wait::plan_wait`). Longer than a scheduler tick at
/// HZ=250, so the timer is rarely the next one due and arming it
/// reprograms no hardware timer.
const STEADY_BATCH_WAIT: Duration = Duration::from_millis(5);
/// Above this many open connections at the end of a run, their teardown is
/// left to the kernel (see `drain`).
const HAND_OFF_ABOVE: usize = 512;
/// Longest the shutdown waits for the kernel to finish cancelled operations.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// A worker whose ring is set up.
pub(crate) struct Prepared<'a> {
    ctx: &'a WorkerCtx,
    uring: Uring,
    io: Vec<SlotIo>,
    /// Written when the run is cancelled; the ring polls it.
    wake: std::sync::Arc<std::os::fd::OwnedFd>,
}

/// An eventfd that `plan.cancel()` writes, so a waiting ring wakes.
fn wake_on_cancel(ctx: &WorkerCtx) -> std::io::Result<std::sync::Arc<std::os::fd::OwnedFd>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new
    // descriptor that nothing else owns.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just made and is owned by nothing else.
    let fd = std::sync::Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
    let writer = fd.clone();
    ctx.plan.on_cancel(Box::new(move || {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd that the
        // Arc keeps open; a full counter (EAGAIN) already wakes the poll.
        unsafe {
            libc::write(writer.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }));
    Ok(fd)
}

/// Sets up a worker's ring with the fastest features the kernel (and
/// `--uring-profile`) allows.
pub(crate) fn prepare(ctx: &WorkerCtx, profile: ring::Profile) -> Result<Prepared<'_>, FetchError> {
    let n = ctx.connections.max(1);
    let entries = (n * 4).next_power_of_two().clamp(64, 16384) as u32;
    // Provided buffers are small with many connections: each buffer the
    // kernel fills is resident, and C10K responses are small.
    let count = (n * 2).next_power_of_two().clamp(64, 1024) as u16;
    let size = if n > 256 { SMALL_BUF_SIZE } else { BUF_SIZE };
    let (mut ring, mut features, bufs) =
        ring::setup(entries, profile, count, size).map_err(|e| FetchError::uring_setup(&e))?;
    ring::check_enter(&mut ring).map_err(|e| FetchError::uring_enter(&e))?;
    // One table entry per slot; without one (RLIMIT_NOFILE below the slot
    // count, or memory) sockets come from socket(2) instead.
    // Kernel TLS sets the keys with setsockopt(2), which needs a file
    // descriptor (IORING_OP_URING_CMD could set them on a direct one
    // from 6.7; not done: kTLS here is proven on 6.1).
    features.direct_descriptors = features.direct_descriptors
        && !ctx.kernel_tls
        && ctx.conn.bind.is_empty()
        && ring.submitter().register_files_sparse(n as u32).is_ok();
    let plain = if bufs.is_some() { 0 } else { BUF_SIZE };
    let wake = wake_on_cancel(ctx)
        .map_err(|e| FetchError::new(ErrorKind::Other, format!("cannot make an eventfd: {e}")))?;
    Ok(Prepared {
        ctx,
        wake,
        io: (0..n).map(|_| SlotIo::new(plain)).collect(),
        uring: Uring {
            ring,
            features,
            bufs,
            ops: Ops::default(),
        },
    })
}

impl Prepared<'_> {
    /// Runs the worker's sessions to the end of the plan.
    pub(crate) fn run<S: Sink>(self, sink: S) -> Result<S, FetchError> {
        let ctx = self.ctx;
        let n = self.io.len();
        let now = Instant::now();
        let mut lp = Loop {
            ctx,
            uring: self.uring,
            sessions: (0..n)
                .map(|_| Session::new(S::COLLECT, ctx.conn.pipeline))
                .collect(),
            io: self.io,
            sink: pace::Paced {
                sink,
                pace: pace::Pace::new(
                    now,
                    match ctx.plan.rate() {
                        crate::plan::Rate::Closed => pace::CLOSED_LOOP_SHARE,
                        crate::plan::Rate::Open(_) => pace::OPEN_LOOP_SHARE,
                    },
                ),
            },
            timers: BinaryHeap::new(),
            ready: (0..n).rev().collect(),
            waiting_turn: Vec::new(),
            busy: 0,
            done: 0,
            ring_error: None,
            stopping: false,
            timer_op: None,
            timespec: types::Timespec::new(),
            cqes: Vec::with_capacity(1024),
            last_completions: 0,
            sends_queued: 0,
            tls: ctx.targets.iter().any(|t| t.tls),
            steady_after: now,
            closing: Vec::new(),
        };
        lp.poll_wake(&self.wake);
        lp.run();
        lp.sink.ended(Instant::now());
        lp.drain();
        Ok(lp.sink.sink)
    }
}

/// One worker's ring, slots and sink.
struct Loop<'a, S> {
    ctx: &'a WorkerCtx,
    uring: Uring,
    sessions: Vec<Session>,
    /// Slot `i`'s socket; with direct descriptors it is fixed file `i`.
    /// Never resized: the kernel may hold addresses into it (none today,
    /// every buffer it uses is owned by its operation).
    io: Vec<SlotIo>,
    /// The run's sink, which also feeds the pace of batched waits.
    sink: pace::Paced<S>,
    /// (deadline, slot): live while the slot's `armed` equals it.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Slots to drive in this pass (all at first; those that got a turn).
    ready: Vec<usize>,
    /// Slots waiting for a connect turn (see `SlotIo::waiting`).
    waiting_turn: Vec<usize>,
    /// Requests under way on the sessions connecting or exchanging
    /// (waiting on the kernel): one per HTTP/1.x connection, its open
    /// streams on an HTTP/2 one (see `Session::in_flight`).
    busy: usize,
    /// Sessions done.
    done: usize,
    /// The kernel refused to take queued SQEs (see [`Loop::push`]).
    ring_error: Option<std::io::Error>,
    /// The run is over (deadline or Ctrl-C): nothing new starts.
    stopping: bool,
    /// The expiry and `user_data` of the pending TIMEOUT op (5.10 profile).
    timer_op: Option<(Instant, u64)>,
    /// The bound of a timed wait (read by the kernel during the enter).
    timespec: types::Timespec,
    cqes: Vec<(u64, i32, u32)>,
    /// Completions handled in the last pass (batching only while they flow),
    /// not counting those of sends.
    last_completions: usize,
    /// Sends with a completion (TLS, or too big to be silent) queued since
    /// the last enter: it waits for them on top of its batch of receives,
    /// as most complete during the enter itself.
    sends_queued: usize,
    /// Some target is `https://` (every send then has a completion).
    tls: bool,
    /// Steady batched waits (see `wait::plan_wait`) are off until then,
    /// after one overran.
    steady_after: Instant,
    /// Sockets from socket(2) that are shut down but stay open until the
    /// next io_uring_enter has submitted what is queued (see [`Loop::close`]).
    closing: Vec<libc::c_int>,
}

impl<S: Sink> Loop<'_, S> {
    /// The loop: drive sessions, submit and wait once, feed every completion.
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            if !self.stopping && self.ctx.plan.is_over(now) {
                self.stop_all(now);
            }
            self.expire_timers(now);
            while let Some(i) = self.ready.pop() {
                self.drive(i, now);
            }
            if self.done == self.sessions.len() {
                break;
            }
            if let Err(e) = self.submit_and_wait(now) {
                // A ring that cannot enter any more: fail what is running.
                let err = FetchError::new(ErrorKind::Other, format!("io_uring_enter failed: {e}"));
                self.stopping = true;
                for i in 0..self.sessions.len() {
                    self.sessions[i].abort(&mut self.sink, &err);
                    self.drive(i, now);
                }
                continue;
            }
            self.handle_completions();
        }
    }

    /// Has the ring watch the wake-up eventfd (see [`wake_on_cancel`]).
    /// The poll holds its own reference to the file, and the plan's waker
    /// keeps the descriptor open for as long as it may write to it.
    fn poll_wake(&mut self, wake: &std::os::fd::OwnedFd) {
        use std::os::fd::AsRawFd;
        let entry = opcode::PollAdd::new(types::Fd(wake.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(ops::WAKE);
        self.push(entry);
    }

    /// Performs what slot `i`'s session wants until it waits for the
    /// kernel, a timer or a connect turn; then arms its timer.
    fn drive(&mut self, i: usize, now: Instant) {
        let ctx = self.ctx;
        loop {
            if self.sessions[i].take_close() {
                self.close(i);
            }
            let want = self.sessions[i].want();
            if self.io[i].turn && want != Want::Connecting {
                self.io[i].turn = false;
                ctx.turns.give_back();
                self.wake_a_waiter();
            }
            match want {
                Want::Done => {
                    if !self.io[i].done {
                        self.io[i].done = true;
                        self.done += 1;
                    }
                    break;
                }
                Want::Start => self.sessions[i].start(ctx, &mut self.sink, now),
                Want::Wait(_) => {
                    // An idle keep-alive connection keeps a receive armed
                    // (a multishot one stays armed anyway), so what comes
                    // on it meanwhile (a late `408`, the server's close)
                    // reaches the session before the connection is reused.
                    if self.io[i].fd >= 0 && !self.io[i].recv_armed {
                        self.arm_recv(i);
                    }
                    break;
                }
                Want::Connecting => break,
                Want::Connect => {
                    if !ctx.turns.try_take() {
                        if !self.io[i].waiting {
                            self.io[i].waiting = true;
                            self.waiting_turn.push(i);
                        }
                        break;
                    }
                    // Its entry on the wait list, if any, is skipped.
                    self.io[i].waiting = false;
                    self.io[i].turn = true;
                    let (addr, bind) = self.sessions[i].connect_started(ctx, now);
                    if let Err(e) = self.connect(i, addr, bind) {
                        self.sessions[i].on_connect_error(ctx, &mut self.sink, &e, now);
                    }
                }
                Want::Offload => {
                    // Sockets are file descriptors under kernel TLS (see `prepare`).
                    let fd = self.io[i].fd;
                    super::offload(&mut self.sessions[i], ctx, &mut self.sink, fd, now);
                }
                Want::Exchange { send } => {
                    if send && !self.io[i].sending && self.queue_send(i) {
                        continue;
                    }
                    if !self.io[i].recv_armed {
                        self.arm_recv(i);
                    }
                    break;
                }
            }
        }
        self.settle(i);
    }

    /// A connect turn came back: the first slot on the wait list that still
    /// waits gets driven in this pass (entries of slots that got a turn
    /// some other way are dropped). If another slot takes the turn first,
    /// it waits again, and that slot's turn comes back in its time.
    fn wake_a_waiter(&mut self) {
        while let Some(j) = self.waiting_turn.pop() {
            if std::mem::take(&mut self.io[j].waiting) {
                self.ready.push(j);
                return;
            }
        }
    }

    /// Keeps the busy count and slot `i`'s timer in step with its session.
    fn settle(&mut self, i: usize) {
        let busy = self.sessions[i].in_flight();
        let io = &mut self.io[i];
        if busy != io.busy {
            self.busy = self.busy - io.busy + busy;
            io.busy = busy;
        }
        let Some(at) = self.sessions[i].deadline() else {
            return;
        };
        // An earlier entry fires first, finds nothing due and re-arms.
        if io.armed.is_some_and(|a| a <= at) {
            return;
        }
        io.armed = Some(at);
        self.timers.push(Reverse((at, i)));
        if self.timers.len() > 2 * self.io.len() + 64 {
            let io = &self.io;
            self.timers
                .retain(|&Reverse((at, j))| io.get(j).is_some_and(|s| s.armed == Some(at)));
        }
    }

    /// Fires due timers: scheduled open-loop starts and deadlines.
    fn expire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.io[i].armed != Some(at) {
                continue;
            }
            self.io[i].armed = None;
            self.sessions[i].on_timer(self.ctx, &mut self.sink, now);
            self.drive(i, now);
        }
    }

    /// The run is over: what is under way is in flight, not an error.
    fn stop_all(&mut self, now: Instant) {
        self.stopping = true;
        for i in 0..self.sessions.len() {
            self.sessions[i].cut_off(&mut self.sink, now);
            self.drive(i, now);
        }
    }

    /// Opens slot `i`'s connection: with direct descriptors, queues a
    /// SOCKET into the slot's table entry (its completion queues the
    /// CONNECT, see [`Loop::connect_socket`]); else makes a socket with
    /// socket(2) and queues its CONNECT at once.
    ///
    /// SOCKET and CONNECT are not linked on purpose: a linked CONNECT is
    /// issued from task work after the whole submission, so a CLOSE and a
    /// new SOCKET for the same entry later in that submission would run
    /// before it, and it would connect the wrong socket. Unlinked, every
    /// operation on an entry is issued in queue order.
    fn connect(&mut self, i: usize, addr: SocketAddr, bind: Option<IpAddr>) -> std::io::Result<()> {
        if self.uring.features.direct_descriptors {
            self.io[i].fd = i as libc::c_int;
            let domain = if addr.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            let dest = types::DestinationSlot::try_from_slot_target(i as u32).ok();
            let entry = opcode::Socket::new(domain, libc::SOCK_STREAM, libc::IPPROTO_TCP)
                .file_index(dest)
                .build();
            self.push_op(entry, i, OpKind::Socket, Owned::Nothing);
            return Ok(());
        }
        // Sockets closed this pass are still open (see `close`): let them
        // go before opening more, or churn at -c near the open-file limit
        // would hold c + a pass of connects.
        self.flush_closing();
        self.io[i].fd = slot::open_socket(addr, bind)?;
        self.connect_socket(i, addr);
        Ok(())
    }

    /// Queues the CONNECT of slot `i`'s new socket; the address is the op's.
    fn connect_socket(&mut self, i: usize, addr: SocketAddr) {
        let sockaddr = Box::new(socket2::SockAddr::from(addr));
        let (ptr, len) = (sockaddr.as_ptr(), sockaddr.len());
        let entry = with_target!(self, i, |t| opcode::Connect::new(t, ptr, len).build());
        self.push_op(entry, i, OpKind::Connect, Owned::Addr(sockaddr));
    }

    /// Queues a send of what slot `i`'s session has not sent yet. Returns
    /// whether the session was told it went out (a silent send: see
    /// [`SILENT_SEND_MAX`]), so the caller drives it on.
    fn queue_send(&mut self, i: usize) -> bool {
        if self.sessions[i].sends_owned() {
            // The ciphertext lives in the session, which may drop it (a
            // closed connection) before the kernel is done: the op owns a
            // handle on it, and so the send must complete (not silent).
            let bytes = self.sessions[i].to_send_bytes(self.ctx);
            let (ptr, len) = (bytes.as_ptr(), bytes.len() as u32);
            let entry = with_target!(self, i, |t| opcode::Send::new(t, ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build());
            self.io[i].sending = true;
            self.sends_queued += 1;
            self.push_op(entry, i, OpKind::Send, Owned::Bytes(bytes));
            return false;
        }
        let bytes = self.sessions[i].to_send(self.ctx);
        // Kernel TLS refuses MSG_WAITALL on a send (EOPNOTSUPP), and a
        // silent send needs it (a short send would go unnoticed).
        let silent = self.uring.features.silent_sends()
            && bytes.len() <= SILENT_SEND_MAX
            && !self.sessions[i].kernel_tx();
        let mut flags = libc::MSG_NOSIGNAL;
        if silent {
            flags |= libc::MSG_WAITALL;
        }
        let (ptr, len) = (bytes.as_ptr(), bytes.len() as u32);
        let entry = with_target!(self, i, |t| opcode::Send::new(t, ptr, len)
            .flags(flags)
            .build());
        if silent {
            let ud = ops::silent_send(i, self.io[i].generation);
            self.push(entry.user_data(ud).flags(squeue::Flags::SKIP_SUCCESS));
            self.sessions[i].on_sent(self.ctx, &mut self.sink, len as usize);
            true
        } else {
            self.io[i].sending = true;
            self.sends_queued += 1;
            self.push_op(entry, i, OpKind::Send, Owned::Nothing);
            false
        }
    }

    /// Arms a receive: multishot once per connection, or one per read into
    /// the slot's buffer, if the buffer is back from its last receive.
    fn arm_recv(&mut self, i: usize) {
        let (entry, owned) = match &self.uring.bufs {
            // A kernel TLS handshake reads one receive at a time (see
            // `Session::handshaking_for_kernel`).
            Some(b) if self.sessions[i].handshaking_for_kernel() => {
                let (bgid, len) = (b.bgid, b.size() as u32);
                let entry =
                    with_target!(self, i, |t| opcode::Recv::new(t, std::ptr::null_mut(), len)
                        .buf_group(bgid)
                        .build()
                        .flags(squeue::Flags::BUFFER_SELECT));
                (entry, Owned::Nothing)
            }
            Some(b) => {
                let bgid = b.bgid;
                let entry = with_target!(self, i, |t| opcode::RecvMulti::new(t, bgid).build());
                (entry, Owned::Nothing)
            }
            None => {
                let Some(mut buf) = self.io[i].buf.take() else {
                    // Still owned by a receive of the previous connection:
                    // armed once that one completes.
                    return;
                };
                let (ptr, len) = (buf.as_mut_ptr(), buf.len() as u32);
                let entry = with_target!(self, i, |t| opcode::Recv::new(t, ptr, len).build());
                (entry, Owned::Buf(buf))
            }
        };
        self.io[i].recv_armed = true;
        self.push_op(entry, i, OpKind::Recv, owned);
    }

    /// Queues an operation of slot `i` that owns `owned` until its last
    /// completion; its `user_data`.
    fn push_op(&mut self, entry: squeue::Entry, i: usize, kind: OpKind, owned: Owned) -> u64 {
        let ud = self.uring.ops.insert(Op {
            slot: i,
            generation: self.io[i].generation,
            kind,
            owned,
        });
        self.push(entry.user_data(ud));
        ud
    }

    /// Pushes an SQE, flushing the queue to the kernel when it is full.
    /// If the kernel refuses the flush, the entry is never submitted: its
    /// operation leaves the table (what it owned goes back) and the next
    /// wait reports the error and fails every request.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: what an SQE points to stays valid until the kernel is
            // done with it: a connect's address, a TIMEOUT's timespec and a
            // plain receive's buffer are owned by the operation's entry in
            // `ops` until its last completion (and leaked by `Uring` if
            // that never comes); a send's bytes are the run's encoded
            // requests in the worker's context, which outlives the ring,
            // or a TLS chunk (immutable `Bytes`) its op owns likewise; a
            // wait's timespec is read during the enter that passes it. The
            // provided-buffer ring is freed only as `Uring` says.
            if unsafe { self.uring.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            match self.uring.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    self.ring_error.get_or_insert(e);
                    if let Some(op) = self.uring.ops.cancel_unsubmitted(entry.get_user_data()) {
                        self.take_back(op);
                    }
                    return;
                }
            }
        }
    }

    /// What a finished (or never submitted) operation owned goes back.
    fn take_back(&mut self, op: Op) {
        if let Owned::Buf(buf) = op.owned
            && let Some(io) = self.io.get_mut(op.slot)
        {
            io.buf = Some(buf);
        }
    }

    /// Closes slot `i`'s connection, if any; its pending operations finish
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
    ///
    /// A finished session's connection is left open for `drain`, which
    /// hands thousands of them to the kernel at once.
    fn close(&mut self, i: usize) {
        if self.sessions[i].want() != Want::Done {
            self.close_now(i);
        }
    }

    /// [`Loop::close`], whatever the session's state.
    fn close_now(&mut self, i: usize) {
        let fd = self.io[i].fd;
        // The session's last words (an HTTP/2 GOAWAY) go first, without
        // waiting: MSG_DONTWAIT makes the ring complete the send at once
        // (-EAGAIN on a full socket) instead of waiting for room, so the
        // cancel and close behind it find nothing pending of it.
        if let Some(bytes) = self.sessions[i].take_parting()
            && fd >= 0
        {
            if self.uring.features.direct_descriptors {
                let bytes = bytes::Bytes::from(bytes);
                let (ptr, len) = (bytes.as_ptr(), bytes.len() as u32);
                let send = opcode::Send::new(types::Fixed(i as u32), ptr, len)
                    .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                    .build();
                self.push_op(send, i, OpKind::Ignore, Owned::Bytes(bytes));
            } else {
                // SAFETY: `fd` is this slot's open socket, owned by the
                // loop, and is closed only below (after `closing` is
                // flushed): it is valid for the whole borrow, which ends
                // with the call.
                let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                super::part(borrowed, &bytes);
            }
        }
        if fd >= 0 && self.uring.features.direct_descriptors {
            let cancel =
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fixed(i as u32)).all())
                    .build();
            self.push_op(cancel, i, OpKind::Ignore, Owned::Nothing);
            let close = opcode::Close::new(types::Fixed(i as u32)).build();
            self.push_op(close, i, OpKind::Ignore, Owned::Nothing);
        } else if fd >= 0 {
            slot::shutdown(fd);
            self.closing.push(fd);
        }
        let io = &mut self.io[i];
        io.fd = -1;
        io.recv_armed = false;
        io.sending = false;
        io.generation = ops::next_generation(io.generation);
    }

    /// Submits what is queued, then closes the sockets waiting for that
    /// (see [`Loop::close`]); keeps them if anything stays unsubmitted.
    fn flush_closing(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        let _ = self.uring.ring.submit();
        self.close_submitted();
    }

    /// Closes the sockets waiting in `closing` once nothing queued can
    /// still name them: the submission queue is empty (the kernel took it,
    /// not refused it with EBUSY or EAGAIN).
    fn close_submitted(&mut self) {
        if self.uring.ring.submission().is_empty() {
            slot::close_all(&mut self.closing);
        }
    }
}
