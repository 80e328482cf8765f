//! Routing: maps a request target to a [`Plan`] describing the answer.
//!
//! Kept pure (no I/O, no clock) so every route, limit and error can be unit
//! tested without a socket, and so the connection loop in `conn` only has to
//! know how to *send* a plan, not how to choose one. A bad route parameter
//! (an oversized `/bytes/N`, a non-numeric `?delay=`) is a well-formed HTTP
//! request, so it yields a 400 *plan* and the connection stays open; only
//! malformed HTTP closes the connection, and that is decided in `request`.
//!
//! What a body's bytes are is decided here too ([`Body::len`],
//! [`Body::put`]), so HTTP/1.x ([`super::conn`]) and HTTP/2
//! ([`super::h2`]) send the same bytes for the same route.

use std::time::Duration;

use crate::http::server::reason;

/// Largest body `/bytes/N` and `/chunked/N` will produce.
pub(crate) const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Largest `?delay=MS` accepted (10 minutes); a larger one is a 400, so a typo
/// cannot park a connection for days.
pub(crate) const MAX_DELAY_MS: u64 = 600_000;

/// Largest chunk `/chunked/N` writes; the route promises chunks of <= 1000.
pub(crate) const CHUNK: usize = 1000;

/// Length of [`FILL`]: the body pattern is cut from it.
pub(crate) const FILL_LEN: usize = 64 * 1024;

/// Body pattern for `/bytes/N` and `/chunked/N`: `abc...xyzabc...`. Static so
/// it can be handed to the kernel as an owned `&'static [u8]` buffer.
pub(crate) static FILL: [u8; FILL_LEN] = {
    let mut a = [0u8; FILL_LEN];
    let mut i = 0;
    while i < FILL_LEN {
        a[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    a
};

/// What HTTP/2 answers a header list over the limit with: HTTP/1.x's 431
/// body (see `conn`'s error answers).
pub(crate) const TOO_LARGE_BODY: &[u8] = b"Request Header Fields Too Large\n";

/// The article's bodies: 13 bytes each.
pub(crate) const FOO_BODY: &[u8] = b"<h1>foo!</h1>";
pub(crate) const BAR_BODY: &[u8] = b"<h1>bar!</h1>";

const INDEX_BODY: &[u8] = b"uringfetch demo server\n\
/foo          sleep the delay, then <h1>foo!</h1>\n\
/bar          sleep the delay, then <h1>bar!</h1>\n\
/status/NNN   answer status NNN (200-599)\n\
/bytes/N      N bytes of body (N <= 16 MiB)\n\
/chunked/N    N bytes, Transfer-Encoding: chunked, chunks <= 1000 bytes\n\
/close        <h1>bar!</h1> with Connection: close, no delay\n\
?delay=MS     on any route: sleep MS milliseconds before answering\n";

/// What the body of an answer is. `Fill` and `Chunked` are generated on the
/// fly from a static pattern so a 16 MiB answer costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// No body and no `Content-Length` (204, 304).
    Empty,
    /// A fixed body sent with `Content-Length`.
    Static(&'static [u8]),
    /// `"NNN Reason\n"` for `/status/NNN`, sent with `Content-Length`.
    Status,
    /// N pattern bytes sent with `Content-Length`.
    Fill(u64),
    /// N pattern bytes sent with `Transfer-Encoding: chunked` (HTTP/1.1 only;
    /// an HTTP/1.0 client gets `Content-Length` framing instead).
    Chunked(u64),
}

impl Body {
    /// How many bytes the body has, for an answer of `status` (the text of
    /// `/status/NNN` depends on it); a chunked body counts its payload.
    pub(crate) fn len(&self, status: u16) -> u64 {
        match *self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::Status => 3 + 1 + reason(status).len() as u64 + 1,
            Body::Fill(n) | Body::Chunked(n) => n,
        }
    }

    /// The `Content-Length` an answer carries; `None` for no body at all
    /// and for a chunked one (whose length HTTP/1.1 does not announce).
    pub(crate) fn content_length(&self, status: u16) -> Option<u64> {
        match self {
            Body::Empty | Body::Chunked(_) => None,
            _ => Some(self.len(status)),
        }
    }

    /// Appends bytes `offset..offset + n` of the body (of an answer of
    /// `status`), as HTTP/1.1 sends them once de-chunked: `/bytes/N`
    /// repeats [`FILL`] whole, `/chunked/N` its first [`CHUNK`] bytes
    /// (one chunk's worth). The range must lie within [`Body::len`].
    pub(crate) fn put(&self, status: u16, offset: u64, n: usize, out: &mut Vec<u8>) {
        let (source, period): (&[u8], usize) = match *self {
            Body::Empty => return,
            Body::Static(b) => (b, usize::MAX),
            Body::Status => {
                let mut text = Vec::with_capacity(48);
                crate::http::server::push_decimal(&mut text, status.into());
                text.push(b' ');
                text.extend_from_slice(reason(status).as_bytes());
                text.push(b'\n');
                let from = (offset as usize).min(text.len());
                let to = (from + n).min(text.len());
                out.extend_from_slice(&text[from..to]);
                return;
            }
            Body::Fill(_) => (&FILL[..], FILL_LEN),
            Body::Chunked(_) => (&FILL[..CHUNK], CHUNK),
        };
        if period == usize::MAX {
            let from = (offset as usize).min(source.len());
            let to = from.saturating_add(n).min(source.len());
            out.extend_from_slice(&source[from..to]);
            return;
        }
        let (mut at, mut left) = ((offset % period as u64) as usize, n);
        while left > 0 {
            let take = left.min(period - at);
            out.extend_from_slice(&source[at..at + take]);
            left -= take;
            at = 0;
        }
    }
}

/// The answer to one request, before any I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
    /// Sleep this long before answering.
    pub delay: Duration,
    /// The route itself demands `Connection: close` (`/close`).
    pub close: bool,
}

