//! `uringfetch get` end to end: the demo server, nginx, Python's
//! http.server, and raw servers that misbehave.

use std::time::{Duration, Instant};

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn concurrent_get_overlaps_and_sequential_does_not() {
    let server = demo_server(Duration::from_millis(300));
    let bar = format!("http://{}/bar", server.addr);
    let foo_url = format!("http://{}/foo", server.addr);

    let t = Instant::now();
    let out = uringfetch(&["get", &bar, &foo_url], LIMIT);
    let concurrent = t.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<h1>bar!</h1><h1>foo!</h1>");
    assert!(
        concurrent < Duration::from_millis(580),
        "both waited in parallel: {concurrent:?}"
    );

    let t = Instant::now();
    let out = uringfetch(&["get", "--sequential", &bar, &foo_url], LIMIT);
    let sequential = t.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<h1>bar!</h1><h1>foo!</h1>");
    assert!(
        sequential >= Duration::from_millis(600),
        "one after the other: {sequential:?}"
    );
    assert!(stderr(&out).contains("sequential"), "{}", stderr(&out));
    server.shutdown();
}

#[test]
fn include_shows_status_line_and_headers() {
    let server = demo_server(Duration::ZERO);
    let out = uringfetch(
        &["get", "-i", &format!("http://{}/bar", server.addr)],
        LIMIT,
    );
    let text = stdout(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\r\n\r\n<h1>bar!</h1>"), "{text}");
    server.shutdown();
}

#[test]
fn output_file_gets_the_body() {
    let server = demo_server(Duration::ZERO);
    let dir = temp_dir("get-o");
    let file = dir.join("body.html");
    let out = uringfetch(
        &[
            "get",
            "-o",
            file.to_str().unwrap(),
            &format!("http://{}/foo", server.addr),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), b"<h1>foo!</h1>");
    // With -i the head goes into the file too, as in curl; stdout stays empty.
    let out = uringfetch(
        &[
            "get",
            "-i",
            "-o",
            file.to_str().unwrap(),
            &format!("http://{}/foo", server.addr),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    let saved = String::from_utf8(std::fs::read(&file).unwrap()).unwrap();
    assert!(saved.starts_with("HTTP/1.1 200"), "{saved}");
    assert!(saved.ends_with("\r\n\r\n<h1>foo!</h1>"), "{saved}");
    let _ = std::fs::remove_dir_all(dir);
    server.shutdown();
}

#[test]
fn nginx_static_big_and_chunked_match_curl_byte_for_byte() {
    let nginx = nginx();
    for path in ["/bar", "/big", "/chunked"] {
        let url = format!("http://{}{path}", nginx.addr);
        let out = uringfetch(&["get", &url], LIMIT);
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        let expected = curl(&url, false);
        assert!(!expected.is_empty(), "curl got {path}");
        assert_eq!(out.stdout, expected, "{path}");
    }
}

#[test]
fn python_http_server_http10_close_delimited_matches_curl() {
    let py = python_http_server();
    let url = format!("http://{}/hello.txt", py.addr);
    let out = uringfetch(&["get", &url], LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello from python\n");
    assert_eq!(out.stdout, curl(&url, false));
    let out = uringfetch(&["get", "-i", &url], LIMIT);
    assert!(
        stdout(&out).starts_with("HTTP/1.0 200 OK\r\n"),
        "{}",
        stdout(&out)
    );
    // A directory listing has no Content-Length: the body ends when the server closes.
    let listing = format!("http://{}/", py.addr);
    let out = uringfetch(&["get", &listing], LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, curl(&listing, false));
}

/// The first Ctrl-C ends a `get`: the responses that arrived are printed
/// (also those behind a slow URL), the slow one is named, exit 1.
#[test]
fn ctrl_c_prints_what_arrived_and_names_the_rest() {
    let server = demo_server(Duration::ZERO);
    let fast = format!("http://{}/foo", server.addr);
    let slow = format!("http://{}/bar?delay=10000", server.addr);
    for backend in ["uring-loop", "threads"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_uringfetch"))
            .args(["get", "--backend", backend, &fast, &slow, &fast])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        // SAFETY: sending a signal to our own child, whose pid we hold.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = wait_limited(&mut child, Duration::from_secs(5), "get after SIGINT");
        assert_eq!(out.status.code(), Some(1), "{backend}: {}", stderr(&out));
        assert_eq!(stdout(&out), "<h1>foo!</h1><h1>foo!</h1>", "{backend}");
        assert!(
            stderr(&out).contains("interrupted before a response arrived")
                && stderr(&out).contains("delay=10000"),
            "{backend}: {}",
            stderr(&out)
        );
    }
    server.shutdown();
}

/// A server that answers each request with its head as the body.
fn head_echo() -> RawServer {
    RawServer::start(|mut s| {
        while let Some((head, _)) = read_request(&mut s) {
            let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", head.len());
            send(&mut s, resp.as_bytes());
            send(&mut s, head.as_bytes());
        }
    })
}

/// curl's `--resolve` and `--connect-to`: the connection goes where they
/// say, the request keeps the URL's host; rules that do not match leave
/// the resolver in charge; malformed rules are usage errors (exit 2).
#[test]
fn resolve_and_connect_to_route_connections() {
    let server = head_echo();
    let port = server.addr.port();
    let resolve = format!("uringfetch.test:{port}:127.0.0.1");
    let url = format!("http://uringfetch.test:{port}/r");
    for backend in ["uring-loop", "epoll-loop"] {
        let out = uringfetch(
            &["get", "--backend", backend, "--resolve", &resolve, &url],
            LIMIT,
        );
        assert!(out.status.success(), "{backend}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.starts_with("GET /r HTTP/1.1\r\n"), "{text}");
        assert!(
            text.contains(&format!("Host: uringfetch.test:{port}\r\n")),
            "{text}"
        );
    }
    // --connect-to: the default port goes to the server's; Host keeps the
    // URL's (without the port, which is the scheme's); an empty HOST1
    // matches any host; the first matching rule wins.
    for rule in [
        format!("uringfetch.test:80:127.0.0.1:{port}"),
        format!(":80:127.0.0.1:{port}"),
        format!("UringFetch.TEST::localhost:{port}"),
    ] {
        let out = uringfetch(
            &[
                "get",
                "--connect-to",
                &rule,
                "--connect-to",
                "uringfetch.test:80:127.0.0.1:9",
                "http://uringfetch.test/c",
            ],
            LIMIT,
        );
        assert!(out.status.success(), "{rule}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("Host: uringfetch.test\r\n"), "{rule}: {text}");
    }
    // Chained: --connect-to a name that --resolve gives an address; and a
    // load on the sequential and threads paths, all answered.
    let out = uringfetch(
        &[
            "load",
            "--backend",
            "threads",
            "-n",
            "10",
            "-c",
            "2",
            "-o",
            "json",
            "--connect-to",
            &format!("uringfetch.test:80:backend.test:{port}"),
            "--resolve",
            &format!("backend.test:{port}:127.0.0.1"),
            "http://uringfetch.test/l",
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"]["completed"], 10, "{v}");
    let out = uringfetch(&["get", "--sequential", "--resolve", &resolve, &url], LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    // A rule for another port leaves the name to the resolver (`localhost`
    // from /etc/hosts: no name here is ever asked of DNS).
    let decoy = format!("localhost:{}:127.0.0.2", port.wrapping_add(1).max(1));
    let out = uringfetch(
        &[
            "get",
            "--resolve",
            &decoy,
            &format!("http://localhost:{port}/d"),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("GET /d HTTP/1.1\r\n"));
    for (flag, bad) in [
        ("--resolve", "uringfetch.test:80"),
        ("--resolve", "uringfetch.test:0:127.0.0.1"),
        ("--resolve", "uringfetch.test:80:not-an-ip"),
        ("--connect-to", "uringfetch.test:80:127.0.0.1"),
        ("--connect-to", "a:b:c:d"),
    ] {
        let out = uringfetch(&["get", flag, bad, &url], LIMIT);
        assert_eq!(out.status.code(), Some(2), "{flag} {bad}");
        let err = stderr(&out);
        assert!(err.contains(flag) && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn method_headers_and_body_reach_the_server() {
    let server = RawServer::start(|mut s| {
        let Some((head, req_body)) = read_request(&mut s) else {
            return;
        };
        // Echo the request back as the body so the test can look at it.
        let mut body = head.into_bytes();
        body.extend_from_slice(&req_body);
        let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        send(&mut s, resp.as_bytes());
        send(&mut s, &body);
    });
    let out = uringfetch(
        &[
            "get",
            "-X",
            "PUT",
            "-H",
            "X-Test: yes",
            "-H",
            "X-Empty;",
            "-d",
            "hello",
            "--http1.0",
            &server.url("/p?q=1"),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("PUT /p?q=1 HTTP/1.0\r\n"), "{text}");
    assert!(
        text.contains(&format!("Host: {}\r\n", server.addr)),
        "{text}"
    );
    assert!(text.contains("X-Test: yes\r\n"), "{text}");
    // curl's `Name;`: the field with an empty value.
    assert!(text.contains("\r\nX-Empty:"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    // -d @FILE sends the file's bytes, as curl does; a missing file is an error.
    let dir = temp_dir("get-d");
    let file = dir.join("body.bin");
    std::fs::write(&file, b"line one\nline two\n").unwrap();
    let at = format!("@{}", file.display());
    let out = uringfetch(&["get", "-d", &at, &server.url("/")], LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("POST / HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("Content-Length: 18\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nline one\nline two\n"), "{text}");
    let missing = format!("@{}", dir.join("nope").display());
    let out = uringfetch(&["get", "-d", &missing, &server.url("/")], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read -d @"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn refused_bad_url_and_bad_scheme_each_give_one_clear_line() {
    let out = uringfetch(
        &[
            "get",
            "http://127.0.0.1:9/",
            "http://[::1",
            "https://127.0.0.1/",
            "ftp://127.0.0.1/",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("connection refused: 127.0.0.1:9"), "{err}");
    assert!(err.contains("invalid URL 'http://[::1'"), "{err}");
    // https goes to port 443 by default.
    assert!(err.contains("connection refused: 127.0.0.1:443"), "{err}");
    assert!(err.contains("unsupported scheme 'ftp'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn garbage_response_is_a_bad_response() {
    let server = RawServer::start(|mut s| {
        let _ = read_head(&mut s);
        send(&mut s, b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    });
    let out = uringfetch(&["get", &server.url("/")], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad response"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn close_mid_body_is_an_early_eof() {
    let server = RawServer::start(|mut s| {
        let _ = read_head(&mut s);
        send(
            &mut s,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",
        );
    });
    let out = uringfetch(&["get", &server.url("/")], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("connection closed inside a response"), "{err}");
}

#[test]
fn a_stalled_server_times_out_after_timeout() {
    let server = RawServer::start(|mut s| {
        let _ = read_head(&mut s);
        std::thread::sleep(Duration::from_secs(3));
    });
    let url = server.url("/");
    for mode in [&[][..], &["--sequential"][..]] {
        let t = Instant::now();
        let args = [&["get", "--timeout", "500ms"][..], mode, &[url.as_str()]].concat();
        let out = uringfetch(&args, LIMIT);
        assert_eq!(out.status.code(), Some(1), "{mode:?}");
        assert!(
            stderr(&out).contains("timed out after 500ms"),
            "{mode:?}: {}",
            stderr(&out)
        );
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "{mode:?}: {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn demo_prints_both_timings_and_a_speedup() {
    let out = uringfetch(&["demo", "--delay", "200ms"], LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sequential (blocking):"), "{text}");
    assert!(
        text.contains("concurrent (io_uring, uring-loop):"),
        "{text}"
    );
    assert!(
        text.contains("<h1>bar!</h1>") && text.contains("<h1>foo!</h1>"),
        "{text}"
    );
    assert!(text.contains("speed-up"), "{text}");
}

/// Runs `uringfetch get ARGS` under `strace -f -e TRACE` and returns its
/// stdout and the trace; the run must succeed.
fn strace_get(trace: &str, args: &[&str]) -> (Vec<u8>, String) {
    let dir = temp_dir("strace");
    let log = dir.join("trace.txt");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", trace])
        .arg("-o")
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_uringfetch"))
        .arg("get")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("strace is missing ({e}): install it with `apt-get install -y strace`")
        });
    assert!(
        out.status.success(),
        "get {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("strace wrote its log");
    let _ = std::fs::remove_dir_all(dir);
    (out.stdout, text)
}

#[test]
fn io_uring_backends_make_no_socket_io_system_calls() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let port = server.addr.port().to_string();
    for backend in ["uring-loop", "uring-async"] {
        let (stdout, trace) = strace_get(
            "trace=connect,sendto,recvfrom,sendmsg,recvmsg,read,write",
            &["--backend", backend, &url, &url],
        );
        assert_eq!(stdout, b"<h1>bar!</h1><h1>bar!</h1>");
        // connect, send and recv on the fetch sockets go through the ring.
        let on_socket = trace
            .lines()
            .filter(|l| !l.contains("write(1,"))
            .filter(|l| l.contains(&port) || l.contains("GET /bar") || l.contains("<h1>bar!"))
            .collect::<Vec<_>>();
        assert!(
            on_socket.is_empty(),
            "{backend} made socket I/O system calls:\n{}",
            on_socket.join("\n")
        );
        assert!(
            trace.contains("write(1, \"<h1>bar!"),
            "the trace saw the output: {trace}"
        );
    }
    server.shutdown();
}

/// `uring-loop` makes its sockets with IORING_OP_SOCKET into a registered
/// file table where the kernel can, and with socket(2) in the 5.10 profile:
/// strace sees no socket or shutdown of a TCP socket in the first case, and
/// the socket(2) calls in the second. Likewise its waits enter through the
/// registered ring index where the kernel has one, and never in 5.10.
#[test]
fn uring_loop_sockets_are_direct_descriptors_where_the_kernel_has_them() {
    use uringfetch::testing::Profile;
    let features = uringfetch::testing::uring_loop_features(Profile::Auto)
        .expect("io_uring is available here");
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    for profile in ["auto", "5.10"] {
        let (_, trace) = strace_get(
            "trace=socket,shutdown,io_uring_enter",
            &[
                "--backend",
                "uring-loop",
                "--uring-profile",
                profile,
                &url,
                &url,
                &url,
            ],
        );
        let tcp_sockets = trace
            .lines()
            .filter(|l| l.contains("socket(AF_INET, SOCK_STREAM"))
            .count();
        let shutdowns = trace.lines().filter(|l| l.contains("shutdown(")).count();
        let registered = trace.contains("IORING_ENTER_REGISTERED_RING");
        assert_eq!(
            registered,
            profile == "auto" && features.registered_ring,
            "{profile}: waits through the registered ring index:\n{trace}"
        );
        if profile == "auto" && features.direct_descriptors {
            assert_eq!(
                (tcp_sockets, shutdowns),
                (0, 0),
                "direct descriptors, yet socket(2)/shutdown(2) were called:\n{trace}"
            );
        } else {
            assert_eq!(tcp_sockets, 3, "{profile}: one socket(2) per URL:\n{trace}");
        }
    }
    server.shutdown();
}

#[test]
fn pipelining_is_uring_loop_only_and_counts_every_response() {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let v = crate::load::load_json(&[
        "--backend",
        "uring-loop",
        "--pipeline",
        "16",
        "-n",
        "3200",
        "-c",
        "4",
        &url,
    ]);
    crate::load::assert_counts_add_up(&v);
    assert_eq!(v["status"]["200"], 3200);
    assert_eq!(v["connections_opened"], 4);
    let out = uringfetch(
        &["load", "--backend", "epoll-loop", "--pipeline", "16", &url],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--pipeline is implemented by --backend uring-loop only"),
        "{}",
        stderr(&out)
    );
    server.shutdown();
}

/// Requests that take many sends (a server that reads 64 KiB a millisecond,
/// 1,000 pipelined 8 KiB requests on one connection) while their first
/// responses already come back. The 5.10 profile sends without
/// MSG_WAITALL, so uring-loop itself finishes each short send; it once took
/// the rest from a length that shrank with every response (a panic, or
/// requests never sent).
#[test]
fn pipelined_short_sends_finish_on_both_profiles() {
    let server = RawServer::start(|mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            carry.extend_from_slice(&buf[..n]);
            let mut answered = 0;
            while let Some(end) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
                carry.drain(..end + 4);
                answered += 1;
            }
            send(
                &mut s,
                &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".repeat(answered),
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let pad = format!("X-Pad: {}", "a".repeat(8000));
    for profile in ["auto", "5.10"] {
        let v = crate::load::load_json(&[
            "--backend",
            "uring-loop",
            "--uring-profile",
            profile,
            "--pipeline",
            "1000",
            "-n",
            "1000",
            "-c",
            "1",
            "--timeout",
            "10s",
            "-H",
            &pad,
            &server.url("/"),
        ]);
        crate::load::assert_counts_add_up(&v);
        assert_eq!(v["status"]["200"], 1000, "{profile}: {v}");
        assert_eq!(v["requests"]["errors"], 0, "{profile}: {v}");
    }
    drop(server);
}

/// A close-delimited response ends its connection while pipelined requests
/// still wait behind it: they are sent again on a fresh connection, not
/// left to time out.
#[test]
fn pipelined_requests_behind_a_close_delimited_response_are_retried() {
    let server = RawServer::start(|mut s| {
        if read_head(&mut s).is_some() {
            send(
                &mut s,
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello",
            );
        }
    });
    let t = Instant::now();
    let v = crate::load::load_json(&[
        "--backend",
        "uring-loop",
        "--pipeline",
        "2",
        "-n",
        "2",
        "-c",
        "1",
        "--timeout",
        "20s",
        &server.url("/"),
    ]);
    crate::load::assert_counts_add_up(&v);
    assert_eq!(v["status"]["200"], 2, "{v}");
    assert_eq!(v["connections_opened"], 2, "{v}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    drop(server);
}

/// A server that answers with `head` and then never stops sending body
/// bytes (64 KiB blocks, framed as `chunked` says), until the client goes.
fn endless_server(head: &'static [u8], chunked: bool) -> RawServer {
    RawServer::start(move |mut s| {
        if read_head(&mut s).is_none() {
            return;
        }
        let block = vec![b'x'; 64 * 1024];
        let data = if chunked {
            [format!("{:x}\r\n", block.len()).as_bytes(), &block, b"\r\n"].concat()
        } else {
            block
        };
        if std::io::Write::write_all(&mut s, head).is_err() {
            return;
        }
        while std::io::Write::write_all(&mut s, &data).is_ok() {}
    })
}

/// Issue 19 item 1: `get` streams a body as it arrives, in constant
/// memory, whatever its framing: an endless body streamed for 2 s (a
/// Content-Length of a terabyte, chunked, close-delimited) keeps the
/// process below 50 MB and reaches stdout as it comes.
pub fn get_streams_endless_bodies(b: &[&str]) {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let framings: [(&[u8], bool); 3] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n",
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        ),
        (b"HTTP/1.0 200 OK\r\n\r\n", false),
    ];
    let runs: Vec<_> = framings
        .iter()
        .map(|&(head, chunked)| {
            let server = endless_server(head, chunked);
            let url = server.url("/");
            let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
                .args([&["get", "--timeout", "2s"], b, &[url.as_str()]].concat())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("binary runs");
            let mut stdout = child.stdout.take().unwrap();
            let counter = std::thread::spawn(move || {
                let (mut n, mut buf) = (0u64, vec![0; 1 << 16]);
                while let Ok(k) = stdout.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                n
            });
            (server, child, counter)
        })
        .collect();
    for (i, (server, mut child, counter)) in runs.into_iter().enumerate() {
        let peak = peak_rss_kb(&mut child);
        let out = child.wait_with_output().unwrap();
        let streamed = counter.join().unwrap();
        assert_eq!(out.status.code(), Some(1), "framing {i}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("timed out after 2s"),
            "{}",
            stderr(&out)
        );
        assert!(peak < 50 * 1024, "framing {i}: peak RSS {peak} KiB");
        assert!(
            streamed > 10 << 20,
            "framing {i}: only {streamed} bytes out"
        );
        drop(server);
    }
}

/// With several URLs, bodies come out in URL order: a later URL that
/// finishes first waits (spooled) for the ones before it.
pub fn get_keeps_url_order(b: &[&str]) {
    let server = demo_server(Duration::ZERO);
    let slow = format!("http://{}/foo?delay=300", server.addr);
    let quick = format!("http://{}/bar", server.addr);
    let out = uringfetch(
        &[&["get", "-s"], b, &[slow.as_str(), quick.as_str()]].concat(),
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<h1>foo!</h1><h1>bar!</h1>");
    assert_eq!(stderr(&out), "", "-s: no timing line");
    server.shutdown();
}

macro_rules! get_suite {
    ($($module:ident => [$($arg:literal),+]),* $(,)?) => {$(
        mod $module {
            const B: &[&str] = &["--backend", $($arg),+];
            #[test] fn get_streams_endless_bodies() { super::get_streams_endless_bodies(B) }
            #[test] fn get_keeps_url_order() { super::get_keeps_url_order(B) }
        }
    )*};
}

every_backend!(get_suite);
