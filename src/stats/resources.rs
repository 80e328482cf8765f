//! What a run cost the machine: CPU time, context switches and peak memory of
//! this process (getrusage), taken before and after the run; and the calling
//! thread's CPU clock, which `uring-loop` reads while it runs.

use std::time::Duration;

/// One getrusage(RUSAGE_SELF) reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub user: Duration,
    pub sys: Duration,
    pub voluntary_ctx: u64,
    pub involuntary_ctx: u64,
    /// Peak resident set size of the process so far, KiB.
    pub max_rss_kb: u64,
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

impl Usage {
    /// Reads this process's usage (all threads, live and joined).
    pub fn now() -> Self {
        Self::read(libc::RUSAGE_SELF)
    }

    /// Reads the calling thread's usage only (peak RSS is still the
    /// process's). Summing worker threads' usage keeps an in-process demo
    /// server's CPU out of the client's figures.
    pub fn thread_now() -> Self {
        Self::read(libc::RUSAGE_THREAD)
    }

    fn read(who: libc::c_int) -> Self {
        // SAFETY: `rusage` is plain old data for which all-zero bytes are a
        // valid value, and getrusage only writes into the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `who` is RUSAGE_SELF or RUSAGE_THREAD and the pointer is
        // valid and writable for one rusage.
        let rc = unsafe { libc::getrusage(who, &mut ru) };
        if rc != 0 {
            return Self::default();
        }
        Self {
            user: timeval(ru.ru_utime),
            sys: timeval(ru.ru_stime),
            voluntary_ctx: ru.ru_nvcsw.max(0) as u64,
            involuntary_ctx: ru.ru_nivcsw.max(0) as u64,
            max_rss_kb: ru.ru_maxrss.max(0) as u64,
        }
    }

    /// The cost between `before` and `self`; peak RSS is the process's peak.
    pub fn since(&self, before: &Usage) -> Usage {
        Usage {
            user: self.user.saturating_sub(before.user),
            sys: self.sys.saturating_sub(before.sys),
            voluntary_ctx: self.voluntary_ctx.saturating_sub(before.voluntary_ctx),
            involuntary_ctx: self.involuntary_ctx.saturating_sub(before.involuntary_ctx),
            max_rss_kb: self.max_rss_kb,
        }
    }
}

impl std::ops::AddAssign for Usage {
    /// Sums costs; the peak RSS is a peak, so it takes the larger.
    fn add_assign(&mut self, o: Usage) {
        self.user += o.user;
        self.sys += o.sys;
        self.voluntary_ctx += o.voluntary_ctx;
        self.involuntary_ctx += o.involuntary_ctx;
        self.max_rss_kb = self.max_rss_kb.max(o.max_rss_kb);
    }
}

/// The calling thread's CPU time (user + system) to the nanosecond,
/// including the slice it is running now (getrusage's figure lags by up to
/// a scheduler tick, too coarse for a 10 ms window). None if unavailable.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own;
    // CLOCK_THREAD_CPUTIME_ID is valid for the calling thread.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    ))
}

/// Resets the process's peak-RSS mark (`VmHWM`), so that a run in a
/// process that already ran others (`compare`) reports its own peak.
/// Returns whether the kernel took it (Linux 4.0+).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak RSS since start or the last [`reset_peak_rss`], KiB.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_grows_with_work() {
        let before = Usage::now();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let d = Usage::now().since(&before);
        assert!(d.user + d.sys > Duration::ZERO);
        assert!(d.max_rss_kb > 0);
    }
}
