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

/// Sends one request and reads its response before `deadline`. Returns the
/// response and how many bytes followed it in the last read.
pub(crate) fn exchange(
    stream: &mut TcpStream,
    peer: SocketAddr,
    request: &[u8],
    head_request: bool,
    buf: &mut [u8],
    parser: &mut ResponseParser,
    deadline: Option<(Instant, Duration)>,
    io_bytes: &mut (u64, u64),
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
    if let Err(e) = stream.write_all(request) {
        let err = match (timed_out(&e), limit) {
            (true, Some(l)) => FetchError::timeout(l),
            _ => FetchError::io(&e, peer),
        };
        return Err((err, false));
    }
    io_bytes.1 += request.len() as u64;
    parser.reset(head_request);
    loop {
        let _ =
            stream.set_read_timeout(remaining(deadline).map_err(|(e, _)| (e, parser.started()))?);
        let n = match stream.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let err = match (timed_out(&e), limit) {
                    (true, Some(l)) => FetchError::timeout(l),
                    _ => FetchError::io(&e, peer),
                };
                return Err((err, parser.started()));
            }
        };
        io_bytes.0 += n as u64;
        if n == 0 {
            let started = parser.started();
            return parser
                .feed_eof()
                .map(|r| (r, 0))
                .map_err(|e| (FetchError::http(&e, peer), started));
        }
        match parser.feed(&buf[..n]) {
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
    let mut parser = ResponseParser::new(true);
    let mut buf = vec![0u8; FETCH_BUF];
    let deadline = opts.timeout.map(|t| (start + t, t));
    let mut io_bytes = (0, 0);
    let (response, trailing) = exchange(
        &mut stream,
        peer,
        &target.request,
        target.head_request,
        &mut buf,
        &mut parser,
        deadline,
        &mut io_bytes,
    )
    .map_err(|(e, _)| e)?;
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
        head: parser.head().to_vec(),
        body: parser.body().to_vec(),
        peer,
    })
}
