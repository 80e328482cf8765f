//! The session's HTTP/2 layer (RFC 9113): a client connection's framing,
//! settings, flow control and stream table, sans-IO.
//!
//! [`H2Conn`] takes the bytes the server sent ([`H2Conn::receive`]) and
//! tells the session what they meant through [`Event`]s (a response
//! complete, a stream reset, requests to retry elsewhere after a GOAWAY);
//! what it has to say goes into an outgoing buffer the session sends
//! (plain: [`H2Conn::to_send`], which stays put until sent, as the TLS
//! layer's; over TLS: [`H2Conn::pending`], handed to the TLS layer).
//! HPACK is `loona_hpack`'s; requests are encoded once per run
//! ([`request`]).
//!
//! Invariants and limits:
//! - Every error the server can cause is a value: an [`H2Error`] is a
//!   connection error (the session fails the connection's streams with
//!   kind `h2_protocol` and the reason); a stream error ends one stream.
//! - Memory per connection is bounded whatever the server sends: one
//!   partial frame (at most our `SETTINGS_MAX_FRAME_SIZE`, 16 KiB), one
//!   header block under way ([`MAX_HEADER_BLOCK`], at most
//!   [`MAX_CONTINUATIONS`] frames), the HPACK table we announced (4 KiB),
//!   and replies to PING and SETTINGS until [`MAX_CONTROL_BACKLOG`] (a
//!   flood past it is `ENHANCE_YOUR_CALM`). Request bodies are framed only
//!   while less than [`DATA_BACKLOG`] waits, and never past the peer's
//!   windows.
//! - Streams are kept in the order they were opened, so the oldest (the
//!   first) holds the earliest deadline, and a stream is found by id with
//!   a binary search.
//! - As h2load does, the client announces windows of 2^30-1 for the
//!   connection and each stream, and gives the connection window back
//!   once half of it is used, so a response is never held up by us.

mod head;
mod memo;
mod recv;
pub(crate) mod request;
mod strings;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use self::request::H2Request;
use crate::http::Response;
use crate::http::h2::*;
use crate::plan::Ticket;

/// The stream and connection windows the client announces (h2load's).
const OUR_WINDOW: i64 = (1 << 30) - 1;
/// The header list size the client announces and enforces per response.
pub(crate) const MAX_HEADER_LIST: usize = 64 * 1024;
/// The most bytes of one header block (HEADERS and its CONTINUATIONs)
/// gathered before the connection is given up.
pub(crate) const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Control replies (PING and SETTINGS acks) that may wait unsent.
pub(crate) const MAX_CONTROL_BACKLOG: usize = 1 << 20;
/// Request body bytes framed ahead of the socket.
const DATA_BACKLOG: usize = 64 * 1024;
/// The largest stream identifier.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// What received frames meant for the session's tickets.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// With `collect`: a response head, as `HTTP/2 200` and `name: value` lines.
    Head { seq: u64, head: &'a [u8] },
    /// With `collect`: body bytes.
    Body { seq: u64, bytes: &'a [u8] },
    /// A response is complete.
    Done {
        ticket: Ticket,
        sent_at: Instant,
        response: Response,
    },
    /// The server reset the stream (RST_STREAM with `code`).
    Reset { ticket: Ticket, code: u32 },
    /// The stream failed on its own (a response the client cannot take).
    Failed { ticket: Ticket, reason: String },
    /// The request's `--timeout` passed; the stream was cancelled.
    TimedOut { ticket: Ticket },
    /// The server will not process this request (above a GOAWAY's last
    /// stream): it goes to a new connection.
    Retry { ticket: Ticket, code: u32 },
    /// The server sent GOAWAY: no new streams on this connection.
    GoAway { code: u32 },
}

/// One request on the connection.
#[derive(Debug)]
struct Stream {
    id: u32,
    ticket: Ticket,
    /// Which of the run's requests (its target's).
    target: usize,
    sent_at: Instant,
    deadline: Option<Instant>,
    /// What the server still lets us send on it, and what we let it.
    send_window: i64,
    recv_window: i64,
    /// Request body bytes framed so far (all of it: END_STREAM went out).
    body_sent: usize,
    /// The final response's status; 0 until its head came.
    status: u16,
    head_bytes: usize,
    body_bytes: u64,
    wire_bytes: u64,
}

/// The client side of one HTTP/2 connection.
pub(crate) struct H2Conn {
    collect: bool,
    /// A frame split across reads, until it is whole.
    partial: Vec<u8>,
    /// Frames produced and not yet offered ([`H2Conn::promote`]).
    next: BytesMut,
    /// The chunk offered to the driver, and how much of it went.
    sending: Bytes,
    sent: usize,
    streams: VecDeque<Stream>,
    next_id: u32,
    /// Streams with request body left to send.
    uploading: usize,
    /// The peer's settings, as they apply to what we send.
    peer_settings: bool,
    peer_max_streams: usize,
    peer_initial_window: i64,
    peer_max_frame: usize,
    /// Connection windows: what we may still send, and what we allow.
    send_window: i64,
    recv_window: i64,
    /// Our SETTINGS await the server's ACK until then.
    settings_by: Option<Instant>,
    ack_within: Duration,
    /// The lowest last-stream id of the server's GOAWAYs.
    goaway: Option<u32>,
    /// The server's header blocks, HPACK-decoded.
    heads: head::HeadDecoder,
    /// A header block under way.
    block: HeaderBlock,
    /// With `collect`: the head being written out.
    head: Vec<u8>,
    /// Responses completed on the connection.
    pub served: u64,
    /// Whether any byte came from the server.
    heard: bool,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn")
            .field("streams", &self.streams.len())
            .field("next_id", &self.next_id)
            .field("goaway", &self.goaway)
            .finish()
    }
}

