//! Counting what a run did, in memory that does not grow with the number of
//! requests: latencies go into HdrHistograms, never into a list of samples.
//! Each worker owns a [`Recorder`]; they are merged once at the end.

pub mod resources;
pub mod syscalls;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use crate::error::ErrorKind;

/// Highest latency a histogram can hold: one hour, in microseconds. Larger
/// values are clamped (saturating), never dropped.
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds with 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static bounds are valid")
}

/// Encodes a histogram in HdrHistogram's V2 compressed interchange form, in
/// base64 (the `HISTFAAA...` strings every HdrHistogram library reads).
pub fn histogram_to_base64(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    // Serializing into a Vec cannot fail for a histogram we built ourselves.
    if V2DeflateSerializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes what [`histogram_to_base64`] wrote (compressed or not).
pub fn histogram_from_base64(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram does not decode: {e:?}"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Everything one worker counted. Merging two recorders gives the recorder
/// of both runs exactly: histograms add, counters sum.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Request latency in µs, to the last byte of the response.
    pub latency: Histogram<u64>,
    /// TCP connect time in µs.
    pub connect: Histogram<u64>,
    /// Requests that were started.
    pub issued: u64,
    /// Responses by status code (every response counts, whatever its status).
    pub status: BTreeMap<u16, u64>,
    /// Requests that got no response, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Requests started but unfinished when a duration run or Ctrl-C ended
    /// it, and open-loop requests due by then that no connection took.
    pub in_flight: u64,
    /// Of `in_flight`, the open-loop requests due that no connection took
    /// (see [`crate::plan::Plan::unsent`]).
    pub unsent: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Connections opened (including the first of each slot).
    pub connects: u64,
    /// Connections reopened after the server closed or broke one.
    pub reconnects: u64,
    /// Requests sent a second time, on a fresh connection, because the
    /// reused one was closed or reset before any response byte (as HTTP
    /// clients do for a keep-alive race); not counted as errors.
    pub retries: u64,
    /// Responses completed in each whole second since the run's start.
    pub per_second: Vec<u64>,
    /// CPU time and context switches of the threads that did the I/O.
    pub cpu: resources::Usage,
    /// System calls of those threads, or why they could not be counted.
    pub syscalls: Result<u64, String>,
    /// When this worker's last request ended (before connections are torn
    /// down); the run's duration ends at the latest of these.
    pub finished: Option<Instant>,
    /// The first error's message, for the report (one example per kind).
    pub error_examples: BTreeMap<ErrorKind, String>,
    start: Instant,
}

impl Recorder {
    /// A recorder whose per-second series counts from `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            latency: new_histogram(),
            connect: new_histogram(),
            issued: 0,
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            in_flight: 0,
            unsent: 0,
            bytes_read: 0,
            bytes_written: 0,
            connects: 0,
            reconnects: 0,
            retries: 0,
            per_second: Vec::new(),
            error_examples: BTreeMap::new(),
            cpu: resources::Usage::default(),
            syscalls: Ok(0),
            finished: None,
            start,
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// A request is about to start.
    #[inline]
    pub fn issue(&mut self) {
        self.issued += 1;
    }

    /// A response arrived; `intended` is the ticket's intended start.
    #[inline]
    pub fn response(&mut self, status: u16, intended: Instant, now: Instant) {
        self.latency
            .saturating_record(micros(now.saturating_duration_since(intended)));
        *self.status.entry(status).or_insert(0) += 1;
        let second = now.saturating_duration_since(self.start).as_secs() as usize;
        if second >= self.per_second.len() {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
    }

    /// A request failed without a response.
    pub fn error(&mut self, kind: ErrorKind, message: &str) {
        *self.errors.entry(kind).or_insert(0) += 1;
        self.error_examples
            .entry(kind)
            .or_insert_with(|| message.to_string());
    }

    /// A connection was established in `took`.
    #[inline]
    pub fn connected(&mut self, took: Duration, reconnect: bool) {
        self.connect.saturating_record(micros(took));
        self.connects += 1;
        if reconnect {
            self.reconnects += 1;
        }
    }

    /// Open-loop requests that were due but never sent: issued and in
    /// flight, so the counts still add up with every scheduled request.
    pub fn count_unsent(&mut self, n: u64) {
        self.unsent += n;
        self.issued += n;
        self.in_flight += n;
    }

    /// Responses received, whatever their status.
    pub fn completed(&self) -> u64 {
        self.status.values().sum()
    }

    /// Requests that got no response.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds another recorder into this one.
    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.connect.add(&other.connect);
        self.issued += other.issued;
        for (k, v) in &other.status {
            *self.status.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &other.error_examples {
            self.error_examples.entry(*k).or_insert_with(|| v.clone());
        }
        self.in_flight += other.in_flight;
        self.unsent += other.unsent;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.connects += other.connects;
        self.reconnects += other.reconnects;
        self.retries += other.retries;
        self.cpu += other.cpu;
        self.finished = self.finished.max(other.finished);
        self.syscalls = match (&self.syscalls, &other.syscalls) {
            (Ok(a), Ok(b)) => Ok(a + b),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        // Series are aligned on the run's start; a later-starting recorder
        // is shifted by the whole seconds between the starts.
        let offset = other.start.saturating_duration_since(self.start).as_secs() as usize;
        let needed = offset + other.per_second.len();
        if needed > self.per_second.len() {
            self.per_second.resize(needed, 0);
        }
        for (i, v) in other.per_second.iter().enumerate() {
            self.per_second[offset + i] += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let start = Instant::now();
        let mut a = Recorder::new(start);
        let mut b = Recorder::new(start);
        for i in 0..100u64 {
            a.issue();
            a.response(200, start, start + Duration::from_micros(100 + i));
            b.issue();
            b.response(
                if i % 2 == 0 { 200 } else { 503 },
                start,
                start + Duration::from_millis(2),
            );
        }
        b.issue();
        b.error(ErrorKind::Reset, "reset");
        a.connected(Duration::from_micros(50), false);
        b.connected(Duration::from_micros(70), true);
        a.merge(&b);
        assert_eq!(a.issued, 201);
        assert_eq!(a.completed(), 200);
        assert_eq!(a.status[&200], 150);
        assert_eq!(a.status[&503], 50);
        assert_eq!(a.error_count(), 1);
        assert_eq!(a.latency.len(), 200);
        assert_eq!(a.connect.len(), 2);
        assert_eq!(a.reconnects, 1);
        assert_eq!(a.per_second, vec![200]);
        assert_eq!(a.issued, a.completed() + a.error_count() + a.in_flight);
    }

    #[test]
    fn histogram_base64_round_trip() {
        let mut h = new_histogram();
        for v in [1u64, 10, 100, 1000, 123_456, 2_000_000] {
            h.record(v).unwrap();
        }
        let s = histogram_to_base64(&h);
        assert!(s.starts_with("HISTFAAA"), "{s}");
        let back = histogram_from_base64(&s).unwrap();
        assert_eq!(back, h);
        assert!(histogram_from_base64("not base64!").is_err());
    }

    #[test]
    fn values_beyond_an_hour_are_clamped_not_lost() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        r.response(200, start, start + Duration::from_secs(7200));
        assert_eq!(r.latency.len(), 1);
    }
}
