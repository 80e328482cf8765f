//! `uringfetch demo`: the article's experiment with no arguments.
//!
//! Starts the demo server in-process on a free loopback port, fetches `/bar`
//! then `/foo` with blocking sockets (about two delays), then runs the same
//! requests concurrently on the chosen backend (about one delay), and prints
//! both times and the speed-up.
//!
//! With `--http2` the concurrent part multiplexes: the requests are
//! streams of one HTTP/2 connection (h2c with prior knowledge, or h2 by
//! ALPN with `--tls`; 128 streams a connection at most, the server's
//! limit), and the line says how many connections the run opened.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::backend::{BackendKind, ConnOptions, Http2, Live};
use crate::cli::DemoArgs;
use crate::plan::{Rate, Stop};
use crate::report::text::{fmt_bytes, fmt_us};
use crate::runner::{self, LoadConfig};
use crate::server::{self, ServeOptions};
use crate::target::{RequestOptions, Target};

/// Runs the demo; returns the exit code.
/// `println!` through [`super::emit`]: a stdout that cannot be written
/// (a full disk) fails the command instead of panicking; a closed pipe
/// drops the rest quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        super::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    if args.requests == 0 {
        anyhow::bail!("--requests must be at least 1");
    }
    runner::check_fd_limit(
        args.requests.saturating_mul(2),
        &format!("--requests {}", args.requests),
    )
    .map_err(anyhow::Error::msg)?;
    let (options, cert) = if args.tls {
        let (options, cert) = ServeOptions::in_process_tls(args.delay)
            .context("cannot make the demo server's certificate")?;
        (options, Some(cert))
    } else {
        (ServeOptions::in_process(args.delay), None)
    };
    let handle = server::start(options).context("cannot start the demo server")?;
    let scheme = if cert.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", handle.addr);
    if let Some(why) = &handle.fallback {
        crate::say!("uringfetch: {why}; the demo server runs on epoll instead");
    }
    out!(
        "demo server ({}) on {base} (/bar and /foo answer after {})",
        handle.engine.name(),
        crate::error::fmt_duration(args.delay)
    );
    let result = experiment(&args, &base, cert.as_deref());
    handle.shutdown();
    result
}

fn experiment(args: &DemoArgs, base: &str, cert: Option<&str>) -> anyhow::Result<i32> {
    let opts = RequestOptions::default();
    let urls = [format!("{base}/bar"), format!("{base}/foo")];
    let targets = urls
        .iter()
        .map(|u| Target::new(u, &opts))
        .collect::<Result<Vec<_>, _>>()?;
    // Over TLS, a client configuration trusting the server's certificate;
    // it offers `h2` by ALPN only for the concurrent part with --http2 (the
    // blocking client speaks HTTP/1.1).
    let tls_config = |http2: bool| -> anyhow::Result<_> {
        let Some(pem) = cert else {
            return Ok(None);
        };
        let opts = crate::tls::TlsOptions {
            resume: true,
            also_trust: Some(pem.to_string()),
            http2,
            ..Default::default()
        };
        Ok(Some(
            crate::tls::client_config(&opts).map_err(anyhow::Error::msg)?,
        ))
    };
    let mut conn = ConnOptions {
        tls: tls_config(false)?,
        ..ConnOptions::default()
    };

    // The concurrent part's connections and streams: one stream on each of
    // `--requests` connections, or with --http2 as few connections as
    // the server's stream limit allows.
    let (connections, streams) = if args.http2 {
        let streams = args.requests.min(server::H2_MAX_STREAMS);
        (args.requests.div_ceil(streams), streams)
    } else {
        (args.requests, 1)
    };

    let t0 = Instant::now();
    let mut bodies = Vec::new();
    // The synchronous client: one blocking connection, one URL after the other.
    let fetched = runner::fetch(BackendKind::Threads, &targets, &conn, 1)?;
    for (t, f) in targets.iter().zip(fetched) {
        let f = f.map_err(|e| anyhow::anyhow!("GET {t} failed: {}", e.message))?;
        bodies.push(format!(
            "GET {} -> {} {}",
            t.path,
            f.response.status,
            String::from_utf8_lossy(&f.body)
        ));
    }
    let sequential = t0.elapsed();
    out!(
        "sequential (blocking):   {:.2} s   {}",
        sequential.as_secs_f64(),
        bodies.join(", ")
    );

    if args.http2 {
        conn.tls = tls_config(true)?;
        conn.http2 = if cert.is_some() {
            Http2::Alpn
        } else {
            Http2::PriorKnowledge
        };
        conn.streams = streams;
    }
    let config = LoadConfig {
        backend: args.backend.into(),
        targets: Arc::new(targets),
        connections,
        threads: runner::default_threads(),
        stop: Stop::Count(args.requests as u64),
        rate: Rate::Closed,
        conn: Arc::new(conn),
    };
    let outcome = runner::run(&config, Arc::new(Live::default()), |_| {})?;
    let r = &outcome.recorder;
    let concurrent = outcome.elapsed;
    let label = if args.backend.uses_io_uring() {
        "io_uring"
    } else {
        "readiness/blocking"
    };
    let how = if args.http2 {
        let protocol = if r.h2_connections > 0 && r.h2_connections == r.connects {
            "HTTP/2"
        } else {
            "HTTP/2 asked, not all spoke it"
        };
        format!(
            ", {protocol}: {} streams on {} connection{}",
            r.issued,
            r.connects,
            if r.connects == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    out!(
        "concurrent ({label}, {}{how}): {:.2} s   {} requests, {} ok, {} errors, p50 {}, max {}",
        args.backend,
        concurrent.as_secs_f64(),
        r.issued,
        r.status.get(&200).copied().unwrap_or(0),
        r.error_count(),
        fmt_us(if r.latency.is_empty() {
            0
        } else {
            r.latency.value_at_quantile(0.5)
        }),
        fmt_us(if r.latency.is_empty() {
            0
        } else {
            r.latency.max()
        }),
    );
    let cpu = r.cpu;
    out!(
        "  client cost: {:.1} ms CPU ({:.0} µs/request), {} context switches, peak RSS {}",
        (cpu.user + cpu.sys).as_secs_f64() * 1e3,
        (cpu.user + cpu.sys).as_secs_f64() * 1e6 / r.issued.max(1) as f64,
        cpu.voluntary_ctx + cpu.involuntary_ctx,
        fmt_bytes(outcome.usage.max_rss_kb * 1024),
    );
    if args.requests == 2 {
        out!(
            "speed-up {:.1}x",
            sequential.as_secs_f64() / concurrent.as_secs_f64().max(1e-9)
        );
    } else {
        out!(
            "speed-up {:.1}x over 2 sequential requests, for {}x the requests",
            sequential.as_secs_f64() / concurrent.as_secs_f64().max(1e-9),
            args.requests
        );
    }
    for (kind, msg) in &r.error_examples {
        crate::say!("uringfetch: {kind}: {msg}");
    }
    Ok(if r.error_count() > 0 { 1 } else { 0 })
}
