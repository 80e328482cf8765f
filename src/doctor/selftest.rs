//! `doctor --self-test`: proves each backend on this kernel instead of
//! trusting the probe. Starts the demo server in-process on loopback (on
//! epoll where io_uring is unusable, see [`crate::server`]), then on every
//! backend, and on
//! `uring-loop` once more with the Linux 5.10 profile: a `get` of `/foo`
//! and `/bar` (both 200 with the right bodies) and a short bounded load of
//! `/bar` whose counts must add up (every request issued completed with a
//! 200, no errors, none left in flight); then the same over HTTPS, against
//! the demo server with a certificate it makes (`serve --tls`). Where the
//! kernel offers kernel TLS, the HTTPS checks of the backends that use it
//! run with it, and pass only if every connection handed its keys to the
//! kernel and the kernel's own counters (`/proc/net/tls_stat`) grew by as
//! many sessions each way: the kernel did the encryption.
//!
//! A backend the kernel cannot run (io_uring refused) is reported as
//! unsupported with the reason; only a backend that should work and does
//! not fails the self-test.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Report, profile_name};
use crate::backend::uring_loop::ring::Profile;
use crate::backend::{Backend, BackendKind, ConnOptions, Live};
use crate::plan::{Rate, Stop};
use crate::runner::{self, LoadConfig};
use crate::server::{self, ServeOptions};
use crate::target::{RequestOptions, Target};

/// How big the self-test's loads are.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Requests per load.
    pub requests: u64,
    /// Connections per load.
    pub connections: usize,
    /// Worker threads per load.
    pub threads: usize,
}

impl Default for Options {
    /// Small enough to take well under a second per backend here and well
    /// under a minute in total in an emulated (TCG) guest.
    fn default() -> Self {
        Self {
            requests: 400,
            connections: 4,
            threads: 2,
        }
    }
}

/// The verdict on one backend and profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Unsupported,
}

/// One line of the self-test.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub backend: BackendKind,
    pub profile: &'static str,
    pub verdict: Verdict,
    /// Requests per second of the load, on a pass.
    pub rps: Option<f64>,
    /// Requests per second of the HTTPS load, on a pass.
    pub https_rps: Option<f64>,
    /// Connections of the HTTPS checks whose TLS the kernel ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_tls: Option<u64>,
    /// What failed, or why the backend cannot run here.
    pub reason: Option<String>,
}

/// The whole self-test.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTest {
    /// Which server the backends were tested against.
    pub server: String,
    pub lines: Vec<Line>,
    /// No backend that this kernel supports failed.
    pub passed: bool,
}

/// The demo server the backends talk to, and a line saying which engine it
/// runs on and, on epoll, why.
fn test_server() -> Result<(server::ServerHandle, String), String> {
    let opts = ServeOptions {
        threads: 1,
        ..ServeOptions::in_process(Duration::ZERO)
    };
    let h = server::start(opts).map_err(|e| format!("no server: {e}"))?;
    let label = match &h.fallback {
        None => format!("demo server ({}) on {}", h.engine.name(), h.addr),
        Some(why) => format!("demo server ({}) on {} ({why})", h.engine.name(), h.addr),
    };
    Ok((h, label))
}

/// The client's TLS for the HTTPS checks.
struct Tls {
    config: Arc<rustls::ClientConfig>,
    /// Kernel TLS is on (the kernel offers it).
    kernel: bool,
    /// The same limited to TLS 1.2, whose records the kernel frames
    /// differently (an explicit nonce per record).
    tls12: Arc<rustls::ClientConfig>,
}

/// The HTTPS demo server and a client configuration that trusts it.
fn tls_server() -> Result<(server::ServerHandle, Tls), String> {
    let (options, cert) = ServeOptions::in_process_tls(Duration::ZERO)
        .map_err(|e| format!("no certificate for the HTTPS server: {e}"))?;
    let h = server::start(ServeOptions {
        threads: 1,
        ..options
    })
    .map_err(|e| format!("no HTTPS server: {e}"))?;
    let ktls = crate::ktls::probe().ok();
    let options = crate::tls::TlsOptions {
        resume: true,
        also_trust: Some(cert),
        ktls,
        ..Default::default()
    };
    let config = crate::tls::client_config(&options)?;
    let tls12 = crate::tls::client_config(&crate::tls::TlsOptions {
        max: Some(crate::tls::TlsMax::Tls12),
        ..options
    })?;
    let kernel = ktls.is_some();
    Ok((
        h,
        Tls {
            config,
            kernel,
            tls12,
        },
    ))
}

