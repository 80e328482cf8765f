//! Incremental response parser on httparse.
//!
//! Built for a load generator's hot path: the common case (a whole head in
//! one read) is parsed straight from the caller's slice with no copy, heads
//! split across reads are buffered in a `Vec` that is reused across
//! responses, and bodies are framed by arithmetic, so without `collect` the
//! steady state neither allocates nor copies body bytes.

use super::chunked::ChunkedDecoder;
use super::fields::{find_head_end, merge_content_length, tokens};
use super::{MAX_HEAD_BYTES, MAX_HEADERS};

/// A typed framing error; never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("response header block larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {0} response headers")]
    TooManyHeaders(usize),
    #[error("malformed response head: {0}")]
    BadHead(String),
    #[error("invalid Content-Length")]
    BadContentLength,
    /// Also used for malformed chunk framing after the size line (missing
    /// CRLF after chunk data, bare LF in trailers): all mean the same thing
    /// to the caller, the body cannot be delimited.
    #[error("invalid chunk size line")]
    BadChunk,
    #[error("connection closed inside a response ({0})")]
    UnexpectedEof(&'static str),
}

/// What a finished response looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Response {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Bytes of the final head (status line + headers + blank line); interim
    /// 1xx heads are not counted here.
    pub head_bytes: usize,
    /// Bytes of the decoded body (chunked framing not counted).
    pub body_bytes: u64,
    /// Bytes on the wire for this response, interim 1xx heads and chunk framing included.
    pub wire_bytes: u64,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    /// Bytes of the slice passed to the last `feed` that belong to this
    /// response; anything after them is the start of the next response.
    pub consumed: usize,
}

/// Progress after feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done(Response),
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Head,
    /// Content-Length body; bytes still expected.
    Fixed(u64),
    Chunked(ChunkedDecoder),
    /// Body runs until the peer closes the connection.
    Close,
    Done,
}

/// Parses one response at a time; `reset` readies it for the next one and
/// keeps its buffers, so the steady state does not allocate.
///
/// A fresh parser (from `new` or `default`) expects the response to a
/// non-HEAD request; call `reset(true)` before feeding a HEAD response.
/// Feeding again after `Done` without `reset` starts the next response as if
/// `reset` had been called with the previous `head_request`, which is what a
/// pipelining caller wants anyway. A malformed head is reported as soon as
/// httparse sees it in a first read, but once a head is split across reads
/// only its first bytes are checked early and the rest when the blank line
/// arrives, so a truncated malformed head may end in `UnexpectedEof` instead
/// of `BadHead` (or `TooManyHeaders`). After an error the connection is unusable
/// and the parser must be `reset` before reuse.
#[derive(Debug, Default)]
pub struct ResponseParser {
    collect: bool,
    head_request: bool,
    started: bool,
    state: State,
    /// Pending head bytes while in `Head`; with `collect`, the final head after.
    buf: Vec<u8>,
    /// Prefix of `buf` already known not to end a head, so a small feed only
    /// searches its own bytes for the blank line.
    scanned: usize,
    body: Vec<u8>,
    resp: Response,
}

/// While fewer head bytes than this are buffered, each feed re-runs httparse
/// on them so that garbage is rejected as early as when it arrives whole;
/// longer heads are only parsed once a blank line may have arrived.
const STATUS_PROBE_BYTES: usize = 32;

/// Facts taken from a parsed head, copied out so `buf` is no longer borrowed.
#[derive(Debug, Clone, Copy)]
struct HeadInfo {
    len: usize,
    status: u16,
    minor: u8,
    /// `Some(final coding is chunked)` when Transfer-Encoding is present.
    te_chunked: Option<bool>,
    /// `Some(Err(()))` for an invalid or conflicting value; only an error if
    /// the length is actually needed to frame the body.
    content_length: Option<Result<u64, ()>>,
    conn_close: bool,
    conn_keep_alive: bool,
}

impl HeadInfo {
    /// 1xx other than 101 are interim: the real response follows.
    fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

impl ResponseParser {
    /// `collect` keeps the raw final head and the decoded body (for `get`).
    pub fn new(collect: bool) -> Self {
        Self {
            collect,
            ..Self::default()
        }
    }

    /// Starts a new response. `head_request`: the request was HEAD, so no body.
    pub fn reset(&mut self, head_request: bool) {
        self.head_request = head_request;
        self.started = false;
        self.state = State::Head;
        self.buf.clear();
        self.scanned = 0;
        self.body.clear();
        self.resp = Response::default();
    }

