//! The per-connection state of an exchange and the step every backend
//! takes after a read: feed the bytes to the sans-IO parser and decide.
//! Kept in one place so that no backend parses, counts or classifies a
//! response differently from another.

use std::net::SocketAddr;

use crate::error::FetchError;
use crate::http::{Progress, Response, ResponseParser};

/// The state an exchange works with, kept across a connection slot's
/// requests so the steady state allocates nothing.
pub(crate) struct SlotIo {
    pub parser: ResponseParser,
    /// Receive buffer of `capacity` bytes (a backend that lends it to the
    /// kernel by ownership may shorten it between reads).
    pub buf: Vec<u8>,
    pub capacity: usize,
    /// Bytes moved, counted as they go so a cut-off request still counts.
    pub read: u64,
    pub written: u64,
}

impl SlotIo {
    /// `collect` keeps the response head and body (for `get`).
    pub fn new(collect: bool, capacity: usize) -> Self {
        Self {
            parser: ResponseParser::new(collect),
            buf: vec![0; capacity],
            capacity,
            read: 0,
            written: 0,
        }
    }
}

/// Why an exchange failed, and whether any response byte had arrived (a
/// reused connection that fails before any byte may be retried once).
pub(crate) struct ExchangeError {
    pub error: FetchError,
    pub started: bool,
}

impl ExchangeError {
    /// An OS error; `started` says whether response bytes had arrived.
    pub fn io(e: &std::io::Error, peer: SocketAddr, started: bool) -> Self {
        Self {
            error: FetchError::io(e, peer),
            started,
        }
    }
}

/// What one read decided.
pub(crate) enum Step {
    /// The response is not complete yet.
    NeedMore,
    /// The response, and how many bytes of the read followed it.
    Done(Response, usize),
    Failed(ExchangeError),
}

/// Counts and parses the `n` bytes just read into `io.buf[..n]` (0: the
/// peer closed the connection).
pub(crate) fn parse_read(io: &mut SlotIo, n: usize, peer: SocketAddr) -> Step {
    io.read += n as u64;
    let progress = if n == 0 {
        let started = io.parser.started();
        io.parser
            .feed_eof()
            .map(Progress::Done)
            .map_err(|e| (e, started))
    } else {
        let data = io.buf.get(..n).unwrap_or_default();
        io.parser.feed(data).map_err(|e| (e, true))
    };
    match progress {
        Ok(Progress::NeedMore) => Step::NeedMore,
        Ok(Progress::Done(response)) => {
            let trailing = n.saturating_sub(response.consumed);
            Step::Done(response, trailing)
        }
        Err((e, started)) => Step::Failed(ExchangeError {
            error: FetchError::http(&e, peer),
            started,
        }),
    }
}
