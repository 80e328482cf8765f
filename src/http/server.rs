//! The server side of HTTP/1.x, sans-IO: request heads parsed incrementally
//! and response heads encoded. The demo server (on either of its I/O
//! engines) uses nothing else to read requests and frame answers, and the
//! framing rules it shares with the client's response parser live in
//! [`fields`](super::fields).
//!
//! [`RequestHeadReader::parse`] is called on everything buffered for the
//! next request and answers `Partial` until a whole head is there; it only
//! re-runs httparse once a blank line may have arrived (or while the buffer
//! is short enough for that to be free), so a head dribbled in small reads
//! costs linear, not quadratic, time. Every decision that depends on the
//! bytes a client sent (limits, framing, keep-alive, `Host`) is made here,
//! without panicking on any input.

use super::fields::{find_head_end, merge_content_length, tokens};

/// Most headers a request may carry; more is answered with 431.
pub(crate) const MAX_REQUEST_HEADERS: usize = 64;

/// Smallest `--max-head-bytes`: below this, ordinary requests from browsers
/// and curl (a few hundred bytes, more with cookies) would get 431.
pub(crate) const MIN_HEAD_LIMIT: usize = 1024;
/// Largest `--max-head-bytes`: a connection may buffer this much while its
/// head arrives, so thousands of slow clients times the limit must fit in
/// memory (Apache caps a field at 8 KiB and nginx's buffers default to 8 KiB).
pub(crate) const MAX_HEAD_LIMIT: usize = 1024 * 1024;

/// While at most this many bytes of an incomplete head are buffered, each
/// call re-runs httparse on them, so garbage (a TLS hello, HTTP/2's
/// preface) is refused as soon as it arrives rather than at the size limit.
const EARLY_CHECK_BYTES: usize = 1024;

/// Parses a `--max-head-bytes` value and keeps it within
/// [`MIN_HEAD_LIMIT`]..=[`MAX_HEAD_LIMIT`].
pub(crate) fn parse_head_limit(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid size '{s}': want a number of bytes"))?;
    check_head_limit(n)
}

/// `n` if it is a usable request-head limit, else why not.
pub(crate) fn check_head_limit(n: usize) -> Result<usize, String> {
    if (MIN_HEAD_LIMIT..=MAX_HEAD_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} bytes is outside {MIN_HEAD_LIMIT}..={MAX_HEAD_LIMIT} (1 KiB to 1 MiB): \
             smaller refuses ordinary requests, larger lets each slow client hold that \
             much memory"
        ))
    }
}

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestBody {
    None,
    /// `Content-Length: N` (repeats allowed when identical).
    Length(u64),
    /// `Transfer-Encoding` present, whatever the coding: it overrides
    /// `Content-Length` (RFC 9112 §6.3).
    Chunked,
}

/// A complete, valid request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead<'a> {
    /// Bytes the head occupies at the front of the buffer.
    pub len: usize,
    pub method: &'a str,
    pub target: &'a str,
    /// HTTP/1.`minor` (0 or 1).
    pub minor: u8,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    pub body: RequestBody,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// What the bytes buffered so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadStatus<'a> {
    /// Not a whole head yet; read more.
    Partial,
    Complete(RequestHead<'a>),
    /// Answer with this status (400, 414 or 431) and close.
    Invalid(u16),
}

/// Finds request heads in a buffer that grows between calls.
#[derive(Debug, Default)]
pub(crate) struct RequestHeadReader {
    /// Prefix of the buffer already known not to end a head.
    scanned: usize,
}

impl RequestHeadReader {
    /// Parses the head at the start of `buf` (the bytes of the next request,
    /// from its first byte). Call again with more bytes appended after
    /// `Partial`; after `Complete` or `Invalid` the reader starts afresh.
    pub(crate) fn parse<'a>(&mut self, buf: &'a [u8], max_head_bytes: usize) -> HeadStatus<'a> {
        let mut from = self.scanned.min(buf.len());
        while let Some(end) = find_head_end(buf, from) {
            match parse_head(&buf[..end], max_head_bytes) {
                Some(status) => {
                    self.scanned = 0;
                    return status;
                }
                // Blank lines before the request line (RFC 9112 §2.2).
                None => from = end,
            }
        }
        if buf.len() <= EARLY_CHECK_BYTES
            && let Some(status @ HeadStatus::Invalid(_)) = parse_head(buf, max_head_bytes)
        {
            self.scanned = 0;
            return status;
        }
        if buf.len() > max_head_bytes {
            self.scanned = 0;
            return HeadStatus::Invalid(too_long(buf, max_head_bytes));
        }
        self.scanned = buf.len();
        HeadStatus::Partial
    }
}

/// 414 when the request line alone is over the limit, else 431.
fn too_long(head: &[u8], max_head_bytes: usize) -> u16 {
    match head.iter().position(|&b| b == b'\n') {
        Some(i) if i < max_head_bytes => 431,
        _ => 414,
    }
}

