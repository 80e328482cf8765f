//! When requests start and when the run stops, decided in one place.
//!
//! Every backend loop asks [`Plan::next_ticket`] for permission to start a
//! request and never decides on its own when to stop or how fast to go, so a
//! new mode (a rate, a stop rule) changes this file and not five backends.
//!
//! In the open loop (`-q RATE`) ticket `i` is intended to start at
//! `start + i / RATE`, computed from the start rather than accumulated (no
//! drift). Latency is measured from that intended time, so a server that
//! stalls shows up in the percentiles instead of silently delaying the
//! requests that would have seen the stall (coordinated omission, as in wrk2).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Wakes a waiting loop: a write to an eventfd its ring polls, a mio
/// `Waker`, a tokio `Notify`, a condition variable.
pub type Wake = Box<dyn Fn() + Send + Sync>;

/// When the run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many requests have been started.
    Count(u64),
    /// When this much time has passed since the start; requests still
    /// running then are reported as in flight.
    Duration(Duration),
}

/// How fast requests start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Each connection starts its next request as soon as the previous ends.
    Closed,
    /// Requests per second over all connections, on a fixed schedule.
    Open(f64),
}

/// Permission to start one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// 0-based sequence number over the whole run (selects the URL round-robin).
    pub seq: u64,
    /// When the request should start (see [`Plan::latency_origin`]).
    pub intended: Instant,
    /// HTTP/2: when its `--timeout` ends, once it was first sent as a
    /// stream; kept when the stream goes to a new connection (the clock
    /// runs across a retry, as over HTTP/1.x). `None` until then.
    pub deadline: Option<Instant>,
}

/// The shared schedule of a run; cheap to call from every worker thread.
pub struct Plan {
    stop: Stop,
    rate: Rate,
    /// Set once, by the first caller after the workers are ready (or at
    /// construction), so setup time never counts as run time.
    start: OnceLock<Instant>,
    handed_out: AtomicU64,
    cancelled: AtomicBool,
    /// When Ctrl-C ended the run.
    cancelled_at: OnceLock<Instant>,
    /// Who waits and must wake when the run is cancelled: loops wait for
    /// their next timer (the deadline is one), never poll for Ctrl-C.
    wakers: Mutex<Vec<Wake>>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("stop", &self.stop)
            .field("rate", &self.rate)
            .field("handed_out", &self.handed_out)
            .field("cancelled", &self.cancelled)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// A plan that starts at the first call to [`Plan::start`] (or to
    /// anything that needs the start): the runner makes that call once every
    /// worker has finished its setup.
    pub fn new(stop: Stop, rate: Rate) -> Arc<Self> {
        Arc::new(Self {
            stop,
            rate,
            start: OnceLock::new(),
            handed_out: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            cancelled_at: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
        })
    }

    /// A plan with a given start.
    pub fn starting_at(stop: Stop, rate: Rate, start: Instant) -> Arc<Self> {
        let plan = Self::new(stop, rate);
        let _ = plan.start.set(start);
        plan
    }

    /// The run's start; fixed by the first call.
    pub fn start(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    pub fn stop_rule(&self) -> Stop {
        self.stop
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// When a duration run ends; `None` for a count run.
    pub fn deadline(&self) -> Option<Instant> {
        match self.stop {
            Stop::Duration(d) => Some(self.start() + d),
            Stop::Count(_) => None,
        }
    }

    /// Ends the run early (Ctrl-C): no further tickets, and every waiting
    /// loop wakes.
    pub fn cancel(&self) {
        let _ = self.cancelled_at.set(Instant::now());
        self.cancelled.store(true, Ordering::Release);
        for wake in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            wake();
        }
    }

    /// Calls `wake` when the run is cancelled (at once if it already is).
    /// `wake` must not call back into the plan.
    pub fn on_cancel(&self, wake: Wake) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_cancelled() {
            wake();
        }
        wakers.push(wake);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Whether the run is over: cancelled, or past its deadline.
    pub fn is_over(&self, now: Instant) -> bool {
        self.is_cancelled() || self.deadline().is_some_and(|d| now >= d)
    }

    /// The next request's ticket, or `None` when the run is over.
    pub fn next_ticket(&self) -> Option<Ticket> {
        self.next_ticket_at(Instant::now())
    }

    /// [`Plan::next_ticket`] for a caller that already read the clock: a
    /// closed-loop ticket is stamped `now` (an event loop passes the time
    /// its pass began, saving a clock read per request).
    pub fn next_ticket_at(&self, now: Instant) -> Option<Ticket> {
        if self.is_cancelled() {
            return None;
        }
        let seq = match self.stop {
            Stop::Count(n) => self
                .handed_out
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |i| {
                    (i < n).then_some(i + 1)
                })
                .ok()?,
            Stop::Duration(_) => self.handed_out.fetch_add(1, Ordering::Relaxed),
        };
        let intended = match self.rate {
            Rate::Closed => now,
            Rate::Open(rate) => self.scheduled_at(seq, rate)?,
        };
        if self.deadline().is_some_and(|deadline| intended >= deadline) {
            return None;
        }
        Some(Ticket {
            seq,
            intended,
            deadline: None,
        })
    }

    /// When open-loop ticket `seq` is due; `None` for a time past what
    /// `Instant` holds, which can never come.
    fn scheduled_at(&self, seq: u64, rate: f64) -> Option<Instant> {
        Duration::try_from_secs_f64(seq as f64 / rate)
            .ok()
            .and_then(|d| self.start().checked_add(d))
    }

