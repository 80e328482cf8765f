//! HTTP/2 on every backend against peers nobody here wrote: nginx's
//! `http2` (h2c with prior knowledge, and h2 over TLS by ALPN), nghttpd
//! (nghttp2), and a server on Python's h2 package made to misbehave
//! (`h2_server.py`): bytes as curl gets them, streams within the server's
//! limit, counts that add up, GOAWAY retried, resets counted by code,
//! floods and malformed servers failed with the reason, in bounded time.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::load::{load_on as load, n};
use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);
pub const INSTALL_NGHTTP2: &str = "apt-get install -y nghttp2-server nghttp2-client";
pub const INSTALL_PYTHON_H2: &str = "apt-get install -y python3-h2";

/// nghttpd (h2c only) serving a directory with `hello.txt` and `big` (1 MB).
fn nghttpd() -> Peer {
    let dir = temp_dir("nghttpd");
    std::fs::write(dir.join("hello.txt"), b"hello from nghttpd\n").unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(dir.join("big"), big).unwrap();
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new("nghttpd")
            .args(["--no-tls", "-d"])
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nghttpd is missing ({e}): install it with `{INSTALL_NGHTTP2}`")
            });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut peer = Peer {
            child,
            addr,
            dir: Some(dir.clone()),
        };
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if peer.child.try_wait().ok().flatten().is_some() {
                break;
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return peer;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peer.dir = None;
    }
    panic!("nghttpd started on none of 5 free ports");
}

/// nginx with `http2`: h2c (prior knowledge) on `addr`, and with `tls`
/// h2 and HTTP/1.1 by ALPN on `tls_port`; `/bar` (4 bytes), `/big`
/// (100,000 bytes), `/sleep` (1 s), `/limited` (3 requests a connection).
struct NginxH2 {
    peer: Peer,
    tls_port: u16,
}

fn nginx_h2(tls: Option<&TlsFiles>) -> NginxH2 {
    for _ in 0..5 {
        let dir = temp_dir("nginx-h2");
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("bar"), b"bar\n").unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(root.join("big"), big).unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let ssl = tls.map_or(String::new(), |f| {
            format!(
                "listen 127.0.0.1:{tls_port} ssl http2; ssl_certificate {}; \
                 ssl_certificate_key {}; ssl_protocols TLSv1.2 TLSv1.3;",
                f.cert.display(),
                f.key.display()
            )
        });
        let conf = nginx_conf(
            &dir,
            &format!(
                r#"    http2_max_concurrent_streams 16;
    server {{
        listen 127.0.0.1:{port} http2 backlog=4096;
        {ssl}
        root {root};
        location = /sleep {{ echo_sleep 1; echo "slept"; }}
        location = /limited {{ keepalive_requests 3; alias {root}/bar; }}
        location = /upload {{ echo_read_request_body; echo $request_body_file$request_length; }}
    }}"#,
                root = root.display(),
            ),
        );
        let child = spawn_nginx(&find_nginx(), &dir, &conf);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut peer = Peer {
            child,
            addr,
            dir: Some(dir),
        };
        let ports: Vec<u16> = if tls.is_some() {
            vec![port, tls_port]
        } else {
            vec![port]
        };
        let start = std::time::Instant::now();
        loop {
            if peer.child.try_wait().ok().flatten().is_some() {
                break;
            }
            if ports
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                return NginxH2 { peer, tls_port };
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(peer);
    }
    panic!("nginx with http2 started on none of 5 sets of free ports");
}

/// `h2_server.py MODE` (Debian's python3 with python3-h2).
fn python_h2(mode: &str) -> Peer {
    python_h2_saying(mode, None).0
}

