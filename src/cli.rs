//! Command-line arguments (clap derive). Turned into validated configuration
//! by the commands in [`crate::cmd`]; nothing here does I/O.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::BackendKind;
use crate::backend::uring_loop::ring::Profile;

/// Exit codes, for scripts and CI.
const EXIT_CODES: &str = "Exit codes:
  0    done (load, compare, merge: the run ran and got responses)
  1    failed: an error, a URL that could not be fetched (get), a run in
       which not one request got a response, a backend that could not run
  2    usage error: bad arguments
  3    a --fail-on condition held (the report is still printed)
  130  interrupted (a second Ctrl-C, or one during --start-at's wait; the first
       ends a run and prints its report)";

/// An HTTP fetcher and load generator whose network I/O runs on Linux io_uring.
#[derive(Debug, Parser)]
#[command(name = "uringfetch", version, about, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch URLs concurrently over io_uring and print the responses.
    #[command(after_help = EXIT_CODES)]
    Get(GetArgs),
    /// Load-test URLs: count or duration, connections, threads, open-loop rate.
    #[command(after_help = EXIT_CODES)]
    Load(LoadArgs),
    /// Run the demo server: /foo and /bar answer after --delay, over
    /// HTTP/1.1 or HTTP/2 (h2c with prior knowledge; h2 by ALPN with --tls).
    Serve(ServeArgs),
    /// Reproduce the article's experiment: two 1 s requests, one after the other, then concurrently.
    #[command(after_help = EXIT_CODES)]
    Demo(DemoArgs),
    /// Run the same workload on each backend and print them side by side.
    #[command(after_help = EXIT_CODES)]
    Compare(CompareArgs),
    /// Add up the JSON reports of runs of one test on several clients, exactly.
    #[command(after_help = EXIT_CODES)]
    Merge(MergeArgs),
    /// Draw a run's charts (req/s, p50/p99 per second, latency distribution)
    /// from its JSON report.
    Chart(ChartArgs),
    /// What this kernel and machine let uringfetch do: io_uring support and
    /// profiles, limits; --self-test runs every backend on loopback.
    Doctor(DoctorArgs),
}

/// The longest duration any option takes: a year. Longer ones would only
/// overflow the clock arithmetic they feed (deadlines, `--start-at`).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `2s`, `150ms`, `1m`, or a plain number of seconds (`0.5`); at most
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("invalid duration '{s}'"));
        }
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("invalid duration '{s}': {e} (e.g. 10s, 250ms, 1m)"))?
    };
    if d > MAX_DURATION {
        return Err(format!("duration '{s}' is longer than a year (365d)"));
    }
    Ok(d)
}

fn parse_at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{s}' is not a whole number of at least 1")),
    }
}

/// The most requests `--pipeline` writes at once on a connection (the
/// request is repeated that many times in memory, per URL).
pub const MAX_PIPELINE: usize = 10_000;

/// The most `--streams` a connection keeps in flight.
pub const MAX_STREAMS: usize = 1024;

fn parse_streams(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_STREAMS).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{s}' is not a number of streams from 1 to {MAX_STREAMS}"
        )),
    }
}

fn parse_pipeline(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PIPELINE).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{s}' is not a pipeline depth from 1 to {MAX_PIPELINE}"
        )),
    }
}

/// A request method: an HTTP token (RFC 9110 §9.1), case-sensitive, so
/// nothing but the method itself reaches the request line.
pub fn parse_method(s: &str) -> Result<String, String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if s.is_empty() || !s.bytes().all(tchar) {
        return Err(format!(
            "'{}' is not a method: a method is one token of letters, digits and !#$%&'*+-.^_`|~ \
             (e.g. GET, POST, DELETE)",
            s.escape_default()
        ));
    }
    Ok(s.to_string())
}

