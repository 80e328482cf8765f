//! The server's HTTP/2 codec without sockets: what a client's bytes make
//! it answer, when, within which windows, and how each kind of bad input
//! ends a stream or the connection (GOAWAY with its code, never a panic),
//! with the memory it holds bounded.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::codec::*;
use crate::http::h2::*;
use crate::server::routes::FILL;

const SECOND: Duration = Duration::from_secs(1);

/// A frame as the server sent it.
#[derive(Debug, Clone)]
struct Frame {
    head: Head,
    payload: Vec<u8>,
}

impl Frame {
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// Splits the server's output into frames.
fn frames(mut out: &[u8]) -> Vec<Frame> {
    let mut v = Vec::new();
    while !out.is_empty() {
        let head = Head::parse(out[..HEAD_LEN].try_into().unwrap());
        v.push(Frame {
            head,
            payload: out[HEAD_LEN..HEAD_LEN + head.len].to_vec(),
        });
        out = &out[HEAD_LEN + head.len..];
    }
    v
}

/// The client's preface and a SETTINGS frame with `settings`.
fn preface(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    put_settings(&mut v, settings);
    v
}

/// An HPACK block (static table only) for a request.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut enc = loona_hpack::Encoder::new();
    enc.set_max_table_size(0);
    enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn get_block(path: &str) -> Vec<u8> {
    block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "t"),
        (":path", path),
    ])
}

/// A HEADERS frame carrying `block` whole.
fn headers_frame(out: &mut Vec<u8>, id: u32, block: &[u8], end_stream: bool) {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    put_head(out, block.len(), HEADERS, flags, id);
    out.extend_from_slice(block);
}

/// A GET of `path` on stream `id`.
fn get(out: &mut Vec<u8>, id: u32, path: &str) {
    headers_frame(out, id, &get_block(path), true);
}

/// A codec that has taken the client's preface (with `settings`), and
/// the frames it answered with (its SETTINGS, and their ACK).
fn connected(delay: Duration, settings: &[(u16, u32)], t0: Instant) -> Codec {
    let mut c = Codec::new(delay, 16 * 1024);
    let input = preface(settings);
    assert_eq!(c.receive(&input, t0), input.len());
    let f = frames(&c.take_output());
    assert_eq!(f[0].head.kind, SETTINGS);
    assert!(!f[0].head.has(ACK));
    let values: Vec<(u16, u32)> = f[0]
        .payload
        .chunks(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    assert!(values.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS as u32)));
    assert_eq!(f[1].head.kind, SETTINGS);
    assert!(f[1].head.has(ACK));
    c
}

/// Feeds `input` whole; everything must be taken.
fn feed(c: &mut Codec, input: &[u8], now: Instant) {
    assert_eq!(c.receive(input, now), input.len());
}

/// What was produced at `now`, as frames.
fn out_at(c: &mut Codec, now: Instant) -> Vec<Frame> {
    c.produce(now);
    frames(&c.take_output())
}

/// The fields of a HEADERS frame.
fn fields(f: &Frame) -> Vec<(String, String)> {
    loona_hpack::Decoder::new()
        .decode(&f.payload)
        .unwrap()
        .into_iter()
        .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect()
}

fn status_of(f: &Frame) -> String {
    fields(f)
        .into_iter()
        .find(|(n, _)| n == ":status")
        .map(|(_, v)| v)
        .unwrap()
}

/// The connection error in `f`: GOAWAY's code, and the codec ended.
fn goaway_code(f: &[Frame]) -> u32 {
    let g = f
        .iter()
        .find(|f| f.head.kind == GOAWAY)
        .unwrap_or_else(|| panic!("no GOAWAY in {f:?}"));
    g.u32_at(4)
}

/// Feeds bad input after a good start: GOAWAY with `code`, no panic, and
/// the codec takes (and ignores) anything more.
fn fails_with(input: &[u8], code: u32) -> Vec<Frame> {
    let t0 = Instant::now();
    let mut c = connected(Duration::ZERO, &[], t0);
    c.receive(input, t0);
    let f = frames(&c.take_output());
    assert_eq!(goaway_code(&f), code, "{f:?}");
    assert!(c.failed() && c.finished());
    assert!(!c.wants_input(&[]));
    assert_eq!(c.receive(b"anything", t0), 8);
    c.produce(t0 + SECOND);
    assert!(!c.has_output());
    f
}

