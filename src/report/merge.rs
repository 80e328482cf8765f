//! `merge`: the runs of one test on many client machines, added up into one
//! honest report.
//!
//! Exact where it can be: the latency and connect histograms travel in each
//! report as HdrHistogram V2 (base64) and are added bin by bin, so the merged
//! percentiles are those of all requests together, never an average of
//! percentiles. Counts, status codes, errors and bytes are summed; req/s is
//! the total of responses over the union of the runs' wall-clock windows.
//! Reports of different tests (targets, method, plan) are refused unless
//! forced, since their sum would mean nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{Mode, Percentiles, Resources, SCHEMA_VERSION, Summary, escape, text};
use crate::stats::{histogram_from_base64, new_histogram};
use crate::wallclock::{from_unix_ns, rfc3339};

/// One report to merge, and where it came from.
#[derive(Debug, Clone)]
pub struct Input {
    /// The file (`-` is stdin), with `#N` for the Nth report of a file holding several.
    pub source: String,
    pub summary: Summary,
}

/// One input's row in a merged report: enough to spot a bad client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeInput {
    pub source: String,
    /// `--label host=...`, else the report's `host`, else the source.
    pub host: String,
    pub run_id: Option<String>,
    pub started_at: Option<String>,
    /// Seconds after the earliest input's start.
    pub start_offset_s: Option<f64>,
    pub duration_s: f64,
    pub completed: u64,
    pub errors: u64,
    /// Responses outside 2xx/3xx (in `completed`).
    #[serde(default)]
    pub non_2xx_3xx: u64,
    pub rps: f64,
    pub p99_us: u64,
}

/// A merged report and the latency histogram it was made from.
#[derive(Debug, Clone)]
pub struct Merged {
    pub summary: Summary,
    pub latency: Histogram<u64>,
    /// Worth saying, but no reason to refuse the merge.
    pub warnings: Vec<String>,
    /// What the merge did that a reader should know (shares added up).
    pub notes: Vec<String>,
}

