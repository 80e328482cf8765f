//! Arguments into validated configuration, in one place for every command:
//! the request every URL is sent with ([`RequestOptions`]), how connections
//! behave ([`ConnOptions`]) and the plan (stop rule, rate, threads). Every
//! mistake is caught here, before any I/O.

use std::net::IpAddr;

use anyhow::Context;

use crate::backend::{Backend, BackendKind, ConnOptions};
use crate::cli::{PlanArgs, RequestArgs};
use crate::http::Version;
use crate::plan::{Rate, Stop};
use crate::target::RequestOptions;

/// The slowest open-loop rate `-q` takes: one request every 1,000 s. Below
/// it the schedule's times leave what a clock can hold long before a run
/// could reach them.
const MIN_RATE: f64 = 0.001;

/// `-n`, `-z` and `-q` into the plan's stop rule and rate.
pub fn stop_and_rate(plan: &PlanArgs, default_count: u64) -> anyhow::Result<(Stop, Rate)> {
    let stop = match (plan.requests, plan.duration) {
        (_, Some(d)) if d.is_zero() => super::usage!("-z must be longer than 0"),
        (_, Some(d)) => Stop::Duration(d),
        (Some(0), None) => super::usage!("-n must be at least 1"),
        (Some(n), None) => Stop::Count(n),
        (None, None) => Stop::Count(default_count),
    };
    let rate = match plan.rate {
        None => Rate::Closed,
        Some(q) if q.is_finite() && q >= MIN_RATE => Rate::Open(q),
        Some(q) if q.is_finite() && q > 0.0 => {
            super::usage!(
                "-q must be at least {MIN_RATE} requests per second (one every 1,000 s), not {q:e}"
            )
        }
        Some(q) => super::usage!("-q must be a positive number of requests per second, not {q}"),
    };
    Ok((stop, rate))
}

/// Worker threads: `-t`, or all cores.
pub fn threads(plan: &PlanArgs) -> usize {
    plan.threads.unwrap_or_else(crate::runner::default_threads)
}

/// The body: `-d` as given, or as in curl `@FILE` for a file's bytes (sent
/// as they are, like curl's `--data-binary @FILE`) and `@-` for standard
/// input; or `--body-file`.
fn body(req: &RequestArgs) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(path) = &req.body_file {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read --body-file {}", path.display()))?;
        return Ok(Some(bytes));
    }
    let Some(data) = &req.data else {
        return Ok(None);
    };
    match data.strip_prefix('@') {
        Some("-") => {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)
                .context("cannot read -d @- from standard input")?;
            Ok(Some(body))
        }
        Some(path) => std::fs::read(path)
            .map(Some)
            .with_context(|| format!("cannot read -d @{path}")),
        None => {
            if crate::cli::parse_duration(data).is_ok() && data.trim() != "0" {
                // wrk's -d is the duration; here, as in curl and oha, the body.
                crate::say!(
                    "uringfetch: warning: -d '{data}' is the request body (as in curl and oha); \
                     the duration is -z {data}"
                );
            }
            Ok(Some(data.as_bytes().to_vec()))
        }
    }
}

/// The request every target is sent with. The method defaults to GET, or
/// POST when there is a body (as in curl).
pub fn request_options(req: &RequestArgs, keep_alive: bool) -> anyhow::Result<RequestOptions> {
    if req.http10 && http2_mode(req) != crate::backend::Http2::Off {
        super::usage!("--http1.0 and HTTP/2 (--http2, --http2-prior-knowledge) exclude each other");
    }
    let body = body(req)?;
    let method = req
        .method
        .clone()
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_string());
    Ok(RequestOptions {
        method,
        headers: req.headers.clone(),
        body,
        version: if req.http10 {
            Version::Http10
        } else {
            Version::Http11
        },
        keep_alive,
        routes: crate::target::Routes {
            resolve: req.resolve.clone(),
            connect_to: req.connect_to.clone(),
        },
    })
}

/// How connections behave; `pipeline` is the batch a connection writes
/// at once. The TLS configuration is built only if a target is `https`
/// (`tls`): the system's roots are not read for a plaintext run.
pub fn conn_options(
    req: &RequestArgs,
    keep_alive: bool,
    bind: Vec<IpAddr>,
    pipeline: usize,
    tls: bool,
) -> Result<ConnOptions, super::Usage> {
    let (tls, ktls) = if tls {
        let (config, ktls) = tls_config(req, None)?;
        (Some(config), ktls)
    } else {
        (None, Err("no https:// target".into()))
    };
    Ok(ConnOptions {
        // 0 is no limit, as curl's `-m 0`.
        timeout: (!req.timeout.is_zero()).then_some(req.timeout),
        connect_timeout: (!req.connect_timeout.is_zero()).then_some(req.connect_timeout),
        keep_alive,
        bind,
        pipeline,
        tls,
        ktls,
        http2: http2_mode(req),
        streams: 1,
    })
}

