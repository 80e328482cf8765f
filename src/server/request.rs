//! Request-head parsing for the demo server, on `httparse` directly.
//!
//! The crate's own HTTP core (`crate::http`) is a client-side codec; the server
//! needs only the head of a request and a handful of headers, so it parses
//! with `httparse::Request` here. [`parse`] is pure and incremental: it is
//! called on everything buffered so far and answers `Partial` until a whole
//! head is there, so the connection loop just accumulates bytes and retries.
//! Every decision that depends on the bytes a client sent (framing,
//! keep-alive, the route) is made here, without panicking on any input.

use std::time::Duration;

use super::routes::{self, Plan};

/// Most headers a request may carry; more is answered with 431.
pub(crate) const MAX_HEADERS: usize = 64;

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReqBody {
    None,
    /// `Content-Length: N`: N bytes to read and discard.
    Length(u64),
    /// `Transfer-Encoding` present. The server does not decode chunked
    /// request bodies: it answers 411 and closes, since it cannot find the
    /// next request without decoding (RFC 9112 lets a server refuse this way).
    Chunked,
}

/// A complete, valid request head, reduced to what the server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// Bytes the head occupies at the front of the buffer.
    pub head_len: usize,
    /// `HEAD`: send the headers of the answer, never its body.
    pub head_only: bool,
    /// HTTP/1.`minor` (0 or 1); the answer uses the same version.
    pub minor: u8,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    pub body: ReqBody,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    pub plan: Plan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not a whole head yet; read more (the caller enforces the size limit).
    Partial,
    Complete(Request),
    /// Answer with this status (400 or 431) and close.
    Invalid(u16),
}

/// Parses the head at the start of `buf`. Any method is accepted and routed
/// like GET (so load tests with `-m POST -d ...` work); `HEAD` omits the body.
pub(crate) fn parse(buf: &[u8], max_head_bytes: usize, default_delay: Duration) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(431),
        Err(_) => return Parsed::Invalid(400),
    };
    if head_len > max_head_bytes {
        return Parsed::Invalid(431);
    }
    // A complete parse always fills method, path and version.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid(400);
    };

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .map(|v| v.trim_matches([' ', '\t']))
                .filter(|v| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                return Parsed::Invalid(400);
            };
            // Repeated Content-Length must agree, or the framing is ambiguous.
            if content_length.is_some_and(|old| old != n) {
                return Parsed::Invalid(400);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }

    // Transfer-Encoding overrides Content-Length (RFC 9112 6.3).
    let body = if transfer_encoding {
        ReqBody::Chunked
    } else {
        match content_length {
            Some(0) | None => ReqBody::None,
            Some(n) => ReqBody::Length(n),
        }
    };
    let keep_alive = !conn_close && (minor >= 1 || conn_keep_alive);

    Parsed::Complete(Request {
        head_len,
        head_only: method == "HEAD",
        minor,
        keep_alive,
        body,
        expect_continue,
        plan: routes::route(target, default_delay),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Parsed {
        parse(s, 8192, Duration::from_millis(10))
    }

    fn complete(s: &[u8]) -> Request {
        match p(s) {
            Parsed::Complete(r) => r,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn incremental() {
        let full = b"GET /bar HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(p(&full[..cut]), Parsed::Partial, "cut at {cut}");
        }
        let r = complete(full);
        assert_eq!(r.head_len, full.len());
        assert!(r.keep_alive);
        assert!(!r.head_only);
        assert_eq!(r.body, ReqBody::None);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
    }

    #[test]
    fn body_framing() {
        let r = complete(b"POST /bar HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(r.body, ReqBody::Length(5));
        assert_eq!(r.head_len, 41);
        let r =
            complete(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.body, ReqBody::Chunked);
        assert_eq!(
            p(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Parsed::Invalid(400)
        );
        assert_eq!(
            p(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Parsed::Invalid(400)
        );
        assert_eq!(
            p(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Parsed::Invalid(400)
        );
        let r = complete(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(r.body, ReqBody::Length(3));
        assert!(
            complete(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn head_and_methods() {
        assert!(complete(b"HEAD /bar HTTP/1.1\r\n\r\n").head_only);
        assert_eq!(complete(b"DELETE /bar HTTP/1.1\r\n\r\n").plan.status, 200);
    }

    #[test]
    fn invalid_and_limits() {
        assert_eq!(p(b"HELLO\0\r\n\r\n"), Parsed::Invalid(400));
        assert_eq!(p(b"GET / HTTP/2.0\r\n\r\n"), Parsed::Invalid(400));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(p(&many), Parsed::Invalid(431));
        let long = b"GET / HTTP/1.1\r\nX: yyyyyyyyyyyyyyyyyyyy\r\n\r\n";
        assert_eq!(parse(long, 20, Duration::ZERO), Parsed::Invalid(431));
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
            if let Parsed::Complete(r) = parse(&v[..cut], 8192, Duration::ZERO) {
                assert!(r.head_len <= cut);
            }
        }
    }
}
