//! The non-blocking socket calls of the epoll loop: each does as much as
//! the socket allows and says whether to wait for the next edge.

use std::io::{self, Read as _, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;

/// Starts a non-blocking connect, from source address `bind` if given.
pub(super) fn start_connect(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = match bind {
        None => TcpStream::connect(addr)?,
        Some(ip) => TcpStream::from_std(crate::backend::connect_bound(addr, ip)?),
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

/// Writes what the socket takes of `bytes`: how many it took (0: none,
/// wait for the next writable edge).
pub(super) fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut off = 0;
    while off < bytes.len() {
        match stream.write(&bytes[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if off > 0 => {
                // Report what went out; the error comes again on the next write.
                let _ = e;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}

/// What one read found.
pub(super) enum Read {
    Data(usize),
    Eof,
    /// Nothing to read until the next edge.
    Drained,
    Error(io::Error),
}

pub(super) fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> Read {
    loop {
        return match stream.read(buf) {
            Ok(0) => Read::Eof,
            Ok(n) => Read::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Read::Error(e),
        };
    }
}
