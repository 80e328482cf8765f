//! End-to-end tests of the server over real loopback sockets.
//!
//! The client side is deliberately plain `std::net::TcpStream` plus a tiny
//! response reader written here, independent of the server code and of the
//! crate's (unfinished) HTTP core, so a bug in one cannot hide a bug in the
//! other. Each test starts its own server on 127.0.0.1, port 0, and runs
//! once on each engine (io_uring and epoll): the fallback must answer as
//! the io_uring server does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{Engine, ServeOptions, ServerHandle, start};

fn server_with(engine: Engine, delay_ms: u64, idle_ms: u64) -> ServerHandle {
    let srv = start(ServeOptions {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        delay: Duration::from_millis(delay_ms),
        threads: 2,
        max_head_bytes: 8192,
        idle_timeout: Duration::from_millis(idle_ms),
        engine,
        tls: None,
    })
    .expect("server starts");
    assert_eq!(srv.engine, engine);
    srv
}

fn server(engine: Engine) -> ServerHandle {
    server_with(engine, 100, 5_000)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[derive(Debug)]
struct Resp {
    version: u8,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `s`; `buf` carries bytes read past it (pipelining).
/// Handles Content-Length, chunked, and no body (HEAD, 204, 304).
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Resp {
    let mut chunk = [0u8; 8192];
    let (version, status, headers, head_len) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(n) = r.parse(buf).expect("valid response head") {
            let headers = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect::<Vec<_>>();
            break (r.version.unwrap(), r.code.unwrap(), headers, n);
        }
        let n = read_some(s, &mut chunk).expect("read head");
        assert!(
            n > 0,
            "EOF before a complete head; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..head_len);
    let mut resp = Resp {
        version,
        status,
        headers,
        body: Vec::new(),
    };
    let mut fill = |buf: &mut Vec<u8>, want: usize| {
        while buf.len() < want {
            let n = read_some(s, &mut chunk).expect("read body");
            assert!(n > 0, "EOF in body");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    if head_request || status == 204 || status == 304 {
        return resp;
    }
    if resp.header("transfer-encoding").is_some() {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let have = buf.len();
                fill(buf, have + 1);
            };
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16)
                .expect("hex chunk size");
            buf.drain(..line_end + 2);
            fill(buf, size + 2);
            assert_eq!(&buf[size..size + 2], b"\r\n");
            resp.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                return resp;
            }
        }
    }
    let len: usize = resp
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    fill(buf, len);
    resp.body = buf.drain(..len).collect();
    resp
}

/// One read, retried when a signal interrupts it:
/// `run_foreground_stops_on_sigterm` sends SIGTERM to this process, and a
/// read blocked in another test's thread may be the one it interrupts.
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn get(s: &mut TcpStream, path: &str) -> Resp {
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(s, &mut Vec::new(), false)
}

/// Writes `raw`, reads to EOF, returns everything.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read to EOF");
    all
}

fn assert_eof(s: &mut TcpStream) {
    let mut b = [0u8; 16];
    match read_some(s, &mut b) {
        Ok(0) => {}
        // A reset is also a close (can happen if we still had unread data).
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected EOF, got {other:?}"),
    }
}

fn bar_and_foo_after_delay(engine: Engine) {
    let srv = server(engine);
    let mut s = connect(srv.addr);
    let t = Instant::now();
    let r = get(&mut s, "/bar");
    let took = t.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<h1>bar!</h1>");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(r.header("server"), Some("uringfetch"));
    assert!(
        took >= Duration::from_millis(100),
        "answered after {took:?}"
    );
    let r = get(&mut s, "/foo");
    assert_eq!(r.body, b"<h1>foo!</h1>");
    srv.shutdown();
}

fn keep_alive_two_requests(engine: Engine) {
    let srv = server(engine);
    let mut s = connect(srv.addr);
    for _ in 0..2 {
        let r = get(&mut s, "/bar?delay=0");
        assert_eq!(r.status, 200);
        assert_eq!(r.version, 1);
        assert_eq!(r.header("connection"), None);
        assert_eq!(r.body, b"<h1>bar!</h1>");
    }
    srv.shutdown();
}

