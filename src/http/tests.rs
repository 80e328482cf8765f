//! Parser and encoder tests.
//!
//! The parser's promise is that the outcome never depends on how the bytes
//! were split into reads, so every fixture is fed whole, split at every byte
//! boundary, one byte at a time, and in pseudo-random pieces, and each run
//! must agree exactly.

use super::*;

/// One finished response with what `collect` kept; `consumed` is zeroed
/// because it legitimately depends on the split.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    resp: Response,
    head: Vec<u8>,
    body: Vec<u8>,
}

/// Feeds `pieces` in order, handing leftover bytes to the next response as a
/// pipelining caller would, then signals EOF if a response is in progress.
fn drive(pieces: &[&[u8]], head_request: bool, collect: bool) -> Result<Vec<Parsed>, HttpError> {
    let mut p = ResponseParser::new(collect);
    p.reset(head_request);
    let mut out = Vec::new();
    let mut record = |p: &ResponseParser, mut resp: Response| {
        resp.consumed = 0;
        out.push(Parsed {
            resp,
            head: p.head().to_vec(),
            body: p.body().to_vec(),
        });
    };
    for piece in pieces {
        let mut rest = *piece;
        loop {
            match p.feed(rest)? {
                Progress::NeedMore => break,
                Progress::Done(r) => {
                    assert!(r.consumed <= rest.len());
                    record(&p, r);
                    rest = &rest[r.consumed..];
                    p.reset(head_request);
                    if rest.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    if p.started() {
        let r = p.feed_eof()?;
        record(&p, r);
    }
    Ok(out)
}

/// Tiny xorshift64 so the random-split test is deterministic without crates.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_pieces<'a>(wire: &'a [u8], rng: &mut XorShift, max: usize) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let n = (rng.next() as usize % max + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        pieces.push(a);
        rest = b;
    }
    pieces
}

/// Every way of splitting `wire` this suite tries, whole input first.
fn all_splits(wire: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut runs = vec![vec![wire]];
    for i in 0..=wire.len() {
        let (a, b) = wire.split_at(i);
        runs.push(vec![a, b]);
    }
    runs.push(wire.chunks(1).collect());
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ wire.len() as u64);
    for max in [2, 3, 7, 16, 64] {
        for _ in 0..20 {
            runs.push(random_pieces(wire, &mut rng, max));
        }
    }
    runs
}

/// Asserts every split parses `wire` to `expected`, with and without collect.
fn check(wire: &[u8], head_request: bool, expected: &[Parsed]) {
    for pieces in all_splits(wire) {
        let got = drive(&pieces, head_request, true).unwrap_or_else(|e| {
            panic!(
                "split {:?}: {e}",
                pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
            )
        });
        assert_eq!(
            got,
            expected,
            "split {:?}",
            pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        let lean = drive(&pieces, head_request, false).expect("lean parse");
        assert_eq!(lean.len(), expected.len());
        for (l, e) in lean.iter().zip(expected) {
            assert_eq!(l.resp, e.resp);
            assert!(l.head.is_empty() && l.body.is_empty());
        }
    }
}

/// Asserts every split of `wire` fails with an error `matches` accepts.
fn check_err(wire: &[u8], matches: impl Fn(&HttpError) -> bool) {
    for pieces in all_splits(wire) {
        for collect in [true, false] {
            match drive(&pieces, false, collect) {
                Err(e) if matches(&e) => {}
                other => panic!(
                    "split {:?}: unexpected {other:?}",
                    pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
                ),
            }
        }
    }
}

fn parsed(
    status: u16,
    minor: u8,
    head: &[u8],
    body: &[u8],
    wire_bytes: usize,
    keep_alive: bool,
) -> Parsed {
    Parsed {
        resp: Response {
            status,
            version_minor: minor,
            head_bytes: head.len(),
            body_bytes: body.len() as u64,
            wire_bytes: wire_bytes as u64,
            keep_alive,
            consumed: 0,
        },
        head: head.to_vec(),
        body: body.to_vec(),
    }
}

/// Whole-buffer parse, for checking `consumed` which the split runs ignore.
fn feed_whole(wire: &[u8], head_request: bool) -> Result<Progress, HttpError> {
    let mut p = ResponseParser::new(false);
    p.reset(head_request);
    p.feed(wire)
}

const CL_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n";

#[test]
fn content_length() {
    let wire = [CL_HEAD, b"hello"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 1, CL_HEAD, b"hello", wire.len(), true)],
    );
    match feed_whole(&wire, false) {
        Ok(Progress::Done(r)) => assert_eq!(r.consumed, wire.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_length_zero_and_duplicates() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    check(head, false, &[parsed(200, 1, head, b"", head.len(), true)]);
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\ncontent-length:3\r\n\r\n";
    let wire = [&head[..], b"abc"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 1, head, b"abc", wire.len(), true)],
    );
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
    let body: &[u8] = b"5;foo=bar\r\nhello\r\n6 ; a=\"b c\"\r\n world\r\n00A\r\n0123456789\r\n\
0;last\r\nX-Trailer: 1\r\nY: two\r\n\r\n";
    let wire = [head, body].concat();
    check(
        &wire,
        false,
        &[parsed(
            200,
            1,
            head,
            b"hello world0123456789",
            wire.len(),
            true,
        )],
    );
}

