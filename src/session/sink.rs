//! Where a session's outcomes go: the load run's [`LoadSink`] (latency
//! histograms and counters, plus the live counters a progress view reads)
//! or `get`'s [`Collector`] (each response kept, by ticket).
//!
//! A session reports every outcome through [`Sink`] and never touches a
//! recorder itself, so `get` and `load` share one state machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::backend::{Fetched, Live};
use crate::error::FetchError;
use crate::http::{Response, ResponseParser};
use crate::stats::Recorder;
use crate::stats::resources::Usage;

/// A response that completed before the end of the run.
pub(crate) struct Done<'a> {
    /// The ticket's sequence number.
    pub seq: u64,
    pub response: &'a Response,
    /// The parser that framed it: with `Sink::COLLECT`, its head and body.
    pub parser: &'a ResponseParser,
    /// Where its latency counts from (see [`crate::plan::Plan::latency_origin`]).
    pub origin: Instant,
    /// When its request was sent.
    pub sent_at: Instant,
    pub now: Instant,
    pub peer: SocketAddr,
    /// Bytes the server sent after the response's end in the same read:
    /// ignored (as curl does), and the connection is not reused.
    pub excess: usize,
}

/// What a session reports.
pub(crate) trait Sink {
    /// Whether responses' heads and bodies are kept (`get`).
    const COLLECT: bool;
    /// Tickets taken from the plan.
    fn issued(&mut self, n: u64);
    /// A connection was established after `took`; `reconnect`: not the slot's first.
    fn connected(&mut self, took: Duration, reconnect: bool);
    /// Requests sent again on a fresh connection (a keep-alive race, a
    /// pipelined batch the server cut short).
    fn retried(&mut self, n: u64);
    fn response(&mut self, done: &Done<'_>);
    /// Ticket `seq` got no response.
    fn failed(&mut self, seq: u64, error: &FetchError);
    /// Requests under way when the run ended.
    fn in_flight(&mut self, n: u64);
    /// Bytes moved on the connection, counted as they go.
    fn bytes(&mut self, read: u64, written: u64);
    /// The driver's last request ended at `at` (its teardown is not run time).
    fn ended(&mut self, _at: Instant) {}
    /// CPU time of a thread that did I/O besides the worker's own
    /// (the `threads` backend's session threads).
    fn cpu(&mut self, _usage: Usage) {}
}

/// A load worker's sink: its [`Recorder`] and the run's live counters.
pub(crate) struct LoadSink {
    pub rec: Recorder,
    live: Arc<Live>,
}

impl LoadSink {
    pub fn new(rec: Recorder, live: Arc<Live>) -> Self {
        Self { rec, live }
    }
}

impl Sink for LoadSink {
    const COLLECT: bool = false;

    #[inline]
    fn issued(&mut self, n: u64) {
        self.rec.issued += n;
    }

    #[inline]
    fn connected(&mut self, took: Duration, reconnect: bool) {
        self.rec.connected(took, reconnect);
    }

    fn retried(&mut self, n: u64) {
        self.rec.retries += n;
    }

    #[inline]
    fn response(&mut self, done: &Done<'_>) {
        self.rec
            .response(done.response.status, done.origin, done.now);
        self.live.completed.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&mut self, _seq: u64, error: &FetchError) {
        self.rec.error(error.kind, &error.message);
        self.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn in_flight(&mut self, n: u64) {
        self.rec.in_flight += n;
    }

    #[inline]
    fn bytes(&mut self, read: u64, written: u64) {
        self.rec.bytes_read += read;
        self.rec.bytes_written += written;
    }

    fn ended(&mut self, at: Instant) {
        self.rec.finished = self.rec.finished.max(Some(at));
    }

    fn cpu(&mut self, usage: Usage) {
        self.rec.cpu += usage;
    }
}

/// What `get` collects for one URL.
pub type Fetch = Result<Fetched, FetchError>;

/// `get`'s sink: each ticket's response (head and body kept) or error, by
/// sequence number, which is the URL's position.
pub(crate) struct Collector {
    pub results: Vec<Option<Fetch>>,
}

impl Collector {
    pub fn new(n: usize) -> Self {
        Self {
            results: (0..n).map(|_| None).collect(),
        }
    }

    fn put(&mut self, seq: u64, result: Fetch) {
        if let Some(slot) = usize::try_from(seq)
            .ok()
            .and_then(|i| self.results.get_mut(i))
        {
            slot.get_or_insert(result);
        }
    }

    /// The results in URL order; a URL that never got an outcome (the run
    /// was cut short) says so.
    pub fn into_results(self) -> Vec<Fetch> {
        self.results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(FetchError::new(
                        crate::error::ErrorKind::Other,
                        "interrupted before a response arrived",
                    ))
                })
            })
            .collect()
    }
}

impl Sink for Collector {
    const COLLECT: bool = true;

    fn issued(&mut self, _n: u64) {}

    fn connected(&mut self, _took: Duration, _reconnect: bool) {}

    fn retried(&mut self, _n: u64) {}

    fn response(&mut self, done: &Done<'_>) {
        let fetched = Fetched {
            response: *done.response,
            head: done.parser.head().to_vec(),
            body: done.parser.body().to_vec(),
            peer: done.peer,
            excess: done.excess,
        };
        self.put(done.seq, Ok(fetched));
    }

    fn failed(&mut self, seq: u64, error: &FetchError) {
        self.put(seq, Err(error.clone()));
    }

    fn in_flight(&mut self, _n: u64) {}

    fn bytes(&mut self, _read: u64, _written: u64) {}
}
