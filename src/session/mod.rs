//! The sans-IO connection session: what happens to requests on one
//! connection slot, decided once for every backend.
//!
//! A [`Session`] owns the tickets on its connection (one, or a pipelined
//! batch), the response parser, the connect and request deadlines, the
//! retry and keep-alive rules, what counts as in flight when the run ends,
//! and byte counting; it reports every outcome to a [`Sink`]. It does no
//! I/O. A backend is a driver: it asks [`Session::want`] what to do
//! (connect, send, receive, wait), does it with its own I/O model, and
//! feeds back what happened (`on_connected`, `on_sent`, `on_recv`,
//! `on_eof`, `on_io_error`, `on_timer`). [`Session::take_close`] tells it
//! when to close the socket; the results of operations still pending on a
//! closed socket must never reach the session again.
//!
//! Bytes pass through in one place each way ([`Session::to_send`] and
//! [`Session::on_recv`]), which is where a transport layer (TLS) goes
//! between socket bytes and HTTP bytes; the ticket queue is where several
//! exchanges in flight on one connection live (a pipelined batch now,
//! HTTP/2 streams later).
//!
//! The rules, each in one place below:
//! - A ticket counts as issued when its request starts (an open-loop ticket
//!   at its time). Its `--timeout` runs from the moment it has a connection
//!   or a connect turn ([`Session::connect_started`]) until its response
//!   ends, across a retry; the connect has `--connect-timeout` of its own,
//!   and the earlier of the two names a failure.
//! - A response whose last byte arrives after the end of the run (the `-z`
//!   deadline or Ctrl-C) is in flight, as is everything else under way then.
//! - Bytes after a complete response are ignored and the connection is not
//!   reused, however TCP splits them; bytes on an idle connection close it.
//! - A connection is reused only if the response allows it and keep-alive is
//!   on. A response that ends the connection (`Connection: close`, a
//!   close-delimited body) sends the rest of a pipelined batch to a new one.
//! - A connection that closes or resets before any byte of the current
//!   response is retried on a new connection if it had already answered
//!   something (a keep-alive race, a server that ends pipelined batches
//!   early; RFC 9112 §9.3.2), so retries stop as soon as a fresh connection
//!   fails without answering. Timeouts and malformed responses are never retried.

pub(crate) mod h2;
pub(crate) mod pacing;
pub(crate) mod sink;
mod streams;
#[cfg(test)]
mod streams_tests;
#[cfg(test)]
mod tests;
mod tls;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::backend::WorkerCtx;
use crate::error::{ErrorKind, FetchError};
use crate::http::{Progress, Response, ResponseParser};
use crate::plan::Ticket;
use h2::H2Conn;

pub(crate) use pacing::ConnectTurns;
pub(crate) use sink::{Collector, Done, Fetch, LoadSink, Sink};
use tls::{Received, RecvError, TlsLayer};

/// What a session needs from its driver now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Between requests: call [`Session::start`] for the next ticket.
    Start,
    /// An open-loop ticket waits for its time: call [`Session::on_timer`] then.
    Wait(Instant),
    /// A new connection: once the driver may start one (a connect turn),
    /// it calls [`Session::connect_started`], which says where to.
    Connect,
    /// The connect is under way: report how it ended.
    Connecting,
    /// Connected: send [`Session::to_send`] while `send`, and receive.
    Exchange { send: bool },
    /// Kernel TLS: install [`Session::offload`]'s keys on the socket now,
    /// then report with [`Session::on_offloaded`].
    Offload,
    /// No more tickets.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Scheduled,
    Connect,
    Connecting,
    /// Connected to an `https://` target; the TLS handshake is under way.
    Handshaking,
    Exchanging,
    Done,
}

