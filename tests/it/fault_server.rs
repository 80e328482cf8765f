//! A loopback server that misbehaves on purpose, in the one way each test
//! picks: resets, closes mid-response, stalls, lies about lengths, sends
//! garbage or enormous heads, dribbles 10,000 tiny chunks, or refuses.
//!
//! Every accepted connection runs on its own thread and ends when the client
//! goes away or the server is dropped, so a test never leaves threads
//! blocked for long behind it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::read_request;

/// How the server misbehaves. Each variant answers every request the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sends the first N bytes of a valid response, then resets (RST).
    ResetAfter(usize),
    /// Sends part of the status line and headers, then closes (FIN).
    CloseMidHeaders,
    /// Sends the head and 10 of 100 body bytes, then closes.
    CloseMidBody,
    /// Reads the request and never answers (holds the connection).
    Stall,
    /// Answers with something that is not HTTP.
    Garbage,
    /// A chunked body whose first size line is not hex.
    BadChunkSize,
    /// `Content-Length: 100` with 10 bytes sent, and the connection held open.
    ContentLengthTooLong,
    /// `Content-Length: 2` followed by more bytes than that, in one write.
    ContentLengthTooShort,
    /// A 1 MiB header block.
    HugeHead,
    /// A valid chunked body of 10,000 one-byte chunks, written in odd pieces.
    TinyChunks,
    /// A valid response with `Connection: close`, then closes, every time.
    ConnectionClose,
    /// Serves N requests per connection, the last with `Connection: close`.
    KeepAliveLimit(usize),
    /// Accepts and never reads or writes (the client's send fills the buffers).
    NeverRead,
}

/// The body `TinyChunks` decodes to.
pub const TINY_CHUNKS: usize = 10_000;
/// Head of the response that faults cut short.
const FULL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Fault: yes\r\n\r\n";
/// The longest a held connection is kept, whatever the client does.
const HOLD_MAX: Duration = Duration::from_secs(10);

pub struct FaultServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FaultServer {
    pub fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_nodelay(true);
                    serve(stream, fault, &s);
                });
            }
        });
        Self {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A URL on a loopback port nothing listens on (bound, then released).
pub fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = l.local_addr().expect("local_addr");
    drop(l);
    format!("http://{addr}/")
}

fn serve(mut s: TcpStream, fault: Fault, stop: &AtomicBool) {
    if fault == Fault::NeverRead {
        return hold(&mut s, stop, false);
    }
    let mut served = 0;
    while read_request(&mut s).is_some() {
        served += 1;
        match fault {
            Fault::ResetAfter(n) => {
                let mut full = FULL.to_vec();
                full.extend_from_slice(&[b'x'; 100]);
                write(&mut s, &full[..n.min(full.len())]);
                return reset(s);
            }
            Fault::CloseMidHeaders => return write(&mut s, &FULL[..25]),
            Fault::CloseMidBody => return write(&mut s, &[FULL, b"only ten b"].concat()),
            Fault::Stall => return hold(&mut s, stop, true),
            Fault::Garbage => {
                write(&mut s, b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
                return hold(&mut s, stop, true);
            }
            Fault::BadChunkSize => {
                write(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                );
                return hold(&mut s, stop, true);
            }
            Fault::ContentLengthTooLong => {
                write(&mut s, &[FULL, b"only ten b"].concat());
                return hold(&mut s, stop, true);
            }
            Fault::ContentLengthTooShort => {
                write(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA BYTES",
                );
            }
            Fault::HugeHead => return write(&mut s, &huge_head()),
            Fault::TinyChunks => {
                for piece in tiny_chunks().chunks(997) {
                    write(&mut s, piece);
                }
            }
            Fault::ConnectionClose => {
                return write(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                );
            }
            Fault::KeepAliveLimit(n) if served >= n => {
                return write(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                );
            }
            Fault::KeepAliveLimit(_) => {
                write(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
            Fault::NeverRead => unreachable!("handled before the loop"),
        }
    }
}

fn write(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
}

/// Closes with SO_LINGER 0, which sends RST instead of FIN.
fn reset(s: TcpStream) {
    let sock = socket2::SockRef::from(&s);
    let _ = sock.set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Keeps the connection open until the client closes it (when `read`), the
/// server stops, or `HOLD_MAX` passes. Without `read`, nothing is read.
fn hold(s: &mut TcpStream, stop: &AtomicBool, read: bool) {
    let start = Instant::now();
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) && start.elapsed() < HOLD_MAX {
        if !read {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// `HTTP/1.1 200` and 1 MiB of headers of 1000 bytes each.
fn huge_head() -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
    let filler = "a".repeat(1000);
    let mut i = 0;
    while out.len() < 1024 * 1024 {
        out.extend_from_slice(format!("X-Filler-{i:05}: {filler}\r\n").as_bytes());
        i += 1;
    }
    out.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
    out
}

/// A chunked response of `TINY_CHUNKS` chunks of one byte each.
fn tiny_chunks() -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..TINY_CHUNKS {
        out.extend_from_slice(b"1\r\nx\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
