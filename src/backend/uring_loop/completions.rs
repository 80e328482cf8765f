//! Feeding a `uring-loop` worker's completions to its sessions: connects,
//! sends, multishot or plain receives. Each completion ends or continues an
//! entry of the operation table; one for a closed connection only gives
//! back what its operation owned.

use std::time::Instant;

use io_uring::{cqueue, opcode, types};

use super::Loop;
use super::ops::{Named, OpKind, Owned, decode};
use crate::session::{Sink, Want};

/// Asks the CPU to start loading `s` into its cache.
#[inline]
fn prefetch<T>(s: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = (s as *const T).cast::<i8>();
        let size = std::mem::size_of::<T>();
        // Every line `*s` touches: one per 64 bytes, and the line of its
        // last byte (a value need not start on a line).
        for off in (0..size).step_by(64).chain(size.checked_sub(1)) {
            // SAFETY: a prefetch is only a hint: it reads nothing the
            // program can observe and never faults, whatever the address
            // (here one inside `*s`); SSE, which it needs, is part of every
            // x86_64 CPU.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = s;
}

impl<S: Sink> Loop<'_, S> {
    /// Handles every completion in the queue.
    pub(super) fn handle_completions(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.uring
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        // Send completions (TLS) are not what batches are sized by; a
        // plaintext run has next to none, and skips the count.
        let sends = if self.tls {
            cqes.iter()
                .filter(|&&(ud, _, _)| {
                    matches!(decode(ud), Named::Op(key)
                        if self.uring.ops.get(key).is_some_and(|op| op.kind == OpKind::Send))
                })
                .count()
        } else {
            0
        };
        let received = cqes.len() - sends;
        self.last_completions = received;
        let now = Instant::now();
        self.sink
            .pace
            .completions(received, now, crate::stats::resources::thread_cpu_time);
        if cqes.len() > 1 {
            for &(ud, _, _) in &cqes {
                let slot = match decode(ud) {
                    Named::Op(key) => self.uring.ops.get(key).map(|op| op.slot),
                    Named::SilentSend { slot, .. } => Some(slot),
                    Named::Wake => None,
                };
                if let Some(s) = slot.and_then(|i| self.sessions.get(i)) {
                    prefetch(s);
                }
            }
        }
        for &(ud, res, flags) in &cqes {
            match decode(ud) {
                Named::SilentSend { slot, generation } => {
                    // Only failures post a completion; one that failed after
                    // sending some bytes reports their count, not the error:
                    // the connection broke under it.
                    if self
                        .io
                        .get(slot)
                        .is_some_and(|io| io.generation == generation)
                    {
                        let errno = if res < 0 { -res } else { libc::ECONNRESET };
                        let e = std::io::Error::from_raw_os_error(errno);
                        self.sessions[slot].on_io_error(self.ctx, &mut self.sink, &e, now);
                        self.drive(slot, now);
                    }
                }
                Named::Op(key) => self.on_op(key, res, flags, now),
                // The next pass sees the plan cancelled.
                Named::Wake => {}
            }
        }
        if let Some(b) = &self.uring.bufs {
            b.publish();
        }
        self.cqes = cqes;
    }

    /// A completion of operation `key`; its last one (no MORE flag) takes
    /// it out of the table.
    fn on_op(&mut self, key: usize, res: i32, flags: u32, now: Instant) {
        let Some(op) = self.uring.ops.get(key) else {
            return;
        };
        let (i, generation, kind) = (op.slot, op.generation, op.kind);
        let owned = if cqueue::more(flags) {
            Owned::Nothing
        } else {
            self.uring
                .ops
                .remove(key)
                .map_or(Owned::Nothing, |op| op.owned)
        };
        let current = self.io.get(i).is_some_and(|io| io.generation == generation)
            && self.sessions[i].want() != Want::Done;
        match kind {
            OpKind::Timer => {
                if self.timer_op.is_some_and(|(_, ud)| ud == key as u64) {
                    self.timer_op = None;
                }
            }
            OpKind::Ignore => {}
            OpKind::Recv => self.on_recv(i, current, res, flags, owned, now),
            _ if !current => {}
            OpKind::Socket => self.on_socket(i, res, now),
            OpKind::Connect => self.on_connect(i, res, now),
            OpKind::Send => self.on_send(i, res, now),
        }
    }

    /// A direct descriptor was made (or not) for slot `i`: connect it.
    fn on_socket(&mut self, i: usize, res: i32, now: Instant) {
        if res < 0 {
            let e = std::io::Error::from_raw_os_error(-res);
            self.sessions[i].on_connect_error(self.ctx, &mut self.sink, &e, now);
            return self.drive(i, now);
        }
        // TCP_NODELAY before the CONNECT, as socket(2)'s path sets it (see
        // `slot::NODELAY_ON`); issued in queue order, and a failure only
        // leaves Nagle on.
        let entry = opcode::SetSockOpt::new(
            types::Fixed(i as u32),
            libc::IPPROTO_TCP as u32,
            libc::TCP_NODELAY as u32,
            (&raw const super::slot::NODELAY_ON).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
        .build();
        self.push_op(entry, i, OpKind::Ignore, Owned::Nothing);
        let addr = self.sessions[i].peer(self.ctx);
        self.connect_socket(i, addr);
    }

    fn on_connect(&mut self, i: usize, res: i32, now: Instant) {
        if res < 0 {
            let e = std::io::Error::from_raw_os_error(-res);
            self.sessions[i].on_connect_error(self.ctx, &mut self.sink, &e, now);
        } else {
            self.sessions[i].on_connected(self.ctx, &mut self.sink, now);
        }
        self.drive(i, now);
    }

    fn on_send(&mut self, i: usize, res: i32, now: Instant) {
        self.io[i].sending = false;
        if res < 0 {
            let e = std::io::Error::from_raw_os_error(-res);
            self.sessions[i].on_io_error(self.ctx, &mut self.sink, &e, now);
        } else {
            self.sessions[i].on_sent(self.ctx, &mut self.sink, res as usize);
        }
        self.drive(i, now);
    }

    /// A receive completed: bytes (from the buffer ring or the slot's own
    /// buffer, which comes back here), the peer's close, or an error.
    fn on_recv(
        &mut self,
        i: usize,
        current: bool,
        res: i32,
        flags: u32,
        owned: Owned,
        now: Instant,
    ) {
        let bid = cqueue::buffer_select(flags);
        let plain = match owned {
            Owned::Buf(buf) => Some(buf),
            _ => None,
        };
        let last = !cqueue::more(flags);
        if !current {
            // A closed connection's receive: only what it held matters. A
            // slot whose new connection waited for the buffer arms it now.
            if let (Some(b), Some(bid)) = (&mut self.uring.bufs, bid) {
                b.stage(bid);
            }
            if let Some(buf) = plain {
                self.io[i].buf = Some(buf);
                if self.sessions[i].want() != Want::Done {
                    self.drive(i, now);
                }
            }
            return;
        }
        if last {
            self.io[i].recv_armed = false;
        }
        let ctx = self.ctx;
        if res <= 0 {
            if let (Some(b), Some(bid)) = (&mut self.uring.bufs, bid) {
                b.stage(bid);
            }
            self.io[i].buf = plain.or(self.io[i].buf.take());
            match res {
                0 => self.sessions[i].on_eof(ctx, &mut self.sink, now),
                // The buffer ring ran dry: re-armed below, as buffers come
                // back while this pass is handled.
                r if r == -libc::ENOBUFS => {}
                r => {
                    let e = std::io::Error::from_raw_os_error(-r);
                    let fd = self.io[i].fd;
                    let session = &mut self.sessions[i];
                    crate::backend::recv_failed(session, ctx, &mut self.sink, fd, &e, now);
                }
            }
            return self.drive(i, now);
        }
        let len = res as usize;
        match (&mut self.uring.bufs, bid, plain) {
            (Some(b), Some(bid), _) => {
                self.sessions[i].on_recv(ctx, &mut self.sink, b.data(bid, len), now);
                b.stage(bid);
            }
            (_, _, Some(buf)) => {
                let data = buf.get(..len).unwrap_or_default();
                self.sessions[i].on_recv(ctx, &mut self.sink, data, now);
                self.io[i].buf = Some(buf);
            }
            // A receive with neither buffer cannot deliver bytes.
            _ => {}
        }
        self.drive(i, now);
    }
}
