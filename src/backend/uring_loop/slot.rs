//! One connection slot of the `uring-loop` slab: its state machine, the
//! socket calls that stay outside the ring, and feeding received bytes to
//! the sans-IO parser (several pipelined responses per read).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{IntoRawFd, RawFd};
use std::time::Instant;

use crate::http::{HttpError, Progress, Response, ResponseParser};
use crate::plan::Ticket;

/// Where a slot is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its next ticket (its connection, if any, is idle).
    Free,
    /// Holding an open-loop ticket whose time has not come.
    Scheduled,
    /// CONNECT submitted.
    Connecting,
    /// Request sent (or being sent); response(s) awaited.
    Exchanging,
}

/// A connection slot. Slots live in a Vec that is never resized, so the
/// addresses of `sockaddr` and `buf` stay valid while the kernel uses them.
pub struct Slot {
    /// Bumped whenever the connection closes; see the module docs of `uring_loop`.
    pub generation: u32,
    pub state: State,
    pub fd: RawFd,
    /// Where the open connection goes.
    pub peer: Option<SocketAddr>,
    pub sockaddr: socket2::SockAddr,
    /// Index of the current request's target.
    pub target: usize,
    /// Tickets whose responses are awaited, oldest first (several when pipelined).
    pub tickets: VecDeque<Ticket>,
    pub parser: ResponseParser,
    pub head_request: bool,
    /// Receive buffer for plain (not multishot) receives; empty otherwise.
    pub buf: Vec<u8>,
    pub sent_at: Instant,
    /// Bytes of the current write, and how many the kernel took so far.
    pub send_total: usize,
    pub send_done: usize,
    /// The deadline, and whether it is the connect timeout (else the request's).
    pub deadline: Option<(Instant, bool)>,
    pub connect_started: Instant,
    /// Responses on the current connection: > 0 means it was reused.
    pub served: u64,
    pub retried: bool,
    pub ever_connected: bool,
    pub recv_armed: bool,
    /// Only the timer carrying the current stamp is live.
    pub timer_stamp: u32,
}

impl Slot {
    pub fn new(collect: bool, buf_size: usize, pipeline: usize) -> Self {
        let now = Instant::now();
        Self {
            generation: 0,
            state: State::Free,
            fd: -1,
            peer: None,
            sockaddr: socket2::SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
            target: 0,
            tickets: VecDeque::with_capacity(pipeline),
            parser: ResponseParser::new(collect),
            head_request: false,
            buf: vec![0; buf_size],
            sent_at: now,
            send_total: 0,
            send_done: 0,
            deadline: None,
            connect_started: now,
            served: 0,
            retried: false,
            ever_connected: false,
            recv_armed: false,
            timer_stamp: 0,
        }
    }

    /// Waiting on the kernel (connect or response).
    pub fn is_busy(&self) -> bool {
        matches!(self.state, State::Connecting | State::Exchanging)
    }

    /// Invalidates the slot's previous timer; returns the new stamp.
    pub fn new_timer(&mut self) -> u32 {
        self.timer_stamp = self.timer_stamp.wrapping_add(1);
        self.timer_stamp
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
    Ok(socket.into_raw_fd())
}

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

/// What feeding bytes produced.
pub struct Fed {
    pub error: Option<HttpError>,
    /// Bytes that came after the last awaited response.
    pub trailing: usize,
}

/// Feeds received bytes; completed responses go to `out` (one per awaited
/// ticket at most), the rest is reported as trailing.
pub fn feed(s: &mut Slot, mut bytes: &[u8], out: &mut Vec<Response>) -> Fed {
    loop {
        if s.state != State::Exchanging || out.len() >= s.tickets.len() {
            return Fed {
                error: None,
                trailing: bytes.len(),
            };
        }
        match s.parser.feed(bytes) {
            Ok(Progress::NeedMore) => {
                return Fed {
                    error: None,
                    trailing: 0,
                };
            }
            Ok(Progress::Done(r)) => {
                let rest = bytes.get(r.consumed..).unwrap_or_default();
                out.push(r);
                if out.len() >= s.tickets.len() {
                    return Fed {
                        error: None,
                        trailing: rest.len(),
                    };
                }
                // More pipelined responses are awaited: the parser starts over.
                s.parser.reset(s.head_request);
                if rest.is_empty() {
                    return Fed {
                        error: None,
                        trailing: 0,
                    };
                }
                bytes = rest;
            }
            Err(e) => {
                return Fed {
                    error: Some(e),
                    trailing: 0,
                };
            }
        }
    }
}

/// [`feed`] from the slot's own receive buffer (plain receives).
pub fn feed_own(s: &mut Slot, len: usize, out: &mut Vec<Response>) -> Fed {
    let buf = std::mem::take(&mut s.buf);
    let fed = feed(s, &buf[..len.min(buf.len())], out);
    s.buf = buf;
    fed
}
