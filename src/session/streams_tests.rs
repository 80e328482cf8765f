//! The session over HTTP/2 without sockets: streams kept full, GOAWAY
//! retried on a new connection, a close with streams open, the end of the
//! run; every count adds up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::*;
use crate::backend::{ConnOptions, Http2, WorkerCtx, wire};
use crate::http::h2::*;
use crate::plan::{Plan, Rate, Stop};
use crate::target::{RequestOptions, Target};

#[derive(Debug, Default)]
struct Counts {
    issued: u64,
    completed: u64,
    failed: Vec<ErrorKind>,
    in_flight: u64,
    retried: u64,
    h2_connections: u64,
    goaways: u64,
    resets: Vec<u32>,
}

impl Counts {
    fn adds_up(&self) -> bool {
        self.issued == self.completed + self.failed.len() as u64 + self.in_flight
    }
}

impl Sink for Counts {
    const COLLECT: bool = false;
    fn issued(&mut self, n: u64) {
        self.issued += n;
    }
    fn connected(&mut self, _took: Duration, _reconnect: bool) {}
    fn handshake(&mut self, _took: Duration, _resumed: bool) {}
    fn closed(&mut self) {}
    fn retried(&mut self, n: u64) {
        self.retried += n;
    }
    fn head(&mut self, _seq: u64, _head: &[u8]) {}
    fn body(&mut self, _seq: u64, _bytes: &[u8]) {}
    fn response(&mut self, _done: &Done<'_>) {
        self.completed += 1;
    }
    fn failed(&mut self, _seq: u64, error: &FetchError) {
        self.failed.push(error.kind);
    }
    fn in_flight(&mut self, n: u64) {
        self.in_flight += n;
    }
    fn bytes(&mut self, _read: u64, _written: u64) {}
    fn ended(&mut self, _at: Instant) {}
    fn cpu(&mut self, _usage: crate::stats::resources::Usage) {}
    fn h2_streams_open(&mut self, _n: usize) {}
    fn h2_connection(&mut self) {
        self.h2_connections += 1;
    }
    fn goaway(&mut self, _code: u32) {
        self.goaways += 1;
    }
    fn stream_reset(&mut self, code: u32) {
        self.resets.push(code);
    }
}

fn ctx(n: u64, streams: usize, start: Instant) -> WorkerCtx {
    ctx_at(n, streams, Rate::Closed, start)
}

fn ctx_at(n: u64, streams: usize, rate: Rate, start: Instant) -> WorkerCtx {
    let targets = Arc::new(vec![
        Target::new("http://127.0.0.1:9/x", &RequestOptions::default()).expect("target"),
    ]);
    let conn = ConnOptions {
        timeout: Some(Duration::from_secs(2)),
        connect_timeout: Some(Duration::from_secs(1)),
        http2: Http2::PriorKnowledge,
        streams,
        ..ConnOptions::default()
    };
    WorkerCtx::new(
        1,
        Plan::starting_at(Stop::Count(n), rate, start),
        targets.clone(),
        wire(&targets, 1),
        Arc::new(conn),
        Arc::default(),
    )
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_head(&mut b, payload.len(), kind, flags, stream);
    b.put_slice(payload);
    b.to_vec()
}

/// A 200 with a 2-byte body on `stream`.
fn answer(stream: u32) -> Vec<u8> {
    [
        frame(HEADERS, END_HEADERS, stream, &[0x88]),
        frame(DATA, END_STREAM, stream, b"ok"),
    ]
    .concat()
}

fn server_settings() -> Vec<u8> {
    let mut b = BytesMut::new();
    put_settings(&mut b, &[(SETTINGS_MAX_CONCURRENT_STREAMS, 100)]);
    [b.to_vec(), frame(SETTINGS, ACK, 0, &[])].concat()
}

/// Drives the session until it wants a receive: starts, connects, sends
/// everything. Returns the HEADERS stream ids it sent.
fn drive(s: &mut Session, ctx: &WorkerCtx, c: &mut Counts, now: Instant) -> Vec<u32> {
    let mut ids = Vec::new();
    loop {
        s.take_close();
        match s.want() {
            Want::Start => s.start(ctx, c, now),
            Want::Connect => {
                s.connect_started(ctx, now);
                s.on_connected(ctx, c, now);
            }
            Want::Exchange { send: true } => {
                let out = s.to_send(ctx).to_vec();
                ids.extend(headers_ids(&out));
                s.on_sent(ctx, c, out.len());
            }
            _ => return ids,
        }
    }
}

