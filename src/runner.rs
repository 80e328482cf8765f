//! Runs a load test: splits the connections over worker threads, sets one
//! backend worker up per thread, starts them together on a shared [`Plan`]
//! once every one is ready, and merges what they recorded. Used by `load`,
//! `compare` and `demo` alike; `get` is [`fetch`], the same machinery with
//! a sink that keeps responses.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::backend::{self, Backend, ConnOptions, Live, WorkerCtx};
use crate::error::{ErrorKind, FetchError};
use crate::plan::{Plan, Rate, Stop};
use crate::session::{Collector, Fetch, LoadSink, Sink};
use crate::stats::Recorder;
use crate::stats::resources::{self, Usage};
use crate::stats::series::{Interval, IntervalRecorder, PerSecond};
use crate::stats::syscalls::SyscallCounter;
use crate::target::Target;

/// A fully validated load test.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub backend: Backend,
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
    /// The run second by second, as long as its whole seconds.
    pub series: PerSecond,
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
    // A user's number: it must not wrap (-c 18446744073709551615).
    let needed = (sockets as u64).saturating_add(RESERVED);
    if needed > soft {
        let flag = option.split(' ').next().unwrap_or(option);
        let raise = match hard {
            Some(h) if needed > h => format!(
                "that is more than the hard limit ({h}) allows: lower {flag}, or raise the hard \
                 limit (limits.conf, systemd LimitNOFILE) first"
            ),
            _ => format!(
                "raise it with `ulimit -n {needed}` (hard limit {}) or lower {flag}",
                hard.map_or_else(|| "unlimited".to_string(), |h| h.to_string()),
            ),
        };
        return Err(format!(
            "{option} needs about {needed} open files but the limit (RLIMIT_NOFILE) is {soft}: {raise}"
        ));
    }
    Ok(())
}

/// Holds the workers until every one is set up, so that setup (rings,
/// runtimes, a thousand threads) is not measured as part of the run; a
/// worker whose setup failed (or panicked) calls the run off for all.
#[derive(Debug, Default)]
struct StartGate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    arrived: usize,
    failed: bool,
    open: bool,
}

impl StartGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker's setup ended (`ok`: it can run). Blocks until the gate
    /// opens; whether to run.
    fn arrive(&self, ok: bool) -> bool {
        let mut st = self.lock();
        st.arrived += 1;
        st.failed |= !ok;
        self.cv.notify_all();
        while !st.open {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        !st.failed
    }

    /// Waits until `workers` have arrived, or one failed; then lets them
    /// all go. Whether the run is on.
    fn open_when_ready(&self, workers: usize) -> bool {
        let mut st = self.lock();
        while st.arrived < workers && !st.failed {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.open = true;
        self.cv.notify_all();
        !st.failed
    }
}

/// Reports a worker that panicked before its setup ended as failed, so
/// the gate does not wait for it.
struct Arrival<'a> {
    gate: &'a StartGate,
    arrived: bool,
}

impl Arrival<'_> {
    fn arrive(mut self, ok: bool) -> bool {
        self.arrived = true;
        self.gate.arrive(ok)
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.arrived {
            let mut st = self.gate.lock();
            st.arrived += 1;
            st.failed = true;
            self.gate.cv.notify_all();
        }
    }
}

/// What a worker thread hands back.
type WorkerResult = Result<Recorder, FetchError>;

/// Runs one worker thread: setup, the gate, then its sessions.
fn worker(
    kind: Backend,
    ctx: &WorkerCtx,
    gate: &StartGate,
    (index, live, tx): (usize, Arc<Live>, Sender<Interval>),
) -> (WorkerResult, Option<SyscallCounter>) {
    let arrival = Arrival {
        gate,
        arrived: false,
    };
    let mut counter = SyscallCounter::start();
    let before = Usage::thread_now();
    let prepared = backend::prepare(kind, ctx);
    let go = arrival.arrive(prepared.is_ok());
    let result = match prepared {
        Err(e) => Err(e),
        // Another worker failed: its error is the run's.
        Ok(_) if !go => Err(FetchError::new(ErrorKind::Other, CALLED_OFF)),
        Ok(p) => {
            let start = ctx.plan.start();
            let interval = IntervalRecorder::new(index, start, tx);
            let sink = LoadSink::new(Recorder::new(start), interval, live, index);
            p.run(ctx, sink).map(|sink| {
                let mut rec = sink.finish();
                rec.cpu += Usage::thread_now().since(&before);
                rec.syscalls = counter
                    .as_mut()
                    .map_err(|e| e.clone())
                    .and_then(|c| c.read());
                rec
            })
        }
    };
    if result.is_err() {
        // The other workers must not run on alone.
        ctx.plan.cancel();
    }
    // Closing a tracepoint counter takes tens of milliseconds: hand it
    // back so it is closed after the run is timed.
    (result, counter.ok())
}

