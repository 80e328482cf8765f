//! The live view of a load run on stderr's terminal (ratatui on
//! crossterm): a thread of its own that reads the workers' live counters
//! and the runner's per-second series at most ten times a second and
//! draws them ([`view`]); `q`, Esc or Ctrl-C cancels the run, whose report
//! then prints as usual.
//!
//! It never touches what the workers write on the request path beyond
//! relaxed loads of their counters, and its CPU time is not the client's:
//! reports sum the worker threads' own usage (RUSAGE_THREAD), never the
//! process's, so this thread is left out by construction.

pub mod view;

use std::io::{self, Stderr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};

use crate::backend::Live;
use crate::plan::{Plan, Stop};
use view::{HISTOGRAM_ROWS, Pcts, Progress, ViewState};

/// At most this many frames a second.
const FRAME: Duration = Duration::from_millis(100);

/// Reads the run's state for one frame. `now_second` (whole seconds since
/// the start) is the second under way: it is left out of the series, whose
/// last whole second is the "last 1 s".
pub fn gather(live: &Live, elapsed: Duration, stop: Stop, header: &str) -> ViewState {
    let totals = live.totals();
    let now_second = elapsed.as_secs() as usize;
    let series = live.series.lock().unwrap_or_else(|e| e.into_inner());
    let mut rps = series.responses();
    let mut errors = series.errors();
    rps.resize(now_second, 0);
    errors.resize(now_second, 0);
    let last = if now_second > 0 {
        Pcts::of(&series.second(now_second - 1))
    } else {
        Pcts::default()
    };
    let total = series.total();
    let (status, kinds) = series.tallies();
    drop(series);
    ViewState {
        header: header.to_string(),
        elapsed,
        progress: Some(match stop {
            Stop::Duration(d) => Progress::Time(d),
            Stop::Count(n) => Progress::Count(n),
        }),
        totals,
        rps,
        errors,
        last,
        whole: Pcts::of(&total),
        buckets: view::buckets(&total, HISTOGRAM_ROWS),
        status,
        error_kinds: kinds
            .into_iter()
            .map(|(k, n)| (k.name().to_string(), n))
            .collect(),
        stopping: false,
    }
}

/// The view while it runs; [`LiveView::stop`] ends it and gives the
/// terminal back as it was.
pub struct LiveView {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl LiveView {
    /// Takes over stderr's terminal (alternate screen, raw mode) and draws
    /// on a thread of its own until stopped.
    pub fn start(plan: Arc<Plan>, live: Arc<Live>, stop: Stop, header: String) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name("uringfetch-view".into())
            .spawn(move || run(&plan, &live, stop, &header, &flag))
            .ok();
        Self { done, thread }
    }

    /// Ends the view; says why it failed, if it did.
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            match t.join() {
                Ok(Err(e)) => crate::say!("uringfetch: the live view failed: {e}"),
                Err(_) => crate::say!("uringfetch: the live view panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.end();
    }
}

/// Puts the terminal back when dropped, however the view ends.
struct Screen(Terminal<CrosstermBackend<Stderr>>);

impl Screen {
    fn enter() -> io::Result<Self> {
        terminal::enable_raw_mode()?;
        let mut err = io::stderr();
        if let Err(e) = execute!(err, terminal::EnterAlternateScreen, cursor::Hide) {
            let _ = terminal::disable_raw_mode();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(io::stderr())) {
            Ok(t) => Ok(Self(t)),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

fn restore() {
    let _ = execute!(io::stderr(), terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Whether a key stops the run: q, Esc, or Ctrl-C (raw mode turns it into a key).
fn stops(code: KeyCode, modifiers: KeyModifiers) -> bool {
    matches!(code, KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc)
        || (code == KeyCode::Char('c') && modifiers.contains(KeyModifiers::CONTROL))
}

/// Keys cannot be read: raw mode off, so that Ctrl-C is SIGINT again (the
/// run's Ctrl-C handler cancels it). Returns false: no more key reading.
fn no_keys() -> bool {
    let _ = terminal::disable_raw_mode();
    false
}

fn run(plan: &Plan, live: &Live, stop: Stop, header: &str, done: &AtomicBool) -> io::Result<()> {
    let mut screen = Screen::enter()?;
    let mut keys = true;
    let mut stopping = false;
    while !done.load(Ordering::Acquire) {
        let frame_start = Instant::now();
        let mut state = gather(live, plan.start().elapsed(), stop, header);
        state.stopping = stopping || plan.is_cancelled();
        screen.0.draw(|f| view::draw(f, &state))?;
        // Wait out the frame, reading keys meanwhile.
        loop {
            let left = FRAME.saturating_sub(frame_start.elapsed());
            if left.is_zero() || done.load(Ordering::Acquire) {
                break;
            }
            if !keys {
                std::thread::park_timeout(left);
                continue;
            }
            match event::poll(left.min(Duration::from_millis(50))) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                        if stops(k.code, k.modifiers) {
                            stopping = true;
                            plan.cancel();
                        }
                    }
                    Ok(_) => {}
                    Err(_) => keys = no_keys(),
                },
                Ok(false) => {}
                Err(_) => keys = no_keys(),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::series::Interval;

    #[test]
    fn a_frame_shows_whole_seconds_and_the_last_one_s_latencies() {
        let live = Live::default();
        live.prepare(2);
        live.slot(0).add(crate::backend::Counter::Issued, 10);
        live.slot(0).add(crate::backend::Counter::Completed, 6);
        live.slot(1).add(crate::backend::Counter::Connected, 3);
        live.slot(1).add(crate::backend::Counter::Closed, 1);
        let put = |second: usize, us: u64, n: u64| {
            let mut latency = crate::stats::new_histogram();
            latency.record_n(us, n).unwrap();
            live.series.lock().unwrap().ingest(Interval {
                worker: 0,
                second,
                latency,
                errors: 0,
                status: [(200, 6)].into(),
                error_kinds: Default::default(),
            });
        };
        put(0, 100, 2);
        put(2, 5_000, 3);
        // The second under way (3) is not shown yet.
        put(3, 9, 1);
        let s = gather(&live, Duration::from_millis(3_400), Stop::Count(100), "h");
        assert_eq!(s.rps, vec![2, 0, 3]);
        assert_eq!(
            (s.last.count, s.last.p50),
            (3, 5_003),
            "5000 µs at 3 figures"
        );
        assert_eq!(s.whole.count, 6);
        assert_eq!((s.totals.open(), s.totals.in_flight()), (2, 4));
        assert_eq!(s.status[&200], 6);
        assert_eq!(s.progress, Some(Progress::Count(100)));
        // A second with nothing in it (a stall) shows no latency.
        let s = gather(&live, Duration::from_millis(5_100), Stop::Count(100), "h");
        assert_eq!(s.rps, vec![2, 0, 3, 1, 0]);
        assert_eq!(s.last.count, 0);
    }
}
