//! The demo server under hostile clients: slowloris, oversize and malformed
//! heads, clients that vanish mid-answer, and a burst of connects. It runs
//! as its own process (`uringfetch serve`), so its descriptors and memory
//! are its own; a well-behaved client on a keep-alive connection must keep
//! getting `/bar` within one delay + 100 ms throughout, and the server's
//! resident memory must stay bounded.
//!
//! 10,000 connections take part in the slowloris and burst phases, as the
//! issue asks; `URINGFETCH_HOSTILE_CONNS=N` changes that. Those two tests
//! hold that many descriptors each, so they take turns through a lock.
//!
//! Every test runs on both of the server's engines (`uring::NAME`,
//! `epoll::NAME`): the fallback must hold up as the io_uring server does.
//!
//! This is a test binary of its own, not part of `tests/it`: the bound is a
//! latency promise, and on a 2-core machine it cannot hold while the rest
//! of the suite competes for the same cores (in the shared binary a burst
//! once delayed the probe to 375 ms). Cargo runs test binaries one after
//! another, so these run with the machine to themselves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uringfetch::testing::Rlimit;
use uringfetch::testing::{Progress, ResponseParser};

#[allow(unused_imports, unused_macros)]
#[path = "it/support.rs"]
mod support;
use support::*;

const DELAY: Duration = Duration::from_millis(200);
const IDLE: Duration = Duration::from_secs(2);
/// The promise: other clients are answered within one delay + 100 ms.
const BOUND: Duration = Duration::from_millis(300);
/// No answer may wait this long: half the attackers' idle cut-off.
const STALL: Duration = Duration::from_millis(1000);
/// Generous ceiling on the server's peak RSS with 10,000 hostile connections
/// (about 4 KiB of buffer each, plus rings and runtimes).
const RSS_LIMIT_KIB: u64 = 256 * 1024;

/// Clients per round that ask for `/bar` and vanish before the answer.
const VANISHING: usize = 1000;

/// The tests take turns: two hold thousands of descriptors, and each
/// measures a latency bound that the others' load would break.
static HEAVY: Mutex<()> = Mutex::new(());