#[test]
fn each_stream_is_answered_after_its_own_delay() {
    let t0 = Instant::now();
    let mut c = connected(SECOND, &[], t0);
    let mut input = Vec::new();
    get(&mut input, 1, "/foo");
    feed(&mut c, &input, t0);
    let t1 = t0 + Duration::from_millis(300);
    input.clear();
    get(&mut input, 3, "/bar");
    feed(&mut c, &input, t1);
    assert!(c.waiting());
    assert!(out_at(&mut c, t0 + Duration::from_millis(999)).is_empty());
    assert_eq!(c.next_due(), Some(t0 + SECOND));
    let f = out_at(&mut c, t0 + SECOND);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!((f[0].head.kind, f[0].head.stream), (HEADERS, 1));
    assert_eq!(
        fields(&f[0]),
        [
            (":status", "200"),
            ("server", "uringfetch"),
            ("content-type", "text/html"),
            ("content-length", "13"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    assert!(!f[0].head.has(END_STREAM));
    assert_eq!((f[1].head.kind, f[1].head.stream), (DATA, 1));
    assert_eq!(f[1].payload, b"<h1>foo!</h1>");
    assert!(f[1].head.has(END_STREAM));
    assert_eq!(c.next_due(), Some(t1 + SECOND));
    let f = out_at(&mut c, t1 + SECOND);
    assert_eq!(f[1].payload, b"<h1>bar!</h1>");
    assert!(c.is_idle() && !c.waiting() && !c.finished());
}

#[test]
fn routes_answer_as_over_http1() {
    let t0 = Instant::now();
    let mut c = connected(Duration::ZERO, &[], t0);
    let mut input = Vec::new();
    get(&mut input, 1, "/status/503");
    get(&mut input, 3, "/status/204");
    get(&mut input, 5, "/nope");
    get(&mut input, 7, "/chunked/2500");
    headers_frame(
        &mut input,
        9,
        &block(&[
            (":method", "HEAD"),
            (":scheme", "http"),
            (":path", "/bytes/10"),
        ]),
        true,
    );
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    let on = |id: u32| f.iter().filter(move |f| f.head.stream == id);
    let body = |id: u32| -> Vec<u8> {
        on(id)
            .filter(|f| f.head.kind == DATA)
            .flat_map(|f| f.payload.clone())
            .collect()
    };
    let head = |id: u32| on(id).find(|f| f.head.kind == HEADERS).unwrap().clone();
    assert_eq!(status_of(&head(1)), "503");
    assert_eq!(body(1), b"503 Service Unavailable\n");
    assert_eq!(status_of(&head(3)), "204");
    assert!(head(3).head.has(END_STREAM));
    assert!(!fields(&head(3)).iter().any(|(n, _)| n == "content-length"));
    assert_eq!(status_of(&head(5)), "404");
    assert_eq!(body(5), b"not found\n");
    let chunked = body(7);
    assert_eq!(chunked.len(), 2500);
    assert_eq!(&chunked[2000..], &FILL[..500]);
    assert!(!fields(&head(7)).iter().any(|(n, _)| n == "content-length"));
    // HEAD: the length announced, no body, the stream ended by HEADERS.
    assert!(head(9).head.has(END_STREAM));
    assert!(fields(&head(9)).contains(&("content-length".into(), "10".into())));
    assert!(body(9).is_empty());
    assert!(c.is_idle());
}

#[test]
fn bodies_keep_to_the_windows_and_frame_size() {
    let t0 = Instant::now();
    // A stream window of 10 bytes, and a frame size above the default.
    let mut c = connected(
        Duration::ZERO,
        &[
            (SETTINGS_INITIAL_WINDOW_SIZE, 10),
            (SETTINGS_MAX_FRAME_SIZE, 20_000),
        ],
        t0,
    );
    let mut input = Vec::new();
    get(&mut input, 1, "/bytes/25");
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    assert_eq!(f.len(), 2);
    assert_eq!(f[1].payload.len(), 10);
    assert!(out_at(&mut c, t0).is_empty(), "the window is used up");
    let mut got = f[1].payload.clone();
    for _ in 0..2 {
        input.clear();
        put_window_update(&mut input, 1, 10);
        feed(&mut c, &input, t0);
        let f = out_at(&mut c, t0);
        got.extend(f.iter().flat_map(|f| f.payload.clone()));
    }
    assert_eq!(got, &FILL[..25]);
    assert!(c.is_idle());

    // A client that allows 16 MiB frames still gets frames of at most
    // MAX_DATA_FRAME.
    let mut big = connected(
        Duration::ZERO,
        &[
            (SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW as u32),
            (SETTINGS_MAX_FRAME_SIZE, MAX_FRAME_LIMIT as u32),
        ],
        t0,
    );
    input.clear();
    put_window_update(&mut input, 0, (MAX_WINDOW - DEFAULT_WINDOW) as u32);
    get(&mut input, 1, "/bytes/1000000");
    feed(&mut big, &input, t0);
    let f = out_at(&mut big, t0);
    assert!(f.iter().all(|f| f.payload.len() <= MAX_DATA_FRAME));
    assert!(f.iter().any(|f| f.payload.len() == MAX_DATA_FRAME));
    assert!(f.iter().map(|f| HEAD_LEN + f.payload.len()).sum::<usize>() < 2 * OUT_HIGH);

    // The connection's window (65,535) binds every stream together.
    input.clear();
    input.extend_from_slice(&{
        let mut s = Vec::new();
        put_settings(&mut s, &[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)]);
        s
    });
    get(&mut input, 3, "/bytes/100000");
    get(&mut input, 5, "/bytes/100000");
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    let data: Vec<&Frame> = f.iter().filter(|f| f.head.kind == DATA).collect();
    let sent: usize = data.iter().map(|f| f.payload.len()).sum();
    assert_eq!(sent, 65_535 - 25);
    assert!(data.iter().all(|f| f.payload.len() <= 20_000));
    // One frame per stream in turn.
    assert_eq!(data[0].head.stream, 3);
    assert_eq!(data[1].head.stream, 5);
    let mut total = sent;
    while !c.is_idle() {
        input.clear();
        put_window_update(&mut input, 0, 30_000);
        feed(&mut c, &input, t0);
        let f = out_at(&mut c, t0);
        let n: usize = f.iter().map(|f| f.payload.len()).sum();
        assert!(n <= 30_000 && n > 0);
        total += n;
    }
    assert_eq!(total, 200_000);
}

#[test]
fn request_bodies_are_discarded_and_their_window_given_back() {
    let t0 = Instant::now();
    let mut c = connected(Duration::ZERO, &[], t0);
    let mut input = Vec::new();
    let post = block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/bar"),
        ("content-length", "100000"),
    ]);
    headers_frame(&mut input, 1, &post, false);
    feed(&mut c, &input, t0);
    let mut updates = (0u64, 0u64);
    for i in 0..10u32 {
        input.clear();
        let last = i == 9;
        put_head(
            &mut input,
            10_000,
            DATA,
            if last { END_STREAM } else { 0 },
            1,
        );
        input.extend(std::iter::repeat_n(b'x', 10_000));
        feed(&mut c, &input, t0);
        for f in out_at(&mut c, t0) {
            if f.head.kind == WINDOW_UPDATE {
                let inc = f.u32_at(0) as u64;
                if f.head.stream == 0 {
                    updates.0 += inc;
                } else {
                    updates.1 += inc;
                }
            } else if last {
                assert_eq!(f.head.stream, 1);
            } else {
                panic!("an answer before the body ended: {f:?}");
            }
        }
    }
    assert!(updates.0 >= 100_000 - 65_535, "{updates:?}");
    assert_eq!(c.body_bytes, 100_000);
    assert!(c.is_idle());

    // A body longer than its content-length resets the stream.
    input.clear();
    let post = block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/bar"),
        ("content-length", "3"),
    ]);
    headers_frame(&mut input, 3, &post, false);
    put_head(&mut input, 4, DATA, END_STREAM, 3);
    input.extend_from_slice(b"abcd");
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].head.kind, f[0].u32_at(0)),
        (RST_STREAM, PROTOCOL_ERROR)
    );
}