/// Whether `--ktls` lets connections hand their keys to the kernel, and
/// the kernel's ciphers; else why not. `--ktls on` where the kernel
/// cannot is refused.
fn ktls(req: &RequestArgs) -> Result<Result<crate::ktls::Ciphers, String>, super::Usage> {
    use crate::ktls::Mode;
    if req.ktls == Mode::Off {
        return Ok(Err("--ktls off".into()));
    }
    match crate::ktls::probe() {
        Ok(ciphers) => Ok(Ok(ciphers)),
        Err(why) if req.ktls == Mode::On => Err(super::Usage(format!(
            "--ktls on: kernel TLS is not available: {why}"
        ))),
        Err(why) => Ok(Err(why)),
    }
}

/// `--ktls on` with a backend that cannot hand keys to the kernel.
pub fn check_ktls(
    req: &RequestArgs,
    kind: crate::backend::BackendKind,
) -> Result<(), super::Usage> {
    if req.ktls == crate::ktls::Mode::On && (req.http2 || req.http2_prior_knowledge) {
        return Err(super::Usage(
            "--ktls on: HTTP/2 connections keep TLS in userspace for now".into(),
        ));
    }
    if req.ktls == crate::ktls::Mode::On && !kind.can_kernel_tls() {
        return Err(super::Usage(format!(
            "--ktls on: {} keeps TLS in userspace (kernel TLS is for uring-loop, epoll-loop and threads)",
            kind.name()
        )));
    }
    Ok(())
}

/// `--streams`, which only HTTP/2 has; `https`: whether any URL is
/// `https://`, without which `--http2` (ALPN) cannot speak HTTP/2.
pub fn streams(req: &RequestArgs, streams: usize, https: bool) -> Result<usize, super::Usage> {
    let mode = http2_mode(req);
    if streams > 1 && mode == crate::backend::Http2::Off {
        return Err(super::Usage(
            "--streams needs HTTP/2: add --http2 (https://) or --http2-prior-knowledge (http://)"
                .into(),
        ));
    }
    if mode == crate::backend::Http2::Alpn && !https {
        const WHY: &str = "--http2 asks for HTTP/2 by ALPN, which only https:// URLs have; \
                           over http:// use --http2-prior-knowledge (h2c)";
        if streams > 1 {
            return Err(super::Usage(format!("{WHY} (--streams would do nothing)")));
        }
        crate::say!("uringfetch: warning: {WHY}; these http:// URLs run HTTP/1.1");
    }
    Ok(streams)
}

/// The protocol the request options ask for.
pub fn http2_mode(req: &RequestArgs) -> crate::backend::Http2 {
    use crate::backend::Http2;
    if req.http2_prior_knowledge {
        Http2::PriorKnowledge
    } else if req.http2 {
        Http2::Alpn
    } else {
        Http2::Off
    }
}

/// The TLS client configuration the request options ask for; `also_trust`:
/// a certificate (PEM) to trust besides, the in-process demo server's.
pub fn tls_config(
    req: &RequestArgs,
    also_trust: Option<&str>,
) -> Result<(std::sync::Arc<rustls::ClientConfig>, Result<(), String>), super::Usage> {
    let ktls = ktls(req)?;
    let opts = crate::tls::TlsOptions {
        ktls: ktls.as_ref().ok().copied(),
        max: req.tls_max,
        cacert: req.cacert.clone(),
        insecure: req.insecure,
        cert: req.cert.clone(),
        key: req.key.clone(),
        resume: !req.no_tls_resume,
        also_trust: also_trust.map(str::to_string),
        http2: req.http2 || req.http2_prior_knowledge,
    };
    let config = crate::tls::client_config(&opts).map_err(super::Usage)?;
    Ok((config, ktls.map(|_| ())))
}

/// Whether any of `urls` is `https://` (a URL that does not parse is
/// reported where it is used).
pub fn any_https<'a>(urls: impl IntoIterator<Item = &'a str>) -> bool {
    urls.into_iter()
        .any(|u| crate::target::parse_url(u).is_ok_and(|u| u.tls))
}

/// The backend and the options of its own (`--uring-profile`).
pub fn backend(kind: BackendKind, req: &RequestArgs) -> Backend {
    Backend {
        kind,
        uring_profile: req.uring_profile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rate: Option<f64>) -> PlanArgs {
        PlanArgs {
            requests: Some(2),
            duration: None,
            rate,
            threads: None,
        }
    }

    #[test]
    fn rates_below_one_per_1000_s_are_refused() {
        let (_, rate) = stop_and_rate(&plan(Some(0.5)), 200).unwrap();
        assert_eq!(rate, Rate::Open(0.5));
        for q in [1e-300, 1e-19, 0.0009] {
            let e = stop_and_rate(&plan(Some(q)), 200).unwrap_err();
            assert!(e.to_string().contains("-q must be at least 0.001"), "{e}");
        }
        for q in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = stop_and_rate(&plan(Some(q)), 200).unwrap_err();
            assert!(
                e.to_string().contains("-q must be a positive number"),
                "{e}"
            );
        }
    }
}