    /// Open loop: the tickets due before `end` (or the deadline, or
    /// Ctrl-C, whichever came first) that no connection took, because the
    /// client fell behind its schedule (every connection busy with slower
    /// responses). They belong in the report as much as the ones sent
    /// late. Zero in a closed loop.
    pub fn unsent(&self, end: Instant) -> u64 {
        let Rate::Open(rate) = self.rate else {
            return 0;
        };
        let mut end = end;
        for bound in [self.deadline(), self.cancelled_at.get().copied()]
            .into_iter()
            .flatten()
        {
            end = end.min(bound);
        }
        let due_before_end = |seq: u64| self.scheduled_at(seq, rate).is_some_and(|t| t < end);
        // Tickets 0..due are due: start from the estimate and settle it
        // with the same arithmetic that hands tickets out.
        let span = end.saturating_duration_since(self.start()).as_secs_f64();
        let mut due = (span * rate).ceil().clamp(0.0, u64::MAX as f64) as u64;
        while due > 0 && !due_before_end(due - 1) {
            due -= 1;
        }
        while due < u64::MAX && due_before_end(due) {
            due += 1;
        }
        if let Stop::Count(n) = self.stop {
            due = due.min(n);
        }
        due.saturating_sub(self.handed_out())
    }

    /// Where a request's latency is measured from. Open loop: the ticket's
    /// intended start, so time spent waiting for a connection or behind a
    /// stalled server counts (coordinated omission corrected). Closed loop:
    /// the moment the request was sent on an open connection, as wrk does;
    /// the time to open connections is reported on its own as connect time.
    pub fn latency_origin(&self, ticket: &Ticket, sent_at: Instant) -> Instant {
        match self.rate {
            Rate::Closed => sent_at,
            Rate::Open(_) => ticket.intended,
        }
    }

    /// Tickets handed out so far (the open loop may hand out some that end
    /// unused when the run stops before their time).
    pub fn handed_out(&self) -> u64 {
        self.handed_out.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_plan_hands_out_exactly_n() {
        let plan = Plan::new(Stop::Count(5), Rate::Closed);
        let seqs: Vec<u64> = std::iter::from_fn(|| plan.next_ticket())
            .map(|t| t.seq)
            .collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
        assert!(plan.next_ticket().is_none());
        assert_eq!(plan.handed_out(), 5);
    }

    #[test]
    fn count_plan_is_exact_across_threads() {
        let plan = Plan::new(Stop::Count(10_000), Rate::Closed);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let plan = plan.clone();
                std::thread::spawn(move || std::iter::from_fn(|| plan.next_ticket()).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 10_000);
    }

    #[test]
    fn open_loop_schedule_does_not_drift() {
        let start = Instant::now();
        let plan = Plan::starting_at(Stop::Count(1001), Rate::Open(1000.0), start);
        let last = std::iter::from_fn(|| plan.next_ticket()).last().unwrap();
        assert_eq!(last.seq, 1000);
        assert_eq!(last.intended - start, Duration::from_secs(1));
    }

    #[test]
    fn open_loop_with_duration_stops_at_deadline() {
        let start = Instant::now();
        let plan = Plan::starting_at(
            Stop::Duration(Duration::from_secs(5)),
            Rate::Open(1000.0),
            start,
        );
        let n = std::iter::from_fn(|| plan.next_ticket()).count();
        assert_eq!(
            n, 5000,
            "ticket i is due at i ms, the last one before 5 s is 4999"
        );
    }

    #[test]
    fn duration_closed_loop_stops_after_deadline() {
        let plan = Plan::new(Stop::Duration(Duration::from_millis(30)), Rate::Closed);
        assert!(plan.next_ticket().is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(plan.next_ticket().is_none());
        assert!(plan.is_over(Instant::now()));
    }

    #[test]
    fn open_loop_time_past_the_clock_ends_the_plan() {
        // The second ticket's time, 1e300 s away, fits neither a Duration
        // nor an Instant: no ticket, no panic.
        let plan = Plan::new(Stop::Count(2), Rate::Open(1e-300));
        assert_eq!(plan.next_ticket().map(|t| t.seq), Some(0));
        assert!(plan.next_ticket().is_none());
        let plan = Plan::new(Stop::Count(2), Rate::Open(1e-19));
        assert_eq!(plan.next_ticket().map(|t| t.seq), Some(0));
        assert!(plan.next_ticket().is_none());
    }

    #[test]
    fn unsent_counts_due_tickets_nobody_took() {
        let start = Instant::now();
        let plan = Plan::starting_at(
            Stop::Duration(Duration::from_secs(3)),
            Rate::Open(200.0),
            start,
        );
        for _ in 0..24 {
            plan.next_ticket_at(start);
        }
        // 600 due before the deadline, 24 taken.
        assert_eq!(plan.unsent(start + Duration::from_secs(10)), 576);
        assert_eq!(plan.unsent(start + Duration::from_millis(500)), 76);
        let closed = Plan::starting_at(Stop::Count(10), Rate::Closed, start);
        assert_eq!(closed.unsent(start + Duration::from_secs(1)), 0);
        let count = Plan::starting_at(Stop::Count(10), Rate::Open(1000.0), start);
        assert_eq!(count.unsent(start + Duration::from_secs(1)), 10);
    }

    #[test]
    fn cancel_stops_tickets() {
        let plan = Plan::new(Stop::Count(100), Rate::Closed);
        assert!(plan.next_ticket().is_some());
        plan.cancel();
        assert!(plan.next_ticket().is_none());
        assert!(plan.is_over(Instant::now()));
    }
}
