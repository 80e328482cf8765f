//! The I/O side of one `uring-loop` connection slot (its session holds the
//! rest), and the socket calls that stay outside the ring.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{IntoRawFd, RawFd};
use std::time::Instant;

/// What the loop knows of a slot's socket and its operations.
pub struct SlotIo {
    /// Bumped whenever the connection closes: completions of the old
    /// connection's operations carry the old value and are not applied.
    pub generation: u32,
    /// The socket; -1 for none. With direct descriptors, the slot's index
    /// in the ring's file table while one is open.
    pub fd: RawFd,
    /// A receive of the current connection is armed.
    pub recv_armed: bool,
    /// A send of the current connection that posts its completion is out.
    pub sending: bool,
    /// The plain receives' buffer (5.10 profile, or no buffer ring); `None`
    /// while a receive owns it (see `ops`), which may outlive the
    /// connection it was armed for: a new one waits for it.
    pub buf: Option<Vec<u8>>,
    /// The slot holds a connect turn.
    pub turn: bool,
    /// The slot waits for a turn: it is on the loop's wait list (once).
    pub waiting: bool,
    /// Deadline of the slot's live timer entry.
    pub armed: Option<Instant>,
    /// The session's requests under way when last driven (its share of
    /// the loop's count, see `Session::in_flight`).
    pub busy: usize,
    pub done: bool,
}

impl SlotIo {
    pub fn new(buf_size: usize) -> Self {
        Self {
            generation: 0,
            fd: -1,
            recv_armed: false,
            sending: false,
            buf: (buf_size > 0).then(|| vec![0; buf_size]),
            turn: false,
            waiting: false,
            armed: None,
            busy: 0,
            done: false,
        }
    }
}

/// A blocking TCP socket for `addr` (io_uring does the non-blocking
/// attempts and polling itself), bound to `bind` if given.
pub fn open_socket(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<RawFd> {
    let socket = match bind {
        Some(ip) => super::super::bound_socket(addr, ip)?,
        None => socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?,
    };
    // As on every other backend (see `NODELAY_ON`).
    let _ = socket.set_nodelay(true);
    Ok(socket.into_raw_fd())
}

/// TCP_NODELAY's value for SETSOCKOPT on a direct socket; static, so the
/// pointer an SQE holds to it stays valid whenever the kernel reads it.
///
/// Without it, Nagle's algorithm holds a small send back while an earlier
/// one is unacknowledged, and the server's delayed ACK (40 ms) releases it:
/// an HTTP/1.1 exchange is safe (the response acknowledges the request),
/// but an HTTP/2 connection sends new streams while others are in flight,
/// and at 64 connections x 10 streams to nginx a few percent of its
/// requests waited so (p99 1.5-2x h2load's at the same p50).
pub static NODELAY_ON: libc::c_int = 1;

/// Shuts a socket down, which completes any receive pending on it.
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor the caller owns and has not
    // closed; it touches no memory of ours.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Closes sockets whose slots forgot them (see `Loop::close`).
pub fn close_all(fds: &mut Vec<RawFd>) {
    for fd in fds.drain(..) {
        // SAFETY: each descriptor was owned by a slot that forgot it when
        // queueing it here, and is closed once. A pending io_uring
        // operation holds its own reference to the file, so closing our
        // descriptor cannot free it under the kernel.
        unsafe {
            libc::close(fd);
        }
    }
}
