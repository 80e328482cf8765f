//! A minimal blocking HTTP/1.1 server for `doctor --self-test` where the
//! demo server cannot run: the demo server is built on io_uring, so a
//! kernel or container that refuses io_uring would otherwise leave the
//! readiness and blocking backends with nothing to test against.
//!
//! It answers `/foo` and `/bar` like the demo server (no delay) and 404
//! otherwise, keeps connections alive, and follows pipelined heads. One
//! thread per connection; loopback only, by its caller's choice of address.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Largest request head read before the connection is dropped.
const MAX_HEAD: usize = 16 * 1024;

/// A running fallback server; `shutdown` stops accepting.
pub struct FallbackServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FallbackServer {
    /// Listens on `addr` (port 0 picks one) and starts accepting.
    pub fn start(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = std::thread::Builder::new()
            .name("doctor-fallback".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(stream) = conn {
                        // A connection whose thread cannot start is dropped:
                        // the client sees it closed and counts an error.
                        let _ = std::thread::Builder::new()
                            .name("doctor-conn".into())
                            .spawn(move || serve(stream));
                    }
                }
            })?;
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// Stops accepting; connections still open end when their clients close.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocked accept so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// The answer to one request head, and whether to keep the connection.
fn answer(head: &[u8]) -> (Vec<u8>, bool) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let path = parts.nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let http10 = parts.next() == Some("HTTP/1.0");
    let close_asked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("connection:") && l.contains("close")
    });
    let keep = !http10 && !close_asked;
    let (status, body) = match path {
        "/foo" => ("200 OK", "<h1>foo!</h1>"),
        "/bar" => ("200 OK", "<h1>bar!</h1>"),
        _ => ("404 Not Found", "not found\n"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
        body.len(),
        if keep { "keep-alive" } else { "close" }
    );
    (response.into_bytes(), keep)
}

/// Serves one connection until the client closes it or asks to.
fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let (response, keep) = answer(&buf[..end]);
            buf.drain(..end + 4);
            if stream.write_all(&response).is_err() || !keep {
                return;
            }
        }
        if buf.len() > MAX_HEAD {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_like_the_demo_server() {
        let (r, keep) = answer(b"GET /bar HTTP/1.1\r\nHost: x");
        assert!(keep);
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n<h1>bar!</h1>"), "{r}");
        let (r, keep) = answer(b"GET /nope?x=1 HTTP/1.0");
        assert!(!keep);
        assert!(String::from_utf8(r).unwrap().contains("404"));
        let (_, keep) = answer(b"GET /foo HTTP/1.1\r\nConnection: close");
        assert!(!keep);
    }
}