/// Runs httparse on `bytes`; `None` while the head is incomplete.
fn parse_head(bytes: &[u8], max_head_bytes: usize) -> Option<HeadStatus<'_>> {
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_request_with_uninit_headers(&mut req, bytes, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => return Some(HeadStatus::Invalid(431)),
        Err(_) => return Some(HeadStatus::Invalid(400)),
    };
    if len > max_head_bytes {
        return Some(HeadStatus::Invalid(too_long(&bytes[..len], max_head_bytes)));
    }
    // A complete parse always fills method, path and version.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Some(HeadStatus::Invalid(400));
    };

    let mut content_length: Option<Result<u64, ()>> = None;
    let mut transfer_encoding = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut hosts = 0usize;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(merge_content_length(content_length, h.value));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                conn_close |= t.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("host") {
            if !valid_host(h.value) {
                return Some(HeadStatus::Invalid(400));
            }
            hosts += 1;
        }
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, never two in any version.
    if hosts > 1 || (minor >= 1 && hosts == 0) {
        return Some(HeadStatus::Invalid(400));
    }

    let body = if transfer_encoding {
        RequestBody::Chunked
    } else {
        match content_length {
            Some(Err(())) => return Some(HeadStatus::Invalid(400)),
            Some(Ok(0)) | None => RequestBody::None,
            Some(Ok(n)) => RequestBody::Length(n),
        }
    };
    Some(HeadStatus::Complete(RequestHead {
        len,
        method,
        target,
        minor,
        keep_alive: !conn_close && (minor >= 1 || conn_keep_alive),
        body,
        expect_continue,
    }))
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2), loosely: the characters a
/// reg-name, an IP literal and a port may contain. Empty is allowed (a
/// target without an authority).
fn valid_host(value: &[u8]) -> bool {
    value
        .trim_ascii()
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%[]".contains(&b))
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body and no `Content-Length` (204, 304).
    None,
    Length(u64),
    Chunked,
}

/// What the `Connection` header of an answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnHeader {
    /// HTTP/1.1 keep-alive: nothing to say.
    Default,
    Close,
    /// An HTTP/1.0 client asked for keep-alive and gets it.
    KeepAlive,
}

/// A response head, encoded by [`ResponseHead::encode`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseHead<'a> {
    /// The answer's HTTP/1.`minor`: the request's.
    pub minor: u8,
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub framing: Framing,
    pub connection: ConnHeader,
}