impl H2Conn {
    /// A connection whose preface, SETTINGS and first WINDOW_UPDATE are
    /// ready to send; `collect` keeps heads and bodies (`get`). The server
    /// has `ack_within` to acknowledge the SETTINGS (the session gives it
    /// `--connect-timeout`: it is part of setting the connection up;
    /// nghttp2 gives 10 s).
    pub fn new(collect: bool, now: Instant, ack_within: Duration) -> Self {
        let mut next = BytesMut::with_capacity(4096);
        next.put_slice(PREFACE);
        put_settings(
            &mut next,
            &[
                (SETTINGS_ENABLE_PUSH, 0),
                (SETTINGS_INITIAL_WINDOW_SIZE, OUR_WINDOW as u32),
                (SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST as u32),
            ],
        );
        put_window_update(&mut next, 0, (OUR_WINDOW - DEFAULT_WINDOW) as u32);
        Self {
            collect,
            partial: Vec::new(),
            next,
            sending: Bytes::new(),
            sent: 0,
            streams: VecDeque::new(),
            next_id: 1,
            uploading: 0,
            peer_settings: false,
            peer_max_streams: usize::MAX,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: DEFAULT_MAX_FRAME,
            send_window: DEFAULT_WINDOW,
            recv_window: OUR_WINDOW,
            settings_by: Some(now + ack_within),
            ack_within,
            goaway: None,
            heads: head::HeadDecoder::default(),
            block: HeaderBlock::default(),
            head: Vec::new(),
            served: 0,
            heard: false,
        }
    }

    /// Streams open now.
    #[inline]
    pub fn active(&self) -> usize {
        self.streams.len()
    }

    /// How many streams the connection has opened.
    pub fn opened(&self) -> usize {
        (self.next_id / 2) as usize
    }

    /// Whether the server sent GOAWAY (or stream ids ran out).
    pub fn is_going_away(&self) -> bool {
        self.goaway.is_some() || self.next_id > MAX_STREAM_ID
    }