#[test]
fn streams_past_the_limit_are_refused_and_resets_cancel() {
    let t0 = Instant::now();
    let mut c = connected(SECOND, &[], t0);
    let mut input = Vec::new();
    for i in 0..=MAX_STREAMS as u32 {
        get(&mut input, 1 + 2 * i, "/bar");
    }
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].head.kind, RST_STREAM);
    assert_eq!(f[0].head.stream, 1 + 2 * MAX_STREAMS as u32);
    assert_eq!(f[0].u32_at(0), REFUSED_STREAM);
    // The client cancels the first: its answer never goes.
    input.clear();
    put_rst(&mut input, 1, CANCEL);
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0 + SECOND);
    let heads: Vec<u32> = f
        .iter()
        .filter(|f| f.head.kind == HEADERS)
        .map(|f| f.head.stream)
        .collect();
    assert_eq!(heads.len(), MAX_STREAMS - 1);
    assert!(!heads.contains(&1));
    assert!(c.is_idle());
}

#[test]
fn client_goaway_and_close_route_end_the_connection_after_the_answers() {
    let t0 = Instant::now();
    let mut c = connected(SECOND, &[], t0);
    let mut input = Vec::new();
    get(&mut input, 1, "/bar");
    put_goaway(&mut input, 0, NO_ERROR, b"");
    feed(&mut c, &input, t0);
    assert!(!c.finished());
    out_at(&mut c, t0 + SECOND);
    assert!(c.finished());

    let mut c = connected(Duration::ZERO, &[], t0);
    input.clear();
    get(&mut input, 1, "/close");
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    assert_eq!(f.last().unwrap().head.kind, GOAWAY);
    assert_eq!(goaway_code(&f), NO_ERROR);
    assert_eq!(f.last().unwrap().u32_at(0), 1);
    assert!(c.finished());
}

