//! The session on an HTTP/2 connection: tickets become streams, up to
//! `--streams` at once and never more than the server allows, and what
//! the HTTP/2 layer ([`super::h2`]) reports is counted through the sink
//! by the same rules as HTTP/1.x.
//!
//! - A connection takes a batch of due tickets when it starts, and after
//!   that a new ticket from the plan whenever a stream ends, so it keeps
//!   `--streams` requests in flight; an open-loop ticket taken before its
//!   time waits in `scheduled` (not issued) and opens when due.
//! - Each stream's latency counts from its own start (or its ticket's
//!   intended time, open loop), into the same histogram as HTTP/1.x.
//! - A connection error (kind `h2_protocol`), the server's close or a
//!   socket error end every stream on the connection; they are retried on
//!   a new connection only when none of them had heard anything and the
//!   connection had answered before (the HTTP/1.x rule). Streams above a
//!   GOAWAY's last stream id go to a new connection if the connection had
//!   answered something, else they fail.
//! - A stream the server refused (RST_STREAM REFUSED_STREAM: it did not
//!   process the request, RFC 9113 §8.7) is opened again, while the
//!   refusals since the connection's last response are fewer than
//!   `--streams`; past that the request fails (kind `stream_reset`), so a
//!   server that refuses everything cannot keep a run going round.
//! - Tickets the connection cannot take (the server allows fewer streams,
//!   even none) wait at most their `--timeout`.
//! - Without keep-alive (`--disable-keepalive`) a connection opens one
//!   batch of `--streams` streams and no more.
//! - With no stream left, a connection that got GOAWAY (or runs without
//!   keep-alive) closes; the tickets that wait take a new one. One that
//!   stays open sends its replies (a PING's, a SETTINGS ACK) before it
//!   waits, and answers what comes while it waits at once, on drivers that
//!   read idle connections (uring-loop, epoll-loop; the others read them
//!   when the next ticket is due).
//! - The only timers while streams are open end the connection: a
//!   stream's `--timeout` (the others go to a new connection) and the
//!   server's time to acknowledge SETTINGS. An open-loop ticket that
//!   comes due meanwhile opens at the next event on the connection (its
//!   latency still counts from its time): the futures drivers cancel a
//!   pending receive when a timer fires, and uring-async would lose what
//!   that receive got.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::h2::{Event, H2Conn};
use super::{Done, Phase, Session, Sink};
use crate::backend::{Http2, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::http::h2::{H2Error, NO_ERROR, REFUSED_STREAM, error_name};
use crate::plan::Ticket;

/// How close to its deadline a stream times out with one that is due.
const TIMER_SLACK: std::time::Duration = std::time::Duration::from_millis(1);

impl Session {
    /// Whether the connection speaks HTTP/2: an `https://` one if ALPN
    /// chose `h2`, an `http://` one with `--http2-prior-knowledge`.
    pub(super) fn wants_h2(&self, ctx: &WorkerCtx) -> bool {
        match &self.tls {
            Some(tls) => ctx.conn.http2 != Http2::Off && tls.alpn_h2(),
            None => ctx.conn.http2 == Http2::PriorKnowledge,
        }
    }

    /// How many due tickets a connection takes when it starts.
    pub(super) fn batch(&self, ctx: &WorkerCtx) -> usize {
        if ctx.conn.http2 == Http2::Off {
            self.pipeline
        } else {
            ctx.conn.streams.max(1)
        }
    }

    /// The held tickets go out as streams, on a new HTTP/2 connection (its
    /// preface first) or the open one.
    pub(super) fn h2_start<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        self.phase = Phase::Exchanging;
        if self.h2.is_none() {
            let ack_within = ctx
                .conn
                .connect_timeout
                .unwrap_or(std::time::Duration::from_secs(10));
            self.h2 = Some(Box::new(H2Conn::new(S::COLLECT, now, ack_within)));
            sink.h2_connection();
        }
        self.h2_settle(ctx, sink, now);
    }

    /// Opens streams while the connection has room: held tickets first,
    /// then new ones from the plan.
    fn h2_open<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        let Some(h2) = self.h2.as_deref_mut() else {
            return;
        };
        if let Some(t) = self.scheduled.take_if(|t| t.intended <= now) {
            sink.issued(1);
            self.tickets.push_back(t);
        }
        let streams = ctx.conn.streams.max(1);
        let targets = ctx.targets.len().max(1) as u64;
        // Without keep-alive a connection carries one batch of streams,
        // then closes (`h2_settle`): a new connection for every request,
        // or every `--streams` of them.
        let fresh = |h2: &H2Conn| ctx.conn.keep_alive || h2.opened() < streams;
        while h2.room() > 0 && h2.active() < streams && fresh(h2) {
            let ticket = match self.tickets.pop_front() {
                Some(t) => t,
                None if self.scheduled.is_some() => break,
                None => match ctx.plan.next_ticket_at(now) {
                    None => break,
                    Some(t) if t.intended > now => {
                        self.scheduled = Some(t);
                        break;
                    }
                    Some(t) => {
                        sink.issued(1);
                        t
                    }
                },
            };
            let target = (ticket.seq % targets) as usize;
            let Some(req) = ctx.h2.get(target) else {
                self.tickets.push_front(ticket);
                break;
            };
            // A stream sent again keeps its first one's `--timeout`.
            let deadline = ticket
                .deadline
                .or_else(|| ctx.conn.timeout.map(|t| now + t));
            h2.open(ticket, target, req, now, deadline);
        }
        sink.h2_streams_open(h2.active());
        h2.pump(&ctx.h2);
        // Tickets the connection cannot take yet (the server allows fewer
        // streams, even none) wait at most their `--timeout`.
        if self.tickets.is_empty() {
            self.deadline = None;
        } else if self.deadline.is_none() {
            self.deadline = ctx.conn.timeout.map(|t| now + t);
        }
    }

    /// After anything happened on the connection: more streams if there
    /// is room; with none left open, the connection is idle, or closes
    /// (GOAWAY, no keep-alive) and what waits takes a new one.
    fn h2_settle<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        if ctx.plan.is_over(now) {
            return self.cut_off(sink, now);
        }
        self.h2_open(ctx, sink, now);
        let Some(h2) = self.h2.as_deref() else {
            return;
        };
        if h2.active() == 0 {
            let closing = h2.is_going_away() || !ctx.conn.keep_alive;
            if closing {
                self.h2_close(sink);
            }
            if !self.tickets.is_empty() {
                if closing {
                    self.phase = Phase::Connect;
                    return;
                }
                // The server allows no stream now: its SETTINGS will.
            } else {
                self.h2_flush(sink);
                if self.h2_unsent() {
                    // Replies (a SETTINGS ACK, a PING's) still go out: the
                    // connection exchanges until they are sent, and
                    // `h2_sent` settles it again; a ticket waiting for its
                    // time waits in `scheduled` meanwhile.
                    return;
                }
                if let Some(t) = self.scheduled.take() {
                    self.tickets.push_back(t);
                    self.phase = Phase::Scheduled;
                } else {
                    self.phase = Phase::Idle;
                }
                return;
            }
        }
        self.h2_flush(sink);
    }

    /// Hands the frames produced to the socket: offered as the next chunk,
    /// or encrypted by the TLS layer.
    fn h2_flush<S: Sink>(&mut self, sink: &mut S) {
        let Some(h2) = self.h2.as_deref_mut() else {
            return;
        };
        match self.tls.as_deref_mut() {
            Some(tls) => {
                while !h2.pending().is_empty() {
                    let n = tls.write(h2.pending());
                    if n == 0 {
                        break;
                    }
                    h2.consume(n);
                    sink.bytes(0, n as u64);
                }
                tls.promote();
            }
            None => h2.promote(),
        }
    }

    /// Some of the connection's bytes went: more request body may go. A
    /// connection that had only replies to send (see `on_h2_bytes`) goes
    /// back to waiting once they are out.
    pub(super) fn h2_sent<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S) {
        let Some(h2) = self.h2.as_deref_mut() else {
            return;
        };
        h2.pump(&ctx.h2);
        let streams = h2.active();
        self.h2_flush(sink);
        if streams == 0 && self.phase == Phase::Exchanging && !self.h2_unsent() {
            // Rare (replies on an idle connection, or tickets held for
            // want of a stream): the clock is read only here.
            self.h2_settle(ctx, sink, Instant::now());
        }
    }

    /// Whether frames wait to go out (produced, or encrypted and unsent).
    fn h2_unsent(&self) -> bool {
        let Some(h2) = self.h2.as_deref() else {
            return false;
        };
        !h2.pending().is_empty()
            || !h2.to_send().is_empty()
            || self.tls.as_deref().is_some_and(|t| t.has_unsent())
    }

    /// Bytes from the server (plaintext, over TLS).
    pub(super) fn on_h2_bytes<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        data: &[u8],
        now: Instant,
    ) {
        let peer = self.peer(ctx);
        let Some(h2) = self.h2.as_deref_mut() else {
            return;
        };
        let mut conn = ConnCounts {
            retry: &mut self.tickets,
            served: &mut self.served,
            refused: &mut self.refused,
        };
        let result = h2.receive(data, &ctx.h2, &mut |e| {
            on_event(e, ctx, sink, peer, now, &mut conn);
        });
        if let Err(e) = result {
            return self.h2_error(ctx, sink, peer, e, now);
        }
        if self.phase == Phase::Exchanging {
            return self.h2_settle(ctx, sink, now);
        }
        // An idle connection: a GOAWAY closes it. Replies (to a PING, the
        // SETTINGS ack) go out now, not with the next request: a server
        // that pings idle connections closes those that do not answer.
        // The connection exchanges until they are sent ([`h2_sent`]),
        // and a ticket waiting for its time waits in `scheduled`.
        if self.h2.as_ref().is_some_and(|h2| h2.is_going_away()) {
            return self.h2_close(sink);
        }
        if self.h2_unsent() && matches!(self.phase, Phase::Idle | Phase::Scheduled) {
            if self.phase == Phase::Scheduled {
                self.scheduled = self.tickets.pop_front();
            }
            self.phase = Phase::Exchanging;
            self.h2_flush(sink);
        }
    }

    /// A deadline passed: streams past their `--timeout` are cancelled,
    /// a due open-loop ticket opens.
    pub(super) fn h2_timer<S: Sink>(&mut self, ctx: &WorkerCtx, sink: &mut S, now: Instant) {
        let peer = self.peer(ctx);
        let Some(h2) = self.h2.as_deref_mut() else {
            return;
        };
        let mut conn = ConnCounts {
            retry: &mut self.tickets,
            served: &mut self.served,
            refused: &mut self.refused,
        };
        let before = h2.active();
        // Streams whose deadlines fall within a millisecond of each other
        // (a batch opened together) time out together, however precise
        // the driver's timer: none goes to a new connection only to time
        // out there a moment later.
        let result = h2.expire(now + TIMER_SLACK, &mut |e| {
            on_event(e, ctx, sink, peer, now, &mut conn);
        });
        if let Err(e) = result {
            return self.h2_error(ctx, sink, peer, e, now);
        }
        if h2.active() < before {
            // Streams timed out: the connection ends with them (as an
            // HTTP/1.1 one does), and the others go to a new one. A driver
            // whose timer cancels a pending receive (uring-async) could
            // lose bytes of the connection; a new one loses none.
            self.h2_collapse();
            let n = self.tickets.len() as u64;
            if n > 0 {
                sink.retried(n);
            }
            self.h2_close(sink);
            self.phase = if self.tickets.is_empty() {
                Phase::Idle
            } else {
                Phase::Connect
            };
            return;
        }
        if let Some(t) = self.scheduled.take_if(|t| t.intended <= now) {
            sink.issued(1);
            self.tickets.push_back(t);
        }
        let held_too_long = self.deadline.is_some_and(|d| now >= d);
        if held_too_long && !self.tickets.is_empty() && !ctx.plan.is_over(now) {
            // The server allowed no stream for them within `--timeout`.
            let error = FetchError::timeout(ctx.conn.timeout.unwrap_or_default());
            for t in self.tickets.drain(..) {
                sink.failed(t.seq, &error);
            }
            self.deadline = None;
        }
        self.h2_settle(ctx, sink, now);
    }

    /// A connection error the session found (kind `h2_protocol`): the
    /// server is told with GOAWAY and its code, and every stream fails.
    fn h2_error<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        peer: SocketAddr,
        e: H2Error,
        now: Instant,
    ) {
        self.h2_part(e.code, e.reason.as_bytes());
        let error = FetchError::new(ErrorKind::H2Protocol, format!("{peer}: {e}"));
        self.h2_fail(ctx, sink, error, now);
    }

    /// The session ends the connection with nothing wrong: GOAWAY
    /// NO_ERROR, then the close.
    fn h2_close<S: Sink>(&mut self, sink: &mut S) {
        self.h2_part(NO_ERROR, b"");
        self.close_conn(sink);
    }

    /// The connection ends on our side, its socket still sound: GOAWAY
    /// with `code` goes out before it closes, over TLS with close_notify
    /// (see [`Session::take_parting`]); nothing if bytes offered to the
    /// driver are still unsent.
    fn h2_part(&mut self, code: u32, debug: &[u8]) {
        let Some(h2) = self.h2.as_deref_mut() else {
            return;
        };
        let Some(frames) = h2.parting(code, debug) else {
            return;
        };
        self.parting = match self.tls.as_deref_mut() {
            Some(tls) => tls.parting(&frames),
            None => Some(frames.to_vec()),
        };
    }

    /// Puts the open streams' tickets back in front of the held ones.
    pub(super) fn h2_collapse(&mut self) {
        if let Some(h2) = self.h2.as_deref_mut() {
            let open: Vec<Ticket> = h2.drain_tickets().collect();
            for t in open.into_iter().rev() {
                self.tickets.push_front(t);
            }
        }
    }

    /// The connection failed: every stream with it (see the module docs).
    pub(super) fn h2_fail<S: Sink>(
        &mut self,
        ctx: &WorkerCtx,
        sink: &mut S,
        error: FetchError,
        now: Instant,
    ) {
        let unanswered = self.h2.as_ref().is_none_or(|h2| !h2.any_answer());
        self.h2_collapse();
        self.fail(ctx, sink, error, unanswered, now);
    }
}

