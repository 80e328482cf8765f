//! From a finished run to what people and machines read.
//!
//! [`Summary`] is the JSON schema (documented in `docs/json-schema.md`; its
//! field names are stable). The text and CSV forms are rendered from it, so
//! every output says the same thing.

pub mod chart;
pub mod compare;
pub mod merge;
#[cfg(test)]
mod merge_tests;
pub mod text;
pub mod thresholds;

use std::borrow::Cow;
use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plan::{Rate, Stop};
use crate::runner::LoadOutcome;
use crate::stats::histogram_to_base64;
pub use crate::stats::series::PerSecond;
use crate::wallclock::{rfc3339, unix_ns};

/// A string from outside (a file name, a label, a run id, a report's field,
/// a server's bytes) made safe to print on a terminal: control characters
/// (C0, DEL, C1) and the bidirectional overrides that reorder what a
/// terminal shows are written as escapes (`\n`, `\u{1b}`), so that no
/// argument can move the cursor, recolour the screen or fake a line of
/// output. A backslash is doubled, so an escape in the output always means
/// an escaped character. Clean strings are borrowed, not copied.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, true)
}

/// [`escape`] for a message that may hold text escaped already: control
/// and bidi characters only, backslashes left as they are.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

fn escape_with(s: &str, backslashes: bool) -> Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || (backslashes && c == '\\')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' if backslashes => out.push_str("\\\\"),
            c if hidden(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Version of the JSON schema; bumped only on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Requests {
    /// Requests started.
    pub issued: u64,
    /// Responses received, whatever their status.
    pub completed: u64,
    /// Requests that got no response.
    pub errors: u64,
    /// Requests cut off by the end of a duration run or by Ctrl-C.
    pub in_flight: u64,
    /// Of `in_flight`, open-loop requests that were due but that no
    /// connection had taken yet (the client fell behind `-q`).
    #[serde(default)]
    pub unsent: u64,
}

/// The TLS handshakes of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsStats {
    /// Handshakes that finished, and how many of them resumed a session
    /// (the rest were full handshakes).
    pub handshakes: u64,
    pub resumed: u64,
    /// Handshake time in µs, from the end of the TCP connect.
    pub handshake_us: Percentiles,
    /// Connections whose keys went to the kernel (kernel TLS, `--ktls`).
    #[serde(default)]
    pub kernel: u64,
    /// Why TLS ran in userspace, where it did (no `tls` module in the
    /// kernel, `--ktls off`, a backend that keeps TLS in userspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userspace_because: Option<String>,
}

/// What ran over HTTP/2: null for a run where no connection spoke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct H2Stats {
    /// Connections that spoke HTTP/2.
    pub connections: u64,
    /// Requests asked to be kept in flight per connection (`--streams`);
    /// the server's `SETTINGS_MAX_CONCURRENT_STREAMS` caps it, see
    /// `peak_streams`.
    pub streams_per_connection: usize,
    /// The most streams that were open at once on one connection: below
    /// `streams_per_connection` when the server allowed fewer (its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`) or the run had fewer requests.
    #[serde(default)]
    pub peak_streams: usize,
    /// GOAWAY frames the servers sent.
    pub goaways: u64,
    /// Streams the servers reset (RST_STREAM), by error code name; each is
    /// also an error of kind `stream_reset`.
    pub stream_resets: BTreeMap<String, u64>,
}

