//! Unit tests of the HTTP/2 layer: server byte sequences fed whole, split
//! at every byte and byte by byte; every malformed frame a connection
//! error with its reason; limits hold against floods.

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::*;
use crate::http::h2::*;

const TEN_S: Duration = Duration::from_secs(10);

fn ticket(seq: u64) -> Ticket {
    Ticket {
        seq,
        intended: Instant::now(),
        deadline: None,
    }
}

fn get() -> Vec<H2Request> {
    vec![request::from_http1(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "http").unwrap()]
}

fn post(n: usize) -> Vec<H2Request> {
    let mut r = format!("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    r.extend(std::iter::repeat_n(b'x', n));
    vec![request::from_http1(&r, "http").unwrap()]
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_head(&mut b, payload.len(), kind, flags, stream);
    b.put_slice(payload);
    b.to_vec()
}

fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut e = loona_hpack::Encoder::new();
    e.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_settings(&mut b, values);
    b.to_vec()
}

/// What the session heard.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    done: Vec<(u64, u16, u64)>,
    heads: Vec<String>,
    body: Vec<u8>,
    resets: Vec<(u64, u32)>,
    failed: Vec<(u64, String)>,
    retry: Vec<u64>,
    goaway: Vec<u32>,
    timed_out: Vec<u64>,
}

impl Seen {
    fn hear(&mut self, e: Event<'_>) {
        match e {
            Event::Head { head, .. } => self.heads.push(String::from_utf8_lossy(head).into()),
            Event::Body { bytes, .. } => self.body.extend_from_slice(bytes),
            Event::Done {
                ticket, response, ..
            } => self
                .done
                .push((ticket.seq, response.status, response.body_bytes)),
            Event::Reset { ticket, code } => self.resets.push((ticket.seq, code)),
            Event::Failed { ticket, reason } => self.failed.push((ticket.seq, reason)),
            Event::TimedOut { ticket } => self.timed_out.push(ticket.seq),
            Event::Retry { ticket, .. } => self.retry.push(ticket.seq),
            Event::GoAway { code } => self.goaway.push(code),
        }
    }
}

/// A connection with `n` streams open (tickets 0..n).
fn conn(n: u64, reqs: &[H2Request]) -> H2Conn {
    let now = Instant::now();
    let mut c = H2Conn::new(true, now, TEN_S);
    let mut seen = Seen::default();
    c.receive(&settings(&[]), reqs, &mut |e| seen.hear(e))
        .unwrap();
    for seq in 0..n {
        c.open(
            ticket(seq),
            0,
            &reqs[0],
            now,
            Some(now + Duration::from_secs(60)),
        );
    }
    c
}

/// Feeds `bytes` in pieces of the sizes `cuts` gives.
fn feed_in(
    c: &mut H2Conn,
    bytes: &[u8],
    reqs: &[H2Request],
    cuts: &[usize],
) -> (Seen, Result<(), H2Error>) {
    let mut seen = Seen::default();
    let mut rest = bytes;
    let mut result = Ok(());
    for &cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
        let n = cut.min(rest.len());
        result = c.receive(&rest[..n], reqs, &mut |e| seen.hear(e));
        rest = &rest[n..];
        if result.is_err() || rest.is_empty() {
            break;
        }
    }
    (seen, result)
}

/// Feeds `bytes` to a fresh connection with `n` streams: whole, split in
/// two at every byte, and byte by byte; all must agree. Returns it.
fn every_split(n: u64, reqs: &[H2Request], bytes: &[u8]) -> (Seen, Result<(), H2Error>) {
    let whole = feed_in(&mut conn(n, reqs), bytes, reqs, &[]);
    for at in 1..bytes.len() {
        let split = feed_in(&mut conn(n, reqs), bytes, reqs, &[at]);
        assert_eq!(split, whole, "split at {at}");
    }
    let ones = vec![1; bytes.len()];
    assert_eq!(
        feed_in(&mut conn(n, reqs), bytes, reqs, &ones),
        whole,
        "byte by byte"
    );
    whole
}

fn reason(r: Result<(), H2Error>) -> String {
    r.expect_err("a connection error").reason
}