    /// Feeds bytes received from the peer.
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, HttpError> {
        if matches!(self.state, State::Done) {
            self.reset(self.head_request);
        }
        if !data.is_empty() {
            self.started = true;
        }
        let mut pos = 0;
        loop {
            let rest = data.get(pos..).unwrap_or_default();
            match &mut self.state {
                State::Head => match self.feed_head(rest)? {
                    None => return Ok(Progress::NeedMore),
                    Some(n) => pos += n,
                },
                State::Fixed(remaining) => {
                    if rest.is_empty() {
                        return Ok(Progress::NeedMore);
                    }
                    // At most `rest.len()`, so the cast back cannot truncate.
                    let n = (*remaining).min(rest.len() as u64) as usize;
                    *remaining -= n as u64;
                    let finished = *remaining == 0;
                    if self.collect {
                        self.body.extend_from_slice(&rest[..n]);
                    }
                    self.resp.body_bytes += n as u64;
                    self.resp.wire_bytes += n as u64;
                    pos += n;
                    if finished {
                        self.state = State::Done;
                    }
                }
                State::Chunked(decoder) => {
                    if rest.is_empty() {
                        return Ok(Progress::NeedMore);
                    }
                    let sink = if self.collect {
                        Some(&mut self.body)
                    } else {
                        None
                    };
                    let step = decoder.feed(rest, sink)?;
                    self.resp.body_bytes += step.data;
                    self.resp.wire_bytes += step.consumed as u64;
                    pos += step.consumed;
                    if step.done {
                        self.state = State::Done;
                    } else {
                        return Ok(Progress::NeedMore);
                    }
                }
                State::Close => {
                    if self.collect {
                        self.body.extend_from_slice(rest);
                    }
                    self.resp.body_bytes += rest.len() as u64;
                    self.resp.wire_bytes += rest.len() as u64;
                    return Ok(Progress::NeedMore);
                }
                State::Done => {
                    self.resp.consumed = pos;
                    return Ok(Progress::Done(self.resp));
                }
            }
        }
    }

    /// The peer closed the connection: completes a close-delimited body, or errors.
    pub fn feed_eof(&mut self) -> Result<Response, HttpError> {
        let reason = match self.state {
            State::Close => {
                self.state = State::Done;
                self.resp.consumed = 0;
                return Ok(self.resp);
            }
            State::Done => {
                // The previous response was already reported; this is a close
                // between responses.
                self.reset(self.head_request);
                "before the status line"
            }
            State::Head if !self.started => "before the status line",
            State::Head => "in the headers",
            State::Fixed(_) => "in the body",
            State::Chunked(_) => "in a chunk",
        };
        Err(HttpError::UnexpectedEof(reason))
    }

    /// Whether any byte of the current response has been seen.
    pub fn started(&self) -> bool {
        self.started
    }

    /// With `collect`: the raw final head (status line and headers, CRLFs included).
    pub fn head(&self) -> &[u8] {
        match self.state {
            State::Head => &[],
            _ => &self.buf,
        }
    }

    /// With `collect`: the decoded body received so far (since the last
    /// [`ResponseParser::clear_body`]).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Forgets the body bytes collected so far (a caller that streams them
    /// out keeps the parser's memory to one read's worth).
    pub fn clear_body(&mut self) {
        self.body.clear();
    }

    /// Consumes head bytes from `input`. Returns how many once a head (interim
    /// or final) is complete and the state has moved on; `None` when all of
    /// `input` was buffered and more is needed.
    fn feed_head(&mut self, input: &[u8]) -> Result<Option<usize>, HttpError> {
        if self.buf.is_empty() {
            // Fast path: parse in place, copying only what must outlive the call.
            let window = &input[..input.len().min(MAX_HEAD_BYTES)];
            if let Some(info) = parse_head(window)? {
                if self.collect && !info.is_interim() {
                    self.buf.extend_from_slice(&window[..info.len]);
                }
                self.on_head(&info)?;
                return Ok(Some(info.len));
            }
            // httparse looked at every byte without finding the end of a
            // head, so a later end can only finish in later bytes.
            if input.len() >= MAX_HEAD_BYTES {
                return Err(HttpError::HeadTooLarge(MAX_HEAD_BYTES));
            }
            self.buf.extend_from_slice(input);
            self.scanned = input.len();
            return Ok(None);
        }

        let prev = self.buf.len();
        let take = input.len().min(MAX_HEAD_BYTES.saturating_sub(prev));
        self.buf.extend_from_slice(&input[..take]);
        let mut from = self.scanned;
        while let Some(end) = find_head_end(&self.buf, from) {
            if let Some(info) = parse_head(&self.buf[..end])? {
                if self.collect && !info.is_interim() {
                    self.buf.truncate(info.len);
                } else {
                    self.buf.clear();
                }
                self.scanned = 0;
                self.on_head(&info)?;
                return Ok(Some(info.len.saturating_sub(prev)));
            }
            from = end;
        }
        // A peer that is not speaking HTTP/1 (TLS, HTTP/2) may never send a
        // blank line, so while the buffer is short enough to re-parse for
        // free, let httparse reject a bad status line now rather than at
        // the size limit or EOF.
        if prev < STATUS_PROBE_BYTES {
            parse_head(&self.buf)?;
        }
        self.scanned = self.buf.len();
        if self.buf.len() >= MAX_HEAD_BYTES {
            return Err(HttpError::HeadTooLarge(MAX_HEAD_BYTES));
        }
        Ok(None)
    }

