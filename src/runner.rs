//! Runs a load test: splits the connections over worker threads, starts one
//! backend worker per thread on a shared [`Plan`], and merges what they
//! recorded. Used by `load`, `compare` and `demo` alike.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::backend::{self, BackendKind, ConnOptions, Live, StartGate, WorkerCtx};
use crate::error::FetchError;
use crate::plan::{Plan, Rate, Stop};
use crate::stats::Recorder;
use crate::stats::resources::{self, Usage};
use crate::stats::syscalls::SyscallCounter;
use crate::target::Target;

/// A fully validated load test.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub backend: BackendKind,
    pub targets: Arc<Vec<Target>>,
    pub connections: usize,
    pub threads: usize,
    pub stop: Stop,
    pub rate: Rate,
    pub conn: Arc<ConnOptions>,
}

/// What a run produced, before formatting.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    pub config: LoadConfig,
    pub recorder: Recorder,
    /// Wall time from the plan's start to the last worker's end.
    pub elapsed: Duration,
    /// The plan's start on the wall clock (the end is `wall_start + elapsed`).
    pub wall_start: SystemTime,
    /// The whole process's cost (includes an in-process server, if any);
    /// the client's own cost is `recorder.cpu`. `max_rss_kb` is this run's
    /// peak where the kernel lets the mark be reset, else the process's.
    pub usage: Usage,
    /// Ctrl-C ended the run early.
    pub cancelled: bool,
}

/// Splits `total` connections over `threads` as evenly as possible; a
/// thread with no connection is not started.
pub fn split_connections(total: usize, threads: usize) -> Vec<usize> {
    let threads = threads.clamp(1, total.max(1));
    (0..threads)
        .map(|i| total / threads + usize::from(i < total % threads))
        .filter(|&n| n > 0)
        .collect()
}

/// The number of worker threads to use by default: all cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Refuses a run that cannot open its connections, before starting it.
/// `sockets` is how many it holds at once; `option` the setting that sets
/// it (`-c 20000`), named in the advice.
pub fn check_fd_limit(sockets: usize, option: &str) -> Result<(), String> {
    use crate::doctor::limits::Rlimit;
    // Unknown or unlimited: nothing to check against.
    let Some(Rlimit {
        soft: Some(soft),
        hard,
    }) = Rlimit::get(libc::RLIMIT_NOFILE)
    else {
        return Ok(());
    };
    // Descriptors for the rings, stdio, the binary and a margin.
    const RESERVED: u64 = 64;
    let needed = sockets as u64 + RESERVED;
    if needed > soft {
        let flag = option.split(' ').next().unwrap_or(option);
        return Err(format!(
            "{option} needs about {needed} open files but the limit (RLIMIT_NOFILE) is {soft}: \
             raise it with `ulimit -n {needed}` (hard limit {}) or lower {flag}",
            hard.map_or_else(|| "unlimited".to_string(), |h| h.to_string()),
        ));
    }
    Ok(())
}

