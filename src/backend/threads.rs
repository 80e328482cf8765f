//! Blocking model: `std::net` sockets, one OS thread per connection.
//!
//! This is the model the article argues against, kept as the baseline: each
//! request blocks its thread in connect, write and read. `get --sequential`
//! is the article's synchronous client on the same code.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{ConnOptions, Fetched};
use crate::error::{ErrorKind, FetchError};
use crate::http::{Progress, Response, ResponseParser};
use crate::target::Target;

const FETCH_BUF: usize = 64 * 1024;

/// Opens a blocking connection, optionally from a given source address.
pub(crate) fn connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    limit: Option<Duration>,
) -> Result<TcpStream, FetchError> {
    let map = |e: io::Error| match (e.kind(), limit) {
        (io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock, Some(d)) => {
            FetchError::connect_timeout(d, addr)
        }
        _ => FetchError::connect(&e, addr),
    };
    let stream = match bind {
        None => match limit {
            Some(d) => TcpStream::connect_timeout(&addr, d),
            None => TcpStream::connect(addr),
        }
        .map_err(map)?,
        Some(ip) => {
            let socket =
                super::bound_socket(addr, ip).map_err(|e| FetchError::connect(&e, addr))?;
            match limit {
                Some(d) => socket.connect_timeout(&addr.into(), d),
                None => socket.connect(&addr.into()),
            }
            .map_err(map)?;
            socket.into()
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The per-connection state an exchange works with, kept across requests.
pub(crate) struct SlotIo {
    pub parser: ResponseParser,
    pub buf: Vec<u8>,
    /// Bytes read and written, counted as they go.
    pub read: u64,
    pub written: u64,
}

impl SlotIo {
    pub fn new(collect: bool, capacity: usize) -> Self {
        Self {
            parser: ResponseParser::new(collect),
            buf: vec![0; capacity],
            read: 0,
            written: 0,
        }
    }
}

/// Sends one request and reads its response before `deadline` (the instant
/// and the limit it came from). Returns the response and how many bytes
/// followed it in the last read; on failure, the error and whether any
/// response byte had arrived.
pub(crate) fn exchange(
    stream: &mut TcpStream,
    peer: SocketAddr,
    target: &Target,
    io: &mut SlotIo,
    deadline: Option<(Instant, Duration)>,
) -> Result<(Response, usize), (FetchError, bool)> {
    let remaining =
        |deadline: Option<(Instant, Duration)>| -> Result<Option<Duration>, (FetchError, bool)> {
            match deadline {
                None => Ok(None),
                Some((at, limit)) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        Err((FetchError::timeout(limit), false))
                    } else {
                        Ok(Some(left))
                    }
                }
            }
        };
    let timed_out = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    let limit = deadline.map(|(_, l)| l);
    let _ = stream.set_write_timeout(remaining(deadline)?);
    if let Err(e) = stream.write_all(&target.request) {
        let err = match (timed_out(&e), limit) {
            (true, Some(l)) => FetchError::timeout(l),
            _ => FetchError::io(&e, peer),
        };
        return Err((err, false));
    }
    io.written += target.request.len() as u64;
    io.parser.reset(target.head_request);
    loop {
        let left = remaining(deadline).map_err(|(e, _)| (e, io.parser.started()))?;
        let _ = stream.set_read_timeout(left);
        let n = match stream.read(&mut io.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let err = match (timed_out(&e), limit) {
                    (true, Some(l)) => FetchError::timeout(l),
                    _ => FetchError::io(&e, peer),
                };
                return Err((err, io.parser.started()));
            }
        };
        io.read += n as u64;
        if n == 0 {
            let started = io.parser.started();
            return io
                .parser
                .feed_eof()
                .map(|r| (r, 0))
                .map_err(|e| (FetchError::http(&e, peer), started));
        }
        match io.parser.feed(&io.buf[..n]) {
            Ok(Progress::NeedMore) => {}
            Ok(Progress::Done(r)) => {
                let trailing = n.saturating_sub(r.consumed);
                return Ok((r, trailing));
            }
            Err(e) => return Err((FetchError::http(&e, peer), true)),
        }
    }
}

/// Fetches one target with a blocking socket, keeping head and body.
pub fn fetch_one(target: &Target, opts: &ConnOptions) -> Result<Fetched, FetchError> {
    let start = Instant::now();
    let peer = target.addr;
    let mut stream = connect(peer, opts.bind.first().copied(), opts.connect_timeout)?;
    let mut io = SlotIo::new(true, FETCH_BUF);
    let deadline = opts.timeout.map(|t| (start + t, t));
    let (response, trailing) =
        exchange(&mut stream, peer, target, &mut io, deadline).map_err(|(e, _)| e)?;
    if trailing > 0 {
        return Err(FetchError::new(
            ErrorKind::BadResponse,
            format!(
                "bad response from {peer}: {trailing} bytes after the end of the response (body longer than its Content-Length?)"
            ),
        ));
    }
    Ok(Fetched {
        response,
        head: io.parser.head().to_vec(),
        body: io.parser.body().to_vec(),
        peer,
    })
}