/// `h1`, `h2`, or `h1+h2` when some connections spoke each (https
/// servers that chose differently in ALPN), from the counts.
pub fn protocol_of(connections: u64, h2_connections: u64) -> &'static str {
    if h2_connections == 0 {
        "h1"
    } else if h2_connections >= connections {
        "h2"
    } else {
        "h1+h2"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    /// The whole histogram, HdrHistogram V2 compressed, base64.
    pub hdr: String,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let q = |x: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(x)
            }
        };
        Self {
            count: h.len(),
            min: if h.is_empty() { 0 } else { h.min() },
            mean: if h.is_empty() { 0.0 } else { h.mean() },
            p50: q(0.50),
            p75: q(0.75),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: if h.is_empty() { 0 } else { h.max() },
            hdr: histogram_to_base64(h),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mode {
    /// `count` or `duration`.
    pub stop: String,
    pub count: Option<u64>,
    pub duration_s: Option<f64>,
    /// Open-loop requests/s, or null for a closed loop.
    pub rate: Option<f64>,
    /// Latency is measured from each request's intended start (open loop).
    pub coordinated_omission_corrected: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bytes {
    pub read: u64,
    pub written: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resources {
    /// CPU time of the threads that did the client's I/O.
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub cpu_us_per_request: f64,
    pub ctx_switches_per_request: f64,
    pub voluntary_ctx_switches: u64,
    pub involuntary_ctx_switches: u64,
    /// Peak resident set size of the whole process.
    pub max_rss_kb: u64,
    pub syscalls: Option<u64>,
    pub syscalls_per_request: Option<f64>,
    /// Why `syscalls` is null, when it is.
    pub syscalls_note: Option<String>,
}

/// What each request of a run was like on the wire, so that a report
/// describes the run it measured (a pipelined or HTTP/1.0 run is not
/// comparable with a plain one). Read from the run's configuration: the
/// encoded request of the first target and the connection options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpShape {
    /// `HTTP/1.1` or `HTTP/1.0`, as in the request line.
    pub version: String,
    /// Connections are reused between requests (false: `--disable-keepalive`).
    pub keep_alive: bool,
    /// Requests written at once on a connection (`--pipeline`); 1 without.
    pub pipeline: usize,
    /// Header fields in each request as sent, the defaults (`Host`,
    /// `User-Agent`, `Accept`, `Content-Length`, `Connection`) included.
    pub headers: usize,
    /// Body bytes of each request.
    pub body_bytes: u64,
}

impl HttpShape {
    /// The shape of `config`'s requests; `None` if there is no target (or
    /// its encoded request has no head, which `encode_request` never makes).
    /// With `h2`, the fields are counted as HTTP/2 sends them.
    pub fn of(config: &crate::runner::LoadConfig, h2: bool) -> Option<Self> {
        let request: &[u8] = &config.targets.first()?.request;
        let end = request.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&request[..end]);
        let mut lines = head.split("\r\n");
        let version = lines.next()?.rsplit(' ').next()?.to_string();
        // HTTP/2 sends no `Connection` field (RFC 9113 §8.2.2).
        let sent = |field: &&str| {
            !h2 || !field
                .split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("connection"))
        };
        Some(Self {
            version,
            keep_alive: config.conn.keep_alive,
            pipeline: config.conn.pipeline,
            headers: lines.filter(sent).count(),
            body_bytes: (request.len() - end - 4) as u64,
        })
    }

    /// `HTTP/1.0, 5 headers, 1.0 KiB body, keep-alive off, pipelined 16 deep`.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} header{}, {}, {}, {}",
            self.version,
            self.headers,
            if self.headers == 1 { "" } else { "s" },
            match self.body_bytes {
                0 => "no body".to_string(),
                n => format!("{} body", text::fmt_bytes(n)),
            },
            if self.keep_alive {
                "keep-alive"
            } else {
                "keep-alive off"
            },
            match self.pipeline {
                0 | 1 => "no pipelining".to_string(),
                n => format!("pipelined {n} deep"),
            }
        )
    }
}

/// One run, as JSON and as the source of every other output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub schema: u32,
    pub tool: String,
    pub backend: String,
    pub urls: Vec<String>,
    pub method: String,
    pub connections: usize,
    pub threads: usize,
    pub mode: Mode,
    pub requests: Requests,
    /// How each request was sent; null in reports older than this field,
    /// and in a merge of reports that sent different ones.
    #[serde(default)]
    pub http: Option<HttpShape>,
    /// Responses with a 2xx or 3xx status over requests issued: a request
    /// with no response, one cut off at the end and a 404 all count against it.
    pub success_rate: f64,
    pub status: BTreeMap<String, u64>,
    /// Responses whose status is outside 2xx/3xx (they are in `completed`);
    /// derived from `status`, so older reports without it merge right.
    #[serde(default)]
    pub non_2xx_3xx: u64,
    pub errors: BTreeMap<String, u64>,
    /// One example message per error kind.
    pub error_examples: BTreeMap<String, String>,
    pub duration_s: f64,
    /// Responses per second over `duration_s`.
    pub rps: f64,
    pub bytes: Bytes,
    pub connections_opened: u64,
    pub reconnects: u64,
    /// Requests sent again on a fresh connection because the reused one was
    /// closed or reset before any response byte; not errors.
    #[serde(default)]
    pub retries: u64,
    pub latency_us: Percentiles,
    pub connect_us: Percentiles,
    /// TLS handshakes of an `https://` run; null for a plaintext one.
    #[serde(default)]
    pub tls: Option<TlsStats>,
    /// The protocol the connections spoke: `h1`, `h2` or `h1+h2`; null in
    /// reports older than this field.
    #[serde(default)]
    pub protocol: Option<String>,
    /// HTTP/2 streams, GOAWAYs and resets; null when no connection spoke it.
    #[serde(default)]
    pub h2: Option<H2Stats>,
    /// Responses completed in each second of the run.
    pub per_second: Vec<u64>,
    /// The run second by second (responses, errors, latency percentiles and
    /// histograms), what `chart` draws; null in reports older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<PerSecond>,
    pub resources: Resources,
    /// Ctrl-C ended the run early.
    pub cancelled: bool,
    /// `--run-id`: the same id on every client of one distributed run.
    #[serde(default)]
    pub run_id: Option<String>,
    /// `--label key=value`, e.g. `host`, `zone`, `index`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The machine that ran the load (a merge: the distinct hosts, comma-separated).
    #[serde(default)]
    pub host: String,
    /// `--start-at` as asked for, RFC 3339 UTC; null without it.
    #[serde(default)]
    pub start_at: Option<String>,
    /// The run's start (all workers ready) on the wall clock, RFC 3339 UTC
    /// with nanoseconds; null only in reports older than this field.
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub started_at_unix_ns: Option<u64>,
    /// The run's end: `started_at + duration_s`.
    #[serde(default)]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub ended_at_unix_ns: Option<u64>,
    /// The reports a `merge` added up, one row each; null for a `load` report.
    #[serde(default)]
    pub merged_from: Option<Vec<merge::MergeInput>>,
}

