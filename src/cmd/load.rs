//! `uringfetch load`: turns arguments into a validated [`LoadConfig`], runs
//! it with a progress bar and Ctrl-C handling, and prints the report.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use super::config;
use crate::backend::{BackendKind, Live};
use crate::cli::{LoadArgs, OutputFormat};
use crate::plan::{Plan, Stop};
use crate::report::{Summary, text};
use crate::runner::{self, LoadConfig, LoadOutcome};
use crate::target::Target;
use crate::wallclock;

/// Parses `--bind`: one address, a comma list, or an IPv4 range `a-b`.
pub fn parse_bind(s: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .with_context(|| format!("invalid --bind range '{part}'"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .with_context(|| format!("invalid --bind range '{part}'"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65_535 {
                bail!(
                    "invalid --bind range '{part}': the end must follow the start, at most 65536 addresses"
                );
            }
            out.extend((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("invalid --bind address '{part}'"))?,
            );
        }
    }
    if out.is_empty() {
        bail!("--bind needs at least one address");
    }
    Ok(out)
}

/// Every `--bind` address must be one of this host's: else each connect
/// would fail at bind(2) and the run would report nothing but
/// `address_unavailable`, with advice about ephemeral ports. A UDP socket
/// bound to the address tells, without taking a TCP port.
fn check_local(bind: &[IpAddr]) -> anyhow::Result<()> {
    for &ip in bind {
        let domain = if ip.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let bound = socket2::Socket::new(domain, socket2::Type::DGRAM, None)
            .and_then(|s| s.bind(&std::net::SocketAddr::new(ip, 0).into()));
        match bound {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => bail!(
                "--bind {ip}: this host has no such address (`ip -brief address` lists its \
                 addresses; on loopback, any of 127.0.0.0/8 works)"
            ),
            Err(e) => bail!("--bind {ip}: cannot bind to it: {e}"),
        }
    }
    Ok(())
}

/// All URLs of the run: arguments first, then the file's lines.
fn collect_urls(args: &LoadArgs) -> anyhow::Result<Vec<String>> {
    let mut urls = args.urls.clone();
    if let Some(path) = &args.urls_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --urls-file {}", path.display()))?;
        urls.extend(urls_in(&text).map(String::from));
    }
    if urls.is_empty() {
        super::usage!("no URL given: pass one or more URLs, or --urls-file FILE");
    }
    Ok(urls)
}

/// The URLs of a `--urls-file`: one per line; `#` starts a comment at the
/// start of a line or after whitespace (a URL holds no whitespace, and a
/// `#` inside one is its fragment).
fn urls_in(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        let url = line.split_whitespace().next()?;
        (!url.starts_with('#')).then_some(url)
    })
}

/// Validates arguments into a config; every mistake is caught here, before any I/O.
pub fn config_from_args(args: &LoadArgs) -> anyhow::Result<LoadConfig> {
    let urls = collect_urls(args)?;
    let keep_alive = !args.disable_keepalive;
    let opts = config::request_options(&args.request, keep_alive)?;
    let targets = urls
        .iter()
        .map(|u| Target::new(u, &opts))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            // A URL that cannot be one is a usage error; a host that does
            // not resolve is not.
            crate::target::TargetError::InvalidUrl { .. } => {
                anyhow::Error::new(super::Usage(e.to_string()))
            }
            e => e.into(),
        })?;
    let http2 = args.request.http2 || args.request.http2_prior_knowledge;
    if http2 {
        // An HTTP/2 connection sends all its streams to one origin.
        let origin = |t: &Target| (t.tls, t.host.to_ascii_lowercase(), t.port);
        if let Some(other) = targets.iter().find(|t| origin(t) != origin(&targets[0])) {
            super::usage!(
                "with HTTP/2 every URL must have the same scheme, host and port (a \
                 connection's streams all go to one origin): {} and {} differ; run one \
                 load per origin",
                targets[0].url,
                other.url
            );
        }
    }
    let https = targets.iter().any(|t| t.tls);
    let (stop, rate) = config::stop_and_rate(&args.plan, 200)?;
    runner::check_fd_limit(args.connections, &format!("-c {}", args.connections))
        .map_err(anyhow::Error::msg)?;
    if args.pipeline > 1 {
        if !args.backend.can_pipeline() {
            let able: Vec<&str> = BackendKind::ALL
                .iter()
                .filter(|b| b.can_pipeline())
                .map(|b| b.name())
                .collect();
            super::usage!(
                "--pipeline is implemented by --backend {} only",
                able.join(", ")
            );
        }
        if targets.len() > 1 || args.plan.rate.is_some() || args.disable_keepalive {
            super::usage!("--pipeline works with one URL, a closed loop (no -q) and keep-alive");
        }
    }
    let streams = config::streams(&args.request, args.streams, https)?;
    if http2 && args.pipeline > 1 {
        super::usage!("--pipeline is HTTP/1.1's; with HTTP/2 use --streams");
    }
    let pipeline = pipeline_depth(args.pipeline, &targets);
    let bind = args
        .bind
        .as_deref()
        .map(parse_bind)
        .transpose()?
        .unwrap_or_default();
    check_local(&bind)?;
    // Connections take the bind addresses in turn, whatever their target:
    // one of the other family would fail every connect it is given.
    for t in &targets {
        if let Some(ip) = bind.iter().find(|ip| ip.is_ipv4() != t.addr.is_ipv4()) {
            bail!(
                "--bind {ip} cannot reach {} ({}): every --bind address must be of the \
                 targets' family (IPv4 or IPv6)",
                t.url,
                t.addr.ip()
            );
        }
    }
    if https {
        config::check_ktls(&args.request, args.backend)?;
    }
    Ok(LoadConfig {
        backend: config::backend(args.backend, &args.request),
        targets: Arc::new(targets),
        connections: args.connections,
        threads: config::threads(&args.plan),
        stop,
        rate,
        conn: Arc::new(crate::backend::ConnOptions {
            streams,
            ..config::conn_options(&args.request, keep_alive, bind, pipeline, https)?
        }),
    })
}