/// The stream ids of the HEADERS frames in `out` (after any preface).
fn headers_ids(mut out: &[u8]) -> Vec<u32> {
    if out.starts_with(PREFACE) {
        out = &out[PREFACE.len()..];
    }
    let mut ids = Vec::new();
    while out.len() >= HEAD_LEN {
        let h = Head::parse(out[..HEAD_LEN].try_into().unwrap());
        if h.kind == HEADERS {
            ids.push(h.stream);
        }
        out = &out[HEAD_LEN + h.len..];
    }
    ids
}

#[test]
fn streams_stay_full_and_every_count_adds_up() {
    let now = Instant::now();
    let ctx = ctx(50, 4, now);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    let mut open = drive(&mut s, &ctx, &mut c, now);
    assert_eq!(open, vec![1], "one stream until the server's SETTINGS");
    s.on_recv(&ctx, &mut c, &server_settings(), now);
    open.extend(drive(&mut s, &ctx, &mut c, now));
    assert_eq!(open, vec![1, 3, 5, 7]);
    // Answered newest first, two at a time: the session tops up to 4.
    while let Some(last) = open.pop() {
        let mut bytes = answer(last);
        if let Some(other) = open.pop() {
            bytes.extend(answer(other));
        }
        s.on_recv(&ctx, &mut c, &bytes, now);
        open.extend(drive(&mut s, &ctx, &mut c, now));
        open.sort_unstable();
        assert!(open.len() <= 4);
    }
    assert_eq!((c.completed, c.issued, c.h2_connections), (50, 50, 1));
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(s.want(), Want::Done);
}

#[test]
fn goaway_sends_the_streams_above_it_to_a_new_connection() {
    let now = Instant::now();
    let ctx = ctx(8, 4, now);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    drive(&mut s, &ctx, &mut c, now);
    s.on_recv(&ctx, &mut c, &server_settings(), now);
    drive(&mut s, &ctx, &mut c, now);
    // Streams 1 and 3 answered; GOAWAY names 3: 5 and 7 go elsewhere.
    let mut goaway = 3u32.to_be_bytes().to_vec();
    goaway.extend(0u32.to_be_bytes());
    let bytes = [answer(1), answer(3), frame(GOAWAY, 0, 0, &goaway)].concat();
    s.on_recv(&ctx, &mut c, &bytes, now);
    assert_eq!((c.goaways, c.retried, c.completed), (1, 2, 2));
    assert!(s.take_close(), "no stream is left: the connection closes");
    assert_eq!(s.want(), Want::Connect);
    let first = drive(&mut s, &ctx, &mut c, now);
    assert_eq!(first, vec![1], "a new connection");
    s.on_recv(&ctx, &mut c, &server_settings(), now);
    let mut open = first;
    open.extend(drive(&mut s, &ctx, &mut c, now));
    while let Some(id) = open.pop() {
        s.on_recv(&ctx, &mut c, &answer(id), now);
        open.extend(drive(&mut s, &ctx, &mut c, now));
    }
    assert_eq!((c.completed, c.h2_connections), (8, 2));
    assert!(c.adds_up(), "{c:?}");
}

