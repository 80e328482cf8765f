//! The side-by-side table of `compare`: one row per backend and connection
//! count, with each row's req/s as a ratio to the best row of its group.

use std::fmt::Write;

use super::Summary;
use super::text::{fmt_bytes, fmt_us};

/// Renders one scenario's rows.
pub fn render(label: &str, rows: &[Summary]) -> String {
    let mut o = String::new();
    let tls = rows.iter().any(|r| r.tls.is_some());
    let h2 = rows.iter().any(|r| r.h2.is_some());
    let _ = writeln!(o, "\n== {label} ==");
    let _ = write!(
        o,
        "{:<12} {:>6} {:>11} {:>7} {:>9} {:>9} {:>10} {:>10} {:>8} {:>10} {:>7}",
        "backend",
        "conns",
        "req/s",
        "vs best",
        "p50",
        "p99",
        "CPU µs/req",
        "syscall/req",
        "ctx/req",
        "peak RSS",
        "errors"
    );
    // Over TLS: the handshake's median and how many handshakes resumed.
    let _ = writeln!(
        o,
        "{}{}",
        if tls {
            format!(" {:>9} {:>13}", "hs p50", "full/resumed")
        } else {
            String::new()
        },
        // Over HTTP/2: the protocol, streams per connection, GOAWAYs and resets.
        if h2 {
            format!(
                " {:>6} {:>7} {:>6} {:>6}",
                "proto", "streams", "goaway", "rst"
            )
        } else {
            String::new()
        }
    );
    for r in rows {
        let best = rows
            .iter()
            .filter(|x| x.connections == r.connections)
            .map(|x| x.rps)
            .fold(0.0, f64::max);
        let ratio = if best > 0.0 { r.rps / best } else { 0.0 };
        let syscalls = r
            .resources
            .syscalls_per_request
            .map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
        let _ = write!(
            o,
            "{:<12} {:>6} {:>11.1} {:>6.2}x {:>9} {:>9} {:>10.1} {:>10} {:>8.3} {:>10} {:>7}",
            r.backend,
            r.connections,
            r.rps,
            ratio,
            fmt_us(r.latency_us.p50),
            fmt_us(r.latency_us.p99),
            r.resources.cpu_us_per_request,
            syscalls,
            r.resources.ctx_switches_per_request,
            fmt_bytes(r.resources.max_rss_kb * 1024),
            r.requests.errors
        );
        let hs = match &r.tls {
            Some(t) if tls => format!(
                " {:>9} {:>13}",
                fmt_us(t.handshake_us.p50),
                format!(
                    "{}/{}",
                    t.handshakes - t.resumed.min(t.handshakes),
                    t.resumed
                )
            ),
            _ => String::new(),
        };
        let streams = match &r.h2 {
            Some(x) if h2 => format!(
                " {:>6} {:>7} {:>6} {:>6}",
                r.protocol.as_deref().unwrap_or("h2"),
                x.streams_per_connection,
                x.goaways,
                x.stream_resets.values().sum::<u64>()
            ),
            None if h2 => format!(
                " {:>6} {:>7} {:>6} {:>6}",
                r.protocol.as_deref().unwrap_or("h1"),
                "-",
                "-",
                "-"
            ),
            _ => String::new(),
        };
        let _ = writeln!(o, "{hs}{streams}");
    }
    if let Some(note) = rows.iter().find_map(|r| r.resources.syscalls_note.clone()) {
        let _ = writeln!(o, "syscalls n/a: {note}");
    }
    o
}