/// What every request is, shared by `get`, `load` and `compare`.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// Request method, case-sensitive [default: GET, or POST with a body].
    #[arg(short = 'm', long = "method", visible_short_alias = 'X', visible_alias = "request",
          value_name = "METHOD", value_parser = parse_method)]
    pub method: Option<String>,
    /// Add a request header (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'Name: value'", value_parser = crate::target::parse_header)]
    pub headers: Vec<(String, String)>,
    /// Request body, sent with Content-Length (as curl: `@FILE` sends a
    /// file's bytes, `@-` standard input). Not the duration: that is -z.
    #[arg(
        short = 'd',
        long = "data",
        visible_alias = "body",
        value_name = "BODY",
        conflicts_with = "body_file"
    )]
    pub data: Option<String>,
    /// Request body from a file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Send HTTP/1.0 instead of HTTP/1.1.
    #[arg(long = "http1.0")]
    pub http10: bool,
    /// Give up on a request after this long (connect, send and the whole response); 0: never.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Give up on a connection attempt after this long; 0: when the kernel does.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// io_uring features for --backend uring-loop: probe the kernel, or force Linux 5.10's.
    #[arg(long, value_enum, default_value_t = Profile::Auto)]
    pub uring_profile: Profile,
    /// Connect to these addresses for HOST:PORT without asking the resolver
    /// (curl's --resolve; repeatable): `example.com:443:127.0.0.1`, `*` for
    /// any host. The URL keeps its host for Host, SNI and the certificate.
    #[arg(long = "resolve", value_name = "HOST:PORT:ADDR[,ADDR]",
          value_parser = crate::target::parse_resolve)]
    pub resolve: Vec<crate::target::ResolveRule>,
    /// Requests for HOST1:PORT1 connect to HOST2:PORT2 instead (curl's and
    /// oha's --connect-to; repeatable; an empty part matches any, or keeps
    /// the URL's). The URL keeps its host for Host, SNI and the certificate.
    #[arg(long = "connect-to", value_name = "HOST1:PORT1:HOST2:PORT2",
          value_parser = crate::target::parse_connect_to)]
    pub connect_to: Vec<crate::target::ConnectTo>,
    /// https: trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub cacert: Option<PathBuf>,
    /// https: do not verify the server's certificate (its name, issuer and dates).
    #[arg(short = 'k', long, help_heading = "TLS")]
    pub insecure: bool,
    /// https: present this client certificate (PEM; may hold the key too).
    #[arg(short = 'E', long, value_name = "FILE", help_heading = "TLS")]
    pub cert: Option<PathBuf>,
    /// https: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert", help_heading = "TLS")]
    pub key: Option<PathBuf>,
    /// https: a full handshake on every connection (no session resumption).
    #[arg(long, help_heading = "TLS")]
    pub no_tls_resume: bool,
    /// https: kernel TLS, the kernel encrypting and decrypting after
    /// rustls' handshake (uring-loop, epoll-loop, threads; a kernel with
    /// the `tls` module: `uringfetch doctor` says).
    #[arg(
        long,
        value_enum,
        default_value_t,
        value_name = "WHEN",
        help_heading = "TLS"
    )]
    pub ktls: crate::ktls::Mode,
    /// https: the newest TLS version to offer (curl's --tls-max): 1.2
    /// tests a server's TLS 1.2.
    #[arg(long, value_enum, value_name = "VERSION", help_heading = "TLS")]
    pub tls_max: Option<crate::tls::TlsMax>,
    /// HTTP/2 over https:// (ALPN h2, else the HTTP/1.1 the server picks).
    #[arg(long, help_heading = "HTTP/2")]
    pub http2: bool,
    /// HTTP/2 over http:// without upgrade (h2c, as curl's flag); https:// as --http2.
    #[arg(long, help_heading = "HTTP/2", conflicts_with = "http2")]
    pub http2_prior_knowledge: bool,
}

