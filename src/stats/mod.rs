//! Counting what a run did, in memory that does not grow with the number of
//! requests: latencies go into HdrHistograms, never into a list of samples.
//! Each worker owns a [`Recorder`]; they are merged once at the end.

pub mod resources;
pub mod series;
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

/// The V2 interchange format's cookies (HdrHistogram's `V2_COOKIE` and
/// `V2_COMPRESSED_COOKIE`: the base cookies with word size 8).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// A V2 header: cookie, payload length, normalizing offset, significant
/// figures (u32 each), lowest and highest trackable value (u64 each), and
/// the integer-to-double ratio (f64).
const V2_HEADER_LEN: usize = 40;
/// A count takes at most 9 bytes in V2's LEB128 (zig-zag) encoding, and a
/// run of zeros one count's place.
const MAX_VARINT_LEN: usize = 9;

/// The longest V2 payload a histogram within [`new_histogram`]'s bounds can
/// have: every count of its counts array at its longest encoding.
fn max_payload_len() -> usize {
    static LEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LEN.get_or_init(|| new_histogram().distinct_values() * MAX_VARINT_LEN)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

/// Checks an uncompressed V2 histogram's header against what a histogram of
/// our bounds could have, before anything is allocated from it: the
/// decoder sizes its counts array from the declared bounds and its payload
/// buffer from the declared length (a report claiming a 4 GiB payload made
/// `merge` allocate and zero 4 GiB).
fn check_v2_header(v2: &[u8]) -> Result<(), String> {
    if v2.len() < V2_HEADER_LEN {
        return Err(format!(
            "histogram is cut short: {} bytes, less than a header",
            v2.len()
        ));
    }
    if be_u32(v2, 0) != V2_COOKIE {
        return Err(format!(
            "not an HdrHistogram V2 histogram (cookie {:#010x})",
            be_u32(v2, 0)
        ));
    }
    let payload = be_u32(v2, 4) as usize;
    let digits = be_u32(v2, 12);
    let (low, high) = (be_u64(v2, 16), be_u64(v2, 24));
    // Every uringfetch histogram is new_histogram(): 1..MAX_US µs at 3
    // significant figures. Narrower ones add into it exactly; wider ones
    // could hold values ours cannot, and cost memory a report cannot justify.
    if low == 0 || high > MAX_US || digits > 3 || high < low.saturating_mul(2) {
        return Err(format!(
            "histogram bounds {low}..{high} at {digits} significant figures are not within \
             uringfetch's (1..{MAX_US} µs at 3)"
        ));
    }
    let present = v2.len() - V2_HEADER_LEN;
    if payload > present {
        return Err(format!(
            "histogram declares {payload} bytes of counts but holds {present}"
        ));
    }
    let counts = Histogram::<u64>::new_with_bounds(low, high, digits as u8)
        .map_err(|e| format!("histogram bounds {low}..{high} at {digits} figures: {e:?}"))?
        .distinct_values();
    if payload > counts * MAX_VARINT_LEN {
        return Err(format!(
            "histogram declares {payload} bytes of counts, more than its {counts} counts can take"
        ));
    }
    Ok(())
}

/// Inflates a compressed V2 histogram (cookie, deflated length, zlib data)
/// to its uncompressed form, never past the largest one of our bounds (so a
/// small input cannot inflate to gigabytes).
fn inflate_v2(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let declared = bytes.get(4..8).map(|_| be_u32(bytes, 4) as usize);
    let data = declared
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
        .ok_or_else(|| {
            format!(
                "compressed histogram declares {} bytes but holds {}",
                declared.map_or("?".to_string(), |n| n.to_string()),
                bytes.len().saturating_sub(8)
            )
        })?;
    let limit = V2_HEADER_LEN + max_payload_len();
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("compressed histogram does not inflate: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "compressed histogram inflates past {limit} bytes, more than any histogram of \
             uringfetch's bounds"
        ));
    }
    Ok(out)
}

/// Decodes what [`histogram_to_base64`] wrote (compressed or not). The
/// input is untrusted (a report from anywhere): its header is checked
/// against our bounds before the decoder allocates anything from it, so
/// the memory it costs is bounded by [`new_histogram`]'s, whatever it says.
pub fn histogram_from_base64(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    let cookie = bytes.get(..4).map(|_| be_u32(&bytes, 0));
    let v2 = match cookie {
        Some(V2_COMPRESSED_COOKIE) => std::borrow::Cow::Owned(inflate_v2(&bytes)?),
        _ => std::borrow::Cow::Borrowed(bytes.as_slice()),
    };
    check_v2_header(&v2)?;
    Deserializer::new()
        .deserialize(&mut &v2[..])
        .map_err(|e| format!("histogram does not decode: {e}"))
}