fn per(total: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { total / n as f64 }
}

/// Whether a status (a `status` key) is a success: 2xx or 3xx. A key that
/// is not a status at all is not one.
fn is_2xx_3xx(code: &str) -> bool {
    code.parse::<u16>().is_ok_and(|c| (200..400).contains(&c))
}

/// Responses outside 2xx/3xx in a `status` map.
pub fn non_2xx_3xx(status: &BTreeMap<String, u64>) -> u64 {
    status
        .iter()
        .filter(|(code, _)| !is_2xx_3xx(code))
        .fold(0, |n, (_, v)| n.saturating_add(*v))
}

/// `success_rate`: responses with a 2xx or 3xx status over the requests
/// that finished (a response or an error). Requests still in flight when a
/// `-z` run or Ctrl-C ended it did not fail, and a long run on a slow
/// endpoint would otherwise read well below 100% with no error at all.
pub fn success_rate(requests: &Requests, non_2xx_3xx: u64) -> f64 {
    let good = requests.completed.saturating_sub(non_2xx_3xx);
    per(
        good as f64,
        requests.completed.saturating_add(requests.errors),
    )
}

impl Summary {
    /// Builds the summary of a finished run.
    pub fn new(o: &LoadOutcome, method: &str) -> Self {
        let r = &o.recorder;
        let completed = r.completed();
        let errors = r.error_count();
        let duration_s = o.elapsed.as_secs_f64();
        let cpu = r.cpu;
        let cpu_s = (cpu.user + cpu.sys).as_secs_f64();
        let ctx = cpu.voluntary_ctx + cpu.involuntary_ctx;
        let (syscalls, syscalls_note) = match r.syscalls.clone() {
            Ok(n) => (Some(n), None),
            Err(why) => (None, Some(why)),
        };
        let (stop, rate) = (o.config.stop, o.config.rate);
        let mode = Mode {
            stop: match stop {
                Stop::Count(_) => "count",
                Stop::Duration(_) => "duration",
            }
            .to_string(),
            count: match stop {
                Stop::Count(n) => Some(n),
                Stop::Duration(_) => None,
            },
            duration_s: match stop {
                Stop::Duration(d) => Some(d.as_secs_f64()),
                Stop::Count(_) => None,
            },
            rate: match rate {
                Rate::Open(q) => Some(q),
                Rate::Closed => None,
            },
            coordinated_omission_corrected: matches!(rate, Rate::Open(_)),
        };
        let status: BTreeMap<String, u64> =
            r.status.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let requests = Requests {
            issued: r.issued,
            completed,
            errors,
            in_flight: r.in_flight,
            unsent: r.unsent,
        };
        let non_2xx_3xx = non_2xx_3xx(&status);
        Summary {
            schema: SCHEMA_VERSION,
            tool: format!("uringfetch {}", env!("CARGO_PKG_VERSION")),
            backend: o.config.backend.name().to_string(),
            urls: o.config.targets.iter().map(|t| t.url.clone()).collect(),
            method: method.to_string(),
            connections: o.config.connections,
            threads: crate::runner::split_connections(o.config.connections, o.config.threads).len(),
            mode,
            success_rate: success_rate(&requests, non_2xx_3xx),
            requests,
            http: {
                // The request line's version, unless every connection spoke HTTP/2.
                let h2 = r.h2_connections > 0 && r.h2_connections >= r.connects;
                HttpShape::of(&o.config, h2).map(|mut h| {
                    if h2 {
                        h.version = "HTTP/2".into();
                    }
                    h
                })
            },
            status,
            non_2xx_3xx,
            errors: r
                .errors
                .iter()
                .map(|(k, v)| (k.name().to_string(), *v))
                .collect(),
            error_examples: r
                .error_examples
                .iter()
                .map(|(k, v)| (k.name().to_string(), v.clone()))
                .collect(),
            duration_s,
            rps: if duration_s > 0.0 {
                completed as f64 / duration_s
            } else {
                0.0
            },
            bytes: Bytes {
                read: r.bytes_read,
                written: r.bytes_written,
            },
            connections_opened: r.connects,
            reconnects: r.reconnects,
            retries: r.retries,
            latency_us: Percentiles::of(&r.latency),
            connect_us: Percentiles::of(&r.connect),
            tls: (r.handshakes > 0 || o.config.targets.iter().any(|t| t.tls)).then(|| TlsStats {
                handshakes: r.handshakes,
                resumed: r.resumed,
                handshake_us: Percentiles::of(&r.handshake),
                kernel: r.kernel_tls,
                userspace_because: match &o.config.conn.ktls {
                    Err(why) => Some(why.clone()),
                    Ok(()) if o.config.conn.http2 != crate::backend::Http2::Off => {
                        Some("kernel TLS is not used with HTTP/2 yet".into())
                    }
                    Ok(()) if !o.config.backend.kind.can_kernel_tls() => Some(format!(
                        "{} keeps TLS in userspace",
                        o.config.backend.kind.name()
                    )),
                    Ok(()) => None,
                },
            }),
            protocol: Some(protocol_of(r.connects, r.h2_connections).to_string()),
            h2: (r.h2_connections > 0).then(|| H2Stats {
                connections: r.h2_connections,
                streams_per_connection: o.config.conn.streams,
                peak_streams: r.h2_peak_streams,
                goaways: r.goaways,
                stream_resets: r
                    .stream_resets
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
            }),
            per_second: r.per_second.clone(),
            series: Some(o.series.clone()),
            resources: Resources {
                cpu_user_s: cpu.user.as_secs_f64(),
                cpu_sys_s: cpu.sys.as_secs_f64(),
                cpu_us_per_request: per(cpu_s * 1e6, completed + errors),
                ctx_switches_per_request: per(ctx as f64, completed + errors),
                voluntary_ctx_switches: cpu.voluntary_ctx,
                involuntary_ctx_switches: cpu.involuntary_ctx,
                max_rss_kb: o.usage.max_rss_kb,
                syscalls,
                syscalls_per_request: syscalls.map(|n| per(n as f64, completed + errors)),
                syscalls_note,
            },
            cancelled: o.cancelled,
            run_id: None,
            labels: BTreeMap::new(),
            host: crate::wallclock::hostname(),
            start_at: None,
            started_at: Some(rfc3339(o.wall_start)),
            started_at_unix_ns: Some(unix_ns(o.wall_start)),
            ended_at: Some(rfc3339(o.wall_start + o.elapsed)),
            ended_at_unix_ns: Some(unix_ns(o.wall_start + o.elapsed)),
            merged_from: None,
        }
    }

