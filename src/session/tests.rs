//! The session without sockets: scripted event sequences, and every
//! response split at every byte boundary, must give the same outcomes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::backend::{ConnOptions, WorkerCtx, wire};
use crate::plan::{Plan, Rate, Stop};
use crate::target::{RequestOptions, Target};

/// Everything a session reported.
#[derive(Debug, Default)]
struct Seen {
    issued: u64,
    connects: u64,
    retried: u64,
    /// (seq, status, excess, body)
    responses: Vec<(u64, u16, usize, Vec<u8>)>,
    /// The body of the response under way, as handed over.
    body: Vec<u8>,
    heads: u64,
    failed: Vec<(u64, ErrorKind)>,
    in_flight: u64,
    read: u64,
    written: u64,
    closes: u64,
}

impl Sink for Seen {
    const COLLECT: bool = true;
    fn issued(&mut self, n: u64) {
        self.issued += n;
    }
    fn connected(&mut self, _took: std::time::Duration, _reconnect: bool) {
        self.connects += 1;
    }
    fn closed(&mut self) {
        self.closes += 1;
        assert!(self.closes <= self.connects, "closed more than connected");
    }
    fn handshake(&mut self, _took: std::time::Duration, _resumed: bool) {}
    fn retried(&mut self, n: u64) {
        self.retried += n;
    }
    fn head(&mut self, _seq: u64, head: &[u8]) {
        assert!(head.starts_with(b"HTTP/1."));
        self.heads += 1;
    }
    fn body(&mut self, _seq: u64, bytes: &[u8]) {
        self.body.extend_from_slice(bytes);
    }
    fn response(&mut self, d: &Done<'_>) {
        let body = std::mem::take(&mut self.body);
        self.responses
            .push((d.seq, d.response.status, d.excess, body));
        assert_eq!(self.heads, self.responses.len() as u64, "one head each");
    }
    fn failed(&mut self, seq: u64, error: &FetchError) {
        self.failed.push((seq, error.kind));
    }
    fn in_flight(&mut self, n: u64) {
        self.in_flight += n;
    }
    fn bytes(&mut self, read: u64, written: u64) {
        self.read += read;
        self.written += written;
    }
    fn ended(&mut self, _at: Instant) {}
    fn cpu(&mut self, _usage: crate::stats::resources::Usage) {}
    fn h2_streams_open(&mut self, _n: usize) {}
    fn h2_connection(&mut self) {}

    fn goaway(&mut self, _code: u32) {}

    fn stream_reset(&mut self, _code: u32) {}
}

impl Seen {
    fn adds_up(&self) -> bool {
        self.issued == self.responses.len() as u64 + self.failed.len() as u64 + self.in_flight
    }
}

struct Setup {
    method: &'static str,
    pipeline: usize,
    keep_alive: bool,
    stop: Stop,
    rate: Rate,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            method: "GET",
            pipeline: 1,
            keep_alive: true,
            stop: Stop::Count(1_000),
            rate: Rate::Closed,
        }
    }
}

fn ctx(setup: Setup, start: Instant) -> WorkerCtx {
    let opts = RequestOptions {
        method: setup.method.into(),
        ..RequestOptions::default()
    };
    let targets = Arc::new(vec![
        Target::new("http://127.0.0.1:9/x", &opts).expect("target"),
    ]);
    let conn = ConnOptions {
        pipeline: setup.pipeline,
        keep_alive: setup.keep_alive,
        timeout: Some(Duration::from_secs(2)),
        connect_timeout: Some(Duration::from_secs(1)),
        ..ConnOptions::default()
    };
    WorkerCtx::new(
        1,
        Plan::starting_at(setup.stop, setup.rate, start),
        targets.clone(),
        wire(&targets, setup.pipeline),
        Arc::new(conn),
        Arc::default(),
    )
}