/// Runs the self-test over every backend; `report` says which ones this
/// kernel supports.
pub fn run(report: &Report, opts: &Options) -> Result<SelfTest, String> {
    let (srv, label) = test_server()?;
    let (tls_srv, tls) = tls_server()?;
    let base = format!("http://{}", srv.addr);
    let tls_base = format!("https://{}", tls_srv.addr);
    let mut runs: Vec<(BackendKind, Profile)> = BackendKind::ALL
        .iter()
        .map(|&k| (k, Profile::Auto))
        .collect();
    runs.push((BackendKind::UringLoop, Profile::Linux510));
    let lines = runs
        .into_iter()
        .map(|(backend, profile)| {
            let mut line = Line {
                backend,
                profile: profile_name(backend, profile),
                verdict: Verdict::Unsupported,
                rps: None,
                https_rps: None,
                kernel_tls: None,
                reason: None,
            };
            let checks = || -> Result<(f64, Checked), String> {
                let (plain, _) = check(backend, profile, &base, opts, None)?;
                let (https, kernel) = check(backend, profile, &tls_base, opts, Some(&tls))
                    .map_err(|e| format!("https: {e}"))?;
                Ok((plain, (https, kernel)))
            };
            match report.availability(backend, profile) {
                Err(why) => line.reason = Some(why),
                Ok(()) => match checks() {
                    Ok((rps, (https_rps, kernel))) => {
                        line.verdict = Verdict::Pass;
                        line.rps = Some(rps);
                        line.https_rps = Some(https_rps);
                        line.kernel_tls = kernel;
                    }
                    Err(why) => {
                        line.verdict = Verdict::Fail;
                        line.reason = Some(why);
                    }
                },
            }
            line
        })
        .collect::<Vec<_>>();
    srv.shutdown();
    tls_srv.shutdown();
    let passed = lines.iter().all(|l| l.verdict != Verdict::Fail);
    Ok(SelfTest {
        server: label,
        lines,
        passed,
    })
}

/// The connection settings of every self-test request: generous limits,
/// so that only a hang, never a slow emulated machine, fails.
fn conn() -> ConnOptions {
    ConnOptions {
        timeout: Some(Duration::from_secs(20)),
        connect_timeout: Some(Duration::from_secs(10)),
        ..ConnOptions::default()
    }
}

/// A check's requests per second, and how many connections ran kernel TLS.
type Checked = (f64, Option<u64>);