fn http10_closes_like_the_article(engine: Engine) {
    let srv = server(engine);
    let all = exchange(srv.addr, b"GET /bar HTTP/1.0\r\n\r\n");
    let text = String::from_utf8(all).unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 13\r\n"));
    assert!(text.contains("Connection: close\r\n"));
    assert!(text.ends_with("\r\n\r\n<h1>bar!</h1>"));

    // HTTP/1.0 with keep-alive stays open.
    let mut s = connect(srv.addr);
    s.write_all(b"GET /foo?delay=0 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(get(&mut s, "/foo?delay=0").status, 200);
    srv.shutdown();
}

fn connection_close_honoured(engine: Engine) {
    let srv = server(engine);
    let all = exchange(
        srv.addr,
        b"GET /foo?delay=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8(all).unwrap();
    assert!(text.contains("Connection: close\r\n"));
    assert!(text.ends_with("<h1>foo!</h1>"));
    srv.shutdown();
}

fn pipelined_answered_in_order(engine: Engine) {
    let srv = server(engine);
    let mut s = connect(srv.addr);
    s.write_all(
        b"GET /foo HTTP/1.1\r\nHost: t\r\n\r\nGET /bar?delay=0 HTTP/1.1\r\nHost: t\r\n\r\nGET /status/503 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut s, &mut buf, false).body,
        b"<h1>foo!</h1>"
    );
    assert_eq!(
        read_response(&mut s, &mut buf, false).body,
        b"<h1>bar!</h1>"
    );
    assert_eq!(read_response(&mut s, &mut buf, false).status, 503);
    assert!(buf.is_empty());
    srv.shutdown();
}

fn head_has_no_body(engine: Engine) {
    let srv = server(engine);
    let all = exchange(
        srv.addr,
        b"HEAD /bar HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8(all).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 13\r\n"));
    assert!(text.ends_with("\r\n\r\n"), "{text}");
    // And keep-alive continues cleanly after a HEAD of a big body.
    let mut s = connect(srv.addr);
    s.write_all(b"HEAD /bytes/100000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, true);
    assert_eq!(r.header("content-length"), Some("100000"));
    assert_eq!(get(&mut s, "/status/201").status, 201);
    srv.shutdown();
}

fn not_found_and_index(engine: Engine) {
    let srv = server(engine);
    let mut s = connect(srv.addr);
    let r = get(&mut s, "/nope");
    assert_eq!(r.status, 404);
    let r = get(&mut s, "/");
    assert_eq!(r.status, 200);
    assert!(String::from_utf8(r.body).unwrap().contains("/chunked/N"));
    srv.shutdown();
}

fn oversized_head_gets_431(engine: Engine) {
    let srv = server(engine);
    let mut req = b"GET /bar HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20_000));
    req.extend_from_slice(b"\r\n\r\n");
    let all = exchange(srv.addr, &req);
    let text = String::from_utf8(all).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{text}"
    );
    assert!(text.contains("Connection: close\r\n"));
    srv.shutdown();
}

/// One HTTP core: the server frames requests by the client's rules. It
/// once refused `Content-Length: 5, 5`, which the client accepts (RFC 9110
/// §8.6); it took requests without `Host`, or with two (RFC 9112 §3.2: 400);
/// and it answered a long request line with 431 instead of 414.
fn framing_host_and_long_request_lines(engine: Engine) {
    let srv = server(engine);
    let mut s = connect(srv.addr);
    s.write_all(b"POST /bar?delay=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello")
        .unwrap();
    assert_eq!(read_response(&mut s, &mut Vec::new(), false).status, 200);
    s.write_all(b"POST /foo?delay=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    assert_eq!(
        read_response(&mut s, &mut Vec::new(), false).body,
        b"<h1>foo!</h1>"
    );
    for bad in [
        &b"GET /bar HTTP/1.1\r\n\r\n"[..],
        b"GET /bar HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /bar HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        b"POST /bar HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello",
    ] {
        let text = String::from_utf8(exchange(srv.addr, bad)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?}: {text}",
            String::from_utf8_lossy(bad)
        );
    }
    // HTTP/1.0 needs no Host.
    let text = String::from_utf8(exchange(srv.addr, b"GET /bar?delay=0 HTTP/1.0\r\n\r\n")).unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    // A request line longer than --max-head-bytes (8192 here) is 414.
    let mut req = b"GET /".to_vec();
    req.extend(std::iter::repeat_n(b'a', 10_000));
    req.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8(exchange(srv.addr, &req)).unwrap();
    assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text}");
    srv.shutdown();
}