/// Reads the reports in one input: one JSON object, several concatenated,
/// or arrays of them (as `compare --output json` prints).
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Input>, String> {
    let shown = escape(source);
    let mut summaries = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for (i, doc) in stream.enumerate() {
        let doc = doc.map_err(|e| format!("{shown}: not JSON (document {}): {e}", i + 1))?;
        let items = match doc {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        for item in items {
            let n = summaries.len() + 1;
            let s: Summary = serde_json::from_value(item)
                .map_err(|e| format!("{shown}: report {n} is not a uringfetch load report: {e}"))?;
            summaries.push(s);
        }
    }
    if summaries.is_empty() {
        return Err(format!("{shown}: no report in it"));
    }
    let several = summaries.len() > 1;
    Ok(summaries
        .into_iter()
        .enumerate()
        .map(|(i, summary)| Input {
            source: if several {
                format!("{source}#{}", i + 1)
            } else {
                source.to_string()
            },
            summary,
        })
        .collect())
}

/// `-n 1000, closed loop` or `-z 10s, open loop at 500 req/s`.
pub fn describe_plan(m: &Mode) -> String {
    let stop = match (m.stop.as_str(), m.count, m.duration_s) {
        ("count", Some(n), _) => format!("-n {n}"),
        ("duration", _, Some(d)) => format!("-z {d}s"),
        (other, _, _) => other.to_string(),
    };
    match m.rate {
        Some(q) => format!("{stop}, open loop at {q} req/s"),
        None => format!("{stop}, closed loop"),
    }
}

/// Whether two plans are one test's. Counts (`-n`) may differ: a test of
/// 1,000,000 requests on three clients runs `-n 333334`, `-n 333333` and
/// `-n 333333`, shares that add up to the test. A duration (`-z`) and the
/// loop (closed, or `-q` per client) must be the same.
fn same_plan(a: &Mode, b: &Mode) -> bool {
    let counts = |m: &Mode| m.stop == "count" && m.count.is_some();
    if counts(a) && counts(b) {
        a.rate == b.rate
    } else {
        describe_plan(a) == describe_plan(b)
    }
}

/// Says so when the inputs ran unequal shares (`-n`) of one test.
fn shares_note(inputs: &[Input]) -> Option<String> {
    let counts: Vec<u64> = inputs.iter().filter_map(|i| i.summary.mode.count).collect();
    if counts.len() != inputs.len() || counts.iter().all(|&c| c == counts[0]) {
        return None;
    }
    let total = counts.iter().try_fold(0u64, |t, &c| t.checked_add(c))?;
    let list: Vec<String> = counts.iter().map(u64::to_string).collect();
    Some(format!(
        "the reports are unequal shares of one test, added up: -n {} = {total} requests",
        list.join(" + ")
    ))
}

/// Why two reports are not runs of the same test, if they are not.
fn differences(a: &Summary, b: &Summary) -> Vec<String> {
    let mut d = Vec::new();
    if a.urls != b.urls {
        d.push(format!(
            "targets {} vs {}",
            escape(&a.urls.join(" ")),
            escape(&b.urls.join(" "))
        ));
    }
    if a.method != b.method {
        d.push(format!(
            "method {} vs {}",
            escape(&a.method),
            escape(&b.method)
        ));
    }
    if !same_plan(&a.mode, &b.mode) {
        d.push(format!(
            "plan {} vs {}",
            describe_plan(&a.mode),
            describe_plan(&b.mode)
        ));
    }
    if let (Some(x), Some(y)) = (&a.run_id, &b.run_id)
        && x != y
    {
        d.push(format!("run id {} vs {}", escape(x), escape(y)));
    }
    d
}

/// Whether all inputs ran the same test (targets, method, plan, run id);
/// if not, says how the first differing one differs.
pub fn check_same_test(inputs: &[Input]) -> Result<(), String> {
    let Some(first) = inputs.first() else {
        return Ok(());
    };
    for other in &inputs[1..] {
        let d = differences(&first.summary, &other.summary);
        if !d.is_empty() {
            return Err(format!(
                "{} and {} are not runs of the same test: {}",
                escape(&first.source),
                escape(&other.source),
                d.join("; ")
            ));
        }
    }
    Ok(())
}

/// Decodes one report's histogram and checks it against the report's count.
fn decode(source: &str, what: &str, p: &Percentiles) -> Result<Histogram<u64>, String> {
    let source = escape(source);
    if p.hdr.is_empty() && p.count == 0 {
        return Ok(new_histogram());
    }
    let h = histogram_from_base64(&p.hdr).map_err(|e| format!("{source}: {what}.hdr: {e}"))?;
    if h.len() != p.count {
        return Err(format!(
            "{source}: {what}.hdr holds {} values but {what}.count says {}",
            h.len(),
            p.count
        ));
    }
    Ok(h)
}

/// Adds every input's latency and connect histograms, exactly.
fn add_histograms(inputs: &[Input]) -> Result<(Histogram<u64>, Histogram<u64>), String> {
    // Decoding refuses histograms wider than ours, so each input adds into
    // these without growing them.
    let mut latency = new_histogram();
    let mut connect = new_histogram();
    // hdrhistogram saturates its counts; the totals are checked here so
    // that a sum past 2^64 - 1 is refused instead.
    let (mut latency_n, mut connect_n) = (0u64, 0u64);
    for i in inputs {
        let l = decode(&i.source, "latency_us", &i.summary.latency_us)?;
        let c = decode(&i.source, "connect_us", &i.summary.connect_us)?;
        add_to(&mut latency_n, l.len(), "latency_us.count", &i.source)?;
        add_to(&mut connect_n, c.len(), "connect_us.count", &i.source)?;
        latency
            .add(&l)
            .map_err(|e| format!("{}: latency_us.hdr: {e:?}", escape(&i.source)))?;
        connect
            .add(&c)
            .map_err(|e| format!("{}: connect_us.hdr: {e:?}", escape(&i.source)))?;
    }
    Ok((latency, connect))
}

/// The inputs' TLS handshakes added up (histograms exactly); none if no
/// input ran TLS.
fn add_tls(inputs: &[Input]) -> Result<Option<super::TlsStats>, String> {
    if inputs.iter().all(|i| i.summary.tls.is_none()) {
        return Ok(None);
    }
    let mut h = new_histogram();
    let (mut n, mut handshakes, mut resumed, mut kernel) = (0u64, 0u64, 0u64, 0u64);
    let mut because = None;
    for i in inputs {
        let Some(t) = &i.summary.tls else {
            continue;
        };
        let x = decode(&i.source, "tls.handshake_us", &t.handshake_us)?;
        add_to(&mut n, x.len(), "tls.handshake_us.count", &i.source)?;
        add_to(&mut handshakes, t.handshakes, "tls.handshakes", &i.source)?;
        add_to(&mut resumed, t.resumed, "tls.resumed", &i.source)?;
        add_to(&mut kernel, t.kernel, "tls.kernel", &i.source)?;
        if because.is_none() {
            because.clone_from(&t.userspace_because);
        }
        h.add(&x)
            .map_err(|e| format!("{}: tls.handshake_us.hdr: {e:?}", escape(&i.source)))?;
    }
    Ok(Some(super::TlsStats {
        handshakes,
        resumed,
        handshake_us: Percentiles::of(&h),
        kernel,
        userspace_because: because,
    }))
}

/// The inputs' HTTP/2 counts added up; none if no input spoke it. The
/// streams per connection is the largest any input kept.
fn add_h2(inputs: &[Input]) -> Result<Option<super::H2Stats>, String> {
    let mut sum: Option<super::H2Stats> = None;
    for i in inputs {
        let Some(h) = &i.summary.h2 else {
            continue;
        };
        let s = sum.get_or_insert_with(|| super::H2Stats {
            connections: 0,
            streams_per_connection: 0,
            peak_streams: 0,
            goaways: 0,
            stream_resets: Default::default(),
        });
        add_to(
            &mut s.connections,
            h.connections,
            "h2.connections",
            &i.source,
        )?;
        add_to(&mut s.goaways, h.goaways, "h2.goaways", &i.source)?;
        s.streams_per_connection = s.streams_per_connection.max(h.streams_per_connection);
        s.peak_streams = s.peak_streams.max(h.peak_streams);
        for (code, n) in &h.stream_resets {
            let what = format!("h2.stream_resets.{code}");
            add_to(
                s.stream_resets.entry(code.clone()).or_insert(0),
                *n,
                &what,
                &i.source,
            )?;
        }
    }
    Ok(sum)
}

/// The protocols of the inputs: theirs if they agree, else `h1+h2`
/// (null if none says).
fn merge_protocol(inputs: &[Input]) -> Option<String> {
    let mut said = inputs.iter().filter_map(|i| i.summary.protocol.as_deref());
    let first = said.next()?;
    Some(if said.all(|p| p == first) {
        first.to_string()
    } else {
        "h1+h2".to_string()
    })
}

/// Why a merged counter cannot be given: past 2^64 - 1 it would wrap
/// around (silently, in a release build). No run counts that far, so the
/// reports are not real ones; a sum that is wrong is refused, not shown.
fn overflow(what: &str, source: &str) -> String {
    format!(
        "{what} of the reports up to {} add up to more than {} (2^64 - 1): these are not \
         real runs' counts; refusing to merge",
        escape(source),
        u64::MAX
    )
}

/// `into += v`, refused past `u64::MAX`.
fn add_to(into: &mut u64, v: u64, what: &str, source: &str) -> Result<(), String> {
    *into = into.checked_add(v).ok_or_else(|| overflow(what, source))?;
    Ok(())
}

/// `into += v` for a count kept as `usize` (connections, threads).
fn add_usize(into: &mut usize, v: usize, what: &str, source: &str) -> Result<(), String> {
    *into = into.checked_add(v).ok_or_else(|| overflow(what, source))?;
    Ok(())
}

/// Adds a map of counts (by status, by error kind) into another.
fn add_map(
    into: &mut BTreeMap<String, u64>,
    from: &BTreeMap<String, u64>,
    what: &str,
    source: &str,
) -> Result<(), String> {
    for (k, v) in from {
        let x = into.entry(k.clone()).or_insert(0);
        add_to(x, *v, &format!("{what}[{}]", escape(k)), source)?;
    }
    Ok(())
}

/// The measure of the union of `[start, end]` spans, in nanoseconds.
pub fn union_ns(mut spans: Vec<(u64, u64)>) -> u64 {
    spans.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (s, e) in spans {
        let e = e.max(s);
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    total + current.map_or(0, |(s, e)| e - s)
}

/// Each input's wall-clock window, if every input has one.
fn windows(inputs: &[Input]) -> Option<Vec<(u64, u64)>> {
    inputs
        .iter()
        .map(|i| Some((i.summary.started_at_unix_ns?, i.summary.ended_at_unix_ns?)))
        .collect()
}

/// The distinct values, in first-seen order, joined with commas.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for v in values.filter(|v| !v.is_empty()) {
        if seen.insert(v) {
            out.push(v);
        }
    }
    out.join(",")
}

