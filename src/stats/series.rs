//! The run second by second: each worker records its latencies of the
//! current second into an interval histogram of its own (the only
//! histogram a response is recorded in: the worker's whole-run histogram
//! gets each interval added once a second) and, at the first
//! event of the next second, hands it (with its error count and its status
//! and error tallies so far) to the runner's thread over a channel: no lock
//! and no shared write on the request path, one send per worker per second.
//! The runner's thread adds the workers' intervals up into a [`Series`],
//! which the live view reads and which ends as the report's [`PerSecond`].
//!
//! Seconds count from the run's start, as [`super::Recorder::per_second`]
//! does, so the two agree on every second. A worker that has nothing to do
//! in a second (a stall) sends nothing for it: that second is empty, which
//! is what happened. A second's histogram is kept open for a few seconds
//! (a late worker's interval still adds into it), then compressed.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{Recorder, histogram_from_base64, histogram_to_base64, new_histogram};
use crate::error::ErrorKind;

/// One worker's second.
#[derive(Debug)]
pub struct Interval {
    pub worker: usize,
    /// Whole seconds since the run's start.
    pub second: usize,
    /// Latencies (µs) of the responses that completed in that second.
    pub latency: Histogram<u64>,
    /// Requests that failed in that second.
    pub errors: u64,
    /// The worker's responses by status and errors by kind since the start.
    pub status: BTreeMap<u16, u64>,
    pub error_kinds: BTreeMap<ErrorKind, u64>,
}

/// A worker's side: its interval histogram and the channel it goes out on.
pub(crate) struct IntervalRecorder {
    worker: usize,
    start: Instant,
    second: usize,
    /// The start of the next second: an event at or past it ends this one.
    next: Instant,
    latency: Histogram<u64>,
    errors: u64,
    tx: Sender<Interval>,
}

impl IntervalRecorder {
    pub fn new(worker: usize, start: Instant, tx: Sender<Interval>) -> Self {
        Self {
            worker,
            start,
            second: 0,
            next: start + Duration::from_secs(1),
            latency: new_histogram(),
            errors: 0,
            tx,
        }
    }

    /// Moves to the second of `now`, sending the one that ended.
    #[inline]
    fn at(&mut self, now: Instant, rec: &mut Recorder) {
        if now >= self.next {
            self.flush(rec);
            let second = now.saturating_duration_since(self.start).as_secs();
            self.second = second as usize;
            self.next = self.start + Duration::from_secs(second + 1);
        }
    }

    /// A response completed at `now` after `latency_us`.
    #[inline]
    pub fn response(&mut self, latency_us: u64, now: Instant, rec: &mut Recorder) {
        self.at(now, rec);
        self.latency.saturating_record(latency_us);
    }

    /// A request failed at `now`.
    pub fn error(&mut self, now: Instant, rec: &mut Recorder) {
        self.at(now, rec);
        self.errors += 1;
    }

    /// Adds the current second into the worker's `rec` and sends it, if
    /// anything happened in it.
    pub fn flush(&mut self, rec: &mut Recorder) {
        if self.latency.is_empty() && self.errors == 0 {
            return;
        }
        // Same bounds: adding cannot fail.
        let _ = rec.latency.add(&self.latency);
        let latency = std::mem::replace(&mut self.latency, new_histogram());
        // The runner's thread receives until every worker is done; a send
        // can only fail once it has gone, when nobody needs the figures.
        let _ = self.tx.send(Interval {
            worker: self.worker,
            second: self.second,
            latency,
            errors: std::mem::take(&mut self.errors),
            status: rec.status.clone(),
            error_kinds: rec.errors.clone(),
        });
    }
}

/// A second's latency histogram: open while intervals may still come in,
/// then compressed (HdrHistogram V2, base64).
#[derive(Debug, Clone)]
enum Hist {
    /// No interval yet.
    Empty,
    Open(Box<Histogram<u64>>),
    Sealed(String),
}

#[derive(Debug, Clone)]
struct Second {
    errors: u64,
    responses: u64,
    hist: Hist,
}

impl Default for Second {
    fn default() -> Self {
        Self {
            errors: 0,
            responses: 0,
            hist: Hist::Empty,
        }
    }
}

impl Second {
    /// The open histogram, reopening a sealed one.
    fn open(&mut self) -> &mut Histogram<u64> {
        if !matches!(self.hist, Hist::Open(_)) {
            self.hist = Hist::Open(Box::new(self.histogram()));
        }
        match &mut self.hist {
            Hist::Open(h) => h,
            Hist::Empty | Hist::Sealed(_) => unreachable!("opened above"),
        }
    }