    /// The per-second series as CSV: `second,responses,length_s`, where
    /// `length_s` is how much of that second the run lasted: 1 for a whole
    /// second, less for the last one when the run ended inside it (so its
    /// count is not read as a drop in throughput).
    pub fn to_csv(&self) -> String {
        // The series counts from the (earliest) start; it covers the span
        // from there to the (last) end, which for a merge of runs that did
        // not overlap is longer than `duration_s`.
        let span_s = match (self.started_at_unix_ns, self.ended_at_unix_ns) {
            (Some(start), Some(end)) => end.saturating_sub(start) as f64 / 1e9,
            _ => self.duration_s,
        };
        let mut out = String::from("second,responses,length_s\n");
        for (i, n) in self.per_second.iter().enumerate() {
            let length = (span_s - i as f64).clamp(0.0, 1.0);
            if length >= 1.0 {
                out.push_str(&format!("{i},{n},1\n"));
            } else {
                out.push_str(&format!("{i},{n},{length:.3}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ConnOptions;
    use crate::http::Version;
    use crate::runner::LoadConfig;
    use crate::target::{RequestOptions, Target};

    fn config(opts: &RequestOptions, conn: ConnOptions) -> LoadConfig {
        LoadConfig {
            backend: crate::backend::BackendKind::UringLoop.into(),
            targets: std::sync::Arc::new(vec![Target::new("http://127.0.0.1:9/x", opts).unwrap()]),
            connections: 1,
            threads: 1,
            stop: Stop::Count(1),
            rate: Rate::Closed,
            conn: std::sync::Arc::new(conn),
        }
    }

    #[test]
    fn the_shape_of_the_requests_is_read_from_the_run() {
        let plain = HttpShape::of(
            &config(&RequestOptions::default(), ConnOptions::default()),
            false,
        );
        assert_eq!(
            plain,
            Some(HttpShape {
                version: "HTTP/1.1".into(),
                keep_alive: true,
                pipeline: 1,
                headers: 3,
                body_bytes: 0,
            })
        );
        assert_eq!(
            plain.unwrap().describe(),
            "HTTP/1.1, 3 headers, no body, keep-alive, no pipelining"
        );
        let opts = RequestOptions {
            method: "POST".into(),
            headers: vec![("X-A".into(), "1".into()), ("X-B".into(), "2".into())],
            body: Some(vec![b'x'; 2048]),
            version: Version::Http10,
            keep_alive: false,
            ..RequestOptions::default()
        };
        let conn = ConnOptions {
            keep_alive: false,
            pipeline: 16,
            ..ConnOptions::default()
        };
        let shape = HttpShape::of(&config(&opts, conn), false).unwrap();
        // HTTP/2 sends no `Connection: close`: one field fewer.
        let closing = RequestOptions {
            keep_alive: false,
            ..RequestOptions::default()
        };
        let h1 = HttpShape::of(&config(&closing, ConnOptions::default()), false).unwrap();
        let h2 = HttpShape::of(&config(&closing, ConnOptions::default()), true).unwrap();
        assert_eq!((h1.headers, h2.headers), (4, 3));
        // Host, User-Agent, Accept, X-A, X-B, Content-Length.
        assert_eq!((shape.headers, shape.body_bytes), (6, 2048));
        assert_eq!(
            shape.describe(),
            "HTTP/1.0, 6 headers, 2.0 KiB body, keep-alive off, pipelined 16 deep"
        );
    }

    #[test]
    fn csv_marks_the_last_partial_second() {
        let json = r#"{"schema":1,"tool":"t","backend":"b","urls":[],"method":"GET",
            "connections":1,"threads":1,"mode":{"stop":"duration","count":null,
            "duration_s":2.5,"rate":null,"coordinated_omission_corrected":false},
            "requests":{"issued":0,"completed":0,"errors":0,"in_flight":0},
            "success_rate":0,"status":{},"errors":{},"error_examples":{},
            "duration_s":2.25,"rps":0,"bytes":{"read":0,"written":0},
            "connections_opened":0,"reconnects":0,
            "latency_us":{"count":0,"min":0,"mean":0,"p50":0,"p75":0,"p90":0,"p95":0,
              "p99":0,"p999":0,"p9999":0,"max":0,"hdr":""},
            "connect_us":{"count":0,"min":0,"mean":0,"p50":0,"p75":0,"p90":0,"p95":0,
              "p99":0,"p999":0,"p9999":0,"max":0,"hdr":""},
            "per_second":[100,100,25],
            "resources":{"cpu_user_s":0,"cpu_sys_s":0,"cpu_us_per_request":0,
              "ctx_switches_per_request":0,"voluntary_ctx_switches":0,
              "involuntary_ctx_switches":0,"max_rss_kb":0,"syscalls":null,
              "syscalls_per_request":null,"syscalls_note":null},
            "cancelled":false}"#;
        // A report older than `http`, `non_2xx_3xx` and the wall clock still reads.
        let mut s: Summary = serde_json::from_str(json).unwrap();
        assert_eq!((s.http.is_none(), s.non_2xx_3xx), (true, 0));
        assert_eq!(
            s.to_csv(),
            "second,responses,length_s\n0,100,1\n1,100,1\n2,25,0.250\n"
        );
        // A merge's series spans its first start to its last end.
        s.started_at_unix_ns = Some(10_000_000_000);
        s.ended_at_unix_ns = Some(12_900_000_000);
        assert!(s.to_csv().ends_with("2,25,0.900\n"), "{}", s.to_csv());
    }

    #[test]
    fn escape_shows_control_characters_instead_of_obeying_them() {
        assert!(matches!(escape("client-1 /x?a=b"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(
            escape("\u{1b}[2J\u{7}x\u{7f}\u{9b}"),
            "\\u{1b}[2J\\u{7}x\\u{7f}\\u{9b}"
        );
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(
            escape("a\\nb"),
            "a\\\\nb",
            "a literal backslash stays distinct"
        );
        assert_eq!(escape("héllo ✓"), "héllo ✓");
    }
}
