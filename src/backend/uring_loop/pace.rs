//! How fast a `uring-loop` worker's completions come and how long its
//! quicker responses take, the two facts that size a batched wait; and
//! whether the worker is busy enough on the CPU that it should not hold
//! completions at all.
//!
//! A batched wait holds back every completion in the batch until the last
//! one arrives, and that delay is part of each measured latency. So a batch
//! only asks for what the current completion rate brings within a budget
//! tied to the quick responses' own time, not for a share of everything in
//! flight (most of which may be slow); how long a wait may last is decided
//! in `wait.rs`.
//!
//! A hold only pays where the loop has time to spare (against a server
//! slower than the client it saves a sleep and a wake per completion);
//! where the loop is busy on the CPU anyway, holding only leaves it, and
//! then the server, idle. So a loop whose smoothed share of time on the
//! CPU reaches [`STOP_HOLDING`] does not hold ([`Gate`]), and since not
//! holding costs CPU itself, the gate judges holding afresh by trying it
//! for a few windows now and then. The measurements behind each figure are
//! in bench/README.md ("How uring-loop batches its waits").

use std::time::{Duration, Instant};

/// Largest batch a wait asks for.
const MAX_BATCH: usize = 32;
/// Below this many requests in flight every completion is handled at once.
const MIN_BUSY: usize = 16;
/// Completions per second are measured over windows at least this long.
const RATE_WINDOW: Duration = Duration::from_millis(1);
/// The loop's share of time on the CPU is measured over windows at least
/// this long (one clock_gettime of the thread's CPU time per window, a
/// system call: at most 100 a second, 0.003 per request at 30k requests/s
/// and 0.0003 at 300k).
const UTIL_WINDOW: Duration = Duration::from_millis(10);
/// At or above this share of its time on the CPU a holding loop stops
/// holding completions (between what holding loops measure against nginx
/// and against the demo server; see bench/README.md).
const STOP_HOLDING: f64 = 0.7;
/// Windows a loop that stopped holding holds again to judge it afresh.
const PROBE_WINDOWS: u32 = 2;
/// First wait before such a probe (the connect ramp at the start of a run
/// or a noisy spell stops holding for no lasting reason); it doubles after
/// each probe that finds the loop still busy, up to MAX_PROBE_AFTER, and
/// goes back to it only once holding has lasted SETTLED_WINDOWS (a loop
/// near the threshold that passes a probe and stops again soon after keeps
/// its longer wait).
const MIN_PROBE_AFTER: Duration = Duration::from_millis(50);
const MAX_PROBE_AFTER: Duration = Duration::from_secs(1);
const SETTLED_WINDOWS: u32 = 10;
/// The quantile of response times (from the send) that stands for "quick".
const QUICK_QUANTILE: f64 = 0.25;
/// Step of the running quantile estimate, as a fraction of the estimate:
/// it follows a change within a few hundred responses.
const STEP: f64 = 0.02;
/// A closed-loop batch may gather for this fraction of a quick response's
/// time. When the server is the bottleneck its queue absorbs the hold;
/// where quick responses mix with slow ones the quick time, and so the
/// budget, is short; where the client is the bottleneck the budget's cap
/// (`BATCH_WAIT`) keeps it small.
pub const CLOSED_LOOP_SHARE: f64 = 0.75;
/// An open-loop run measures latency at a set rate, and a held completion
/// is recorded late: its batches get a smaller share.
pub const OPEN_LOOP_SHARE: f64 = 0.1;

/// A worker's recent completion rate (every CQE counts: connects, cancels
/// and receives as well as the last receive of a response), quick response
/// time, and whether it may hold completions ([`Gate`]).
#[derive(Debug)]
pub struct Pace {
    /// Completions per second, smoothed over windows; 0 until measured.
    rate: f64,
    /// Running estimate of the QUICK_QUANTILE of response times, in seconds.
    quick: f64,
    /// The fraction of `quick` a batch may gather for.
    share: f64,
    window_start: Instant,
    window_count: u64,
    util_start: Instant,
    /// The thread's CPU time at `util_start`; None until first read.
    cpu_at: Option<Duration>,
    gate: Gate,
}

/// Whether batches may hold completions: not while the loop is busy on the
/// CPU (STOP_HOLDING), judged on windows in which it held.
#[derive(Debug)]
struct Gate {
    holding: bool,
    /// Share of wall time on the CPU, smoothed over the windows that held.
    util: f64,
    /// Windows left in a probe, and their shares so far.
    probing: u32,
    probe_sum: f64,
    /// When a loop that stopped holding probes next, and the wait after
    /// that if the probe fails.
    probe_at: Instant,
    backoff: Duration,
    /// Windows held since holding last resumed (see SETTLED_WINDOWS).
    held: u32,
}