    fn seal(&mut self) {
        if let Hist::Open(h) = &self.hist {
            self.hist = Hist::Sealed(histogram_to_base64(h));
        }
    }

    fn histogram(&self) -> Histogram<u64> {
        match &self.hist {
            Hist::Empty => new_histogram(),
            Hist::Open(h) => (**h).clone(),
            // We encoded it ourselves: it decodes.
            Hist::Sealed(s) => histogram_from_base64(s).unwrap_or_else(|_| new_histogram()),
        }
    }
}

/// Seconds further back than this from the newest are compressed.
const OPEN_SECONDS: usize = 4;

/// The run's seconds, added up from every worker's intervals.
#[derive(Debug, Clone, Default)]
pub struct Series {
    seconds: Vec<Second>,
    /// Seconds before this one are compressed.
    sealed: usize,
    /// The whole run so far.
    total: Option<Box<Histogram<u64>>>,
    /// Each worker's latest tallies.
    status: BTreeMap<usize, BTreeMap<u16, u64>>,
    error_kinds: BTreeMap<usize, BTreeMap<ErrorKind, u64>>,
}

impl Series {
    /// Adds a worker's interval.
    pub fn ingest(&mut self, iv: Interval) {
        if self.seconds.len() <= iv.second {
            self.seconds.resize_with(iv.second + 1, Second::default);
            let keep_from = self.seconds.len().saturating_sub(OPEN_SECONDS);
            for s in &mut self.seconds[self.sealed.min(keep_from)..keep_from] {
                s.seal();
            }
            self.sealed = self.sealed.max(keep_from);
        }
        let second = &mut self.seconds[iv.second];
        second.errors += iv.errors;
        second.responses += iv.latency.len();
        // Same bounds: adding cannot fail.
        let _ = second.open().add(&iv.latency);
        if iv.second < self.sealed {
            // A late interval for a second compressed already.
            second.seal();
        }
        let total = self.total.get_or_insert_with(|| Box::new(new_histogram()));
        let _ = total.add(&iv.latency);
        self.status.insert(iv.worker, iv.status);
        self.error_kinds.insert(iv.worker, iv.error_kinds);
    }

    /// Seconds with an interval so far.
    pub fn len(&self) -> usize {
        self.seconds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seconds.is_empty()
    }

    /// Responses in each second so far.
    pub fn responses(&self) -> Vec<u64> {
        self.seconds.iter().map(|s| s.responses).collect()
    }

    /// Errors in each second so far.
    pub fn errors(&self) -> Vec<u64> {
        self.seconds.iter().map(|s| s.errors).collect()
    }

    /// Second `i`'s latency histogram (empty past the end).
    pub fn second(&self, i: usize) -> Histogram<u64> {
        self.seconds
            .get(i)
            .map_or_else(new_histogram, Second::histogram)
    }

    /// The whole run's latency histogram so far.
    pub fn total(&self) -> Histogram<u64> {
        self.total.as_deref().cloned().unwrap_or_else(new_histogram)
    }

    /// Responses by status and errors by kind, as of each worker's last interval.
    pub fn tallies(&self) -> (BTreeMap<u16, u64>, BTreeMap<ErrorKind, u64>) {
        let mut status = BTreeMap::new();
        for (k, v) in self.status.values().flatten() {
            *status.entry(*k).or_insert(0) += v;
        }
        let mut kinds = BTreeMap::new();
        for (k, v) in self.error_kinds.values().flatten() {
            *kinds.entry(*k).or_insert(0) += v;
        }
        (status, kinds)
    }

    /// The report's series, `seconds` long (the run's whole seconds,
    /// counting a last partial one): seconds with no interval are empty.
    pub fn finish(&self, seconds: usize) -> PerSecond {
        let mut out = PerSecond::default();
        let empty = Second::default();
        for i in 0..seconds.max(self.seconds.len()) {
            let s = self.seconds.get(i).unwrap_or(&empty);
            out.push(s.responses, s.errors, &s.histogram());
        }
        out
    }
}

