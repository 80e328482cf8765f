//! The server side of one HTTP/2 connection, sans-IO: bytes the client
//! sent go in ([`Codec::receive`]), frames to send come out
//! ([`Codec::produce`], [`Codec::take_output`]); the connection loop
//! ([`super`]) moves them and keeps the time. The frame layout and
//! encoders are the crate's one copy ([`crate::http::h2`]), shared with
//! the client's session; HPACK is `loona_hpack`'s.
//!
//! Each request is routed as HTTP/1.x routes it ([`routes::route`]) once
//! its stream ends (END_STREAM; a request body is counted and thrown
//! away), and is answered when its delay is over, independently of the
//! others: the codec only records when each answer is due
//! ([`Codec::next_due`]), and `produce` frames the answers whose time has
//! come. Bodies go out as DATA frames within the client's windows (the
//! connection's and the stream's) and its `SETTINGS_MAX_FRAME_SIZE`, one
//! frame per stream in turn.
//!
//! Errors are values, never panics: a connection error queues GOAWAY with
//! its code and reason and the codec takes no more input
//! ([`Codec::finished`]); a stream error resets that stream (RST_STREAM)
//! and the others go on.
//!
//! Memory is bounded whatever the client sends:
//! - input is taken a whole frame at a time from the caller's buffer (a
//!   frame is at most the default 16 KiB we allow), and none is taken
//!   while [`OUT_HIGH`] bytes of output wait, so replies to a PING or
//!   SETTINGS flood cannot pile up: the client must read them first;
//! - one header block at a time, at most `max_header_list` bytes in at
//!   most [`MAX_CONTINUATIONS`] + 1 frames (a CONTINUATION flood is
//!   `ENHANCE_YOUR_CALM`); the HPACK table is the 4 KiB default;
//! - at most [`MAX_STREAMS`] streams (SETTINGS_MAX_CONCURRENT_STREAMS);
//!   one more is refused (RST_STREAM REFUSED_STREAM);
//! - request bodies are discarded as they come, and the window they used
//!   is given back (WINDOW_UPDATE), so no body is ever held;
//! - answers are framed only while less than [`OUT_HIGH`] waits, in DATA
//!   frames of at most [`MAX_DATA_FRAME`] bytes (a client may allow
//!   frames of up to 16 MiB).

use std::time::{Duration, Instant};

use crate::http::h2::*;
use crate::server::routes::{self, Body, Plan};

/// Streams a client may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`,
/// nginx's and h2o's default).
pub(crate) const MAX_STREAMS: usize = 128;

/// Output that may wait unsent: past it, `receive` takes no more input and
/// `produce` frames no more DATA until the loop has written it.
pub(crate) const OUT_HIGH: usize = 64 * 1024;

/// The largest DATA frame sent, whatever larger `SETTINGS_MAX_FRAME_SIZE`
/// the client allows: one frame is never more than half the output bound.
pub(crate) const MAX_DATA_FRAME: usize = OUT_HIGH / 2;

/// Our windows for request bodies: the default, given back once half used.
const RECV_WINDOW: i64 = DEFAULT_WINDOW;

/// The largest stream identifier.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// Connection-level HTTP/1.x fields, which make an HTTP/2 request
/// malformed (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// GOAWAY went out or came in without an error: no new streams; the
    /// open ones are answered, then the connection ends.
    Closing,
    /// A connection error: GOAWAY is queued and nothing more is read.
    Failed,
}

/// One request stream, from its HEADERS until its answer's END_STREAM.
#[derive(Debug)]
struct Stream {
    id: u32,
    /// The client may still send on it (no END_STREAM yet).
    recv_open: bool,
    /// Its `content-length`, if it sent one, and the body bytes so far.
    expect_len: Option<u64>,
    got: u64,
    /// What we still let it send, and what it lets us.
    recv_window: i64,
    send_window: i64,
    plan: Plan,
    /// When the answer is due: set when the request is whole.
    due: Option<Instant>,
    head_sent: bool,
    /// Body bytes to send, and sent so far.
    len: u64,
    sent: u64,
}