/// When a run stops and how fast it goes, shared by `load` and `compare`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Total number of requests [default: 200 for load, 20000 per compare
    /// run, unless -z is given].
    #[arg(
        short = 'n',
        long = "requests",
        value_name = "N",
        conflicts_with = "duration"
    )]
    pub requests: Option<u64>,
    /// Run for this long instead (10s, 1m); requests still running at the end are reported as in flight.
    #[arg(short = 'z', long = "duration", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: this many requests per second over all connections, latency
    /// measured from each request's intended start (coordinated omission corrected).
    #[arg(short = 'q', long = "rate", value_name = "RATE")]
    pub rate: Option<f64>,
    /// Worker threads, one io_uring each [default: all cores].
    #[arg(short = 't', long = "threads", value_name = "N", value_parser = parse_at_least_one)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// URLs to fetch (http:// or https://).
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Show the status line and headers before the body.
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Write the body to FILE instead of stdout (a single URL only).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Fetch one URL after another with blocking sockets (the article's synchronous client).
    #[arg(long, conflicts_with = "backend")]
    pub sequential: bool,
    /// No timing line and no warnings on stderr (errors still go there, as with curl -sS).
    #[arg(short = 's', long)]
    pub silent: bool,
    /// I/O model for the concurrent fetch.
    #[arg(long, value_enum, default_value_t = BackendKind::UringLoop)]
    pub backend: BackendKind,
    #[command(flatten)]
    pub request: RequestArgs,
}

/// How a load report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    /// The per-second series of completed responses.
    Csv,
}

/// Where a report goes and in what format, as curl and oha say it:
/// `--output-format` names the format; `-o/--output FILE` is a file (the
/// format then from `--output-format`, else the file's extension), but a
/// format's name alone (`-o json`) is that format, as it was before the
/// flag took files. For `load` and `merge`.
#[derive(Debug, Clone, Args)]
pub struct ReportOutput {
    /// The report's format [default: text, or by -o's file extension].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<OutputFormat>,
    /// Write the report to FILE (as curl and oha do); `text`, `json` or
    /// `csv` alone is the format instead, as before.
    #[arg(short = 'o', long, value_name = "FILE|FORMAT")]
    pub output: Option<String>,
}

/// [`ReportOutput`] for `compare` and `doctor`, which write text or JSON.
#[derive(Debug, Clone, Args)]
pub struct TableOutput {
    /// The table as text, or JSON [default: text, or by -o's file extension].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output_format: Option<TableFormat>,
    /// Write it to FILE (as curl and oha do); `text` or `json` alone is the
    /// format instead, as before.
    #[arg(short = 'o', long, value_name = "FILE|FORMAT")]
    pub output: Option<String>,
}

/// How `compare` and `doctor` write: they have no per-second series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// URLs to load, used round-robin.
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,
    /// Read more URLs from a file, one per line (`#` starts a comment, also after a URL).
    #[arg(long, value_name = "FILE")]
    pub urls_file: Option<PathBuf>,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Concurrent connections.
    #[arg(
        short = 'c',
        long = "connections",
        value_name = "N",
        default_value_t = 50,
        value_parser = parse_at_least_one
    )]
    pub connections: usize,
    /// Open a new connection for every request.
    #[arg(long)]
    pub disable_keepalive: bool,
    /// Write this many requests at once on each connection (HTTP pipelining; uring-loop).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_pipeline)]
    pub pipeline: usize,
    /// HTTP/2 requests in flight per connection (h2load's -m), at most the
    /// server's SETTINGS_MAX_CONCURRENT_STREAMS; with --http2 or --http2-prior-knowledge.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_streams)]
    pub streams: usize,
    /// Source addresses to spread connections over: `127.0.0.2`, `127.0.0.2-127.0.0.9` or a comma list.
    #[arg(long, value_name = "ADDRS")]
    pub bind: Option<String>,
    #[command(flatten)]
    pub output: ReportOutput,
    /// Fail the run (exit 3) when a condition holds, e.g.
    /// 'errors>0.1%,non-2xx>0,p99>200ms': errors, non-2xx (a count, or % of
    /// responses), success (%), p50..p9999, max, mean (with us, ms or s),
    /// rps; with >, >=, <, <=.
    #[arg(long, value_name = "CONDITIONS", value_parser = crate::report::thresholds::parse_fail_on)]
    pub fail_on: Option<crate::report::thresholds::FailOn>,
    /// No progress view at all, not even the bar, on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// The progress bar instead of the live view on a terminal.
    #[arg(long)]
    pub no_tui: bool,
    /// Also draw the run's charts into FILE.svg: req/s and p50/p99 per
    /// second with errors marked, and the latency percentile distribution.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// I/O model to run on.
    #[arg(long, value_enum, default_value_t = BackendKind::UringLoop)]
    pub backend: BackendKind,
    /// Wait until this wall-clock time, then start, so clients on several
    /// machines run together: RFC 3339 (`2026-11-26T13:00:00Z`), a delay
    /// (`+5s`) or unix seconds (`@1795698000`).
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<SystemTime>,
    /// An id for this run, copied into the JSON report: the same on every client.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// A label copied into the JSON report (repeatable), e.g. `--label host=$(hostname)`.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    #[command(flatten)]
    pub request: RequestArgs,
}

