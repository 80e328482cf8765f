//! Waiting in a `uring-loop` worker: one io_uring_enter per pass that
//! submits everything queued and waits for a batch of completions (sized
//! in [`super::pace`]), bounded by the next timer; and the bounded drain at
//! the end of a run.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types};

use super::ops::{Named, OpKind, Owned, decode};
use super::ring;
use super::slot;
use super::{BATCH_WAIT, DRAIN_LIMIT, HAND_OFF_ABOVE, Loop, STEADY_BATCH_WAIT};
use crate::session::Sink;

/// A steady wait (see [`plan_wait`]) whose `io_uring_enter` takes longer
/// than twice the budget plus this (the sends it submits take up to about
/// 200 µs for a batch of 32) held completions well past the budget:
/// completions came in bursts, not at the rate that sized the batch.
const STEADY_OVERRUN_SLACK: Duration = Duration::from_micros(200);
/// After such an overrun, batched waits are held to the budget for this
/// long before a steady wait is tried again.
const BOUNDED_SPELL: Duration = Duration::from_millis(50);
/// Up to this many open connections on a worker's ring at the end of a
/// run, one cancel of everything lets the buffer ring be freed (see
/// `drain`). Its cost grows with the square of the operations in flight:
/// at the end of a one-thread run of N connections (6.18, one multishot
/// receive each) it added 0.02 s of CPU at 2,000, 0.05 at 4,000, 0.19 at
/// 6,000 and 0.75 at 10,000; up to 1,000 it did not show.
const CANCEL_ALL_UP_TO: usize = 2048;

