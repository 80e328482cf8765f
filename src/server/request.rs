//! From a parsed request head to what the server acts on.
//!
//! Parsing itself is the crate's HTTP core ([`crate::http::server`]), shared
//! with the client's framing rules; this file only reduces a head to the
//! owned facts the connection loop needs and routes its target.

use std::time::Duration;

use super::routes::{self, Plan};
use crate::http::server::{HeadStatus, RequestBody, RequestHeadReader};

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
    pub body: RequestBody,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    pub plan: Plan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not a whole head yet; read more.
    Partial,
    Complete(Request),
    /// Answer with this status (400, 414 or 431) and close.
    Invalid(u16),
}

/// Parses the head at the start of `buf` with `reader` (which remembers how
/// far earlier calls looked) and routes it. Any method is accepted and
/// routed like GET (so load tests with `-m POST -d ...` work); `HEAD` omits
/// the body.
pub(crate) fn parse(
    reader: &mut RequestHeadReader,
    buf: &[u8],
    max_head_bytes: usize,
    default_delay: Duration,
) -> Parsed {
    match reader.parse(buf, max_head_bytes) {
        HeadStatus::Partial => Parsed::Partial,
        HeadStatus::Invalid(status) => Parsed::Invalid(status),
        HeadStatus::Complete(head) => Parsed::Complete(Request {
            head_len: head.len,
            head_only: head.method == "HEAD",
            minor: head.minor,
            keep_alive: head.keep_alive,
            body: head.body,
            expect_continue: head.expect_continue,
            plan: routes::route(head.target, default_delay),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Parsed {
        parse(
            &mut RequestHeadReader::default(),
            s,
            8192,
            Duration::from_millis(10),
        )
    }

    #[test]
    fn routes_what_it_parses() {
        let Parsed::Complete(r) = p(b"HEAD /bar HTTP/1.1\r\nHost: x\r\n\r\n") else {
            panic!("complete")
        };
        assert!(r.head_only);
        assert_eq!(r.plan.delay, Duration::from_millis(10));
        let Parsed::Complete(r) = p(b"DELETE /status/201 HTTP/1.1\r\nHost: x\r\n\r\n") else {
            panic!("complete")
        };
        assert!(!r.head_only);
        assert_eq!(r.plan.status, 201);
        // Methods are case-sensitive: `head` is not HEAD.
        let Parsed::Complete(r) = p(b"head /bar HTTP/1.1\r\nHost: x\r\n\r\n") else {
            panic!("complete")
        };
        assert!(!r.head_only);
        assert_eq!(p(b"GET /bar HTTP/1.1\r\n"), Parsed::Partial);
        assert_eq!(p(b"GET /bar HTTP/1.1\r\n\r\n"), Parsed::Invalid(400));
    }
}