/// The host label of an input: `--label host=`, else `host`, else the source.
fn host_of(i: &Input) -> String {
    let s = &i.summary;
    s.labels
        .get("host")
        .filter(|h| !h.is_empty())
        .or((!s.host.is_empty()).then_some(&s.host))
        .cloned()
        .unwrap_or_else(|| i.source.clone())
}

fn rows(inputs: &[Input], earliest: Option<u64>) -> Vec<MergeInput> {
    inputs
        .iter()
        .map(|i| {
            let s = &i.summary;
            MergeInput {
                source: i.source.clone(),
                host: host_of(i),
                run_id: s.run_id.clone(),
                started_at: s.started_at.clone(),
                start_offset_s: s
                    .started_at_unix_ns
                    .zip(earliest)
                    .map(|(t, e)| t.saturating_sub(e) as f64 / 1e9),
                duration_s: s.duration_s,
                completed: s.requests.completed,
                errors: s.requests.errors,
                non_2xx_3xx: super::non_2xx_3xx(&s.status),
                rps: s.rps,
                p99_us: s.latency_us.p99,
            }
        })
        .collect()
}

fn per(total: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { total / n as f64 }
}

/// Sums the client-side costs; the peak RSS is the largest single client's.
fn add_resources(inputs: &[Input], requests: u64) -> Result<Resources, String> {
    let all: Vec<&Resources> = inputs.iter().map(|i| &i.summary.resources).collect();
    let (user, sys) = (
        all.iter().map(|r| r.cpu_user_s).sum::<f64>(),
        all.iter().map(|r| r.cpu_sys_s).sum::<f64>(),
    );
    let (mut vol, mut invol, mut syscalls) = (0u64, 0u64, Some(0u64));
    for i in inputs {
        let r = &i.summary.resources;
        add_to(
            &mut vol,
            r.voluntary_ctx_switches,
            "voluntary_ctx_switches",
            &i.source,
        )?;
        add_to(
            &mut invol,
            r.involuntary_ctx_switches,
            "involuntary_ctx_switches",
            &i.source,
        )?;
        syscalls = match (syscalls, r.syscalls) {
            (Some(mut a), Some(b)) => {
                add_to(&mut a, b, "resources.syscalls", &i.source)?;
                Some(a)
            }
            _ => None,
        };
    }
    Ok(Resources {
        cpu_user_s: user,
        cpu_sys_s: sys,
        cpu_us_per_request: per((user + sys) * 1e6, requests),
        ctx_switches_per_request: per(vol as f64 + invol as f64, requests),
        voluntary_ctx_switches: vol,
        involuntary_ctx_switches: invol,
        max_rss_kb: all.iter().map(|r| r.max_rss_kb).max().unwrap_or(0),
        syscalls,
        syscalls_per_request: syscalls.map(|n| per(n as f64, requests)),
        syscalls_note: match syscalls {
            Some(_) => None,
            None => Some(
                all.iter()
                    .find_map(|r| r.syscalls_note.clone())
                    .unwrap_or_else(|| "not counted on every client".into()),
            ),
        },
    })
}