#[test]
fn malformed_requests_reset_their_stream_only() {
    let t0 = Instant::now();
    let mut c = connected(Duration::ZERO, &[], t0);
    let bad: [&[(&str, &str)]; 6] = [
        &[(":method", "GET"), (":scheme", "http")],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":path", "/"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("X-Up", "1"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("connection", "close"),
        ],
        &[
            (":method", "GET"),
            ("a", "b"),
            (":scheme", "http"),
            (":path", "/"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("v", "a\rb"),
        ],
    ];
    let mut input = Vec::new();
    for (i, fields) in bad.iter().enumerate() {
        headers_frame(&mut input, 1 + 2 * i as u32, &block(fields), true);
    }
    get(&mut input, 99, "/bar");
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    let resets: Vec<(u32, u32)> = f
        .iter()
        .filter(|f| f.head.kind == RST_STREAM)
        .map(|f| (f.head.stream, f.u32_at(0)))
        .collect();
    assert_eq!(resets, [1, 3, 5, 7, 9, 11].map(|id| (id, PROTOCOL_ERROR)));
    assert!(f.iter().any(|f| f.head.kind == DATA && f.head.stream == 99));

    // A header list over the limit (600 small fields count 32 bytes each
    // besides their text) is answered 431, as HTTP/1.x does; its block,
    // small, comes in a HEADERS and a CONTINUATION.
    let mut many = vec![(":method", "GET"), (":scheme", "http"), (":path", "/")];
    many.extend(std::iter::repeat_n(("a", "b"), 600));
    let big = block(&many);
    assert!(big.len() < 16 * 1024);
    input.clear();
    put_head(&mut input, 1000, HEADERS, END_STREAM, 101);
    input.extend_from_slice(&big[..1000]);
    put_head(&mut input, big.len() - 1000, CONTINUATION, END_HEADERS, 101);
    input.extend_from_slice(&big[1000..]);
    get(&mut input, 103, "/bar");
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    let head = f.iter().find(|f| f.head.kind == HEADERS).unwrap();
    assert_eq!(head.head.stream, 101);
    assert_eq!(status_of(head), "431");
    let body = f
        .iter()
        .find(|f| f.head.kind == DATA && f.head.stream == 101)
        .unwrap();
    assert_eq!(body.payload, b"Request Header Fields Too Large\n");
    assert!(
        f.iter()
            .any(|f| f.head.kind == DATA && f.head.stream == 103)
    );
}

#[test]
fn bad_preface_and_first_frame_are_connection_errors() {
    let mut c = Codec::new(Duration::ZERO, 16 * 1024);
    let t0 = Instant::now();
    let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(c.receive(input, t0), input.len());
    let f = frames(&c.take_output());
    assert_eq!(goaway_code(&f), PROTOCOL_ERROR);
    assert!(c.finished());
    // A preface, then PING instead of SETTINGS.
    let mut c = Codec::new(Duration::ZERO, 16 * 1024);
    let mut input = PREFACE.to_vec();
    put_ping(&mut input, 0, &[0; 8]);
    c.receive(&input, t0);
    assert_eq!(goaway_code(&frames(&c.take_output())), PROTOCOL_ERROR);
    // A preface and SETTINGS arriving a byte at a time: the preface is
    // taken as it comes, a frame only once whole.
    let mut c = Codec::new(Duration::ZERO, 16 * 1024);
    let input = preface(&[(SETTINGS_MAX_FRAME_SIZE, 20_000)]);
    let mut pending = Vec::new();
    for (i, &b) in input.iter().enumerate() {
        pending.push(b);
        let n = c.receive(&pending, t0);
        pending.drain(..n);
        let whole = i + 1 == input.len();
        assert_eq!(n > 0, i < PREFACE.len() || whole, "byte {i}");
    }
    assert!(pending.is_empty() && !c.finished());
    let f = frames(&c.take_output());
    assert!(f[1].head.kind == SETTINGS && f[1].head.has(ACK));
}

#[test]
fn oversized_frames_are_frame_size_errors() {
    let mut input = Vec::new();
    put_head(&mut input, DEFAULT_MAX_FRAME + 1, DATA, 0, 1);
    // The header alone is enough to refuse it.
    fails_with(&input, FRAME_SIZE_ERROR);
    let mut input = Vec::new();
    put_head(&mut input, 7, PING, 0, 0);
    input.extend_from_slice(&[0; 7]);
    fails_with(&input, FRAME_SIZE_ERROR);
    let mut input = Vec::new();
    put_head(&mut input, 5, SETTINGS, 0, 0);
    input.extend_from_slice(&[0; 5]);
    fails_with(&input, FRAME_SIZE_ERROR);
}

#[test]
fn frames_on_the_wrong_stream_are_protocol_errors() {
    let mut input = Vec::new();
    headers_frame(&mut input, 0, &get_block("/"), true);
    let f = fails_with(&input, PROTOCOL_ERROR);
    assert_eq!(f.last().unwrap().u32_at(0), 0, "last stream 0");
    let mut input = Vec::new();
    headers_frame(&mut input, 2, &get_block("/"), true);
    fails_with(&input, PROTOCOL_ERROR);
    let mut input = Vec::new();
    put_head(&mut input, 1, DATA, 0, 7);
    input.push(0);
    fails_with(&input, PROTOCOL_ERROR);
    let mut input = Vec::new();
    put_ping(&mut input, 0, &[0; 8]);
    input[8] = 1; // stream 1
    fails_with(&input, PROTOCOL_ERROR);
    let mut input = Vec::new();
    put_head(&mut input, 0, PUSH_PROMISE, END_HEADERS, 1);
    fails_with(&input, PROTOCOL_ERROR);
    // A frame in the middle of a header block.
    let mut input = Vec::new();
    put_head(&mut input, 3, HEADERS, 0, 1);
    input.extend_from_slice(&get_block("/")[..3]);
    put_ping(&mut input, 0, &[0; 8]);
    fails_with(&input, PROTOCOL_ERROR);
}

#[test]
fn continuation_floods_and_huge_blocks_are_refused() {
    // Empty CONTINUATIONs without END_HEADERS, for ever: stopped after
    // MAX_CONTINUATIONS of them, having taken little of the input.
    let mut input = Vec::new();
    put_head(&mut input, 1, HEADERS, 0, 1);
    input.push(0x82);
    for _ in 0..100_000 {
        put_head(&mut input, 0, CONTINUATION, 0, 1);
    }
    let t0 = Instant::now();
    let mut c = connected(Duration::ZERO, &[], t0);
    let mut taken = 0;
    let mut rounds = 0;
    while !c.failed() {
        taken += c.receive(&input[taken..], t0);
        rounds += 1;
        assert!(rounds < 10);
    }
    assert_eq!(goaway_code(&frames(&c.take_output())), ENHANCE_YOUR_CALM);
    // A block over the limit, in big CONTINUATIONs.
    let mut input = Vec::new();
    put_head(&mut input, 1, HEADERS, 0, 1);
    input.push(0x82);
    for _ in 0..3 {
        put_head(&mut input, 8000, CONTINUATION, 0, 1);
        input.extend(std::iter::repeat_n(0x82, 8000));
    }
    fails_with(&input, ENHANCE_YOUR_CALM);
}

#[test]
fn window_overflows_are_flow_control_errors() {
    // The connection's window past 2^31-1: the connection ends.
    let mut input = Vec::new();
    put_window_update(&mut input, 0, MAX_WINDOW as u32);
    fails_with(&input, FLOW_CONTROL_ERROR);
    // A stream's: that stream is reset, the connection goes on.
    let t0 = Instant::now();
    let mut c = connected(SECOND, &[], t0);
    let mut input = Vec::new();
    get(&mut input, 1, "/bar");
    put_window_update(&mut input, 1, MAX_WINDOW as u32);
    get(&mut input, 3, "/bar");
    feed(&mut c, &input, t0);
    let f = out_at(&mut c, t0);
    assert_eq!((f[0].head.kind, f[0].head.stream), (RST_STREAM, 1));
    assert_eq!(f[0].u32_at(0), FLOW_CONTROL_ERROR);
    let f = out_at(&mut c, t0 + SECOND);
    assert!(f.iter().all(|f| f.head.stream == 3) && f.len() == 2);
    // An initial window past 2^31-1.
    let mut input = Vec::new();
    put_settings(&mut input, &[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31)]);
    fails_with(&input, FLOW_CONTROL_ERROR);
}