#[test]
fn chunked_without_trailers_and_content_length_ignored() {
    let head: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n\r\n";
    let wire = [head, b"3\r\nabc\r\n0\r\n\r\n"].concat();
    // Chunked wins; the connection is not reused after such a message.
    check(
        &wire,
        false,
        &[parsed(200, 1, head, b"abc", wire.len(), false)],
    );
}

#[test]
fn close_delimited() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    let wire = [head, b"until the peer closes"].concat();
    check(
        &wire,
        false,
        &[parsed(
            200,
            1,
            head,
            b"until the peer closes",
            wire.len(),
            false,
        )],
    );
    // Empty close-delimited body.
    check(head, false, &[parsed(200, 1, head, b"", head.len(), false)]);
    // Transfer-Encoding without chunked last is close-delimited too.
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
    let wire = [head, b"zz"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 1, head, b"zz", wire.len(), false)],
    );
}

#[test]
fn close_delimited_eof_consumes_nothing() {
    let mut p = ResponseParser::new(false);
    assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\n\r\nab"), Ok(Progress::NeedMore));
    let r = p.feed_eof().expect("eof completes");
    assert_eq!((r.consumed, r.body_bytes, r.keep_alive), (0, 2, false));
}

#[test]
fn http10() {
    let head: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n";
    let wire = [head, b"abc"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 0, head, b"abc", wire.len(), false)],
    );

    let head: &[u8] = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\n";
    let wire = [head, b"abc"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 0, head, b"abc", wire.len(), true)],
    );

    let head: &[u8] = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\n";
    let wire = [head, b"abc"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 0, head, b"abc", wire.len(), false)],
    );
}

#[test]
fn connection_close_token_list() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: foo, CLOSE\r\nContent-Length: 1\r\n\r\n";
    let wire = [head, b"x"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 1, head, b"x", wire.len(), false)],
    );
}

#[test]
fn head_request_ignores_content_length() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    check(head, true, &[parsed(200, 1, head, b"", head.len(), true)]);
    // Even an invalid length does not matter when there is no body.
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n";
    check(head, true, &[parsed(200, 1, head, b"", head.len(), true)]);
}

#[test]
fn no_body_statuses() {
    let head: &[u8] = b"HTTP/1.1 204 No Content\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
    check(head, false, &[parsed(204, 1, head, b"", head.len(), true)]);
    let head: &[u8] = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 100\r\n\r\n";
    check(head, false, &[parsed(304, 1, head, b"", head.len(), true)]);
}