/// One connection slot's state machine (see the module docs).
#[derive(Debug)]
pub(crate) struct Session {
    phase: Phase,
    /// The peer of the open (or opening) connection.
    conn: Option<SocketAddr>,
    /// Which of its target's addresses the next connect tries: the next
    /// one after a refusal, an unreachable address or a connect timeout;
    /// kept while the session stays on the same target.
    addr_index: usize,
    /// Responses completed on the current connection.
    served: u64,
    /// HTTP/2: streams the server refused since its last response on the
    /// connection (see `streams.rs`).
    refused: usize,
    /// Tickets whose responses are awaited, oldest first.
    tickets: VecDeque<Ticket>,
    /// Requests written at once (`--pipeline`).
    pipeline: usize,
    /// Index of the current request's target.
    target: usize,
    parser: ResponseParser,
    head_request: bool,
    /// Bytes of the current write, and how many of them the kernel took.
    send_len: usize,
    sent: usize,
    sent_at: Instant,
    /// The request's `--timeout` and the connect's `--connect-timeout`.
    deadline: Option<Instant>,
    connect_by: Option<Instant>,
    connect_started: Instant,
    ever_connected: bool,
    /// The connection in `conn` is established (counted open in the sink).
    established: bool,
    /// The driver must close its socket (see [`Session::take_close`]).
    close: bool,
    /// What the driver writes, without waiting, before it closes the
    /// socket (see [`Session::take_parting`]).
    parting: Option<Vec<u8>>,
    /// The current response's head went to the sink (`Sink::COLLECT`).
    head_given: bool,
    /// The connection's TLS layer (`https://`); boxed: most sessions are plain.
    tls: Option<Box<TlsLayer>>,
    /// Plaintext out of the TLS layer, reused from read to read.
    plain: Vec<u8>,
    /// The connection's HTTP/2 layer, when it speaks HTTP/2 (see `streams.rs`).
    h2: Option<Box<H2Conn>>,
    /// HTTP/2: an open-loop ticket taken from the plan before its time
    /// (not issued yet), which opens a stream when it is due.
    scheduled: Option<Ticket>,
    /// Issued tickets a connection could not take in its batch (an
    /// https server that chose HTTP/1.1 over HTTP/2): the next batches.
    backlog: VecDeque<Ticket>,
}

impl Session {
    /// A session that writes up to `pipeline` requests at once; `collect`
    /// keeps response heads and bodies (`Sink::COLLECT`).
    pub fn new(collect: bool, pipeline: usize) -> Self {
        let now = Instant::now();
        Self {
            phase: Phase::Idle,
            conn: None,
            addr_index: 0,
            served: 0,
            refused: 0,
            tickets: VecDeque::with_capacity(pipeline.max(1)),
            pipeline: pipeline.max(1),
            target: 0,
            parser: ResponseParser::new(collect),
            head_request: false,
            send_len: 0,
            sent: 0,
            sent_at: now,
            deadline: None,
            connect_by: None,
            connect_started: now,
            ever_connected: false,
            established: false,
            close: false,
            parting: None,
            head_given: false,
            tls: None,
            plain: Vec::new(),
            h2: None,
            scheduled: None,
            backlog: VecDeque::new(),
        }
    }

    /// What the driver should do next.
    #[inline]
    pub fn want(&self) -> Want {
        match self.phase {
            Phase::Idle => Want::Start,
            Phase::Scheduled => self
                .tickets
                .front()
                .map_or(Want::Start, |t| Want::Wait(t.intended)),
            Phase::Connect => Want::Connect,
            Phase::Connecting => Want::Connecting,
            Phase::Exchanging | Phase::Handshaking => match (&self.tls, &self.h2) {
                (Some(tls), _) if tls.offload_due().is_some() => Want::Offload,
                (Some(tls), _) if !tls.plaintext_out() => Want::Exchange {
                    send: tls.has_unsent(),
                },
                (_, Some(h2)) => Want::Exchange {
                    send: !h2.to_send().is_empty(),
                },
                _ => Want::Exchange {
                    send: self.sent < self.send_len,
                },
            },
            Phase::Done => Want::Done,
        }
    }

    /// Whether the driver must close the session's socket now; the flag
    /// clears as it is read. Drivers read it after every call into the
    /// session, before acting on [`Session::want`].
    #[inline]
    pub fn take_close(&mut self) -> bool {
        std::mem::take(&mut self.close)
    }

    /// The bytes to write once, without waiting (`MSG_DONTWAIT`), right
    /// before closing the socket that [`Session::take_close`] just asked
    /// to close: an HTTP/2 connection that ends on our side says GOAWAY
    /// (with the error code of a connection error the session found, RFC
    /// 9113 §5.4.1), and over TLS close_notify. Best effort: what the
    /// socket does not take at once is dropped with it.
    #[inline]
    pub fn take_parting(&mut self) -> Option<Vec<u8>> {
        self.parting.take()
    }

