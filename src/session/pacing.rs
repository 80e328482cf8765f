//! Connect pacing, one rule for every backend: at most [`CONNECTS_IN_FLIGHT`]
//! connection attempts under way per worker thread.
//!
//! A loopback connect runs its whole handshake inside the call that starts
//! it (a `connect(2)`, or the `io_uring_enter` that submits a CONNECT), so
//! thousands started at once hold back every request and completion behind
//! the last handshake. A request's `--timeout` starts only once it has its
//! turn (see `Session::connect_started`), so a queue of connects is never
//! counted against the requests waiting in it.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Connection attempts under way at once, per worker thread.
pub const CONNECTS_IN_FLIGHT: usize = 256;

/// The turns of one worker's connects. Event loops use [`try_take`]
/// (a session that gets none waits for the next pass), futures [`take`],
/// blocking threads [`take_blocking`]; all give a turn back once the
/// attempt has ended, however it ended.
///
/// [`try_take`]: ConnectTurns::try_take
/// [`take`]: ConnectTurns::take
/// [`take_blocking`]: ConnectTurns::take_blocking
#[derive(Debug)]
pub(crate) struct ConnectTurns {
    state: Mutex<State>,
    /// Blocking threads waiting for a turn.
    cv: Condvar,
    /// Tasks waiting for a turn.
    notify: tokio::sync::Notify,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Blocking threads waiting on `cv`: only then is it notified (a
    /// notify is a futex system call even with nobody waiting, one per
    /// connection on the event loops).
    blocked: usize,
}

impl Default for ConnectTurns {
    fn default() -> Self {
        Self::new(CONNECTS_IN_FLIGHT)
    }
}

impl ConnectTurns {
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                free: limit.max(1),
                blocked: 0,
            }),
            cv: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a turn if one is free.
    pub fn try_take(&self) -> bool {
        let mut st = self.lock();
        if st.free == 0 {
            return false;
        }
        st.free -= 1;
        true
    }

    /// Waits for a turn (a task on a worker's runtime).
    pub async fn take(&self) {
        loop {
            // Registered before the check, so a turn given back between
            // the check and the wait still wakes this task.
            let notified = self.notify.notified();
            if self.try_take() {
                return;
            }
            notified.await;
        }
    }

    /// Waits for a turn on a blocking thread; `false` if `stop` says the
    /// run is over first (its end calls [`ConnectTurns::wake_all`]).
    pub fn take_blocking(&self, stop: impl Fn() -> bool) -> bool {
        let mut st = self.lock();
        loop {
            if stop() {
                return false;
            }
            if st.free > 0 {
                st.free -= 1;
                return true;
            }
            st.blocked += 1;
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            st.blocked -= 1;
        }
    }

    /// Wakes every blocking thread waiting for a turn, to look at its `stop`.
    pub fn wake_all(&self) {
        let st = self.lock();
        if st.blocked > 0 {
            self.cv.notify_all();
        }
    }

    /// Gives a turn back.
    pub fn give_back(&self) {
        let mut st = self.lock();
        st.free += 1;
        if st.blocked > 0 {
            self.cv.notify_one();
        }
        drop(st);
        // No system call: a stored permit, or a task woken.
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_bounded_and_come_back() {
        let turns = ConnectTurns::new(2);
        assert!(turns.try_take());
        assert!(turns.try_take());
        assert!(!turns.try_take());
        assert!(!turns.take_blocking(|| true));
        turns.give_back();
        assert!(turns.take_blocking(|| false));
        assert!(!turns.try_take());
    }
}