#[test]
fn the_client_opens_with_the_preface_settings_and_a_window_update() {
    let c = H2Conn::new(false, Instant::now(), TEN_S);
    let out = c.pending();
    assert!(out.starts_with(PREFACE));
    let head = Head::parse(out[PREFACE.len()..][..HEAD_LEN].try_into().unwrap());
    assert_eq!((head.kind, head.stream, head.len), (SETTINGS, 0, 18));
    let wu = &out[PREFACE.len() + HEAD_LEN + 18..];
    let head = Head::parse(wu[..HEAD_LEN].try_into().unwrap());
    assert_eq!((head.kind, head.len), (WINDOW_UPDATE, 4));
}

#[test]
fn responses_complete_whatever_the_split() {
    let reqs = get();
    let mut bytes = settings(&[(SETTINGS_MAX_CONCURRENT_STREAMS, 100)]);
    bytes.extend(frame(SETTINGS, ACK, 0, &[]));
    // Stream 3 first, with a padded body; stream 1 with CONTINUATIONs,
    // an interim 103 and trailers.
    let head3 = block(&[(":status", "200"), ("content-type", "text/plain")]);
    bytes.extend(frame(HEADERS, END_HEADERS, 3, &head3));
    let mut padded = vec![4u8];
    padded.extend_from_slice(b"hello");
    padded.extend_from_slice(&[0; 4]);
    bytes.extend(frame(DATA, PADDED, 3, &padded));
    bytes.extend(frame(DATA, END_STREAM, 3, b"!"));
    bytes.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &block(&[(":status", "103")]),
    ));
    let head1 = block(&[(":status", "404"), ("x-long", "abcdefghij"), ("x-b", "c")]);
    bytes.extend(frame(
        HEADERS,
        PRIORITY_FLAG,
        1,
        &[&[0, 0, 0, 0, 9][..], &head1[..3]].concat(),
    ));
    bytes.extend(frame(CONTINUATION, 0, 1, &head1[3..6]));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 1, &head1[6..]));
    bytes.extend(frame(DATA, 0, 1, b"gone"));
    bytes.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&[("x-trailer", "1")]),
    ));
    // An unknown frame type is ignored.
    bytes.extend(frame(0xfa, 0, 0, b"??"));
    let (seen, result) = every_split(2, &reqs, &bytes);
    result.unwrap();
    assert_eq!(seen.done, vec![(1, 200, 6), (0, 404, 4)]);
    assert_eq!(seen.body, b"hello!gone");
    assert_eq!(
        seen.heads,
        vec![
            "HTTP/2 200\r\ncontent-type: text/plain\r\n\r\n".to_string(),
            "HTTP/2 404\r\nx-long: abcdefghij\r\nx-b: c\r\n\r\n".to_string()
        ]
    );
}

#[test]
fn settings_are_acknowledged_and_pings_answered() {
    let reqs = get();
    let mut c = H2Conn::new(false, Instant::now(), TEN_S);
    c.consume(c.pending().len());
    let mut bytes = settings(&[(SETTINGS_MAX_FRAME_SIZE, 32768)]);
    bytes.extend(frame(PING, 0, 0, b"12345678"));
    bytes.extend(frame(PING, ACK, 0, b"ignored!"));
    let (_, r) = feed_in(&mut c, &bytes, &reqs, &[]);
    r.unwrap();
    let mut want = frame(SETTINGS, ACK, 0, &[]);
    want.extend(frame(PING, ACK, 0, b"12345678"));
    assert_eq!(c.pending(), &want[..]);
    assert_eq!(c.peer_max_frame, 32768);
}

#[test]
fn streams_stay_within_the_servers_limit() {
    let reqs = get();
    let now = Instant::now();
    let mut c = H2Conn::new(false, now, TEN_S);
    assert_eq!(c.room(), 1, "one stream until the server's SETTINGS");
    c.open(ticket(0), 0, &reqs[0], now, None);
    assert_eq!(c.room(), 0);
    let (_, r) = feed_in(
        &mut c,
        &settings(&[(SETTINGS_MAX_CONCURRENT_STREAMS, 3)]),
        &reqs,
        &[],
    );
    r.unwrap();
    assert_eq!(c.room(), 2);
    let (_, r) = feed_in(
        &mut c,
        &settings(&[(SETTINGS_MAX_CONCURRENT_STREAMS, 1)]),
        &reqs,
        &[],
    );
    r.unwrap();
    assert_eq!(c.room(), 0);
}