/// The plan of all clients together: counts and rates add up.
fn add_modes(inputs: &[Input]) -> Result<Mode, String> {
    let mut m = inputs[0].summary.mode.clone();
    for i in &inputs[1..] {
        m.count = match (m.count, i.summary.mode.count) {
            (Some(mut a), Some(b)) => {
                add_to(&mut a, b, "mode.count", &i.source)?;
                Some(a)
            }
            _ => None,
        };
        m.rate = m.rate.zip(i.summary.mode.rate).map(|(a, b)| a + b);
    }
    Ok(m)
}

/// Inputs that started further apart than this get no merged per-second
/// series (a client's clock is wrong, or these are not one test run): the
/// series would be that many seconds long.
const MAX_SERIES_SPREAD_S: u64 = 24 * 3600;

/// How long after the earliest input `i` started, in ns; `None` if more
/// than [`MAX_SERIES_SPREAD_S`] apart (the series are not put together).
fn offset_ns(i: &Input, earliest: Option<u64>) -> Option<u64> {
    let offset = i
        .summary
        .started_at_unix_ns
        .zip(earliest)
        .map_or(0, |(t, e)| t.saturating_sub(e));
    (offset / 1_000_000_000 <= MAX_SERIES_SPREAD_S).then_some(offset)
}