/// At most this many bytes of requests go into one pipelined write (the
/// batch is encoded once per run).
const MAX_PIPELINED_BYTES: usize = 1 << 20;

/// `--pipeline`, bounded by bytes as well as by count: 10,000 copies of a
/// 1 MiB request would be 10 GB. Says so when it cuts the depth.
fn pipeline_depth(wanted: usize, targets: &[Target]) -> usize {
    let longest = targets
        .iter()
        .map(|t| t.request.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let depth = wanted.min((MAX_PIPELINED_BYTES / longest).max(1));
    if depth < wanted {
        crate::say!(
            "uringfetch: --pipeline {wanted} of {longest}-byte requests would write {} at once; \
             writing batches of {depth} instead (at most {} of requests per write)",
            crate::report::text::fmt_bytes((wanted as u64).saturating_mul(longest as u64)),
            crate::report::text::fmt_bytes(MAX_PIPELINED_BYTES as u64)
        );
    }
    depth
}

/// What a run shows on stderr while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    None,
    /// The progress bar (`--no-tui`).
    Bar,
    /// The live view, with its header line.
    View(String),
}

impl Progress {
    /// The live view on a terminal unless `no_tui`, the bar with it, nothing
    /// off a terminal or with `none`.
    pub fn choose(none: bool, no_tui: bool, header: impl FnOnce() -> String) -> Self {
        if none || !std::io::stderr().is_terminal() {
            Self::None
        } else if no_tui {
            Self::Bar
        } else {
            Self::View(header())
        }
    }
}

/// The live view's header: what runs, how, against what.
pub fn describe(command: &str, config: &LoadConfig) -> String {
    let urls = match config.targets.len() {
        1 => crate::report::escape(&config.targets[0].url).into_owned(),
        n => format!("{} and {} more URLs", config.targets[0].url, n - 1),
    };
    let threads = runner::split_connections(config.connections, config.threads).len();
    let stop = match config.stop {
        Stop::Count(n) => format!("{n} requests"),
        Stop::Duration(d) => format!("{}", humantime::format_duration(d)),
    };
    let rate = match config.rate {
        crate::plan::Rate::Closed => "closed loop".to_string(),
        crate::plan::Rate::Open(q) => format!("open loop {q} req/s"),
    };
    format!(
        "uringfetch {command} {urls} · {} · {} conn on {threads} thread{} · {stop} · {rate}",
        config.backend.name(),
        config.connections,
        if threads == 1 { "" } else { "s" },
    )
}

/// Runs a config with progress and Ctrl-C; shared by `load` and `compare`.
pub fn run_config(config: &LoadConfig, progress: Progress) -> anyhow::Result<LoadOutcome> {
    let live = Arc::new(Live::default());
    let done = Arc::new(AtomicBool::new(false));
    let mut watcher = None;
    let mut view = None;
    let mut ctrl_c = None;
    let outcome = runner::run(config, live.clone(), |plan: Arc<Plan>| {
        ctrl_c = Some(super::interrupt::CancelOnCtrlC::new(plan.clone()));
        let stop = config.stop;
        match progress {
            Progress::None => {}
            Progress::Bar => {
                let (done, live) = (done.clone(), live.clone());
                watcher = Some(std::thread::spawn(move || {
                    show_progress(&plan, stop, &live, &done)
                }));
            }
            Progress::View(header) => {
                view = Some(crate::tui::LiveView::start(
                    plan,
                    live.clone(),
                    stop,
                    header,
                ));
            }
        }
    });
    drop(ctrl_c);
    if let Some(v) = view {
        v.stop();
    }
    done.store(true, Ordering::Release);
    if let Some(w) = watcher {
        w.thread().unpark();
        let _ = w.join();
    }
    Ok(outcome?)
}