#[test]
fn resets_and_goaway_reach_the_session() {
    let reqs = get();
    let mut bytes = frame(RST_STREAM, 0, 3, &REFUSED_STREAM.to_be_bytes());
    let mut goaway = 3u32.to_be_bytes().to_vec();
    goaway.extend(NO_ERROR.to_be_bytes());
    goaway.extend(b"bye");
    bytes.extend(frame(GOAWAY, 0, 0, &goaway));
    bytes.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&[(":status", "204")]),
    ));
    let mut c = conn(4, &reqs);
    let (seen, r) = feed_in(&mut c, &bytes, &reqs, &[]);
    r.unwrap();
    assert_eq!(seen.resets, vec![(1, REFUSED_STREAM)]);
    assert_eq!(seen.goaway, vec![NO_ERROR]);
    assert_eq!(
        seen.retry,
        vec![3, 2],
        "streams 7 and 5 are above the last id"
    );
    assert_eq!(seen.done, vec![(0, 204, 0)]);
    assert_eq!((c.active(), c.room()), (0, 0));
    assert!(c.is_going_away());
}

#[test]
fn uploads_respect_the_peers_windows() {
    let reqs = post(100_000);
    let now = Instant::now();
    let mut c = H2Conn::new(false, now, TEN_S);
    let (_, r) = feed_in(
        &mut c,
        &settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1000)]),
        &reqs,
        &[],
    );
    r.unwrap();
    c.consume(c.pending().len());
    c.open(ticket(0), 0, &reqs[0], now, None);
    c.pump(&reqs);
    let data_bytes = |out: &[u8]| {
        let mut n = 0;
        let mut rest = out;
        while rest.len() >= HEAD_LEN {
            let h = Head::parse(rest[..HEAD_LEN].try_into().unwrap());
            if h.kind == DATA {
                n += h.len;
            }
            rest = &rest[HEAD_LEN + h.len..];
        }
        n
    };
    assert_eq!(data_bytes(c.pending()), 1000, "the stream's window");
    c.consume(c.pending().len());
    // The stream window opens wide; the connection's 65,535 binds.
    let (_, r) = feed_in(
        &mut c,
        &frame(WINDOW_UPDATE, 0, 1, &1_000_000u32.to_be_bytes()),
        &reqs,
        &[],
    );
    r.unwrap();
    assert_eq!(data_bytes(c.pending()), 65_535 - 1000);
    c.consume(c.pending().len());
    let (_, r) = feed_in(
        &mut c,
        &frame(WINDOW_UPDATE, 0, 0, &1_000_000u32.to_be_bytes()),
        &reqs,
        &[],
    );
    r.unwrap();
    // The rest, in frames no larger than 16 KiB, under the backlog bound.
    let mut total = 65_535;
    loop {
        let n = data_bytes(c.pending());
        if n == 0 {
            break;
        }
        assert!(c.pending().len() <= DATA_BACKLOG + HEAD_LEN + DEFAULT_MAX_FRAME);
        total += n;
        c.consume(c.pending().len());
        c.pump(&reqs);
    }
    assert_eq!(total, 100_000);
    assert_eq!(c.uploading, 0);
}