/// What a request's header block said.
#[derive(Default)]
struct Fields {
    method: bool,
    head: bool,
    scheme: bool,
    path: bool,
    /// The size of the header list as RFC 9113 counts it (name + value
    /// + 32 per field).
    list: usize,
    content_length: Option<u64>,
    malformed: Option<&'static str>,
    regular: bool,
}

/// The server side of one HTTP/2 connection.
pub(crate) struct Codec {
    /// `/foo` and `/bar`'s delay.
    delay: Duration,
    /// The largest header list (and header block) taken.
    max_list: usize,
    /// Frames to send, in order.
    out: Vec<u8>,
    /// Bytes of the client's preface matched so far.
    preface: usize,
    /// The client's first frame (which must be SETTINGS) came.
    settings_seen: bool,
    state: State,
    /// Open streams, by id (ids only grow, so pushing keeps the order).
    streams: Vec<Stream>,
    /// The highest stream id the client opened (or tried to).
    last_id: u32,
    /// The client's settings, as they bind what we send.
    peer_initial_window: i64,
    peer_max_frame: usize,
    /// Connection windows: what we may send, and what we allow.
    send_window: i64,
    recv_window: i64,
    decoder: loona_hpack::Decoder<'static>,
    /// Table size 0: response heads refer to the static table only.
    encoder: loona_hpack::Encoder<'static>,
    /// A header block under way.
    block: HeaderBlock,
    /// The `:path` of the block being decoded.
    path: Vec<u8>,
    /// The stream DATA went to last, so the next frame goes to the next.
    cursor: u32,
    /// Requests made whole (their END_STREAM came), request body bytes
    /// received, and answer frames (HEADERS, DATA) framed: the loop's
    /// measures of progress.
    pub requests: u64,
    pub body_bytes: u64,
    pub answer_frames: u64,
}

impl Codec {
    /// A connection whose SETTINGS are ready to send: at most
    /// [`MAX_STREAMS`] streams, header lists of at most `max_list` bytes;
    /// `/foo` and `/bar` answer after `delay`.
    pub fn new(delay: Duration, max_list: usize) -> Self {
        let mut out = Vec::with_capacity(64);
        put_settings(
            &mut out,
            &[
                (SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS as u32),
                (SETTINGS_MAX_HEADER_LIST_SIZE, max_list as u32),
            ],
        );
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(4096);
        let mut encoder = loona_hpack::Encoder::new();
        encoder.set_max_table_size(0);
        Codec {
            delay,
            max_list,
            out,
            preface: 0,
            settings_seen: false,
            state: State::Open,
            streams: Vec::new(),
            last_id: 0,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: DEFAULT_MAX_FRAME,
            send_window: DEFAULT_WINDOW,
            recv_window: RECV_WINDOW,
            decoder,
            encoder,
            block: HeaderBlock::default(),
            path: Vec::new(),
            cursor: 0,
            requests: 0,
            body_bytes: 0,
            answer_frames: 0,
        }
    }

    // ---- what the loop asks ----

    /// Whether a connection error ended the connection (its GOAWAY may
    /// still be in the output).
    #[cfg(test)]
    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Whether the connection is over once the output is written: after
    /// a connection error, or a GOAWAY either way with no stream left.
    pub fn finished(&self) -> bool {
        match self.state {
            State::Open => false,
            State::Closing => self.streams.is_empty(),
            State::Failed => true,
        }
    }