impl ResponseHead<'_> {
    /// Appends the head (blank line included) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.minor == 0 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        push_decimal(out, self.status.into());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nServer: uringfetch\r\n");
        if let Some(ct) = self.content_type {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(ct.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        match self.framing {
            Framing::None => {}
            Framing::Length(n) => {
                out.extend_from_slice(b"Content-Length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        match self.connection {
            ConnHeader::Default => {}
            ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
            ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the size line of a chunk of `n` bytes (`3e8\r\n`).
pub(crate) fn push_chunk_size(out: &mut Vec<u8>, mut n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut digits));
}

/// `n` in decimal, written at the end of `buf`.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Reason phrase for the status line; clients must not depend on it, so an
/// uncommon code just gets a generic one.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> HeadStatus<'_> {
        RequestHeadReader::default().parse(s, 8192)
    }

    fn complete(s: &[u8]) -> RequestHead<'_> {
        match p(s) {
            HeadStatus::Complete(r) => r,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn incremental_at_every_split() {
        let full = b"GET /bar HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut reader = RequestHeadReader::default();
        for cut in 0..full.len() {
            assert_eq!(
                reader.parse(&full[..cut], 8192),
                HeadStatus::Partial,
                "cut {cut}"
            );
        }
        let r = match reader.parse(full, 8192) {
            HeadStatus::Complete(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.len, full.len());
        assert_eq!((r.method, r.target, r.minor), ("GET", "/bar", 1));
        assert!(r.keep_alive);
        assert_eq!(r.body, RequestBody::None);
        // Fresh state for the next request on the connection.
        assert_eq!(reader.scanned, 0);
        // Blank lines before the request line are skipped.
        assert_eq!(
            complete(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n").target,
            "/"
        );
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n").keep_alive
        );
        assert!(complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").keep_alive);
    }

    #[test]
    fn body_framing_shares_the_clients_content_length_rule() {
        let r = complete(b"POST /bar HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(r.body, RequestBody::Length(5));
        assert_eq!(r.len, 50);
        let r = complete(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(r.body, RequestBody::Chunked);
        for bad in [&b"x"[..], b"-1", b"", b"5, 6", b"1\r\nContent-Length: 2"] {
            let mut req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ".to_vec();
            req.extend_from_slice(bad);
            req.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                p(&req),
                HeadStatus::Invalid(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // RFC 9110 §8.6: identical repeats, in one field or two, as the client accepts.
        for same in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n",
        ] {
            assert_eq!(complete(same).body, RequestBody::Length(3));
        }
        assert!(
            complete(
                b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
            )
            .expect_continue
        );
    }

    #[test]
    fn host_is_required_once_in_http11() {
        assert_eq!(p(b"GET / HTTP/1.1\r\n\r\n"), HeadStatus::Invalid(400));
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            HeadStatus::Invalid(400)
        );
        assert_eq!(
            p(b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"),
            HeadStatus::Invalid(400)
        );
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            HeadStatus::Invalid(400)
        );
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").minor, 0);
        assert_eq!(
            complete(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").minor,
            1
        );
        assert_eq!(complete(b"GET * HTTP/1.1\r\nHost:\r\n\r\n").target, "*");
    }

    #[test]
    fn limits_414_and_431() {
        assert_eq!(p(b"HELLO\0\r\n\r\n"), HeadStatus::Invalid(400));
        assert_eq!(p(b"GET / HTTP/2.0\r\n\r\n"), HeadStatus::Invalid(400));
        // Garbage is refused before any blank line arrives.
        assert_eq!(p(b"\x16\x03\x01\x02\x00"), HeadStatus::Invalid(400));
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..MAX_REQUEST_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(p(&many), HeadStatus::Invalid(431));

        let mut reader = RequestHeadReader::default();
        let long_field = b"GET / HTTP/1.1\r\nHost: x\r\nX: yyyyyyyyyyyyyyyyyyyy\r\n\r\n";
        assert_eq!(reader.parse(long_field, 30), HeadStatus::Invalid(431));
        assert_eq!(
            reader.parse(&long_field[..35], 30),
            HeadStatus::Invalid(431)
        );
        let long_line = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(reader.parse(long_line, 30), HeadStatus::Invalid(414));
        assert_eq!(reader.parse(&long_line[..31], 30), HeadStatus::Invalid(414));
        assert_eq!(reader.parse(&long_line[..30], 30), HeadStatus::Partial);
    }

    #[test]
    fn head_limit_option() {
        assert_eq!(parse_head_limit("16384"), Ok(16384));
        assert_eq!(parse_head_limit("1024"), Ok(1024));
        assert_eq!(parse_head_limit("1048576"), Ok(1 << 20));
        for bad in ["0", "1023", "1048577", "18446744073709551615", "x", "-1"] {
            assert!(parse_head_limit(bad).is_err(), "{bad}");
        }
        assert!(
            parse_head_limit("0")
                .unwrap_err()
                .contains("1 KiB to 1 MiB")
        );
    }

    /// A head dribbled a byte at a time is scanned once, not once per byte.
    #[test]
    fn a_dribbled_head_is_scanned_in_linear_time() {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 200_000));
        let mut reader = RequestHeadReader::default();
        let t = std::time::Instant::now();
        for cut in (EARLY_CHECK_BYTES..head.len()).step_by(16) {
            assert_eq!(
                reader.parse(&head[..cut], MAX_HEAD_LIMIT),
                HeadStatus::Partial
            );
        }
        head.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            reader.parse(&head, MAX_HEAD_LIMIT),
            HeadStatus::Complete(_)
        ));
        // Quadratic re-parsing took seconds here; linear takes milliseconds.
        assert!(
            t.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn response_heads() {
        let mut out = Vec::new();
        ResponseHead {
            minor: 1,
            status: 200,
            content_type: Some("text/html"),
            framing: Framing::Length(13),
            connection: ConnHeader::Default,
        }
        .encode(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: uringfetch\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n"
        );
        out.clear();
        ResponseHead {
            minor: 0,
            status: 204,
            content_type: None,
            framing: Framing::None,
            connection: ConnHeader::KeepAlive,
        }
        .encode(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.0 204 No Content\r\nServer: uringfetch\r\nConnection: keep-alive\r\n\r\n"
        );
        out.clear();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, u64::MAX);
        out.push(b' ');
        push_chunk_size(&mut out, 1000);
        push_chunk_size(&mut out, 0);
        assert_eq!(out, b"0 18446744073709551615 3e8\r\n0\r\n");
    }

    /// Mutated and truncated requests never panic, and whatever is accepted
    /// as complete fits in the input.
    #[test]
    fn mutations_never_panic() {
        let base = b"POST /bytes/10?delay=5 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: keep-alive, close\r\n\r\nabc";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..20_000 {
            let mut v = base.to_vec();
            for _ in 0..(next() % 4) {
                let at = next() % v.len();
                v[at] = next() as u8;
            }
            let cut = next() % (v.len() + 1);
            let mut reader = RequestHeadReader::default();
            // Once split, once whole: the same verdict.
            let split = next() % (cut + 1);
            let first = reader.parse(&v[..split], 8192);
            let whole = RequestHeadReader::default().parse(&v[..cut], 8192);
            if first == HeadStatus::Partial {
                assert_eq!(reader.parse(&v[..cut], 8192), whole);
            }
            if let HeadStatus::Complete(r) = whole {
                assert!(r.len <= cut);
            }
        }
    }
}
