//! `uringfetch compare`: the same workload on each backend in turn, side by
//! side. Only the I/O model changes between rows: the targets, plan, HTTP
//! code and statistics are the same objects.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::backend::BackendKind;
use crate::cli::{CompareArgs, TableFormat};
use crate::cmd::config;
use crate::cmd::load::{Progress, describe, run_config};
use crate::plan::Stop;
use crate::report::{Summary, chart, compare as table};
use crate::runner::{self, LoadConfig};
use crate::server::{self, ServeOptions};
use crate::target::Target;

/// One URL and the connection counts to sweep on it.
struct Scenario {
    label: String,
    url: String,
    connections: Vec<usize>,
    stop: Stop,
}

/// Runs `compare`; returns the exit code.
pub fn run(args: CompareArgs) -> anyhow::Result<i32> {
    let backends = if args.backends.is_empty() {
        BackendKind::ALL.to_vec()
    } else {
        args.backends.clone()
    };
    let format = super::report_output(
        args.output.output.as_deref(),
        args.output.output_format,
        TableFormat::Text,
    )?;
    if let Some(path) = &args.chart {
        super::chart::check_writable(path)?;
    }
    if args.connections.contains(&0) {
        super::usage!("-c values must be at least 1");
    }
    let (stop, rate) = config::stop_and_rate(&args.plan, 20_000)?;
    let max_c = args
        .connections
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1000);
    runner::check_fd_limit(max_c.saturating_mul(2), &format!("-c {max_c}"))
        .map_err(anyhow::Error::msg)?;

    // With no URL, compare on our own demo server: the article's point.
    let mut demo_cert = None;
    let server = match &args.url {
        Some(_) => None,
        None => {
            let options = if args.tls {
                let (options, cert) = ServeOptions::in_process_tls(Duration::ZERO)
                    .context("cannot make the demo server's certificate")?;
                demo_cert = Some(cert);
                options
            } else {
                ServeOptions::in_process(Duration::ZERO)
            };
            let s = server::start(options).context("cannot start the demo server")?;
            if let Some(why) = &s.fallback {
                crate::say!("uringfetch: {why}; the demo server runs on epoll instead");
            }
            Some(s)
        }
    };
    let scenarios = match (&args.url, &server) {
        (Some(url), _) => vec![Scenario {
            label: crate::target::shown_url(url),
            url: url.clone(),
            connections: args.connections.clone(),
            stop,
        }],
        (None, Some(s)) => vec![
            Scenario {
                label: format!("demo /bar, no delay{}", if s.tls { ", https" } else { "" }),
                url: format!("{}://{}/bar", scheme(s.tls), s.addr),
                connections: args.connections.clone(),
                stop,
            },
            Scenario {
                label: format!(
                    "demo /bar, 1 s delay (the article's workload){}",
                    if s.tls { ", https" } else { "" }
                ),
                url: format!("{}://{}/bar?delay=1000", scheme(s.tls), s.addr),
                connections: vec![1000],
                stop: Stop::Count(1000),
            },
        ],
        (None, None) => Vec::new(),
    };
    let opts = config::request_options(&args.request, true)?;
    let https = config::any_https(scenarios.iter().map(|s| s.url.as_str()));
    // Over TLS each run gets a configuration of its own: it starts with no
    // session to resume, so no row resumes the sessions of the one before.
    let streams = config::streams(&args.request, args.streams, https)?;
    let conn_for_run = || -> Result<Arc<crate::backend::ConnOptions>, super::Usage> {
        let mut conn = config::conn_options(&args.request, true, Vec::new(), 1, false)?;
        conn.streams = streams;
        if https {
            let (tls, ktls) = config::tls_config(&args.request, demo_cert.as_deref())?;
            conn.tls = Some(tls);
            conn.ktls = ktls;
        }
        Ok(Arc::new(conn))
    };
    let conn = conn_for_run()?;
    let mut groups = Vec::new();
    let mut first = true;
    let mut not_run = 0;
    // Ctrl-C ends the row it cuts and the comparison: the rows run so
    // far are printed, the cut one marked.
    let mut stopped = false;
    for sc in &scenarios {
        if stopped {
            break;
        }
        let targets = Arc::new(vec![Target::new(&sc.url, &opts)?]);
        let mut rows = Vec::new();
        'rows: for &c in &sc.connections {
            for &backend in &backends {
                if !first {
                    std::thread::sleep(args.pause);
                }
                first = false;
                let config = LoadConfig {
                    backend: config::backend(backend, &args.request),
                    targets: targets.clone(),
                    connections: c,
                    threads: config::threads(&args.plan),
                    stop: sc.stop,
                    rate,
                    conn: if https { conn_for_run()? } else { conn.clone() },
                };
                crate::say!("running {backend} -c {c} on {}", sc.label);
                // The live view for each row on a terminal; never the bar.
                let progress =
                    Progress::choose(args.no_tui, false, || describe("compare", &config));
                match run_config(&config, progress) {
                    Ok(outcome) => {
                        let row = Summary::new(&outcome, &opts.method);
                        stopped = row.cancelled;
                        rows.push(row);
                        if stopped {
                            break 'rows;
                        }
                    }
                    Err(e) => {
                        // A backend that could not run fails the comparison.
                        not_run += 1;
                        crate::say!("uringfetch: {backend} -c {c}: {e:#}");
                    }
                }
            }
        }
        groups.push((sc.label.clone(), rows));
    }
    if let Some(s) = server {
        s.shutdown();
    }
    match format {
        TableFormat::Json => {
            let all: Vec<&Summary> = groups.iter().flat_map(|(_, r)| r).collect();
            super::emit(&(serde_json::to_string_pretty(&all)? + "\n"));
        }
        TableFormat::Text => {
            for (label, rows) in &groups {
                super::emit(&table::render(label, rows));
            }
        }
    }
    if stopped {
        let cut: Vec<String> = groups
            .iter()
            .flat_map(|(_, r)| r)
            .filter(|s| s.cancelled)
            .map(|s| format!("{} -c {}", s.backend, s.connections))
            .collect();
        crate::say!(
            "uringfetch: stopped early by Ctrl-C: the {} row covers only the part it ran, \
             and the rows after it did not run",
            cut.join(", ")
        );
    }
    if let Some(path) = &args.chart {
        chart::write_svg(path, &groups)
            .map_err(|e| anyhow::anyhow!("cannot write the chart to {}: {e}", path.display()))?;
        crate::say!("chart written to {}", path.display());
    }
    let failed = groups
        .iter()
        .flat_map(|(_, r)| r)
        .any(|s| s.requests.errors > 0);
    Ok(if failed || not_run > 0 { 1 } else { 0 })
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}