/// The per-second series of all inputs on one wall-clock axis, one bucket
/// per second from the earliest start. An input that started `f` of a
/// second into a bucket has each of its seconds straddle two buckets: its
/// count is split between them in those proportions (rounded, so the sum
/// stays exactly the completed responses). `Ok(None)` when the starts are
/// more than [`MAX_SERIES_SPREAD_S`] apart.
fn add_per_second(inputs: &[Input], earliest: Option<u64>) -> Result<Option<Vec<u64>>, String> {
    const SECOND: u64 = 1_000_000_000;
    let mut out: Vec<u64> = Vec::new();
    for i in inputs {
        let Some(offset_ns) = offset_ns(i, earliest) else {
            return Ok(None);
        };
        let (whole, frac) = ((offset_ns / SECOND) as usize, offset_ns % SECOND);
        let series = &i.summary.per_second;
        if out.len() < whole + series.len() {
            out.resize(whole + series.len(), 0);
        }
        for (k, &v) in series.iter().enumerate() {
            // The part of this second that falls in the next bucket.
            let later = ((u128::from(v) * u128::from(frac) + u128::from(SECOND / 2))
                / u128::from(SECOND)) as u64;
            add_to(&mut out[whole + k], v - later, "per_second", &i.source)?;
            if later > 0 {
                if out.len() < whole + k + 2 {
                    out.push(0);
                }
                add_to(&mut out[whole + k + 1], later, "per_second", &i.source)?;
            }
        }
    }
    Ok(Some(out))
}

/// The inputs' per-second series added up: each input's seconds are moved
/// to the whole second of the earliest start nearest to its own start (a
/// second's histogram cannot be split between two as `per_second`'s counts
/// are), counts add, and each second's percentiles come from the sum of
/// the inputs' histograms of that second, exactly. `Ok(None)` when an
/// input has no series (a report older than it) or the starts are more
/// than [`MAX_SERIES_SPREAD_S`] apart. One merged second at a time, so the
/// memory does not grow with the run's length.
fn add_series(inputs: &[Input], earliest: Option<u64>) -> Result<Option<super::PerSecond>, String> {
    const SECOND: u64 = 1_000_000_000;
    let mut placed = Vec::new();
    for i in inputs {
        let Some(series) = &i.summary.series else {
            return Ok(None);
        };
        series
            .check()
            .map_err(|e| format!("{}: {e}", escape(&i.source)))?;
        let Some(offset_ns) = offset_ns(i, earliest) else {
            return Ok(None);
        };
        placed.push((
            ((offset_ns + SECOND / 2) / SECOND) as usize,
            series,
            &i.source,
        ));
    }
    let len = placed
        .iter()
        .map(|(o, s, _)| o + s.len())
        .max()
        .unwrap_or(0);
    let mut out = super::PerSecond::default();
    for second in 0..len {
        let (mut responses, mut errors) = (0u64, 0u64);
        let mut h = new_histogram();
        for (offset, series, source) in &placed {
            let Some(k) = second.checked_sub(*offset).filter(|&k| k < series.len()) else {
                continue;
            };
            add_to(
                &mut responses,
                series.responses[k],
                "series.responses",
                source,
            )?;
            add_to(&mut errors, series.errors[k], "series.errors", source)?;
            let hk = histogram_from_base64(&series.hdr[k])
                .map_err(|e| format!("{}: series.hdr[{k}]: {e}", escape(source)))?;
            h.add(&hk)
                .map_err(|e| format!("{}: series.hdr[{k}]: {e:?}", escape(source)))?;
        }
        out.push(responses, errors, &h);
    }
    Ok(Some(out))
}