/// What the session keeps of its connection that events change.
struct ConnCounts<'a> {
    /// Tickets to open again (on this connection if it can take them).
    retry: &'a mut VecDeque<Ticket>,
    /// Responses completed on the connection.
    served: &'a mut u64,
    /// Streams refused since its last response.
    refused: &'a mut usize,
}

/// What one event of the HTTP/2 layer means for the counts.
fn on_event<S: Sink>(
    e: Event<'_>,
    ctx: &WorkerCtx,
    sink: &mut S,
    peer: SocketAddr,
    now: Instant,
    conn: &mut ConnCounts<'_>,
) {
    let over = ctx.plan.is_over(now);
    let fail = |sink: &mut S, ticket: Ticket, error: FetchError| {
        if over {
            // The run ended first: in flight, as with HTTP/1.x.
            sink.in_flight(1);
        } else {
            sink.failed(ticket.seq, &error);
        }
    };
    match e {
        Event::Head { seq, head } => sink.head(seq, head),
        Event::Body { seq, bytes } => sink.body(seq, bytes),
        Event::Done {
            ticket,
            sent_at,
            response,
        } => {
            *conn.served += 1;
            *conn.refused = 0;
            if over {
                sink.in_flight(1);
                return;
            }
            sink.response(&Done {
                seq: ticket.seq,
                response: &response,
                origin: ctx.plan.latency_origin(&ticket, sent_at),
                sent_at,
                now,
                peer,
                excess: 0,
            });
        }
        Event::Reset { ticket, code } => {
            sink.stream_reset(code);
            // REFUSED_STREAM: the server did not process the request
            // (RFC 9113 §8.7), so it is sent again, as curl does; while
            // the refusals since the connection's last response are fewer
            // than the streams it may have open, so a server that refuses
            // everything fails the requests instead of looping.
            if code == REFUSED_STREAM && !over && *conn.refused < ctx.conn.streams.max(1) {
                *conn.refused += 1;
                sink.retried(1);
                conn.retry.push_back(ticket);
                return;
            }
            let error = FetchError::new(
                ErrorKind::StreamReset,
                format!("{peer} reset the stream ({})", error_name(code)),
            );
            fail(sink, ticket, error);
        }
        Event::Failed { ticket, reason } => {
            let error = FetchError::new(ErrorKind::BadResponse, format!("{peer}: {reason}"));
            fail(sink, ticket, error);
        }
        Event::TimedOut { ticket } => {
            let error = FetchError::timeout(ctx.conn.timeout.unwrap_or_default());
            fail(sink, ticket, error);
        }
        Event::Retry { ticket, code } => {
            if *conn.served > 0 {
                sink.retried(1);
                conn.retry.push_back(ticket);
            } else {
                let error = FetchError::new(
                    ErrorKind::Reset,
                    format!(
                        "{peer} sent GOAWAY ({}) before answering any request on the connection",
                        error_name(code)
                    ),
                );
                fail(sink, ticket, error);
            }
        }
        Event::GoAway { code } => sink.goaway(code),
    }
}