/// `h2_server.py MODE`, over TLS with `cert_key`, and the lines it
/// prints after its port (what the client sent as it closed).
fn python_h2_saying(
    mode: &str,
    cert_key: Option<(&std::path::Path, &std::path::Path)>,
) -> (Peer, std::sync::mpsc::Receiver<String>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/h2_server.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args([script, mode]);
    if let Some((cert, key)) = cert_key {
        cmd.arg(cert).arg(key);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("python3 is missing ({e}): install it with `{INSTALL_PYTHON_H2}`")
        });
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| {
        panic!(
            "h2_server.py {mode} printed no port (is python3-h2 installed? `{INSTALL_PYTHON_H2}`)"
        )
    });
    // The rest is read as it comes, so the server never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (
        Peer {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            dir: None,
        },
        rx,
    )
}

/// The server's lines until `closed` of them say a connection closed
/// (or 10 s pass).
fn lines_until_closed(rx: &std::sync::mpsc::Receiver<String>, closed: usize) -> Vec<String> {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&String| l.starts_with("closed"))
        .count()
        < closed
    {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    lines
}

const H2C: &str = "--http2-prior-knowledge";

fn h2_counts(v: &Value, connections: u64, streams: u64) {
    assert_eq!(v["protocol"], "h2", "{v}");
    assert_eq!(v["http"]["version"], "HTTP/2", "{v}");
    assert_eq!(n(v, "/h2/connections"), connections, "{v}");
    assert_eq!(n(v, "/h2/streams_per_connection"), streams, "{v}");
}