pub(crate) fn micros(d: Duration) -> u64 {
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
    /// TLS handshake time in µs, from the end of the TCP connect.
    pub handshake: Histogram<u64>,
    /// TLS handshakes that completed, and how many of them resumed a session.
    pub handshakes: u64,
    pub resumed: u64,
    /// Connections whose TLS the kernel took over (`--ktls`).
    pub kernel_tls: u64,
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
    /// HTTP/2: connections that spoke it, GOAWAY frames received, and
    /// streams the server reset, by error code name.
    pub h2_connections: u64,
    pub goaways: u64,
    /// The most streams open at once on one HTTP/2 connection.
    pub h2_peak_streams: usize,
    pub stream_resets: BTreeMap<&'static str, u64>,
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
            handshake: new_histogram(),
            handshakes: 0,
            resumed: 0,
            kernel_tls: 0,
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
            h2_connections: 0,
            goaways: 0,
            h2_peak_streams: 0,
            stream_resets: BTreeMap::new(),
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
        self.count_response(status, now);
    }

    /// A response arrived at `now`, its latency recorded elsewhere (a load
    /// worker's interval histogram, added into `latency` once a second).
    #[inline]
    pub fn count_response(&mut self, status: u16, now: Instant) {
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

    /// A TLS handshake finished in `took`.
    pub fn handshake(&mut self, took: Duration, resumed: bool) {
        self.handshake.saturating_record(micros(took));
        self.handshakes += 1;
        self.resumed += u64::from(resumed);
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
        let _ = self.handshake.add(&other.handshake);
        self.handshakes += other.handshakes;
        self.kernel_tls += other.kernel_tls;
        self.resumed += other.resumed;
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
        self.h2_connections += other.h2_connections;
        self.goaways += other.goaways;
        self.h2_peak_streams = self.h2_peak_streams.max(other.h2_peak_streams);
        for (k, v) in &other.stream_resets {
            *self.stream_resets.entry(k).or_insert(0) += v;
        }
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

    /// A V2 header as `histogram_to_base64` writes one, with any values.
    fn v2_header(payload: u32, digits: u32, low: u64, high: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&V2_COOKIE.to_be_bytes());
        v.extend_from_slice(&payload.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&digits.to_be_bytes());
        v.extend_from_slice(&low.to_be_bytes());
        v.extend_from_slice(&high.to_be_bytes());
        v.extend_from_slice(&1.0f64.to_be_bytes());
        v
    }

    fn compressed(v2: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(v2).unwrap();
        let data = z.finish().unwrap();
        let mut v = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(&data);
        v
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn a_histogram_is_refused_before_its_declared_size_is_allocated() {
        // Issue 19 item 6: our bounds, a payload of 2^32-1 bytes, no payload.
        let bomb = "HISTE/////8AAAAAAAAAAwAAAAAAAAABAAAAANaTpAA/8AAAAAAAAA==";
        let e = histogram_from_base64(bomb).unwrap_err();
        assert!(
            e.contains("declares 4294967295 bytes of counts but holds 0"),
            "{e}"
        );
        // The same header compressed: the declared size is inside the zlib stream.
        let header = v2_header(u32::MAX, 3, 1, MAX_US);
        let e = histogram_from_base64(&b64(&compressed(&header))).unwrap_err();
        assert!(e.contains("declares 4294967295 bytes"), "{e}");
        // A payload that is there but longer than the counts could need.
        let mut long = v2_header(30_000 * 9, 3, 1, MAX_US);
        long.resize(long.len() + 30_000 * 9, 0);
        let e = histogram_from_base64(&b64(&long)).unwrap_err();
        assert!(e.contains("more than its"), "{e}");
        // Bounds no uringfetch histogram has: a counts array of 50 MB.
        let e = histogram_from_base64(&b64(&v2_header(0, 5, 1, u64::MAX))).unwrap_err();
        assert!(e.contains("not within uringfetch's"), "{e}");
        for (digits, low, high) in [(3, 0, 100), (3, 1, MAX_US + 1), (4, 1, 100), (3, 50, 60)] {
            let e = histogram_from_base64(&b64(&v2_header(0, digits, low, high))).unwrap_err();
            assert!(
                e.contains("not within uringfetch's"),
                "{digits} {low} {high}: {e}"
            );
        }
        // Zeros that inflate to far more than any histogram of our bounds.
        let zeros = vec![0u8; 4 << 20];
        let e = histogram_from_base64(&b64(&compressed(&zeros))).unwrap_err();
        assert!(e.contains("inflates past"), "{e}");
        // Cut short, or a compressed length past the end.
        assert!(histogram_from_base64(&b64(&header[..20])).is_err());
        let mut cut = compressed(&v2_header(0, 3, 1, MAX_US));
        cut.truncate(cut.len() - 2);
        let e = histogram_from_base64(&b64(&cut)).unwrap_err();
        assert!(e.contains("compressed histogram declares"), "{e}");
        assert!(histogram_from_base64(&b64(b"HIST")).is_err());
    }

    #[test]
    fn narrower_histograms_decode_and_add_into_ours() {
        let mut small = Histogram::<u64>::new_with_bounds(1, 10_000, 2).unwrap();
        small.record(500).unwrap();
        small.record(9_000).unwrap();
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&small, &mut buf)
            .unwrap();
        let back = histogram_from_base64(&b64(&buf)).unwrap();
        assert_eq!(back, small);
        let mut ours = new_histogram();
        ours.add(&back).unwrap();
        assert_eq!(ours.len(), 2);
        // Uncompressed V2 is read too.
        let mut plain = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&small, &mut plain)
            .unwrap();
        assert_eq!(histogram_from_base64(&b64(&plain)).unwrap(), small);
    }

    #[test]
    fn values_beyond_an_hour_are_clamped_not_lost() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        r.response(200, start, start + Duration::from_secs(7200));
        assert_eq!(r.latency.len(), 1);
    }
}