    /// Whether no stream is open.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty()
    }

    /// Whether some answer waits only for its delay: the connection is
    /// not idle then, however quiet the client.
    pub fn waiting(&self) -> bool {
        self.streams.iter().any(|s| s.due.is_some() && !s.head_sent)
    }

    /// When the next answer is due (its delay over), if one waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.streams
            .iter()
            .filter(|s| !s.head_sent)
            .filter_map(|s| s.due)
            .min()
    }

    /// How many buffered bytes the next step of `receive` needs (the rest
    /// of the preface, a frame header, or a whole frame), given what is
    /// buffered: the loop makes room for that much before reading.
    pub fn need(&self, pending: &[u8]) -> usize {
        if self.preface < PREFACE.len() {
            return PREFACE.len() - self.preface;
        }
        match pending.first_chunk::<HEAD_LEN>() {
            None => HEAD_LEN,
            // An oversized frame is refused as soon as its header is in.
            Some(head) => HEAD_LEN + Head::parse(head).len.min(DEFAULT_MAX_FRAME),
        }
    }

    /// Whether to read more: not after a connection error, and not while
    /// `pending` (what is buffered) still holds a step `receive` can take
    /// once the output is written.
    pub fn wants_input(&self, pending: &[u8]) -> bool {
        self.state != State::Failed && self.need(pending) > pending.len()
    }

    /// The frames to send, leaving an empty buffer (the loop gives one back
    /// with [`Codec::give_back`]).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether any frame waits to be sent.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Returns a written (and cleared) output buffer for reuse.
    pub fn give_back(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if self.out.is_empty() && buf.capacity() > self.out.capacity() {
            self.out = buf;
        }
    }

    /// Lets go of memory an idle connection does not need: the buffers a
    /// burst of streams, a big header block or a big answer grew.
    pub fn trim(&mut self, keep: usize) {
        if self.streams.is_empty() && self.streams.capacity() > 0 {
            self.streams = Vec::new();
        }
        if self.block.bytes.capacity() > keep {
            self.block.bytes = Vec::new();
        }
        if self.path.capacity() > keep {
            self.path = Vec::new();
        }
        if self.out.is_empty() && self.out.capacity() > keep {
            self.out = Vec::new();
        }
    }

    /// Ends the connection quietly (GOAWAY NO_ERROR, `why` as its debug
    /// data): the client went idle past the timeout. Streams still open
    /// are dropped.
    pub fn time_out(&mut self, why: &str) {
        self.fail(err(NO_ERROR, why));
    }

    // ---- input ----

    /// Takes what it can of `input` (bytes the client sent, from the
    /// start of a frame or of the preface): whole frames, until the output
    /// is over [`OUT_HIGH`]. Returns how many bytes it took; the rest
    /// stays with the caller. After a connection error (GOAWAY queued)
    /// everything is taken and ignored.
    pub fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        if self.state == State::Failed {
            return input.len();
        }
        let mut used = 0;
        if self.preface < PREFACE.len() {
            let n = (PREFACE.len() - self.preface).min(input.len());
            if input[..n] != PREFACE[self.preface..self.preface + n] {
                self.fail(proto("the connection did not start with HTTP/2's preface"));
                return input.len();
            }
            self.preface += n;
            used = n;
        }
        while self.preface == PREFACE.len() && self.out.len() < OUT_HIGH {
            let rest = &input[used..];
            let Some(head) = rest.first_chunk::<HEAD_LEN>() else {
                break;
            };
            let head = Head::parse(head);
            if head.len > DEFAULT_MAX_FRAME {
                self.fail(err(
                    FRAME_SIZE_ERROR,
                    format!(
                        "a {} frame of {} bytes, over the {DEFAULT_MAX_FRAME} the server allows",
                        kind_name(head.kind),
                        head.len
                    ),
                ));
                return input.len();
            }
            let Some(payload) = rest.get(HEAD_LEN..HEAD_LEN + head.len) else {
                break;
            };
            used += HEAD_LEN + head.len;
            if let Err(e) = self.frame(head, payload, now) {
                self.fail(e);
                return input.len();
            }
        }
        used
    }

    /// A connection error: GOAWAY with the last stream we took, and no more
    /// of anything.
    fn fail(&mut self, e: H2Error) {
        if self.state == State::Failed {
            return;
        }
        put_goaway(&mut self.out, self.last_id, e.code, e.reason.as_bytes());
        self.state = State::Failed;
        self.streams.clear();
    }

    fn frame(&mut self, head: Head, payload: &[u8], now: Instant) -> Result<(), H2Error> {
        if !self.settings_seen {
            if head.kind != SETTINGS || head.has(ACK) {
                return Err(proto(format!(
                    "the client's first frame was {}, not SETTINGS",
                    kind_name(head.kind)
                )));
            }
            self.settings_seen = true;
        }
        self.block.check_between(head)?;
        match head.kind {
            DATA => self.on_data(head, payload, now),
            HEADERS => self.on_headers(head, payload, now),
            PRIORITY => self.on_priority(head),
            RST_STREAM => self.on_rst(head, payload),
            SETTINGS => self.on_settings(head, payload),
            PUSH_PROMISE => Err(proto("PUSH_PROMISE from a client")),
            PING => self.on_ping(head, payload),
            GOAWAY => self.on_goaway(head, payload),
            WINDOW_UPDATE => self.on_window_update(head, payload),
            CONTINUATION => self.on_continuation(head, payload, now),
            // Unknown frame types are ignored (RFC 9113 §5.5).
            _ => Ok(()),
        }
    }

    /// The index of open stream `id`.
    fn find(&self, id: u32) -> Option<usize> {
        self.streams.binary_search_by_key(&id, |s| s.id).ok()
    }

    /// A frame on a stream the client has not opened yet (an idle stream)
    /// is a connection error for every type but HEADERS and PRIORITY.
    fn not_idle(&self, id: u32, kind: u8) -> Result<(), H2Error> {
        if id > self.last_id {
            return Err(proto(format!(
                "{} on stream {id}, which the client has not opened",
                kind_name(kind)
            )));
        }
        Ok(())
    }

    /// A stream error: RST_STREAM with `code`, and the stream is forgotten.
    fn reset(&mut self, id: u32, code: u32) {
        put_rst(&mut self.out, id, code);
        if let Some(i) = self.find(id) {
            self.streams.remove(i);
        }
    }

    fn on_data(&mut self, head: Head, payload: &[u8], now: Instant) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("DATA on stream 0"));
        }
        self.not_idle(head.stream, DATA)?;
        // Flow control counts the whole payload, padding included.
        let len = payload.len() as i64;
        self.recv_window -= len;
        if self.recv_window < 0 {
            return Err(err(
                FLOW_CONTROL_ERROR,
                "the client sent more DATA than the connection window allowed",
            ));
        }
        let body = unpad(head, payload)?;
        // Bodies are thrown away: the window comes back at once.
        if self.recv_window < RECV_WINDOW / 2 {
            put_window_update(&mut self.out, 0, (RECV_WINDOW - self.recv_window) as u32);
            self.recv_window = RECV_WINDOW;
        }
        self.body_bytes += body.len() as u64;
        let Some(i) = self.find(head.stream) else {
            // A stream already answered or reset: frames in flight are ignored.
            return Ok(());
        };
        let s = &mut self.streams[i];
        if !s.recv_open {
            self.reset(head.stream, STREAM_CLOSED);
            return Ok(());
        }
        s.recv_window -= len;
        if s.recv_window < 0 {
            self.reset(head.stream, FLOW_CONTROL_ERROR);
            return Ok(());
        }
        s.got += body.len() as u64;
        if s.expect_len.is_some_and(|n| s.got > n) {
            self.reset(head.stream, PROTOCOL_ERROR);
            return Ok(());
        }
        if head.has(END_STREAM) {
            self.request_done(i, now);
        } else if s.recv_window < RECV_WINDOW / 2 {
            put_window_update(
                &mut self.out,
                head.stream,
                (RECV_WINDOW - s.recv_window) as u32,
            );
            s.recv_window = RECV_WINDOW;
        }
        Ok(())
    }

    /// Stream `i`'s request is whole: its answer is due after its delay.
    fn request_done(&mut self, i: usize, now: Instant) {
        let s = &mut self.streams[i];
        s.recv_open = false;
        if s.expect_len.is_some_and(|n| n != s.got) {
            let id = s.id;
            self.reset(id, PROTOCOL_ERROR);
            return;
        }
        s.due = Some(now + s.plan.delay);
        self.requests += 1;
    }

    fn on_headers(&mut self, head: Head, payload: &[u8], now: Instant) -> Result<(), H2Error> {
        let id = head.stream;
        if id == 0 {
            return Err(proto("HEADERS on stream 0"));
        }
        if id.is_multiple_of(2) {
            return Err(proto(format!(
                "HEADERS on stream {id}: even streams are the server's"
            )));
        }
        let mut block = unpad(head, payload)?;
        if head.has(PRIORITY_FLAG) {
            let Some((priority, rest)) = block.split_first_chunk::<5>() else {
                return Err(err(
                    FRAME_SIZE_ERROR,
                    "a HEADERS frame too short for its priority",
                ));
            };
            let depends = u32::from_be_bytes([priority[0], priority[1], priority[2], priority[3]])
                & MAX_STREAM_ID;
            if depends == id {
                return Err(proto(format!("stream {id} depends on itself")));
            }
            block = rest;
        }
        if block.len() > self.max_list {
            return Err(err(
                ENHANCE_YOUR_CALM,
                format!("a header block over {} bytes", self.max_list),
            ));
        }
        self.block.start(head, block);
        if head.has(END_HEADERS) {
            return self.header_block(now);
        }
        Ok(())
    }

    fn on_continuation(&mut self, head: Head, payload: &[u8], now: Instant) -> Result<(), H2Error> {
        if self.block.continuation(head, payload, self.max_list)? {
            return self.header_block(now);
        }
        Ok(())
    }

    /// A whole header block: HPACK-decoded (always, to keep the table in
    /// step with the client's), then a new request, or trailers.
    fn header_block(&mut self, now: Instant) -> Result<(), H2Error> {
        let (id, end_stream, _) = self.block.finish();
        let block = std::mem::take(&mut self.block.bytes);
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let max_list = self.max_list;
        let mut f = Fields::default();
        let decoded = self.decoder.decode_with_cb(&block, |name, value| {
            check_field(&mut f, &mut path, &name, &value, max_list);
        });
        self.block.bytes = block;
        self.block.bytes.clear();
        if let Err(e) = decoded {
            self.path = path;
            return Err(err(
                COMPRESSION_ERROR,
                format!("the header block of stream {id} did not decode ({e:?})"),
            ));
        }
        let result = self.on_fields(id, end_stream, f, &path, now);
        self.path = path;
        result
    }

    /// The decoded fields of a header block on stream `id`.
    fn on_fields(
        &mut self,
        id: u32,
        end_stream: bool,
        f: Fields,
        path: &[u8],
        now: Instant,
    ) -> Result<(), H2Error> {
        if id <= self.last_id {
            // Trailers, on a stream whose request is still coming.
            match self.find(id) {
                Some(i) if self.streams[i].recv_open => {
                    if !end_stream || f.malformed.is_some() {
                        self.reset(id, PROTOCOL_ERROR);
                    } else {
                        self.request_done(i, now);
                    }
                }
                Some(_) => self.reset(id, STREAM_CLOSED),
                // Answered or reset already: what was in flight is ignored.
                None => {}
            }
            return Ok(());
        }
        self.last_id = id;
        if self.state != State::Open {
            // After GOAWAY no stream is opened; the client retries it.
            return Ok(());
        }
        if self.streams.len() >= MAX_STREAMS {
            put_rst(&mut self.out, id, REFUSED_STREAM);
            return Ok(());
        }
        let plan = if f.list > self.max_list {
            Plan::too_large()
        } else {
            let missing = if !f.method {
                Some("no :method")
            } else if !f.scheme {
                Some("no :scheme")
            } else if !f.path {
                Some("no :path")
            } else {
                None
            };
            let target = std::str::from_utf8(path).ok().filter(|p| !p.is_empty());
            match (f.malformed.or(missing), target) {
                (None, Some(target)) => routes::route(target, self.delay),
                _ => {
                    put_rst(&mut self.out, id, PROTOCOL_ERROR);
                    return Ok(());
                }
            }
        };
        // `HEAD`: the answer's head only.
        let len = if f.head {
            0
        } else {
            plan.body.len(plan.status)
        };
        self.streams.push(Stream {
            id,
            recv_open: true,
            expect_len: f.content_length,
            got: 0,
            recv_window: RECV_WINDOW,
            send_window: self.peer_initial_window,
            plan,
            due: None,
            head_sent: false,
            len,
            sent: 0,
        });
        if end_stream {
            self.request_done(self.streams.len() - 1, now);
        }
        Ok(())
    }

    fn on_priority(&mut self, head: Head) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("PRIORITY on stream 0"));
        }
        if head.len != 5 {
            self.reset(head.stream, FRAME_SIZE_ERROR);
        }
        // Priorities are advice; this server answers as answers come due.
        Ok(())
    }

    fn on_rst(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        if head.stream == 0 {
            return Err(proto("RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(err(FRAME_SIZE_ERROR, "a RST_STREAM frame not of 4 bytes"));
        }
        self.not_idle(head.stream, RST_STREAM)?;
        // The client gave up on it: its answer, pending or under way, goes.
        if let Some(i) = self.find(head.stream) {
            self.streams.remove(i);
        }
        Ok(())
    }

    fn on_settings(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        // The client's stream limit binds the streams a server opens (push:
        // none here).
        let Some(settings) = Settings::read(head, payload)? else {
            return Ok(());
        };
        if let Some(window) = settings.initial_window {
            let windows = self.streams.iter_mut().map(|s| &mut s.send_window);
            shift_windows(&mut self.peer_initial_window, window, windows)?;
        }
        if let Some(n) = settings.max_frame {
            self.peer_max_frame = n;
        }
        put_head(&mut self.out, 0, SETTINGS, ACK, 0);
        Ok(())
    }

    fn on_ping(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        if let Some(opaque) = read_ping(head, payload)? {
            put_ping(&mut self.out, ACK, opaque);
        }
        Ok(())
    }

    fn on_goaway(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        if head.stream != 0 {
            return Err(proto("GOAWAY on a stream"));
        }
        if payload.len() < 8 {
            return Err(err(FRAME_SIZE_ERROR, "a GOAWAY frame under 8 bytes"));
        }
        // The client opens no more streams; those open are still answered.
        if self.state == State::Open {
            self.state = State::Closing;
        }
        Ok(())
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), H2Error> {
        let Some(inc) = payload.first_chunk::<4>().filter(|_| payload.len() == 4) else {
            return Err(err(
                FRAME_SIZE_ERROR,
                "a WINDOW_UPDATE frame not of 4 bytes",
            ));
        };
        let inc = (u32::from_be_bytes(*inc) & MAX_STREAM_ID) as i64;
        if head.stream == 0 {
            if inc == 0 {
                return Err(proto("a WINDOW_UPDATE of 0 on the connection"));
            }
            self.send_window += inc;
            if self.send_window > MAX_WINDOW {
                return Err(err(
                    FLOW_CONTROL_ERROR,
                    "a WINDOW_UPDATE took the connection's window past 2^31-1",
                ));
            }
            return Ok(());
        }
        self.not_idle(head.stream, WINDOW_UPDATE)?;
        let Some(i) = self.find(head.stream) else {
            return Ok(());
        };
        if inc == 0 {
            self.reset(head.stream, PROTOCOL_ERROR);
            return Ok(());
        }
        let s = &mut self.streams[i];
        s.send_window += inc;
        if s.send_window > MAX_WINDOW {
            self.reset(head.stream, FLOW_CONTROL_ERROR);
        }
        Ok(())
    }

    // ---- output ----

    /// Frames what can go out at `now`: the heads of answers now due, then
    /// body DATA as the windows allow, a frame per stream in turn, until
    /// [`OUT_HIGH`] bytes wait. A stream whose answer is all framed ends
    /// (END_STREAM) and leaves the table; after `/close`'s answer the
    /// connection says GOAWAY (HTTP/1.x's `Connection: close`).
    pub fn produce(&mut self, now: Instant) {
        if self.state == State::Failed {
            return;
        }
        for i in 0..self.streams.len() {
            if self.out.len() >= OUT_HIGH {
                break;
            }
            let s = &self.streams[i];
            if !s.head_sent && s.due.is_some_and(|d| d <= now) {
                self.put_answer_head(i);
            }
        }
        self.put_data();
        self.reap();
    }

    /// Frames stream `i`'s answer head (END_STREAM too if it has no body).
    fn put_answer_head(&mut self, i: usize) {
        let s = &mut self.streams[i];
        s.head_sent = true;
        let (id, end) = (s.id, s.len == 0);
        let (status, body, content_type) = (s.plan.status, &s.plan.body, s.plan.content_type);
        let code = [
            b'0' + (status / 100 % 10) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ];
        let mut digits = [0u8; 20];
        let length = body
            .content_length(status)
            .map(|n| crate::http::server::decimal(n, &mut digits));
        let fields = [
            Some((&b":status"[..], &code[..])),
            Some((&b"server"[..], &b"uringfetch"[..])),
            (*body != Body::Empty).then_some((&b"content-type"[..], content_type.as_bytes())),
            length.map(|n| (&b"content-length"[..], n)),
        ];
        let at = self.out.len();
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        put_head(&mut self.out, 0, HEADERS, flags, id);
        for field in fields.into_iter().flatten() {
            // Writing into a Vec cannot fail.
            let _ = self.encoder.encode_header_into(field, &mut self.out);
        }
        // The block is a few dozen bytes, far under any frame size limit.
        let len = (self.out.len() - at - HEAD_LEN) as u32;
        self.out[at..at + 3].copy_from_slice(&len.to_be_bytes()[1..]);
        self.answer_frames += 1;
    }

    /// DATA frames for streams with body left, one per stream in turn
    /// (from the one after the stream served last), while the windows and
    /// [`OUT_HIGH`] allow.
    fn put_data(&mut self) {
        let n = self.streams.len();
        loop {
            let start = self.streams.partition_point(|s| s.id <= self.cursor);
            let mut progressed = false;
            for k in 0..n {
                if self.send_window <= 0 || self.out.len() >= OUT_HIGH {
                    return;
                }
                let s = &mut self.streams[(start + k) % n];
                if !s.head_sent || s.sent >= s.len || s.send_window <= 0 {
                    continue;
                }
                let take = (s.len - s.sent)
                    .min(self.peer_max_frame.min(MAX_DATA_FRAME) as u64)
                    .min(self.send_window as u64)
                    .min(s.send_window as u64) as usize;
                let last = s.sent + take as u64 == s.len;
                let flags = if last { END_STREAM } else { 0 };
                put_head(&mut self.out, take, DATA, flags, s.id);
                s.plan.body.put(s.plan.status, s.sent, take, &mut self.out);
                s.sent += take as u64;
                s.send_window -= take as i64;
                self.send_window -= take as i64;
                self.cursor = s.id;
                self.answer_frames += 1;
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Streams whose answer is all framed leave the table; after `/close`'s,
    /// GOAWAY.
    fn reap(&mut self) {
        let mut close = false;
        self.streams.retain(|s| {
            let done = s.head_sent && s.sent >= s.len;
            close |= done && s.plan.close;
            !done
        });
        if close && self.state == State::Open {
            put_goaway(&mut self.out, self.last_id, NO_ERROR, b"/close");
            self.state = State::Closing;
        }
    }
}

/// One decoded field of a request's header block, checked (RFC 9113
/// §8.2, §8.3.1) into `f`; `:path` is copied into `path`.
fn check_field(f: &mut Fields, path: &mut Vec<u8>, name: &[u8], value: &[u8], max_list: usize) {
    f.list = f.list.saturating_add(name.len() + value.len() + 32);
    if f.list > max_list {
        // Answered with 431; the rest is decoded only for HPACK's sake.
        return;
    }
    if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
        f.malformed
            .get_or_insert("a field value with NUL, CR or LF");
    }
    if name.first() == Some(&b':') {
        if f.regular {
            f.malformed
                .get_or_insert("a pseudo-header after a regular field");
            return;
        }
        let seen = match name {
            b":method" => {
                f.head = value == b"HEAD";
                std::mem::replace(&mut f.method, true)
            }
            b":scheme" => std::mem::replace(&mut f.scheme, true),
            b":path" => {
                path.clear();
                path.extend_from_slice(value);
                std::mem::replace(&mut f.path, true)
            }
            // Optional, and the routes do not look at it.
            b":authority" => false,
            _ => {
                f.malformed.get_or_insert("an unknown pseudo-header");
                false
            }
        };
        if seen {
            f.malformed.get_or_insert("a repeated pseudo-header");
        }
        return;
    }
    f.regular = true;
    if name.iter().any(u8::is_ascii_uppercase) {
        f.malformed.get_or_insert("an upper-case field name");
    } else if CONNECTION_SPECIFIC.contains(&name) {
        f.malformed.get_or_insert("a connection-specific field");
    } else if name == b"te" && value != b"trailers" {
        f.malformed.get_or_insert("te other than trailers");
    } else if name == b"content-length" {
        let n = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok());
        match (n, f.content_length) {
            (Some(n), None) => f.content_length = Some(n),
            (Some(n), Some(m)) if n == m => {}
            _ => {
                f.malformed
                    .get_or_insert("a bad or repeated content-length");
            }
        }
    }
}