impl Gate {
    fn new(now: Instant) -> Self {
        Self {
            holding: true,
            util: 0.0,
            probing: 0,
            probe_sum: 0.0,
            probe_at: now,
            backoff: MIN_PROBE_AFTER,
            held: 0,
        }
    }

    /// The loop spent `u` of the window that ended at `now` on the CPU.
    fn window(&mut self, u: f64, now: Instant) {
        let u = u.min(1.0);
        if self.probing > 0 {
            self.probe_sum += u;
            self.probing -= 1;
            if self.probing == 0 {
                self.util = self.probe_sum / f64::from(PROBE_WINDOWS);
                if self.util >= STOP_HOLDING {
                    self.stop(now);
                }
            }
        } else if self.holding {
            self.util = (self.util + u) / 2.0;
            if self.util >= STOP_HOLDING {
                self.stop(now);
            } else {
                self.held += 1;
                if self.held >= SETTLED_WINDOWS {
                    self.backoff = MIN_PROBE_AFTER;
                }
            }
        } else if now >= self.probe_at {
            self.holding = true;
            self.probing = PROBE_WINDOWS;
            self.probe_sum = 0.0;
        }
    }

    fn stop(&mut self, now: Instant) {
        self.holding = false;
        self.held = 0;
        self.probe_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_PROBE_AFTER);
    }
}

impl Pace {
    pub fn new(now: Instant, share: f64) -> Self {
        Self {
            rate: 0.0,
            quick: 1e-3,
            share,
            window_start: now,
            window_count: 0,
            util_start: now,
            cpu_at: None,
            gate: Gate::new(now),
        }
    }

    /// `n` completions were handled at `now`; `cpu` reads the thread's CPU
    /// time (user + system), called once per UTIL_WINDOW (a failed reading
    /// makes the window longer).
    pub fn completions(&mut self, n: usize, now: Instant, cpu: impl FnOnce() -> Option<Duration>) {
        let span = now.saturating_duration_since(self.util_start);
        if (span >= UTIL_WINDOW || self.cpu_at.is_none())
            && let Some(c) = cpu()
        {
            if let Some(before) = self.cpu_at {
                let u = c.saturating_sub(before).as_secs_f64() / span.as_secs_f64();
                self.gate.window(u, now);
            }
            self.cpu_at = Some(c);
            self.util_start = now;
        }
        self.window_count += n as u64;
        let span = now.saturating_duration_since(self.window_start);
        if span >= RATE_WINDOW {
            let r = self.window_count as f64 / span.as_secs_f64();
            self.rate = if self.rate == 0.0 {
                r
            } else {
                (self.rate + r) / 2.0
            };
            self.window_start = now;
            self.window_count = 0;
        }
    }

    /// A response came `d` after its request was sent. A frugal streaming
    /// quantile: multiplicative steps up with weight q and down with weight
    /// 1 - q settle where a fraction q of the responses is quicker.
    ///
    /// `d` is taken when the response is handled, so it includes the hold
    /// of the batch it came in: the budget feeds back into the estimate,
    /// which settles at up to 1 / (1 - share) of the real time (4x closed
    /// loop, 1.1x open loop), held in check by the budget's cap. Taking the
    /// middle of the wait instead made smaller batches at 64 connections to
    /// nginx: 0.61-0.62x of wrk's CPU per request against 0.56-0.57x in the
    /// same rounds. Where it matters (quick responses among slow ones) the
    /// estimate is short either way.
    pub fn response(&mut self, d: Duration) {
        let x = d.as_secs_f64();
        if x > self.quick {
            self.quick *= 1.0 + STEP * QUICK_QUANTILE;
        } else {
            self.quick *= 1.0 - STEP * (1.0 - QUICK_QUANTILE);
        }
        self.quick = self.quick.max(1e-6);
    }

    /// How long a batched wait may gather: a share of a quick response's
    /// time, at most `cap`.
    pub fn budget(&self, cap: Duration) -> Duration {
        Duration::from_secs_f64(self.quick * self.share).min(cap)
    }

    /// How many completions to wait for with `busy` requests in flight: as
    /// many as the current rate brings within the budget, at most half of
    /// what is in flight (waiting for all of it runs the connections in
    /// lock-step) and MAX_BATCH; 1 (no batching) with little in flight or
    /// when the loop is busy on the CPU.
    pub fn target(&self, busy: usize, cap: Duration) -> usize {
        if busy < MIN_BUSY || !self.gate.holding {
            return 1;
        }
        let by_rate = (self.rate * self.budget(cap).as_secs_f64()) as usize;
        by_rate.min(busy / 2).clamp(1, MAX_BATCH)
    }
}

/// A sink that also tells [`Pace`] how long each response took from its send.
pub struct Paced<S> {
    pub sink: S,
    pub pace: Pace,
}

impl<S: crate::session::Sink> crate::session::Sink for Paced<S> {
    const COLLECT: bool = S::COLLECT;

