//! Where a session's outcomes go: the load run's [`LoadSink`] (latency
//! histograms and counters, plus the live counters a progress view reads)
//! or `get`'s [`Collector`] (each response kept, by ticket).
//!
//! A session reports every outcome through [`Sink`] and never touches a
//! recorder itself, so `get` and `load` share one state machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Counter, Fetched, Live};
use crate::error::FetchError;
use crate::http::Response;
use crate::stats::resources::Usage;
use crate::stats::series::IntervalRecorder;
use crate::stats::{Recorder, micros};

/// A response that completed before the end of the run.
pub(crate) struct Done<'a> {
    /// The ticket's sequence number.
    pub seq: u64,
    pub response: &'a Response,
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
    /// An established connection was closed (by either side, or at the end).
    fn closed(&mut self);
    /// A TLS handshake finished after `took` (from the end of the TCP
    /// connect); `resumed`: an earlier session was resumed.
    fn handshake(&mut self, took: Duration, resumed: bool);
    /// A connection's TLS went to the kernel (both directions installed).
    fn kernel_tls(&mut self) {}
    /// Requests sent again on a fresh connection (a keep-alive race, a
    /// pipelined batch the server cut short).
    fn retried(&mut self, n: u64);
    /// With `COLLECT`: ticket `seq`'s response head (status line and
    /// headers), once, as soon as it is complete.
    fn head(&mut self, seq: u64, head: &[u8]);
    /// With `COLLECT`: the next bytes of ticket `seq`'s decoded body, as
    /// they arrive (the session keeps none of them).
    fn body(&mut self, seq: u64, bytes: &[u8]);
    /// Ticket `seq`'s response is complete (its head and body came before).
    fn response(&mut self, done: &Done<'_>);
    /// Ticket `seq` got no response.
    fn failed(&mut self, seq: u64, error: &FetchError);
    /// Requests under way when the run ended.
    fn in_flight(&mut self, n: u64);
    /// Bytes moved on the connection, counted as they go.
    fn bytes(&mut self, read: u64, written: u64);
    /// The driver's last request ended at `at` (its teardown is not run time).
    fn ended(&mut self, at: Instant);
    /// CPU time of a thread that did I/O besides the worker's own
    /// (the `threads` backend's session threads).
    fn cpu(&mut self, usage: Usage);
    /// A connection speaks HTTP/2.
    fn h2_connection(&mut self);
    /// The server sent GOAWAY with `code`.
    fn goaway(&mut self, code: u32);
    /// The server reset a stream with `code` (the request also fails).
    fn stream_reset(&mut self, code: u32);
    /// `n` streams are open on an HTTP/2 connection after it opened more.
    fn h2_streams_open(&mut self, n: usize);
}

/// A load worker's sink: its [`Recorder`], its interval histogram for
/// the per-second series, and its slot of the run's live counters.
pub(crate) struct LoadSink {
    pub rec: Recorder,
    interval: IntervalRecorder,
    live: Arc<Live>,
    slot: usize,
}

impl LoadSink {
    pub fn new(rec: Recorder, interval: IntervalRecorder, live: Arc<Live>, slot: usize) -> Self {
        Self {
            rec,
            interval,
            live,
            slot,
        }
    }

    #[inline]
    fn count(&self, which: Counter, n: u64) {
        // `slot` indexes a power-of-two table: a mask, not a division.
        self.live.slot(self.slot).add(which, n);
    }

    /// Sends the last second's interval; the recorder is the worker's result.
    pub fn finish(mut self) -> Recorder {
        self.interval.flush(&mut self.rec);
        self.rec
    }
}

impl Sink for LoadSink {
    const COLLECT: bool = false;

    #[inline]
    fn issued(&mut self, n: u64) {
        self.rec.issued += n;
        self.count(Counter::Issued, n);
    }

    #[inline]
    fn connected(&mut self, took: Duration, reconnect: bool) {
        self.rec.connected(took, reconnect);
        self.count(Counter::Connected, 1);
    }

    #[inline]
    fn closed(&mut self) {
        self.count(Counter::Closed, 1);
    }

    fn handshake(&mut self, took: Duration, resumed: bool) {
        self.rec.handshake(took, resumed);
    }
    fn kernel_tls(&mut self) {
        self.rec.kernel_tls += 1;
    }

    fn retried(&mut self, n: u64) {
        self.rec.retries += n;
    }

    fn head(&mut self, _seq: u64, _head: &[u8]) {}

    fn body(&mut self, _seq: u64, _bytes: &[u8]) {}

    #[inline]
    fn response(&mut self, done: &Done<'_>) {
        // The latency goes into the interval histogram only; it is added
        // into the recorder's once a second.
        self.rec.count_response(done.response.status, done.now);
        let latency = micros(done.now.saturating_duration_since(done.origin));
        self.interval.response(latency, done.now, &mut self.rec);
        self.count(Counter::Completed, 1);
    }

    fn failed(&mut self, _seq: u64, error: &FetchError) {
        self.rec.error(error.kind, &error.message);
        self.interval.error(Instant::now(), &mut self.rec);
        self.count(Counter::Errors, 1);
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

    fn h2_connection(&mut self) {
        self.rec.h2_connections += 1;
    }

    fn goaway(&mut self, _code: u32) {
        self.rec.goaways += 1;
    }

    fn h2_streams_open(&mut self, n: usize) {
        self.rec.h2_peak_streams = self.rec.h2_peak_streams.max(n);
    }

    fn stream_reset(&mut self, code: u32) {
        let name = crate::http::h2::error_name(code);
        *self.rec.stream_resets.entry(name).or_insert(0) += 1;
    }
}

/// What `get` collects for one URL.
pub type Fetch = Result<Fetched, FetchError>;

/// A sink that keeps each ticket's response, head and body, by sequence
/// number (the URL's position): `doctor`'s self-test and `demo` check what
/// came back. `get` streams instead (see `cmd::get`).
pub(crate) struct Collector {
    results: Vec<Option<Fetch>>,
    /// Heads and bodies of responses under way.
    partial: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Collector {
    pub fn new(n: usize) -> Self {
        Self {
            results: (0..n).map(|_| None).collect(),
            partial: (0..n).map(|_| Default::default()).collect(),
        }
    }

    fn index(&self, seq: u64) -> Option<usize> {
        usize::try_from(seq)
            .ok()
            .filter(|&i| i < self.results.len())
    }

    fn put(&mut self, seq: u64, result: Fetch) {
        if let Some(i) = self.index(seq) {
            self.results[i].get_or_insert(result);
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

    fn closed(&mut self) {}

    fn handshake(&mut self, _took: Duration, _resumed: bool) {}

    fn retried(&mut self, _n: u64) {}

    fn head(&mut self, seq: u64, head: &[u8]) {
        if let Some(i) = self.index(seq) {
            self.partial[i].0 = head.to_vec();
        }
    }

    fn body(&mut self, seq: u64, bytes: &[u8]) {
        if let Some(i) = self.index(seq) {
            self.partial[i].1.extend_from_slice(bytes);
        }
    }

    fn response(&mut self, done: &Done<'_>) {
        let (head, body) = self
            .index(done.seq)
            .map(|i| std::mem::take(&mut self.partial[i]))
            .unwrap_or_default();
        let fetched = Fetched {
            response: *done.response,
            head,
            body,
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

    fn ended(&mut self, _at: Instant) {}

    fn cpu(&mut self, _usage: Usage) {}

    fn h2_streams_open(&mut self, _n: usize) {}

    fn h2_connection(&mut self) {}

    fn goaway(&mut self, _code: u32) {}

    fn stream_reset(&mut self, _code: u32) {}
}
