//! The non-blocking I/O steps of one exchange, shared by the load loop and
//! `get`: each does as much as the socket allows and says whether to wait
//! for the next edge.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;

pub(super) use crate::backend::exchange::{ExchangeError, SlotIo};
use crate::backend::exchange::{Step, parse_read};
use crate::http::Response;

/// Starts a non-blocking connect, from source address `bind` if given.
pub(super) fn start_connect(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = match bind {
        None => TcpStream::connect(addr)?,
        Some(ip) => TcpStream::from_std(crate::backend::uring_async::connect_bound(addr, ip)?),
    };
    // Small requests must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// After an event on a connecting socket: `Ok(true)` connected, `Ok(false)`
/// not yet (a spurious wake-up), `Err` the connect failed (mio's recipe).
pub(super) fn connect_finished(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes what the socket takes of `req[*off..]`; `Ok(true)` once all of it is out.
pub(super) fn write_some(
    stream: &mut TcpStream,
    req: &[u8],
    off: &mut usize,
    io: &mut SlotIo,
) -> io::Result<bool> {
    while *off < req.len() {
        match stream.write(&req[*off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *off += n;
                io.written += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A response and how many bytes followed it in the same read.
pub(super) struct Exchanged {
    pub response: Response,
    pub trailing: usize,
    /// The last read filled the buffer: more bytes may be waiting.
    pub full: bool,
}

/// Reads until the response is complete (`Some`) or the socket is drained (`None`).
///
/// `peer_closed`: an event already reported the peer's FIN, RST or an
/// error. Then a short read does not mean the socket is drained: the close
/// is still queued behind the data and no further edge will announce it, so
/// reading goes on until it is seen.
pub(super) fn read_some(
    stream: &mut TcpStream,
    peer: SocketAddr,
    io: &mut SlotIo,
    peer_closed: bool,
) -> Result<Option<Exchanged>, ExchangeError> {
    loop {
        let n = match stream.read(&mut io.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ExchangeError::io(&e, peer, io.parser.started())),
        };
        match parse_read(io, n, peer) {
            // A short read emptied the socket: skip the read that would only
            // say WouldBlock (tokio does the same); the next edge comes
            // with the next bytes.
            Step::NeedMore if n < io.buf.len() && !peer_closed => return Ok(None),
            Step::NeedMore => {}
            Step::Done(response, trailing) => {
                let full = n == io.buf.len();
                return Ok(Some(Exchanged {
                    response,
                    trailing,
                    full,
                }));
            }
            Step::Failed(e) => return Err(e),
        }
    }
}