    /// Whether requests are under way (a cut-off counts them in flight).
    pub fn is_busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Connect | Phase::Connecting | Phase::Handshaking | Phase::Exchanging
        )
    }

    /// How many requests are under way, for a driver that sizes its
    /// batches by them: an HTTP/2 connection's open streams (at least 1
    /// while busy), else 1 while busy (an HTTP/1.x connection, pipelined
    /// or not, counts once), 0 when not.
    #[inline]
    pub fn in_flight(&self) -> usize {
        if !self.is_busy() {
            return 0;
        }
        match &self.h2 {
            Some(h2) => h2.active().max(1),
            None => 1,
        }
    }

    /// When [`Session::on_timer`] must run next, if at all.
    #[inline]
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Scheduled => self.tickets.front().map(|t| t.intended),
            Phase::Connecting | Phase::Handshaking => match (self.deadline, self.connect_by) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            // Over HTTP/2 a due open-loop ticket waits for the next event
            // (see `streams.rs`).
            Phase::Exchanging => match &self.h2 {
                // Tickets held for want of a stream wait until `deadline`.
                Some(h2) => match (h2.deadline(), self.deadline) {
                    (Some(a), Some(b)) if !self.tickets.is_empty() => Some(a.min(b)),
                    (a, b) if !self.tickets.is_empty() => a.or(b),
                    (a, _) => a,
                },
                None => self.deadline,
            },
            Phase::Idle | Phase::Connect | Phase::Done => None,
        }
    }

    /// The peer of the current request: the address being connected to
    /// or in use, else its target's first.
    pub fn peer(&self, ctx: &WorkerCtx) -> SocketAddr {
        self.conn.unwrap_or(ctx.targets[self.target].addr)
    }

    /// Takes the next ticket (and, pipelined, the ones after it) and starts
    /// it now, or waits for its time; `Want::Done` when the plan has none.
    pub fn start<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        self.tickets.clear();
        if !self.backlog.is_empty() {
            // Issued already: they go first.
            while self.tickets.len() < self.pipeline {
                match self.backlog.pop_front() {
                    Some(t) => self.tickets.push_back(t),
                    None => break,
                }
            }
            return self.begin(ctx, sink, now);
        }
        let Some(first) = ctx.plan.next_ticket_at(now) else {
            self.finish(sink);
            return;
        };
        self.tickets.push_back(first);
        if first.intended > now {
            self.phase = Phase::Scheduled;
            return;
        }
        let batch = self.batch(ctx);
        while self.tickets.len() < batch {
            match ctx.plan.next_ticket_at(now) {
                Some(t) => self.tickets.push_back(t),
                None => break,
            }
        }
        sink.issued(self.tickets.len() as u64);
        self.begin(ctx, sink, now);
    }

    /// No more tickets: the connection closes and the session is done.
    fn finish<S: Sink>(&mut self, sink: &mut S) {
        self.close_conn(sink);
        self.tickets.clear();
        self.backlog.clear();
        self.scheduled = None;
        self.phase = Phase::Done;
    }

    /// Starts the held tickets (issued already): on the open connection
    /// if it goes to their target, else on a new one.
    fn begin<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        let Some(first) = self.tickets.front() else {
            self.phase = Phase::Idle;
            return;
        };
        let target_index = (first.seq % ctx.targets.len() as u64) as usize;
        let previous = &ctx.targets[self.target];
        let target = &ctx.targets[target_index];
        // An https connection serves only its own host (its certificate's).
        let same_transport =
            previous.tls == target.tls && (!target.tls || previous.host == target.host);
        if target_index != self.target {
            self.addr_index = 0;
        }
        self.target = target_index;
        self.head_request = target.head_request;
        if same_transport && self.conn.is_some_and(|c| target.addrs.contains(&c)) {
            self.deadline = ctx.conn.timeout.map(|t| now + t);
            self.start_write(ctx, sink, now);
        } else {
            self.close_conn(sink);
            self.deadline = None;
            self.phase = Phase::Connect;
        }
    }

    /// The driver starts the connect now (it has a connect turn): where to,
    /// and from which source address. The request's `--timeout` starts
    /// here unless it already runs (a retry).
    pub fn connect_started(
        &mut self,
        ctx: &WorkerCtx,
        now: Instant,
    ) -> (SocketAddr, Option<IpAddr>) {
        let target = &ctx.targets[self.target];
        let addr = target
            .addrs
            .get(self.addr_index)
            .copied()
            .unwrap_or(target.addr);
        self.phase = Phase::Connecting;
        self.conn = Some(addr);
        self.parting = None;
        self.served = 0;
        self.refused = 0;
        self.connect_started = now;
        if self.deadline.is_none() {
            self.deadline = ctx.conn.timeout.map(|t| now + t);
        }
        self.connect_by = ctx.conn.connect_timeout.map(|t| now + t);
        (addr, ctx.bind_addr())
    }

    /// The connection is established: the request goes out, or first
    /// the TLS handshake of an `https://` target (its ClientHello is then
    /// what [`Session::to_send`] holds). The handshake counts against
    /// `--connect-timeout`, whose clock restarts here.
    pub fn on_connected<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        if self.phase != Phase::Connecting {
            return;
        }
        sink.connected(
            now.saturating_duration_since(self.connect_started),
            self.ever_connected,
        );
        self.ever_connected = true;
        self.established = true;
        self.connect_by = None;
        let target = &ctx.targets[self.target];
        if !target.tls {
            return self.start_write(ctx, sink, now);
        }
        let layer = match (&ctx.conn.tls, &target.server_name) {
            (Some(config), Some(name)) => {
                TlsLayer::new(config, name.clone(), now, self.kernel_tls(ctx))
                    .map_err(|e| crate::tls::tls_error(&e, &target.host, self.peer(ctx), true))
            }
            _ => Err(FetchError::new(
                ErrorKind::Other,
                "an https:// target without a TLS configuration (a bug)",
            )),
        };
        match layer {
            Ok(layer) => {
                self.tls = Some(Box::new(layer));
                self.connect_by = ctx.conn.connect_timeout.map(|t| now + t);
                self.phase = Phase::Handshaking;
            }
            Err(error) => self.fail(ctx, sink, error, false, now),
        }
    }

    /// The connect failed (or the socket for it could not be made).
    pub fn on_connect_error<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        error: &std::io::Error,
        now: Instant,
    ) {
        if matches!(self.phase, Phase::Connect | Phase::Connecting) {
            let error = FetchError::connect(error, self.peer(ctx));
            self.connect_failed(ctx, sink, error, now);
        }
    }

    /// Writes the held tickets' requests: one write for the whole batch;
    /// on an HTTP/2 connection, a stream each.
    fn start_write<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        if self.h2.is_some() || self.wants_h2(ctx) {
            return self.h2_start(ctx, sink, now);
        }
        while self.tickets.len() > self.pipeline {
            // More than an HTTP/1.1 connection takes at once.
            if let Some(t) = self.tickets.pop_back() {
                self.backlog.push_front(t);
            }
        }
        self.phase = Phase::Exchanging;
        self.sent_at = now;
        self.sent = 0;
        let one = ctx.targets[self.target].request.len();
        self.send_len = (one * self.tickets.len()).min(ctx.wire(self.target).len());
        self.parser.reset(self.head_request);
        self.head_given = false;
        self.encrypt(ctx, sink);
    }

    /// Over TLS: hands the request bytes not yet encrypted to the TLS
    /// layer, as many as it buffers (rustls bounds what it holds).
    fn encrypt<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S) {
        let Some(tls) = self.tls.as_deref_mut().filter(|t| !t.plaintext_out()) else {
            return;
        };
        while self.sent < self.send_len {
            let n = tls.write(&ctx.wire(self.target)[self.sent..self.send_len]);
            if n == 0 {
                break;
            }
            self.sent += n;
            sink.bytes(0, n as u64);
        }
        tls.promote();
    }

    /// The bytes still to send: the request, or over TLS its ciphertext
    /// (and the handshake's). They stay where they are until sent (the
    /// run's encoded requests, see [`WorkerCtx::wire`], or the TLS layer's
    /// current chunk, which does not change while any of it is unsent), so
    /// a driver may hand them to the kernel by address; over TLS only
    /// until it next calls into the session (see [`Session::is_tls`]).
    #[inline]
    pub fn to_send<'a>(&'a self, ctx: &'a WorkerCtx) -> &'a [u8] {
        match (self.ciphertext_out(), &self.h2) {
            (Some(tls), _) => tls.to_send(),
            (None, Some(h2)) => h2.to_send(),
            (None, None) => ctx
                .wire(self.target)
                .get(self.sent..self.send_len)
                .unwrap_or_default(),
        }
    }

    /// [`Session::to_send`] as a shared handle, for a driver that passes
    /// buffers by ownership (or must keep them alive until the kernel is done).
    pub fn to_send_bytes(&self, ctx: &WorkerCtx) -> bytes::Bytes {
        if let Some(tls) = self.ciphertext_out() {
            return tls.to_send_bytes();
        }
        if let Some(h2) = &self.h2 {
            return h2.to_send_bytes();
        }
        let wire = &ctx.wire[self.target];
        wire.slice(self.sent.min(self.send_len)..self.send_len.min(wire.len()))
    }

    /// Whether [`Session::to_send`] points into the session (TLS, or an
    /// HTTP/2 connection's frames) rather than the run's requests: a
    /// driver that sends by address must then own a
    /// [`Session::to_send_bytes`] handle until the send completes.
    #[inline]
    pub fn sends_owned(&self) -> bool {
        self.ciphertext_out().is_some() || self.h2.is_some()
    }

    /// The TLS layer whose ciphertext the driver sends (none in plaintext
    /// or once the kernel encrypts).
    #[inline]
    fn ciphertext_out(&self) -> Option<&TlsLayer> {
        self.tls.as_deref().filter(|t| !t.plaintext_out())
    }

    /// Whether the kernel decrypts what the socket receives (kernel TLS):
    /// a receive that fails with `EIO` then means a record that is not
    /// application data waits; the driver reads it with
    /// [`crate::ktls::read_record`] and gives it to [`Session::on_tls_record`].
    #[inline]
    pub fn kernel_rx(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.plaintext_in())
    }

    /// Whether a handshake for kernel TLS is under way: a driver then
    /// keeps one receive at a time on the socket (no multishot one), so
    /// that nothing is read past the handshake's end before the receive
    /// keys are installed ([`Want::Offload`]).
    #[inline]
    pub fn handshaking_for_kernel(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.for_kernel())
    }

    /// Whether the kernel encrypts what the socket sends (kernel TLS).
    #[inline]
    pub fn kernel_tx(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.plaintext_out())
    }

    /// Whether this connection's TLS goes to the kernel: the run allows
    /// it, and it speaks HTTP/1.x (the HTTP/2 layer keeps TLS in
    /// userspace for now: ALPN may pick either, and the handshake's kind
    /// is chosen before it).
    fn kernel_tls(&self, ctx: &WorkerCtx) -> bool {
        ctx.kernel_tls && ctx.conn.http2 == crate::backend::Http2::Off
    }

    /// The keys the driver must install now ([`Want::Offload`]).
    pub fn offload(&self) -> Option<(crate::ktls::Dir, &[u8])> {
        self.tls.as_ref().and_then(|t| t.offload_due())
    }

    /// The driver installed (or failed to install) the keys of
    /// [`Session::offload`]. A failure fails the connection's requests:
    /// rustls no longer has the keys to go on in userspace.
    pub fn on_offloaded<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        result: std::io::Result<()>,
        now: Instant,
    ) {
        let Some((dir, _)) = self.offload() else {
            return;
        };
        match result {
            Ok(()) => {
                if let Some(tls) = &mut self.tls {
                    tls.offloaded(dir);
                }
                if dir == crate::ktls::Dir::Tx {
                    sink.kernel_tls();
                }
            }
            Err(e) => {
                let error = FetchError::new(
                    ErrorKind::TlsHandshake,
                    format!(
                        "kernel TLS: the kernel refused the keys ({e}) on the connection to {} (--ktls off keeps TLS in userspace)",
                        self.peer(ctx)
                    ),
                );
                self.fail(ctx, sink, error, false, now);
            }
        }
    }

    /// A record that is not application data arrived under kernel TLS
    /// (see [`Session::kernel_rx`]): `kind` is its content type.
    pub fn on_tls_record<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        kind: u8,
        payload: &[u8],
        now: Instant,
    ) {
        if kind == crate::ktls::APPLICATION_DATA {
            return self.on_plain(ctx, sink, payload, now);
        }
        let Some(tls) = &mut self.tls else {
            return;
        };
        match tls.on_record(kind, payload) {
            Ok(Received::More) => {}
            Ok(Received::Closed) => self.on_eof(ctx, sink, now),
            Err(why) => {
                if !matches!(self.phase, Phase::Handshaking | Phase::Exchanging) {
                    return self.close_conn(sink);
                }
                let error = FetchError::new(
                    ErrorKind::TlsHandshake,
                    format!("{why} (from {})", self.peer(ctx)),
                );
                self.fail(ctx, sink, error, false, now);
            }
        }
    }

    /// The kernel took `n` more bytes of [`Session::to_send`].
    #[inline]
    pub fn on_sent<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, n: usize) {
        if let Some(tls) = self.tls.as_deref_mut().filter(|t| !t.plaintext_out()) {
            tls.on_sent(n);
            if self.phase == Phase::Exchanging {
                if self.h2.is_some() {
                    self.h2_sent(ctx, sink);
                } else {
                    self.encrypt(ctx, sink);
                }
            }
            return;
        }
        if let Some(h2) = &mut self.h2 {
            h2.on_sent(n);
            sink.bytes(0, n as u64);
            return self.h2_sent(ctx, sink);
        }
        if self.phase != Phase::Exchanging {
            return;
        }
        let n = n.min(self.send_len - self.sent);
        self.sent += n;
        sink.bytes(0, n as u64);
    }

    /// Bytes arrived on the connection (over TLS: ciphertext, which the
    /// TLS layer turns into the plaintext the HTTP exchange reads).
    pub fn on_recv<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, data: &[u8], now: Instant) {
        if let Some(tls) = &self.tls {
            if tls.plaintext_in() {
                return self.on_plain(ctx, sink, data, now);
            }
            return self.on_tls_recv(ctx, sink, data, now);
        }
        if self.phase == Phase::Exchanging
            && !self.parser.started()
            && self.h2.as_ref().is_none_or(|h2| !h2.heard())
            && crate::tls::looks_like_tls(data)
        {
            sink.bytes(data.len() as u64, 0);
            return self.fail(
                ctx,
                sink,
                FetchError::tls_on_http(self.peer(ctx)),
                false,
                now,
            );
        }
        self.on_plain(ctx, sink, data, now);
    }

    /// Ciphertext arrived: through the TLS layer, then (once the handshake
    /// is done) the plaintext to the HTTP exchange.
    fn on_tls_recv<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, data: &[u8], now: Instant) {
        let Some(tls) = &mut self.tls else {
            return;
        };
        let handshaking = self.phase == Phase::Handshaking;
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let received = tls.receive(data, &mut plain);
        let finished = handshaking && !tls.is_handshaking();
        let resumed = tls.resumed();
        let took = now.saturating_duration_since(tls.started);
        let idle = !matches!(self.phase, Phase::Handshaking | Phase::Exchanging);
        match received {
            Err(e) => {
                self.plain = plain;
                if idle {
                    return self.close_conn(sink);
                }
                let peer = self.peer(ctx);
                let error = match e {
                    RecvError::NotTls(first) => crate::tls::not_tls(peer, &first),
                    RecvError::Tls(e) => {
                        crate::tls::tls_error(&e, &ctx.targets[self.target].host, peer, handshaking)
                    }
                    RecvError::Io(e) => FetchError::io(&e, peer),
                };
                self.fail(ctx, sink, error, false, now);
            }
            Ok(state) => {
                if finished {
                    sink.handshake(took, resumed);
                    self.connect_by = None;
                    self.start_write(ctx, sink, now);
                }
                // Kernel TLS: the keys leave rustls once the first requests
                // are encrypted behind the handshake's end and the server's
                // records after its Finished are all in (a no-op otherwise).
                if self.phase == Phase::Exchanging
                    && let Some(Err(why)) = self.tls.as_mut().map(|t| t.hand_to_kernel())
                {
                    self.plain = plain;
                    let error = FetchError::new(
                        ErrorKind::TlsHandshake,
                        format!(
                            "kernel TLS with {}: {why} (--ktls off keeps TLS in userspace)",
                            self.peer(ctx)
                        ),
                    );
                    return self.fail(ctx, sink, error, false, now);
                }
                if idle && (!plain.is_empty() || state == Received::Closed) {
                    // Plaintext nobody asked for, or the server's goodbye.
                    self.plain = plain;
                    return self.close_conn(sink);
                }
                if !plain.is_empty() {
                    self.on_plain(ctx, sink, &plain, now);
                }
                self.plain = plain;
                if let Some(tls) = &mut self.tls {
                    tls.promote();
                }
                if state == Received::Closed && self.tls.is_some() {
                    self.on_eof(ctx, sink, now);
                }
            }
        }
    }

    /// HTTP bytes arrived.
    fn on_plain<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, data: &[u8], now: Instant) {
        sink.bytes(data.len() as u64, 0);
        if self.h2.is_some() {
            return self.on_h2_bytes(ctx, sink, data, now);
        }
        if self.phase != Phase::Exchanging {
            // Bytes nobody asked for on an idle connection (a late 408, the
            // excess of a response): it cannot be trusted any more.
            self.close_conn(sink);
            return;
        }
        let mut bytes = data;
        loop {
            let fed = self.parser.feed(bytes);
            if S::COLLECT {
                self.hand_over(sink);
            }
            match fed {
                Ok(Progress::NeedMore) => return,
                Ok(Progress::Done(response)) => {
                    let rest = bytes.get(response.consumed..).unwrap_or_default();
                    if !self.complete(ctx, sink, &response, rest.len(), now) || rest.is_empty() {
                        return;
                    }
                    bytes = rest;
                }
                Err(e) => {
                    let error = FetchError::http(&e, self.peer(ctx));
                    return self.fail(ctx, sink, error, false, now);
                }
            }
        }
    }

    /// Gives the sink what the parser collected of the current response:
    /// its head once, and the body bytes so far, which the parser forgets,
    /// so a body of any length takes one read's worth of memory here.
    fn hand_over<S: Sink>(&mut self, sink: &mut S) {
        let Some(seq) = self.tickets.front().map(|t| t.seq) else {
            return;
        };
        if !self.head_given && !self.parser.head().is_empty() {
            sink.head(seq, self.parser.head());
            self.head_given = true;
        }
        if !self.parser.body().is_empty() {
            sink.body(seq, self.parser.body());
            self.parser.clear_body();
        }
    }

    /// The peer closed the connection.
    pub fn on_eof<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        if self.phase == Phase::Handshaking {
            let error = FetchError::new(
                ErrorKind::EarlyEof,
                format!(
                    "{} closed the connection during the TLS handshake",
                    self.peer(ctx)
                ),
            );
            return self.fail(ctx, sink, error, false, now);
        }
        if self.phase != Phase::Exchanging {
            // An idle keep-alive connection the server closed: reopen on next use.
            self.close_conn(sink);
            return;
        }
        if self.h2.is_some() {
            let error = FetchError::new(
                ErrorKind::EarlyEof,
                format!(
                    "{} closed the HTTP/2 connection with requests under way",
                    self.peer(ctx)
                ),
            );
            return self.h2_fail(ctx, sink, error, now);
        }
        let started = self.parser.started();
        match self.parser.feed_eof() {
            Ok(response) => {
                // A close-delimited body ends here, and the connection with it.
                self.close_conn(sink);
                self.complete(ctx, sink, &response, 0, now);
            }
            Err(e) => {
                let error = FetchError::http(&e, self.peer(ctx));
                self.fail(ctx, sink, error, !started, now);
            }
        }
    }

    /// A send or receive failed.
    pub fn on_io_error<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        error: &std::io::Error,
        now: Instant,
    ) {
        match self.phase {
            Phase::Connecting => self.on_connect_error(ctx, sink, error, now),
            Phase::Handshaking => {
                let error = FetchError::io(error, self.peer(ctx));
                self.fail(ctx, sink, error, false, now);
            }
            Phase::Exchanging if self.h2.is_some() => {
                let error = FetchError::io(error, self.peer(ctx));
                self.h2_fail(ctx, sink, error, now);
            }
            Phase::Exchanging => {
                let started = self.parser.started();
                let error = FetchError::io(error, self.peer(ctx));
                self.fail(ctx, sink, error, !started, now);
            }
            // An idle connection broke: reopen on next use.
            _ => self.close_conn(sink),
        }
    }

    /// A deadline of [`Session::deadline`] may have passed.
    pub fn on_timer<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        let passed = |at: Option<Instant>| at.is_some_and(|a| now >= a);
        // The earlier of the two limits names the failure.
        let connect_limit_first = passed(self.connect_by)
            && self
                .deadline
                .is_none_or(|d| self.connect_by.is_some_and(|c| c <= d));
        let connect_limit = ctx.conn.connect_timeout.unwrap_or_default();
        let error = match self.phase {
            Phase::Scheduled if self.tickets.front().is_some_and(|t| now >= t.intended) => {
                sink.issued(self.tickets.len() as u64);
                return self.begin(ctx, sink, now);
            }
            Phase::Exchanging if self.h2.is_some() => return self.h2_timer(ctx, sink, now),
            Phase::Connecting if connect_limit_first => {
                let error = FetchError::connect_timeout(connect_limit, self.peer(ctx));
                return self.connect_failed(ctx, sink, error, now);
            }
            Phase::Handshaking if connect_limit_first => {
                FetchError::handshake_timeout(connect_limit, self.peer(ctx))
            }
            Phase::Connecting | Phase::Handshaking | Phase::Exchanging if passed(self.deadline) => {
                FetchError::timeout(ctx.conn.timeout.unwrap_or_default())
            }
            _ => return,
        };
        self.fail(ctx, sink, error, false, now);
    }

    /// A connect failed: the target's next address is tried (as curl tries
    /// every address a name has) if the failure was the address's (refused,
    /// unreachable, timed out); else the requests fail.
    fn connect_failed<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        error: FetchError,
        now: Instant,
    ) {
        let addrs = ctx.targets[self.target].addrs.len();
        let address_failed = matches!(
            error.kind,
            ErrorKind::Refused | ErrorKind::Unreachable | ErrorKind::ConnectTimeout
        );
        if address_failed && self.addr_index + 1 < addrs && !ctx.plan.is_over(now) {
            self.addr_index += 1;
            self.close_conn(sink);
            self.phase = Phase::Connect;
            return;
        }
        // Every address failed: the next request starts from the first.
        self.addr_index = 0;
        self.fail(ctx, sink, error, false, now);
    }

    /// The run is over (its deadline, Ctrl-C, or the driver's end): what is
    /// under way is in flight, a due open-loop ticket too; the connection closes.
    pub fn cut_off<S: Sink>(&mut self, sink: &mut S, now: Instant) {
        let mut n = self.backlog.len() as u64;
        match self.phase {
            Phase::Scheduled if self.tickets.front().is_some_and(|t| t.intended <= now) => {
                sink.issued(1);
                n += 1;
            }
            Phase::Connect | Phase::Connecting | Phase::Handshaking | Phase::Exchanging => {
                n += (self.tickets.len() + self.h2.as_ref().map_or(0, |h2| h2.active())) as u64;
            }
            _ => {}
        }
        if self.scheduled.take().is_some_and(|t| t.intended <= now) {
            sink.issued(1);
            n += 1;
        }
        if n > 0 {
            sink.in_flight(n);
        }
        self.finish(sink);
    }

    /// The driver cannot go on (its ring broke): what is under way fails
    /// with `error`, and the session is done.
    pub fn abort<S: Sink>(&mut self, sink: &mut S, error: &FetchError) {
        if self.is_busy() {
            self.h2_collapse();
            for t in self.tickets.drain(..) {
                sink.failed(t.seq, error);
            }
        }
        for t in self.backlog.drain(..) {
            sink.failed(t.seq, error);
        }
        self.finish(sink);
    }

    /// One response is complete, with `excess` bytes after it in the same
    /// read. Records it against the oldest ticket; returns whether more
    /// responses are awaited on this connection.
    fn complete<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        response: &Response,
        excess: usize,
        now: Instant,
    ) -> bool {
        if ctx.plan.is_over(now) {
            // Too late: the run ended before this response did.
            self.cut_off(sink, now);
            return false;
        }
        let Some(ticket) = self.tickets.pop_front() else {
            return false;
        };
        self.served += 1;
        let excess = if self.tickets.is_empty() { excess } else { 0 };
        self.head_given = false;
        sink.response(&Done {
            seq: ticket.seq,
            response,
            origin: ctx.plan.latency_origin(&ticket, self.sent_at),
            sent_at: self.sent_at,
            now,
            peer: self.peer(ctx),
            excess,
        });
        // A server may answer before the request's body has all gone out
        // (as Node does with a body it does not read): the rest of the
        // body, or a send still under way, would precede the next request
        // on that connection, so it is not reused.
        let sent_whole =
            self.sent >= self.send_len && self.tls.as_ref().is_none_or(|t| !t.has_unsent());
        let reusable = response.keep_alive && ctx.conn.keep_alive && excess == 0 && sent_whole;
        if self.tickets.is_empty() {
            if !reusable {
                self.close_conn(sink);
            }
            self.phase = Phase::Idle;
            return false;
        }
        if !reusable || self.conn.is_none() {
            // The server ends the connection here (RFC 9112 §9.6): the rest
            // of the batch goes to a new one.
            self.close_conn(sink);
            sink.retried(self.tickets.len() as u64);
            self.phase = Phase::Connect;
            return false;
        }
        self.parser.reset(self.head_request);
        true
    }

    /// The connection failed: retried on a new one (see the module docs)
    /// if `before_response` (no byte of the current response had come)
    /// allows it, else every awaited ticket fails with `error`.
    fn fail<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        error: FetchError,
        before_response: bool,
        now: Instant,
    ) {
        if ctx.plan.is_over(now) {
            // The end of the run cut it off (a blocked driver's socket is
            // shut down then): in flight, not an error.
            return self.cut_off(sink, now);
        }
        let answered_before = self.served > 0;
        self.close_conn(sink);
        let retry = before_response
            && answered_before
            && matches!(error.kind, ErrorKind::EarlyEof | ErrorKind::Reset)
            && !self.tickets.is_empty();
        if retry {
            sink.retried(self.tickets.len() as u64);
            self.phase = Phase::Connect;
            return;
        }
        for t in self.tickets.drain(..) {
            sink.failed(t.seq, &error);
        }
        self.phase = Phase::Idle;
    }

    /// Forgets the connection; the driver closes its socket.
    fn close_conn<S: Sink>(&mut self, sink: &mut S) {
        if self.conn.take().is_some() {
            self.close = true;
        }
        if std::mem::take(&mut self.established) {
            sink.closed();
        }
        self.tls = None;
        self.h2 = None;
        self.served = 0;
        self.refused = 0;
    }
}