/// `get` over h2c and h2 gives the bytes the servers serve, and says HTTP/2.
pub fn bodies_are_byte_exact(b: &[&str]) {
    let files = TlsFiles::new();
    let nginx = nginx_h2(Some(&files));
    let url = format!("http://{}/big", nginx.peer.addr);
    // What nginx serves (curl would need --http2-prior-knowledge, which
    // Debian's curl may lack): the file's bytes.
    let want: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = uringfetch(
        &[&["get", "-s", H2C][..], b, &[url.as_str()]].concat(),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, want);
    let https = format!("https://localhost:{}/big", nginx.tls_port);
    let out = uringfetch(
        &[
            &["get", "-s", "-i", "--http2", "--cacert", files.ca()][..],
            b,
            &[https.as_str()],
        ]
        .concat(),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout.starts_with(b"HTTP/2 200\r\n"),
        "{}",
        stdout(&out)
    );
    assert!(out.stdout.ends_with(&want), "{}", stderr(&out));
    let ng = nghttpd();
    let url = format!("http://{}/hello.txt", ng.addr);
    let out = uringfetch(
        &[&["get", "-s", H2C][..], b, &[url.as_str()]].concat(),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from nghttpd\n");
}

/// `--streams` requests in flight on each of `-c` connections, up to the
/// server's limit (nginx here allows 16), and every count adds up.
pub fn streams_multiply_on_few_connections(b: &[&str]) {
    let nginx = nginx_h2(None);
    let url = format!("http://{}/bar", nginx.peer.addr);
    let v = load(b, &[H2C, "-c", "3", "--streams", "8", "-n", "600", &url]);
    assert_eq!(n(&v, "/requests/completed"), 600, "{v}");
    assert_eq!(n(&v, "/connections_opened"), 3, "{v}");
    h2_counts(&v, 3, 8);
    // More streams than nginx allows: capped at its 16, nothing refused.
    let v = load(b, &[H2C, "-c", "2", "--streams", "64", "-n", "400", &url]);
    assert_eq!(n(&v, "/requests/completed"), 400, "{v}");
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    let ng = nghttpd();
    let url = format!("http://{}/big", ng.addr);
    let v = load(b, &[H2C, "-c", "2", "--streams", "10", "-n", "60", &url]);
    assert_eq!(n(&v, "/requests/completed"), 60, "{v}");
    assert!(n(&v, "/bytes/read") > 60_000_000, "{v}");
    h2_counts(&v, 2, 10);
}

/// Ten 1 s requests on one connection with ten streams take about 1 s.
pub fn streams_run_at_once(b: &[&str]) {
    let nginx = nginx_h2(None);
    let url = format!("http://{}/sleep", nginx.peer.addr);
    let v = load(b, &[H2C, "-c", "1", "--streams", "10", "-n", "10", &url]);
    assert_eq!(n(&v, "/requests/completed"), 10, "{v}");
    let took = v["duration_s"].as_f64().unwrap();
    assert!(
        (1.0..1.9).contains(&took),
        "10 streams of 1 s took {took} s: {v}"
    );
}

/// An open loop (`-q`) opens each stream at its time, and a `-z` run
/// counts what it cut off in flight: the counts add up either way.
pub fn open_loop_and_duration_runs_add_up(b: &[&str]) {
    let nginx = nginx_h2(None);
    let url = format!("http://{}/bar", nginx.peer.addr);
    let v = load(
        b,
        &[
            H2C,
            "-c",
            "2",
            "--streams",
            "8",
            "-q",
            "400",
            "-n",
            "200",
            &url,
        ],
    );
    assert_eq!(n(&v, "/requests/completed"), 200, "{v}");
    let took = v["duration_s"].as_f64().unwrap();
    assert!(
        (0.4..1.5).contains(&took),
        "200 requests at 400/s took {took} s: {v}"
    );
    let v = load(b, &[H2C, "-c", "2", "--streams", "8", "-z", "500ms", &url]);
    assert!(n(&v, "/requests/completed") > 100, "{v}");
    h2_counts(&v, 2, 8);
}

/// `load --http2` of 200 requests on 2 connections × 4 streams, trusting
/// `ca`: all answered; the report.
pub fn load_200_over_tls(b: &[&str], ca: &str, url: &str) -> Value {
    let v = load(
        b,
        &[
            "--http2",
            "--cacert",
            ca,
            "-c",
            "2",
            "--streams",
            "4",
            "-n",
            "200",
            url,
        ],
    );
    assert_eq!(n(&v, "/requests/completed"), 200, "{v}");
    v
}

/// Over TLS, `--http2` speaks h2 where the server offers it, else the
/// HTTP/1.1 it picks, and the report says which.
pub fn alpn_picks_the_protocol(b: &[&str]) {
    let files = TlsFiles::new();
    let nginx = nginx_h2(Some(&files));
    let url = format!("https://localhost:{}/bar", nginx.tls_port);
    let v = load_200_over_tls(b, files.ca(), &url);
    h2_counts(&v, 2, 4);
    let h1 = nginx_tls(&files);
    let url = format!("https://localhost:{}/bar", h1.tls_port);
    let v = load_200_over_tls(b, files.ca(), &url);
    assert_eq!(v["protocol"], "h1", "{v}");
    assert!(v["h2"].is_null(), "{v}");
    // The text run says so too, and that --streams did nothing.
    let args = [
        "--http2",
        "--cacert",
        files.ca(),
        "--streams",
        "4",
        "-n",
        "4",
        &url,
    ];
    let out = uringfetch(&[&["load"], b, &args[..]].concat(), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no server chose HTTP/2 (ALPN)")
            && stderr(&out).contains("--streams did nothing"),
        "{}",
        stderr(&out)
    );
}

/// A GOAWAY after five responses: the streams above its last id go to a
/// new connection, nothing fails.
pub fn goaway_retries_on_a_new_connection(b: &[&str]) {
    let server = python_h2("goaway");
    let url = format!("http://{}/", server.addr);
    let v = load(b, &[H2C, "-c", "2", "--streams", "4", "-n", "60", &url]);
    assert_eq!(n(&v, "/requests/completed"), 60, "{v}");
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    assert!(n(&v, "/h2/goaways") >= 10, "{v}");
    assert!(n(&v, "/connections_opened") >= 12, "{v}");
}

/// Every other stream reset: counted by its code, the rest answered.
pub fn resets_are_counted_by_code(b: &[&str]) {
    let server = python_h2("rst-every-other");
    let url = format!("http://{}/", server.addr);
    let v = load(b, &[H2C, "-c", "1", "--streams", "4", "-n", "40", &url]);
    assert_eq!(n(&v, "/requests/completed"), 20, "{v}");
    assert_eq!(n(&v, "/errors/stream_reset"), 20, "{v}");
    assert_eq!(n(&v, "/h2/stream_resets/INTERNAL_ERROR"), 20, "{v}");
}

/// What a server may frame as it likes arrives whole: an interim 103,
/// a 40 KB head in HEADERS and CONTINUATIONs, padded DATA, trailers.
pub fn framing_variants_arrive_whole(b: &[&str]) {
    let server = python_h2("framing");
    let url = format!("http://{}/", server.addr);
    let out = uringfetch(
        &[&["get", "-s", "-i", H2C][..], b, &[url.as_str()]].concat(),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/2 200\r\n"), "{text}");
    assert_eq!(text.matches("x-big-").count(), 100, "{text}");
    assert!(text.ends_with("\r\n\r\nframing ok\n"), "{text}");
    let v = load(b, &[H2C, "-c", "2", "--streams", "4", "-n", "40", &url]);
    assert_eq!(n(&v, "/requests/completed"), 40, "{v}");
    assert_eq!(n(&v, "/status/200"), 40, "{v}");
}

/// Every third request refused (REFUSED_STREAM): the server did not
/// process it, so it goes again (RFC 9113 §8.7) and nothing fails.
pub fn refused_streams_are_sent_again(b: &[&str]) {
    let server = python_h2("refuse-every-third");
    let url = format!("http://{}/", server.addr);
    let v = load(b, &[H2C, "-c", "1", "--streams", "4", "-n", "30", &url]);
    assert_eq!(n(&v, "/requests/completed"), 30, "{v}");
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    // 44 requests reached the server: 14 refused (the 3rd, 6th, ... 42nd), 30 answered.
    assert_eq!(n(&v, "/h2/stream_resets/REFUSED_STREAM"), 14, "{v}");
    assert_eq!(n(&v, "/retries"), 14, "{v}");
}

/// A server that pings its idle connections and closes those whose ACK
/// does not come within 200 ms: a backend that reads while it waits
/// (uring-loop, epoll-loop) answers at once and keeps its connection;
/// the others answer at their next request, and their closed connection
/// is replaced. Nothing fails either way.
pub fn pings_on_idle_connections_are_answered(b: &[&str]) {
    let server = python_h2("ping-idle");
    let url = format!("http://{}/", server.addr);
    let v = load(b, &[H2C, "-c", "1", "-q", "2", "-n", "4", &url]);
    assert_eq!(n(&v, "/requests/completed"), 4, "{v}");
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    if b.contains(&"uring-loop") || b.contains(&"epoll-loop") {
        assert_eq!(n(&v, "/connections_opened"), 1, "{v}");
    }
}

/// MAX_CONCURRENT_STREAMS 1 and 100-byte windows: one stream at a time,
/// and a 200 KB upload goes out as the server opens its windows.
pub fn tight_limits_are_respected(b: &[&str]) {
    let server = python_h2("max-streams-1");
    let url = format!("http://{}/", server.addr);
    let v = load(b, &[H2C, "-c", "2", "--streams", "8", "-n", "60", &url]);
    assert_eq!(n(&v, "/requests/completed"), 60, "{v}");
    assert_eq!(n(&v, "/requests/errors"), 0, "refused streams: {v}");
    assert_eq!(n(&v, "/h2/peak_streams"), 1, "{v}");
    let server = python_h2("tiny-window");
    let dir = temp_dir("h2-upload");
    let body = dir.join("body");
    std::fs::write(&body, vec![b'u'; 200_000]).unwrap();
    let at = format!("@{}", body.display());
    let url = format!("http://{}/", server.addr);
    let out = uringfetch(
        &[&["get", "-s", H2C, "-d", &at][..], b, &[url.as_str()]].concat(),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "200000");
    let v = load(
        b,
        &[
            H2C,
            "-c",
            "2",
            "--streams",
            "3",
            "-n",
            "12",
            "-d",
            &at,
            &url,
        ],
    );
    assert_eq!(n(&v, "/requests/completed"), 12, "{v}");
    assert!(n(&v, "/bytes/written") > 12 * 200_000, "{v}");
}

/// A header list over the client's limit fails its stream; floods and a
/// server that never acknowledges SETTINGS fail the connection with the
/// reason, quickly and within bounded memory.
pub fn misbehaving_servers_are_named(b: &[&str]) {
    // A PING flood from a server that reads nothing: the replies pile up
    // (uring-loop reads while its send waits) or the client's send blocks
    // and the SETTINGS (never acknowledged: the server reads nothing)
    // time out; either way the connection ends with the reason.
    let cases: [(&str, &str, &[&str]); 5] = [
        ("huge-headers", "bad_response", &["header list of"]),
        ("continuation-flood", "h2_protocol", &["header block over"]),
        (
            "ping-flood",
            "h2_protocol",
            &["flood", "did not acknowledge"],
        ),
        ("no-settings-ack", "h2_protocol", &["did not acknowledge"]),
        // GOAWAY before any answer: the requests fail, and say its code.
        ("goaway-first", "reset", &["GOAWAY (ENHANCE_YOUR_CALM)"]),
    ];
    for (mode, kind, says) in cases {
        let server = python_h2(mode);
        let url = format!("http://{}/", server.addr);
        let v = load(
            b,
            &[
                H2C,
                "--connect-timeout",
                "1s",
                "-c",
                "2",
                "--streams",
                "2",
                "-n",
                "6",
                &url,
            ],
        );
        assert_eq!(n(&v, &format!("/errors/{kind}")), 6, "{mode}: {v}");
        let example = v["error_examples"][kind].as_str().unwrap_or_default();
        assert!(
            says.iter().any(|s| example.contains(s)),
            "{mode}: {example}"
        );
        assert!(n(&v, "/resources/max_rss_kb") < 200_000, "{mode}: {v}");
    }
}

/// A connection error the client finds is said to the server before the
/// connection closes: GOAWAY with its code (RFC 9113 §5.4.1), and over
/// TLS close_notify; a connection the client ends for want of requests
/// (`--disable-keepalive`) says GOAWAY NO_ERROR.
pub fn goaway_is_sent_before_closing(b: &[&str]) {
    // A DATA frame on stream 0: PROTOCOL_ERROR (code 1).
    let (server, rx) = python_h2_saying("bad-frame", None);
    let url = format!("http://{}/", server.addr);
    let v = load(b, &[H2C, "-c", "1", "-n", "2", &url]);
    assert_eq!(n(&v, "/errors/h2_protocol"), 2, "{v}");
    let lines = lines_until_closed(&rx, 2);
    let goaways: Vec<_> = lines.iter().filter(|l| l.starts_with("goaway ")).collect();
    assert_eq!(goaways.len(), 2, "{lines:?}");
    assert!(
        goaways
            .iter()
            .all(|l| l.starts_with("goaway 1 ") && l.contains("stream 0")),
        "{lines:?}"
    );
    // Over TLS (ALPN h2): the GOAWAY, then close_notify.
    let files = TlsFiles::new();
    let (server, rx) = python_h2_saying("bad-frame", Some((&files.cert, &files.key)));
    let url = format!("https://localhost:{}/", server.addr.port());
    let v = load(
        b,
        &[
            "--http2",
            "--cacert",
            files.ca(),
            "-c",
            "1",
            "-n",
            "2",
            &url,
        ],
    );
    assert_eq!(n(&v, "/errors/h2_protocol"), 2, "{v}");
    let lines = lines_until_closed(&rx, 2);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("goaway 1 ")).count(),
        2,
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "closed, close_notify")
            .count(),
        2,
        "{lines:?}"
    );
    // A close for want of requests: GOAWAY NO_ERROR on each connection.
    let (server, rx) = python_h2_saying("ok", None);
    let url = format!("http://{}/", server.addr);
    let v = load(b, &[H2C, "--disable-keepalive", "-c", "1", "-n", "3", &url]);
    assert_eq!(n(&v, "/status/200"), 3, "{v}");
    assert_eq!(n(&v, "/connections_opened"), 3, "{v}");
    let lines = lines_until_closed(&rx, 3);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("goaway 0")).count(),
        3,
        "{lines:?}"
    );
}

