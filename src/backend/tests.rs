//! Every backend against real sockets on 127.0.0.1: the demo server for
//! counts that add up, and a server that drops each kept-alive connection
//! right after its response, for the retry rule.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use super::{BackendKind, ConnOptions, Live};
use crate::plan::{Rate, Stop};
use crate::runner::{self, LoadConfig};
use crate::server::{self, ServeOptions};
use crate::target::{RequestOptions, Target};

fn target(url: &str) -> Target {
    Target::new(url, &RequestOptions::default()).expect("test URL")
}

fn load(kind: BackendKind, url: &str, n: u64, conn: ConnOptions) -> crate::stats::Recorder {
    let config = LoadConfig {
        backend: kind.into(),
        targets: Arc::new(vec![target(url)]),
        connections: 4,
        threads: 2,
        stop: Stop::Count(n),
        rate: Rate::Closed,
        conn: Arc::new(conn),
    };
    let outcome = runner::run(&config, Arc::new(Live::default()), |_| {}).expect("run");
    outcome.recorder
}

/// Answers one request per connection with keep-alive framing, then closes.
fn one_shot_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                std::thread::sleep(Duration::from_millis(2));
            });
        }
    });
    addr
}

#[test]
fn counts_add_up_on_the_demo_server() {
    let opts = ServeOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        delay: Duration::ZERO,
        threads: 1,
        ..ServeOptions::default()
    };
    let srv = server::start(opts).expect("demo server");
    let url = format!("http://{}/bar", srv.addr);
    for kind in BackendKind::ALL {
        let r = load(kind, &url, 300, ConnOptions::default());
        assert_eq!(
            (r.issued, r.completed(), r.error_count()),
            (300, 300, 0),
            "{kind}"
        );
        assert_eq!(r.connects, 4, "{kind}");
        let fetched = runner::fetch(
            kind,
            &[target(&url), target(&url)],
            &ConnOptions::default(),
            2,
        )
        .expect("fetch");
        for f in fetched {
            assert_eq!(f.expect("fetch").body, b"<h1>bar!</h1>", "{kind}");
        }
    }
    srv.shutdown();
}

#[test]
fn reused_connection_closed_by_the_server_is_retried() {
    let url = format!("http://{}/", one_shot_server());
    for kind in BackendKind::ALL {
        let r = load(kind, &url, 40, ConnOptions::default());
        assert_eq!(
            (r.completed(), r.error_count()),
            (40, 0),
            "{kind}: {:?}",
            r.errors
        );
        assert_eq!(r.connects, 40, "{kind}");
        // Every request after a connection's first found it closed and was
        // sent again: the report says so instead of hiding it.
        assert!(
            r.retries > 0 && r.retries < 40,
            "{kind}: {} retries",
            r.retries
        );
    }
}

#[test]
fn refused_connections_are_counted() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    for kind in BackendKind::ALL {
        let r = load(kind, &url, 10, ConnOptions::default());
        assert_eq!(
            r.errors.get(&crate::error::ErrorKind::Refused),
            Some(&10),
            "{kind}"
        );
    }
}

/// A source address bind(2) refuses during a run (the command line checks
/// its addresses first, but one can go away): every request is counted as
/// `address_unavailable` and the run ends on every backend (a slot lost on
/// that path once left `uring-loop` running for ever).
#[test]
fn a_failing_bind_is_counted_and_the_run_ends() {
    let opts = ServeOptions::in_process(Duration::ZERO);
    let srv = server::start(opts).expect("demo server");
    let url = format!("http://{}/bar", srv.addr);
    for kind in BackendKind::ALL {
        let conn = ConnOptions {
            bind: vec!["192.0.2.1".parse().expect("address")],
            ..ConnOptions::default()
        };
        let r = load(kind, &url, 6, conn);
        assert_eq!(
            r.errors.get(&crate::error::ErrorKind::AddressUnavailable),
            Some(&6),
            "{kind}: {:?}",
            r.errors
        );
        assert_eq!(r.completed(), 0, "{kind}");
    }
    srv.shutdown();
}
