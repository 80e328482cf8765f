//! `uringfetch serve` as a user runs it: options refused before anything
//! runs, and an address another process holds.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// `--max-head-bytes 0` made every request a 431, and a huge value let one
/// header line take hundreds of MB of the server: both are usage errors.
#[test]
fn max_head_bytes_is_bounded_at_parse_time() {
    for bad in ["0", "1023", "1048577", "1000000000000"] {
        let out = uringfetch(
            &["serve", "--addr", "127.0.0.1:0", "--max-head-bytes", bad],
            LIMIT,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("1 KiB to 1 MiB"), "{bad}: {err}");
    }
}

/// A thread count past 1,024 is refused with a reason, not a panic
/// ("capacity overflow" for 2^64 - 1).
#[test]
fn absurd_thread_counts_are_refused() {
    for n in ["1025", "18446744073709551615"] {
        let out = uringfetch(&["serve", "--addr", "127.0.0.1:0", "--threads", n], LIMIT);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{n}: {err}");
        assert!(err.contains("at most 1024"), "{n}: {err}");
        assert!(!err.contains("panicked"), "{n}: {err}");
    }
}

/// A second `serve` on a port a running one holds used to start silently
/// and share it through SO_REUSEPORT (7 of 8 requests went to the old
/// server). It must refuse, as Python's http.server and nginx do; so must
/// a port held by any other listener, with or without SO_REUSEPORT.
#[test]
fn an_address_in_use_is_refused() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args(["serve", "--addr", &addr.to_string(), "--delay", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let first = Peer {
        child,
        addr,
        dir: None,
    };
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < LIMIT, "the first serve did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let foreign = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    foreign.set_reuse_port(true).unwrap();
    foreign
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    foreign.listen(8).unwrap();
    let foreign_addr = foreign.local_addr().unwrap().as_socket().unwrap();
    for held in [first.addr, foreign_addr] {
        let out = uringfetch(
            &["serve", "--addr", &held.to_string(), "--delay", "0"],
            Duration::from_secs(5),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{held}: {err}");
        assert!(err.contains("address already in use"), "{held}: {err}");
        assert!(err.contains(&held.to_string()), "{held}: {err}");
        assert!(stdout(&out).is_empty(), "{held}: said it listens");
    }
    // The running server was not disturbed.
    let out = uringfetch(&["get", &format!("http://{addr}/bar")], LIMIT);
    assert_eq!(stdout(&out), "<h1>bar!</h1>");
    drop(first);
}

/// Issue 19 item 13: `serve --addr localhost:PORT` was refused as bad
/// syntax, and one thread read "(1 threads".
#[test]
fn serve_takes_a_host_name_and_counts_its_threads() {
    use std::io::BufRead;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args([
            "serve",
            "--addr",
            &format!("localhost:{port}"),
            "--threads",
            "1",
            "--delay",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with(&format!(
            "listening on http://127.0.0.1:{port} (1 thread on "
        )),
        "{line}"
    );
    assert!(line.contains("delay 0ms"), "{line}");
}

// ---- serve --tls ----

const INSTALL_CURL: &str = "apt-get install -y curl";

/// `uringfetch serve ARGS` on a free port with `--threads 1 --delay 0`,
/// once its first `lines` lines are out (the first says where it listens).
fn serve_until(args: &[&str], lines: usize) -> (Peer, Vec<String>) {
    use std::io::BufRead;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut all = vec!["serve", "--threads", "1", "--delay", "0"];
    let bind = format!("127.0.0.1:{port}");
    if !args.contains(&"--addr") {
        all.extend(["--addr", &bind]);
    }
    all.extend(args);
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringfetch"))
        .args(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let peer = Peer {
        child,
        addr,
        dir: None,
    };
    let mut said = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        said.push(line.trim_end().to_string());
    }
    // Keep the pipe open: a server that writes `stopped` must not die of
    // SIGPIPE.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (peer, said)
}

/// curl over HTTPS trusting `cacert`; its stdout, or the test fails with
/// curl's stderr (or the line that installs it).
fn curl_tls(cacert: &str, extra: &[&str], url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", cacert])
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("curl cannot run ({e}): install it with `{INSTALL_CURL}`"));
    assert!(out.status.success(), "curl {url}: {}", stderr(&out));
    stdout(&out)
}

/// `serve --tls` alone: a certificate made at start, written to a new
/// temporary file whose path the second line gives, which curl trusts
/// for 127.0.0.1 and localhost; removed when the server stops.
#[test]
fn serve_tls_makes_a_certificate_clients_can_trust() {
    for engine in ["uring", "epoll"] {
        let (mut peer, said) = serve_until(&["--tls", "--engine", engine], 2);
        let port = peer.addr.port();
        assert!(
            said[0].starts_with(&format!(
                "listening on https://127.0.0.1:{port} (1 thread on "
            )),
            "{said:?}"
        );
        let prefix = "self-signed certificate for localhost, 127.0.0.1, ::1 \
                      (clients trust it with --cacert): ";
        let path = said[1]
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{said:?}"))
            .to_string();
        assert!(path.ends_with("/cert.pem"), "{path}");
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let url = format!("https://127.0.0.1:{port}/foo");
        assert_eq!(curl_tls(&path, &[], &url), "<h1>foo!</h1>");
        let url = format!("https://localhost:{port}/bar");
        assert_eq!(
            curl_tls(&path, &["--tlsv1.2", "--tls-max", "1.2"], &url),
            "<h1>bar!</h1>"
        );

        let status = Command::new("kill")
            .args(["-TERM", &peer.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        while peer.child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < LIMIT, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
    }
}

/// `--write-cert FILE` puts the certificate where asked, made also for the
/// host `--addr` names (here `localhost`); `--cert FILE --key FILE` serve a
/// given certificate, for a name curl reaches through `--resolve` (still
/// 127.0.0.1).
#[test]
fn serve_tls_writes_its_certificate_or_serves_a_given_one() {
    let dir = temp_dir("serve-tls");
    let written = dir.join("written.pem").display().to_string();
    let port = free_port();
    let (_peer, said) = serve_until(
        &[
            "--tls",
            "--addr",
            &format!("localhost:{port}"),
            "--write-cert",
            &written,
        ],
        2,
    );
    assert!(said[1].ends_with(&format!(": {written}")), "{said:?}");
    let url = format!("https://localhost:{port}/foo");
    assert_eq!(curl_tls(&written, &[], &url), "<h1>foo!</h1>");
    drop(_peer);
    assert!(
        std::path::Path::new(&written).exists(),
        "--write-cert FILE is kept"
    );

    let made = uringfetch::testing::server::self_signed(&["uringfetch.test"]).unwrap();
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    std::fs::write(&cert, &made.cert_pem).unwrap();
    std::fs::write(&key, &made.key_pem).unwrap();
    for engine in ["uring", "epoll"] {
        let (peer, said) = serve_until(
            &["--tls", "--cert", &cert, "--key", &key, "--engine", engine],
            1,
        );
        let port = peer.addr.port();
        assert!(said[0].starts_with("listening on https://"), "{said:?}");
        let resolve = format!("uringfetch.test:{port}:127.0.0.1");
        let url = format!("https://uringfetch.test:{port}/bar");
        assert_eq!(
            curl_tls(&cert, &["--resolve", &resolve], &url),
            "<h1>bar!</h1>"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Certificates and keys that cannot be used are one line naming the file
/// and why, exit 2, before anything listens; so are TLS options without
/// `--tls` or half of a pair.
#[test]
fn serve_tls_refuses_bad_certificates_and_options() {
    let dir = temp_dir("serve-tls-bad");
    let a = uringfetch::testing::server::self_signed(&[]).unwrap();
    let b = uringfetch::testing::server::self_signed(&[]).unwrap();
    let path = |name: &str, text: &str| {
        let p = dir.join(name).display().to_string();
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, other_key, junk) = (
        path("cert.pem", &a.cert_pem),
        path("other-key.pem", &b.key_pem),
        path("junk.pem", "not PEM at all\n"),
    );
    let missing = dir.join("missing.pem").display().to_string();
    let unwritable = format!("{missing}/x.pem");
    let cases: [(Vec<&str>, String); 6] = [
        (
            vec!["--tls", "--cert", &missing, "--key", &other_key],
            format!("uringfetch: cannot read --cert {missing}: No such file or directory"),
        ),
        (
            vec!["--tls", "--cert", &cert, "--key", &missing],
            format!("uringfetch: cannot read --key {missing}: No such file or directory"),
        ),
        (
            vec!["--tls", "--cert", &junk, "--key", &other_key],
            format!("uringfetch: --cert {junk}: no PEM certificate in it"),
        ),
        (
            vec!["--tls", "--cert", &cert, "--key", &junk],
            format!("uringfetch: --key {junk}: no PEM private key in it"),
        ),
        (
            vec!["--tls", "--cert", &cert, "--key", &other_key],
            format!(
                "uringfetch: --cert {cert} and --key {other_key}: the key is not the certificate's"
            ),
        ),
        (
            vec!["--tls", "--write-cert", &unwritable],
            format!("uringfetch: cannot write --write-cert {unwritable}: "),
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
        all.extend(&args);
        let out = uringfetch(&all, LIMIT);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with(&want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(stdout(&out).is_empty(), "{args:?}: said it listens");
    }
    for args in [
        vec!["--cert", &cert, "--key", &other_key],
        vec!["--tls", "--cert", &cert],
        vec!["--tls", "--key", &other_key],
        vec!["--write-cert", &missing],
        vec![
            "--tls",
            "--cert",
            &cert,
            "--key",
            &other_key,
            "--write-cert",
            &missing,
        ],
    ] {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
        all.extend(&args);
        let out = uringfetch(&all, LIMIT);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The in-process server over HTTPS that tests (and `demo`, `compare`)
/// can start: `ServeOptions::in_process_tls` gives the options and the
/// certificate a client must trust.
#[test]
fn in_process_tls_server_answers_curl() {
    use uringfetch::testing::{ServeOptions, server};
    let (opts, cert_pem) = ServeOptions::in_process_tls(Duration::from_millis(50)).unwrap();
    let srv = server::start(ServeOptions {
        threads: 1,
        engine: server::Engine::Uring,
        ..opts
    })
    .unwrap();
    assert!(srv.tls);
    let dir = temp_dir("in-process-tls");
    let cacert = dir.join("cert.pem").display().to_string();
    std::fs::write(&cacert, cert_pem).unwrap();
    let url = format!("https://{}/foo", srv.addr);
    assert_eq!(curl_tls(&cacert, &[], &url), "<h1>foo!</h1>");
    srv.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