/// A request's `--timeout` holds over HTTP/2 as over HTTP/1.1: streams
/// that all pass it fail together at about `--timeout`, on every backend,
/// and none is sent again on a new connection with a fresh clock (which
/// made one run take four times its timeout).
pub fn stream_timeouts_do_not_restart_on_a_new_connection(b: &[&str]) {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar?delay=3000", server.addr);
    let started = std::time::Instant::now();
    let v = load(
        b,
        &[
            H2C,
            "--timeout",
            "1s",
            "-c",
            "1",
            "--streams",
            "4",
            "-n",
            "4",
            &url,
        ],
    );
    let took = started.elapsed();
    assert_eq!(n(&v, "/errors/timeout"), 4, "{v}");
    // Streams opened within a millisecond time out together; one opened
    // later (after the server's SETTINGS, on a loaded machine) may go to a
    // new connection, but keeps its clock there.
    assert!(took < Duration::from_millis(2500), "{took:?}: {v}");
    server.shutdown();
}

macro_rules! h2_suite {
    ($($module:ident => [$($arg:literal),+]),* $(,)?) => {$(
        mod $module {
            const B: &[&str] = &["--backend", $($arg),+];
            #[test] fn bodies_are_byte_exact() { super::bodies_are_byte_exact(B) }
            #[test] fn streams_multiply_on_few_connections() { super::streams_multiply_on_few_connections(B) }
            #[test] fn streams_run_at_once() { super::streams_run_at_once(B) }
            #[test] fn alpn_picks_the_protocol() { super::alpn_picks_the_protocol(B) }
            #[test] fn open_loop_and_duration_runs_add_up() { super::open_loop_and_duration_runs_add_up(B) }
            #[test] fn goaway_retries_on_a_new_connection() { super::goaway_retries_on_a_new_connection(B) }
            #[test] fn resets_are_counted_by_code() { super::resets_are_counted_by_code(B) }
            #[test] fn framing_variants_arrive_whole() { super::framing_variants_arrive_whole(B) }
            #[test] fn refused_streams_are_sent_again() { super::refused_streams_are_sent_again(B) }
            #[test] fn pings_on_idle_connections_are_answered() { super::pings_on_idle_connections_are_answered(B) }
            #[test] fn tight_limits_are_respected() { super::tight_limits_are_respected(B) }
            #[test] fn misbehaving_servers_are_named() { super::misbehaving_servers_are_named(B) }
            #[test] fn goaway_is_sent_before_closing() { super::goaway_is_sent_before_closing(B) }
            #[test] fn stream_timeouts_do_not_restart_on_a_new_connection() {
                super::stream_timeouts_do_not_restart_on_a_new_connection(B)
            }
        }
    )*};
}

every_backend!(h2_suite);

/// A server that only speaks HTTP/1.1 behind --http2-prior-knowledge is
/// named, not taken for a broken frame.
#[test]
fn an_http1_server_behind_h2c_is_named() {
    let nginx = nginx();
    let url = format!("http://{}/bar", nginx.addr);
    let out = uringfetch(&["get", H2C, &url], LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("answered in HTTP/1.x"),
        "{}",
        stderr(&out)
    );
}

/// --streams without HTTP/2, or with --pipeline, is refused in one line.
#[test]
fn streams_need_http2() {
    let out = uringfetch(
        &["load", "--streams", "4", "-n", "1", "http://127.0.0.1:9/"],
        LIMIT,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--streams needs HTTP/2"),
        "{}",
        stderr(&out)
    );
    let out = uringfetch(
        &[
            "load",
            H2C,
            "--pipeline",
            "4",
            "-n",
            "1",
            "http://127.0.0.1:9/",
        ],
        LIMIT,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("with HTTP/2 use --streams"),
        "{}",
        stderr(&out)
    );
}