impl<S: Sink> Loop<'_, S> {
    /// One io_uring_enter: submit everything queued, wait for a batch or a timer.
    pub(super) fn submit_and_wait(&mut self, now: Instant) -> std::io::Result<()> {
        if let Some(e) = self.ring_error.take() {
            return Err(e);
        }
        // The next timer or the deadline; Ctrl-C writes the wake-up eventfd.
        let mut until = self.timers.peek().map(|Reverse((t, _))| *t);
        if !self.stopping
            && let Some(d) = self.ctx.plan.deadline()
        {
            until = Some(until.map_or(d, |u| u.min(d)));
        }
        let want = if self.uring.ops.pending() == 0 {
            0
        } else {
            self.sink.pace.target(self.busy, BATCH_WAIT)
        };
        let wait = until.map(|u| u.saturating_duration_since(now));
        let result = if self.uring.features.ext_arg {
            let budget = self.sink.pace.budget(BATCH_WAIT);
            let plan = plan_wait(
                want,
                self.last_completions,
                wait,
                budget,
                self.uring.features.min_wait,
                now >= self.steady_after,
            );
            // Sends queued now mostly complete during this enter: their
            // completions come on top of the batch.
            let sends = if want > 1 { self.sends_queued } else { 0 };
            let (want, limit, min_wait) = (plan.want + sends, plan.limit, plan.min_wait_us);
            let args = match limit {
                Some(d) => {
                    self.timespec = types::Timespec::from(d);
                    types::SubmitArgs::new()
                        .timespec(&self.timespec)
                        .min_wait_usec(min_wait)
                }
                None => types::SubmitArgs::new().min_wait_usec(min_wait),
            };
            let start = plan.steady.then(Instant::now);
            let features = self.uring.features;
            let r = ring::enter(
                &mut self.uring.ring,
                features.ring_index,
                features.no_iowait,
                want as u32,
                &args,
            );
            if let Some(start) = start {
                let end = Instant::now();
                if overran(end.saturating_duration_since(start), budget) {
                    self.steady_after = end + BOUNDED_SPELL;
                }
            }
            r
        } else {
            // 5.10: a TIMEOUT op bounds the wait; no batching without it.
            // One is pending at a time: an earlier one replaces it.
            if let Some(at) = until
                && self.timer_op.is_none_or(|(t, _)| at < t)
            {
                self.remove_timer_op();
                let spec = Box::new(types::Timespec::from(at.saturating_duration_since(now)));
                let e = opcode::Timeout::new(&*spec).build();
                let ud = self.push_op(e, 0, OpKind::Timer, Owned::Timespec(spec));
                self.timer_op = Some((at, ud));
            }
            self.uring.ring.submit_and_wait(1)
        };
        // What was queued is submitted, its descriptors resolved.
        self.sends_queued = 0;
        self.close_submitted();
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the pending TIMEOUT op (5.10 profile), if any; its
    /// completion (cancelled) still comes, and ends its entry.
    fn remove_timer_op(&mut self) {
        if let Some((_, ud)) = self.timer_op.take() {
            let e = opcode::TimeoutRemove::new(ud).build();
            self.push_op(e, 0, OpKind::Ignore, Owned::Nothing);
        }
    }

    /// Closes every connection and waits (boundedly) for the kernel to
    /// finish their operations, so that what they own can be freed (see
    /// [`super::ops::Uring`]).
    pub(super) fn drain(&mut self) {
        self.remove_timer_op();
        let direct = self.uring.features.direct_descriptors;
        let open = self.io.iter().filter(|s| s.fd >= 0).count();
        if open > HAND_OFF_ABOVE {
            // Thousands of connections: shutting each down here costs a
            // FIN exchange per socket on this thread. Closing our
            // descriptors and dropping the ring hands them to the kernel,
            // which cancels the receives and closes the sockets itself.
            if direct && self.uring.bufs.is_some() && open <= CANCEL_ALL_UP_TO {
                // The sockets live in the ring's file table, so cancelling
                // every operation at once (ASYNC_CANCEL_ANY, 5.19) closes
                // none of them here, and once the cancellations are in the
                // buffer ring can be freed. Sockets from socket(2) would
                // close on this thread as their receives let go, and more
                // connections make the cancel too dear (CANCEL_ALL_UP_TO):
                // those runs leave the buffer ring to the kernel (leaked).
                let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
                self.push_op(cancel, 0, OpKind::Ignore, Owned::Nothing);
                self.wait_for_ops();
            }
            for s in &mut self.io {
                // Direct descriptors close with the ring's file table.
                if s.fd >= 0 && !direct {
                    // SAFETY: the slot owns the descriptor and forgets it
                    // here; the ring's pending receive holds its own
                    // reference to the socket.
                    unsafe { libc::close(s.fd) };
                }
                s.fd = -1;
            }
            slot::close_all(&mut self.closing);
            return;
        }
        for i in 0..self.io.len() {
            self.close_now(i);
        }
        self.wait_for_ops();
        slot::close_all(&mut self.closing);
    }

    /// Submits what is queued and reaps completions until no operation is
    /// in flight, for at most DRAIN_LIMIT; what they owned comes back.
    fn wait_for_ops(&mut self) {
        let start = Instant::now();
        let ext_arg = self.uring.features.ext_arg;
        while self.uring.ops.pending() > 0 && start.elapsed() < DRAIN_LIMIT {
            self.timespec = types::Timespec::from(Duration::from_millis(10));
            let r = if ext_arg {
                let args = types::SubmitArgs::new().timespec(&self.timespec);
                let features = self.uring.features;
                ring::enter(
                    &mut self.uring.ring,
                    features.ring_index,
                    features.no_iowait,
                    1,
                    &args,
                )
            } else {
                self.uring.ring.submit_and_wait(0)
            };
            if r.is_err() && !ext_arg {
                break;
            }
            let done: Vec<usize> = self
                .uring
                .ring
                .completion()
                .filter(|c| !cqueue::more(c.flags()))
                .filter_map(|c| match decode(c.user_data()) {
                    Named::Op(key) => Some(key),
                    Named::SilentSend { .. } | Named::Wake => None,
                })
                .collect();
            for key in done {
                if let Some(op) = self.uring.ops.remove(key) {
                    self.take_back(op);
                }
            }
            if !ext_arg {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Whether a steady wait's `io_uring_enter`, which took `took`, held
/// completions well past `budget` (see STEADY_OVERRUN_SLACK).
fn overran(took: Duration, budget: Duration) -> bool {
    took > budget * 2 + STEADY_OVERRUN_SLACK
}

/// How one batched wait is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WaitPlan {
    /// Completions to wait for, at least 1.
    want: usize,
    /// The overall timeout, if any.
    limit: Option<Duration>,
    /// The kernel's minimum wait in µs; 0 for none.
    min_wait_us: u32,
    /// A steady wait: for a count the last pass reached, under the long bound.
    steady: bool,
}

/// Bounds a wait for `want` completions (sized in [`super::pace`] to what
/// the current rate brings within `budget`) so that it never sleeps through
/// a quiet spell on a batch timer; `wait` is the time to the next timer and
/// `last` the completions the previous pass handled; `steady_ok` is false
/// for a while after a steady wait overran.
///
/// - A target the last pass reached (or up to a quarter above it, for the
///   rate estimate's wobble) was just shown to be reachable: it waits for
///   that count under the long STEADY_BATCH_WAIT bound, a timer that
///   outlasts the scheduler tick and so reprograms no hardware timer. If
///   completions come in bursts rather than at the rate that sized the
///   batch, such a wait holds the first of them until the next burst, so
///   one that overran (see [`overran`]) makes the next BOUNDED_SPELL of
///   waits budget-bound.
/// - A larger target (batches growing) is held to `budget`: with the
///   kernel's minimum wait (6.12) it returns on the first completion after
///   it, and the minimum wait never runs past the next timer (the kernel
///   looks at the overall timeout only once it is over); without it, a
///   short timeout is used, and only while completions flow.
///
/// The measurements behind these rules are in bench/README.md ("How
/// uring-loop batches its waits").
fn plan_wait(
    want: usize,
    last: usize,
    wait: Option<Duration>,
    budget: Duration,
    min_wait: bool,
    steady_ok: bool,
) -> WaitPlan {
    let mut plan = WaitPlan {
        want: want.max(1),
        limit: wait,
        min_wait_us: 0,
        steady: false,
    };
    if want <= 1 {
        return plan;
    }
    // A bound never runs past the next timer.
    let bounded = |bound: Duration| wait.map_or(bound, |w| w.min(bound));
    if steady_ok && want <= last + last / 4 {
        plan.want = want.min(last);
        plan.limit = Some(bounded(STEADY_BATCH_WAIT));
        plan.steady = true;
    } else if min_wait {
        plan.min_wait_us = bounded(budget).as_micros().clamp(1, u32::MAX as u128) as u32;
    } else if last > 0 {
        plan.limit = Some(bounded(budget));
    } else {
        plan.want = 1;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_micros(500);
    const POLL: Option<Duration> = Some(Duration::from_millis(50));

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn one_completion_waits_only_for_the_next_timer() {
        let p = plan_wait(1, 40, POLL, BUDGET, true, true);
        assert_eq!((p.want, p.limit, p.min_wait_us), (1, POLL, 0));
        assert_eq!(plan_wait(0, 0, None, BUDGET, true, true).want, 1);
    }

    #[test]
    fn a_target_the_last_pass_reached_takes_the_long_bound_and_no_short_timer() {
        let p = plan_wait(32, 33, POLL, BUDGET, true, true);
        assert_eq!(
            (p.want, p.limit, p.min_wait_us, p.steady),
            (32, Some(STEADY_BATCH_WAIT), 0, true)
        );
        // A little above the last count: wait for that count.
        let p = plan_wait(36, 30, POLL, BUDGET, true, true);
        assert_eq!(
            (p.want, p.limit, p.min_wait_us),
            (30, Some(STEADY_BATCH_WAIT), 0)
        );
        // Never past the next timer.
        assert_eq!(
            plan_wait(32, 32, Some(us(700)), BUDGET, true, true).limit,
            Some(us(700))
        );
    }

    #[test]
    fn an_overrun_is_a_wait_well_past_the_budget() {
        assert!(!overran(us(1200), BUDGET));
        assert!(overran(us(1201), BUDGET));
        assert!(overran(us(1300), BUDGET));
        // A short budget (quick responses) leaves only the sends' slack.
        assert!(overran(us(400), us(75)));
        assert!(!overran(us(300), us(75)));
    }

    #[test]
    fn after_an_overrun_a_reached_target_is_held_to_the_budget() {
        let p = plan_wait(32, 33, POLL, BUDGET, true, false);
        assert_eq!(
            (p.want, p.limit, p.min_wait_us, p.steady),
            (32, POLL, 500, false)
        );
        let p = plan_wait(32, 33, POLL, BUDGET, false, false);
        assert_eq!((p.want, p.limit, p.steady), (32, Some(BUDGET), false));
    }

    #[test]
    fn a_growing_target_is_held_to_the_budget() {
        let p = plan_wait(32, 8, POLL, BUDGET, true, true);
        assert_eq!((p.want, p.limit, p.min_wait_us), (32, POLL, 500));
        // The minimum wait stops at the next timer.
        assert_eq!(
            plan_wait(32, 8, Some(us(120)), BUDGET, true, true).min_wait_us,
            120
        );
        // Without the kernel's minimum wait: a budget-long timeout while
        // completions flow, one completion at a time when they do not.
        let p = plan_wait(32, 8, POLL, BUDGET, false, true);
        assert_eq!((p.want, p.limit, p.min_wait_us), (32, Some(BUDGET), 0));
        let p = plan_wait(32, 0, POLL, BUDGET, false, true);
        assert_eq!((p.want, p.limit, p.min_wait_us), (1, POLL, 0));
    }

    #[test]
    fn every_batched_wait_is_bounded() {
        for want in 0..80 {
            for last in [0, 1, 7, 8, 25, 31, 32, 40, 100] {
                for wait in [None, Some(Duration::ZERO), Some(us(100)), POLL] {
                    for (min_wait, steady_ok) in
                        [(false, true), (true, true), (false, false), (true, false)]
                    {
                        let p = plan_wait(want, last, wait, BUDGET, min_wait, steady_ok);
                        assert!(steady_ok || !p.steady);
                        assert!(p.want >= 1);
                        if p.want > 1 {
                            let by_limit = p.limit.is_some_and(|l| l <= STEADY_BATCH_WAIT);
                            let by_min = p.min_wait_us > 0
                                && u128::from(p.min_wait_us) <= BUDGET.as_micros();
                            assert!(
                                by_limit || by_min,
                                "{want} {last} {wait:?} {min_wait} {steady_ok}: {p:?}"
                            );
                        }
                        if let (Some(w), true) = (wait, p.min_wait_us > 0) {
                            assert!(u128::from(p.min_wait_us) <= w.as_micros().max(1));
                        }
                    }
                }
            }
        }
    }
}