    /// How many more streams may open now: none after GOAWAY, one until
    /// the server's SETTINGS came (its limit is unknown until then),
    /// else up to its `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub fn room(&self) -> usize {
        if self.is_going_away() {
            return 0;
        }
        let limit = if self.peer_settings {
            self.peer_max_streams
        } else {
            1
        };
        limit.saturating_sub(self.streams.len())
    }

    /// The earliest deadline: the oldest stream's `--timeout`, or the
    /// server's time to acknowledge our SETTINGS.
    pub fn deadline(&self) -> Option<Instant> {
        let oldest = self.streams.front().and_then(|s| s.deadline);
        match (oldest, self.settings_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Opens a stream for `ticket` with request `req` (of target `target`).
    pub fn open(
        &mut self,
        ticket: Ticket,
        target: usize,
        req: &H2Request,
        now: Instant,
        deadline: Option<Instant>,
    ) {
        let id = self.next_id;
        self.next_id += 2;
        let body = !req.body.is_empty();
        let block = &req.block[..];
        let max = self.peer_max_frame;
        let first = block.len().min(max);
        let mut flags = if body { 0 } else { END_STREAM };
        if first == block.len() {
            flags |= END_HEADERS;
        }
        put_head(&mut self.next, first, HEADERS, flags, id);
        self.next.put_slice(&block[..first]);
        let mut rest = &block[first..];
        while !rest.is_empty() {
            let n = rest.len().min(max);
            let flags = if n == rest.len() { END_HEADERS } else { 0 };
            put_head(&mut self.next, n, CONTINUATION, flags, id);
            self.next.put_slice(&rest[..n]);
            rest = &rest[n..];
        }
        self.streams.push_back(Stream {
            id,
            ticket,
            target,
            sent_at: now,
            deadline,
            send_window: self.peer_initial_window,
            recv_window: OUR_WINDOW,
            body_sent: if body { 0 } else { usize::MAX },
            status: 0,
            head_bytes: 0,
            body_bytes: 0,
            wire_bytes: 0,
        });
        if body {
            self.uploading += 1;
        }
    }

    /// Frames request body bytes as the windows allow and the backlog
    /// has room; `reqs` are the run's requests, by target.
    pub fn pump(&mut self, reqs: &[H2Request]) {
        if self.uploading == 0 {
            return;
        }
        for s in self.streams.iter_mut() {
            let Some(body) = reqs.get(s.target).map(|r| &r.body) else {
                continue;
            };
            while s.body_sent < body.len() {
                let room = DATA_BACKLOG.saturating_sub(self.next.len());
                let n = (body.len() - s.body_sent)
                    .min(self.peer_max_frame)
                    .min(room)
                    .min(self.send_window.max(0) as usize)
                    .min(s.send_window.max(0) as usize);
                if n == 0 {
                    return;
                }
                let last = s.body_sent + n == body.len();
                put_head(
                    &mut self.next,
                    n,
                    DATA,
                    if last { END_STREAM } else { 0 },
                    s.id,
                );
                self.next.put_slice(&body[s.body_sent..s.body_sent + n]);
                s.body_sent += n;
                self.send_window -= n as i64;
                s.send_window -= n as i64;
                if last {
                    s.body_sent = usize::MAX;
                    self.uploading -= 1;
                }
            }
        }
    }

    /// Cancels the streams whose `--timeout` passed (RST_STREAM CANCEL);
    /// an error if the server left our SETTINGS unacknowledged too long.
    pub fn expire<F: FnMut(Event<'_>)>(&mut self, now: Instant, f: &mut F) -> Result<(), H2Error> {
        if self.settings_by.is_some_and(|by| now >= by) {
            return Err(err(
                SETTINGS_TIMEOUT,
                format!(
                    "the server did not acknowledge the client's SETTINGS within {:?}",
                    self.ack_within
                ),
            ));
        }
        while self
            .streams
            .front()
            .is_some_and(|s| s.deadline.is_some_and(|d| now >= d))
        {
            if let Some(s) = self.remove(0) {
                put_rst(&mut self.next, s.id, CANCEL);
                f(Event::TimedOut { ticket: s.ticket });
            }
        }
        Ok(())
    }

    /// Gives up every stream (the connection is closing): their tickets,
    /// each with its stream's deadline (its `--timeout` goes on).
    pub fn drain_tickets(&mut self) -> impl Iterator<Item = Ticket> + '_ {
        self.uploading = 0;
        self.streams.drain(..).map(|s| Ticket {
            deadline: s.deadline,
            ..s.ticket
        })
    }

    /// Whether any byte came from the server.
    pub fn heard(&self) -> bool {
        self.heard
    }

    /// Whether any stream has heard from the server.
    pub fn any_answer(&self) -> bool {
        self.streams.iter().any(|s| s.wire_bytes > 0)
    }

    // ---- the outgoing buffer ----

    /// The chunk to send now (plain connections).
    #[inline]
    pub fn to_send(&self) -> &[u8] {
        self.sending.get(self.sent..).unwrap_or_default()
    }

    /// [`H2Conn::to_send`] as a shared handle.
    pub fn to_send_bytes(&self) -> Bytes {
        self.sending.slice(self.sent.min(self.sending.len())..)
    }

    /// The kernel took `n` bytes of [`H2Conn::to_send`].
    pub fn on_sent(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.sending.len());
    }

    /// Offers what was produced as the next chunk once the current one
    /// is all sent (the chunk never changes while any of it is unsent).
    pub fn promote(&mut self) {
        if self.sent == self.sending.len() && !self.next.is_empty() {
            self.sending = self.next.split().freeze();
            self.sent = 0;
        }
    }

    /// The connection's last frames, as it closes on our side (RFC 9113
    /// §6.8): what was produced and not yet offered, then GOAWAY with
    /// `code` and `debug` (last stream 0: a client takes no pushed
    /// streams). `None` while bytes offered to the driver are unsent: the
    /// GOAWAY would follow a cut frame.
    pub fn parting(&mut self, code: u32, debug: &[u8]) -> Option<BytesMut> {
        if !self.to_send().is_empty() {
            return None;
        }
        let mut out = std::mem::take(&mut self.next);
        put_goaway(&mut out, 0, code, debug);
        Some(out)
    }

    /// Frames produced and not yet taken (over TLS).
    pub fn pending(&self) -> &[u8] {
        &self.next
    }

    /// `n` bytes of [`H2Conn::pending`] were taken.
    pub fn consume(&mut self, n: usize) {
        self.next.advance(n.min(self.next.len()));
    }
}
