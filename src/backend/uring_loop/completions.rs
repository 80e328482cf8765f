//! Applying completions to the slots of a `uring-loop` worker: connects,
//! sends, multishot or plain receives, fed to the sans-IO parser; responses
//! are recorded against their tickets.

use std::sync::atomic::Ordering;
use std::time::Instant;

use io_uring::cqueue;

use super::ring::{OpKind, decode};
use super::slot::{self, State};
use super::{Fetched, Loop};
use crate::error::{ErrorKind, FetchError};
use crate::http::Response;

/// Asks the CPU to start loading `s` into its cache.
#[inline]
fn prefetch<T>(s: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = (s as *const T).cast::<i8>();
        let size = std::mem::size_of::<T>();
        // Every line `*s` touches: one per 64 bytes, and the line of its
        // last byte (a slot need not start on a line).
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

impl Loop<'_> {
    /// Handles every completion in the queue.
    pub(super) fn handle_completions(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        self.last_completions = cqes.len();
        let now = Instant::now();
        self.pace
            .completions(cqes.len(), now, crate::stats::resources::thread_cpu_time);
        if cqes.len() > 1 {
            for &(ud, _, _) in &cqes {
                let i = decode(ud).0;
                if let Some(s) = self.slots.get(i) {
                    prefetch(s);
                }
            }
        }
        for &(ud, res, flags) in &cqes {
            let (i, generation, kind) = decode(ud);
            if self.features.ends_counted_op(kind, flags) {
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
                        OpKind::Socket => self.on_socket(i, res),
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

    /// A direct descriptor was made (or not) for slot `i`: connect it.
    fn on_socket(&mut self, i: usize, res: i32) {
        if res < 0 {
            let addr = self.ctx.targets[self.slots[i].target].addr;
            let e = std::io::Error::from_raw_os_error(-res);
            return self.fail(i, FetchError::connect(&e, addr), false);
        }
        self.connect_socket(i);
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
        let mut last = None;
        for resp in responses {
            last = self.complete(i, resp, now).or(last);
        }
        // `get` reports bytes after a response as the others do: it is not
        // the response the server meant to send.
        if fed.trailing > 0
            && let (Some(results), Some(seq)) = (&mut self.collect, last)
            && let Some(slot) = results.get_mut(seq as usize)
        {
            *slot = Some(Err(crate::backend::trailing_error(addr, fed.trailing)));
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
            State::Exchanging if s.fd < 0 => {
                // A close-delimited response ended the connection with
                // pipelined requests still unanswered: retried once on a
                // fresh connection, as any reused connection found closed.
                let err = FetchError::new(
                    ErrorKind::EarlyEof,
                    format!(
                        "{addr} closed the connection with {} pipelined requests unanswered",
                        s.tickets.len()
                    ),
                );
                self.fail(i, err, true);
            }
            State::Exchanging if !s.recv_armed => self.arm_recv(i),
            State::Exchanging => {}
            // Bytes nobody asked for on an idle connection: it cannot be trusted.
            _ if fed.trailing > 0 => self.close(i),
            _ => {}
        }
    }

    /// One response finished: record it against its ticket.
    /// Returns the ticket's sequence number.
    fn complete(&mut self, i: usize, resp: &Response, now: Instant) -> Option<u64> {
        let s = &mut self.slots[i];
        let ticket = s.tickets.pop_front()?;
        s.served += 1;
        self.pace.response(now.saturating_duration_since(s.sent_at));
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
        Some(ticket.seq)
    }
}