#[test]
fn a_close_with_streams_open_retries_or_fails_by_the_http1_rule() {
    let now = Instant::now();
    // A fresh connection that closes before answering: the requests fail.
    let ctx1 = ctx(4, 4, now);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    drive(&mut s, &ctx1, &mut c, now);
    s.on_recv(&ctx1, &mut c, &server_settings(), now);
    drive(&mut s, &ctx1, &mut c, now);
    s.on_eof(&ctx1, &mut c, now);
    assert_eq!(c.failed, vec![ErrorKind::EarlyEof; 4]);
    assert!(c.adds_up(), "{c:?}");
    // One that had answered: the unanswered go to a new connection.
    let ctx2 = ctx(6, 4, now);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    drive(&mut s, &ctx2, &mut c, now);
    s.on_recv(&ctx2, &mut c, &server_settings(), now);
    drive(&mut s, &ctx2, &mut c, now);
    s.on_recv(&ctx2, &mut c, &answer(1), now);
    drive(&mut s, &ctx2, &mut c, now);
    s.on_eof(&ctx2, &mut c, now);
    assert_eq!((c.completed, c.retried), (1, 4));
    assert_eq!(s.want(), Want::Connect);
    // The end of the run: what is open or held is in flight (the fifth
    // ticket was taken when stream 1 ended; the sixth never was).
    drive(&mut s, &ctx2, &mut c, now);
    s.cut_off(&mut c, now);
    assert_eq!((c.issued, c.in_flight), (5, 4), "{c:?}");
    assert!(c.adds_up(), "{c:?}");
}

#[test]
fn a_malformed_frame_fails_the_connections_streams_as_h2_protocol() {
    let now = Instant::now();
    let ctx = ctx(3, 3, now);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    drive(&mut s, &ctx, &mut c, now);
    s.on_recv(&ctx, &mut c, &server_settings(), now);
    drive(&mut s, &ctx, &mut c, now);
    s.on_recv(&ctx, &mut c, &frame(DATA, 0, 0, b"x"), now);
    assert_eq!(c.failed, vec![ErrorKind::H2Protocol; 3]);
    assert!(s.take_close());
    assert!(c.adds_up(), "{c:?}");
}

#[test]
fn a_stream_past_its_timeout_ends_the_connection_and_the_others_go_on() {
    let t0 = Instant::now();
    let ctx = ctx(3, 3, t0);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    assert_eq!(drive(&mut s, &ctx, &mut c, t0), vec![1]);
    let t1 = t0 + Duration::from_secs(1);
    s.on_recv(&ctx, &mut c, &server_settings(), t1);
    assert_eq!(drive(&mut s, &ctx, &mut c, t1), vec![3, 5]);
    // Stream 1's --timeout (2 s) passes first.
    assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(2)));
    let t2 = t0 + Duration::from_millis(2500);
    s.on_timer(&ctx, &mut c, t2);
    assert_eq!(c.failed, vec![ErrorKind::Timeout]);
    assert_eq!(c.retried, 2);
    assert!(s.take_close());
    assert_eq!(s.want(), Want::Connect);
    let mut open = drive(&mut s, &ctx, &mut c, t2);
    s.on_recv(&ctx, &mut c, &server_settings(), t2);
    open.extend(drive(&mut s, &ctx, &mut c, t2));
    assert_eq!(open, vec![1, 3]);
    for id in open {
        s.on_recv(&ctx, &mut c, &answer(id), t2);
    }
    assert_eq!(c.completed, 2);
    assert!(c.adds_up(), "{c:?}");
}

fn refuse(stream: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &REFUSED_STREAM.to_be_bytes())
}

#[test]
fn refused_streams_are_sent_again_unless_the_server_refuses_everything() {
    let now = Instant::now();
    let ctx = ctx(6, 2, now);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    let mut open = drive(&mut s, &ctx, &mut c, now);
    s.on_recv(&ctx, &mut c, &server_settings(), now);
    open.extend(drive(&mut s, &ctx, &mut c, now));
    assert_eq!(open, vec![1, 3]);
    // Stream 3 refused: its request goes again, on the same connection.
    s.on_recv(&ctx, &mut c, &[answer(1), refuse(3)].concat(), now);
    assert_eq!(drive(&mut s, &ctx, &mut c, now), vec![5, 7]);
    assert_eq!((c.completed, c.retried, c.failed.len()), (1, 1, 0));
    // From here on everything is refused: of the refusals since the last
    // response, as many as the streams allowed (2) are sent again, the
    // later ones fail: 1 + 2 + 2 + 2 resets, 2 retries, 5 failures.
    let mut ids = vec![5, 7];
    let mut rounds = 0;
    while !ids.is_empty() && rounds < 20 {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| refuse(id)).collect();
        s.on_recv(&ctx, &mut c, &bytes, now);
        ids = drive(&mut s, &ctx, &mut c, now);
        rounds += 1;
    }
    assert!(ids.is_empty(), "the run ends: {c:?}");
    assert_eq!(c.retried, 2, "{c:?}");
    assert_eq!(c.failed, vec![ErrorKind::StreamReset; 5]);
    assert!(c.resets.iter().all(|&r| r == REFUSED_STREAM));
    assert_eq!(c.resets.len(), 7);
    assert_eq!(c.h2_connections, 1);
    assert!(c.adds_up(), "{c:?}");
    assert_eq!(s.want(), Want::Done);
}