/// Identity fields of the merged report: what all inputs share.
fn shared_identity(inputs: &[Input], s: &mut Summary) {
    let first = &inputs[0].summary;
    s.labels = first
        .labels
        .iter()
        .filter(|(k, v)| inputs.iter().all(|i| i.summary.labels.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ids = distinct(inputs.iter().filter_map(|i| i.summary.run_id.as_deref()));
    s.run_id = (!ids.is_empty()).then_some(ids);
    s.start_at = first.start_at.clone().filter(|a| {
        inputs
            .iter()
            .all(|i| i.summary.start_at.as_ref() == Some(a))
    });
    s.host = distinct(inputs.iter().map(|i| i.summary.host.as_str()));
    s.backend = distinct(inputs.iter().map(|i| i.summary.backend.as_str()));
    s.urls = first.urls.clone();
    for i in inputs {
        for u in &i.summary.urls {
            if !s.urls.contains(u) {
                s.urls.push(u.clone());
            }
        }
    }
}

/// Adds the counters of `rest` into `s`, a copy of the first input; a sum
/// past `u64::MAX` is refused.
fn add_counts(rest: &[Input], s: &mut Summary) -> Result<(), String> {
    for i in rest {
        let (x, src) = (&i.summary, i.source.as_str());
        add_to(
            &mut s.requests.issued,
            x.requests.issued,
            "requests.issued",
            src,
        )?;
        add_to(
            &mut s.requests.completed,
            x.requests.completed,
            "requests.completed",
            src,
        )?;
        add_to(
            &mut s.requests.errors,
            x.requests.errors,
            "requests.errors",
            src,
        )?;
        add_to(
            &mut s.requests.in_flight,
            x.requests.in_flight,
            "requests.in_flight",
            src,
        )?;
        add_to(
            &mut s.requests.unsent,
            x.requests.unsent,
            "requests.unsent",
            src,
        )?;
        add_map(&mut s.status, &x.status, "status", src)?;
        add_map(&mut s.errors, &x.errors, "errors", src)?;
        for (k, v) in &x.error_examples {
            s.error_examples
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        add_to(&mut s.bytes.read, x.bytes.read, "bytes.read", src)?;
        add_to(&mut s.bytes.written, x.bytes.written, "bytes.written", src)?;
        add_to(
            &mut s.connections_opened,
            x.connections_opened,
            "connections_opened",
            src,
        )?;
        add_to(&mut s.reconnects, x.reconnects, "reconnects", src)?;
        add_to(&mut s.retries, x.retries, "retries", src)?;
        add_usize(&mut s.connections, x.connections, "connections", src)?;
        add_usize(&mut s.threads, x.threads, "threads", src)?;
    }
    Ok(())
}

/// The length of the union of the inputs' windows in seconds, the first
/// start and the last end (unix ns), when every input has its window.
fn time_window(inputs: &[Input], warnings: &mut Vec<String>) -> (f64, Option<u64>, Option<u64>) {
    let Some(w) = windows(inputs) else {
        warnings.push(
            "some reports have no wall-clock start and end (made before uringfetch recorded \
             them): req/s is over the longest run instead of the union of the runs"
                .into(),
        );
        let longest = inputs
            .iter()
            .map(|i| i.summary.duration_s)
            .fold(0.0, f64::max);
        return (longest, None, None);
    };
    let earliest = w.iter().map(|x| x.0).min();
    let latest = w.iter().map(|x| x.1).max();
    (union_ns(w) as f64 / 1e9, earliest, latest)
}

/// The same report given twice (a glob that matched a file and its copy, a
/// file named twice) would count its run twice: refused, even when forced.
/// Two clients never start and end on the same nanosecond on the same host.
fn refuse_repeats(inputs: &[Input]) -> Result<(), String> {
    let mut seen = BTreeMap::new();
    for i in inputs {
        let s = &i.summary;
        let Some(start) = s.started_at_unix_ns else {
            continue;
        };
        let key = (start, s.ended_at_unix_ns, host_of(i));
        if let Some(first) = seen.insert(key, &i.source) {
            return Err(format!(
                "{} and {} are the same run (host {}, started and ended on the same \
                 nanosecond): give each client's report once",
                escape(first),
                escape(&i.source),
                escape(&host_of(i))
            ));
        }
    }
    // A merged report holds its inputs' runs (`merged_from`): one of them
    // given again beside it would count twice.
    let mut runs: BTreeMap<(String, String), &str> = BTreeMap::new();
    for i in inputs {
        let s = &i.summary;
        let held: Vec<(String, String)> = match &s.merged_from {
            Some(rows) => rows
                .iter()
                .filter_map(|r| Some((r.host.clone(), r.started_at.clone()?)))
                .collect(),
            None => s
                .started_at
                .iter()
                .map(|t| (host_of(i), t.clone()))
                .collect(),
        };
        for key in held {
            if let Some(first) = runs.insert(key.clone(), &i.source) {
                if first == i.source {
                    continue;
                }
                return Err(format!(
                    "{} and {} both hold the run of host {} started at {}: a merged report \
                     already counts its inputs, so give each client's run once",
                    escape(first),
                    escape(&i.source),
                    escape(&key.0),
                    escape(&key.1)
                ));
            }
        }
    }
    Ok(())
}

/// Adds up the reports. Call [`check_same_test`] first unless forced.
pub fn merge(inputs: &[Input]) -> Result<Merged, String> {
    let Some(first) = inputs.first() else {
        return Err("nothing to merge".into());
    };
    if let Some(i) = inputs.iter().find(|i| i.summary.schema != SCHEMA_VERSION) {
        return Err(format!(
            "{}: report schema {} is not {SCHEMA_VERSION}, which this uringfetch reads",
            escape(&i.source),
            i.summary.schema
        ));
    }
    refuse_repeats(inputs)?;
    let (latency, connect) = add_histograms(inputs)?;
    let mut warnings = Vec::new();
    let (duration_s, earliest, latest) = time_window(inputs, &mut warnings);
    let mut s = first.summary.clone();
    s.tool = format!("uringfetch {}", env!("CARGO_PKG_VERSION"));
    add_counts(&inputs[1..], &mut s)?;
    shared_identity(inputs, &mut s);
    s.mode = add_modes(inputs)?;
    if inputs.iter().any(|i| i.summary.http.is_none()) {
        // A report older than the field: how it sent its requests is unknown.
        s.http = None;
    } else if inputs.iter().any(|i| i.summary.http != s.http) {
        // Said, not refused: the inputs' plans and targets are one test's.
        warnings.push(
            "the reports sent requests of different shapes (HTTP version, keep-alive, \
             pipelining, headers or body): the merged report gives none"
                .into(),
        );
        s.http = None;
    }
    let (completed, errors) = (s.requests.completed, s.requests.errors);
    // From the merged status map, not summed: reports older than the field
    // have it 0 but their statuses.
    s.non_2xx_3xx = super::non_2xx_3xx(&s.status);
    s.success_rate = super::success_rate(&s.requests, s.non_2xx_3xx);
    s.resources = add_resources(inputs, completed.saturating_add(errors))?;
    s.duration_s = duration_s;
    s.rps = if duration_s > 0.0 {
        s.requests.completed as f64 / duration_s
    } else {
        0.0
    };
    s.latency_us = Percentiles::of(&latency);
    s.connect_us = Percentiles::of(&connect);
    s.tls = add_tls(inputs)?;
    s.h2 = add_h2(inputs)?;
    s.protocol = merge_protocol(inputs);
    s.per_second = add_per_second(inputs, earliest)?.unwrap_or_else(|| {
        warnings.push(format!(
            "no per-second series: the runs started more than {} h apart",
            MAX_SERIES_SPREAD_S / 3600
        ));
        Vec::new()
    });
    s.series = add_series(inputs, earliest)?;
    if s.series.is_none() && inputs.iter().any(|i| i.summary.series.is_none()) {
        warnings.push(
            "no per-second series (`series`, which charts draw): a report is older than it".into(),
        );
    }
    s.cancelled = inputs.iter().any(|i| i.summary.cancelled);
    s.started_at = earliest.map(|t| rfc3339(from_unix_ns(t)));
    s.started_at_unix_ns = earliest;
    s.ended_at = latest.map(|t| rfc3339(from_unix_ns(t)));
    s.ended_at_unix_ns = latest;
    let rows = rows(inputs, earliest);
    if let Some(late) = rows
        .iter()
        .filter_map(|r| r.start_offset_s)
        .reduce(f64::max)
        && late > 1.0
    {
        warnings.push(format!(
            "the runs started up to {late:.3} s apart: they did not run together \
             (use the same --start-at on every client)"
        ));
    }
    s.merged_from = Some(rows);
    Ok(Merged {
        summary: s,
        latency,
        warnings,
        notes: shares_note(inputs).into_iter().collect(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The per-input table, with a note on any client that stands out.
pub fn render_inputs(rows: &[MergeInput]) -> String {
    let mut o = String::new();
    let med_rps = median(rows.iter().map(|r| r.rps).collect());
    let med_p99 = median(rows.iter().map(|r| r.p99_us as f64).collect());
    // Hosts that repeat (several clients on one machine) get their source too.
    let labels: Vec<String> = rows
        .iter()
        .map(|r| match rows.iter().filter(|x| x.host == r.host).count() {
            1 => escape(&r.host).into_owned(),
            _ => format!("{} ({})", escape(&r.host), escape(&r.source)),
        })
        .collect();
    let width = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(o, "\nPer input ({} reports)", rows.len());
    let _ = writeln!(
        o,
        "  {:<width$}  {:>9}  {:>12}  {:>10}  {:>8}  {:>10}",
        "host", "start", "req/s", "p99", "errors", "completed"
    );
    for (r, label) in rows.iter().zip(&labels) {
        let mut notes = Vec::new();
        if r.errors > 0 {
            notes.push("errors");
        }
        if r.non_2xx_3xx > 0 {
            notes.push("non-2xx/3xx responses");
        }
        if med_p99 > 0.0 && r.p99_us as f64 > 2.0 * med_p99 {
            notes.push("p99 over twice the median");
        }
        if r.rps < med_rps / 2.0 {
            notes.push("req/s under half the median");
        }
        if r.start_offset_s.is_some_and(|s| s > 0.1) {
            notes.push("started late");
        }
        let start = r
            .start_offset_s
            .map_or("?".to_string(), |s| format!("+{:.0}ms", s * 1e3));
        let _ = writeln!(
            o,
            "  {label:<width$}  {start:>9}  {:>12.2}  {:>10}  {:>8}  {:>10}{}",
            r.rps,
            text::fmt_us(r.p99_us),
            r.errors,
            r.completed,
            if notes.is_empty() {
                String::new()
            } else {
                format!("   <- {}", notes.join(", "))
            }
        );
    }
    o
}

/// The text form: a line on what was merged, the `load` report, the table.
pub fn render_text(m: &Merged) -> String {
    let s = &m.summary;
    let rows = s.merged_from.as_deref().unwrap_or(&[]);
    let mut o = format!(
        "Merged {} report{}{}: {} to {}\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        s.run_id
            .as_ref()
            .map_or(String::new(), |id| format!(" of run {}", escape(id))),
        escape(s.started_at.as_deref().unwrap_or("?")),
        escape(s.ended_at.as_deref().unwrap_or("?")),
    );
    let _ = writeln!(
        o,
        "  Targets:        {} ({})",
        escape(&s.urls.join(" ")),
        escape(&s.method)
    );
    let _ = writeln!(o, "  Plan:           {}", describe_plan(&s.mode));
    for note in &m.notes {
        let _ = writeln!(o, "  Note:           {note}");
    }
    o.push_str(&text::render(s, &m.latency));
    o.push_str(&render_inputs(rows));
    o
}