/// `get` then a bounded load on one backend; the load's requests per
/// second, and with kernel TLS its connections, each of which the kernel
/// must have counted.
fn check(
    backend: BackendKind,
    profile: Profile,
    base: &str,
    opts: &Options,
    tls: Option<&Tls>,
) -> Result<Checked, String> {
    let kernel = tls.is_some_and(|t| t.kernel) && backend.can_kernel_tls();
    let conn = ConnOptions {
        tls: tls.map(|t| t.config.clone()),
        ktls: if kernel {
            Ok(())
        } else {
            Err("not in this check".into())
        },
        ..conn()
    };
    let stat_before = crate::ktls::Stat::read();
    let on = Backend {
        kind: backend,
        uring_profile: profile,
    };
    let request = RequestOptions::default();
    let target = |path: &str| {
        Target::new(&format!("{base}{path}"), &request).map_err(|e| format!("bad target: {e}"))
    };
    let targets = vec![target("/foo")?, target("/bar")?];
    let fetched =
        runner::fetch(on, &targets, &conn, targets.len()).map_err(|e| format!("get: {e}"))?;
    if fetched.len() != targets.len() {
        return Err(format!("get: {} results for 2 URLs", fetched.len()));
    }
    for (t, r) in targets.iter().zip(&fetched) {
        let f = r.as_ref().map_err(|e| format!("get {}: {e}", t.path))?;
        let want = if t.path == "/foo" {
            "<h1>foo!</h1>"
        } else {
            "<h1>bar!</h1>"
        };
        if f.response.status != 200 || f.body != want.as_bytes() {
            return Err(format!(
                "get {}: status {} body {:?}, expected 200 {want:?}",
                t.path,
                f.response.status,
                String::from_utf8_lossy(&f.body)
            ));
        }
    }
    let config = LoadConfig {
        backend: on,
        targets: Arc::new(vec![target("/bar")?]),
        connections: opts.connections.max(1),
        threads: opts.threads.max(1),
        stop: Stop::Count(opts.requests.max(1)),
        rate: Rate::Closed,
        conn: Arc::new(conn),
    };
    let outcome = runner::run(&config, Arc::new(Live::default()), |_| {})
        .map_err(|e| format!("load: {e}"))?;
    let r = &outcome.recorder;
    let n = opts.requests.max(1);
    let ok = r.status.get(&200).copied().unwrap_or(0);
    if r.issued != n || r.completed() != n || ok != n || r.error_count() != 0 || r.in_flight != 0 {
        let example = r
            .error_examples
            .iter()
            .next()
            .map(|(k, m)| format!("; first error {k}: {m}"))
            .unwrap_or_default();
        return Err(format!(
            "load of {n}: issued {}, completed {}, 200s {ok}, errors {}, in flight {}{example}",
            r.issued,
            r.completed(),
            r.error_count(),
            r.in_flight
        ));
    }
    let secs = outcome.elapsed.as_secs_f64().max(1e-6);
    if !kernel {
        return Ok((n as f64 / secs, None));
    }
    // TLS 1.2 too, on a connection of its own.
    let conn12 = ConnOptions {
        tls: tls.map(|t| t.tls12.clone()),
        ktls: Ok(()),
        ..self::conn()
    };
    let one = [target("/foo")?];
    let fetched = runner::fetch(on, &one, &conn12, 1).map_err(|e| format!("TLS 1.2 get: {e}"))?;
    match fetched.first() {
        Some(Ok(f)) if f.response.status == 200 && f.body == b"<h1>foo!</h1>" => {}
        Some(Ok(f)) => return Err(format!("TLS 1.2 get: status {}", f.response.status)),
        Some(Err(e)) => return Err(format!("TLS 1.2 get: {e}")),
        None => return Err("TLS 1.2 get: no result".into()),
    }
    // The get's connections, the load's and the TLS 1.2 one.
    let offloaded = r.kernel_tls + targets.len() as u64 + 1;
    if r.kernel_tls != r.connects {
        return Err(format!(
            "kernel TLS: {} of the load's {} connections handed their keys to the kernel",
            r.kernel_tls, r.connects
        ));
    }
    // The get's connections came first: the session tickets the server
    // sent them under kernel TLS (records the kernel handed up with their
    // type) must have reached rustls' store for the load's to resume.
    if r.resumed == 0 {
        return Err(format!(
            "kernel TLS: none of the load's {} handshakes resumed a session: the tickets sent under kernel TLS were lost",
            r.handshakes
        ));
    }
    let grew = match (stat_before, crate::ktls::Stat::read()) {
        (Some(a), Some(b)) => (
            b.tx_sw.saturating_sub(a.tx_sw),
            b.rx_sw.saturating_sub(a.rx_sw),
        ),
        _ => (0, 0),
    };
    if grew.0 < offloaded || grew.1 < offloaded {
        return Err(format!(
            "kernel TLS: {offloaded} connections offloaded, but the kernel counted {} send and {} receive sessions (/proc/net/tls_stat)",
            grew.0, grew.1
        ));
    }
    Ok((n as f64 / secs, Some(offloaded)))
}

/// The self-test as text, one line per backend and profile.
pub fn render(t: &SelfTest) -> String {
    let mut s = format!("self-test against the {}\n", t.server);
    for l in &t.lines {
        let what = match l.verdict {
            Verdict::Pass => format!(
                "pass  {:.0} req/s, https {:.0} req/s{}",
                l.rps.unwrap_or(0.0),
                l.https_rps.unwrap_or(0.0),
                match l.kernel_tls {
                    Some(n) => format!(" (kernel TLS: {n} connections, counted by the kernel)"),
                    None => String::new(),
                }
            ),
            Verdict::Fail => format!("FAIL  {}", l.reason.as_deref().unwrap_or("")),
            Verdict::Unsupported => {
                format!("unsupported here: {}", l.reason.as_deref().unwrap_or(""))
            }
        };
        s.push_str(&format!(
            "{:<12} {:<8} {what}\n",
            l.backend.name(),
            l.profile
        ));
    }
    s.push_str(if t.passed {
        "self-test passed\n"
    } else {
        "self-test FAILED\n"
    });
    s
}