/// The report's per-second series (JSON `series`): one entry per whole
/// second since the run's start, every vector as long as the run's
/// seconds. Percentiles are of the responses completed in that second (0
/// when none did); `hdr` holds each second's histogram, so that `merge`
/// recomputes the percentiles of several runs exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerSecond {
    pub responses: Vec<u64>,
    pub errors: Vec<u64>,
    pub p50_us: Vec<u64>,
    pub p90_us: Vec<u64>,
    pub p99_us: Vec<u64>,
    pub max_us: Vec<u64>,
    pub hdr: Vec<String>,
}

impl PerSecond {
    /// Appends a second.
    pub fn push(&mut self, responses: u64, errors: u64, h: &Histogram<u64>) {
        let q = |x: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(x)
            }
        };
        self.responses.push(responses);
        self.errors.push(errors);
        self.p50_us.push(q(0.5));
        self.p90_us.push(q(0.9));
        self.p99_us.push(q(0.99));
        self.max_us.push(if h.is_empty() { 0 } else { h.max() });
        self.hdr.push(histogram_to_base64(h));
    }

    /// Seconds in the series.
    pub fn len(&self) -> usize {
        self.responses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }

    /// Every vector has one entry per second; what is wrong otherwise.
    pub fn check(&self) -> Result<(), String> {
        let n = self.responses.len();
        for (name, len) in [
            ("errors", self.errors.len()),
            ("p50_us", self.p50_us.len()),
            ("p90_us", self.p90_us.len()),
            ("p99_us", self.p99_us.len()),
            ("max_us", self.max_us.len()),
            ("hdr", self.hdr.len()),
        ] {
            if len != n {
                return Err(format!(
                    "series.{name} has {len} entries but series.responses has {n}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(worker: usize, second: usize, values: &[u64], errors: u64) -> Interval {
        let mut latency = new_histogram();
        for &v in values {
            latency.record(v).unwrap();
        }
        Interval {
            worker,
            second,
            latency,
            errors,
            status: BTreeMap::from([(200, values.len() as u64)]),
            error_kinds: BTreeMap::new(),
        }
    }

    #[test]
    fn intervals_add_up_by_second_even_late_and_sealed() {
        let mut s = Series::default();
        s.ingest(interval(0, 0, &[100, 200], 0));
        s.ingest(interval(1, 0, &[300], 1));
        // A stall: nothing in seconds 1..=2, then a burst of slow ones.
        s.ingest(interval(0, 3, &[2_000_000], 0));
        s.ingest(interval(0, 20, &[50], 0));
        // Second 0 is sealed by now; a late interval reopens it.
        s.ingest(interval(1, 0, &[400], 0));
        // No second further back than the last few stays open.
        assert!(
            s.seconds[..s.len() - OPEN_SECONDS]
                .iter()
                .all(|x| !matches!(x.hist, Hist::Open(_))),
            "{:?}",
            s.seconds
                .iter()
                .map(|x| matches!(x.hist, Hist::Open(_)))
                .collect::<Vec<_>>()
        );
        let p = s.finish(22);
        p.check().unwrap();
        assert_eq!(p.len(), 22);
        assert_eq!(&p.responses[..4], &[4, 0, 0, 1]);
        assert_eq!(p.errors[0], 1);
        assert_eq!(p.p50_us[1], 0);
        assert!(p.p99_us[3] >= 1_990_000, "{}", p.p99_us[3]);
        assert_eq!(histogram_from_base64(&p.hdr[0]).unwrap().len(), 4);
        assert_eq!(s.total().len(), 6);
        assert_eq!(s.tallies().0[&200], 1 + 1, "each worker's latest");
    }

    #[test]
    fn workers_send_one_interval_per_second_they_were_busy() {
        let (tx, rx) = std::sync::mpsc::channel();
        let start = Instant::now();
        let mut w = IntervalRecorder::new(3, start, tx);
        let mut rec = Recorder::new(start);
        w.response(10, start + Duration::from_millis(10), &mut rec);
        w.response(20, start + Duration::from_millis(990), &mut rec);
        assert!(rx.try_recv().is_err(), "nothing sent within a second");
        assert_eq!(rec.latency.len(), 0, "added in once a second");
        w.error(start + Duration::from_millis(3500), &mut rec);
        assert_eq!(rec.latency.len(), 2);
        w.flush(&mut rec);
        w.flush(&mut rec);
        assert_eq!(rec.latency.len(), 2);
        let got: Vec<Interval> = rx.try_iter().collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].second, got[0].latency.len()), (0, 2));
        assert_eq!((got[1].second, got[1].errors), (3, 1));
    }
}
