//! Wall-clock time, for runs spread over several machines.
//!
//! A run measures itself on the monotonic clock ([`std::time::Instant`]),
//! which means nothing outside the process. To start N clients together
//! (`load --start-at`) and to merge their reports over the union of their
//! time windows (`merge`), the start and end are also recorded on the wall
//! clock ([`SystemTime`]), which NTP keeps in step across machines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::MAX_DURATION;

/// How far in the past a `--start-at` may be and still start at once
/// (a client launched a moment late); further is refused, since that client
/// could not start together with the others.
pub const PAST_TOLERANCE: Duration = Duration::from_secs(1);

/// Parses `--start-at`: RFC 3339 (`2026-11-26T13:00:00Z`,
/// `2026-11-26T14:00:00.5+01:00`), a delay from `now` (`+5s`, `+1m`,
/// `+0.5`), or unix seconds (`@1795698000`). Whatever the form, the start
/// is at most [`MAX_DURATION`] (a year) after `now`, the bound every
/// duration has: `+366d` was refused while `9999-12-31T23:59:59Z`, 8,000
/// years ahead, was waited for.
pub fn parse_start_at(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    // The messages echo the argument: control characters in it are shown
    // escaped, wherever in the message they end up.
    start_at_within_bounds(s.trim(), now).map_err(|e| crate::report::escape(&e).into_owned())
}

fn start_at_within_bounds(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let at = parse_start_at_any(s, now)?;
    // RFC 3339 (the reports' format) ends with year 9999.
    if at >= UNIX_EPOCH + Duration::from_secs(LAST_RFC3339_SECOND + 1) {
        return Err(format!("invalid --start-at '{s}': after the year 9999"));
    }
    if let Some(latest) = now.checked_add(MAX_DURATION)
        && at > latest
    {
        return Err(format!(
            "invalid --start-at '{s}': {} is more than a year (365d) ahead; the latest \
             start is {}",
            rfc3339(at),
            rfc3339(latest)
        ));
    }
    Ok(at)
}

/// 9999-12-31T23:59:59Z in unix seconds.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

fn parse_start_at_any(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Some(rest) = s.strip_prefix('+') {
        return crate::cli::parse_duration(rest).and_then(|d| {
            now.checked_add(d)
                .ok_or_else(|| format!("invalid --start-at '{s}'"))
        });
    }
    if let Some(rest) = s.strip_prefix('@') {
        let secs: f64 = rest
            .parse()
            .map_err(|_| format!("invalid --start-at '{s}': expected @UNIX_SECONDS"))?;
        let at = (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten()
            .and_then(|d| UNIX_EPOCH.checked_add(d));
        return at.ok_or_else(|| format!("invalid --start-at '{s}'"));
    }
    parse_rfc3339(s).map_err(|e| {
        format!(
            "invalid --start-at '{s}': {e} (expected RFC 3339 like 2026-11-26T13:00:00Z, \
             a delay like +5s, or @UNIX_SECONDS)"
        )
    })
}

/// RFC 3339 in UTC (`Z`) or with a numeric offset (`+01:00`).
fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    let up = s.to_ascii_uppercase();
    if up.ends_with('Z') {
        return humantime::parse_rfc3339(&up).map_err(|e| e.to_string());
    }
    let b = up.as_bytes();
    let n = b.len();
    if n > 6 && (b[n - 6] == b'+' || b[n - 6] == b'-') && b[n - 3] == b':' {
        let hours: u64 = up[n - 5..n - 3].parse().map_err(|_| "bad offset hours")?;
        let minutes: u64 = up[n - 2..].parse().map_err(|_| "bad offset minutes")?;
        if hours > 23 || minutes > 59 {
            return Err("offset out of range".into());
        }
        let local =
            humantime::parse_rfc3339(&format!("{}Z", &up[..n - 6])).map_err(|e| e.to_string())?;
        let offset = Duration::from_secs(hours * 3600 + minutes * 60);
        // 14:00+01:00 is 13:00Z: a positive offset is subtracted.
        return if b[n - 6] == b'+' {
            local
                .checked_sub(offset)
                .ok_or_else(|| "time before 1970".to_string())
        } else {
            Ok(local + offset)
        };
    }
    Err("no time zone: end with Z or an offset like +01:00".into())
}

/// `2026-11-26T13:00:00.123456789Z` (clamped to the year 9999, RFC 3339's last).
pub fn rfc3339(t: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_secs(LAST_RFC3339_SECOND);
    humantime::format_rfc3339_nanos(t.min(last)).to_string()
}