#[test]
fn hpack_garbage_is_a_compression_error() {
    let mut input = Vec::new();
    // Index 70 of an empty dynamic table.
    headers_frame(&mut input, 1, &[0x80 | 70], true);
    fails_with(&input, COMPRESSION_ERROR);
    let mut input = Vec::new();
    // A table size update over the 4,096 bytes allowed.
    headers_frame(&mut input, 1, &[0x3f, 0xe1, 0xff, 0x03], true);
    fails_with(&input, COMPRESSION_ERROR);
}

#[test]
fn ping_floods_stop_at_the_output_bound() {
    let t0 = Instant::now();
    let mut c = connected(Duration::ZERO, &[], t0);
    let mut input = Vec::new();
    for i in 0..60_000u64 {
        put_ping(&mut input, 0, &i.to_be_bytes());
    }
    // Taken only until OUT_HIGH bytes of answers wait.
    let taken = c.receive(&input, t0);
    assert!(taken < input.len());
    assert!(c.has_output());
    let out = c.take_output();
    assert!(
        out.len() >= OUT_HIGH && out.len() < OUT_HIGH + 64,
        "{}",
        out.len()
    );
    assert!(!c.wants_input(&input[taken..]), "whole frames wait");
    let f = frames(&out);
    assert!(f.iter().all(|f| f.head.kind == PING && f.head.has(ACK)));
    assert_eq!(f[5].payload, 5u64.to_be_bytes());
    // Once written, it goes on where it stopped.
    let more = c.receive(&input[taken..], t0);
    assert!(more > 0);
    assert_eq!(
        frames(&c.take_output())[0].payload,
        (f.len() as u64).to_be_bytes()
    );
}