#[test]
fn malformed_frames_are_connection_errors_with_the_reason() {
    let reqs = get();
    let big = vec![0u8; DEFAULT_MAX_FRAME + 1];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (frame(DATA, 0, 0, b"x"), "DATA on stream 0"),
        (frame(DATA, 0, 9, b"x"), "never opened"),
        (frame(DATA, 0, 2, b"x"), "never opened"),
        (frame(DATA, END_STREAM, 1, b"x"), "before its response head"),
        (frame(DATA, PADDED, 1, &[5, 1, 2]), "padding"),
        (frame(DATA, PADDED, 1, &[]), "pad length"),
        (frame(DATA, 0, 1, &big), "over the 16384"),
        (
            frame(HEADERS, END_HEADERS, 0, &[0x88]),
            "HEADERS on stream 0",
        ),
        (
            frame(
                HEADERS,
                END_HEADERS,
                1,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            "did not decode",
        ),
        (frame(HEADERS, END_HEADERS, 1, &[0xbf]), "did not decode"),
        (
            frame(HEADERS, PRIORITY_FLAG | END_HEADERS, 1, &[0, 0]),
            "priority",
        ),
        (
            [frame(HEADERS, 0, 1, &[0x88]), frame(PING, 0, 0, &[0; 8])].concat(),
            "unfinished",
        ),
        (
            [
                frame(HEADERS, 0, 1, &[0x88]),
                frame(CONTINUATION, END_HEADERS, 3, &[]),
            ]
            .concat(),
            "CONTINUATION on stream 3",
        ),
        (
            frame(CONTINUATION, END_HEADERS, 1, &[]),
            "without a header block",
        ),
        (frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0]), "multiple of 6"),
        (frame(SETTINGS, 0, 1, &[]), "SETTINGS on a stream"),
        (frame(SETTINGS, ACK, 0, &[0; 6]), "ACK with a payload"),
        (
            settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31)]),
            "SETTINGS_INITIAL_WINDOW_SIZE",
        ),
        (
            settings(&[(SETTINGS_MAX_FRAME_SIZE, 100)]),
            "SETTINGS_MAX_FRAME_SIZE",
        ),
        (settings(&[(SETTINGS_ENABLE_PUSH, 2)]), "ENABLE_PUSH"),
        (
            frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x82]),
            "push",
        ),
        (frame(PING, 0, 0, &[0; 7]), "PING frame not of 8"),
        (frame(PING, 0, 1, &[0; 8]), "PING on a stream"),
        (frame(GOAWAY, 0, 0, &[0; 7]), "GOAWAY frame under 8"),
        (frame(GOAWAY, 0, 1, &[0; 8]), "GOAWAY on a stream"),
        (frame(RST_STREAM, 0, 0, &[0; 4]), "RST_STREAM on stream 0"),
        (
            frame(RST_STREAM, 0, 1, &[0; 3]),
            "RST_STREAM frame not of 4",
        ),
        (frame(RST_STREAM, 0, 11, &[0; 4]), "never opened"),
        (frame(WINDOW_UPDATE, 0, 0, &[0; 4]), "WINDOW_UPDATE of 0"),
        (
            frame(WINDOW_UPDATE, 0, 0, &[0x7f, 0xff, 0xff, 0xff]),
            "past 2^31-1",
        ),
        (frame(WINDOW_UPDATE, 0, 1, &[0; 5]), "not of 4 bytes"),
        (frame(PRIORITY, 0, 1, &[0; 4]), "PRIORITY frame not of 5"),
        (frame(PRIORITY, 0, 0, &[0; 5]), "PRIORITY on stream 0"),
    ];
    for (bytes, want) in cases {
        let (_, r) = every_split(1, &reqs, &bytes);
        let got = reason(r);
        assert!(got.contains(want), "{got:?} should say {want:?}");
    }
}

#[test]
fn a_bad_response_head_fails_its_stream_only() {
    let reqs = get();
    let mut bytes = frame(HEADERS, END_HEADERS, 1, &block(&[("x-a", "b")]));
    bytes.extend(frame(
        HEADERS,
        END_HEADERS,
        3,
        &block(&[(":status", "20x")]),
    ));
    bytes.extend(frame(
        HEADERS,
        END_HEADERS,
        5,
        &block(&[("x", "1"), (":status", "200")]),
    ));
    let huge = "v".repeat(8000);
    let fields: Vec<(&str, &str)> = std::iter::once((":status", "200"))
        .chain((0..9).map(|_| ("x-huge", huge.as_str())))
        .collect();
    let big = block(&fields);
    let pieces: Vec<&[u8]> = big.chunks(16000).collect();
    bytes.extend(frame(HEADERS, 0, 7, pieces[0]));
    for (i, piece) in pieces.iter().enumerate().skip(1) {
        let flags = if i + 1 == pieces.len() {
            END_HEADERS
        } else {
            0
        };
        bytes.extend(frame(CONTINUATION, flags, 7, piece));
    }
    bytes.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        9,
        &block(&[(":status", "200")]),
    ));
    let (seen, r) = feed_in(&mut conn(5, &reqs), &bytes, &reqs, &[]);
    r.unwrap();
    let failed: Vec<u64> = seen.failed.iter().map(|f| f.0).collect();
    assert_eq!(failed, vec![0, 1, 2, 3]);
    assert!(
        seen.failed[0].1.contains("without :status"),
        "{:?}",
        seen.failed
    );
    assert!(seen.failed[1].1.contains("invalid :status"));
    assert!(seen.failed[2].1.contains("pseudo-header after"));
    assert!(seen.failed[3].1.contains("header list of"));
    assert_eq!(seen.done, vec![(4, 200, 0)]);
}