    #[inline]
    fn issued(&mut self, n: u64) {
        self.sink.issued(n);
    }

    #[inline]
    fn connected(&mut self, took: Duration, reconnect: bool) {
        self.sink.connected(took, reconnect);
    }

    fn closed(&mut self) {
        self.sink.closed();
    }

    fn handshake(&mut self, took: Duration, resumed: bool) {
        self.sink.handshake(took, resumed);
    }

    fn kernel_tls(&mut self) {
        self.sink.kernel_tls();
    }

    fn retried(&mut self, n: u64) {
        self.sink.retried(n);
    }

    fn head(&mut self, seq: u64, head: &[u8]) {
        self.sink.head(seq, head);
    }

    fn body(&mut self, seq: u64, bytes: &[u8]) {
        self.sink.body(seq, bytes);
    }

    #[inline]
    fn response(&mut self, done: &crate::session::Done<'_>) {
        self.pace
            .response(done.now.saturating_duration_since(done.sent_at));
        self.sink.response(done);
    }

    fn failed(&mut self, seq: u64, error: &crate::error::FetchError) {
        self.sink.failed(seq, error);
    }

    fn in_flight(&mut self, n: u64) {
        self.sink.in_flight(n);
    }

    #[inline]
    fn bytes(&mut self, read: u64, written: u64) {
        self.sink.bytes(read, written);
    }

    fn ended(&mut self, at: Instant) {
        self.sink.ended(at);
    }

    fn cpu(&mut self, usage: crate::stats::resources::Usage) {
        self.sink.cpu(usage);
    }

    fn h2_streams_open(&mut self, n: usize) {
        self.sink.h2_streams_open(n);
    }

    fn h2_connection(&mut self) {
        self.sink.h2_connection();
    }

    fn goaway(&mut self, code: u32) {
        self.sink.goaway(code);
    }