#[test]
fn need_says_how_much_to_buffer() {
    let t0 = Instant::now();
    let c = Codec::new(Duration::ZERO, 16 * 1024);
    assert_eq!(c.need(&[]), PREFACE.len());
    let c = connected(Duration::ZERO, &[], t0);
    assert_eq!(c.need(&[]), HEAD_LEN);
    let mut head = Vec::new();
    put_head(&mut head, 16_384, DATA, 0, 1);
    assert_eq!(c.need(&head), HEAD_LEN + 16_384);
    assert!(c.wants_input(&head));
    put_head(&mut head, 1 << 20, DATA, 0, 1);
    assert_eq!(c.need(&head[9..]), HEAD_LEN + DEFAULT_MAX_FRAME);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes after a good start: no panic, the output stays bounded,
    /// and the codec always either takes input or says why not.
    #[test]
    fn arbitrary_input_never_panics(chunks in prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..300), 0..20)
    ) {
        let t0 = Instant::now();
        let mut c = connected(Duration::from_millis(5), &[], t0);
        let mut pending = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            pending.extend_from_slice(chunk);
            let now = t0 + Duration::from_millis(i as u64);
            let n = c.receive(&pending, now);
            pending.drain(..n);
            c.produce(now);
            let out = c.take_output();
            prop_assert!(out.len() < OUT_HIGH + 32 * 1024);
            frames(&out);
        }
    }

    /// Well-formed frames of every type in any order, with made-up fields:
    /// still no panic.
    #[test]
    fn arbitrary_frames_never_panic(list in prop::collection::vec(
        (0u8..12, any::<u8>(), 0u32..12, prop::collection::vec(any::<u8>(), 0..40)), 0..40)
    ) {
        let t0 = Instant::now();
        let mut c = connected(Duration::ZERO, &[], t0);
        let mut input = Vec::new();
        for (kind, flags, stream, payload) in &list {
            put_head(&mut input, payload.len(), *kind, *flags, *stream);
            input.extend_from_slice(payload);
        }
        let n = c.receive(&input, t0);
        prop_assert!(n <= input.len());
        c.produce(t0 + SECOND);
        frames(&c.take_output());
    }
}