/// The error of a worker that did not run because another one failed.
const CALLED_OFF: &str = "the run was called off";

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
    let wire = backend::wire(&config.targets, config.conn.pipeline);
    let (tx, rx) = std::sync::mpsc::channel();
    live.prepare(split.len());
    // What the workers share is made once (the HTTP/2 form of the
    // requests too); each worker gets its connections and connect turns.
    let shared = WorkerCtx::new(
        0,
        plan.clone(),
        config.targets.clone(),
        wire,
        config.conn.clone(),
        bind_cursor,
    )
    .for_backend(config.backend.kind);
    let handles: Vec<_> = split
        .iter()
        .enumerate()
        .map(|(index, &connections)| {
            let ctx = WorkerCtx {
                connections,
                turns: Arc::default(),
                ..shared.clone()
            };
            let (kind, gate) = (config.backend, gate.clone());
            let feeds = (index, live.clone(), tx.clone());
            std::thread::Builder::new()
                .name(format!("uringfetch-w{index}"))
                .spawn(move || worker(kind, &ctx, &gate, feeds))
        })
        .collect();
    let spawned = handles.iter().filter(|h| h.is_ok()).count();
    let on = gate.open_when_ready(spawned);
    let start = plan.start();
    // The same moment on the wall clock, read once right after the start.
    let wall_start = SystemTime::now()
        .checked_sub(start.elapsed())
        .unwrap_or_else(SystemTime::now);
    // Every worker holds a sender: the channel ends when the last one is done.
    drop(tx);
    collect(&rx, &live);
    let mut merged = Recorder::new(start);
    let mut failure: Option<FetchError> = None;
    let mut counters = Vec::new();
    for h in handles {
        let result = match h {
            Ok(h) => match h.join() {
                Ok((result, counter)) => {
                    counters.extend(counter);
                    result
                }
                Err(_) => Err(FetchError::new(
                    ErrorKind::Other,
                    "a worker thread panicked",
                )),
            },
            Err(e) => Err(FetchError::new(
                ErrorKind::Other,
                format!("cannot start a worker thread: {e}"),
            )),
        };
        match result {
            Ok(r) => merged.merge(&r),
            Err(e) => {
                // Other workers must not run on alone.
                plan.cancel();
                // A worker that stood down for another's failure is not the cause.
                if failure.as_ref().is_none_or(|f| f.message == CALLED_OFF) {
                    failure = Some(e);
                }
            }
        }
    }
    if !on && failure.is_none() {
        failure = Some(FetchError::new(ErrorKind::Other, CALLED_OFF));
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
    merged.count_unsent(plan.unsent(start + elapsed));
    let mut usage = Usage::now().since(&usage_before);
    if peak_reset && let Some(peak) = resources::peak_rss_kb() {
        usage.max_rss_kb = peak;
    }
    // The run's seconds, a last partial one included, unless it lasted
    // under 10 ms and held nothing (the end of `-z 4s` is 4.00002 s).
    let seconds = elapsed
        .saturating_sub(Duration::from_millis(10))
        .as_secs_f64()
        .ceil() as usize;
    let series = live
        .series
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .finish(seconds.max(merged.per_second.len()));
    Ok(LoadOutcome {
        config: config.clone(),
        recorder: merged,
        series,
        elapsed,
        wall_start,
        usage,
        cancelled: plan.is_cancelled(),
    })
}

