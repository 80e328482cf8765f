//! `--fail-on`: conditions on a finished run's report that fail it, for CI
//! (k6's thresholds are the model): `errors>0.1%,non-2xx>0,p99>200ms`.
//!
//! A condition is `METRIC OP VALUE`, OP one of `>`, `>=`, `<`, `<=`:
//! - `errors`: requests that got no response; a count, or with `%` a share
//!   of the requests that finished (a response or an error);
//! - `non-2xx`: responses outside 2xx/3xx; a count, or with `%` a share of
//!   the responses;
//! - `success`: the success rate, with `%`;
//! - `p50`, `p75`, `p90`, `p95`, `p99`, `p999`, `p9999`, `max`, `mean`:
//!   latency, with a unit (`us`, `ms`, `s`);
//! - `rps`: requests per second.
//!
//! The condition holds when the run is bad: `p99>200ms` fails a run whose
//! p99 is above 200 ms.

use super::Summary;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Errors,
    Non2xx,
    Success,
    /// A latency figure of the report, by name.
    Latency(&'static str),
    Rps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
        }
    }
}

/// One `--fail-on` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    metric: Metric,
    op: Op,
    /// In the metric's unit: a count, a fraction (for `%`), µs, req/s.
    value: f64,
    percent: bool,
    /// As the user wrote it.
    pub text: String,
}

/// `--fail-on`'s conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct FailOn(pub Vec<Threshold>);

/// Parses `--fail-on` (clap's value parser).
pub fn parse_fail_on(s: &str) -> Result<FailOn, String> {
    parse(s).map(FailOn)
}

/// The exit codes of a command that ran a test (documented in `--help`
/// and the README).
pub const EXIT_OK: i32 = 0;
/// The test could not run, or not one request got a response.
pub const EXIT_FAILED: i32 = 1;
/// A `--fail-on` condition held.
pub const EXIT_THRESHOLD: i32 = 3;

/// The verdict on a finished run's report, each reason said on stderr: a
/// run where not one request got a response failed, whatever the
/// conditions; then any `--fail-on` condition that holds fails it.
pub fn verdict(s: &Summary, fail_on: Option<&FailOn>) -> i32 {
    let r = &s.requests;
    if r.issued > 0 && r.completed == 0 {
        crate::say!(
            "uringfetch: not one response arrived ({} requests: {} errors, {} in flight at the end)",
            r.issued,
            r.errors,
            r.in_flight
        );
        return EXIT_FAILED;
    }
    let mut code = EXIT_OK;
    for t in fail_on.map_or(&[][..], |f| &f.0) {
        if let Some(why) = t.crossed(s) {
            crate::say!("uringfetch: --fail-on {}: {why}", t.text);
            code = EXIT_THRESHOLD;
        }
    }
    code
}

/// Parses `--fail-on`'s comma-separated conditions.
pub fn parse(s: &str) -> Result<Vec<Threshold>, String> {
    let list: Vec<Threshold> = s
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(parse_one)
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err("--fail-on needs at least one condition, e.g. 'errors>0,p99>200ms'".into());
    }
    Ok(list)
}