/// Nanoseconds since the unix epoch (0 before it; fits in u64 until 2554).
pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The inverse of [`unix_ns`].
pub fn from_unix_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// This machine's host name (its UTS namespace's: a pod's name in Kubernetes).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Sleeps until the wall clock reads `at`, waking often enough to notice
/// `interrupted` (Ctrl-C). Returns false if interrupted. Short sleeps also
/// follow a clock that NTP steps while we wait.
pub fn sleep_until(at: SystemTime, stop: &Stop) -> bool {
    // The wall clock may be stepped while we wait (NTP): the time left is
    // read again at least once a second.
    const SLICE: Duration = Duration::from_secs(1);
    let mut stopped = stop.stopped.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if *stopped {
            return false;
        }
        match at.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => {
                stopped = stop
                    .wake
                    .wait_timeout(stopped, left.min(SLICE))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            _ => return true,
        }
    }
}

/// Ends a [`sleep_until`] from another thread (Ctrl-C's).
#[derive(Debug, Default)]
pub struct Stop {
    stopped: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
}

impl Stop {
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-18T...: the clock the tests parse against.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_000_000)
    }

    fn at(s: &str) -> SystemTime {
        parse_start_at(s, now()).unwrap()
    }

    #[test]
    fn start_at_forms() {
        let t = at("2026-11-26T13:00:00Z");
        assert_eq!(rfc3339(t), "2026-11-26T13:00:00.000000000Z");
        assert_eq!(at("2026-11-26t13:00:00z"), t);
        assert_eq!(at("2026-11-26T14:00:00+01:00"), t);
        assert_eq!(at("2026-11-26T08:30:00-04:30"), t);
        assert_eq!(at(&format!("@{}", unix_ns(t) / 1_000_000_000)), t);
        assert_eq!(
            at("2026-11-26T13:00:00.25Z"),
            t + Duration::from_millis(250)
        );
        assert_eq!(at("+5s"), now() + Duration::from_secs(5));
        assert_eq!(at("+1.5"), now() + Duration::from_millis(1500));
        for bad in [
            "2026-11-26T13:00:00",
            "tomorrow",
            "+soon",
            "@x",
            "@-1",
            "",
            "@1e30",
            "@1e12",
            "@253402300800",
            "+18446744073709551615s",
        ] {
            assert!(parse_start_at(bad, now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_start_is_at_most_a_year_ahead_in_every_form() {
        let year = MAX_DURATION;
        let unix = |t: SystemTime| format!("@{}", unix_ns(t) / 1_000_000_000);
        let last = now() + year;
        assert_eq!(at("+365d"), last);
        assert_eq!(at(&rfc3339(last)), last);
        assert_eq!(at(&unix(last)), last);
        let late = last + Duration::from_secs(1);
        for bad in [
            "+366d".to_string(),
            rfc3339(late),
            unix(late),
            "9999-12-31T23:59:59Z".to_string(),
            "2100-01-01T00:00:00+01:00".to_string(),
        ] {
            let e = parse_start_at(&bad, now()).unwrap_err();
            assert!(
                e.contains("more than a year (365d) ahead") || e.contains("longer than a year"),
                "{bad}: {e}"
            );
        }
        let e = parse_start_at("+1\u{1b}[2J", now()).unwrap_err();
        assert!(e.contains("'1\\u{1b}[2J'") && !e.contains('\u{1b}'), "{e}");
        let e = parse_start_at("9999-12-31T23:59:59Z", now()).unwrap_err();
        assert!(
            e.contains(
                "9999-12-31T23:59:59.000000000Z is more than a year (365d) ahead; \
                 the latest start is 2027-11-18T"
            ),
            "{e}"
        );
    }

    #[test]
    fn unix_ns_round_trips() {
        let t = at("2026-11-26T13:00:00.123456789Z");
        assert_eq!(from_unix_ns(unix_ns(t)), t);
        assert_eq!(unix_ns(t) % 1_000_000_000, 123_456_789);
    }

    #[test]
    fn sleep_until_the_past_returns_at_once_and_ctrl_c_stops_it() {
        let stop = std::sync::Arc::new(Stop::default());
        assert!(sleep_until(SystemTime::now(), &stop));
        // A stop from another thread wakes the wait at once, not at its
        // next look at the clock.
        let waker = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.stop();
        });
        let started = std::time::Instant::now();
        let far = SystemTime::now() + Duration::from_secs(3600);
        assert!(!sleep_until(far, &stop));
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        t.join().unwrap();
    }
}