/// Starts the next ticket and, if it needs one, connects; then sends
/// everything. Returns whether a new connection was made.
fn start_and_send(s: &mut Session, ctx: &WorkerCtx, seen: &mut Seen, now: Instant) -> bool {
    assert_eq!(s.want(), Want::Start);
    s.start(ctx, seen, now);
    let connected = s.want() == Want::Connect;
    if connected {
        let (addr, bind) = s.connect_started(ctx, now);
        assert_eq!((addr, bind), (ctx.targets[0].addr, None));
        assert_eq!(s.want(), Want::Connecting);
        s.on_connected(ctx, seen, now);
    }
    assert_eq!(s.want(), Want::Exchange { send: true });
    let n = s.to_send(ctx).len();
    assert_eq!(s.to_send_bytes(ctx).len(), n);
    // Two partial sends.
    s.on_sent(ctx, seen, n / 2);
    assert_eq!(s.to_send(ctx).len(), n - n / 2);
    s.on_sent(ctx, seen, n - n / 2);
    assert_eq!(s.want(), Want::Exchange { send: false });
    connected
}

const FIXED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
const CLOSE_DELIMITED: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nhello";
const INTERIM: &[u8] =
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// The outcome of one request whose response arrives in `chunks`, then
/// (if `eof`) the peer's close; and whether the connection stays.
fn one_request(wire: &[&[u8]], eof: bool) -> (Seen, bool) {
    let start = Instant::now();
    let ctx = ctx(Setup::default(), start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    start_and_send(&mut s, &ctx, &mut seen, start);
    for chunk in wire {
        s.on_recv(&ctx, &mut seen, chunk, start);
    }
    if eof {
        s.on_eof(&ctx, &mut seen, start);
    }
    let closed = s.take_close();
    assert!(seen.adds_up(), "{seen:?}");
    (seen, !closed)
}

#[test]
fn every_response_split_at_every_byte_gives_the_same_outcome() {
    for (wire, eof, keeps) in [
        (FIXED, false, true),
        (CHUNKED, false, true),
        (CLOSE_DELIMITED, true, false),
        (INTERIM, false, true),
    ] {
        let (whole, kept) = one_request(&[wire], eof);
        assert_eq!(kept, keeps, "{}", String::from_utf8_lossy(wire));
        assert_eq!(whole.responses.len(), 1);
        assert_eq!(whole.responses[0].3, b"hello");
        for cut in 1..wire.len() {
            let (a, b) = wire.split_at(cut);
            let (split, kept) = one_request(&[a, b], eof);
            assert_eq!(split.responses, whole.responses, "cut at {cut}");
            assert_eq!(kept, keeps, "cut at {cut}");
            assert_eq!(split.read, wire.len() as u64);
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(one_request(&bytes, eof).0.responses, whole.responses);
    }
}

#[test]
fn a_keep_alive_connection_is_reused_and_bytes_are_counted() {
    let start = Instant::now();
    let ctx = ctx(Setup::default(), start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    for round in 0..3 {
        let connected = start_and_send(&mut s, &ctx, &mut seen, start);
        assert_eq!(connected, round == 0);
        s.on_recv(&ctx, &mut seen, FIXED, start);
        assert!(!s.take_close());
    }
    assert_eq!(seen.connects, 1);
    assert_eq!(seen.written, 3 * ctx.targets[0].request.len() as u64);
    assert_eq!(seen.read, 3 * FIXED.len() as u64);
    assert_eq!(
        seen.responses.iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

/// Bytes after a complete response: the response counts, the excess is
/// ignored, and the connection is not reused, however TCP splits them.
#[test]
fn excess_bytes_end_the_connection_however_they_arrive() {
    let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi\r\n";
    let (together, kept) = one_request(&[wire], false);
    assert!(!kept);
    assert_eq!(together.responses[0].1, 200);
    assert_eq!(together.responses[0].2, 2, "the excess is reported");
    let (body, rest) = wire.split_at(wire.len() - 2);
    // The excess alone, later, on the idle connection.
    let start = Instant::now();
    let ctx = ctx(Setup::default(), start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    start_and_send(&mut s, &ctx, &mut seen, start);
    s.on_recv(&ctx, &mut seen, body, start);
    assert!(!s.take_close());
    s.on_recv(&ctx, &mut seen, rest, start);
    assert!(s.take_close(), "bytes on an idle connection close it");
    assert_eq!(seen.responses.len(), 1);
    assert_eq!(seen.responses[0].3, b"hi");
    assert!(start_and_send(&mut s, &ctx, &mut seen, start));
}

#[test]
fn methods_are_case_sensitive() {
    // `head` is not HEAD: the body its Content-Length announces is read.
    let start = Instant::now();
    let setup = Setup {
        method: "head",
        ..Setup::default()
    };
    let ctx = ctx(setup, start);
    assert!(!ctx.targets[0].head_request);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    let wire: &[u8] = b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 15\r\n\r\nNot Implemented";
    start_and_send(&mut s, &ctx, &mut seen, start);
    s.on_recv(&ctx, &mut seen, wire, start);
    assert_eq!(seen.responses[0].1, 501);
    assert_eq!(seen.responses[0].3, b"Not Implemented");
    assert_eq!(seen.responses[0].2, 0);
    assert!(!s.take_close());
    // HEAD itself has no body, whatever the headers say.
    let ctx = self::ctx(
        Setup {
            method: "HEAD",
            ..Setup::default()
        },
        start,
    );
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    start_and_send(&mut s, &ctx, &mut seen, start);
    s.on_recv(
        &ctx,
        &mut seen,
        b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n",
        start,
    );
    assert_eq!(seen.responses.len(), 1);
    assert_eq!(seen.responses[0].3, b"");
}

#[test]
fn a_reused_connection_closed_before_any_byte_is_retried_once() {
    let start = Instant::now();
    let ctx = ctx(Setup::default(), start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    start_and_send(&mut s, &ctx, &mut seen, start);
    s.on_recv(&ctx, &mut seen, FIXED, start);
    // Reused; the server had closed it.
    assert!(!start_and_send(&mut s, &ctx, &mut seen, start));
    s.on_eof(&ctx, &mut seen, start);
    assert!(s.take_close());
    assert_eq!(seen.retried, 1);
    assert_eq!(s.want(), Want::Connect);
    s.connect_started(&ctx, start);
    s.on_connected(&ctx, &mut seen, start);
    s.on_sent(&ctx, &mut seen, s.to_send(&ctx).len());
    // The fresh connection fails the same way: no second retry.
    let reset = std::io::Error::from_raw_os_error(libc::ECONNRESET);
    s.on_io_error(&ctx, &mut seen, &reset, start);
    assert_eq!(seen.retried, 1);
    assert_eq!(seen.failed, [(1, ErrorKind::Reset)]);
    assert!(seen.adds_up());
    // A failure after response bytes is never retried.
    start_and_send(&mut s, &ctx, &mut seen, start);
    s.on_recv(&ctx, &mut seen, FIXED, start);
    start_and_send(&mut s, &ctx, &mut seen, start);
    s.on_recv(&ctx, &mut seen, &FIXED[..10], start);
    s.on_eof(&ctx, &mut seen, start);
    assert_eq!(seen.retried, 1);
    assert_eq!(seen.failed.last(), Some(&(3, ErrorKind::EarlyEof)));
}

/// A pipelined batch whose second response says `Connection: close`: the
/// rest goes to a new connection, and every request is answered.
#[test]
fn connection_close_inside_a_pipelined_batch_moves_the_rest() {
    let start = Instant::now();
    let setup = Setup {
        pipeline: 4,
        ..Setup::default()
    };
    let ctx = ctx(setup, start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 4);
    start_and_send(&mut s, &ctx, &mut seen, start);
    assert_eq!(seen.issued, 4);
    assert_eq!(seen.written, 4 * ctx.targets[0].request.len() as u64);
    let close: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello";
    // Both responses, and a third the server should not have sent, at once.
    let wire = [FIXED, close, FIXED].concat();
    s.on_recv(&ctx, &mut seen, &wire, start);
    assert!(s.take_close());
    assert_eq!(seen.responses.len(), 2);
    assert_eq!(seen.retried, 2);
    assert_eq!(s.want(), Want::Connect);
    s.connect_started(&ctx, start);
    s.on_connected(&ctx, &mut seen, start);
    // Only the two unanswered requests are written again.
    assert_eq!(s.to_send(&ctx).len(), 2 * ctx.targets[0].request.len());
    s.on_sent(&ctx, &mut seen, s.to_send(&ctx).len());
    s.on_recv(&ctx, &mut seen, &[FIXED, FIXED].concat(), start);
    assert_eq!(
        seen.responses.iter().map(|r| r.0).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(seen.failed.is_empty());
    assert!(seen.adds_up());
}

/// A server that answers one request per connection and closes without
/// notice: unanswered pipelined requests are retried while connections
/// make progress, so every one is answered.
#[test]
fn pipelined_requests_cut_short_without_notice_are_retried() {
    let start = Instant::now();
    let setup = Setup {
        pipeline: 16,
        stop: Stop::Count(16),
        ..Setup::default()
    };
    let ctx = ctx(setup, start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 16);
    start_and_send(&mut s, &ctx, &mut seen, start);
    let mut connections = 1;
    while seen.responses.len() < 16 {
        s.on_recv(&ctx, &mut seen, FIXED, start);
        if seen.responses.len() == 16 {
            break;
        }
        s.on_eof(&ctx, &mut seen, start);
        assert!(s.take_close());
        assert_eq!(s.want(), Want::Connect, "{seen:?}");
        s.connect_started(&ctx, start);
        s.on_connected(&ctx, &mut seen, start);
        s.on_sent(&ctx, &mut seen, s.to_send(&ctx).len());
        connections += 1;
    }
    assert_eq!(connections, 16);
    assert!(seen.failed.is_empty());
    assert_eq!(seen.retried, (1..16).sum::<u64>());
    s.start(&ctx, &mut seen, start);
    assert_eq!(s.want(), Want::Done);

    // A fresh connection that answers nothing ends the retries.
    let ctx = self::ctx(
        Setup {
            pipeline: 4,
            ..Setup::default()
        },
        start,
    );
    let mut seen = Seen::default();
    let mut s = Session::new(true, 4);
    start_and_send(&mut s, &ctx, &mut seen, start);
    s.on_recv(&ctx, &mut seen, FIXED, start);
    s.on_eof(&ctx, &mut seen, start);
    assert_eq!(seen.retried, 3);
    s.connect_started(&ctx, start);
    s.on_connected(&ctx, &mut seen, start);
    s.on_sent(&ctx, &mut seen, s.to_send(&ctx).len());
    s.on_eof(&ctx, &mut seen, start);
    assert_eq!(seen.retried, 3);
    assert_eq!(seen.failed.len(), 3);
    assert!(seen.adds_up());
}

#[test]
fn the_earlier_limit_names_the_failure() {
    let start = Instant::now();
    let ctx = ctx(Setup::default(), start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    s.start(&ctx, &mut seen, start);
    // Waiting for a connect turn: no clock runs yet.
    assert_eq!(s.deadline(), None);
    let turn = start + Duration::from_millis(500);
    s.connect_started(&ctx, turn);
    assert_eq!(s.deadline(), Some(turn + Duration::from_secs(1)));
    s.on_timer(&ctx, &mut seen, turn + Duration::from_millis(999));
    assert!(seen.failed.is_empty());
    s.on_timer(&ctx, &mut seen, turn + Duration::from_secs(1));
    assert_eq!(seen.failed, [(0, ErrorKind::ConnectTimeout)]);
    assert!(s.take_close());
    // Connected, then no answer: the request's own limit, from its turn.
    start_and_send(&mut s, &ctx, &mut seen, turn);
    assert_eq!(s.deadline(), Some(turn + Duration::from_secs(2)));
    s.on_timer(&ctx, &mut seen, turn + Duration::from_secs(2));
    assert_eq!(seen.failed[1], (1, ErrorKind::Timeout));
    assert!(seen.adds_up());
}

/// What is under way at the end of the run is in flight, and so is a
/// response that completes after the end.
#[test]
fn the_end_of_the_run_makes_requests_in_flight() {
    let start = Instant::now() - Duration::from_secs(10);
    let setup = Setup {
        stop: Stop::Duration(Duration::from_secs(60)),
        ..Setup::default()
    };
    let ctx = ctx(setup, start);
    let now = start + Duration::from_secs(10);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    start_and_send(&mut s, &ctx, &mut seen, now);
    s.cut_off(&mut seen, now);
    assert_eq!(s.want(), Want::Done);
    assert!(s.take_close());
    assert_eq!((seen.in_flight, seen.issued), (1, 1));

    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    start_and_send(&mut s, &ctx, &mut seen, now);
    let late = start + Duration::from_secs(61);
    s.on_recv(&ctx, &mut seen, FIXED, late);
    assert!(seen.responses.is_empty());
    assert_eq!(seen.in_flight, 1);
    assert_eq!(s.want(), Want::Done);
    // A failure at the end (a blocked driver's socket shut down) too.
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    start_and_send(&mut s, &ctx, &mut seen, now);
    s.on_eof(&ctx, &mut seen, late);
    assert!(seen.failed.is_empty());
    assert_eq!(seen.in_flight, 1);
}

#[test]
fn an_open_loop_ticket_waits_for_its_time() {
    let start = Instant::now();
    let setup = Setup {
        rate: Rate::Open(10.0),
        stop: Stop::Count(3),
        ..Setup::default()
    };
    let ctx = ctx(setup, start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    start_and_send(&mut s, &ctx, &mut seen, start);
    s.on_recv(&ctx, &mut seen, FIXED, start);
    s.start(&ctx, &mut seen, start);
    let due = start + Duration::from_millis(100);
    assert_eq!(s.want(), Want::Wait(due));
    assert_eq!(s.deadline(), Some(due));
    assert_eq!(seen.issued, 1, "issued when it starts, not when taken");
    s.on_timer(&ctx, &mut seen, due - Duration::from_millis(1));
    assert_eq!(s.want(), Want::Wait(due));
    s.on_timer(&ctx, &mut seen, due);
    assert_eq!(s.want(), Want::Exchange { send: true });
    assert_eq!(seen.issued, 2);
    // Cut off while waiting: due by then is in flight, not due is not issued.
    s.on_sent(&ctx, &mut seen, s.to_send(&ctx).len());
    s.on_recv(&ctx, &mut seen, FIXED, due);
    s.start(&ctx, &mut seen, due);
    s.cut_off(&mut seen, due);
    assert_eq!((seen.issued, seen.in_flight), (2, 0));
    assert!(seen.adds_up());
}

#[test]
fn no_keep_alive_closes_after_each_response() {
    let start = Instant::now();
    let setup = Setup {
        keep_alive: false,
        ..Setup::default()
    };
    let ctx = ctx(setup, start);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    for _ in 0..3 {
        assert!(start_and_send(&mut s, &ctx, &mut seen, start));
        s.on_recv(&ctx, &mut seen, FIXED, start);
        assert!(s.take_close());
    }
    assert_eq!(seen.connects, 3);
}

#[test]
fn malformed_responses_fail_without_retry() {
    let (seen, kept) = one_request(&[b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n"], false);
    assert!(!kept);
    assert_eq!(seen.failed, [(0, ErrorKind::BadResponse)]);
    assert_eq!(seen.retried, 0);
}

/// A name with several addresses (`localhost`: ::1 and 127.0.0.1): a
/// connect refused, unreachable or timed out on one tries the next, as
/// curl does; the address that worked is kept for the next connections.
#[test]
fn every_address_of_a_name_is_tried() {
    let start = Instant::now();
    let mut ctx = ctx(
        Setup {
            keep_alive: false,
            ..Setup::default()
        },
        start,
    );
    let second: std::net::SocketAddr = "127.0.0.2:9".parse().unwrap();
    let mut targets = (*ctx.targets).clone();
    targets[0].addrs.push(second);
    ctx.targets = Arc::new(targets);
    let mut seen = Seen::default();
    let mut s = Session::new(true, 1);
    s.start(&ctx, &mut seen, start);
    assert_eq!(s.connect_started(&ctx, start).0, ctx.targets[0].addr);
    let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
    s.on_connect_error(&ctx, &mut seen, &refused, start);
    assert!(
        seen.failed.is_empty(),
        "not an error while an address is left"
    );
    assert_eq!(s.want(), Want::Connect);
    assert_eq!(s.connect_started(&ctx, start).0, second);
    s.on_connected(&ctx, &mut seen, start);
    s.on_sent(&ctx, &mut seen, s.to_send(&ctx).len());
    s.on_recv(&ctx, &mut seen, FIXED, start);
    assert_eq!(seen.responses.len(), 1);
    // The next connection goes straight to the address that worked.
    assert!(s.take_close());
    s.start(&ctx, &mut seen, start);
    assert_eq!(s.connect_started(&ctx, start).0, second);
    // Every address refused: one error, and the next request starts over.
    s.on_connect_error(&ctx, &mut seen, &refused, start);
    assert_eq!(seen.failed, [(1, ErrorKind::Refused)]);
    s.start(&ctx, &mut seen, start);
    assert_eq!(s.connect_started(&ctx, start).0, ctx.targets[0].addr);
    // A connect timeout moves on too.
    s.on_timer(&ctx, &mut seen, start + Duration::from_secs(1));
    assert_eq!(s.want(), Want::Connect);
    assert_eq!(s.connect_started(&ctx, start).0, second);
    assert!(seen.adds_up() || s.is_busy());
}