/// Adds the workers' intervals into the live series until every worker
/// is done. This thread's CPU is not the client's (reports count the
/// workers' threads only), as the view's is not.
fn collect(rx: &Receiver<Interval>, live: &Live) {
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(iv) => {
                let mut series = live.series.lock().unwrap_or_else(|e| e.into_inner());
                series.ingest(iv);
                // Whatever else has come in, under the same lock.
                for iv in rx.try_iter().take(256) {
                    series.ingest(iv);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Fetches each target once on `connections` connections (each URL on a
/// connection of its own when there are as many; one after another on one
/// for `get --sequential`): the run machinery with a sink that keeps each
/// response. Results in target order.
pub fn fetch(
    kind: impl Into<Backend>,
    targets: &[Target],
    conn: &ConnOptions,
    connections: usize,
) -> Result<Vec<Fetch>, FetchError> {
    let collected = fetch_into(
        kind,
        targets,
        conn,
        connections,
        Collector::new(targets.len()),
        |_| {},
    )?;
    Ok(collected.into_results())
}

/// [`fetch`] into any sink (`get` streams bodies out as they come);
/// `on_plan` gets the run's plan before it starts (to cancel it on Ctrl-C).
pub(crate) fn fetch_into<S: Sink + Send + 'static>(
    kind: impl Into<Backend>,
    targets: &[Target],
    conn: &ConnOptions,
    connections: usize,
    sink: S,
    on_plan: impl FnOnce(Arc<Plan>),
) -> Result<S, FetchError> {
    let n = targets.len();
    let conn = ConnOptions {
        pipeline: 1,
        ..conn.clone()
    };
    let targets = Arc::new(targets.to_vec());
    let kind: Backend = kind.into();
    let plan = Plan::new(Stop::Count(n as u64), Rate::Closed);
    on_plan(plan.clone());
    let ctx = WorkerCtx::new(
        connections.clamp(1, n.max(1)),
        plan,
        targets.clone(),
        backend::wire(&targets, 1),
        Arc::new(conn),
        Arc::default(),
    )
    .for_backend(kind.kind);
    backend::prepare(kind, &ctx)?.run(&ctx, sink)
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
    let me = std::thread::current();
    plan.on_cancel(Box::new(move || me.unpark()));
    loop {
        let now = Instant::now();
        if plan.is_cancelled() {
            // Ctrl-C while waiting out the window: it ran until now.
            return now.saturating_duration_since(plan.start());
        }
        if now >= deadline {
            return deadline.saturating_duration_since(plan.start());
        }
        std::thread::park_timeout(deadline - now);
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

    /// A worker that fails its setup, or panics before it gets there, calls
    /// the run off: the gate opens at once and the others do not run.
    #[test]
    fn a_worker_that_fails_before_it_is_ready_ends_the_run() {
        let gate = Arc::new(StartGate::default());
        let g = gate.clone();
        let ok = std::thread::spawn(move || {
            let arrival = Arrival {
                gate: &g,
                arrived: false,
            };
            arrival.arrive(true)
        });
        let g = gate.clone();
        let panicked = std::thread::spawn(move || {
            let _arrival = Arrival {
                gate: &g,
                arrived: false,
            };
            panic!("setup panicked");
        });
        assert!(panicked.join().is_err());
        assert!(!gate.open_when_ready(2), "the run is off");
        assert!(!ok.join().unwrap(), "the ready worker stands down");
        // A worker whose setup returned an error: the same.
        let gate = StartGate::default();
        std::thread::scope(|s| {
            let waiting = s.spawn(|| gate.arrive(true));
            s.spawn(|| gate.arrive(false));
            assert!(!gate.open_when_ready(3), "no wait for the third");
            assert!(!waiting.join().unwrap());
        });
    }

    #[test]
    fn fd_limit_check_explains() {
        let err = check_fd_limit(200_000_000, "--requests 100000000").unwrap_err();
        assert!(
            err.starts_with("--requests 100000000 needs about 200000064"),
            "{err}"
        );
        let hard = crate::doctor::limits::Rlimit::get(libc::RLIMIT_NOFILE).and_then(|r| r.hard);
        if hard.is_some_and(|h| h < 200_000_064) {
            assert!(err.contains("more than the hard limit"), "{err}");
            assert!(err.contains(": lower --requests"), "{err}");
        } else {
            assert!(err.contains("ulimit -n 200000064"), "{err}");
            assert!(err.ends_with("or lower --requests"), "{err}");
        }
        assert!(check_fd_limit(10, "-c 10").is_ok());
        // Numbers near the top of the range are refused, not wrapped round.
        if crate::doctor::limits::Rlimit::get(libc::RLIMIT_NOFILE).is_some_and(|r| r.soft.is_some())
        {
            let err = check_fd_limit(usize::MAX, "-c 18446744073709551615").unwrap_err();
            assert!(
                err.contains("needs about 18446744073709551615 open files"),
                "{err}"
            );
        }
    }
}