/// Draws the progress bar until `done`.
fn show_progress(plan: &Plan, stop: Stop, live: &Live, done: &AtomicBool) {
    let (total, duration) = match stop {
        Stop::Count(n) => (Some(n), None),
        Stop::Duration(d) => (None, Some(d)),
    };
    let bar = progress_bar(total, duration);
    while !done.load(Ordering::Acquire) {
        let t = live.totals();
        let n = t.completed + t.errors;
        match duration {
            Some(_) => bar.set_position(plan.start().elapsed().as_millis() as u64),
            None => bar.set_position(n),
        }
        bar.set_message(format!("{n} done"));
        std::thread::park_timeout(Duration::from_millis(50));
    }
    bar.finish_and_clear();
}

fn progress_bar(total: Option<u64>, duration: Option<Duration>) -> indicatif::ProgressBar {
    let len = match (total, duration) {
        (Some(n), _) => n,
        (None, Some(d)) => d.as_millis() as u64,
        (None, None) => 0,
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{wide_bar}] {percent}% {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Waits for `--start-at`, saying so on stderr. Returns false on Ctrl-C.
/// Called before the run is set up, so the workers' clock starts after it.
fn wait_for_start(at: SystemTime) -> anyhow::Result<bool> {
    let now = SystemTime::now();
    let when = wallclock::rfc3339(at);
    match at.duration_since(now) {
        Ok(wait) => crate::say!(
            "uringfetch: waiting {:.3} s for --start-at {when} (Ctrl-C cancels)",
            wait.as_secs_f64()
        ),
        Err(e) if e.duration() <= wallclock::PAST_TOLERANCE => crate::say!(
            "uringfetch: --start-at {when} was {:.3} s ago: starting now",
            e.duration().as_secs_f64()
        ),
        Err(e) => bail!(
            "--start-at {when} is {:.3} s in the past (now {}): this client cannot start \
             together with the others; pick a later time, and check that the clocks are in \
             sync (chronyc tracking, timedatectl)",
            e.duration().as_secs_f64(),
            wallclock::rfc3339(now)
        ),
    }
    // Ctrl-C (the one handler every run uses) ends the wait at once.
    let stop = Arc::new(wallclock::Stop::default());
    let waker = stop.clone();
    let _on_ctrl_c = super::interrupt::CancelOnCtrlC::call(Arc::new(move || waker.stop()));
    Ok(wallclock::sleep_until(at, &stop))
}

/// Runs `load`; returns the exit code.
pub fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let config = config_from_args(&args)?;
    let format = super::report_output(
        args.output.output.as_deref(),
        args.output.output_format,
        OutputFormat::Text,
    )?;
    if let Some(path) = &args.chart {
        super::chart::check_writable(path)?;
    }
    if let Some(at) = args.start_at
        && !wait_for_start(at)?
    {
        crate::say!("uringfetch: interrupted while waiting for --start-at; no request was sent");
        return Ok(130);
    }
    let progress = Progress::choose(args.no_progress, args.no_tui, || describe("load", &config));
    let outcome = run_config(&config, progress)?;
    let mut summary = Summary::new(&outcome, &config.targets[0].method);
    summary.run_id = args.run_id.clone();
    summary.labels = args.labels.iter().cloned().collect();
    summary.start_at = args.start_at.map(wallclock::rfc3339);
    if args.request.http2 && summary.h2.is_none() && summary.requests.completed > 0 {
        // ALPN chose HTTP/1.1 everywhere: say so, not only in JSON.
        crate::say!(
            "uringfetch: note: no server chose HTTP/2 (ALPN): the run spoke HTTP/1.1{}",
            if args.streams > 1 {
                ", one request at a time per connection (--streams did nothing)"
            } else {
                ""
            }
        );
    }
    match format {
        OutputFormat::Text => super::emit(&text::render(&summary, &outcome.recorder.latency)),
        OutputFormat::Json => super::emit(&(serde_json::to_string_pretty(&summary)? + "\n")),
        OutputFormat::Csv => super::emit(&summary.to_csv()),
    }
    if let Some(path) = &args.chart {
        super::chart::write(path, &summary)?;
    }
    Ok(crate::report::thresholds::verdict(
        &summary,
        args.fail_on.as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_file_comments() {
        let text = "# targets\n\nhttp://a/x   # the first\n  http://b/y#frag\n\t#http://c/\n";
        assert_eq!(
            urls_in(text).collect::<Vec<_>>(),
            ["http://a/x", "http://b/y#frag"]
        );
    }

    #[test]
    fn bind_ranges() {
        let v = parse_bind("127.0.0.2-127.0.0.9").unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(v[0].to_string(), "127.0.0.2");
        assert_eq!(parse_bind("127.0.0.1, ::1").unwrap().len(), 2);
        assert!(parse_bind("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_bind("nope").is_err());
    }
}
