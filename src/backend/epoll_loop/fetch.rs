//! `get` on the readiness loop: every URL on its own connection, all driven
//! by one epoll instance until each has a response or an error.

use std::io;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::steps::{connect_finished, read_some, start_connect, write_some};
use super::{FETCH_BUF, Phase, TICK, poll_error};
use crate::backend::exchange::SlotIo;
use crate::backend::{ConnOptions, Fetched};
use crate::error::{ErrorKind, FetchError};
use crate::target::Target;

/// One `get` fetch on the shared loop.
struct FetchSlot {
    conn: Option<TcpStream>,
    phase: Phase,
    written: usize,
    io: SlotIo,
    /// An event reported the peer's close or an error (see `read_some`).
    peer_closed: bool,
    result: Option<Result<Fetched, FetchError>>,
}

/// Fetches every target concurrently on one epoll instance.
pub fn fetch_all(
    targets: &[Target],
    opts: &ConnOptions,
) -> Result<Vec<Result<Fetched, FetchError>>, FetchError> {
    let poll = Poll::new().map_err(|e| poll_error(&e))?;
    let start = Instant::now();
    let deadline = opts.timeout.map(|d| (start + d, d));
    let connect_by = opts.connect_timeout.map(|d| (start + d, d));
    let mut fetches: Vec<FetchSlot> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut f = FetchSlot {
                conn: None,
                phase: Phase::Connecting,
                written: 0,
                io: SlotIo::new(true, FETCH_BUF),
                peer_closed: false,
                result: None,
            };
            let opened = start_connect(t.addr, opts.bind.first().copied()).and_then(|mut s| {
                let interest = Interest::READABLE | Interest::WRITABLE;
                poll.registry().register(&mut s, Token(i), interest)?;
                Ok(s)
            });
            match opened {
                Ok(s) => f.conn = Some(s),
                Err(e) => f.result = Some(Err(FetchError::connect(&e, t.addr))),
            }
            f
        })
        .collect();
    fetch_loop(poll, targets, &mut fetches, deadline, connect_by)?;
    Ok(fetches
        .into_iter()
        .map(|f| {
            f.result
                .unwrap_or_else(|| Err(FetchError::new(ErrorKind::Other, "fetch loop ended early")))
        })
        .collect())
}

/// Drives the fetches until each has a result or its deadline passed.
fn fetch_loop(
    mut poll: Poll,
    targets: &[Target],
    fetches: &mut [FetchSlot],
    deadline: Option<(Instant, Duration)>,
    connect_by: Option<(Instant, Duration)>,
) -> Result<(), FetchError> {
    let mut events = Events::with_capacity(fetches.len().clamp(16, 1024));
    while fetches.iter().any(|f| f.result.is_none()) {
        let now = Instant::now();
        for (f, t) in fetches.iter_mut().zip(targets) {
            if f.result.is_some() {
                continue;
            }
            if let Some((at, d)) = connect_by
                && f.phase == Phase::Connecting
                && now >= at
            {
                f.result = Some(Err(FetchError::connect_timeout(d, t.addr)));
            } else if let Some((at, d)) = deadline
                && now >= at
            {
                f.result = Some(Err(FetchError::timeout(d)));
            }
            if f.result.is_some() {
                f.conn = None;
            }
        }
        let mut wait = TICK;
        for (at, _) in [deadline, connect_by].into_iter().flatten() {
            wait = wait.min(at.saturating_duration_since(now));
        }
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(poll_error(&e)),
        }
        for event in events.iter() {
            let i = event.token().0;
            if let (Some(f), Some(t)) = (fetches.get_mut(i), targets.get(i))
                && f.result.is_none()
            {
                f.peer_closed |= event.is_read_closed() || event.is_error();
                f.advance(t);
            }
        }
    }
    Ok(())
}

impl FetchSlot {
    /// Moves through connect, write and read as far as the socket allows.
    fn advance(&mut self, target: &Target) {
        let peer = target.addr;
        let Some(stream) = self.conn.as_mut() else {
            return;
        };
        let outcome = loop {
            match self.phase {
                Phase::Connecting => match connect_finished(stream) {
                    Ok(true) => self.phase = Phase::Writing,
                    Ok(false) => return,
                    Err(e) => break Err(FetchError::connect(&e, peer)),
                },
                Phase::Writing => {
                    match write_some(stream, &target.request, &mut self.written, &mut self.io) {
                        Ok(true) => {
                            self.io.parser.reset(target.head_request);
                            self.phase = Phase::Reading;
                        }
                        Ok(false) => return,
                        Err(e) => break Err(FetchError::io(&e, peer)),
                    }
                }
                _ => match read_some(stream, peer, &mut self.io, self.peer_closed) {
                    Ok(None) => return,
                    Ok(Some(done)) if done.trailing > 0 => {
                        break Err(crate::backend::trailing_error(peer, done.trailing));
                    }
                    Ok(Some(done)) => {
                        break Ok(Fetched {
                            response: done.response,
                            head: self.io.parser.head().to_vec(),
                            body: self.io.parser.body().to_vec(),
                            peer,
                        });
                    }
                    Err(e) => break Err(e.error),
                },
            }
        };
        self.phase = Phase::Done;
        self.conn = None;
        self.result = Some(outcome);
    }
}
