//! The text report people read after a load test: the numbers that matter
//! first, then the latency distribution, failures and what the run cost.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::{Percentiles, Summary, escape};
use crate::error::ErrorKind;

/// `812µs`, `12.3ms`, `1.004s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.3}s", us as f64 / 1e6)
    }
}

/// `1.2 KiB`, `3.4 MiB`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A bar chart of the latency distribution in `buckets` equal-width bins.
fn histogram_bars(h: &Histogram<u64>, buckets: u64, out: &mut String) {
    if h.is_empty() {
        return;
    }
    let (lo, hi) = (h.min(), h.max());
    let width = ((hi - lo) / buckets).max(1);
    let mut counts = vec![0u64; buckets as usize];
    for v in h.iter_recorded() {
        let i =
            (((v.value_iterated_to().saturating_sub(lo)) / width) as usize).min(counts.len() - 1);
        counts[i] += v.count_at_value();
    }
    let most = counts.iter().copied().max().unwrap_or(1).max(1);
    for (i, c) in counts.iter().enumerate() {
        let upper = lo + width * (i as u64 + 1);
        let bar = "■".repeat(((c * 40).div_ceil(most)) as usize);
        let _ = writeln!(out, "  {:>10} [{c:>8}] |{bar}", fmt_us(upper.min(hi)));
    }
}