    fn stream_reset(&mut self, code: u32) {
        self.sink.stream_reset(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_micros(500);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A loop that never uses the CPU.
    fn idle() -> Option<Duration> {
        Some(Duration::ZERO)
    }

    /// A pace that saw `rate` completions per second and quick responses of `quick`.
    fn pace(rate: u64, quick: Duration) -> Pace {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, CLOSED_LOOP_SHARE);
        // 10 ms of completions at `rate`, in 1 ms windows.
        for ms in 1..=10 {
            p.completions((rate / 1000) as usize, t0 + Duration::from_millis(ms), idle);
        }
        for _ in 0..2000 {
            p.response(quick);
        }
        p
    }

    #[test]
    fn quick_settles_on_the_lower_quartile_of_a_mix() {
        let mut p = Pace::new(Instant::now(), CLOSED_LOOP_SHARE);
        // Three quick responses (100-190 µs) for every slow one (20 ms).
        for i in 0..4000u64 {
            p.response(if i % 4 == 3 {
                us(20_000)
            } else {
                us(100 + i % 10 * 10)
            });
        }
        let q = p.budget(Duration::MAX).as_secs_f64() / CLOSED_LOOP_SHARE;
        assert!((90e-6..200e-6).contains(&q), "quick estimate {q}");
    }

    #[test]
    fn rate_is_measured_over_windows() {
        let p = pace(80_000, us(700));
        assert!((p.rate - 80_000.0).abs() < 1.0, "{}", p.rate);
    }

    #[test]
    fn a_server_bound_closed_loop_gets_full_batches() {
        // 64 connections at 80k/s: responses take ~700 µs, so the budget
        // is the 500 µs cap and 40 arrive within it.
        assert_eq!(pace(80_000, us(700)).target(64, CAP), 32);
        // 1,000 connections at 62k/s: 31 within the cap.
        assert_eq!(pace(62_000, us(12_000)).target(1000, CAP), 31);
        // 20 connections: no more than half of them.
        assert_eq!(pace(80_000, us(250)).target(20, CAP), 10);
    }

    #[test]
    fn quick_responses_in_a_slow_mix_are_not_held_back() {
        // Most of 64 connections wait on slow responses; the quick ones
        // take 150 µs and all complete at 11k/s: one per wait.
        assert_eq!(pace(11_000, us(150)).target(64, CAP), 1);
        // A slow server at a low open-loop rate: no batching either.
        assert_eq!(pace(1_000, us(100_000)).target(100, CAP), 1);
    }

    #[test]
    fn little_in_flight_means_no_batching() {
        assert_eq!(pace(80_000, us(700)).target(8, CAP), 1);
    }

    #[test]
    fn before_any_measurement_nothing_is_batched() {
        assert_eq!(
            Pace::new(Instant::now(), CLOSED_LOOP_SHARE).target(1000, CAP),
            1
        );
    }

    #[test]
    fn an_open_loop_run_batches_only_where_the_hold_is_small() {
        let open = |rate: u64, quick: Duration| {
            let mut p = pace(rate, quick);
            p.share = OPEN_LOOP_SHARE;
            p
        };
        // 50k/s to a server answering in 500 µs: a 50 µs hold gathers 2.
        assert_eq!(open(50_000, us(500)).target(20, CAP), 2);
        // 50k/s with 100 ms answers (5,000 in flight): the 500 µs cap
        // gathers 25.
        assert_eq!(open(50_000, us(100_000)).target(5000, CAP), 25);
    }

    /// Feeds `g` one 10 ms window per share in `shares`, from `at` ms on;
    /// returns the time after the last.
    fn windows(g: &mut Gate, t0: Instant, at: u64, shares: &[f64]) -> u64 {
        let mut at = at;
        for &u in shares {
            at += 10;
            g.window(u, t0 + Duration::from_millis(at));
        }
        at
    }

    #[test]
    fn a_loop_busy_on_the_cpu_does_not_hold() {
        let t0 = Instant::now();
        let mut g = Gate::new(t0);
        // Holding against nginx: 0.45-0.55, one window of 0.79.
        let at = windows(&mut g, t0, 0, &[0.5, 0.45, 0.55, 0.79, 0.5, 0.45]);
        assert!(g.holding, "{}", g.util);
        // A fast server: 0.8 while holding; it stops within two windows.
        let at = windows(&mut g, t0, at, &[0.8, 0.8]);
        assert!(!g.holding);
        // Not holding it takes 0.92. It tries holding again after 50 ms
        // (for two windows, 0.8 again: it stops), then after 100, 200 ...
        // 1,000 ms: ever less of its time goes to holding.
        let mut held = 0;
        let mut at = at;
        for _ in 0..400 {
            let u = if g.holding { 0.8 } else { 0.92 };
            held += usize::from(g.holding);
            at = windows(&mut g, t0, at, &[u]);
        }
        assert!(!g.holding);
        assert!((8..=20).contains(&held), "held in {held} of 400 windows");
        assert_eq!(g.backoff, MAX_PROBE_AFTER);
    }

    #[test]
    fn a_loop_that_stopped_holding_for_no_lasting_reason_holds_again() {
        let t0 = Instant::now();
        let mut g = Gate::new(t0);
        // The connect ramp of 1,000 connections: busy, so it stops ...
        let at = windows(&mut g, t0, 0, &[1.0, 1.0]);
        assert!(!g.holding);
        // ... and not holding, nginx keeps it at 0.85 (above anything a
        // threshold for resuming could rely on). Probing after 50 ms finds
        // 0.5 while holding: it holds, and stays.
        let mut at = at;
        for _ in 0..20 {
            let u = if g.holding { 0.5 } else { 0.85 };
            at = windows(&mut g, t0, at, &[u]);
        }
        assert!(g.holding && g.probing == 0, "{}", g.util);
        assert_eq!(g.backoff, MIN_PROBE_AFTER);
    }

    #[test]
    fn a_busy_loop_gets_batches_of_one_through_its_pace() {
        let t0 = Instant::now();
        let mut p = pace(80_000, us(700));
        assert_eq!(p.target(64, CAP), 32);
        // Then 9 ms of CPU in every 10 ms, read from the thread's clock.
        let (mut cpu, mut at) = (0, 10);
        for _ in 0..3 {
            at += 10;
            cpu += 9;
            p.completions(800, t0 + Duration::from_millis(at), || {
                Some(Duration::from_millis(cpu))
            });
        }
        assert_eq!(p.target(64, CAP), 1);
        // A failed reading skips the window instead of counting it busy.
        let mut q = pace(80_000, us(700));
        q.completions(2400, t0 + Duration::from_millis(40), || None);
        assert!(q.gate.holding && q.cpu_at == Some(Duration::ZERO));
        assert_eq!(q.target(64, CAP), 32);
    }

    #[test]
    fn a_loop_near_the_threshold_keeps_its_longer_wait() {
        let t0 = Instant::now();
        let mut g = Gate::new(t0);
        let mut at = windows(&mut g, t0, 0, &[1.0, 1.0]);
        assert!(!g.holding);
        // Busy when not holding, 0.65 while probing, 0.8 right after: each
        // probe passes and holding stops again within a window or two, so
        // the wait before the next probe keeps doubling.
        let mut last = 0.0;
        for _ in 0..200 {
            let u = match (g.holding, g.probing) {
                (false, _) => 0.95,
                (true, 0) => 0.8,
                (true, _) => 0.65,
            };
            last = if g.holding && g.probing == 0 { u } else { last };
            at = windows(&mut g, t0, at, &[u]);
        }
        assert_eq!(last, 0.8);
        assert_eq!(g.backoff, MAX_PROBE_AFTER);
    }
}