/// `--start-at`, resolved against the clock when the arguments are parsed.
fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    crate::wallclock::parse_start_at(s, SystemTime::now())
}

/// `serve --addr`: `127.0.0.1:5555`, `[::1]:5555`, or a name the resolver
/// knows with a port (`localhost:5601`; its first IPv4 address, else the first).
fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("'{}' is not HOST:PORT ({e})", s.escape_default()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("'{}' resolves to no address", s.escape_default()))
}

/// `key=value` for `--label`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("invalid label '{s}': expected KEY=VALUE")),
    }
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// JSON reports of `load --output json` (`-` reads stdin). A file may hold
    /// several reports one after another, or an array of them.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Add up reports even of different targets, methods or plans.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub output: ReportOutput,
    /// Fail (exit 3) when a condition holds on the merged report (as `load --fail-on`).
    #[arg(long, value_name = "CONDITIONS", value_parser = crate::report::thresholds::parse_fail_on)]
    pub fail_on: Option<crate::report::thresholds::FailOn>,
    /// Also draw the merged run's charts into FILE.svg (as `load --chart`).
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ChartArgs {
    /// The JSON report of `load` or `merge` (`-` reads stdin).
    #[arg(value_name = "REPORT.json")]
    pub report: String,
    /// The SVG file to write.
    #[arg(short = 'o', long, value_name = "FILE.svg")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (never all interfaces unless you say so): an
    /// IP and port, or a host name and port (`localhost:5555`).
    #[arg(long, default_value = "127.0.0.1:5555", value_parser = parse_serve_addr)]
    pub addr: ListenAddr,
    /// How long /foo and /bar wait before answering (0 allowed).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub delay: Duration,
    /// Threads, each with its own io_uring (or epoll) runtime and
    /// SO_REUSEPORT listeners [default: all cores].
    #[arg(long, value_parser = parse_at_least_one)]
    pub threads: Option<usize>,
    /// Largest request head accepted, 1024 to 1048576 bytes; a larger head
    /// gets 431 (414 when its request line alone is larger). Over HTTP/2 it
    /// bounds the header list (431) and its compressed block (GOAWAY).
    #[arg(long, default_value_t = 16 * 1024, value_parser = crate::http::server::parse_head_limit)]
    pub max_head_bytes: usize,
    /// Close connections idle (or still sending their head) this long; a
    /// request body gets this long, then must average 500 bytes/s.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub idle_timeout: Duration,
    /// I/O engine: io_uring, epoll (where io_uring is unavailable), or auto
    /// (io_uring if usable, else epoll).
    #[arg(long, value_enum, default_value_t = crate::server::Engine::Uring)]
    pub engine: crate::server::Engine,
    /// Serve HTTPS (TLS 1.2 and 1.3, ALPN h2 and http/1.1, session
    /// resumption) instead of HTTP. Without --cert and --key, with a self-signed
    /// certificate made at start for localhost, 127.0.0.1, ::1 and the
    /// --addr host, written to --write-cert for clients to trust (--cacert).
    #[arg(long)]
    pub tls: bool,
    /// With --tls: the certificate chain to present, PEM, the server's
    /// certificate first.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// With --tls: the private key of --cert, PEM (PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"])]
    pub key: Option<PathBuf>,
    /// With --tls and no --cert: where to write the self-signed certificate
    /// (PEM) [default: a file in a new temporary directory, removed when the
    /// server stops; its path is printed].
    #[arg(long, value_name = "FILE", requires = "tls", conflicts_with = "cert")]
    pub write_cert: Option<PathBuf>,
}

