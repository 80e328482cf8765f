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

pub(crate) mod frame;
mod memo;
pub(crate) mod request;
mod strings;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use self::frame::*;
pub use self::request::H2Request;
use crate::http::Response;
use crate::plan::Ticket;

/// The stream and connection windows the client announces (h2load's).
const OUR_WINDOW: i64 = (1 << 30) - 1;
/// The header list size the client announces and enforces per response.
pub(crate) const MAX_HEADER_LIST: usize = 64 * 1024;
/// The most bytes of one header block (HEADERS and its CONTINUATIONs)
/// gathered before the connection is given up.
pub(crate) const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The most CONTINUATION frames of one header block.
pub(crate) const MAX_CONTINUATIONS: usize = 64;
/// Control replies (PING and SETTINGS acks) that may wait unsent.
pub(crate) const MAX_CONTROL_BACKLOG: usize = 1 << 20;
/// Request body bytes framed ahead of the socket.
const DATA_BACKLOG: usize = 64 * 1024;
/// The largest stream identifier.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// A connection error: the code sent in GOAWAY and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct H2Error {
    pub code: u32,
    pub reason: String,
}

impl std::fmt::Display for H2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, error_name(self.code))
    }
}

fn err(code: u32, reason: impl Into<String>) -> H2Error {
    H2Error {
        code,
        reason: reason.into(),
    }
}

