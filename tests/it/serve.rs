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