/// `--max-head-bytes` outside 1 KiB..1 MiB is refused before anything runs.
#[test]
fn head_limit_is_bounded() {
    for bad in [0, 1023, (1 << 20) + 1, usize::MAX] {
        let e = start(ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_head_bytes: bad,
            ..ServeOptions::default()
        })
        .err()
        .expect("refused");
        assert!(e.to_string().contains("1 KiB to 1 MiB"), "{bad}: {e}");
    }
}

fn garbage_gets_400(engine: Engine) {
    let srv = server(engine);
    let all = exchange(srv.addr, b"\x16\x03\x01garbage\r\n\r\n");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    srv.shutdown();
}

fn idle_connection_is_closed(engine: Engine) {
    let srv = server_with(engine, 100, 300);
    let mut s = connect(srv.addr);
    let t = Instant::now();
    assert_eof(&mut s);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");

    // A head dribbled byte by byte is bounded by the same clock.
    let mut s = connect(srv.addr);
    let t = Instant::now();
    for b in b"GET /bar HTTP/1.1\r\n".iter().cycle() {
        if s.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "dribbler kept for {:?}",
        t.elapsed()
    );
    srv.shutdown();
}

fn chunked_2500_framing(engine: Engine) {
    let srv = server(engine);
    let all = exchange(
        srv.addr,
        b"GET /chunked/2500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..split]);
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(!head.contains("Content-Length"));
    let body = &all[split..];
    let mut expect = Vec::new();
    for size in [1000usize, 1000, 500] {
        expect.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        expect.extend((0..size).map(|i| b'a' + (i % 26) as u8));
        expect.extend_from_slice(b"\r\n");
    }
    expect.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(body, &expect[..]);

    // Decoded through the reader, on a keep-alive connection, then a follow-up.
    let mut s = connect(srv.addr);
    assert_eq!(get(&mut s, "/chunked/2500").body.len(), 2500);
    assert_eq!(get(&mut s, "/chunked/0").body.len(), 0);
    assert_eq!(get(&mut s, "/chunked/70000").body.len(), 70000);
    assert_eq!(get(&mut s, "/bar?delay=0").status, 200);
    srv.shutdown();
}

fn status_and_bytes_routes(engine: Engine) {
    let srv = server(engine);
    let mut s = connect(srv.addr);
    let r = get(&mut s, "/status/503");
    assert_eq!(r.status, 503);
    assert_eq!(r.body, b"503 Service Unavailable\n");
    let r = get(&mut s, "/status/204");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(get(&mut s, "/status/100").status, 400);
    let r = get(&mut s, "/bytes/5");
    assert_eq!(r.body, b"abcde");
    assert_eq!(get(&mut s, "/bytes/1000000").body.len(), 1_000_000);
    assert_eq!(get(&mut s, "/bytes/16777217").status, 400);
    let t = Instant::now();
    assert_eq!(get(&mut s, "/bytes/3?delay=150").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    srv.shutdown();
}

fn close_route_closes(engine: Engine) {
    let srv = server(engine);
    let all = exchange(srv.addr, b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8(all).unwrap();
    assert!(text.contains("Connection: close\r\n"));
    assert!(text.ends_with("<h1>bar!</h1>"));
    srv.shutdown();
}

fn request_bodies_are_discarded(engine: Engine) {
    let srv = server(engine);
    let mut s = connect(srv.addr);
    s.write_all(b"POST /bar?delay=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    assert_eq!(read_response(&mut s, &mut Vec::new(), false).status, 200);
    // Body arriving later than its head, in pieces.
    s.write_all(b"POST /foo?delay=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    s.write_all(&[b'x'; 6000]).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    s.write_all(&[b'x'; 4000]).unwrap();
    assert_eq!(
        read_response(&mut s, &mut Vec::new(), false).body,
        b"<h1>foo!</h1>"
    );
    // Expect: 100-continue gets its interim answer first.
    s.write_all(b"PUT /bar?delay=0 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut s, &mut buf, true).status, 100);
    s.write_all(b"abc").unwrap();
    assert_eq!(read_response(&mut s, &mut buf, false).status, 200);
    // Chunked request bodies are refused with 411 and a close.
    let all = exchange(
        srv.addr,
        b"POST /bar HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 411 Length Required\r\n"));
    srv.shutdown();
}

fn client_vanishing_mid_answer_is_harmless(engine: Engine) {
    let srv = server(engine);
    for _ in 0..5 {
        let mut s = connect(srv.addr);
        s.write_all(b"GET /bytes/16777216 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut b = [0u8; 1000];
        let _ = s.read(&mut b);
        drop(s);
        let mut s = connect(srv.addr);
        s.write_all(b"GET /bar HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        drop(s); // gone while the server sleeps
    }
    let mut s = connect(srv.addr);
    assert_eq!(get(&mut s, "/foo?delay=0").status, 200);
    srv.shutdown();
}

fn concurrent_200_bar(engine: Engine) {
    let srv = server(engine);
    let t = Instant::now();
    let mut conns: Vec<TcpStream> = (0..200).map(|_| connect(srv.addr)).collect();
    for s in &mut conns {
        s.write_all(b"GET /bar?delay=200 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    for s in &mut conns {
        let r = read_response(s, &mut Vec::new(), false);
        assert_eq!(r.body, b"<h1>bar!</h1>");
    }
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(200));
    assert!(
        took < Duration::from_secs(3),
        "200 concurrent took {took:?}"
    );
    srv.shutdown();
}

fn shutdown_is_prompt_with_idle_connections(engine: Engine) {
    let srv = server_with(engine, 100, 60_000);
    let addr = srv.addr;
    let mut idle: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
    // One mid-delay, one mid-head.
    idle[0]
        .write_all(b"GET /bar?delay=30000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    idle[1].write_all(b"GET /bar HTT").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    srv.shutdown();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    for s in &mut idle {
        assert_eof(s);
    }
    assert!(TcpStream::connect(addr).is_err(), "listener still open");
}

// ---- HTTPS: the same loop over TLS (`tls::TlsStream`) ----
//
// Real clients: curl and Python's ssl module (OpenSSL), and a rustls client
// that stops mid-handshake.

const INSTALL_CURL: &str = "apt-get install -y curl";
const INSTALL_PYTHON: &str = "apt-get install -y python3";

/// A directory holding a certificate for clients, removed on drop.
struct CertDir(std::path::PathBuf);

impl CertDir {
    fn file(&self) -> String {
        self.0.join("cert.pem").display().to_string()
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `server_with` over HTTPS, with a fresh self-signed certificate; and a
/// file holding that certificate for `--cacert`.
fn tls_server_with(engine: Engine, delay_ms: u64, idle_ms: u64) -> (ServerHandle, CertDir) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let made = super::self_signed(&[]).expect("a certificate");
    let dir = CertDir(std::env::temp_dir().join(format!(
        "uringfetch-tls-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.file(), &made.cert_pem).unwrap();
    let srv = start(ServeOptions {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        delay: Duration::from_millis(delay_ms),
        threads: 2,
        max_head_bytes: 8192,
        idle_timeout: Duration::from_millis(idle_ms),
        engine,
        tls: Some(made.config().expect("a configuration")),
    })
    .expect("server starts");
    assert_eq!(srv.engine, engine);
    assert!(srv.tls);
    (srv, dir)
}

/// Runs curl (quiet, errors shown, 10 s at most); fails the test with the
/// line that installs it if it is missing, and with its stderr if it fails.
fn curl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl cannot run ({e}): install it with `{INSTALL_CURL}`"));
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Reads until the server closes (EOF or reset); everything it sent.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match read_some(s, &mut b) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("expected the server to close, got {e} after {all:?}"),
        }
    }
}

/// curl over HTTPS gets byte for byte what it gets over HTTP: heads,
/// bodies small and large, chunked, errors and `Connection: close`.
fn tls_answers_as_plain_http_does(engine: Engine) {
    let plain = server(engine);
    let (tls, cert) = tls_server_with(engine, 100, 5_000);
    let cacert = cert.file();
    let foo = curl(&["--cacert", &cacert, &format!("https://{}/foo", tls.addr)]);
    assert_eq!(foo, b"<h1>foo!</h1>");
    for path in [
        "/foo",
        "/bar?delay=0",
        "/",
        "/status/503",
        "/nope",
        "/bytes/100000",
        "/chunked/70000",
        "/close",
    ] {
        let over_http = curl(&["-i", &format!("http://{}{path}", plain.addr)]);
        let over_tls = curl(&[
            "-i",
            "--http1.1",
            "--cacert",
            &cacert,
            &format!("https://{}{path}", tls.addr),
        ]);
        assert!(over_http.starts_with(b"HTTP/1.1 "), "{path}");
        assert!(
            over_tls == over_http,
            "{path}: over TLS {:?}",
            String::from_utf8_lossy(&over_tls)
        );
    }
    plain.shutdown();
    tls.shutdown();
}

/// curl over HTTP/2 (h2c with prior knowledge, and h2 by ALPN over TLS)
/// gets the status and body bytes HTTP/1.1 gets, and the answers say
/// HTTP/2; two delayed answers fetched in parallel take one delay.
fn h2_answers_as_http1_does(engine: Engine) {
    let plain = server(engine);
    let (tls, cert) = tls_server_with(engine, 100, 5_000);
    let cacert = cert.file();
    let w = ["-w", "\n%{http_code} %{http_version}"];
    for path in [
        "/foo",
        "/bar?delay=0",
        "/",
        "/status/503",
        "/status/204",
        "/nope",
        "/bytes/100000",
        "/chunked/70000",
        "/close",
    ] {
        let over_http1 = curl(&[&w[..], &[&format!("http://{}{path}", plain.addr)]].concat());
        let h2c = curl(
            &[
                &w[..],
                &[
                    "--http2-prior-knowledge",
                    &format!("http://{}{path}", plain.addr),
                ],
            ]
            .concat(),
        );
        let h2 = curl(
            &[
                &w[..],
                &["--cacert", &cacert, &format!("https://{}{path}", tls.addr)],
            ]
            .concat(),
        );
        let as_h2 = |v: &[u8]| String::from_utf8_lossy(v).replace(" 1.1", " 2");
        assert!(over_http1.ends_with(b" 1.1"), "{path}");
        assert_eq!(String::from_utf8_lossy(&h2c), as_h2(&over_http1), "{path}");
        assert_eq!(String::from_utf8_lossy(&h2), as_h2(&over_http1), "{path}");
    }
    // Two delayed answers, multiplexed: one delay.
    let t = Instant::now();
    let out = curl(&[
        "--parallel",
        "--parallel-immediate",
        "--http2-prior-knowledge",
        &format!("http://{}/foo?delay=500", plain.addr),
        &format!("http://{}/bar?delay=500", plain.addr),
    ]);
    let took = t.elapsed();
    // Both come after the same delay, in either order.
    let out = String::from_utf8_lossy(&out);
    assert!(
        out == "<h1>foo!</h1><h1>bar!</h1>" || out == "<h1>bar!</h1><h1>foo!</h1>",
        "{out}"
    );
    assert!(took < Duration::from_millis(900), "{took:?}");
    plain.shutdown();
    tls.shutdown();
}

/// Several requests on one TLS connection: curl connects once for three
/// URLs (and `localhost` is a name the certificate covers).
fn tls_keep_alive_reuses_the_connection(engine: Engine) {
    let (tls, cert) = tls_server_with(engine, 100, 5_000);
    let port = tls.addr.port();
    let out = curl(&[
        "--cacert",
        &cert.file(),
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\n",
        &format!("https://localhost:{port}/foo"),
        &format!("https://localhost:{port}/bar?delay=0"),
        &format!("https://localhost:{port}/bytes/70000"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out), "200 1\n200 0\n200 0\n");

    // A 1 MiB request body is read (and discarded) through TLS, and the
    // connection goes on.
    let body = cert.0.join("body");
    std::fs::write(&body, vec![b'x'; 1 << 20]).unwrap();
    let out = curl(&[
        "--cacert",
        &cert.file(),
        "--data-binary",
        &format!("@{}", body.display()),
        "-w",
        " %{http_code} %{num_connects}\n",
        &format!("https://localhost:{port}/bar?delay=0"),
        "-w",
        " %{http_code} %{num_connects}\n",
        &format!("https://localhost:{port}/foo?delay=0"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "<h1>bar!</h1> 200 1\n<h1>foo!</h1> 200 0\n"
    );
    tls.shutdown();
}

/// Python's ssl client (OpenSSL), over TLS 1.2 and 1.3: ALPN http/1.1,
/// two pipelined requests answered on one connection, a `close_notify`
/// before the server closes (the read fails on a bare EOF), and the
/// session resumed by a second connection.
fn tls_sessions_resume_and_close_with_close_notify(engine: Engine) {
    const SCRIPT: &str = r#"
import socket, ssl, sys
host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["http/1.1"])
    def fetch(session):
        raw = socket.create_connection((host, port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname=host, session=session,
                            suppress_ragged_eofs=False)
        s.sendall(b"GET /bar?delay=0 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /foo?delay=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        out = (s.version(), s.selected_alpn_protocol(), s.session_reused,
               data.count(b"HTTP/1.1 200 OK"), data.endswith(b"<h1>foo!</h1>"))
        session = s.session
        s.close()
        return out, session
    first, session = fetch(None)
    second, _ = fetch(session)
    print(*first, *second)
"#;
    let (tls, cert) = tls_server_with(engine, 100, 5_000);
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            "127.0.0.1",
            &tls.addr.port().to_string(),
            &cert.file(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("python3 cannot run ({e}): install it with `{INSTALL_PYTHON}`"));
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "TLSv1.2 http/1.1 False 2 True TLSv1.2 http/1.1 True 2 True\n\
         TLSv1.3 http/1.1 False 2 True TLSv1.3 http/1.1 True 2 True\n"
    );
    tls.shutdown();
}

/// The handshake is part of reading the first head, under the same idle
/// clock: a client that connects and says nothing, sends part of a
/// ClientHello, dribbles one, or stops after the ClientHello (a real one,
/// from rustls) is cut off after the idle timeout.
fn tls_handshake_is_bounded_by_the_idle_timeout(engine: Engine) {
    let (tls, _cert) = tls_server_with(engine, 100, 300);
    let cut_off_in_time = |s: &mut TcpStream, what: &str| {
        let t = Instant::now();
        read_until_closed(s);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "{what}: closed after {took:?}"
        );
    };

    let mut s = connect(tls.addr);
    let t = Instant::now();
    assert_eof(&mut s);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");

    // A handshake record header promising 512 bytes, and 10 of them.
    let mut s = connect(tls.addr);
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    s.write_all(&[0x01; 10]).unwrap();
    cut_off_in_time(&mut s, "part of a ClientHello");

    // The same, a byte every 20 ms.
    let mut s = connect(tls.addr);
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    let t = Instant::now();
    while s.write_all(&[0x01]).is_ok() && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "dribbler kept for {:?}",
        t.elapsed()
    );

    // A real ClientHello, then silence: the server answers with its
    // flight and waits for the client's Finished that never comes.
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut client =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "localhost".try_into().unwrap())
            .unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    let mut s = connect(tls.addr);
    s.write_all(&hello).unwrap();
    let t = Instant::now();
    let answer = read_until_closed(&mut s);
    assert_eq!(
        answer.first(),
        Some(&0x16),
        "a handshake record: {answer:?}"
    );
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");

    // And the server still serves.
    let out = curl(&[
        "--cacert",
        &_cert.file(),
        &format!("https://{}/foo?delay=0", tls.addr),
    ]);
    assert_eq!(out, b"<h1>foo!</h1>");
    tls.shutdown();
}

/// 100 TLS connections at once, each waiting 300 ms for its answer, are
/// served together (curl's parallel transfers, a connection each).
fn tls_concurrent_connections(engine: Engine) {
    let (tls, cert) = tls_server_with(engine, 300, 5_000);
    let cacert = cert.file();
    let urls: Vec<String> = (0..100)
        .map(|i| format!("https://127.0.0.1:{}/bar?n={i}", tls.addr.port()))
        .collect();
    let mut args = vec![
        "--cacert",
        &cacert,
        "-Z",
        "--parallel-immediate",
        "--parallel-max",
        "100",
        "-w",
        "%{http_code} %{size_download}\n",
    ];
    for url in &urls {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let t = Instant::now();
    let out = String::from_utf8(curl(&args)).unwrap();
    let took = t.elapsed();
    assert_eq!(out.lines().filter(|l| *l == "200 13").count(), 100, "{out}");
    assert!(
        took < Duration::from_secs(5),
        "100 concurrent took {took:?}"
    );
    tls.shutdown();
}

/// Plain HTTP, garbage and a malformed ClientHello on the TLS port end
/// their own connections at once (with an alert, never an HTTP answer),
/// and the server goes on serving others.
fn tls_port_closes_what_is_not_tls(engine: Engine) {
    let (tls, cert) = tls_server_with(engine, 100, 10_000);
    let bad: [&[u8]; 4] = [
        b"GET /foo HTTP/1.1\r\nHost: t\r\n\r\n",
        b"\x00\x01\x02garbage\r\n\r\n",
        // A handshake record holding a ClientHello of 0 bytes.
        b"\x16\x03\x01\x00\x04\x01\x00\x00\x00",
        // A record longer than TLS allows.
        b"\x16\x03\x01\xff\xff",
    ];
    for _ in 0..10 {
        for input in bad {
            let mut s = connect(tls.addr);
            s.write_all(input).unwrap();
            let t = Instant::now();
            let answer = read_until_closed(&mut s);
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{input:?}: open for {:?}",
                t.elapsed()
            );
            assert!(!answer.starts_with(b"HTTP"), "{input:?}: {answer:?}");
        }
    }
    let out = curl(&[
        "--cacert",
        &cert.file(),
        &format!("https://{}/bar?delay=0", tls.addr),
    ]);
    assert_eq!(out, b"<h1>bar!</h1>");
    tls.shutdown();
}

#[test]
fn run_foreground_stops_on_sigterm() {
    // run_foreground prints a port-0 address we cannot read from here, so
    // pick a free port first (tiny reuse race, acceptable on loopback).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let opts = ServeOptions {
        addr,
        delay: Duration::from_millis(10),
        threads: 1,
        max_head_bytes: 8192,
        idle_timeout: Duration::from_secs(5),
        engine: Engine::Uring,
        tls: None,
    };
    let fg = std::thread::spawn(move || super::run_foreground(opts, None));
    // Accepting implies the signal handlers are installed (they come first),
    // so the SIGTERM below cannot kill the test process.
    let t = Instant::now();
    let mut s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(_) if t.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("server never came up: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(get(&mut s, "/foo").body, b"<h1>foo!</h1>");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    fg.join().unwrap().unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eof(&mut s);
}

/// Manual load check (not run by default): 10,000 concurrent `/bar` with a
/// one-second delay. The client runs in a child process (this same test
/// binary, running [`ten_thousand_client`]) so that server and client each
/// need only ~10,000 fds. Needs `ulimit -n` >= 10100. Run with
/// `cargo test --release --lib server::tests::ten_thousand_bar -- --ignored --nocapture`.
#[test]
#[ignore]
fn ten_thousand_bar() {
    let srv = start(ServeOptions {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        delay: Duration::from_secs(1),
        threads: 2,
        max_head_bytes: 8192,
        idle_timeout: Duration::from_secs(60),
        engine: Engine::Uring,
        tls: None,
    })
    .unwrap();
    let rss_before = vm_hwm_kib();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "server::tests::ten_thousand_client",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("URINGFETCH_LOAD_ADDR", srv.addr.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().filter(|l| l.starts_with("load:")) {
        println!("{line}");
    }
    println!("server threads CPU time: {:?}", server_threads_cpu());
    println!(
        "server process peak RSS: {} KiB before, {} KiB after",
        rss_before,
        vm_hwm_kib()
    );
    let t = Instant::now();
    srv.shutdown();
    println!("shutdown took {:?}", t.elapsed());
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Peak resident set size of this process (VmHWM), KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of this process's `uringfetch-server-*` threads, from /proc
/// (in clock ticks, 100 Hz on Linux), for the manual load report.
fn server_threads_cpu() -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ..." then utime, stime are fields 14 and 15.
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !comm.contains("uringfetch-serv") {
            continue;
        }
        let f: Vec<&str> = rest.split(' ').collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Duration::from_millis(ticks * 10)
}

/// Client half of [`ten_thousand_bar`]; does nothing unless that test set
/// `URINGFETCH_LOAD_ADDR`.
#[test]
#[ignore]
fn ten_thousand_client() {
    const N: usize = 10_000;
    let Ok(addr) = std::env::var("URINGFETCH_LOAD_ADDR") else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let t0 = Instant::now();
        let mut tasks = Vec::with_capacity(N);
        for _ in 0..N {
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let sent = Instant::now();
                s.write_all(b"GET /bar HTTP/1.0\r\n\r\n")
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                let mut v = Vec::new();
                s.read_to_end(&mut v)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if v.starts_with(b"HTTP/1.0 200") && v.ends_with(b"<h1>bar!</h1>") {
                    Ok((sent - t0, sent.elapsed()))
                } else {
                    Err(format!("bad answer: {:?}", String::from_utf8_lossy(&v)))
                }
            }));
        }
        let (mut ok, mut last_sent) = (0, Duration::ZERO);
        let mut latencies = Vec::with_capacity(N);
        let mut errors = std::collections::BTreeMap::<String, usize>::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok((sent, latency)) => {
                    ok += 1;
                    last_sent = last_sent.max(sent);
                    latencies.push(latency);
                }
                Err(e) => *errors.entry(e).or_default() += 1,
            }
        }
        latencies.sort();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "load: {ok}/{N} answered; last request sent at {last_sent:?}; total {:?}",
            t0.elapsed()
        );
        println!(
            "load: latency min {:?} p50 {:?} p99 {:?} max {:?}",
            pct(0.0),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        println!("load: errors {errors:?}");
        assert_eq!(ok, N);
    });
}

/// Runs each of these tests once per engine, as `uring::NAME` and `epoll::NAME`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() { super::$name(super::Engine::Uring) } )*
        }
        mod epoll {
            $( #[test] fn $name() { super::$name(super::Engine::Epoll) } )*
        }
    };
}

on_both_engines!(
    bar_and_foo_after_delay,
    keep_alive_two_requests,
    http10_closes_like_the_article,
    connection_close_honoured,
    pipelined_answered_in_order,
    head_has_no_body,
    not_found_and_index,
    oversized_head_gets_431,
    framing_host_and_long_request_lines,
    garbage_gets_400,
    idle_connection_is_closed,
    chunked_2500_framing,
    status_and_bytes_routes,
    close_route_closes,
    request_bodies_are_discarded,
    client_vanishing_mid_answer_is_harmless,
    concurrent_200_bar,
    shutdown_is_prompt_with_idle_connections,
    tls_answers_as_plain_http_does,
    h2_answers_as_http1_does,
    tls_keep_alive_reuses_the_connection,
    tls_sessions_resume_and_close_with_close_notify,
    tls_handshake_is_bounded_by_the_idle_timeout,
    tls_concurrent_connections,
    tls_port_closes_what_is_not_tls,
);