/// Hostile connections per phase. (Until the server's submission queue was
/// made small, a 10,000-connect burst delayed the probe's answers by up to
/// 150 ms past the bound on the 2-core test machine; see `SQ_ENTRIES` in
/// `src/server/uring.rs`.)
fn hostile_conns() -> usize {
    let n = std::env::var("URINGFETCH_HOSTILE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    need_descriptors(n, "or set URINGFETCH_HOSTILE_CONNS lower");
    n
}

/// Fails the test unless the open-file limit leaves room for `n`
/// connections and 2,000 descriptors more.
fn need_descriptors(n: usize, or: &str) {
    // The soft open-file limit (unlimited reads as u64::MAX, unknown as 0).
    let nofile = Rlimit::get(libc::RLIMIT_NOFILE).map_or(0, |l| l.soft.unwrap_or(u64::MAX));
    assert!(
        nofile >= n as u64 + 2_000,
        "{n} connections need an open-file limit above {}; it is {nofile}: \
         run the tests through scripts/test (which runs `ulimit -n 20000`) {or}",
        n + 2_000,
    );
}

/// `uringfetch serve --engine ENGINE` as a child process on a free
/// loopback port.
fn serve(engine: &str) -> Peer {
    serve_limited(engine, None)
}

/// [`serve`], optionally under `ulimit -n nofile`.
fn serve_limited(engine: &str, nofile: Option<u32>) -> Peer {
    serve_with(engine, nofile, 2)
}

/// [`serve`] with `threads` threads, optionally under `ulimit -n nofile`.
fn serve_with(engine: &str, nofile: Option<u32>, threads: usize) -> Peer {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut cmd = match nofile {
        None => Command::new(env!("CARGO_BIN_EXE_uringfetch")),
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                .arg(env!("CARGO_BIN_EXE_uringfetch"));
            c
        }
    };
    let child = cmd
        .args(["serve", "--addr", &addr.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--engine", engine])
        .args(["--delay", "200ms", "--idle-timeout", "2s"])
        .args(["--max-head-bytes", "16384"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("uringfetch serve starts");
    let peer = Peer {
        child,
        addr,
        dir: None,
    };
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    peer
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{field} of process {pid}"))
}

/// Sends `req` on `s` and reads one whole response; returns its status.
fn exchange(s: &mut TcpStream, req: &[u8]) -> u16 {
    s.write_all(req).expect("write the request");
    let mut parser = ResponseParser::new(false);
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read the response");
        if n == 0 {
            return parser.feed_eof().expect("complete response").status;
        }
        if let Progress::Done(r) = parser.feed(&buf[..n]).expect("valid response") {
            return r.status;
        }
    }
}

/// A well-behaved client: one keep-alive connection asking for `/bar`
/// until told to stop; returns the slowest answer it got and how many.
fn watch(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    let mut s = TcpStream::connect(addr).expect("probe connects");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    std::thread::spawn(move || {
        let mut took = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let status = exchange(&mut s, b"GET /bar HTTP/1.1\r\nHost: probe\r\n\r\n");
            assert_eq!(status, 200);
            took.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        took
    })
}

/// The probe's answers keep the promise: the median within [`BOUND`], and
/// not one of them held for [`STALL`]. A single answer may run past the
/// bound when the shared machine is busy (CI once saw 327 ms while the
/// test's own thread wrote to 10,000 sockets beside the server); a server
/// that starves other clients holds them until the attackers are cut off
/// at [`IDLE`], which both checks catch.
fn check_watch(h: std::thread::JoinHandle<Vec<Duration>>, what: &str) {
    let mut took = h.join().expect("the probe client did not panic");
    took.sort();
    let count = took.len();
    assert!(count >= 3, "{what}: only {count} probe answers");
    let (median, worst) = (took[count / 2], took[count - 1]);
    eprintln!("{what}: {count} probe answers, median {median:?}, slowest {worst:?}");
    assert!(
        median <= BOUND,
        "{what}: a well-behaved client's median wait was {median:?} (bound {BOUND:?})"
    );
    assert!(
        worst <= STALL,
        "{what}: a well-behaved client waited {worst:?} (stall bound {STALL:?})"
    );
}

/// One thread: more would only take CPU from the server on a small machine.
const CONNECT_THREADS: usize = 1;
/// Rounds of burst and vanishing clients (the peak RSS must stop growing).
const ROUNDS: usize = 4;

/// `n` connections, opened one after the other as fast as possible.
fn connect_many(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let threads: Vec<_> = (0..CONNECT_THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                (t..n)
                    .step_by(CONNECT_THREADS)
                    .map(|_| TcpStream::connect(addr).expect("hostile connect"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("connect thread"))
        .collect()
}

fn slowloris_is_cut_off_and_others_are_still_answered(engine: &str) {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve(engine);
    let pid = server.child.id();
    let n = hostile_conns();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = watch(server.addr, stop.clone());
    let mut conns = connect_many(server.addr, n);
    let head = b"GET /bar HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
    let start = Instant::now();
    let mut open = conns.len();
    // One byte a second from every connection until the server has cut
    // them all off (it bounds a whole head by --idle-timeout).
    for sec in 0.. {
        for s in &mut conns {
            let _ = s.set_nonblocking(true);
            let _ = s.write(&[head[sec % head.len()]]);
        }
        std::thread::sleep(Duration::from_secs(1));
        open = conns.iter().filter(|s| still_open(s)).count();
        if open == 0 || start.elapsed() > IDLE + Duration::from_secs(4) {
            break;
        }
    }
    let took = start.elapsed();
    let hwm = status_kib(pid, "VmHWM");
    stop.store(true, Ordering::Relaxed);
    check_watch(probe, &format!("{n} slowloris connections"));
    assert_eq!(
        open, 0,
        "{open} of {n} slowloris connections still open after {took:?}"
    );
    assert!(
        hwm < RSS_LIMIT_KIB,
        "server peak RSS {hwm} KiB with {n} slowloris"
    );
    drop(conns);
    let mut s = TcpStream::connect(server.addr).expect("connect after");
    assert_eq!(
        exchange(&mut s, b"GET /foo HTTP/1.1\r\nHost: t\r\n\r\n"),
        200
    );
}

/// Whether the server still holds the connection (no EOF or error yet).
fn still_open(s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 512];
    match (&*s).read(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

fn connect_burst_and_vanishing_clients_do_not_stall_others(engine: &str) {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve(engine);
    let pid = server.child.id();
    let n = hostile_conns();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = watch(server.addr, stop.clone());
    let mut hwm_after_warmup = 0;
    for round in 0..ROUNDS {
        // A burst of connects, closed at once.
        drop(connect_many(server.addr, n));
        // Clients that ask for /bar and are gone before the answer.
        let mut conns = connect_many(server.addr, VANISHING);
        for s in &mut conns {
            let _ = s.write_all(b"GET /bar HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        std::thread::sleep(DELAY / 2);
        drop(conns);
        // Big answers cut off after their first bytes.
        for _ in 0..50 {
            let mut s = TcpStream::connect(server.addr).expect("connect");
            let _ = s.write_all(b"GET /bytes/16777216 HTTP/1.1\r\nHost: t\r\n\r\n");
            let _ = s.read(&mut [0u8; 1000]);
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("linger");
        }
        std::thread::sleep(DELAY * 2);
        let (rss, hwm) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
        eprintln!("round {round}: server RSS {rss} KiB, peak {hwm} KiB");
        // The first rounds grow the heap; later ones must reuse it.
        if round == 1 {
            hwm_after_warmup = hwm;
        }
        assert!(
            round < 2 || hwm <= hwm_after_warmup + 16 * 1024,
            "server peak RSS grows by round: {hwm_after_warmup} KiB after round 1, {hwm} KiB after round {round}"
        );
    }
    let hwm = status_kib(pid, "VmHWM");
    stop.store(true, Ordering::Relaxed);
    check_watch(probe, &format!("bursts of {n} connects"));
    assert!(hwm < RSS_LIMIT_KIB, "server peak RSS {hwm} KiB");
    let mut s = TcpStream::connect(server.addr).expect("connect after");
    assert_eq!(
        exchange(&mut s, b"GET /foo HTTP/1.1\r\nHost: t\r\n\r\n"),
        200
    );
}

fn oversize_and_malformed_heads_get_431_and_400(engine: &str) {
    // Its probe's bound would not hold next to 10,000 hostile connections.
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve(engine);
    let stop = Arc::new(AtomicBool::new(false));
    let probe = watch(server.addr, stop.clone());
    let mut big = b"GET /bar HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let big = big.clone();
            let addr = server.addr;
            std::thread::spawn(move || {
                let start = Instant::now();
                for i in 0.. {
                    if i >= 30 && start.elapsed() > Duration::from_secs(1) {
                        break;
                    }
                    let mut s = TcpStream::connect(addr).expect("connect");
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let (req, want): (&[u8], u16) = match (t + i) % 3 {
                        0 => (&big, 431),
                        1 => (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 400),
                        _ => (b"GET /bar HTTP/9.9 extra\r\n\r\n", 400),
                    };
                    let _ = s.write_all(req);
                    let mut parser = ResponseParser::new(false);
                    let mut buf = [0u8; 4096];
                    let status = loop {
                        let n = s.read(&mut buf).unwrap_or(0);
                        assert!(n > 0, "closed without an answer to {want}");
                        if let Ok(Progress::Done(r)) = parser.feed(&buf[..n]) {
                            break r.status;
                        }
                    };
                    assert_eq!(status, want);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("hostile client thread");
    }
    stop.store(true, Ordering::Relaxed);
    check_watch(probe, "oversize and malformed heads");
}

/// A connection that got a big answer and went idle keeps little memory:
/// the server once kept the output buffer the answer grew (73 KiB per idle
/// connection after `/chunked/70000`, against about 5 KiB after `/bar`).
fn idle_connections_do_not_keep_big_answers_buffers(engine: &str) {
    let per_conn = idle_kib_per_connection(engine, |s| {
        let status = exchange(s, b"GET /chunked/70000 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(status, 200);
    });
    assert!(
        per_conn < 24,
        "{per_conn} KiB per idle connection after a 70,000-byte chunked answer"
    );
}

/// The server's resident memory per connection (KiB) once 500
/// connections have each made `exchange` and gone idle.
fn idle_kib_per_connection(engine: &str, exchange: impl Fn(&mut TcpStream)) -> u64 {
    const N: usize = 500;
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let peer = serve(engine);
    let pid = peer.child.id();
    let before = status_kib(pid, "VmRSS");
    let conns: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut s = TcpStream::connect(peer.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            exchange(&mut s);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let per_conn = status_kib(pid, "VmRSS").saturating_sub(before) / N as u64;
    drop(conns);
    per_conn
}

/// The HTTP/2 form of the test above: h2c connections that each got a
/// 70,000-byte answer (in DATA frames) and went idle keep little memory,
/// as HTTP/1.1 ones do: the output buffer, stream table and header block
/// buffers are let go once no stream is open. (10,000 idle h2c
/// connections after `/bar` held 7.0 KiB each, HTTP/1.1 ones 5.2.)
fn idle_h2_connections_do_not_keep_big_answers_buffers(engine: &str) {
    let per_conn = idle_kib_per_connection(engine, |s| {
        assert_eq!(h2_exchange(s, "/chunked/70000"), 70_000);
    });
    assert!(
        per_conn < 24,
        "{per_conn} KiB per idle h2c connection after a 70,000-byte answer"
    );
}

/// A frame header: length, type, flags, stream.
fn h2_frame(len: usize, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
    let mut v = (len as u32).to_be_bytes()[1..].to_vec();
    v.extend_from_slice(&[kind, flags]);
    v.extend_from_slice(&stream.to_be_bytes());
    v
}

/// Opens HTTP/2 with prior knowledge on `s` (1 MiB windows),
/// GETs `path` on stream 1 and reads its answer; returns its body length.
fn h2_exchange(s: &mut TcpStream, path: &str) -> usize {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE 1 MiB for the stream, a WINDOW_UPDATE
    // for the connection.
    out.extend(h2_frame(6, 0x4, 0, 0));
    out.extend([0, 4]);
    out.extend((1u32 << 20).to_be_bytes());
    out.extend(h2_frame(4, 0x8, 0, 0));
    out.extend(((1u32 << 20) - 65_535).to_be_bytes());
    // HPACK: `:method GET` and `:scheme http` from the static table, a
    // literal `:path`.
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    out.extend(h2_frame(block.len(), 0x1, 0x4 | 0x1, 1));
    out.extend(block);
    s.write_all(&out).expect("write the request");
    let mut body = 0;
    let mut head = [0u8; 9];
    loop {
        s.read_exact(&mut head).expect("a frame");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).expect("a frame's payload");
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        if stream == 1 && kind == 0x0 {
            body += len;
        }
        if stream == 1 && flags & 0x1 != 0 && (kind == 0x0 || kind == 0x1) {
            return body;
        }
        assert!(
            kind != 0x7 && kind != 0x3,
            "GOAWAY or RST_STREAM: {head:?} {payload:?}"
        );
    }
}

/// Request bodies dribbled at one byte a second (`Content-Length:
/// 1000000000`) from more connections than the server has descriptors
/// (`ulimit -n 256`): the server restarted a body's deadline on every read,
/// so they held every slot for ever and no new client was answered. A body
/// must now average a minimum rate, so they are cut after about
/// `--idle-timeout`, and a new client is then answered within one delay +
/// 100 ms while the attack goes on.
fn slow_bodies_are_cut_off_under_a_low_descriptor_limit(engine: &str) {
    const NOFILE: u32 = 256;
    const ATTACKERS: usize = 256;
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve_limited(engine, Some(NOFILE));
    let addr = server.addr;
    let mut conns: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("attacker connects");
            s.write_all(b"POST /bar HTTP/1.1\r\nHost: slow\r\nContent-Length: 1000000000\r\n\r\n")
                .expect("attacker head");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let start = Instant::now();
    // New clients from when the bodies should have been cut off.
    let probe = std::thread::spawn(move || {
        std::thread::sleep((IDLE + Duration::from_millis(1500)).saturating_sub(start.elapsed()));
        let mut took_all = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let answered = (|| {
                let mut s = TcpStream::connect(addr).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
                s.write_all(b"GET /bar HTTP/1.1\r\nHost: probe\r\n\r\n")
                    .ok()?;
                let mut parser = ResponseParser::new(false);
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
                    if let Ok(Progress::Done(r)) = parser.feed(&buf[..n]) {
                        return Some(r.status);
                    }
                }
            })();
            let took = t.elapsed();
            assert_eq!(
                answered,
                Some(200),
                "a new client got no answer in {took:?}, {:?} into the attack",
                start.elapsed()
            );
            took_all.push(took);
            std::thread::sleep(Duration::from_millis(200));
        }
        took_all
    });
    // One byte a second from every attacker until the probe is done.
    while !probe.is_finished() && start.elapsed() < IDLE + Duration::from_secs(15) {
        for s in &mut conns {
            let _ = s.write(b"x");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    check_watch(
        probe,
        &format!("{ATTACKERS} slow bodies under ulimit -n {NOFILE}, new clients"),
    );
    let open = conns.iter().filter(|s| still_open(s)).count();
    assert!(
        open < ATTACKERS / 4,
        "{open} of {ATTACKERS} slow bodies still held"
    );
}

/// A burst of 10,000 connects fits in the kernel's accept queues of a
/// one-thread server even while it accepts none of them (it is stopped):
/// no SYN is dropped, so no client waits for the 1 s retransmit. With one
/// listener per thread the queue held `net.core.somaxconn` (4096 here) and
/// the rest of the burst waited; `load -n 10000 -c 10000` then took 2.3-3.2 s.
fn ten_thousand_connects_fit_the_accept_queues(engine: &str) {
    const N: usize = 10_000;
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    need_descriptors(N, "");
    let server = serve_with(engine, None, 1);
    let pid = server.child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let start = Instant::now();
    let mut conns = Vec::with_capacity(N);
    let mut failed = None;
    for i in 0..N {
        // A dropped SYN is retransmitted after 1 s: 500 ms tells them apart.
        match TcpStream::connect_timeout(&server.addr, Duration::from_millis(500)) {
            Ok(s) => conns.push(s),
            Err(e) => {
                failed = Some(format!("connect {i} of {N}: {e}"));
                break;
            }
        }
    }
    let took = start.elapsed();
    signal("-CONT");
    assert_eq!(failed, None, "after {took:?} with the server stopped");
    eprintln!("{N} connects to a stopped one-thread server in {took:?}");
    // Once running again it answers, the queued connections notwithstanding.
    drop(conns);
    let mut s = TcpStream::connect(server.addr).expect("connect after");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(
        exchange(&mut s, b"GET /bar?delay=0 HTTP/1.1\r\nHost: t\r\n\r\n"),
        200
    );
}

/// Runs each of these tests once per server engine.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() { super::$name("uring") } )*
        }
        mod epoll {
            $( #[test] fn $name() { super::$name("epoll") } )*
        }
    };
}

on_both_engines!(
    ten_thousand_connects_fit_the_accept_queues,
    slowloris_is_cut_off_and_others_are_still_answered,
    connect_burst_and_vanishing_clients_do_not_stall_others,
    oversize_and_malformed_heads_get_431_and_400,
    idle_connections_do_not_keep_big_answers_buffers,
    idle_h2_connections_do_not_keep_big_answers_buffers,
    slow_bodies_are_cut_off_under_a_low_descriptor_limit,
);