impl Plan {
    fn new(status: u16, content_type: &'static str, body: Body) -> Plan {
        Plan {
            status,
            content_type,
            body,
            delay: Duration::ZERO,
            close: false,
        }
    }

    fn text(status: u16, body: &'static [u8]) -> Plan {
        Plan::new(status, "text/plain", Body::Static(body))
    }

    fn bad(body: &'static [u8]) -> Plan {
        Plan::text(400, body)
    }

    /// HTTP/2's answer to a header list over the limit (HTTP/1.x answers
    /// 431 and closes; an HTTP/2 connection carries on).
    pub(crate) fn too_large() -> Plan {
        Plan::text(431, TOO_LARGE_BODY)
    }
}

/// Chooses the answer for `target` (origin-form or absolute-form).
/// `default_delay` applies to `/foo` and `/bar`; `?delay=MS` overrides it and
/// applies to every route.
pub(crate) fn route(target: &str, default_delay: Duration) -> Plan {
    let target = strip_absolute_form(target);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let query_delay = match query.map(delay_param) {
        Some(Err(())) => return Plan::bad(b"bad delay: want ?delay=MS, MS <= 600000\n"),
        Some(Ok(d)) => d,
        None => None,
    };

    let mut plan = match path {
        "/foo" | "/bar" => {
            let body = if path == "/foo" { FOO_BODY } else { BAR_BODY };
            let mut p = Plan::new(200, "text/html", Body::Static(body));
            p.delay = default_delay;
            p
        }
        "/" => Plan::text(200, INDEX_BODY),
        "/close" => {
            let mut p = Plan::new(200, "text/html", Body::Static(BAR_BODY));
            p.close = true;
            p
        }
        _ => {
            if let Some(code) = path.strip_prefix("/status/") {
                status_route(code)
            } else if let Some(n) = path.strip_prefix("/bytes/") {
                match size_param(n) {
                    Some(n) => Plan::new(200, "application/octet-stream", Body::Fill(n)),
                    None => Plan::bad(b"bad size: want /bytes/N, N <= 16777216\n"),
                }
            } else if let Some(n) = path.strip_prefix("/chunked/") {
                match size_param(n) {
                    Some(n) => Plan::new(200, "application/octet-stream", Body::Chunked(n)),
                    None => Plan::bad(b"bad size: want /chunked/N, N <= 16777216\n"),
                }
            } else {
                Plan::text(404, b"not found\n")
            }
        }
    };
    if let Some(d) = query_delay {
        plan.delay = d;
    }
    plan
}

fn status_route(code: &str) -> Plan {
    let code = match parse_digits(code) {
        Some(c) if (200..=599).contains(&c) => c as u16,
        _ => return Plan::bad(b"bad status: want /status/NNN, 200 <= NNN <= 599\n"),
    };
    // 204 and 304 never carry a body; everything else gets "NNN Reason\n".
    let body = if code == 204 || code == 304 {
        Body::Empty
    } else {
        Body::Status
    };
    Plan::new(code, "text/plain", body)
}

fn size_param(s: &str) -> Option<u64> {
    parse_digits(s).filter(|&n| n <= MAX_BODY)
}

/// `Ok(Some(d))` for a valid `delay=MS`, `Ok(None)` if absent, `Err` if
/// present but invalid. Other parameters are ignored.
fn delay_param(query: &str) -> Result<Option<Duration>, ()> {
    let mut found = None;
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("delay=") {
            match parse_digits(v) {
                Some(ms) if ms <= MAX_DELAY_MS => found = Some(Duration::from_millis(ms)),
                _ => return Err(()),
            }
        }
    }
    Ok(found)
}

