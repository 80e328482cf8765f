//! The integration scenarios, run on every backend through one macro: a new
//! backend gets the whole suite by adding one line to `backend_suite!`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::load::{assert_counts_add_up, load_json};
use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

fn load(backend: &str, args: &[&str]) -> Value {
    let mut all = vec!["--backend", backend];
    all.extend_from_slice(args);
    let v = load_json(&all);
    assert_eq!(v["backend"], backend);
    assert_counts_add_up(&v);
    v
}

pub fn get_fetches_concurrently(backend: &str) {
    let server = demo_server(Duration::from_millis(300));
    let bar = format!("http://{}/bar", server.addr);
    let foo_url = format!("http://{}/foo", server.addr);
    let t = Instant::now();
    let out = uringfetch(&["get", "--backend", backend, &bar, &foo_url], LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<h1>bar!</h1><h1>foo!</h1>");
    assert!(
        t.elapsed() < Duration::from_millis(580),
        "{:?}",
        t.elapsed()
    );
    server.shutdown();
}

pub fn get_reads_close_delimited_http10(backend: &str) {
    let py = python_http_server();
    let url = format!("http://{}/", py.addr);
    let out = uringfetch(&["get", "--backend", backend, &url], LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, curl(&url, false));
}

pub fn get_reports_refused(backend: &str) {
    let out = uringfetch(&["get", "--backend", backend, "http://127.0.0.1:9/"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("connection refused: 127.0.0.1:9"),
        "{}",
        stderr(&out)
    );
}

pub fn keepalive_reuses_connections(backend: &str) {
    let server = demo_server(Duration::ZERO);
    let v = load(
        backend,
        &[
            "-n",
            "2000",
            "-c",
            "8",
            &format!("http://{}/bar", server.addr),
        ],
    );
    assert_eq!(n(&v, "/status/200"), 2000);
    assert_eq!(n(&v, "/connections_opened"), 8);
    assert_eq!(n(&v, "/reconnects"), 0);
    server.shutdown();
}

pub fn server_close_is_reconnected(backend: &str) {
    let server = demo_server(Duration::ZERO);
    let v = load(
        backend,
        &[
            "-n",
            "200",
            "-c",
            "4",
            &format!("http://{}/close", server.addr),
        ],
    );
    assert_eq!(n(&v, "/requests/completed"), 200);
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    assert!(n(&v, "/reconnects") >= 190, "{v}");
    server.shutdown();
}

pub fn chunked_and_post_bodies(backend: &str) {
    let server = demo_server(Duration::ZERO);
    let chunked = format!("http://{}/chunked/2500", server.addr);
    let bar = format!("http://{}/bar", server.addr);
    let v = load(
        backend,
        &[
            "-n", "300", "-c", "3", "-m", "POST", "-d", "x=1", &chunked, &bar,
        ],
    );
    assert_eq!(n(&v, "/status/200"), 300);
    assert!(n(&v, "/bytes/read") > 150 * 2500, "{v}");
    server.shutdown();
}

pub fn disable_keepalive_and_bind(backend: &str) {
    let server = demo_server(Duration::ZERO);
    let url = format!("http://{}/bar", server.addr);
    let v = load(
        backend,
        &[
            "-n",
            "200",
            "-c",
            "4",
            "--disable-keepalive",
            "--bind",
            "127.0.0.2-127.0.0.3",
            &url,
        ],
    );
    assert_eq!(n(&v, "/status/200"), 200);
    assert_eq!(n(&v, "/connections_opened"), 200);
    server.shutdown();
}

pub fn timeouts_are_counted(backend: &str) {
    let server = RawServer::start(|mut s| {
        let _ = read_head(&mut s);
        std::thread::sleep(Duration::from_secs(3));
    });
    let t = Instant::now();
    let v = load(
        backend,
        &["-n", "4", "-c", "2", "--timeout", "300ms", &server.url("/")],
    );
    assert_eq!(n(&v, "/errors/timeout"), 4, "{v}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
}

pub fn refused_is_counted(backend: &str) {
    let v = load(backend, &["-n", "20", "-c", "2", "http://127.0.0.1:9/"]);
    assert_eq!(n(&v, "/errors/refused"), 20);
}

pub fn open_loop_rate(backend: &str) {
    let server = demo_server(Duration::ZERO);
    let v = load(
        backend,
        &[
            "-q",
            "200",
            "-z",
            "1s",
            "-c",
            "4",
            &format!("http://{}/bar", server.addr),
        ],
    );
    let issued = n(&v, "/requests/issued");
    assert!(
        (198..=200).contains(&issued),
        "200 scheduled before 1 s, issued {issued}"
    );
    assert_eq!(n(&v, "/requests/errors"), 0);
    server.shutdown();
}

pub fn in_flight_at_deadline(backend: &str) {
    let server = demo_server(Duration::from_secs(2));
    let t = Instant::now();
    let v = load(
        backend,
        &[
            "-z",
            "500ms",
            "-c",
            "5",
            &format!("http://{}/bar", server.addr),
        ],
    );
    assert!(
        t.elapsed() < Duration::from_millis(1800),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(n(&v, "/requests/in_flight"), 5, "{v}");
    assert_eq!(n(&v, "/requests/errors"), 0, "{v}");
    server.shutdown();
}

pub fn garbage_is_a_bad_response(backend: &str) {
    let server = RawServer::start(|mut s| {
        while read_head(&mut s).is_some() {
            send(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n");
        }
    });
    let v = load(backend, &["-n", "10", "-c", "2", &server.url("/")]);
    assert_eq!(n(&v, "/errors/bad_response"), 10, "{v}");
}

/// Generates one test module per backend with every scenario above.
macro_rules! backend_suite {
    ($($module:ident => $name:literal),* $(,)?) => {$(
        mod $module {
            #[test] fn get_fetches_concurrently() { super::get_fetches_concurrently($name) }
            #[test] fn get_reads_close_delimited_http10() { super::get_reads_close_delimited_http10($name) }
            #[test] fn get_reports_refused() { super::get_reports_refused($name) }
            #[test] fn keepalive_reuses_connections() { super::keepalive_reuses_connections($name) }
            #[test] fn server_close_is_reconnected() { super::server_close_is_reconnected($name) }
            #[test] fn chunked_and_post_bodies() { super::chunked_and_post_bodies($name) }
            #[test] fn disable_keepalive_and_bind() { super::disable_keepalive_and_bind($name) }
            #[test] fn timeouts_are_counted() { super::timeouts_are_counted($name) }
            #[test] fn refused_is_counted() { super::refused_is_counted($name) }
            #[test] fn open_loop_rate() { super::open_loop_rate($name) }
            #[test] fn in_flight_at_deadline() { super::in_flight_at_deadline($name) }
            #[test] fn garbage_is_a_bad_response() { super::garbage_is_a_bad_response($name) }
        }
    )*};
}

backend_suite! {
    uring_async => "uring-async",
}