#[test]
fn requests_held_for_want_of_a_stream_time_out() {
    let t0 = Instant::now();
    let ctx = ctx(3, 2, t0);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    // Two tickets, one stream until the server's SETTINGS: the second
    // waits from now.
    assert_eq!(drive(&mut s, &ctx, &mut c, t0), vec![1]);
    // The server allows no stream at all, then answers stream 1.
    let mut b = BytesMut::new();
    put_settings(&mut b, &[(SETTINGS_MAX_CONCURRENT_STREAMS, 0)]);
    let t1 = t0 + Duration::from_secs(1);
    let ack = frame(SETTINGS, ACK, 0, &[]);
    s.on_recv(&ctx, &mut c, &[b.to_vec(), ack, answer(1)].concat(), t1);
    assert!(drive(&mut s, &ctx, &mut c, t1).is_empty());
    // It waits at most its --timeout (2 s).
    assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(2)));
    let t2 = t0 + Duration::from_secs(2);
    s.on_timer(&ctx, &mut c, t2);
    assert_eq!(c.failed, vec![ErrorKind::Timeout]);
    // The last ticket is taken and held in turn.
    assert!(drive(&mut s, &ctx, &mut c, t2).is_empty());
    assert_eq!(s.deadline(), Some(t2 + Duration::from_secs(2)));
    s.on_timer(&ctx, &mut c, t2 + Duration::from_secs(2));
    assert_eq!(c.failed, vec![ErrorKind::Timeout; 2]);
    assert_eq!((c.completed, c.issued), (1, 3));
    assert!(c.adds_up(), "{c:?}");
    drive(&mut s, &ctx, &mut c, t2 + Duration::from_secs(2));
    assert_eq!(s.want(), Want::Done);
}

#[test]
fn a_ping_on_an_idle_connection_is_answered_at_once() {
    let t0 = Instant::now();
    // Open loop, one request a second: the connection idles between.
    let ctx = ctx_at(2, 1, Rate::Open(1.0), t0);
    let mut c = Counts::default();
    let mut s = Session::new(false, 1);
    assert_eq!(drive(&mut s, &ctx, &mut c, t0), vec![1]);
    // Its SETTINGS' ACK goes out though no request waits to carry it.
    s.on_recv(&ctx, &mut c, &[server_settings(), answer(1)].concat(), t0);
    assert_eq!(s.want(), Want::Exchange { send: true });
    let out = s.to_send(&ctx).to_vec();
    assert_eq!(out, frame(SETTINGS, ACK, 0, &[]));
    s.on_sent(&ctx, &mut c, out.len());
    let next = t0 + Duration::from_secs(1);
    assert_eq!(s.want(), Want::Wait(next));
    // A PING meanwhile: its ACK goes out now, and the wait goes on.
    let ping = frame(PING, 0, 0, b"12345678");
    let t1 = t0 + Duration::from_millis(300);
    s.on_recv(&ctx, &mut c, &ping, t1);
    assert_eq!(s.want(), Want::Exchange { send: true });
    let out = s.to_send(&ctx).to_vec();
    assert_eq!(out, frame(PING, ACK, 0, b"12345678"));
    s.on_sent(&ctx, &mut c, out.len());
    assert_eq!(s.want(), Want::Wait(next));
    assert_eq!(s.deadline(), Some(next));
    // The ticket goes out at its time, on the same connection.
    s.on_timer(&ctx, &mut c, next);
    assert_eq!(drive(&mut s, &ctx, &mut c, next), vec![3]);
    s.on_recv(&ctx, &mut c, &answer(3), next);
    assert_eq!((c.completed, c.issued, c.h2_connections), (2, 2, 1));
    assert!(c.adds_up(), "{c:?}");
}