fn proto(reason: impl Into<String>) -> H2Error {
    err(PROTOCOL_ERROR, reason)
}

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
    Retry { ticket: Ticket },
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
    decoder: loona_hpack::Decoder<'static>,
    /// A header block under way: its stream, END_STREAM, frames, bytes.
    block_stream: u32,
    block_end_stream: bool,
    block_frames: usize,
    block: Vec<u8>,
    /// With `collect`: the head being written out.
    head: Vec<u8>,
    /// The last response head that left the HPACK table alone.
    memo: memo::Memo,
    /// Huffman strings decoded, and a block rewritten with them raw.
    strings: strings::Strings,
    unhuffed: Vec<u8>,
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
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(4096);
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
            decoder,
            block_stream: 0,
            block_end_stream: false,
            block_frames: 0,
            block: Vec::new(),
            head: Vec::new(),
            memo: memo::Memo::default(),
            strings: strings::Strings::default(),
            unhuffed: Vec::new(),
            served: 0,
            heard: false,
        }
    }

    /// Streams open now.
    #[inline]
    pub fn active(&self) -> usize {
        self.streams.len()
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
                frame::SETTINGS_TIMEOUT,
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

    /// Gives up every stream (the connection is closing): their tickets.
    pub fn drain_tickets(&mut self) -> impl Iterator<Item = Ticket> + '_ {
        self.uploading = 0;
        self.streams.drain(..).map(|s| s.ticket)
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

    /// Frames produced and not yet taken (over TLS).
    pub fn pending(&self) -> &[u8] {
        &self.next
    }

    /// `n` bytes of [`H2Conn::pending`] were taken.
    pub fn consume(&mut self, n: usize) {
        self.next.advance(n.min(self.next.len()));
    }

    // ---- receiving ----

    /// Takes bytes the server sent; `f` hears what they meant. An error
    /// is a connection error: nothing more is to be read.
    pub fn receive<F: FnMut(Event<'_>)>(
        &mut self,
        mut data: &[u8],
        reqs: &[H2Request],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if !self.heard && !data.is_empty() {
            self.heard = true;
            if data.starts_with(b"HTTP/1.") || data.starts_with(b"HTTP/0.") {
                return Err(proto(
                    "the server answered in HTTP/1.x: it does not speak HTTP/2 without upgrade (h2c)",
                ));
            }
        }
        if !self.partial.is_empty() {
            if self.partial.len() < HEAD_LEN {
                let n = (HEAD_LEN - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.partial.len() < HEAD_LEN {
                    return Ok(());
                }
            }
            let head = self.frame_head(&self.partial[..HEAD_LEN])?;
            let n = (HEAD_LEN + head.len - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.partial.len() < HEAD_LEN + head.len {
                return Ok(());
            }
            let whole = std::mem::take(&mut self.partial);
            let result = self.frame(head, &whole[HEAD_LEN..], reqs, f);
            self.partial = whole;
            self.partial.clear();
            result?;
        }
        while data.len() >= HEAD_LEN {
            let head = self.frame_head(&data[..HEAD_LEN])?;
            if data.len() < HEAD_LEN + head.len {
                break;
            }
            let (whole, rest) = data.split_at(HEAD_LEN + head.len);
            self.frame(head, &whole[HEAD_LEN..], reqs, f)?;
            data = rest;
        }
        self.partial.extend_from_slice(data);
        self.pump(reqs);
        Ok(())
    }

    /// A frame header, checked against the frame size we allow.
    fn frame_head(&self, bytes: &[u8]) -> Result<Head, H2Error> {
        let mut b = [0u8; HEAD_LEN];
        b.copy_from_slice(bytes);
        let head = Head::parse(&b);
        if head.len > DEFAULT_MAX_FRAME {
            return Err(err(
                FRAME_SIZE_ERROR,
                format!(
                    "a {} frame of {} bytes, over the {DEFAULT_MAX_FRAME} the client allows",
                    kind_name(head.kind),
                    head.len
                ),
            ));
        }
        Ok(head)
    }

    fn frame<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        reqs: &[H2Request],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if self.block_stream != 0 && head.kind != CONTINUATION {
            return Err(proto(format!(
                "a {} frame while the header block of stream {} was unfinished",
                kind_name(head.kind),
                self.block_stream
            )));
        }
        match head.kind {
            DATA => self.on_data(head, payload, f),
            HEADERS => self.on_headers(head, payload, f),
            PRIORITY => {
                if head.stream == 0 {
                    return Err(proto("PRIORITY on stream 0"));
                }
                if head.len != 5 {
                    return Err(err(FRAME_SIZE_ERROR, "a PRIORITY frame not of 5 bytes"));
                }
                Ok(())
            }
            RST_STREAM => self.on_rst(head, payload, f),
            SETTINGS => self.on_settings(head, payload, reqs),
            PUSH_PROMISE => Err(proto("PUSH_PROMISE, though the client disabled push")),
            PING => self.on_ping(head, payload),
            GOAWAY => self.on_goaway(head, payload, f),
            WINDOW_UPDATE => self.on_window_update(head, payload),
            CONTINUATION => self.on_continuation(head, payload, f),
            // Unknown frame types are ignored (RFC 9113 §5.5).
            _ => Ok(()),
        }
    }

    /// The index of stream `id` if it is open; an error if the client
    /// never opened it (an even id, or one not used yet).
    fn lookup(&self, id: u32, kind: u8) -> Result<Option<usize>, H2Error> {
        if id.is_multiple_of(2) || id >= self.next_id {
            return Err(proto(format!(
                "{} on stream {id}, which the client never opened",
                kind_name(kind)
            )));
        }
        Ok(self.streams.binary_search_by_key(&id, |s| s.id).ok())
    }

    fn remove(&mut self, i: usize) -> Option<Stream> {
        let s = self.streams.remove(i)?;
        if s.body_sent != usize::MAX {
            self.uploading -= 1;
        }
        Some(s)
    }

    /// The payload without its padding (PADDED).
    fn unpad(head: Head, payload: &[u8]) -> Result<&[u8], H2Error> {
        if !head.has(PADDED) {
            return Ok(payload);
        }
        let Some((&pad, rest)) = payload.split_first() else {
            return Err(err(
                FRAME_SIZE_ERROR,
                format!("a padded {} frame with no pad length", kind_name(head.kind)),
            ));
        };
        if pad as usize > rest.len() {
            return Err(proto(format!(
                "a {} frame's padding ({pad} bytes) is longer than its payload",
                kind_name(head.kind)
            )));
        }
        Ok(&rest[..rest.len() - pad as usize])
    }

    fn on_data<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("DATA on stream 0"));
        }
        let body = Self::unpad(head, payload)?;
        let len = payload.len() as i64;
        self.recv_window -= len;
        if self.recv_window < 0 {
            return Err(err(
                FLOW_CONTROL_ERROR,
                "the server sent more DATA than the connection window allowed",
            ));
        }
        if self.recv_window < OUR_WINDOW / 2 {
            put_window_update(&mut self.next, 0, (OUR_WINDOW - self.recv_window) as u32);
            self.recv_window = OUR_WINDOW;
        }
        let Some(i) = self.lookup(head.stream, DATA)? else {
            // A stream we reset or that timed out: its DATA is dropped.
            return Ok(());
        };
        let collect = self.collect;
        let s = &mut self.streams[i];
        if s.status == 0 {
            return Err(proto(format!(
                "DATA on stream {} before its response head",
                s.id
            )));
        }
        s.recv_window -= len;
        if s.recv_window < 0 {
            return Err(err(
                FLOW_CONTROL_ERROR,
                format!(
                    "the server sent more DATA on stream {} than its window allowed",
                    s.id
                ),
            ));
        }
        s.body_bytes += body.len() as u64;
        s.wire_bytes += (HEAD_LEN + payload.len()) as u64;
        if collect && !body.is_empty() {
            f(Event::Body {
                seq: s.ticket.seq,
                bytes: body,
            });
        }
        if head.has(END_STREAM) {
            self.complete(i, f);
        } else if s.recv_window < OUR_WINDOW / 2 {
            let id = s.id;
            let increment = (OUR_WINDOW - s.recv_window) as u32;
            s.recv_window = OUR_WINDOW;
            put_window_update(&mut self.next, id, increment);
        }
        Ok(())
    }

    fn on_headers<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("HEADERS on stream 0"));
        }
        let mut block = Self::unpad(head, payload)?;
        if head.has(PRIORITY_FLAG) {
            if block.len() < 5 {
                return Err(err(
                    FRAME_SIZE_ERROR,
                    "a HEADERS frame too short for its priority fields",
                ));
            }
            block = &block[5..];
        }
        self.lookup(head.stream, HEADERS)?;
        if head.has(END_HEADERS) {
            return self.header_block(head.stream, head.has(END_STREAM), block, 1, f);
        }
        self.block_stream = head.stream;
        self.block_end_stream = head.has(END_STREAM);
        self.block_frames = 1;
        self.block.clear();
        self.block.extend_from_slice(block);
        Ok(())
    }

    fn on_continuation<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if self.block_stream == 0 || head.stream != self.block_stream {
            return Err(proto(format!(
                "CONTINUATION on stream {} without a header block under way there",
                head.stream
            )));
        }
        self.block_frames += 1;
        if self.block_frames > MAX_CONTINUATIONS + 1 {
            return Err(err(
                ENHANCE_YOUR_CALM,
                format!("more than {MAX_CONTINUATIONS} CONTINUATION frames in one header block"),
            ));
        }
        if self.block.len() + payload.len() > MAX_HEADER_BLOCK {
            return Err(err(
                ENHANCE_YOUR_CALM,
                format!("a header block over {MAX_HEADER_BLOCK} bytes"),
            ));
        }
        self.block.extend_from_slice(payload);
        if !head.has(END_HEADERS) {
            return Ok(());
        }
        let (id, end, frames) = (self.block_stream, self.block_end_stream, self.block_frames);
        self.block_stream = 0;
        let block = std::mem::take(&mut self.block);
        let result = self.header_block(id, end, &block, frames, f);
        self.block = block;
        self.block.clear();
        if self.block.capacity() > 4 * DEFAULT_MAX_FRAME {
            self.block = Vec::new();
        }
        result
    }

    /// A whole header block for stream `id`: HPACK-decoded (always, to
    /// keep the table in step), then a response head or trailers.
    fn header_block<F: FnMut(Event<'_>)>(
        &mut self,
        id: u32,
        end_stream: bool,
        block: &[u8],
        frames: usize,
        f: &mut F,
    ) -> Result<(), H2Error> {
        let collect = self.collect;
        let wire = block.len() + frames * HEAD_LEN;
        if !collect && let Some(facts) = self.memo.get(block) {
            return self.on_fields(id, end_stream, facts, &[], wire, f);
        }
        let mut text = std::mem::take(&mut self.head);
        text.clear();
        let mut status: Option<Result<u16, ()>> = None;
        let mut list = 0usize;
        let mut malformed: Option<&'static str> = None;
        let mut regular = false;
        let mut unhuffed = std::mem::take(&mut self.unhuffed);
        let input = if self.strings.rewrite(block, &mut unhuffed) {
            &unhuffed[..]
        } else {
            block
        };
        let decoded = self.decoder.decode_with_cb(input, |name, value| {
            list += name.len() + value.len() + 32;
            if name.first() == Some(&b':') {
                if regular {
                    malformed.get_or_insert("a pseudo-header after a regular field");
                } else if &name[..] == b":status" && status.is_none() {
                    let s = std::str::from_utf8(&value)
                        .ok()
                        .filter(|v| v.len() == 3)
                        .and_then(|v| v.parse::<u16>().ok())
                        .filter(|s| (100..=999).contains(s));
                    status = Some(s.ok_or(()));
                } else {
                    malformed.get_or_insert("an unknown or repeated pseudo-header");
                }
                return;
            }
            regular = true;
            if name.iter().any(u8::is_ascii_uppercase) {
                malformed.get_or_insert("an upper-case field name");
            }
            if collect && list <= MAX_HEADER_LIST {
                text.extend_from_slice(&name);
                text.extend_from_slice(b": ");
                text.extend_from_slice(&value);
                text.extend_from_slice(b"\r\n");
            }
        });
        if unhuffed.capacity() > 4 * DEFAULT_MAX_FRAME {
            unhuffed = Vec::new();
        }
        self.unhuffed = unhuffed;
        if let Err(e) = decoded {
            self.head = text;
            return Err(err(
                COMPRESSION_ERROR,
                format!("the server's header block on stream {id} did not decode ({e:?})"),
            ));
        }
        let facts = memo::Facts {
            status,
            malformed,
            list,
        };
        self.memo.put(block, facts);
        let result = self.on_fields(id, end_stream, facts, &text, wire, f);
        self.head = text;
        result
    }

    /// The decoded fields of a header block on stream `id`.
    fn on_fields<F: FnMut(Event<'_>)>(
        &mut self,
        id: u32,
        end_stream: bool,
        facts: memo::Facts,
        fields: &[u8],
        wire: usize,
        f: &mut F,
    ) -> Result<(), H2Error> {
        let memo::Facts {
            status,
            malformed,
            list,
        } = facts;
        let Some(i) = self.streams.binary_search_by_key(&id, |s| s.id).ok() else {
            // A stream we no longer track: decoded for HPACK's sake only.
            return Ok(());
        };
        let s = &mut self.streams[i];
        s.wire_bytes += wire as u64;
        // Ok(whether this block is the final response head), or why the
        // stream cannot go on.
        let outcome: Result<bool, String> = if list > MAX_HEADER_LIST {
            Err(format!(
                "a response header list of {list} bytes on stream {id}, over the {MAX_HEADER_LIST} the client allows"
            ))
        } else if let Some(what) = malformed {
            Err(format!("a malformed response head on stream {id}: {what}"))
        } else if s.status != 0 {
            // Trailers: they end the stream.
            if end_stream {
                Ok(false)
            } else {
                Err(format!("trailers without END_STREAM on stream {id}"))
            }
        } else {
            match status {
                Some(Ok(code)) if (100..200).contains(&code) => {
                    if end_stream || code == 101 {
                        Err(format!("an interim {code} response ending stream {id}"))
                    } else {
                        // Interim: the final head follows.
                        return Ok(());
                    }
                }
                Some(Ok(code)) => {
                    s.status = code;
                    s.head_bytes = wire;
                    Ok(true)
                }
                Some(Err(())) => Err(format!("an invalid :status on stream {id}")),
                None => Err(format!("a response head without :status on stream {id}")),
            }
        };
        match outcome {
            Err(reason) => {
                put_rst(&mut self.next, id, PROTOCOL_ERROR);
                if let Some(s) = self.remove(i) {
                    f(Event::Failed {
                        ticket: s.ticket,
                        reason,
                    });
                }
            }
            Ok(head_now) => {
                let s = &self.streams[i];
                if self.collect && head_now {
                    let mut head = format!("HTTP/2 {}\r\n", s.status).into_bytes();
                    head.extend_from_slice(fields);
                    head.extend_from_slice(b"\r\n");
                    f(Event::Head {
                        seq: s.ticket.seq,
                        head: &head,
                    });
                }
                if end_stream {
                    self.complete(i, f);
                }
            }
        }
        Ok(())
    }

    /// Stream `i`'s response is complete.
    fn complete<F: FnMut(Event<'_>)>(&mut self, i: usize, f: &mut F) {
        let Some(s) = self.remove(i) else {
            return;
        };
        if s.body_sent != usize::MAX {
            // The server answered before the request body was all sent.
            put_rst(&mut self.next, s.id, CANCEL);
        }
        self.served += 1;
        f(Event::Done {
            ticket: s.ticket,
            sent_at: s.sent_at,
            response: Response {
                status: s.status,
                version_minor: 0,
                head_bytes: s.head_bytes,
                body_bytes: s.body_bytes,
                wire_bytes: s.wire_bytes,
                keep_alive: true,
                consumed: 0,
            },
        });
    }

    fn on_rst<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(err(FRAME_SIZE_ERROR, "a RST_STREAM frame not of 4 bytes"));
        }
        let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if let Some(i) = self.lookup(head.stream, RST_STREAM)?
            && let Some(s) = self.remove(i)
        {
            f(Event::Reset {
                ticket: s.ticket,
                code,
            });
        }
        Ok(())
    }

    fn on_settings(
        &mut self,
        head: Head,
        payload: &[u8],
        reqs: &[H2Request],
    ) -> Result<(), H2Error> {
        if head.stream != 0 {
            return Err(proto("SETTINGS on a stream"));
        }
        if head.has(ACK) {
            if !payload.is_empty() {
                return Err(err(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload"));
            }
            self.settings_by = None;
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(err(
                FRAME_SIZE_ERROR,
                "a SETTINGS frame whose length is not a multiple of 6",
            ));
        }
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(proto(format!("SETTINGS_ENABLE_PUSH of {value}")));
                }
                SETTINGS_MAX_CONCURRENT_STREAMS => self.peer_max_streams = value as usize,
                SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = value as i64;
                    if value > MAX_WINDOW {
                        return Err(err(
                            FLOW_CONTROL_ERROR,
                            format!("SETTINGS_INITIAL_WINDOW_SIZE of {value}"),
                        ));
                    }
                    let delta = value - self.peer_initial_window;
                    self.peer_initial_window = value;
                    for s in self.streams.iter_mut() {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return Err(err(
                                FLOW_CONTROL_ERROR,
                                "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream's window",
                            ));
                        }
                    }
                }
                SETTINGS_MAX_FRAME_SIZE => {
                    let value = value as usize;
                    if !(DEFAULT_MAX_FRAME..=MAX_FRAME_LIMIT).contains(&value) {
                        return Err(proto(format!("SETTINGS_MAX_FRAME_SIZE of {value}")));
                    }
                    self.peer_max_frame = value;
                }
                // The header table size binds an encoder with a dynamic
                // table, which ours has not; the header list size is
                // advisory; unknown settings are ignored (RFC 9113 §6.5.2).
                _ => {}
            }
        }
        self.peer_settings = true;
        self.control_room()?;
        put_head(&mut self.next, 0, SETTINGS, ACK, 0);
        self.pump(reqs);
        Ok(())
    }

    /// Replies to the server's PINGs and SETTINGS must not pile up.
    fn control_room(&self) -> Result<(), H2Error> {
        if self.next.len() > MAX_CONTROL_BACKLOG {
            return Err(err(
                ENHANCE_YOUR_CALM,
                format!(
                    "over {} KiB of replies to PING and SETTINGS frames wait unsent (a flood)",
                    MAX_CONTROL_BACKLOG / 1024
                ),
            ));
        }
        Ok(())
    }

    fn on_ping(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        if head.stream != 0 {
            return Err(proto("PING on a stream"));
        }
        if payload.len() != 8 {
            return Err(err(FRAME_SIZE_ERROR, "a PING frame not of 8 bytes"));
        }
        if !head.has(ACK) {
            self.control_room()?;
            put_head(&mut self.next, 8, PING, ACK, 0);
            self.next.put_slice(payload);
        }
        Ok(())
    }

    fn on_goaway<F: FnMut(Event<'_>)>(
        &mut self,
        head: Head,
        payload: &[u8],
        f: &mut F,
    ) -> Result<(), H2Error> {
        if head.stream != 0 {
            return Err(proto("GOAWAY on a stream"));
        }
        if payload.len() < 8 {
            return Err(err(FRAME_SIZE_ERROR, "a GOAWAY frame under 8 bytes"));
        }
        let last =
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_STREAM_ID;
        let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        let last = self.goaway.map_or(last, |l| l.min(last));
        self.goaway = Some(last);
        f(Event::GoAway { code });
        while self.streams.back().is_some_and(|s| s.id > last) {
            if let Some(s) = self.remove(self.streams.len() - 1) {
                f(Event::Retry { ticket: s.ticket });
            }
        }
        Ok(())
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        if payload.len() != 4 {
            return Err(err(
                FRAME_SIZE_ERROR,
                "a WINDOW_UPDATE frame not of 4 bytes",
            ));
        }
        let inc = (u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
            & MAX_STREAM_ID) as i64;
        if inc == 0 {
            return Err(proto(format!(
                "a WINDOW_UPDATE of 0 on stream {}",
                head.stream
            )));
        }
        let window = if head.stream == 0 {
            &mut self.send_window
        } else {
            match self.lookup(head.stream, WINDOW_UPDATE)? {
                Some(i) => &mut self.streams[i].send_window,
                None => return Ok(()),
            }
        };
        *window += inc;
        if *window > MAX_WINDOW {
            return Err(err(
                FLOW_CONTROL_ERROR,
                format!("a WINDOW_UPDATE past 2^31-1 on stream {}", head.stream),
            ));
        }
        Ok(())
    }
}