    /// Decides body framing and connection reuse from a complete head.
    fn on_head(&mut self, info: &HeadInfo) -> Result<(), HttpError> {
        self.resp.wire_bytes += info.len as u64;
        if info.is_interim() {
            return Ok(());
        }
        self.resp.status = info.status;
        self.resp.version_minor = info.minor;
        self.resp.head_bytes = info.len;
        let mut keep_alive = if info.minor >= 1 {
            !info.conn_close
        } else {
            info.conn_keep_alive && !info.conn_close
        };

        let no_body = self.head_request
            || (100..200).contains(&info.status)
            || info.status == 204
            || info.status == 304;
        self.state = if no_body {
            if info.status == 101 {
                // The connection now speaks another protocol.
                keep_alive = false;
            }
            State::Done
        } else if let Some(chunked) = info.te_chunked {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, but
            // a message with both smells of smuggling, so do not reuse the
            // connection after it.
            if info.content_length.is_some() {
                keep_alive = false;
            }
            if chunked {
                State::Chunked(ChunkedDecoder::new())
            } else {
                keep_alive = false;
                State::Close
            }
        } else {
            match info.content_length {
                Some(Err(())) => return Err(HttpError::BadContentLength),
                Some(Ok(0)) => State::Done,
                Some(Ok(n)) => State::Fixed(n),
                None => {
                    keep_alive = false;
                    State::Close
                }
            }
        };
        self.resp.keep_alive = keep_alive;
        Ok(())
    }
}

/// Runs httparse; `None` while the head is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<HeadInfo>, HttpError> {
    // Left uninitialised: httparse writes each header before it reads it,
    // and zeroing 100 headers (3.2 KB) cost more than parsing a small head.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, bytes, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders(MAX_HEADERS));
        }
        Err(e) => return Err(HttpError::BadHead(e.to_string())),
    };
    let status = parsed.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(HttpError::BadHead(format!("status code {status:03}")));
    }
    let mut info = HeadInfo {
        len,
        status,
        minor: parsed.version.unwrap_or(1),
        te_chunked: None,
        content_length: None,
        conn_close: false,
        conn_keep_alive: false,
    };
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            info.content_length = Some(merge_content_length(info.content_length, h.value));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding of the last field says how the body ends.
            if let Some(last) = tokens(h.value).last() {
                info.te_chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            } else if info.te_chunked.is_none() {
                info.te_chunked = Some(false);
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                info.conn_close |= t.eq_ignore_ascii_case(b"close");
                info.conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    Ok(Some(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIRE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";

    /// The hot-path promise: whole heads are never copied, and split heads
    /// reuse the buffer grown by the first one.
    #[test]
    fn steady_state_reuses_buffers() {
        let mut p = ResponseParser::new(false);
        for _ in 0..100 {
            assert!(matches!(p.feed(WIRE), Ok(Progress::Done(_))));
            p.reset(false);
        }
        assert_eq!(p.buf.capacity(), 0);
        assert_eq!(p.body.capacity(), 0);

        let (a, b) = WIRE.split_at(20);
        let mut capacity = None;
        for _ in 0..100 {
            assert_eq!(p.feed(a), Ok(Progress::NeedMore));
            assert!(matches!(p.feed(b), Ok(Progress::Done(_))));
            p.reset(false);
            assert_eq!(*capacity.get_or_insert(p.buf.capacity()), p.buf.capacity());
        }
        assert_eq!(p.body.capacity(), 0);
    }
}