/// Runs the test with a plan starting now. `live` lets a progress bar
/// watch; `plan_hook` receives the plan so Ctrl-C can cancel it.
pub fn run(
    config: &LoadConfig,
    live: Arc<Live>,
    plan_hook: impl FnOnce(Arc<Plan>),
) -> Result<LoadOutcome, FetchError> {
    let split = split_connections(config.connections, config.threads);
    let peak_reset = resources::reset_peak_rss();
    let usage_before = Usage::now();
    let plan = Plan::new(config.stop, config.rate);
    plan_hook(plan.clone());
    let gate = Arc::new(StartGate::default());
    let bind_cursor: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let handles: Vec<_> = split
        .iter()
        .enumerate()
        .map(|(index, &connections)| {
            let ctx = WorkerCtx {
                index,
                connections,
                bind_cursor: bind_cursor.clone(),
                plan: plan.clone(),
                targets: config.targets.clone(),
                conn: config.conn.clone(),
                live: live.clone(),
                gate: gate.clone(),
            };
            let kind = config.backend;
            let plan = plan.clone();
            std::thread::Builder::new()
                .name(format!("uringfetch-w{index}"))
                .spawn(move || {
                    let mut counter = SyscallCounter::start();
                    let before = Usage::thread_now();
                    let result = backend::run_worker(kind, ctx).map(|mut rec| {
                        rec.cpu += Usage::thread_now().since(&before);
                        rec.syscalls = counter
                            .as_mut()
                            .map_err(|e| e.clone())
                            .and_then(|c| c.read());
                        rec
                    });
                    if result.is_err() {
                        // The other workers must not run on alone.
                        plan.cancel();
                    }
                    // Closing a tracepoint counter takes tens of milliseconds:
                    // hand it back so it is closed after the run is timed.
                    (result, counter.ok())
                })
        })
        .collect();
    let spawned = handles.iter().filter(|h| h.is_ok()).count();
    gate.open_when_ready(spawned);
    let start = plan.start();
    // The same moment on the wall clock, read once right after the start.
    let wall_start = SystemTime::now()
        .checked_sub(start.elapsed())
        .unwrap_or_else(SystemTime::now);
    let mut merged = Recorder::new(start);
    let mut failure = None;
    let mut counters = Vec::new();
    for h in handles {
        let result = match h {
            Ok(h) => match h.join() {
                Ok((result, counter)) => {
                    counters.extend(counter);
                    result
                }
                Err(_) => Err(FetchError::new(
                    crate::error::ErrorKind::Other,
                    "a worker thread panicked",
                )),
            },
            Err(e) => Err(FetchError::new(
                crate::error::ErrorKind::Other,
                format!("cannot start a worker thread: {e}"),
            )),
        };
        match result {
            Ok(r) => merged.merge(&r),
            Err(e) => {
                // Other workers must not run on alone.
                plan.cancel();
                failure.get_or_insert(e);
            }
        }
    }
    // The run ends with its last request; tearing connections down after
    // that is cleanup, not run time.
    let mut elapsed = merged
        .finished
        .map_or_else(|| start.elapsed(), |f| f.saturating_duration_since(start));
    if failure.is_none() {
        elapsed = elapsed.max(wait_out_window(&plan));
    }
    std::thread::spawn(move || drop(counters));
    if let Some(e) = failure {
        return Err(e);
    }
    let mut usage = Usage::now().since(&usage_before);
    if peak_reset && let Some(peak) = resources::peak_rss_kb() {
        usage.max_rss_kb = peak;
    }
    Ok(LoadOutcome {
        config: config.clone(),
        recorder: merged,
        elapsed,
        wall_start,
        usage,
        cancelled: plan.is_cancelled(),
    })
}

/// An open-loop `-z` run hands out no ticket whose time falls past the
/// deadline, so its workers can be done up to one interval (1/rate) early;
/// the run still covers its whole window, as wrk2's does, or its rate
/// would read high (`-q 0.4 -z 2s` ended after one request, 0.001 s, and
/// reported 928 req/s). Waits until the deadline or Ctrl-C; returns how
/// long the window lasted: zero for a count run or a run Ctrl-C stopped
/// (both end with their last request).
fn wait_out_window(plan: &Plan) -> Duration {
    let Some(deadline) = plan.deadline() else {
        return Duration::ZERO;
    };
    if plan.is_cancelled() {
        // Ctrl-C stopped the workers: the run ended with its last request
        // (their own clock), not after their teardown.
        return Duration::ZERO;
    }
    loop {
        let now = Instant::now();
        if now >= deadline {
            return deadline.saturating_duration_since(plan.start());
        }
        if plan.is_cancelled() {
            // Ctrl-C while waiting out the window: it ran until now.
            return now.saturating_duration_since(plan.start());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_split_evenly() {
        assert_eq!(split_connections(50, 2), vec![25, 25]);
        assert_eq!(split_connections(5, 2), vec![3, 2]);
        assert_eq!(split_connections(1, 4), vec![1]);
        assert_eq!(split_connections(10_000, 3).iter().sum::<usize>(), 10_000);
    }

    #[test]
    fn fd_limit_check_explains() {
        let err = check_fd_limit(200_000_000, "--requests 100000000").unwrap_err();
        assert!(err.contains("ulimit -n 200000064"), "{err}");
        assert!(err.starts_with("--requests 100000000 needs"), "{err}");
        assert!(err.ends_with("or lower --requests"), "{err}");
        assert!(check_fd_limit(10, "-c 10").is_ok());
    }
}