/// Renders the text report. `latency` is the merged histogram the summary was made from.
pub fn render(s: &Summary, latency: &Histogram<u64>) -> String {
    let mut o = String::new();
    let mode = match s.mode.rate {
        Some(q) => format!("open loop at {q} req/s"),
        None => "closed loop".to_string(),
    };
    let _ = writeln!(
        o,
        "Summary ({}, {} connection{}, {} thread{}, {mode}{})",
        escape(&s.backend),
        s.connections,
        if s.connections == 1 { "" } else { "s" },
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        if s.cancelled {
            ", stopped early by Ctrl-C or q"
        } else {
            ""
        },
    );
    if let Some(http) = &s.http {
        let _ = writeln!(
            o,
            "  Requests sent:  {} {}",
            escape(&s.method),
            http.describe()
        );
    }
    let r = &s.requests;
    let finished = r.completed.saturating_add(r.errors);
    if finished == 0 {
        let _ = writeln!(o, "  Success rate:   n/a (no request finished)");
    } else {
        // Said with its definition: a rate people read as "it worked".
        let _ = writeln!(
            o,
            "  Success rate:   {:.2}% (2xx/3xx responses of {finished} requests finished{})",
            s.success_rate * 100.0,
            if r.in_flight > 0 {
                format!("; {} in flight at the end not counted", r.in_flight)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(o, "  Total time:     {:.4} s", s.duration_s);
    let _ = writeln!(
        o,
        "  Requests:       {} issued, {} completed, {} errors, {} in flight at the end",
        r.issued, r.completed, r.errors, r.in_flight
    );
    if r.unsent > 0 {
        let _ = writeln!(
            o,
            "                  {} of those in flight were due but never sent: every connection \
             was busy (more -c would keep up with -q)",
            r.unsent
        );
    }
    if s.non_2xx_3xx > 0 {
        // wrk's words, so that a search for them finds this line too.
        let _ = writeln!(o, "  Non-2xx or 3xx responses: {}", s.non_2xx_3xx);
    }
    let _ = writeln!(o, "  Requests/sec:   {:.2}", s.rps);
    let secs = s.duration_s.max(1e-9);
    let _ = writeln!(
        o,
        "  Transfer:       {} read ({}/s), {} written",
        fmt_bytes(s.bytes.read),
        fmt_bytes((s.bytes.read as f64 / secs) as u64),
        fmt_bytes(s.bytes.written)
    );
    let _ = writeln!(
        o,
        "  Connections:    {} opened, {} reopened{}",
        s.connections_opened,
        s.reconnects,
        if s.retries > 0 {
            format!(
                "; {} requests retried after a reused connection was closed or reset before answering",
                s.retries
            )
        } else {
            String::new()
        }
    );
    let l = &s.latency_us;
    let _ = writeln!(
        o,
        "\nLatency{}",
        if s.mode.coordinated_omission_corrected {
            " (from each request's intended start: coordinated omission corrected)"
        } else {
            " (from sending the request; connection setup is under Connect time)"
        }
    );
    if l.count == 0 {
        let _ = writeln!(o, "  no responses");
    } else {
        let _ = writeln!(
            o,
            "  min {}  mean {}  max {}",
            fmt_us(l.min),
            fmt_us(l.mean as u64),
            fmt_us(l.max)
        );
        for (name, v) in [
            ("p50", l.p50),
            ("p75", l.p75),
            ("p90", l.p90),
            ("p95", l.p95),
            ("p99", l.p99),
            ("p99.9", l.p999),
            ("p99.99", l.p9999),
        ] {
            let _ = writeln!(o, "  {name:>7}  {}", fmt_us(v));
        }
        let _ = writeln!(o, "\nLatency histogram");
        histogram_bars(latency, 10, &mut o);
    }
    let short = |o: &mut String, label: &str, p: &Percentiles| {
        if p.count > 0 {
            let _ = writeln!(
                o,
                "{label}: p50 {}  p99 {}  max {}",
                fmt_us(p.p50),
                fmt_us(p.p99),
                fmt_us(p.max)
            );
        }
    };
    short(&mut o, "\nConnect time", &s.connect_us);
    if let Some(t) = &s.tls {
        short(&mut o, "TLS handshake", &t.handshake_us);
        let _ = writeln!(
            o,
            "TLS handshakes: {} ({} full, {} resumed)",
            t.handshakes,
            t.handshakes - t.resumed.min(t.handshakes),
            t.resumed
        );
        match &t.userspace_because {
            Some(why) if t.kernel == 0 => {
                let _ = writeln!(o, "Kernel TLS: no ({})", escape(why));
            }
            _ => {
                let _ = writeln!(
                    o,
                    "Kernel TLS: {} connections (the kernel encrypted and decrypted)",
                    t.kernel
                );
            }
        }
    }
    if let Some(h) = &s.h2 {
        let resets: u64 = h.stream_resets.values().sum();
        let _ = writeln!(
            o,
            "HTTP/2:         {} over {} connection{}, {} stream{} each{}; {} GOAWAY, {} stream{} reset{}",
            s.protocol.as_deref().unwrap_or("h2"),
            h.connections,
            if h.connections == 1 { "" } else { "s" },
            h.streams_per_connection,
            if h.streams_per_connection == 1 {
                ""
            } else {
                "s"
            },
            if h.peak_streams > 0 && h.peak_streams < h.streams_per_connection {
                format!(" (at most {} open at once)", h.peak_streams)
            } else {
                String::new()
            },
            h.goaways,
            resets,
            if resets == 1 { "" } else { "s" },
            if resets == 0 {
                String::new()
            } else {
                let codes: Vec<String> = h
                    .stream_resets
                    .iter()
                    .map(|(c, n)| format!("{} {n}", escape(c)))
                    .collect();
                format!(" ({})", codes.join(", "))
            }
        );
    }
    if !s.status.is_empty() {
        let _ = writeln!(o, "\nStatus codes");
        for (code, n) in &s.status {
            let _ = writeln!(o, "  [{}] {n} responses", escape(code));
        }
    }
    if !s.errors.is_empty() {
        let _ = writeln!(o, "\nErrors");
        for kind in ErrorKind::ALL {
            let Some(n) = s.errors.get(kind.name()) else {
                continue;
            };
            let example = s.error_examples.get(kind.name()).map_or("", String::as_str);
            let _ = writeln!(o, "  {:<20} {n:>8}   e.g. {}", kind.name(), escape(example));
            if let Some(advice) = kind.advice() {
                let _ = writeln!(o, "  {:<20} {:>8}   -> {advice}", "", "");
            }
        }
    }
    let res = &s.resources;
    let _ = writeln!(o, "\nResources (client I/O threads)");
    let _ = writeln!(
        o,
        "  CPU:            {:.3} s user + {:.3} s sys = {:.2} µs/request",
        res.cpu_user_s, res.cpu_sys_s, res.cpu_us_per_request
    );
    let _ = writeln!(
        o,
        "  Ctx switches:   {:.3}/request ({} voluntary, {} involuntary)",
        res.ctx_switches_per_request, res.voluntary_ctx_switches, res.involuntary_ctx_switches
    );
    let _ = writeln!(o, "  Peak RSS:       {}", fmt_bytes(res.max_rss_kb * 1024));
    match (res.syscalls_per_request, &res.syscalls_note) {
        (Some(per), _) => {
            let _ = writeln!(o, "  Syscalls:       {per:.2}/request");
        }
        (None, Some(why)) => {
            let _ = writeln!(o, "  Syscalls:       n/a ({})", escape(why));
        }
        (None, None) => {}
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary of `statuses` responses and `errors` failures, `in_flight`
    /// cut off: built from a real recorder.
    fn summary(statuses: &[(u16, u64)], errors: u64, in_flight: u64) -> Summary {
        use std::time::{Duration, Instant};
        let start = Instant::now();
        let mut r = crate::stats::Recorder::new(start);
        for &(code, n) in statuses {
            for _ in 0..n {
                r.issue();
                r.response(code, start, start + Duration::from_micros(100));
            }
        }
        for _ in 0..errors {
            r.issue();
            r.error(ErrorKind::Refused, "connection refused: 127.0.0.1:9");
        }
        r.issued += in_flight;
        r.in_flight = in_flight;
        let outcome = crate::runner::LoadOutcome {
            series: Default::default(),
            config: crate::runner::LoadConfig {
                backend: crate::backend::BackendKind::Threads.into(),
                targets: std::sync::Arc::new(vec![
                    crate::target::Target::new(
                        "http://127.0.0.1:9/x",
                        &crate::target::RequestOptions::default(),
                    )
                    .unwrap(),
                ]),
                connections: 1,
                threads: 1,
                stop: crate::plan::Stop::Count(1),
                rate: crate::plan::Rate::Closed,
                conn: Default::default(),
            },
            recorder: r,
            elapsed: Duration::from_secs(1),
            wall_start: std::time::SystemTime::now(),
            usage: Default::default(),
            cancelled: false,
        };
        Summary::new(&outcome, "GET")
    }

    fn render_summary(s: &Summary) -> String {
        let h = crate::stats::histogram_from_base64(&s.latency_us.hdr).unwrap();
        render(s, &h)
    }

    #[test]
    fn responses_outside_2xx_3xx_are_not_success() {
        // Issue 19 item 12: 2,000 x 404 read "Success rate: 100.00%".
        let s = summary(&[(404, 2000)], 0, 0);
        assert_eq!(s.non_2xx_3xx, 2000);
        assert_eq!(s.success_rate, 0.0);
        let text = render_summary(&s);
        assert!(
            text.contains("Success rate:   0.00% (2xx/3xx responses of 2000 requests finished)\n"),
            "{text}"
        );
        assert!(
            text.contains("  Non-2xx or 3xx responses: 2000\n"),
            "{text}"
        );

        // 2xx and 3xx succeed; 1xx, 4xx, 5xx and errors do not; requests
        // cut off in flight did not finish and are not counted.
        let s = summary(&[(200, 50), (204, 10), (301, 10), (503, 10)], 10, 20);
        assert_eq!(s.requests.issued, 110);
        assert_eq!(s.non_2xx_3xx, 10);
        assert!((s.success_rate - 70.0 / 90.0).abs() < 1e-12);
        let text = render_summary(&s);
        assert!(
            text.contains(
                "77.78% (2xx/3xx responses of 90 requests finished; 20 in flight at the end not counted)"
            ),
            "{text}"
        );
        let text = render_summary(&summary(&[(200, 3)], 0, 0));
        assert!(text.contains("Success rate:   100.00%"), "{text}");
        // Issue 19 item 13: one of each is singular.
        assert!(
            text.starts_with("Summary (threads, 1 connection, 1 thread, closed loop)\n"),
            "{text}"
        );
        assert!(!text.contains("Non-2xx"), "{text}");
        let text = render_summary(&summary(&[], 0, 0));
        assert!(
            text.contains("Success rate:   n/a (no request finished)"),
            "{text}"
        );
    }

    #[test]
    fn formats_units() {
        assert_eq!(fmt_us(812), "812µs");
        assert_eq!(fmt_us(12_345), "12.35ms");
        assert_eq!(fmt_us(1_004_000), "1.004s");
        assert_eq!(fmt_bytes(10), "10 B");
        assert_eq!(fmt_bytes(2048), "2.0 KiB");
    }
}