/// ASCII digits only (no sign, no spaces), at most 18 of them so it cannot
/// overflow a u64.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `http://host:port/path?q` -> `/path?q`; origin-form is returned as is.
fn strip_absolute_form(target: &str) -> &str {
    let rest = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        Some(rest) => rest,
        None => return target,
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        // `http://host?q` has an empty path, which means `/`; keep the query
        // by answering the index (the query then still applies).
        Some(_) | None => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(1000);

    #[test]
    fn foo_bar_use_default_delay() {
        let p = route("/foo", D);
        assert_eq!(p.status, 200);
        assert_eq!(p.body, Body::Static(b"<h1>foo!</h1>"));
        assert_eq!(p.content_type, "text/html");
        assert_eq!(p.delay, D);
        assert_eq!(route("/bar", D).body, Body::Static(b"<h1>bar!</h1>"));
        assert_eq!(FOO_BODY.len(), 13);
        assert_eq!(BAR_BODY.len(), 13);
    }

    #[test]
    fn delay_query_overrides_and_applies_everywhere() {
        assert_eq!(route("/bar?delay=5", D).delay, Duration::from_millis(5));
        assert_eq!(route("/bar?x=1&delay=0", D).delay, Duration::ZERO);
        assert_eq!(route("/nope?delay=7", D).delay, Duration::from_millis(7));
        assert_eq!(route("/", D).delay, Duration::ZERO);
        assert_eq!(route("/bar?delay=abc", D).status, 400);
        assert_eq!(route("/bar?delay=600001", D).status, 400);
        assert_eq!(route("/bar?delay=-1", D).status, 400);
    }

    #[test]
    fn status_route_limits() {
        assert_eq!(route("/status/503", D).status, 503);
        assert_eq!(route("/status/503", D).body, Body::Status);
        assert_eq!(route("/status/204", D).body, Body::Empty);
        assert_eq!(route("/status/304", D).body, Body::Empty);
        assert_eq!(route("/status/100", D).status, 400);
        assert_eq!(route("/status/600", D).status, 400);
        assert_eq!(route("/status/+200", D).status, 400);
        assert_eq!(route("/status/", D).status, 400);
    }

    #[test]
    fn size_routes_cap() {
        assert_eq!(route("/bytes/0", D).body, Body::Fill(0));
        assert_eq!(route("/bytes/16777216", D).body, Body::Fill(MAX_BODY));
        assert_eq!(route("/bytes/16777217", D).status, 400);
        assert_eq!(route("/bytes/99999999999999999999999", D).status, 400);
        assert_eq!(route("/chunked/2500", D).body, Body::Chunked(2500));
        assert_eq!(route("/chunked/x", D).status, 400);
    }

    #[test]
    fn bodies_are_cut_from_the_pattern_as_http1_sends_them() {
        let whole = |b: &Body, status: u16| {
            let mut v = Vec::new();
            b.put(status, 0, b.len(status) as usize, &mut v);
            v
        };
        // /bytes/N: FILL repeated whole, so byte i is FILL[i % FILL_LEN].
        let n = FILL_LEN as u64 * 2 + 7;
        let fill = whole(&Body::Fill(n), 200);
        assert_eq!(fill.len() as u64, n);
        assert!(
            fill.iter()
                .enumerate()
                .all(|(i, &c)| c == FILL[i % FILL_LEN])
        );
        // /chunked/N: each chunk is FILL[..k] with k <= CHUNK.
        let chunked = whole(&Body::Chunked(2500), 200);
        assert_eq!(&chunked[..CHUNK], &FILL[..CHUNK]);
        assert_eq!(&chunked[2000..], &FILL[..500]);
        // Any split gives the same bytes.
        let mut pieces = Vec::new();
        let mut at = 0u64;
        for k in [1usize, 999, 2, 65_536, 3, 70_000] {
            let k = k.min((n - at) as usize);
            Body::Fill(n).put(200, at, k, &mut pieces);
            at += k as u64;
        }
        assert_eq!(&pieces[..], &fill[..at as usize]);
        assert_eq!(whole(&Body::Status, 503), b"503 Service Unavailable\n");
        let mut tail = Vec::new();
        Body::Status.put(503, 4, 100, &mut tail);
        assert_eq!(tail, b"Service Unavailable\n");
        assert_eq!(whole(&Body::Static(FOO_BODY), 200), FOO_BODY);
        assert_eq!(Body::Empty.len(204), 0);
        assert_eq!(Body::Chunked(9).content_length(200), None);
        assert_eq!(Body::Empty.content_length(204), None);
        assert_eq!(Body::Fill(9).content_length(200), Some(9));
        assert_eq!(FILL[26], b'a');
    }

    #[test]
    fn close_index_and_404() {
        let c = route("/close", D);
        assert!(c.close);
        assert_eq!(c.delay, Duration::ZERO);
        assert_eq!(route("/", D).status, 200);
        assert_eq!(route("/foo/", D).status, 404);
        assert_eq!(route("*", D).status, 404);
        assert_eq!(route("http://h:1/foo", D).body, Body::Static(FOO_BODY));
        assert_eq!(route("http://h:1", D).status, 200);
    }
}
