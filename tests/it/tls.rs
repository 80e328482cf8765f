//! `https://` on every backend, against real TLS servers nobody here
//! wrote: nginx with `ssl` (a CA and certificates the test makes with
//! rcgen) and Python's `ssl` module (OpenSSL) misbehaving on purpose
//! (`tls_server.py`): bytes exactly as curl gets them, counts that add up
//! with and without session resumption, and each failure named as the
//! user needs it (which certificate problem, which handshake failure, a
//! plaintext server behind https), inside the time limits.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::load::{load_on as load, n};
use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// `tls_server.py` in `mode` with a certificate and key.
fn python_tls(mode: &str, cert: &std::path::Path, key: &std::path::Path) -> Peer {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/tls_server.py");
    let mut child = Command::new("python3")
        .args([script, mode])
        .arg(cert)
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is missing ({e}): install it with `{INSTALL_PYTHON}`"));
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("tls_server.py {mode} printed no port: '{line}'"));
    Peer {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        dir: None,
    }
}

fn curl_tls(url: &str, ca: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert", ca, url])
        .output()
        .expect("curl is installed (apt-get install -y curl)");
    assert!(out.status.success(), "curl {url}: {out:?}");
    out.stdout
}

/// One `get`, its stderr and exit code.
fn get(b: &[&str], args: &[&str]) -> (std::process::Output, String) {
    let out = uringfetch(&[&["get"], b, args].concat(), LIMIT);
    let err = stderr(&out);
    (out, err)
}

pub fn bodies_are_byte_exact_with_curl(b: &[&str]) {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    for path in ["/bar", "/big", "/chunked"] {
        let url = format!("https://127.0.0.1:{}{path}", nginx.tls_port);
        let (out, err) = get(b, &["--cacert", files.ca(), &url]);
        assert!(out.status.success(), "{url}: {err}");
        assert_eq!(out.stdout, curl_tls(&url, files.ca()), "{url}");
    }
    // By name too: SNI and the certificate's DNS name.
    let url = format!("https://localhost:{}/bar", nginx.tls_port);
    let (out, err) = get(b, &["--cacert", files.ca(), &url]);
    assert!(out.status.success(), "{url}: {err}");
    assert_eq!(out.stdout, b"bar\n");
}

pub fn counts_add_up_with_and_without_resumption(b: &[&str]) {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    let url = format!("https://127.0.0.1:{}/bar", nginx.tls_port);
    let ca = files.ca();
    // Keep-alive: one handshake per connection.
    let v = load(b, &["--cacert", ca, "-c", "4", "-n", "400", &url]);
    assert_eq!(n(&v, "/requests/completed"), 400, "{v}");
    assert_eq!(
        n(&v, "/tls/handshakes"),
        n(&v, "/connections_opened"),
        "{v}"
    );
    assert_eq!(
        n(&v, "/tls/handshake_us/count"),
        n(&v, "/tls/handshakes"),
        "{v}"
    );
    // HTTP bytes are counted, not TLS records: as many as over plaintext.
    let plain = load(
        b,
        &[
            "-c",
            "4",
            "-n",
            "400",
            &format!("http://{}/bar", nginx.peer.addr),
        ],
    );
    assert_eq!(v["bytes"], plain["bytes"], "{v}\n{plain}");
    // A new connection per request: resumed after the first ones.
    let v = load(
        b,
        &[
            "--cacert",
            ca,
            "-c",
            "2",
            "-n",
            "100",
            "--disable-keepalive",
            &url,
        ],
    );
    assert_eq!(n(&v, "/requests/completed"), 100, "{v}");
    assert_eq!(n(&v, "/tls/handshakes"), 100, "{v}");
    let resumed = n(&v, "/tls/resumed");
    assert!(
        resumed >= 90,
        "only {resumed} of 100 handshakes resumed: {v}"
    );
    // --no-tls-resume: every one full.
    let v = load(
        b,
        &[
            "--cacert",
            ca,
            "-c",
            "2",
            "-n",
            "40",
            "--disable-keepalive",
            "--no-tls-resume",
            &url,
        ],
    );
    assert_eq!(n(&v, "/requests/completed"), 40, "{v}");
    assert_eq!(
        (n(&v, "/tls/handshakes"), n(&v, "/tls/resumed")),
        (40, 0),
        "{v}"
    );
}