#[test]
fn switching_protocols_is_final() {
    let head: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    check(head, false, &[parsed(101, 1, head, b"", head.len(), false)]);
    match feed_whole(&[head, b"\x81\x00"].concat(), false) {
        Ok(Progress::Done(r)) => assert_eq!(r.consumed, head.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn interim_100_continue_skipped() {
    let interim: &[u8] =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
    let wire = [interim, head, b"ok"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 1, head, b"ok", wire.len(), true)],
    );
}

#[test]
fn pipelined() {
    let first = [CL_HEAD, b"hello"].concat();
    let head2: &[u8] = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n";
    let second = [head2, b"4\r\nnope\r\n0\r\n\r\n"].concat();
    let head3: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
    let wire = [&first[..], &second, head3].concat();
    check(
        &wire,
        false,
        &[
            parsed(200, 1, CL_HEAD, b"hello", first.len(), true),
            parsed(404, 1, head2, b"nope", second.len(), true),
            parsed(204, 1, head3, b"", head3.len(), true),
        ],
    );
    match feed_whole(&wire, false) {
        Ok(Progress::Done(r)) => assert_eq!(r.consumed, first.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn feed_after_done_starts_next_response() {
    let wire = [CL_HEAD, b"hello", CL_HEAD, b"world"].concat();
    let mut p = ResponseParser::new(true);
    let Ok(Progress::Done(r)) = p.feed(&wire) else {
        panic!("first")
    };
    let Ok(Progress::Done(r2)) = p.feed(&wire[r.consumed..]) else {
        panic!("second")
    };
    assert_eq!(r2.consumed, wire.len() - r.consumed);
    assert_eq!(p.body(), b"world");
}

#[test]
fn bare_lf_head_accepted() {
    let head: &[u8] = b"HTTP/1.1 200 OK\nContent-Length: 2\n\n";
    let wire = [head, b"hi"].concat();
    check(
        &wire,
        false,
        &[parsed(200, 1, head, b"hi", wire.len(), true)],
    );
}

#[test]
fn head_size_limit_is_exact() {
    let prefix = b"HTTP/1.1 200 OK\r\nX-Pad: ";
    let suffix = b"\r\nContent-Length: 0\r\n\r\n";
    let pad = MAX_HEAD_BYTES - prefix.len() - suffix.len();
    let fits = [&prefix[..], &vec![b'a'; pad], suffix].concat();
    assert_eq!(fits.len(), MAX_HEAD_BYTES);
    for pieces in [
        vec![&fits[..]],
        fits.chunks(1000).collect(),
        fits.chunks(1).collect(),
    ] {
        let got = drive(&pieces, false, false).expect("exactly at the limit");
        assert_eq!(got[0].resp.head_bytes, MAX_HEAD_BYTES);
    }
    let over = [&prefix[..], &vec![b'a'; pad + 1], suffix].concat();
    for pieces in [
        vec![&over[..]],
        over.chunks(1000).collect(),
        over.chunks(1).collect(),
    ] {
        assert_eq!(
            drive(&pieces, false, false),
            Err(HttpError::HeadTooLarge(MAX_HEAD_BYTES))
        );
    }
}

#[test]
fn endless_head_rejected() {
    let mut wire = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    wire.resize(70_000, b'a');
    for pieces in [vec![&wire[..]], wire.chunks(4096).collect()] {
        let mut p = ResponseParser::new(false);
        let mut result = Ok(Progress::NeedMore);
        for piece in pieces {
            result = p.feed(piece);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HttpError::HeadTooLarge(MAX_HEAD_BYTES)));
    }
}

fn with_headers(n: usize) -> Vec<u8> {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..n {
        wire.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

#[test]
fn header_count_limit() {
    let ok = with_headers(MAX_HEADERS - 1);
    let wire = [&ok[..], b"Content-Length: 0\r\n\r\n"].concat();
    let wire = [&wire[..ok.len() - 2], &wire[ok.len()..]].concat();
    assert!(matches!(feed_whole(&wire, false), Ok(Progress::Done(_))));
    check_err(&with_headers(MAX_HEADERS + 1), |e| {
        *e == HttpError::TooManyHeaders(MAX_HEADERS)
    });
}

#[test]
fn garbage_status_lines() {
    for wire in [
        &b"FOO/1.1 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        check_err(wire, |e| matches!(e, HttpError::BadHead(_)));
    }
}

#[test]
fn bad_chunks() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"ffffffffffffffffff\r\n",
        b"10000000000000000\r\n",
        b"\r\n",
        b";ext\r\n",
        b"-1\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\rX0\r\n\r\n",
        b"0\r\nTrailer: x\n\r\n",
        b"0\r\n\rX",
    ] {
        check_err(&[head, body].concat(), |e| *e == HttpError::BadChunk);
    }
}

#[test]
fn largest_chunk_size_accepted() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc";
    assert_eq!(feed_whole(wire, false), Ok(Progress::NeedMore));
}

#[test]
fn bad_content_length() {
    for cl in [
        &b"abc"[..],
        b"-1",
        b"+5",
        b"",
        b"5, 6",
        b"5,",
        b"99999999999999999999999",
    ] {
        let wire = [
            &b"HTTP/1.1 200 OK\r\nContent-Length: "[..],
            cl,
            b"\r\n\r\nhello",
        ]
        .concat();
        check_err(&wire, |e| *e == HttpError::BadContentLength);
    }
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello";
    check_err(wire, |e| *e == HttpError::BadContentLength);
}

#[test]
fn unexpected_eof() {
    let cases: [(&[u8], &str); 6] = [
        (b"", "before the status line"),
        (b"HTTP/1.1 2", "in the headers"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
            "in the headers",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "in the headers"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
            "in the body",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            "in a chunk",
        ),
    ];
    for (wire, reason) in cases {
        for pieces in all_splits(wire) {
            let mut p = ResponseParser::new(true);
            for piece in pieces {
                assert_eq!(p.feed(piece), Ok(Progress::NeedMore));
            }
            assert_eq!(p.started(), !wire.is_empty());
            assert_eq!(p.feed_eof(), Err(HttpError::UnexpectedEof(reason)));
        }
    }
}

#[test]
fn eof_after_done_is_clean_close() {
    let mut p = ResponseParser::new(false);
    assert!(matches!(
        p.feed(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Ok(Progress::Done(_))
    ));
    assert_eq!(
        p.feed_eof(),
        Err(HttpError::UnexpectedEof("before the status line"))
    );
    assert!(!p.started());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
    let alphabet = b"HTTP/1.0 2345\r\n:;,chunkedContent-Length0fF";
    let prefixes: [&[u8]; 3] = [
        b"",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
    ];
    for round in 0..3000 {
        let len = rng.next() as usize % 80;
        let mut wire = prefixes[round % prefixes.len()].to_vec();
        for _ in 0..len {
            let r = rng.next() as usize;
            wire.push(if r.is_multiple_of(5) {
                r as u8
            } else {
                alphabet[r % alphabet.len()]
            });
        }
        let whole = drive(&[&wire], false, true);
        let bytes = drive(&wire.chunks(1).collect::<Vec<_>>(), false, true);
        // The outcome must not depend on the split, error messages aside,
        // except that a head split across reads is only fully checked once
        // it is complete, so EOF can come first.
        match (&whole, &bytes) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{wire:?}"),
            (
                Err(HttpError::BadHead(_) | HttpError::TooManyHeaders(_)),
                Err(HttpError::UnexpectedEof("in the headers")),
            ) => {}
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "{wire:?}"
            ),
            _ => panic!("{wire:?}: {whole:?} vs {bytes:?}"),
        }
    }
}

fn spec<'a>(headers: &'a [(String, String)], body: Option<&'a [u8]>) -> RequestSpec<'a> {
    RequestSpec {
        method: "GET",
        host: "example.com:8080",
        path: "/a?b=c",
        headers,
        body,
        version: Version::Http11,
        keep_alive: true,
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("ascii")
}

const UA: &str = concat!("User-Agent: uringfetch/", env!("CARGO_PKG_VERSION"), "\r\n");

#[test]
fn encode_defaults() {
    let got = text(encode_request(&spec(&[], None)));
    let want = format!("GET /a?b=c HTTP/1.1\r\nHost: example.com:8080\r\n{UA}Accept: */*\r\n\r\n");
    assert_eq!(got, want);
}

#[test]
fn encode_connection_rules() {
    let mut s = spec(&[], None);
    s.keep_alive = false;
    assert!(text(encode_request(&s)).ends_with("Accept: */*\r\nConnection: close\r\n\r\n"));

    s.version = Version::Http10;
    let got = text(encode_request(&s));
    assert!(got.starts_with("GET /a?b=c HTTP/1.0\r\n"));
    assert!(!got.contains("Connection"));

    s.keep_alive = true;
    assert!(text(encode_request(&s)).ends_with("Accept: */*\r\nConnection: keep-alive\r\n\r\n"));
}

#[test]
fn encode_body_sets_content_length() {
    let mut s = spec(&[], Some(b"abc"));
    s.method = "POST";
    let got = text(encode_request(&s));
    assert!(got.starts_with("POST /a?b=c HTTP/1.1\r\n"));
    assert!(got.ends_with("Accept: */*\r\nContent-Length: 3\r\n\r\nabc"));

    let got = text(encode_request(&spec(&[], Some(b""))));
    assert!(got.ends_with("Content-Length: 0\r\n\r\n"));
}

#[test]
fn encode_user_headers_replace_defaults() {
    let headers: Vec<(String, String)> = [
        ("X-First", "1"),
        ("host", "other.example"),
        ("USER-AGENT", "custom"),
        ("accept", "text/html"),
        ("Connection", "Upgrade"),
        ("X-Last", "2"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let mut s = spec(&headers, None);
    s.keep_alive = false;
    let got = text(encode_request(&s));
    assert_eq!(
        got,
        "GET /a?b=c HTTP/1.1\r\nX-First: 1\r\nhost: other.example\r\nUSER-AGENT: custom\r\n\
accept: text/html\r\nConnection: Upgrade\r\nX-Last: 2\r\n\r\n"
    );
}

#[test]
fn encode_user_headers_follow_defaults_in_order() {
    let headers = vec![
        ("X-B".to_string(), "b".to_string()),
        ("X-A".to_string(), "a".to_string()),
    ];
    let got = text(encode_request(&spec(&headers, None)));
    assert!(
        got.ends_with("Accept: */*\r\nX-B: b\r\nX-A: a\r\n\r\n"),
        "{got}"
    );
}