#[test]
fn floods_are_bounded() {
    let reqs = get();
    // CONTINUATION frames without end.
    let mut bytes = frame(HEADERS, 0, 1, &[0x88]);
    for _ in 0..MAX_CONTINUATIONS + 1 {
        bytes.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    let (_, r) = feed_in(&mut conn(1, &reqs), &bytes, &reqs, &[]);
    assert!(reason(r).contains("CONTINUATION frames"));
    // A header block too large.
    let mut bytes = frame(HEADERS, 0, 1, &[0x88]);
    for _ in 0..MAX_HEADER_BLOCK / DEFAULT_MAX_FRAME + 1 {
        bytes.extend(frame(CONTINUATION, 0, 1, &[0x88; DEFAULT_MAX_FRAME]));
    }
    let (_, r) = feed_in(&mut conn(1, &reqs), &bytes, &reqs, &[]);
    assert!(reason(r).contains("header block over"));
    // PINGs whose answers are never sent.
    let ping = frame(PING, 0, 0, &[1; 8]);
    let mut c = conn(1, &reqs);
    let mut flood_err = None;
    for _ in 0..MAX_CONTROL_BACKLOG / 17 + 10 {
        if let (_, Err(e)) = feed_in(&mut c, &ping, &reqs, &[]) {
            flood_err = Some(e);
            break;
        }
    }
    let e = flood_err.expect("a PING flood is an error");
    assert_eq!(e.code, ENHANCE_YOUR_CALM);
    assert!(c.pending().len() <= MAX_CONTROL_BACKLOG + 17);
}

#[test]
fn timeouts_cancel_streams_and_unacknowledged_settings_end_the_connection() {
    let reqs = get();
    let now = Instant::now();
    let mut c = H2Conn::new(false, now, TEN_S);
    let (_, r) = feed_in(
        &mut c,
        &[settings(&[]), frame(SETTINGS, ACK, 0, &[])].concat(),
        &reqs,
        &[],
    );
    r.unwrap();
    c.open(
        ticket(0),
        0,
        &reqs[0],
        now,
        Some(now + Duration::from_secs(1)),
    );
    c.open(
        ticket(1),
        0,
        &reqs[0],
        now,
        Some(now + Duration::from_secs(2)),
    );
    assert_eq!(c.deadline(), Some(now + Duration::from_secs(1)));
    let mut seen = Seen::default();
    c.expire(now + Duration::from_millis(1500), &mut |e| seen.hear(e))
        .unwrap();
    assert_eq!(seen.timed_out, vec![0]);
    assert_eq!(c.active(), 1);
    // Never acknowledged:
    let mut c = H2Conn::new(false, now, TEN_S);
    assert!(c.deadline().is_some());
    let e = c
        .expire(now + Duration::from_secs(11), &mut |_| {})
        .unwrap_err();
    assert_eq!(e.code, SETTINGS_TIMEOUT);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Whatever the server sends, the client never panics, and holds
    /// at most one frame of it.
    #[test]
    fn any_bytes_are_taken_without_panic(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..8), valid_prefix in proptest::bool::ANY) {
        let reqs = get();
        let mut c = conn(3, &reqs);
        if valid_prefix {
            let _ = c.receive(&settings(&[(SETTINGS_MAX_CONCURRENT_STREAMS, 5)]), &reqs, &mut |_| {});
        }
        for chunk in chunks {
            if c.receive(&chunk, &reqs, &mut |_| {}).is_err() {
                break;
            }
            proptest::prop_assert!(c.partial.len() <= HEAD_LEN + DEFAULT_MAX_FRAME);
        }
    }
}