pub fn certificate_problems_are_named(b: &[&str]) {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    let url = format!("https://127.0.0.1:{}/bar", nginx.tls_port);
    // Not signed by a CA this system trusts.
    let (out, err) = get(b, &[&url]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unknown issuer") && err.contains("--cacert"),
        "{err}"
    );
    // -k trusts anything.
    let (out, err) = get(b, &["-k", &url]);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, b"bar\n");
    let wrong = python_tls("ok", &files.wrong_name.0, &files.wrong_name.1);
    let url = format!("https://127.0.0.1:{}/", wrong.addr.port());
    let (_, err) = get(b, &["--cacert", files.ca(), &url]);
    assert!(
        err.contains("name mismatch") && err.contains("'127.0.0.1'"),
        "{err}"
    );
    let expired = python_tls("ok", &files.expired.0, &files.expired.1);
    let url = format!("https://127.0.0.1:{}/", expired.addr.port());
    let v = load(b, &["--cacert", files.ca(), "-n", "3", "-c", "1", &url]);
    assert_eq!(n(&v, "/errors/tls_certificate"), 3, "{v}");
    let example = v["error_examples"]["tls_certificate"].as_str().unwrap();
    assert!(example.contains("expired"), "{v}");
}

pub fn handshake_failures_are_named(b: &[&str]) {
    let files = TlsFiles::new();
    let (cert, key) = (&files.cert, &files.key);
    // A server of TLS 1.0 only.
    let old = python_tls("tls10", cert, key);
    let url = format!("https://127.0.0.1:{}/", old.addr.port());
    let (out, err) = get(b, &["--cacert", files.ca(), &url]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("TLS handshake") && err.contains("TLS version"),
        "{err}"
    );
    // A reset in the middle of the handshake.
    let reset = python_tls("reset", cert, key);
    let url = format!("https://127.0.0.1:{}/", reset.addr.port());
    let v = load(b, &["--cacert", files.ca(), "-n", "3", "-c", "1", &url]);
    assert_eq!(n(&v, "/errors/reset"), 3, "{v}");
    // A handshake that never finishes: --connect-timeout holds.
    let stall = python_tls("stall", cert, key);
    let url = format!("https://127.0.0.1:{}/", stall.addr.port());
    let t = Instant::now();
    let v = load(
        b,
        &[
            "--cacert",
            files.ca(),
            "-n",
            "2",
            "-c",
            "2",
            "--connect-timeout",
            "500ms",
            "--timeout",
            "20s",
            &url,
        ],
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(n(&v, "/errors/connect_timeout"), 2, "{v}");
    let example = v["error_examples"]["connect_timeout"].as_str().unwrap();
    assert!(example.contains("TLS handshake"), "{v}");
    // A plaintext server behind https.
    let nginx = nginx_tls(&files);
    let url = format!("https://{}/bar", nginx.peer.addr);
    let (out, err) = get(b, &["--cacert", files.ca(), &url]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("plain HTTP") && err.contains("http://"),
        "{err}"
    );
}

/// After the server's close_notify the connection is done: the answer
/// before it counts, bytes after it are ignored, the next request goes
/// on a new connection.
pub fn close_notify_then_more_bytes(b: &[&str]) {
    let files = TlsFiles::new();
    let server = python_tls("close_notify", &files.cert, &files.key);
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let v = load(b, &["--cacert", files.ca(), "-n", "5", "-c", "1", &url]);
    assert_eq!(n(&v, "/requests/completed"), 5, "{v}");
    assert_eq!(n(&v, "/connections_opened"), 5, "{v}");
}

/// A TLS server that stops in the middle of a record is a timeout.
pub fn a_stall_mid_record_is_a_timeout(b: &[&str]) {
    let files = TlsFiles::new();
    let server = python_tls("stall_record", &files.cert, &files.key);
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let t = Instant::now();
    let v = load(
        b,
        &[
            "--cacert",
            files.ca(),
            "-n",
            "2",
            "-c",
            "2",
            "--timeout",
            "1s",
            &url,
        ],
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert_eq!(n(&v, "/errors/timeout"), 2, "{v}");
}

/// A TLS server behind an `http://` URL (ours, rustls: it answers the
/// plaintext request with an alert) is named as such.
pub fn a_tls_server_behind_http_is_named(b: &[&str]) {
    let (options, _cert) =
        uringfetch::testing::ServeOptions::in_process_tls(Duration::ZERO).unwrap();
    let server = uringfetch::testing::server::start(options).unwrap();
    let url = format!("http://{}/foo", server.addr);
    let (out, err) = get(b, &[&url]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("answered with TLS") && err.contains("https://"),
        "{err}"
    );
    let v = load(b, &["-n", "4", "-c", "2", &url]);
    assert_eq!(n(&v, "/errors/tls_on_http"), 4, "{v}");
}

/// `--connect-to` and `--resolve` send a URL's requests elsewhere, while
/// SNI, the certificate check and `Host` keep the URL's name: nginx's
/// certificate covers `uringfetch.test`, a name that never resolves.
pub fn routes_keep_the_url_name(b: &[&str]) {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    let port = nginx.tls_port;
    let to = format!("uringfetch.test:443:127.0.0.1:{port}");
    let (out, err) = get(
        b,
        &[
            "--cacert",
            files.ca(),
            "--connect-to",
            &to,
            "https://uringfetch.test/bar",
        ],
    );
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, b"bar\n");
    let url = format!("https://uringfetch.test:{port}/bar");
    let rule = format!("uringfetch.test:{port}:127.0.0.1");
    let v = load(
        b,
        &[
            "--cacert",
            files.ca(),
            "--resolve",
            &rule,
            "-n",
            "20",
            "-c",
            "2",
            &url,
        ],
    );
    assert_eq!(n(&v, "/requests/completed"), 20, "{v}");
    assert_eq!(n(&v, "/status/200"), 20, "{v}");
    // The name checked is the URL's, not the one connected to: a name the
    // certificate lacks fails however the connection is routed.
    let (out, err) = get(
        b,
        &[
            "--cacert",
            files.ca(),
            "--connect-to",
            &format!("other.test:443:localhost:{port}"),
            "https://other.test/bar",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("other.test"), "{err}");
}

macro_rules! tls_suite {
    ($($module:ident => [$($arg:literal),+]),* $(,)?) => {$(
        mod $module {
            const B: &[&str] = &["--backend", $($arg),+];
            #[test] fn bodies_are_byte_exact_with_curl() { super::bodies_are_byte_exact_with_curl(B) }
            #[test] fn counts_add_up_with_and_without_resumption() {
                super::counts_add_up_with_and_without_resumption(B)
            }
            #[test] fn certificate_problems_are_named() { super::certificate_problems_are_named(B) }
            #[test] fn handshake_failures_are_named() { super::handshake_failures_are_named(B) }
            #[test] fn close_notify_then_more_bytes() { super::close_notify_then_more_bytes(B) }
            #[test] fn a_stall_mid_record_is_a_timeout() { super::a_stall_mid_record_is_a_timeout(B) }
            #[test] fn a_tls_server_behind_http_is_named() { super::a_tls_server_behind_http_is_named(B) }
            #[test] fn routes_keep_the_url_name() { super::routes_keep_the_url_name(B) }
        }
    )*};
}

every_backend!(tls_suite);

/// `--cert/--key`: nginx that wants a client certificate gets one; without
/// it, nginx answers 400.
#[test]
fn client_certificates_are_presented() {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    let url = format!("https://127.0.0.1:{}/bar", nginx.client_auth_port);
    let (cert, key) = (
        files.client.0.to_str().unwrap(),
        files.client.1.to_str().unwrap(),
    );
    let out = uringfetch(
        &[
            "get",
            "-i",
            "--cacert",
            files.ca(),
            "--cert",
            cert,
            "--key",
            key,
            &url,
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("HTTP/1.1 200"), "{}", stdout(&out));
    let out = uringfetch(&["get", "-i", "--cacert", files.ca(), &url], LIMIT);
    assert!(stdout(&out).starts_with("HTTP/1.1 400"), "{}", stdout(&out));
    // A key that is not a key: one line naming the file.
    let out = uringfetch(
        &[
            "get",
            "--cacert",
            files.ca(),
            "--cert",
            cert,
            "--key",
            cert,
            &url,
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--key"), "{}", stderr(&out));
}

/// Bad TLS options are usage errors, caught before any connection.
#[test]
fn bad_tls_files_are_named() {
    let out = uringfetch(
        &[
            "get",
            "--cacert",
            "/nonexistent/ca.pem",
            "https://127.0.0.1:9/",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--cacert /nonexistent/ca.pem"),
        "{}",
        stderr(&out)
    );
    // A plaintext run never reads them.
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/foo", server.addr);
    let out = uringfetch(&["get", "--cacert", "/nonexistent/ca.pem", &url], LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The text report shows handshake times and counts; compare runs each
/// backend from no session cache.
#[test]
fn reports_show_handshakes() {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    let url = format!("https://127.0.0.1:{}/bar", nginx.tls_port);
    let out = uringfetch(
        &[
            "load",
            "--cacert",
            files.ca(),
            "-n",
            "50",
            "-c",
            "2",
            "--disable-keepalive",
            &url,
        ],
        LIMIT,
    );
    let text = stdout(&out);
    assert!(text.contains("TLS handshake: p50"), "{text}");
    assert!(text.contains("TLS handshakes: 50 ("), "{text}");
    let compare = |format: &str| {
        let args = [
            "compare",
            "--cacert",
            files.ca(),
            "-n",
            "20",
            "-c",
            "2",
            "--backends",
            "uring-loop,epoll-loop",
            "--pause",
            "0s",
            "-o",
            format,
            &url,
        ];
        uringfetch(&args, LIMIT)
    };
    let out = compare("text");
    let text = stdout(&out);
    assert!(text.contains("full/resumed"), "{text}");
    // Each row starts cold: its first connection makes a full handshake
    // (a connection whose worker starts after that handshake's ticket
    // came may resume it; one that starts after the 20 requests are done
    // makes none).
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("uring-loop") || l.starts_with("epoll-loop"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in rows {
        let last = row.split_whitespace().last().unwrap_or_default();
        assert!(["1/0", "2/0", "1/1"].contains(&last), "{text}");
    }
    let out = compare("json");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in v.as_array().unwrap() {
        let (all, resumed) = (n(row, "/tls/handshakes"), n(row, "/tls/resumed"));
        assert!(all > resumed, "{row}");
        assert_eq!(all, n(row, "/connections_opened"), "{row}");
    }
}

/// `demo --tls` and `compare --tls` run the article's experiment and the
/// comparison over HTTPS with nothing to set up.
#[test]
fn demo_and_compare_run_over_https_with_nothing_to_set_up() {
    let out = uringfetch(&["demo", "--tls", "--delay", "200ms"], LIMIT);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("on https://127.0.0.1:"), "{text}");
    assert!(text.contains("2 requests, 2 ok, 0 errors"), "{text}");
    let out = uringfetch(
        &[
            "compare",
            "--tls",
            "-n",
            "200",
            "-c",
            "4",
            "--backends",
            "uring-loop,threads",
            "--pause",
            "0s",
            "--output",
            "json",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 4, "2 backends in 2 scenarios: {v}");
    for r in rows {
        assert_eq!(n(r, "/requests/errors"), 0, "{r}");
        assert!(n(r, "/tls/handshakes") > 0, "{r}");
        assert!(
            r["urls"][0].as_str().unwrap().starts_with("https://"),
            "{r}"
        );
    }
}

/// `--ktls`: where the kernel has kernel TLS (the Debian 6.1 guest of
/// `tests/kernels/run` proves the exchange itself), a run on uring-loop
/// hands every connection's keys to it and the report counts them; where
/// it has none (this CI host), `--ktls on` is refused with the reason and
/// `auto` runs in userspace and says why. A backend that keeps TLS in
/// userspace is refused `--ktls on` everywhere.
#[test]
fn kernel_tls_is_used_or_its_absence_is_said() {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    let url = format!("https://127.0.0.1:{}/bar", nginx.tls_port);
    let doctor = stdout(&uringfetch(&["doctor"], LIMIT));
    let available = doctor.contains("kernel tls  available");
    let run = |extra: &[&str]| {
        let args = [
            &["load", "--cacert", files.ca(), "-n", "40", "-c", "2"][..],
            extra,
            &["--output-format", "json", &url],
        ]
        .concat();
        uringfetch(&args, LIMIT)
    };
    let out = run(&["--ktls", "on"]);
    if available {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["tls"]["kernel"], 2, "{json}");
    } else {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--ktls on: kernel TLS is not available: "),
            "{err}"
        );
        assert!(err.contains("tls"), "{err}");
        let out = run(&["--ktls", "auto"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let tls = &json["tls"];
        assert_eq!(tls["kernel"], 0, "{json}");
        assert!(
            tls["userspace_because"]
                .as_str()
                .is_some_and(|s| s.contains("tls")),
            "{json}"
        );
    }
    let out = run(&["--ktls", "off"]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["tls"]["kernel"], 0, "{json}");
    assert_eq!(json["tls"]["userspace_because"], "--ktls off", "{json}");
    let out = run(&["--ktls", "on", "--backend", "uring-async"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uring-async keeps TLS in userspace"),
        "{}",
        stderr(&out)
    );
}

/// Every reconnect resumes once the first handshakes brought tickets,
/// even with many connections reconnecting at once: each TLS 1.3 ticket
/// resumes one connection, and rustls' own store keeps 8 per server (at
/// 64 connections a quarter of the handshakes were full ones).
#[test]
fn many_connections_reconnecting_at_once_all_resume() {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    let url = format!("https://127.0.0.1:{}/bar", nginx.tls_port);
    let out = uringfetch(
        &[
            "load",
            "--cacert",
            files.ca(),
            "-n",
            "1280",
            "-c",
            "64",
            "-t",
            "1",
            "--disable-keepalive",
            "--output-format",
            "json",
            &url,
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let handshakes = json["tls"]["handshakes"].as_u64().unwrap();
    let resumed = json["tls"]["resumed"].as_u64().unwrap();
    assert_eq!(handshakes, 1280, "{json}");
    // The first wave of 64 has nothing to resume; a few more may start
    // before the first tickets arrive.
    assert!(
        resumed >= 1280 - 64 - 32,
        "{resumed} of {handshakes} resumed"
    );
}

/// `--tls-max 1.2` (curl's name) offers TLS 1.2 alone: nginx answers
/// over it, and a TLS 1.3-only server refuses the handshake.
#[test]
fn tls_max_offers_tls_1_2_alone() {
    let files = TlsFiles::new();
    let nginx = nginx_tls(&files);
    let url = format!("https://127.0.0.1:{}/bar", nginx.tls_port);
    let (out, err) = get(&[], &["--cacert", files.ca(), "--tls-max", "1.2", &url]);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let only13 = python_tls("tls13", &files.cert, &files.key);
    let url = format!("https://127.0.0.1:{}/", only13.addr.port());
    let (out, err) = get(&[], &["--cacert", files.ca(), &url]);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let (out, err) = get(&[], &["--cacert", files.ca(), "--tls-max", "1.2", &url]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS handshake"), "{err}");
}

/// A self-signed CA certificate used as the server's own (what a plain
/// `openssl req -x509` makes) is refused by rustls even when trusted; the
/// message says so and how to make one it takes, not a debug dump.
#[test]
fn a_ca_certificate_as_the_servers_own_is_named() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use uringfetch::testing::{ServeOptions, server};
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let tls = server::config_from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
    let running = server::start(ServeOptions {
        tls: Some(tls),
        ..ServeOptions::in_process(Duration::ZERO)
    })
    .unwrap();
    let dir = temp_dir("ca-as-leaf");
    let ca = dir.join("cert.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let url = format!("https://{}/foo", running.addr);
    let (out, err) = get(&[], &["--cacert", ca.to_str().unwrap(), &url]);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is a CA certificate") && err.contains("CA:FALSE") && !err.contains("Other("),
        "{err}"
    );
    running.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}