/// `serve --addr`: the address to bind and the host as written (which a
/// self-signed certificate of `--tls` is made for).
#[derive(Debug, Clone)]
pub struct ListenAddr {
    pub addr: SocketAddr,
    /// `localhost`, `127.0.0.1` or `::1` (without brackets).
    pub host: String,
}

fn parse_serve_addr(s: &str) -> Result<ListenAddr, String> {
    let addr = parse_listen_addr(s)?;
    let host = s
        .trim()
        .rsplit_once(':')
        .map_or("", |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(ListenAddr { addr, host })
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Concurrent requests in the concurrent part (half /bar, half /foo).
    #[arg(long, default_value_t = 2)]
    pub requests: usize,
    /// How long the demo server's routes wait.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub delay: Duration,
    /// I/O model for the concurrent part.
    #[arg(long, value_enum, default_value_t = BackendKind::UringLoop)]
    pub backend: BackendKind,
    /// Over HTTPS: the demo server with a self-signed certificate it makes.
    #[arg(long)]
    pub tls: bool,
    /// The concurrent part over HTTP/2: the requests go as streams of one
    /// connection (h2c with prior knowledge; with --tls, h2 by ALPN), up
    /// to 128 streams a connection.
    #[arg(long)]
    pub http2: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also run a short get and a bounded load on every backend (and the
    /// 5.10 profile) against the demo server on loopback.
    #[arg(long)]
    pub self_test: bool,
    /// Requests per self-test load.
    #[arg(long, value_name = "N", default_value_t = 400, requires = "self_test",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    #[command(flatten)]
    pub output: TableOutput,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
        for huge in ["366d", "18446744073709551615s", "1e30", "1e300"] {
            let e = parse_duration(huge).unwrap_err();
            assert!(e.contains("longer than a year"), "{huge}: {e}");
        }
        assert_eq!(parse_pipeline("16"), Ok(16));
        for bad in ["0", "10001", "4294967296", "x"] {
            assert!(parse_pipeline(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("host=a=b").unwrap(),
            ("host".to_string(), "a=b".to_string())
        );
        assert_eq!(parse_label("zone=").unwrap().1, "");
        assert!(parse_label("nohost").is_err());
        assert!(parse_label("=x").is_err());
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// URL to compare on [default: start the demo server in-process and compare
    /// on /bar with no delay, then with a 1 s delay at 1000 connections].
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// With no URL: the in-process demo server over HTTPS (a self-signed
    /// certificate it makes, trusted for this run).
    #[arg(long, conflicts_with = "url")]
    pub tls: bool,
    /// Backends to run, in this order [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub backends: Vec<BackendKind>,
    /// Connection counts to sweep, e.g. 1,64,1024.
    #[arg(
        short = 'c',
        long = "connections",
        value_delimiter = ',',
        default_value = "1,64"
    )]
    pub connections: Vec<usize>,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// HTTP/2 requests in flight per connection (h2load's -m), at most the
    /// server's SETTINGS_MAX_CONCURRENT_STREAMS; with --http2 or --http2-prior-knowledge.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_streams)]
    pub streams: usize,
    /// Pause between runs, so one run's closing connections do not burden the next.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub pause: Duration,
    #[command(flatten)]
    pub output: TableOutput,
    /// Also draw req/s and CPU µs/request against connections, one line per backend.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// No live view of each run on a terminal (the runs print one line each).
    #[arg(long)]
    pub no_tui: bool,
    #[command(flatten)]
    pub request: RequestArgs,
}