fn parse_one(c: &str) -> Result<Threshold, String> {
    let bad = |why: &str| {
        format!(
            "invalid --fail-on condition '{}': {why} (e.g. errors>0.1%, non-2xx>0, p99>200ms, \
             rps<1000, success<99.9%)",
            c.escape_default()
        )
    };
    let at = c
        .find(['>', '<'])
        .ok_or_else(|| bad("no comparison (>, >=, <, <=)"))?;
    let (name, rest) = c.split_at(at);
    let (op, value) = match rest.as_bytes() {
        [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
        [b'<', b'=', ..] => (Op::Le, &rest[2..]),
        [b'>', ..] => (Op::Gt, &rest[1..]),
        _ => (Op::Lt, &rest[1..]),
    };
    let name = name.trim().to_ascii_lowercase();
    let value = value.trim();
    let metric = match name.as_str() {
        "errors" => Metric::Errors,
        "non-2xx" | "non_2xx" | "non2xx" => Metric::Non2xx,
        "success" => Metric::Success,
        "rps" => Metric::Rps,
        "p50" => Metric::Latency("p50"),
        "p75" => Metric::Latency("p75"),
        "p90" => Metric::Latency("p90"),
        "p95" => Metric::Latency("p95"),
        "p99" => Metric::Latency("p99"),
        "p999" => Metric::Latency("p999"),
        "p9999" => Metric::Latency("p9999"),
        "max" => Metric::Latency("max"),
        "mean" => Metric::Latency("mean"),
        _ => return Err(bad("unknown metric")),
    };
    let number = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| bad("the value is not a number"))
    };
    let (value, percent) = match metric {
        Metric::Latency(..) => {
            let (n, scale) = if let Some(n) = value.strip_suffix("ms") {
                (n, 1e3)
            } else if let Some(n) = value.strip_suffix("us").or(value.strip_suffix("µs")) {
                (n, 1.0)
            } else if let Some(n) = value.strip_suffix('s') {
                (n, 1e6)
            } else {
                return Err(bad("a latency needs a unit: us, ms or s"));
            };
            (number(n)? * scale, false)
        }
        Metric::Success => match value.strip_suffix('%') {
            Some(n) => (number(n)? / 100.0, true),
            None => return Err(bad("success is a percentage, e.g. success<99.9%")),
        },
        Metric::Errors | Metric::Non2xx => match value.strip_suffix('%') {
            Some(n) => (number(n)? / 100.0, true),
            None => (number(value)?, false),
        },
        Metric::Rps => (number(value)?, false),
    };
    Ok(Threshold {
        metric,
        op,
        value,
        percent,
        text: c.to_string(),
    })
}

/// The latency figure `name` of a report, in µs.
fn latency(p: &super::Percentiles, name: &str) -> f64 {
    match name {
        "p50" => p.p50 as f64,
        "p75" => p.p75 as f64,
        "p90" => p.p90 as f64,
        "p95" => p.p95 as f64,
        "p99" => p.p99 as f64,
        "p999" => p.p999 as f64,
        "p9999" => p.p9999 as f64,
        "max" => p.max as f64,
        _ => p.mean,
    }
}

/// `n / of`, 0 when there is nothing to divide by.
fn share(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

impl Threshold {
    /// What the report says, if the condition holds (the run fails).
    pub fn crossed(&self, s: &Summary) -> Option<String> {
        let r = &s.requests;
        let finished = r.completed.saturating_add(r.errors);
        let (actual, shown) = match self.metric {
            Metric::Errors if self.percent => {
                let x = share(r.errors, finished);
                (
                    x,
                    format!("{:.3}% errors ({} of {finished})", x * 100.0, r.errors),
                )
            }
            Metric::Errors => (r.errors as f64, format!("{} errors", r.errors)),
            Metric::Non2xx if self.percent => {
                let x = share(s.non_2xx_3xx, r.completed);
                (
                    x,
                    format!(
                        "{:.3}% of responses outside 2xx/3xx ({} of {})",
                        x * 100.0,
                        s.non_2xx_3xx,
                        r.completed
                    ),
                )
            }
            Metric::Non2xx => (
                s.non_2xx_3xx as f64,
                format!("{} responses outside 2xx/3xx", s.non_2xx_3xx),
            ),
            Metric::Success => (
                s.success_rate,
                format!("success rate {:.3}%", s.success_rate * 100.0),
            ),
            Metric::Latency(name) => {
                if s.latency_us.count == 0 {
                    // No response, no latency: the condition cannot be checked.
                    return Some(format!("{name}: no response to measure"));
                }
                let us = latency(&s.latency_us, name);
                (us, format!("{name} was {}", super::text::fmt_us(us as u64)))
            }
            Metric::Rps => (s.rps, format!("{:.1} requests/s", s.rps)),
        };
        self.op.holds(actual, self.value).then_some(shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_refuse_nonsense() {
        let t = parse("errors>0.1%, non-2xx>0,p99>200ms,rps<1000,success<=99.9%").unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!((t[0].op, t[0].percent), (Op::Gt, true));
        assert!((t[0].value - 0.001).abs() < 1e-12);
        assert_eq!(t[2].value, 200_000.0);
        assert_eq!(t[4].op, Op::Le);
        for bad in [
            "",
            "errors",
            "p99>200",
            "latency>1s",
            "errors>x",
            "success<99",
            "p99>-1ms",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("p99>200").unwrap_err();
        assert!(e.contains("needs a unit"), "{e}");
    }
}
