//! The connection rules the session decides once for every backend (see
//! `src/session/mod.rs`), checked end to end on every backend: methods are
//! case-sensitive, bytes after a response give one outcome however TCP
//! splits them, open-loop requests are never lost, bytes and connects are
//! counted and paced alike; and the pipelining rules on `uring-loop`.

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::load::{load_on as load, n};
use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// A server that answers `HEAD` without a body and refuses any other
/// method with a 501 whose body its Content-Length announces.
fn head_server() -> RawServer {
    RawServer::start(|mut s| {
        while let Some(head) = read_head(&mut s) {
            if head.starts_with("HEAD ") {
                send(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n");
            } else {
                send(
                    &mut s,
                    b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 15\r\n\r\nNot Implemented",
                );
            }
        }
    })
}

/// `head` is not `HEAD` (RFC 9110 §9.1): its response has the body its
/// headers announce, and on a kept-alive connection that body is not taken
/// for the next response.
pub fn methods_are_case_sensitive(b: &[&str]) {
    let server = head_server();
    let url = server.url("/x");
    let out = uringfetch(
        &[&["get", "-X", "head"], b, &[url.as_str()]].concat(),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Not Implemented");
    let v = load(b, &["-m", "head", "-n", "20", "-c", "2", &url]);
    // A body taken for the next response would be a bad response, and its
    // connection would not be reused.
    assert_eq!(n(&v, "/status/501"), 20, "{v}");
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    assert_eq!(n(&v, "/reconnects"), 0, "{v}");
    let v = load(b, &["-m", "HEAD", "-n", "20", "-c", "2", &url]);
    assert_eq!(n(&v, "/status/200"), 20, "{v}");
    assert_eq!(n(&v, "/reconnects"), 0, "{v}");
}

/// `HTTP/1.1 200 OK, Content-Length: 2, hi` then `\r\n`: in one write, or
/// the `\r\n` 300 ms later. `get` prints the body either way, and `load`
/// never reuses such a connection when the excess comes with the response.
pub fn excess_bytes_give_one_outcome(b: &[&str]) {
    let response: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let together = RawServer::start(move |mut s| {
        while read_head(&mut s).is_some() {
            send(&mut s, &[response, b"\r\n"].concat());
        }
    });
    let later = RawServer::start(move |mut s| {
        if read_head(&mut s).is_some() {
            send(&mut s, response);
            std::thread::sleep(Duration::from_millis(300));
            send(&mut s, b"\r\n");
        }
    });
    for (server, warns) in [(&together, true), (&later, false)] {
        let url = server.url("/");
        let out = uringfetch(&[&["get"], b, &[url.as_str()]].concat(), LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "hi");
        let warning = stderr(&out).contains("2 bytes after the end of the response");
        assert_eq!(warning, warns, "{}", stderr(&out));
    }
    let v = load(b, &["-n", "6", "-c", "1", &together.url("/")]);
    assert_eq!(n(&v, "/status/200"), 6, "{v}");
    assert_eq!(n(&v, "/connections_opened"), 6, "{v}");
}

/// An open-loop run against a server slower than its schedule: every
/// request due before the end is counted, sent late or not at all, and the
/// counts add up with all of them.
pub fn open_loop_never_loses_a_request(b: &[&str]) {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar?delay=300", server.addr);
    let v = load(b, &["-q", "100", "-z", "1s", "-c", "2", &url]);
    assert_eq!(n(&v, "/requests/issued"), 100, "{v}");
    let unsent = n(&v, "/requests/unsent");
    assert!(unsent >= 80, "{v}");
    assert!(n(&v, "/requests/in_flight") >= unsent, "{v}");
    server.shutdown();
}

/// A server that records the length of the requests it reads.
fn counting_server(len: Arc<AtomicUsize>) -> RawServer {
    RawServer::start(move |mut s| {
        while let Some(head) = read_head(&mut s) {
            len.store(head.len(), Ordering::Relaxed);
            send(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    })
}

/// Bytes written are the requests sent, exactly, on every backend.
pub fn bytes_are_counted_alike(b: &[&str]) {
    let len = Arc::new(AtomicUsize::new(0));
    let server = counting_server(len.clone());
    let v = load(b, &["-n", "50", "-c", "2", &server.url("/x")]);
    let one = len.load(Ordering::Relaxed) as u64;
    assert!(one > 0);
    assert_eq!(n(&v, "/bytes/written"), 50 * one, "{v}");
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".len() as u64;
    assert_eq!(n(&v, "/bytes/read"), 50 * response, "{v}");

    // An upload the server never reads, cut off by --timeout: what went out
    // (into the socket buffers), not what was queued.
    let stuck = RawServer::start(|s| {
        std::thread::sleep(Duration::from_secs(2));
        drop(s);
    });
    let dir = temp_dir("cut-off-upload");
    let body = dir.join("body.bin");
    std::fs::write(&body, vec![b'x'; 16 << 20]).unwrap();
    let v = load(
        b,
        &[
            "-n",
            "1",
            "-c",
            "1",
            "-m",
            "POST",
            "--body-file",
            body.to_str().unwrap(),
            "--timeout",
            "300ms",
            &stuck.url("/"),
        ],
    );
    assert_eq!(n(&v, "/errors/timeout"), 1, "{v}");
    let written = n(&v, "/bytes/written");
    assert!(written > 0 && written < 16 << 20, "{written}: {v}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Connect pacing is one rule: at most 256 connects under way per worker
/// thread. 600 connects that never answer, on one thread, take three
/// rounds of --connect-timeout on every backend, and each request's own
/// clock starts with its turn, so all 600 end as connect timeouts.
pub fn connects_are_paced_alike(b: &[&str]) {
    let (_listener, _fillers, url) = blackhole();
    let t = Instant::now();
    let v = load(
        b,
        &[
            "-n",
            "600",
            "-c",
            "600",
            "-t",
            "1",
            "--connect-timeout",
            "300ms",
            "--timeout",
            "5s",
            &url,
        ],
    );
    let took = t.elapsed();
    assert_eq!(n(&v, "/errors/connect_timeout"), 600, "{v}");
    assert!(took >= Duration::from_millis(850), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

macro_rules! session_suite {
    ($($module:ident => [$($arg:literal),+]),* $(,)?) => {$(
        mod $module {
            const B: &[&str] = &["--backend", $($arg),+];
            #[test] fn methods_are_case_sensitive() { super::methods_are_case_sensitive(B) }
            #[test] fn excess_bytes_give_one_outcome() { super::excess_bytes_give_one_outcome(B) }
            #[test] fn open_loop_never_loses_a_request() { super::open_loop_never_loses_a_request(B) }
            #[test] fn bytes_are_counted_alike() { super::bytes_are_counted_alike(B) }
            #[test] fn connects_are_paced_alike() { super::connects_are_paced_alike(B) }
            #[test] fn connect_turns_are_never_lost() { super::connect_turns_are_never_lost(B) }
            #[test] fn an_early_response_does_not_reuse_a_connection_still_sending() {
                super::an_early_response_does_not_reuse_a_connection_still_sending(B)
            }
        }
    )*};
}

every_backend!(session_suite);

/// Reads pipelined requests as they come and answers each with `answer`
/// (its 1-based number on the connection); stops when it returns `None`.
fn pipelined_server(answer: fn(usize) -> Option<&'static [u8]>) -> RawServer {
    RawServer::start(move |mut s: TcpStream| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending = Vec::new();
        let mut answered = 0;
        loop {
            let Ok(k) = s.read(&mut buf) else { return };
            if k == 0 {
                return;
            }
            pending.extend_from_slice(&buf[..k]);
            while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                pending.drain(..end + 4);
                answered += 1;
                match answer(answered) {
                    Some(bytes) => send(&mut s, bytes),
                    None => return,
                }
            }
        }
    })
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";

/// `--pipeline`: the profiles of the backend that pipelines.
const PIPELINING: [&[&str]; 2] = [
    &["--backend", "uring-loop"],
    &["--backend", "uring-loop", "--uring-profile", "5.10"],
];

/// A pipelined response with `Connection: close` ends the connection (RFC
/// 9112 §9.6): the requests behind it go to a new one, counted as retries.
#[test]
fn a_pipelined_connection_close_moves_the_rest_to_a_new_connection() {
    // The third response on each connection says close, and the server
    // answers nothing after it.
    let server = pipelined_server(|k| match k {
        1 | 2 => Some(OK),
        3 => Some(OK_CLOSE),
        _ => None,
    });
    for b in PIPELINING {
        let v = load(
            b,
            &["--pipeline", "8", "-n", "96", "-c", "2", &server.url("/")],
        );
        assert_eq!(n(&v, "/status/200"), 96, "{b:?}: {v}");
        assert_eq!(n(&v, "/requests/errors"), 0, "{b:?}: {v}");
        assert!(n(&v, "/connections_opened") >= 32, "{b:?}: {v}");
        assert!(n(&v, "/retries") > 0, "{b:?}: {v}");
    }
}

/// nginx with `keepalive_requests 3`: 16-deep batches, not one error.
#[test]
fn pipelining_against_nginx_keepalive_requests_has_no_errors() {
    let nginx = nginx();
    let url = format!("http://{}/limited", nginx.addr);
    for b in PIPELINING {
        let v = load(b, &["--pipeline", "16", "-n", "500", "-c", "4", &url]);
        assert_eq!(n(&v, "/status/200"), 500, "{b:?}: {v}");
        assert_eq!(n(&v, "/requests/errors"), 0, "{b:?}: {v}");
    }
}

/// A server that answers one request per connection and closes without
/// notice: the unanswered pipelined requests are retried (RFC 9112
/// §9.3.2), and none ends as an error.
#[test]
fn unanswered_pipelined_requests_are_retried() {
    let server = pipelined_server(|k| (k == 1).then_some(OK));
    for b in PIPELINING {
        let v = load(
            b,
            &["--pipeline", "16", "-n", "160", "-c", "2", &server.url("/")],
        );
        assert_eq!(n(&v, "/status/200"), 160, "{b:?}: {v}");
        assert_eq!(n(&v, "/requests/errors"), 0, "{b:?}: {v}");
        assert_eq!(n(&v, "/connections_opened"), 160, "{b:?}: {v}");
    }
}

/// More connects than a worker's 256 turns, half of them to a peer that
/// never answers and a new connection per request: every request ends
/// (half answered, half connect timeouts). The event loops once lost a
/// waiting slot's turn (a stale timer pushed it onto the wait list twice)
/// and a count run never ended.
pub fn connect_turns_are_never_lost(b: &[&str]) {
    let server = demo_server(Duration::ZERO);
    let (_listener, _fillers, hole) = blackhole();
    let ok = format!("http://{}/bar", server.addr);
    let v = load(
        b,
        &[
            "-t",
            "1",
            "-c",
            "400",
            "-n",
            "2000",
            "--disable-keepalive",
            "--timeout",
            "10s",
            "--connect-timeout",
            "300ms",
            &ok,
            &hole,
        ],
    );
    assert_eq!(n(&v, "/requests/in_flight"), 0, "{v}");
    assert_eq!(n(&v, "/status/200"), 1000, "{v}");
    assert_eq!(n(&v, "/errors/connect_timeout"), 1000, "{v}");
    server.shutdown();
}

/// A server that answers each request as soon as its head has come (as
/// Node does with a body it does not read), then reads and drops the
/// body; a request that does not start where the previous one ended is a
/// 400 and the connection ends.
fn early_answering_server() -> RawServer {
    RawServer::start(|mut s| {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let end = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            if !head.starts_with("POST /x HTTP/1.1\r\n") {
                send(
                    &mut s,
                    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                );
                return;
            }
            send(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: ")?.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < len {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            buf.drain(..len);
        }
    })
}

/// A response that comes before its request's body has all gone out: the
/// connection is not reused (the next request would follow a body cut
/// short, or a send still under way would be credited to it). uring-loop,
/// which receives while it sends, once reused it: the third request
/// timed out and the server saw a misframed one.
pub fn an_early_response_does_not_reuse_a_connection_still_sending(b: &[&str]) {
    let server = early_answering_server();
    let dir = temp_dir("early-response");
    let body = dir.join("body.bin");
    std::fs::write(&body, vec![b'x'; 32 << 20]).unwrap();
    let v = load(
        b,
        &[
            "-c",
            "1",
            "-n",
            "3",
            "--timeout",
            "10s",
            "--body-file",
            body.to_str().unwrap(),
            &server.url("/x"),
        ],
    );
    assert_eq!(n(&v, "/status/200"), 3, "{v}");
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    let _ = std::fs::remove_dir_all(dir);
}
